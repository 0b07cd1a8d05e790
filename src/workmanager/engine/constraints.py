"""Constraint trackers: is the network up, the machine charging, the disk not full, ...

Each tracker reads one condition from the OS (through psutil and the standard
library). :class:`ConstraintTrackers` polls them (the OS, never the database) and
tells its listeners when an answer changes; the dispatcher passes the current
:class:`ConstraintState` to its claim, so a claim stays one statement.

Where the OS cannot tell, a documented assumption stands in:

* network: connected when a non-loopback interface is up with a routable address;
  metered only when NetworkManager (``nmcli``) says so; roaming is never reported;
* battery: a machine without a battery is on mains power (charging, not low);
  low below 15 %, not low again from 20 % (Android's hysteresis), or when plugged in;
* storage: low when the database's volume has less free space than
  min(10 % of its size, 500 MB), as Android's storage-low threshold;
* device idle: the 1-minute load average per CPU is below 0.3 and, where systemd-logind
  tracks user sessions, none of them is in use (IdleHint); without logind, load alone.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

import psutil

from workmanager.config import ConstraintReader
from workmanager.info import StopReason
from workmanager.requests import NetworkType

log = logging.getLogger("workmanager.constraints")

#: How often the OS is asked again.
DEFAULT_POLL_INTERVAL_S = 5.0


@dataclass(frozen=True)
class ConstraintState:
    """The trackers' current answers."""

    connected: bool = True
    metered: bool = False
    roaming: bool = False
    charging: bool = True
    battery_not_low: bool = True
    device_idle: bool = True
    storage_not_low: bool = True
    #: Custom constraints (by name) that currently hold, and every name a tracker answers for.
    custom_met: frozenset[str] = frozenset()
    custom_known: frozenset[str] = frozenset()

    def network_ok(self, required: NetworkType) -> bool:
        if required is NetworkType.NOT_REQUIRED:
            return True
        if not self.connected:
            return False
        if required in (NetworkType.UNMETERED, NetworkType.TEMPORARILY_UNMETERED):
            return not self.metered
        if required is NetworkType.NOT_ROAMING:
            return not self.roaming
        if required is NetworkType.METERED:
            return self.metered
        return True

    def unmet_reason(
        self, stored: tuple[int, int, int, int, int], custom: frozenset[str] = frozenset()
    ) -> StopReason | None:
        """Why constraints stored as (network, charging, battery, idle, storage) do not hold."""
        network, charging, battery_not_low, idle, storage_not_low = stored
        if custom - self.custom_met:
            return StopReason.CONSTRAINT_CUSTOM
        if not self.network_ok(NetworkType(network)):
            return StopReason.CONSTRAINT_CONNECTIVITY
        if charging and not self.charging:
            return StopReason.CONSTRAINT_CHARGING
        if battery_not_low and not self.battery_not_low:
            return StopReason.CONSTRAINT_BATTERY_NOT_LOW
        if idle and not self.device_idle:
            return StopReason.CONSTRAINT_DEVICE_IDLE
        if storage_not_low and not self.storage_not_low:
            return StopReason.CONSTRAINT_STORAGE_NOT_LOW
        return None

    @classmethod
    def sql_fields(cls) -> tuple[str, ...]:
        """The field names trackers report (any other name a tracker reports is a custom one)."""
        return tuple(f.name for f in fields(cls) if not f.name.startswith("custom_"))

    def sql_params(self) -> dict[str, Any]:
        """The answers as the claim's parameters (see queries.sql)."""
        return {
            "net_connected": int(self.connected),
            "net_unmetered": int(self.connected and not self.metered),
            "net_not_roaming": int(self.connected and not self.roaming),
            "net_metered": int(self.connected and self.metered),
            "charging": int(self.charging),
            "battery_not_low": int(self.battery_not_low),
            "device_idle": int(self.device_idle),
            "storage_not_low": int(self.storage_not_low),
            "custom_met": sorted(self.custom_met),
        }


ALL_MET = ConstraintState()
NONE_MET = ConstraintState(False, False, False, False, False, False, False)


class ConstraintTracker(ABC):
    """Reads some fields of the ConstraintState from the OS."""

    @abstractmethod
    def read(self) -> dict[str, bool]:
        """The current values, as ConstraintState field names to booleans."""


class NetworkTracker(ConstraintTracker):
    def __init__(self) -> None:
        self._nmcli = shutil.which("nmcli")

    def read(self) -> dict[str, bool]:
        stats = psutil.net_if_stats()
        connected = False
        for name, addrs in psutil.net_if_addrs().items():
            if not stats.get(name) or not stats[name].isup:
                continue
            for addr in addrs:
                if _routable(addr.address):
                    connected = True
        return {"connected": connected, "metered": connected and self._metered(), "roaming": False}

    def _metered(self) -> bool:
        if self._nmcli is None:
            return False
        try:
            out = subprocess.run(
                [self._nmcli, "-t", "-f", "GENERAL.METERED", "device", "show"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return any(line.split(":", 1)[-1].startswith("yes") for line in out.splitlines())


def _routable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False  # a MAC address
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


class BatteryTracker(ConstraintTracker):
    LOW_PERCENT = 15
    OKAY_PERCENT = 20

    def __init__(self) -> None:
        self._low = False

    def read(self) -> dict[str, bool]:
        try:
            battery = psutil.sensors_battery()
        except (AttributeError, NotImplementedError, OSError):
            battery = None
        if battery is None:
            return {"charging": True, "battery_not_low": True}
        plugged = bool(battery.power_plugged)
        if battery.percent < self.LOW_PERCENT:
            self._low = True
        elif battery.percent >= self.OKAY_PERCENT:
            self._low = False
        return {"charging": plugged, "battery_not_low": plugged or not self._low}


class StorageTracker(ConstraintTracker):
    LOW_BYTES_CAP = 500 * 1024 * 1024

    def __init__(self, folder: str) -> None:
        self._folder = folder

    def read(self) -> dict[str, bool]:
        try:
            usage = shutil.disk_usage(self._folder)
        except OSError:
            return {"storage_not_low": True}
        threshold = min(usage.total // 10, self.LOW_BYTES_CAP)
        return {"storage_not_low": usage.free >= threshold}


class IdleTracker(ConstraintTracker):
    """Idle: low load and, where systemd-logind tracks user sessions, nobody active in one."""

    LOAD_PER_CPU = 0.3

    def __init__(self) -> None:
        self._loginctl = shutil.which("loginctl")

    def read(self) -> dict[str, bool]:
        try:
            load1 = os.getloadavg()[0]
        except (AttributeError, OSError):
            return {"device_idle": False}
        idle = load1 / (os.cpu_count() or 1) < self.LOAD_PER_CPU
        return {"device_idle": idle and self._sessions_idle()}

    def _sessions_idle(self) -> bool:
        """False while a logind session is in use (its IdleHint is "no"); True without logind."""
        if self._loginctl is None:
            return True
        try:
            listed = subprocess.run(
                [self._loginctl, "list-sessions", "--no-legend"], capture_output=True, text=True, timeout=2
            )
            if listed.returncode != 0:
                self._loginctl = None  # no logind here (containers, non-systemd hosts): load only
                return True
            for session in (line.split()[0] for line in listed.stdout.splitlines() if line.strip()):
                hint = subprocess.run(
                    [self._loginctl, "show-session", session, "--property=IdleHint", "--value"],
                    capture_output=True,
                    text=True,
                    timeout=2,
                ).stdout.strip()
                if hint == "no":
                    return False
        except (OSError, subprocess.SubprocessError):
            return True
        return True


def default_trackers(database_folder: str) -> list[ConstraintTracker]:
    return [NetworkTracker(), BatteryTracker(), StorageTracker(database_folder), IdleTracker()]


class ConstraintTrackers:
    """Polls trackers on a daemon thread and reports changes to listeners."""

    def __init__(
        self, trackers: Iterable[ConstraintReader], *, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    ) -> None:
        self._trackers = list(trackers)
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._listeners: list[Callable[[ConstraintState], None]] = []
        self._state = self._read()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> ConstraintState:
        values: dict[str, Any] = {}
        for tracker in self._trackers:
            try:
                values.update(tracker.read())
            except Exception:
                log.exception("constraint tracker %s failed; keeping its last answer", type(tracker).__name__)
        previous = getattr(self, "_state", ALL_MET)
        standard = set(ConstraintState.sql_fields())
        custom = {name: bool(v) for name, v in values.items() if name not in standard}
        # A custom name a tracker stopped answering for keeps its last answer.
        met = (previous.custom_met - custom.keys()) | {name for name, v in custom.items() if v}
        return replace(
            previous,
            **{k: v for k, v in values.items() if k in standard},
            custom_met=frozenset(met),
            custom_known=previous.custom_known | custom.keys(),
        )

    @property
    def state(self) -> ConstraintState:
        with self._lock:
            return self._state

    def add_listener(self, listener: Callable[[ConstraintState], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def refresh(self) -> ConstraintState:
        """Read the OS now; notify listeners if anything changed."""
        state = self._read()
        with self._lock:
            changed = state != self._state
            self._state = state
            listeners = list(self._listeners) if changed else []
        for listener in listeners:
            listener(state)
        return state

    def start(self) -> None:
        if self._thread is None and self._trackers:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="workmanager-constraints", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_interval_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class FixedTracker(ConstraintTracker):
    """A tracker whose answers are set by hand (tests, and apps that know better than the OS)."""

    def __init__(self, **values: bool) -> None:
        self.values = dict(values)

    def read(self) -> dict[str, bool]:
        return dict(self.values)

    def set(self, **values: bool) -> None:
        self.values.update(values)
