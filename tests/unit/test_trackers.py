"""Constraint trackers read the OS; here the OS readings are faked."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

import pytest

from workmanager import NetworkType, StopReason
from workmanager.engine import constraints as c
from workmanager.engine.constraints import (
    BatteryTracker,
    ConstraintState,
    ConstraintTrackers,
    FixedTracker,
    IdleTracker,
    NetworkTracker,
    StorageTracker,
)

Addr = namedtuple("Addr", "address")
Battery = namedtuple("Battery", "percent power_plugged")
Usage = namedtuple("Usage", "total used free")


def fake_interfaces(monkeypatch, interfaces: dict[str, tuple[bool, list[str]]]) -> None:
    monkeypatch.setattr(
        c.psutil, "net_if_stats", lambda: {n: SimpleNamespace(isup=up) for n, (up, _) in interfaces.items()}
    )
    monkeypatch.setattr(
        c.psutil,
        "net_if_addrs",
        lambda: {n: [Addr(a) for a in addrs] for n, (_, addrs) in interfaces.items()},
    )


def no_nmcli(monkeypatch) -> NetworkTracker:
    monkeypatch.setattr(c.shutil, "which", lambda name: None)
    return NetworkTracker()


def test_network_is_connected_when_an_interface_is_up_with_a_routable_address(monkeypatch):
    fake_interfaces(
        monkeypatch, {"lo": (True, ["127.0.0.1"]), "eth0": (True, ["192.0.2.10", "02:42:ac:11:00:02"])}
    )
    assert no_nmcli(monkeypatch).read()["connected"] is True


def test_network_is_not_connected_with_only_loopback_and_link_local_addresses(monkeypatch):
    fake_interfaces(
        monkeypatch, {"lo": (True, ["127.0.0.1", "::1"]), "eth0": (True, ["fe80::1%eth0", "169.254.3.4"])}
    )
    assert no_nmcli(monkeypatch).read()["connected"] is False


def test_network_is_not_connected_when_the_interface_is_down(monkeypatch):
    fake_interfaces(monkeypatch, {"eth0": (False, ["192.0.2.10"])})
    assert no_nmcli(monkeypatch).read()["connected"] is False


def test_without_network_manager_the_network_is_assumed_unmetered_and_not_roaming(monkeypatch):
    fake_interfaces(monkeypatch, {"eth0": (True, ["192.0.2.10"])})
    assert no_nmcli(monkeypatch).read() == {"connected": True, "metered": False, "roaming": False}


def test_network_manager_saying_metered_makes_the_network_metered(monkeypatch):
    fake_interfaces(monkeypatch, {"wwan0": (True, ["198.51.100.7"])})
    monkeypatch.setattr(c.shutil, "which", lambda name: "/usr/bin/nmcli")
    monkeypatch.setattr(
        c.subprocess, "run", lambda *a, **k: SimpleNamespace(stdout="GENERAL.METERED:yes (guessed)\n")
    )
    assert NetworkTracker().read()["metered"] is True


def test_a_machine_without_a_battery_counts_as_charging_and_not_low(monkeypatch):
    monkeypatch.setattr(c.psutil, "sensors_battery", lambda: None)
    assert BatteryTracker().read() == {"charging": True, "battery_not_low": True}


def test_battery_low_below_15_percent_and_okay_again_only_from_20_percent(monkeypatch):
    tracker = BatteryTracker()
    readings = iter([Battery(14, False), Battery(17, False), Battery(20, False)])
    monkeypatch.setattr(c.psutil, "sensors_battery", lambda: next(readings))
    assert [tracker.read()["battery_not_low"] for _ in range(3)] == [False, False, True]


def test_a_plugged_in_battery_is_charging_and_not_low(monkeypatch):
    monkeypatch.setattr(c.psutil, "sensors_battery", lambda: Battery(5, True))
    assert BatteryTracker().read() == {"charging": True, "battery_not_low": True}


@pytest.mark.parametrize(
    ("total", "free", "not_low"),
    [(100 * 2**30, 1 * 2**30, True), (100 * 2**30, 400 * 2**20, False), (2 * 2**30, 150 * 2**20, False),
     (2 * 2**30, 300 * 2**20, True)],
)  # fmt: skip
def test_storage_is_low_below_min_of_ten_percent_and_500_mb(monkeypatch, total, free, not_low):
    monkeypatch.setattr(c.shutil, "disk_usage", lambda folder: Usage(total, total - free, free))
    assert StorageTracker("/data").read() == {"storage_not_low": not_low}


@pytest.mark.parametrize(("load", "idle"), [(0.1, True), (0.59, True), (0.61, False), (3.0, False)])
def test_device_is_idle_when_load_per_cpu_is_below_0_3(monkeypatch, load, idle):
    monkeypatch.setattr(c.os, "getloadavg", lambda: (load, 0.0, 0.0))
    monkeypatch.setattr(c.os, "cpu_count", lambda: 2)
    assert IdleTracker().read() == {"device_idle": idle}


@pytest.mark.parametrize(
    ("state", "required", "ok"),
    [
        (ConstraintState(connected=False), NetworkType.NOT_REQUIRED, True),
        (ConstraintState(connected=False), NetworkType.CONNECTED, False),
        (ConstraintState(connected=True, metered=True), NetworkType.UNMETERED, False),
        (ConstraintState(connected=True, metered=False), NetworkType.UNMETERED, True),
        (ConstraintState(connected=True, metered=True), NetworkType.METERED, True),
        (ConstraintState(connected=True, metered=False), NetworkType.METERED, False),
        (ConstraintState(connected=True, roaming=True), NetworkType.NOT_ROAMING, False),
    ],
)
def test_network_requirements(state, required, ok):
    assert state.network_ok(required) is ok


def test_the_stop_reason_names_the_constraint_that_no_longer_holds():
    state = ConstraintState(charging=False)
    assert state.unmet_reason((0, 1, 0, 0, 0)) is StopReason.CONSTRAINT_CHARGING
    assert state.unmet_reason((0, 0, 0, 0, 0)) is None
    assert (
        ConstraintState(connected=False).unmet_reason((1, 0, 0, 0, 0)) is StopReason.CONSTRAINT_CONNECTIVITY
    )


def test_trackers_tell_listeners_only_when_an_answer_changes():
    fixed = FixedTracker(charging=True)
    trackers = ConstraintTrackers([fixed])
    seen: list[ConstraintState] = []
    trackers.add_listener(seen.append)

    trackers.refresh()
    fixed.set(charging=False)
    trackers.refresh()

    assert [s.charging for s in seen] == [False]


def test_a_failing_tracker_keeps_its_last_answer():
    class Broken(FixedTracker):
        def read(self) -> dict[str, bool]:
            raise OSError("sensor gone")

    trackers = ConstraintTrackers([FixedTracker(charging=False), Broken()])
    assert trackers.refresh().charging is False


def test_names_a_tracker_reports_beyond_the_standard_ones_are_custom_constraints():
    fixed = FixedTracker(charging=True, **{"gpu-free": True, "vpn-up": False})
    state = ConstraintTrackers([fixed]).refresh()
    assert state.custom_met == {"gpu-free"}
    assert state.custom_known == {"gpu-free", "vpn-up"}
    assert state.unmet_reason((0, 0, 0, 0, 0), frozenset({"vpn-up"})) is StopReason.CONSTRAINT_CUSTOM
    assert state.unmet_reason((0, 0, 0, 0, 0), frozenset({"gpu-free"})) is None


def test_custom_constraint_names_must_be_non_empty_strings():
    from workmanager import Constraints

    with pytest.raises(ValueError, match=r"Constraints\.custom"):
        Constraints(custom="gpu")
    with pytest.raises(ValueError, match=r"Constraints\.custom"):
        Constraints(custom={""})


def test_device_is_not_idle_while_a_logind_session_is_in_use(monkeypatch):
    monkeypatch.setattr(c.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(c.shutil, "which", lambda name: "/usr/bin/loginctl")
    outputs = {"list-sessions": SimpleNamespace(returncode=0, stdout="3 1000 ann seat0 tty2\n")}

    def run(args, **kwargs):
        if args[1] == "list-sessions":
            return outputs["list-sessions"]
        return SimpleNamespace(returncode=0, stdout=hint + "\n")

    monkeypatch.setattr(c.subprocess, "run", run)
    tracker = IdleTracker()
    hint = "no"
    assert tracker.read() == {"device_idle": False}
    hint = "yes"
    assert tracker.read() == {"device_idle": True}


def test_without_logind_idleness_comes_from_load_alone(monkeypatch):
    monkeypatch.setattr(c.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(c.shutil, "which", lambda name: "/usr/bin/loginctl")
    monkeypatch.setattr(c.subprocess, "run", lambda args, **kwargs: SimpleNamespace(returncode=1, stdout=""))
    assert IdleTracker().read() == {"device_idle": True}
