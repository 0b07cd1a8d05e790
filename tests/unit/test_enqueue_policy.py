"""The ExistingWorkPolicy decision and the initial state of new work (android-reference 2.2-2.4).

Both are pure functions; each rule is checked on its own, then all of them over every
combination of up to three existing rows (each of six states, with or without dependents).
"""

from __future__ import annotations

import itertools

import pytest

from workmanager import ExistingWorkPolicy, UpdateResult
from workmanager.engine.enqueue import Decision, Existing, decide, initial_state, update_result
from workmanager.info import State

P = ExistingWorkPolicy
S = State
LIVE = {S.ENQUEUED, S.RUNNING}


def row(id: str, state: State, has_dependents: bool = False) -> Existing:
    return Existing(id, state, has_dependents)


# -- each rule, as android-reference 2.4 states it ---------------------------------------------------


@pytest.mark.parametrize("policy", list(P))
def test_with_no_existing_rows_every_policy_starts_a_new_chain(policy):
    assert decide(policy, []) == Decision()


def test_replace_removes_every_row_with_the_name_finished_ones_too():
    existing = [row("a", S.SUCCEEDED, True), row("b", S.RUNNING), row("c", S.FAILED)]
    assert decide(P.REPLACE, existing) == Decision(remove=("a", "b", "c"))


@pytest.mark.parametrize("live", [S.ENQUEUED, S.RUNNING])
def test_keep_keeps_the_existing_work_while_some_is_enqueued_or_running(live):
    existing = [row("a", S.SUCCEEDED, True), row("b", live)]
    assert decide(P.KEEP, existing).keep_existing


@pytest.mark.parametrize("finished", [S.SUCCEEDED, S.FAILED, S.CANCELLED])
def test_keep_over_finished_work_replaces_it(finished):
    assert decide(P.KEEP, [row("a", finished)]) == Decision(remove=("a",))


def test_keep_over_only_blocked_work_replaces_it_as_android_does():
    assert decide(P.KEEP, [row("a", S.BLOCKED)]) == Decision(remove=("a",))


def test_append_follows_the_leaves_of_the_existing_chain():
    existing = [
        row("a", S.SUCCEEDED, True),
        row("b", S.RUNNING, True),
        row("c", S.BLOCKED),
        row("d", S.BLOCKED),
    ]
    assert decide(P.APPEND, existing) == Decision(prerequisites=("c", "d"), new_chain=False)


@pytest.mark.parametrize("dead", [S.FAILED, S.CANCELLED])
def test_append_onto_a_dead_chain_still_follows_its_leaves(dead):
    assert decide(P.APPEND, [row("a", dead)]) == Decision(prerequisites=("a",), new_chain=False)


@pytest.mark.parametrize("dead", [S.FAILED, S.CANCELLED])
def test_append_or_replace_onto_a_dead_leaf_removes_the_chain_and_starts_afresh(dead):
    existing = [row("a", S.SUCCEEDED, True), row("b", dead), row("c", S.RUNNING)]
    assert decide(P.APPEND_OR_REPLACE, existing) == Decision(remove=("a", "b", "c"))


def test_append_or_replace_ignores_a_dead_row_that_is_not_a_leaf():
    existing = [row("a", S.FAILED, True), row("b", S.FAILED)]
    assert decide(P.APPEND_OR_REPLACE, [row("a", S.CANCELLED, True), row("b", S.ENQUEUED)]) == Decision(
        prerequisites=("b",), new_chain=False
    )
    assert decide(P.APPEND_OR_REPLACE, existing).remove == ("a", "b")


def test_append_or_replace_onto_a_healthy_chain_appends():
    existing = [row("a", S.SUCCEEDED)]
    assert decide(P.APPEND_OR_REPLACE, existing) == Decision(prerequisites=("a",), new_chain=False)


@pytest.mark.parametrize("policy", ["REPLACE", 0, None, "keep"])
def test_an_unknown_policy_is_a_value_error_naming_it(policy):
    with pytest.raises(ValueError, match="ExistingWorkPolicy"):
        decide(policy, [row("a", S.ENQUEUED)])  # type: ignore[arg-type]


# -- exhaustively ----------------------------------------------------------------------------------


def _all_existing(max_rows: int = 3):
    kinds = list(itertools.product(S, (False, True)))
    for n in range(max_rows + 1):
        for combo in itertools.product(kinds, repeat=n):
            yield [row(f"r{i}", state, deps) for i, (state, deps) in enumerate(combo)]


def _android(policy: ExistingWorkPolicy, existing: list[Existing]) -> Decision:
    """EnqueueRunnable's branches, written out independently of decide()."""
    if not existing:
        return Decision()
    ids = tuple(e.id for e in existing)
    leaves = [e for e in existing if not e.has_dependents]
    if policy is P.APPEND:
        return Decision(prerequisites=tuple(e.id for e in leaves), new_chain=False)
    if policy is P.APPEND_OR_REPLACE:
        if any(e.state in (S.FAILED, S.CANCELLED) for e in leaves):
            return Decision(remove=ids)
        return Decision(prerequisites=tuple(e.id for e in leaves), new_chain=False)
    if policy is P.KEEP and any(e.state in LIVE for e in existing):
        return Decision(keep_existing=True, new_chain=False)
    return Decision(remove=ids)


@pytest.mark.parametrize("policy", list(P))
def test_every_combination_of_up_to_three_existing_rows_matches_android(policy):
    checked = 0
    for existing in _all_existing():
        assert decide(policy, existing) == _android(policy, existing), existing
        checked += 1
    assert checked == 1 + 12 + 12**2 + 12**3


@pytest.mark.parametrize("policy", list(P))
def test_no_decision_both_keeps_and_removes_or_removes_and_appends(policy):
    for existing in _all_existing():
        d = decide(policy, existing)
        assert not (d.keep_existing and (d.remove or d.prerequisites))
        assert not (d.remove and d.prerequisites)
        assert d.new_chain == (not d.keep_existing and not (existing and not d.remove))


# -- the state new work is born in --------------------------------------------------------------------


def test_work_without_prerequisites_is_enqueued():
    assert initial_state([]) is S.ENQUEUED


def test_work_whose_prerequisites_all_succeeded_is_enqueued():
    assert initial_state([S.SUCCEEDED, S.SUCCEEDED]) is S.ENQUEUED


@pytest.mark.parametrize("unfinished", [S.ENQUEUED, S.RUNNING, S.BLOCKED])
def test_work_with_an_unfinished_prerequisite_is_blocked(unfinished):
    assert initial_state([S.SUCCEEDED, unfinished]) is S.BLOCKED


def test_work_with_a_failed_prerequisite_is_born_failed_even_beside_a_cancelled_one():
    assert initial_state([S.CANCELLED, S.RUNNING, S.FAILED]) is S.FAILED


def test_work_with_a_cancelled_prerequisite_is_born_cancelled():
    assert initial_state([S.SUCCEEDED, S.BLOCKED, S.CANCELLED]) is S.CANCELLED


def test_initial_state_over_every_combination_of_three_prerequisites():
    for states in itertools.product(S, repeat=3):
        got = initial_state(states)
        if all(s is S.SUCCEEDED for s in states):
            assert got is S.ENQUEUED
        elif S.FAILED in states:
            assert got is S.FAILED
        elif S.CANCELLED in states:
            assert got is S.CANCELLED
        else:
            assert got is S.BLOCKED


# -- update_work's answer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "result"),
    [
        (S.ENQUEUED, UpdateResult.APPLIED_IMMEDIATELY),
        (S.BLOCKED, UpdateResult.APPLIED_IMMEDIATELY),
        (S.RUNNING, UpdateResult.APPLIED_FOR_NEXT_RUN),
        (S.SUCCEEDED, UpdateResult.NOT_APPLIED),
        (S.FAILED, UpdateResult.NOT_APPLIED),
        (S.CANCELLED, UpdateResult.NOT_APPLIED),
    ],
)
def test_update_result_by_state(state, result):
    assert update_result(state) is result
