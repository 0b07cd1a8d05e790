"""What the app sees of its work: WorkInfo, its State, StopReason, queries."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from workmanager.data import Data
from workmanager.requests import Constraints

__all__ = [
    "ForegroundInfo",
    "PeriodicityInfo",
    "State",
    "StopReason",
    "UpdateResult",
    "WorkInfo",
    "WorkQuery",
]


class State(enum.Enum):
    """The six states of work; the values are Android's database codes."""

    ENQUEUED = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    BLOCKED = 4
    CANCELLED = 5

    @property
    def is_finished(self) -> bool:
        """SUCCEEDED, FAILED and CANCELLED are terminal."""
        return self in _FINISHED


_FINISHED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
_WorkState = State  # WorkInfo.State shadows the name inside the class body


class StopReason(enum.IntEnum):
    """Why the previous run stopped; Android's values, plus two of workmanager's own."""

    UNKNOWN = -512
    NOT_STOPPED = -256
    #: Work orphaned by its process dying too many times in a row (a crash loop).
    WORKER_LOST = -129
    #: A custom constraint (Constraints.custom) stopped holding.
    CONSTRAINT_CUSTOM = -130
    FOREGROUND_SERVICE_TIMEOUT = -128
    CANCELLED_BY_APP = 1
    PREEMPT = 2
    TIMEOUT = 3
    DEVICE_STATE = 4
    CONSTRAINT_BATTERY_NOT_LOW = 5
    CONSTRAINT_CHARGING = 6
    CONSTRAINT_CONNECTIVITY = 7
    CONSTRAINT_DEVICE_IDLE = 8
    CONSTRAINT_STORAGE_NOT_LOW = 9
    QUOTA = 10
    BACKGROUND_RESTRICTION = 11
    APP_STANDBY = 12
    USER = 13
    SYSTEM_PROCESSING = 14
    ESTIMATED_APP_LAUNCH_TIME_CHANGED = 15


class UpdateResult(enum.Enum):
    """What ``WorkManager.update_work`` did."""

    NOT_APPLIED = 0
    APPLIED_IMMEDIATELY = 1
    APPLIED_FOR_NEXT_RUN = 2


@dataclass(frozen=True)
class ForegroundInfo:
    """Describes long-running work to the user (Android's notification, here a title and text)."""

    title: str
    text: str = ""


@dataclass(frozen=True)
class PeriodicityInfo:
    repeat_interval: timedelta
    flex_interval: timedelta


@dataclass(frozen=True)
class WorkInfo:
    """A snapshot of one work request; compares by value."""

    State: ClassVar[type[State]] = State

    id: uuid.UUID
    state: _WorkState
    tags: frozenset[str] = frozenset()
    output_data: Data = Data.EMPTY
    progress: Data = Data.EMPTY
    run_attempt_count: int = 0
    generation: int = 0
    constraints: Constraints = field(default_factory=Constraints)
    initial_delay: timedelta = timedelta(0)
    periodicity_info: PeriodicityInfo | None = None
    next_schedule_time: datetime | None = None
    stop_reason: StopReason = StopReason.NOT_STOPPED
    #: Set while long-running work (set_foreground) runs; beyond Android's WorkInfo.
    foreground_info: ForegroundInfo | None = None


@dataclass(frozen=True)
class WorkQuery:
    """Which work to list: components AND-ed, values within one OR-ed; at least one needed."""

    ids: tuple[uuid.UUID, ...] = ()
    tags: tuple[str, ...] = ()
    unique_work_names: tuple[str, ...] = ()
    states: tuple[State, ...] = ()

    def __init__(
        self,
        ids: Iterable[uuid.UUID] = (),
        tags: Iterable[str] = (),
        unique_work_names: Iterable[str] = (),
        states: Iterable[State] = (),
    ) -> None:
        object.__setattr__(self, "ids", tuple(ids))
        object.__setattr__(self, "tags", tuple(tags))
        object.__setattr__(self, "unique_work_names", tuple(unique_work_names))
        object.__setattr__(self, "states", tuple(states))
        if not (self.ids or self.tags or self.unique_work_names or self.states):
            raise ValueError("WorkQuery needs at least one of ids, tags, unique_work_names or states")
        for state in self.states:
            if not isinstance(state, State):
                raise ValueError(f"WorkQuery.states: {state!r} is not a WorkInfo.State")
        for work_id in self.ids:
            if not isinstance(work_id, uuid.UUID):
                raise ValueError(f"WorkQuery.ids: {work_id!r} is not a uuid.UUID")
