"""One contract, every registered driver (5 SSH CLI, 2 SNMP, CoA), each against its realistic fake."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from switch_drivers import (
    Capability,
    CoANak,
    CommandFailed,
    DriverError,
    DriverTimeout,
    InvalidArgument,
    NoAnswer,
    SwitchDriver,
    Unsupported,
    VerificationFailed,
    VlanChange,
    VlanMissing,
    default_registry,
)
from trustport_lab.fakes.harness import ALL_DRIVERS, CLI_DRIVERS, SNMP_DRIVERS, Harness

INJECTIONS = ["Gi1/0/5\nreload", "1/1/5; reload", "5 | include x", "ge-0/0/5 \rcommit", "", "Ethernet5\x00",
              "../../etc", "x" * 300]


def test_registry_lists_exactly_the_eight_drivers() -> None:
    registry = default_registry()
    assert set(registry) == set(ALL_DRIVERS)
    assert not registry.problems
    assert all(registry[name].source.startswith(f"entry point {name} = ") for name in registry)  # pyproject.toml


@pytest.mark.parametrize("name", ALL_DRIVERS)
def test_entry_declares_capabilities_and_typed_options(name: str) -> None:
    entry = default_registry()[name]
    assert isinstance(entry.capabilities, Capability)
    assert entry.capabilities != Capability.NONE
    assert issubclass(entry.options_type, BaseModel)
    assert entry.options_type.model_config.get("extra") == "forbid"


def test_driver_satisfies_protocol(harness: Harness) -> None:
    driver = harness.build()
    assert isinstance(driver, SwitchDriver)
    for secret in harness.secret_values:
        assert secret not in repr(driver.options)  # type: ignore[attr-defined]


def test_set_reads_back(harness: Harness) -> None:
    with harness.build() as driver:
        if Capability.SET_VLAN not in driver.capabilities:
            with pytest.raises(Unsupported):
                driver.set_port_vlan(harness.port, 20)
            with pytest.raises(Unsupported):
                driver.get_port_vlan(harness.port)
            return
        before = driver.get_port_vlan(harness.port)
        assert before == harness.vlan_of(harness.port) == 1
        change = driver.set_port_vlan(harness.port, 20)
        assert change == VlanChange(switch=driver.target.name, port=harness.port, before=1, after=20)
        assert harness.vlan_of(harness.port) == 20
        assert driver.get_port_vlan(harness.port) == 20
        again = driver.set_port_vlan(harness.port, 20)  # idempotent
        assert again.before == again.after == 20
        assert not again.changed


def test_bounce(harness: Harness) -> None:
    with harness.build() as driver:
        assert Capability.BOUNCE_PORT in driver.capabilities
        before = harness.bounces_of(harness.port)
        driver.bounce_port(harness.port)
    assert harness.bounces_of(harness.port) == before + 1


def test_reauthenticate(harness: Harness) -> None:
    with harness.build() as driver:
        if Capability.REAUTHENTICATE not in driver.capabilities:
            with pytest.raises(Unsupported):
                driver.reauthenticate(harness.port)
            return
        before = harness.reauths_of(harness.port)
        driver.reauthenticate(harness.port)
    assert harness.reauths_of(harness.port) == before + 1


def test_invalid_interface_is_rejected_before_anything_is_sent(harness: Harness) -> None:
    with harness.build() as driver:
        snapshot = harness.snapshot()
        operations = [driver.bounce_port]
        if Capability.SET_VLAN in driver.capabilities:
            operations += [driver.get_port_vlan, lambda p: driver.set_port_vlan(p, 20)]
        for bad_port in INJECTIONS:
            for operation in operations:
                with pytest.raises(InvalidArgument):
                    operation(bad_port)
        assert harness.snapshot() == snapshot
    if harness.name in CLI_DRIVERS:
        assert not any("reload" in line or line.strip() == "commit" for line in harness.fake.commands)


def test_invalid_vlan_is_rejected(harness: Harness) -> None:
    with harness.build() as driver:
        snapshot = harness.snapshot()
        expected: type[DriverError] = InvalidArgument if Capability.SET_VLAN in driver.capabilities else Unsupported
        for vlan in (0, 4095, 5000, -1, True, "20", 20.0, None):
            with pytest.raises(expected):
                driver.set_port_vlan(harness.port, vlan)  # type: ignore[arg-type]
        assert harness.snapshot() == snapshot


def test_wrong_credentials(harness: Harness) -> None:
    driver = harness.build(**harness.wrong_credentials)
    with pytest.raises(harness.wrong_credentials_error) as info, driver:
        driver.bounce_port(harness.port)
    assert harness.bounces_of(harness.port) == 0
    message = str(info.value)
    assert driver.target.name in message
    for secret in harness.secret_values:
        assert secret not in message


def test_unreachable_host(harness: Harness, closed_tcp_port: int, closed_udp_port: int) -> None:
    closed = closed_tcp_port if harness.name in CLI_DRIVERS else closed_udp_port
    with pytest.raises(harness.closed_port_error) as info, harness.build(port=closed, **harness.fast_fail) as driver:
        driver.bounce_port(harness.port)
    assert "fake-" in str(info.value)


def test_device_error_is_specific_and_reports_state(harness: Harness) -> None:
    """The device refuses a change: a specific error, and the state left behind is known and reported."""
    with harness.build() as driver:
        if harness.name == "coa":
            with pytest.raises(CoANak) as nak:
                driver.reauthenticate("AA-BB-CC-99-99-99")
            assert nak.value.error_cause == 503
            assert "Session-Context-Not-Found" in str(nak.value)
            return
        with pytest.raises(CommandFailed) as info:
            driver.set_port_vlan(harness.port, 77)  # valid id, but the VLAN does not exist on the switch
    assert harness.vlan_of(harness.port) == 1
    if Capability.VLAN_TABLE in driver.capabilities:  # refused before anything was sent (tests/contract/
        assert isinstance(info.value, VlanMissing)  # test_switch_readback.py attacks this per vendor)
        assert "VLAN 77" in str(info.value)


def test_missing_capability_raises_unsupported(harness: Harness) -> None:
    """Every operation a driver does not declare raises Unsupported -- never a silent no-op."""
    port = harness.port
    operations: dict[Capability, list[Callable[[SwitchDriver], object]]] = {
        Capability.GET_VLAN: [lambda d: d.get_port_vlan(port)],
        Capability.SET_VLAN: [lambda d: d.set_port_vlan(port, 20)],
        Capability.BOUNCE_PORT: [lambda d: d.bounce_port(port)],
        Capability.REAUTHENTICATE: [lambda d: d.reauthenticate(port)],
        Capability.DISCONNECT: [lambda d: d.disconnect(port)],
        Capability.VLAN_TABLE: [lambda d: d.vlans()],
        Capability.PORT_STATUS: [lambda d: d.port_status(port), lambda d: d.ensure_port_up(port)],
    }
    with harness.build() as driver:
        snapshot = harness.snapshot()
        lacking = [c for c in operations if c not in driver.capabilities]
        for capability in lacking:
            for operation in operations[capability]:
                with pytest.raises(Unsupported):
                    operation(driver)
        assert harness.snapshot() == snapshot


@pytest.mark.parametrize("harness", SNMP_DRIVERS, indirect=True)
def test_no_such_instance_without_error_status_raises(harness: Harness) -> None:
    with harness.build() as driver, pytest.raises(DriverError, match=r"NoSuchInstance|not a bridge port"):
        driver.get_port_vlan("99999")


def test_timeout(harness: Harness) -> None:
    if harness.name in CLI_DRIVERS:
        with harness.build(read_timeout=1) as driver:
            harness.fake.stall_show = True
            with pytest.raises(DriverTimeout):
                driver.get_port_vlan(harness.port)
        return
    if harness.name == "coa":
        harness.fake.silent = True
        with harness.build(**harness.fast_fail) as driver, pytest.raises(NoAnswer, match="no answer to CoA-Request"):
            driver.bounce_port(harness.port)  # a silent NAS: NoAnswer, so the worker takes the switch path
        assert harness.fake.received == harness.fast_fail["retries"]  # retransmitted, then gave up
        return
    with harness.build(**harness.fast_fail) as driver:  # a hung agent: stop snmpd
        pid = harness.fake.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(DriverTimeout):
                driver.get_port_vlan(harness.port)
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("harness", [*CLI_DRIVERS, *SNMP_DRIVERS], indirect=True)
def test_change_the_device_ignores_fails_verification(harness: Harness) -> None:
    """The device acknowledges the change but the read-back shows the old VLAN: VerificationFailed.
    (Not for CoA: it has no read-back; the CoA-ACK is the verification.)"""
    if harness.name in CLI_DRIVERS:
        harness.fake.ignore_changes = True
    else:
        state = harness.fake.state()
        state["ignore_sets"] = True
        harness.fake.reset(state)
    with harness.build() as driver, pytest.raises(VerificationFailed) as info:
        driver.set_port_vlan(harness.port, 20)
    assert info.value.expected == 20
    assert info.value.actual == 1
    assert harness.vlan_of(harness.port) == 1


def test_secrets_never_logged(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with harness.build() as driver:
        driver.bounce_port(harness.port)
    with pytest.raises(DriverError), harness.build(**harness.wrong_credentials) as driver:
        driver.bounce_port(harness.port)
    assert caplog.records  # the libraries did log at DEBUG
    for secret in harness.secret_values:
        assert secret not in caplog.text
