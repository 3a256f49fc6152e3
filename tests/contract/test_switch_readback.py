"""The switch that says yes and did nothing, attacked on every CLI vendor: a VLAN it lacks (IOS creates it, EOS
accepts it), an interface it lacks (Junos accepts configuration for it), a bounce that never comes back up, a bounce
interrupted half-way, a switch that hangs mid-command, and batches in which some ports fail and the others must not.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from switch_drivers import (
    Capability,
    CommandFailed,
    ConnectError,
    DriverTimeout,
    InterfaceMissing,
    InvalidArgument,
    PortMove,
    VerificationFailed,
    VlanMissing,
)
from trustport_lab.fakes.harness import CLI_DRIVERS, Harness

CLI = pytest.mark.parametrize("harness", CLI_DRIVERS, indirect=True)
# the line each vendor's fake stops answering at (the VLAN change itself)
HANG_ON = {"cisco_ios": "switchport access vlan", "arista_eos": "switchport access vlan",
           "aruba_aoscx": "vlan access", "hp_procurve": "untagged", "juniper_junos": "vlan members 20"}


def configured(harness: Harness) -> list[str]:
    """The lines the fake received in configuration mode (netmiko enters it with 'configure ...')."""
    return [c for c in harness.fake.commands if c.strip().startswith("configure")]


def count(harness: Harness, command: str) -> int:
    return sum(1 for c in harness.fake.commands if c.strip() == command)


@CLI
def test_missing_vlan_is_refused_before_anything_is_sent(harness: Harness) -> None:
    """Finding 1: EOS reported '30 -> 77 (verified)'; IOS created VLAN 78 and the second run said '78 -> 78'.
    Two sessions, single port and batch: always VlanMissing, nothing sent, no VLAN created, the port unmoved."""
    for _run in range(2):
        with harness.build() as driver:
            assert Capability.VLAN_TABLE in driver.capabilities
            harness.fake.commands.clear()
            with pytest.raises(VlanMissing) as info:
                driver.set_port_vlan(harness.port, 77)
            assert info.value.vlan == 77
            assert "VLAN 77" in str(info.value) and driver.target.name in str(info.value)
            outcome = driver.move_ports([PortMove(harness.port, 78, bounce=True)])
            assert isinstance(outcome[0].error, VlanMissing) and outcome[0].error.vlan == 78
            assert configured(harness) == []
    assert harness.vlan_of(harness.port) == 1
    assert not {77, 78} & harness.fake.vlans
    assert harness.bounces_of(harness.port) == 0


@CLI
def test_vlan_table_is_read_once_per_session_and_reread_before_refusing(harness: Harness) -> None:
    with harness.build() as driver:
        show_vlans = driver.vendor.show_vlans  # type: ignore[attr-defined]
        table = driver.vlans()
        assert {1, 10, 20, 30, 99, 999} <= table
        driver.set_port_vlan(harness.port, 20)
        driver.vlans()
        assert count(harness, show_vlans) == 1  # cached for the session
        harness.fake.vlans.add(77)  # created on the switch after the table was read
        assert driver.set_port_vlan(harness.port, 77).after == 77
        assert count(harness, show_vlans) == 2
        ports = harness.ports(10)  # ten ports into a VLAN the switch lacks: the table is re-read once, not ten times
        outcomes = driver.move_ports([PortMove(p, 78) for p in ports])
        assert all(isinstance(o.error, VlanMissing) for o in outcomes)
        assert count(harness, show_vlans) == 3
    with harness.build() as driver:
        driver.vlans()
    assert count(harness, show_vlans) == 4  # a new session reads afresh


@CLI
def test_nonexistent_interface_is_missing_for_every_operation(harness: Harness) -> None:
    """Finding 2: Junos reported 'bounced' for an interface it does not have (its configuration accepts it)."""
    missing = harness.missing_port
    assert missing is not None
    with harness.build() as driver:
        snapshot = harness.snapshot()
        harness.fake.commands.clear()
        operations: list[Any] = [driver.get_port_vlan, lambda p: driver.set_port_vlan(p, 20), driver.bounce_port,
                                 driver.port_status, driver.ensure_port_up]
        for operation in operations:
            with pytest.raises(InterfaceMissing) as info:
                operation(missing)
            assert info.value.port == missing and driver.target.name in str(info.value)
        assert configured(harness) == []
        assert harness.snapshot() == snapshot
        outcomes = driver.move_ports([PortMove(missing, 20, bounce=True), PortMove(harness.port, 20)])
    assert isinstance(outcomes[0].error, InterfaceMissing)
    assert outcomes[1].ok and harness.vlan_of(harness.port) == 20
    assert harness.snapshot()[2] == {}  # Junos: no phantom interface was committed


@CLI
def test_bounce_is_read_back(harness: Harness) -> None:
    """Finding 2: CLI bounces were never read back. The switch accepts 'no shutdown' and leaves the port down."""
    harness.fake.ignore_enable = True
    with harness.build() as driver:
        assert Capability.PORT_STATUS in driver.capabilities
        with pytest.raises(VerificationFailed, match="still shut down") as info:
            driver.bounce_port(harness.port)
        assert info.value.actual == "shut down"
        assert not driver.port_status(harness.port).admin_up
        outcome = driver.move_ports([PortMove(harness.port, 20, bounce=True)])[0]
        assert isinstance(outcome.error, VerificationFailed) and not outcome.bounced
        assert outcome.change is not None and outcome.change.after == 20  # the VLAN part did happen: reported
        harness.fake.ignore_enable = False
        status_before = driver.port_status(harness.port)
        assert not status_before.admin_up
        driver.bounce_port(harness.port)
        status = driver.port_status(harness.port)
    assert status.admin_up and status.vlan == 20
    assert harness.fake.ports[harness.fake_port(harness.port)].shutdown is False


@CLI
def test_ensure_port_up_after_an_interrupted_bounce(harness: Harness) -> None:
    """A worker killed between 'shutdown' and 'no shutdown' leaves the port down; the resumed job enables it."""
    harness.fake.ports[harness.fake_port(harness.port)].shutdown = True  # what the killed worker left behind
    with harness.build() as driver:
        assert driver.port_status(harness.port).admin_up is False
        assert driver.ensure_port_up(harness.port) is True
        status = driver.port_status(harness.port)
        assert status.admin_up and status.vlan == 1
        harness.fake.commands.clear()
        assert driver.ensure_port_up(harness.port) is False  # already up: nothing sent
        assert configured(harness) == []
    assert harness.fake.ports[harness.fake_port(harness.port)].shutdown is False


@CLI
def test_batch_is_one_push_and_one_read_back(harness: Harness) -> None:
    """Finding 4: one SSH push per port. Twenty ports, half bounced: one configuration push (Junos: one commit for
    the VLANs and the disables, one to re-enable), one read of all ports before and one after."""
    ports = harness.ports(20)
    moves = [PortMove(port, 30, bounce=i % 2 == 0) for i, port in enumerate(ports)]
    with harness.build() as driver:
        driver.vlans()
        harness.fake.commands.clear()
        outcomes = driver.move_ports(moves)
        show_ports = driver.vendor.show_ports  # type: ignore[attr-defined]
    assert [o.port for o in outcomes] == ports
    assert all(o.ok for o in outcomes), [str(o.error) for o in outcomes if not o.ok]
    assert all(o.change is not None and (o.change.before, o.change.after) == (1, 30) for o in outcomes)
    assert [o.bounced for o in outcomes] == [m.bounce for m in moves]
    assert all(o.status is not None and o.status.admin_up for o in outcomes if o.bounced)
    assert all(harness.vlan_of(p) == 30 for p in ports)
    assert [harness.bounces_of(p) for p in ports] == [1 if m.bounce else 0 for m in moves]
    if harness.name == "juniper_junos":
        assert count(harness, "commit and-quit") == 2
    else:
        assert len(configured(harness)) == 1
    assert all(count(harness, command) == 2 for command in show_ports)


@CLI
def test_batch_ports_fail_alone(harness: Harness) -> None:
    """A batch where ports fail for every reason: each gets its own error, its neighbours succeed."""
    ports = harness.ports(8)
    harness.fake.ignore_ports = {harness.fake_port(ports[5])}  # says yes, does nothing
    harness.fake.refuse_ports = {harness.fake_port(ports[6])}  # refuses the change
    moves = [
        PortMove(ports[0], 20),
        PortMove(ports[1], 30, bounce=True),
        PortMove(ports[2], 77),  # the switch has no VLAN 77
        PortMove(harness.missing_port or "", 20),  # no such interface
        PortMove("Gi1/0/5;reload", 20),  # not an interface name for any vendor
        PortMove(ports[3], None, bounce=True),  # bounce only
        PortMove(ports[5], 20),
        PortMove(ports[6], 20),
        PortMove(ports[7], 999),
        PortMove(ports[0], 10),  # named twice
    ]
    with harness.build() as driver:
        harness.fake.commands.clear()
        outcomes = driver.move_ports(moves)
    assert [o.port for o in outcomes] == [m.port for m in moves]
    expected = [None, None, VlanMissing, InterfaceMissing, InvalidArgument, None, VerificationFailed,
                CommandFailed, None, InvalidArgument]
    assert [type(o.error) if o.error else None for o in outcomes] == expected, [str(o.error) for o in outcomes]
    vlans = [harness.vlan_of(p) for p in ports]
    assert vlans == [20, 30, 1, 1, 1, 1, 1, 999]
    assert [harness.bounces_of(p) for p in ports] == [0, 1, 0, 1, 0, 0, 0, 0]
    assert outcomes[5].bounced and outcomes[5].change is None
    refused = outcomes[7].error
    assert refused is not None and refused.port == ports[6]
    if harness.name != "juniper_junos":  # the batch push, then the refused port once more on its own
        assert len(configured(harness)) == 2
    assert not {77} & harness.fake.vlans


@CLI
def test_hang_mid_command_times_out_and_drops_the_session(harness: Harness) -> None:
    with harness.build(read_timeout=1) as driver:
        driver.vlans()
        harness.fake.hang_on = HANG_ON[harness.name]
        start = time.monotonic()
        with pytest.raises(DriverTimeout):
            driver.set_port_vlan(harness.port, 20)
        assert time.monotonic() - start < 8
        with pytest.raises(ConnectError, match="timed out"):  # the broken session is never reused
            driver.get_port_vlan(harness.port)
    deadline = time.monotonic() + 5
    while harness.fake.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert harness.fake.sessions == 0  # the switch saw the session closed
    with harness.build(read_timeout=1) as driver:
        ports = harness.ports(3)
        outcomes = driver.move_ports([PortMove(p, 20) for p in ports])
    assert all(isinstance(o.error, DriverTimeout) for o in outcomes)
    assert "unknown state" in str(outcomes[0].error)
    harness.fake.hang_on = None
    with harness.build() as driver:  # a fresh session works
        assert driver.get_port_vlan(ports[0]) in (1, 20)
