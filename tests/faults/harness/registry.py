"""Scenarios, registered once and run by both tiers: pytest (small N) and ``make soak`` (N = 10,000).

A scenario is a function of a :class:`Context` returning the checker's :class:`Report`, whose
figures (jobs, faults by kind, lost, ...) become a row of the soak table. Register one with
``@scenario(...)`` in any ``tests/faults/test_*.py`` module: the soak runner imports them all.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checker import Report
from .supervisor import Supervisor
from .target import Target

#: The seed of every random choice in a run; printed with each row so a failure replays.
SEED_ENV = "WM_FAULT_SEED"


@dataclass
class Context:
    name: str
    backend: str
    tier: str  # "fast" (pytest) or "soak"
    n: int
    seed: int
    workdir: Path
    target: Target = field(init=False)
    _supervisors: list[Supervisor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.target = Target(self.backend, self.workdir)

    @property
    def soak(self) -> bool:
        return self.tier == "soak"

    def supervisor(self, **env: str) -> Supervisor:
        sup = Supervisor(self.target, self.seed, **env)
        self._supervisors.append(sup)
        return sup

    def close(self) -> None:
        for sup in self._supervisors:
            sup.close()
        self.target.drop()


ScenarioFn = Callable[[Context], Report]


@dataclass(frozen=True)
class Scenario:
    name: str
    case: str
    title: str
    fn: ScenarioFn
    fast_n: int
    soak_n: int
    backends: tuple[str, ...]
    #: soak sizes that differ by backend (a case the plan sets on SQLite, repeated on PostgreSQL)
    soak_n_by_backend: dict[str, int]
    #: whether ``make soak`` runs it unless named (a long regression check beyond the plan's need)
    in_soak: bool


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str,
    *,
    case: str,
    title: str,
    fast_n: int,
    soak_n: int,
    backends: tuple[str, ...] = ("sqlite",),
    soak_n_by_backend: dict[str, int] | None = None,
    in_soak: bool = True,
) -> Callable[[ScenarioFn], ScenarioFn]:
    def register(fn: ScenarioFn) -> ScenarioFn:
        SCENARIOS[name] = Scenario(
            name, case, title, fn, fast_n, soak_n, backends, soak_n_by_backend or {}, in_soak
        )
        return fn

    return register


def default_seed() -> int:
    return int(os.environ.get(SEED_ENV, "20261129"))


@contextlib.contextmanager
def context(name: str, backend: str, tier: str, workdir: Path, *, n: int | None = None,
            seed: int | None = None) -> Iterator[Context]:  # fmt: skip
    sc = SCENARIOS[name]
    ctx = Context(
        name, backend, tier, n or (sc.soak_n_by_backend.get(backend, sc.soak_n) if tier == "soak" else sc.fast_n),
        default_seed() if seed is None else seed, workdir,
    )  # fmt: skip
    try:
        yield ctx
    finally:
        ctx.close()


def run(name: str, backend: str, tier: str, workdir: Path, **kwargs: Any) -> Report:
    """Run one scenario; its report carries a ``seconds`` figure."""
    with context(name, backend, tier, workdir, **kwargs) as ctx:
        started = time.monotonic()
        report = SCENARIOS[name].fn(ctx)
        report.figures["seconds"] = round(time.monotonic() - started)
        report.figures.setdefault("seed", ctx.seed)
    return report
