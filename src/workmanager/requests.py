"""Work requests and their policies: plain values, validated at construction.

Limits that ``Configuration`` can change (backoff bounds, periodic minimums, the Data
size limit) are applied at enqueue, where the manager knows the configuration.
"""

from __future__ import annotations

import enum
import functools
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from workmanager.data import Data, DataLike, InputMerger, OverwritingInputMerger
from workmanager.ids import uuid7

if TYPE_CHECKING:
    from workmanager.worker import ListenableWorker

__all__ = [
    "BackoffPolicy",
    "Constraints",
    "ExistingPeriodicWorkPolicy",
    "ExistingWorkPolicy",
    "NetworkType",
    "OneTimeWorkRequest",
    "OutOfQuotaPolicy",
    "PeriodicWorkRequest",
    "WorkRequest",
]


class BackoffPolicy(enum.Enum):
    EXPONENTIAL = 0
    LINEAR = 1


class NetworkType(enum.Enum):
    NOT_REQUIRED = 0
    CONNECTED = 1
    UNMETERED = 2
    NOT_ROAMING = 3
    METERED = 4
    TEMPORARILY_UNMETERED = 5


class OutOfQuotaPolicy(enum.Enum):
    RUN_AS_NON_EXPEDITED_WORK_REQUEST = 0
    DROP_WORK_REQUEST = 1


class ExistingWorkPolicy(enum.Enum):
    REPLACE = 0
    KEEP = 1
    APPEND = 2
    APPEND_OR_REPLACE = 3


class ExistingPeriodicWorkPolicy(enum.Enum):
    #: Deprecated alias of CANCEL_AND_REENQUEUE, as on Android.
    REPLACE = 0
    KEEP = 1
    UPDATE = 2
    CANCEL_AND_REENQUEUE = 3


@dataclass(frozen=True)
class Constraints:
    """Conditions that must hold for work to start (and keep running)."""

    required_network_type: NetworkType = NetworkType.NOT_REQUIRED
    requires_charging: bool = False
    requires_battery_not_low: bool = False
    requires_device_idle: bool = False
    requires_storage_not_low: bool = False
    #: Names of custom constraints (beyond Android), answered by trackers registered under
    #: those names in Configuration.constraint_trackers.
    custom: frozenset[str] = frozenset()
    #: Android's content URI triggers, for files: the work waits until something under one
    #: of these paths changes, then runs once changes have paused for
    #: trigger_content_update_delay, or trigger_max_delay after the first change.
    trigger_paths: tuple[str, ...] = ()
    trigger_content_update_delay: timedelta = timedelta(seconds=10)
    trigger_max_delay: timedelta = timedelta(minutes=2)

    def __post_init__(self) -> None:
        if not isinstance(self.required_network_type, NetworkType):
            raise ValueError(
                f"Constraints.required_network_type must be a NetworkType, got {self.required_network_type!r}"
            )
        if isinstance(self.custom, str):
            raise ValueError(f"Constraints.custom must be a collection of names, got the str {self.custom!r}")
        custom = frozenset(self.custom)
        for name in custom:
            if not isinstance(name, str) or not name:
                raise ValueError(f"Constraints.custom: names must be non-empty str, got {name!r}")
        object.__setattr__(self, "custom", custom)
        if isinstance(self.trigger_paths, str):
            raise ValueError(
                f"Constraints.trigger_paths must be a list of paths, got the str {self.trigger_paths!r}"
            )
        paths = tuple(os.path.abspath(os.fspath(p)) for p in self.trigger_paths)
        object.__setattr__(self, "trigger_paths", paths)
        for name in ("trigger_content_update_delay", "trigger_max_delay"):
            object.__setattr__(self, name, _duration(f"Constraints.{name}", getattr(self, name), _ZERO))

    @property
    def is_empty(self) -> bool:
        return self == _NO_CONSTRAINTS

    @functools.cached_property
    def stored(self) -> tuple[int, int, int, int, int]:
        """The values as stored: (network type, charging, battery not low, idle, storage not low)."""
        return (
            self.required_network_type.value,
            int(self.requires_charging),
            int(self.requires_battery_not_low),
            int(self.requires_device_idle),
            int(self.requires_storage_not_low),
        )

    @functools.cached_property
    def stored_trigger_delays_ms(self) -> tuple[int, int]:
        """(trigger_content_update_delay, trigger_max_delay) in whole milliseconds, as stored."""
        return (
            self.trigger_content_update_delay // _ONE_MS,
            self.trigger_max_delay // _ONE_MS,
        )


_ZERO = timedelta(0)
_ONE_MS = timedelta(milliseconds=1)
_HUNDRED_YEARS = timedelta(days=365 * 100)


def _duration(name: str, value: timedelta | float | int | None, default: timedelta) -> timedelta:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise ValueError(f"{name} must be a timedelta or a number of seconds, got {value!r}")
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta < _ZERO:
        raise ValueError(f"{name} must not be negative, got {delta}")
    if delta > _HUNDRED_YEARS:
        raise ValueError(f"{name} of {delta} is beyond the limit of 100 years")
    return delta


_NO_CONSTRAINTS = Constraints()


#: Longest tag or unique work name, in characters: PostgreSQL's btree entries (the unique
#: index on names, the tag index) must stay under ~2,700 bytes, and 4-byte characters x 600 do.
MAX_NAME_LENGTH = 600


def check_label(what: str, value: object) -> str:
    """A tag or unique work name: a non-empty str of at most MAX_NAME_LENGTH characters that
    both backends can store (no NUL, which PostgreSQL text refuses; no lone surrogate, which
    UTF-8 cannot encode). ValueError naming the field, the value and the limit otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty str, got {value!r}")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{what} {value[:40]!r}... has {len(value)} characters, more than the limit of {MAX_NAME_LENGTH}"
        )
    if "\0" in value:
        raise ValueError(f"{what} {value!r} contains a NUL character, which the database cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not valid Unicode (a lone surrogate)") from None
    return value


def worker_name_of(worker: type[ListenableWorker] | str) -> str:
    """The registry name a request refers to."""
    if isinstance(worker, str):
        if not worker:
            raise ValueError("worker name must not be empty")
        return worker
    name = getattr(worker, "name", None)
    if not isinstance(worker, type) or not isinstance(name, str):
        raise TypeError(f"worker must be a Worker subclass or a registered name, got {worker!r}")
    return name


@dataclass(frozen=True, eq=False)
class WorkRequest:
    """What both kinds of request share. Build a OneTimeWorkRequest or a PeriodicWorkRequest."""

    #: A new UUIDv7 (time-ordered: stamped when the request is built) unless given with ``id=``.
    #: The dashboard lists work newest first by id, so an id given here (a uuid4, say) takes
    #: the place its value sorts to, not the place of when it was enqueued.
    id: uuid.UUID
    worker_name: str
    input_data: Data
    constraints: Constraints
    initial_delay: timedelta
    backoff_policy: BackoffPolicy
    #: None: Configuration.default_backoff_delay.
    backoff_delay: timedelta | None
    tags: frozenset[str]
    expedited: bool
    out_of_quota_policy: OutOfQuotaPolicy
    keep_results_for: timedelta
    worker_class: type[ListenableWorker] | None = field(default=None, repr=False)

    @property
    def is_periodic(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkRequest) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def _common(
    worker: type[ListenableWorker] | str,
    *,
    input_data: DataLike,
    constraints: Constraints | None,
    initial_delay: timedelta | float | None,
    backoff_policy: BackoffPolicy,
    backoff_delay: timedelta | float | None,
    tags: Iterable[str],
    expedited: bool,
    out_of_quota_policy: OutOfQuotaPolicy,
    keep_results_for: timedelta | float | None,
    id: uuid.UUID | None,
) -> dict[str, Any]:
    # Every request passes here: the defaults (None, no tags) are decided without a call.
    name = worker_name_of(worker)
    if not tags:
        tag_set = _worker_tag(name)
    else:
        if isinstance(tags, str):
            raise ValueError(f"tags must be a collection of str, got the str {tags!r}; wrap it: {{{tags!r}}}")
        tag_set = frozenset(tags)
        for tag in tag_set:
            check_label("tags: a tag", tag)
        tag_set = tag_set | {name}
    if constraints is None:
        constraints = _NO_CONSTRAINTS
    elif not isinstance(constraints, Constraints):
        raise ValueError(f"constraints must be a Constraints, got {constraints!r}")
    if type(backoff_policy) is not BackoffPolicy:
        raise ValueError(f"backoff_policy must be a BackoffPolicy, got {backoff_policy!r}")
    if type(out_of_quota_policy) is not OutOfQuotaPolicy:
        raise ValueError(f"out_of_quota_policy must be an OutOfQuotaPolicy, got {out_of_quota_policy!r}")
    if id is None:
        id = uuid7()
    elif not isinstance(id, uuid.UUID):
        raise ValueError(f"id must be a uuid.UUID, got {id!r}")
    delay = _ZERO if initial_delay is None else _duration("initial_delay", initial_delay, _ZERO)
    backoff = None if backoff_delay is None else _duration("backoff_delay", backoff_delay, _ZERO)
    if expedited:
        if (
            constraints.requires_charging
            or constraints.requires_battery_not_low
            or constraints.requires_device_idle
            or constraints.trigger_paths
        ):
            raise ValueError("expedited work only supports network and storage constraints")
        if delay > _ZERO:
            raise ValueError(f"expedited work cannot be delayed (initial_delay={delay})")
    if constraints.requires_device_idle and (
        backoff is not None or backoff_policy is not BackoffPolicy.EXPONENTIAL
    ):
        raise ValueError("cannot set backoff criteria on work that requires_device_idle")
    return {
        "id": id,
        "worker_name": name,
        "input_data": Data.of(input_data),
        "constraints": constraints,
        "initial_delay": delay,
        "backoff_policy": backoff_policy,
        "backoff_delay": backoff,
        "tags": tag_set,  # with the worker's name, as Android adds the worker's class name
        "expedited": bool(expedited),
        "out_of_quota_policy": out_of_quota_policy,
        "keep_results_for": (
            _ZERO if keep_results_for is None else _duration("keep_results_for", keep_results_for, _ZERO)
        ),
        "worker_class": None if isinstance(worker, str) else worker,
    }


@functools.lru_cache(maxsize=256)
def _worker_tag(name: str) -> frozenset[str]:
    """The tags of a request given none: its worker's name (one set per name, shared)."""
    return frozenset((name,))


@dataclass(frozen=True, eq=False)
class OneTimeWorkRequest(WorkRequest):
    """Work that runs (successfully) once.

    >>> OneTimeWorkRequest("upload", input_data={"path": "a.jpg"}).tags
    frozenset({'upload'})
    """

    input_merger: type[InputMerger] = OverwritingInputMerger

    def __init__(
        self,
        worker: type[ListenableWorker] | str,
        *,
        input_data: DataLike = None,
        constraints: Constraints | None = None,
        initial_delay: timedelta | float | None = None,
        backoff_policy: BackoffPolicy = BackoffPolicy.EXPONENTIAL,
        backoff_delay: timedelta | float | None = None,
        tags: Iterable[str] = (),
        expedited: bool = False,
        out_of_quota_policy: OutOfQuotaPolicy = OutOfQuotaPolicy.RUN_AS_NON_EXPEDITED_WORK_REQUEST,
        input_merger: type[InputMerger] = OverwritingInputMerger,
        keep_results_for: timedelta | float | None = None,
        id: uuid.UUID | None = None,
    ) -> None:
        values = _common(
            worker,
            input_data=input_data,
            constraints=constraints,
            initial_delay=initial_delay,
            backoff_policy=backoff_policy,
            backoff_delay=backoff_delay,
            tags=tags,
            expedited=expedited,
            out_of_quota_policy=out_of_quota_policy,
            keep_results_for=keep_results_for,
            id=id,
        )
        if input_merger is not OverwritingInputMerger and not (
            isinstance(input_merger, type) and issubclass(input_merger, InputMerger)
        ):
            raise ValueError(f"input_merger must be an InputMerger subclass, got {input_merger!r}")
        values["input_merger"] = input_merger
        self.__dict__.update(values)  # frozen: set once, here, without __setattr__ per field

    @classmethod
    def from_worker(cls, worker: type[ListenableWorker] | str) -> OneTimeWorkRequest:
        """A request with every default (Android's ``OneTimeWorkRequest.from``)."""
        return cls(worker)


@dataclass(frozen=True, eq=False)
class PeriodicWorkRequest(WorkRequest):
    """Work that repeats every ``repeat_interval``, in a flex window at the end of each period.

    The interval and flex are clamped to Configuration's minimums at enqueue, with a warning.
    Beyond Android: ``cron="0 3 * * *"`` (with ``timezone="Europe/Berlin"``, default UTC)
    runs at each time the expression names instead; a run missed during downtime happens
    once, late, and the next one at the next named time after it finished.
    """

    repeat_interval: timedelta = timedelta(minutes=15)
    flex_interval: timedelta = timedelta(minutes=15)
    cron: str | None = None
    timezone: str | None = None

    def __init__(
        self,
        worker: type[ListenableWorker] | str,
        repeat_interval: timedelta | float | None = None,
        flex_interval: timedelta | float | None = None,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        input_data: DataLike = None,
        constraints: Constraints | None = None,
        initial_delay: timedelta | float | None = None,
        backoff_policy: BackoffPolicy = BackoffPolicy.EXPONENTIAL,
        backoff_delay: timedelta | float | None = None,
        tags: Iterable[str] = (),
        keep_results_for: timedelta | float | None = None,
        id: uuid.UUID | None = None,
    ) -> None:
        values = _common(
            worker,
            input_data=input_data,
            constraints=constraints,
            initial_delay=initial_delay,
            backoff_policy=backoff_policy,
            backoff_delay=backoff_delay,
            tags=tags,
            expedited=False,
            out_of_quota_policy=OutOfQuotaPolicy.RUN_AS_NON_EXPEDITED_WORK_REQUEST,
            keep_results_for=keep_results_for,
            id=id,
        )
        if values["constraints"].trigger_paths:
            raise ValueError(
                "periodic work cannot have trigger_paths (Android: content URI triggers are one-time)"
            )
        if cron is None:
            if repeat_interval is None:
                raise ValueError("PeriodicWorkRequest needs repeat_interval (or a cron expression)")
            if timezone is not None:
                raise ValueError(f"timezone={timezone!r} only applies to cron schedules")
            interval = _duration("repeat_interval", repeat_interval, _ZERO)
            values["repeat_interval"] = interval
            values["flex_interval"] = _duration("flex_interval", flex_interval, interval)
        else:
            if repeat_interval is not None or flex_interval is not None:
                raise ValueError("give either repeat_interval/flex_interval or cron, not both")
            from workmanager import cron as cron_schedule

            cron_schedule.validate(cron, timezone or "UTC")
            gap = cron_schedule.typical_gap(cron, timezone or "UTC")
            values["repeat_interval"] = gap
            values["flex_interval"] = gap
        values["cron"] = cron
        values["timezone"] = (timezone or "UTC") if cron is not None else None
        self.__dict__.update(values)  # frozen: set once, here, without __setattr__ per field

    @property
    def is_periodic(self) -> bool:
        return True
