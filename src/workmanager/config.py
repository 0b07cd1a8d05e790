"""Configuration: Android's numbers as named defaults, each one changeable."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from workmanager.clock import Clock, SystemClock

if TYPE_CHECKING:
    from workmanager.worker import WorkerFactory


class ConstraintReader(Protocol):
    """Anything that reads constraint answers (see workmanager.engine.constraints)."""

    def read(self) -> dict[str, bool]:
        """ConstraintState field names (connected, metered, charging, ...) to their values."""
        ...


__all__ = ["Configuration"]

MIN_BACKOFF = timedelta(seconds=10)
MAX_BACKOFF = timedelta(hours=5)
DEFAULT_BACKOFF_DELAY = timedelta(seconds=30)
MIN_PERIODIC_INTERVAL = timedelta(minutes=15)
MIN_PERIODIC_FLEX = timedelta(minutes=5)
PRUNE_THRESHOLD = timedelta(days=1)


#: Work run at once by one process. Android sizes its thread pool max(2, min(cpus - 1, 4));
#: Python work mostly waits on I/O and a claim costs one commit for the whole batch, so a
#: wider default keeps a process busy (and its commits shared) without costing much.
DEFAULT_MAX_CONCURRENCY = 16


@dataclass(frozen=True)
class Configuration:
    """How a WorkManager runs. Every field has Android's default where Android has one."""

    #: Work run at once by this process (Worker threads plus CoroutineWorker tasks).
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    min_backoff: timedelta = MIN_BACKOFF
    max_backoff: timedelta = MAX_BACKOFF
    default_backoff_delay: timedelta = DEFAULT_BACKOFF_DELAY
    min_periodic_interval: timedelta = MIN_PERIODIC_INTERVAL
    min_periodic_flex: timedelta = MIN_PERIODIC_FLEX
    #: Slots of max_concurrency that only expedited work may use (it also goes first).
    #: None: one slot, when there is more than one.
    expedited_reserved_slots: int | None = None
    #: Expedited work may run this long in total per expedited_quota_window; beyond it,
    #: its OutOfQuotaPolicy applies (run as ordinary work, or drop at enqueue).
    expedited_quota: timedelta = timedelta(minutes=10)
    expedited_quota_window: timedelta = timedelta(hours=1)
    #: Largest serialized input, output or progress accepted.
    max_data_bytes: int = 10 * 1024
    #: Finished work older than this (plus its keep_results_for) is pruned automatically.
    prune_threshold: timedelta = PRUNE_THRESHOLD
    #: "full" survives power loss (WAL + synchronous=FULL); "normal" may lose the last commits.
    durability: Literal["full", "normal"] = "full"
    #: How long one SQLite call waits for another process's write lock before retrying.
    busy_timeout: timedelta = timedelta(seconds=5)
    #: A running process renews its lease this often ...
    heartbeat_interval: timedelta = timedelta(seconds=10)
    #: ... and its work is taken over when the lease is this old (or at once when it is dead).
    lease_timeout: timedelta = timedelta(seconds=60)
    #: How often a running process looks for work orphaned by dead processes.
    rescue_interval: timedelta = timedelta(seconds=2)
    #: Work orphaned by its process dying this many times in a row is FAILED (crash loop).
    max_orphaned_runs: int = 3
    #: Fallback check for other processes' changes where file events are unavailable.
    poll_interval: timedelta = timedelta(milliseconds=50)
    #: On stop(), running work gets this long to finish before it is released.
    shutdown_grace: timedelta = timedelta(seconds=10)
    #: Ordinary work running longer than this is stopped with StopReason.TIMEOUT (Android's
    #: 10 minutes); work that called set_foreground() is exempt. None: no limit.
    max_execution_time: timedelta | None = timedelta(minutes=10)
    #: Where constraint answers come from; None: the OS (network, battery, storage, load).
    constraint_trackers: tuple[ConstraintReader, ...] | None = None
    #: How often the trackers ask the OS again.
    constraint_poll_interval: timedelta = timedelta(seconds=5)
    clock: Clock = field(default_factory=SystemClock)
    worker_factory: WorkerFactory | None = None

    @property
    def reserved_expedited_slots(self) -> int:
        """expedited_reserved_slots, resolved."""
        if self.expedited_reserved_slots is not None:
            return self.expedited_reserved_slots
        return 1 if self.max_concurrency > 1 else 0

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"Configuration.max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.expedited_reserved_slots is not None and not (
            0 <= self.expedited_reserved_slots < self.max_concurrency
        ):
            raise ValueError(
                f"Configuration.expedited_reserved_slots must be in [0, max_concurrency - 1 = "
                f"{self.max_concurrency - 1}], got {self.expedited_reserved_slots}"
            )
        if self.max_data_bytes < 1:
            raise ValueError(f"Configuration.max_data_bytes must be >= 1, got {self.max_data_bytes}")
        if self.min_backoff > self.max_backoff:
            raise ValueError(
                f"Configuration.min_backoff ({self.min_backoff}) exceeds max_backoff ({self.max_backoff})"
            )
        if self.durability not in ("full", "normal"):
            raise ValueError(f"Configuration.durability must be 'full' or 'normal', got {self.durability!r}")
        if self.max_orphaned_runs < 1:
            raise ValueError(f"Configuration.max_orphaned_runs must be >= 1, got {self.max_orphaned_runs}")
        for name in (
            "heartbeat_interval",
            "lease_timeout",
            "rescue_interval",
            "poll_interval",
            "busy_timeout",
        ):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"Configuration.{name} must be positive, got {getattr(self, name)}")
        if self.lease_timeout <= self.heartbeat_interval:
            raise ValueError(
                f"Configuration.lease_timeout ({self.lease_timeout}) must exceed "
                f"heartbeat_interval ({self.heartbeat_interval})"
            )
