"""SNMP drivers against a real snmpd (the pass_persist fake switch): VLAN pre-flight, interfaces that do not
exist, read-back after a bounce, ports left down, and multi-varbind batches of many ports in which a port the
switch refuses fails alone. PDUs are counted at the agent (snmpd's own SNMPv2-MIB counters)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from switch_drivers.base import PortMove
from switch_drivers.base import Target as SwitchTarget
from switch_drivers.errors import (
    CommandFailed,
    DriverTimeout,
    InterfaceMissing,
    InvalidArgument,
    VerificationFailed,
    VlanMissing,
)
from switch_drivers.snmp import CiscoVmVlanDriver, QBridgeDriver
from trustport_lab.fakes.snmp_agent import V3_AUTH, V3_PRIV, V3_USER, SnmpAgent, snmpd_available

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pysnmp 7.1 calls deprecated pysmi names

DRIVERS: dict[str, type[QBridgeDriver] | type[CiscoVmVlanDriver]] = {
    "snmp_qbridge": QBridgeDriver, "snmp_cisco_vmvlan": CiscoVmVlanDriver}
Build = Callable[..., QBridgeDriver | CiscoVmVlanDriver]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpAgent]:
    if not snmpd_available():
        pytest.fail("Debian package 'snmpd' is not installed (apt-get install snmpd; make test does it)")
    fake = SnmpAgent(tmp_path_factory.mktemp("snmpd-batch")).start()
    yield fake
    fake.stop()


@pytest.fixture(params=DRIVERS)
def build(request: pytest.FixtureRequest, agent: SnmpAgent) -> Build:
    agent.reset(extra_ports=100)
    cls = DRIVERS[request.param]

    def make(**overrides: Any) -> QBridgeDriver | CiscoVmVlanDriver:
        options: dict[str, Any] = {"version": "3", "username": V3_USER, "auth_key": V3_AUTH, "priv_key": V3_PRIV,
                                   "timeout": 2.0, "retries": 1, "bounce_down_seconds": 0.05, **overrides}
        return cls(SwitchTarget(f"fake-{request.param}", "127.0.0.1", agent.port), cls.options_type(**options))

    return make


def _row(state: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in state["ports"] if p["ifName"] == name)


def _pvid(state: dict[str, Any], name: str) -> int:
    return int(state["pvid"][str(_row(state, name)["bridgePort"])])


def _member(state: dict[str, Any], name: str, vlan: int) -> tuple[bool, bool]:
    bp = _row(state, name)["bridgePort"]
    lists = state["vlans"][str(vlan)]
    return bp in lists["egress"], bp in lists["untagged"]


def _edit(agent: SnmpAgent, change: Callable[[dict[str, Any]], None]) -> None:
    state = agent.state()
    change(state)
    agent.reset(state)


def _snapshot(agent: SnmpAgent) -> dict[str, Any]:
    return {k: v for k, v in agent.state().items() if k in ("pvid", "vlans", "ports", "sets")}


def _lax_agent_with_vlan_77_missing(state: dict[str, Any]) -> None:
    state["auto_create_vlans"] = True  # this firmware would say yes and create VLAN 77


def _vlan_30_not_usable(state: dict[str, Any]) -> None:
    state["vlans"]["30"].update(row_status=2, vtp_state=2)  # notInService / suspended: not a VLAN to move into


@pytest.mark.parametrize(("setup", "vlan"), [(_lax_agent_with_vlan_77_missing, 77), (_vlan_30_not_usable, 30)])
def test_move_into_a_missing_vlan_is_refused_and_nothing_is_set(build: Build, agent: SnmpAgent,
                                                               setup: Callable[[dict[str, Any]], None],
                                                               vlan: int) -> None:
    _edit(agent, setup)
    before = _snapshot(agent)
    with build() as driver:
        assert vlan not in driver.vlans()
        assert {1, 10, 20}.issubset(driver.vlans())
        with pytest.raises(VlanMissing) as info:
            driver.set_port_vlan("Gi1/0/5", vlan)
        assert _snapshot(agent) == before
        outcomes = driver.move_ports([PortMove("Gi1/0/5", vlan, bounce=True), PortMove("Gi1/0/6", 20)])
    assert info.value.vlan == vlan
    assert f"VLAN {vlan} does not exist" in str(info.value)
    assert f"fake-{driver.name}" in str(info.value)
    assert isinstance(outcomes[0].error, VlanMissing)
    assert outcomes[1].ok
    state = agent.state()
    assert _pvid(state, "Gi1/0/5") == 1
    assert _row(state, "Gi1/0/5")["bounces"] == 0
    assert str(77) not in state["vlans"]  # the lax agent was never asked
    assert _pvid(state, "Gi1/0/6") == 20


@pytest.mark.parametrize("port", ["Gi9/0/9", "99999"])
def test_nonexistent_interface_is_interface_missing(build: Build, agent: SnmpAgent, port: str) -> None:
    before = _snapshot(agent)
    with build() as driver:
        operations: list[Callable[[str], object]] = [
            driver.get_port_vlan, lambda p: driver.set_port_vlan(p, 20), driver.bounce_port, driver.port_status,
            driver.ensure_port_up]
        for operation in operations:
            with pytest.raises(InterfaceMissing):
                operation(port)
        assert _snapshot(agent) == before  # nothing was set
        outcomes = driver.move_ports([PortMove(port, 20, bounce=True), PortMove("Gi1/0/5", 20, bounce=True)])
    assert isinstance(outcomes[0].error, InterfaceMissing)
    assert outcomes[1].ok
    assert _pvid(agent.state(), "Gi1/0/5") == 20


def test_bounce_reads_back_and_a_port_left_down_is_brought_up(build: Build, agent: SnmpAgent) -> None:
    with build() as driver:
        driver.bounce_port("Gi1/0/5")
        assert driver.port_status("Gi1/0/5").admin_up
        assert _row(agent.state(), "Gi1/0/5")["bounces"] == 1
        _edit(agent, lambda s: s.update(ignore_admin_up=True))  # the switch says yes to "up" and stays down
        with pytest.raises(VerificationFailed) as info:
            driver.bounce_port("Gi1/0/5")
        assert "still shut down after the bounce" in str(info.value)
        assert "may still be DOWN" in str(info.value)
        status = driver.port_status("Gi1/0/5")
        assert (status.admin_up, status.oper_up, status.vlan) == (False, False, 1)
        _edit(agent, lambda s: s.update(ignore_admin_up=False))
        assert driver.ensure_port_up("Gi1/0/5") is True
        sets = agent.state()["sets"]
        assert driver.ensure_port_up("Gi1/0/5") is False
        assert agent.state()["sets"] == sets  # already up: nothing set
    assert _row(agent.state(), "Gi1/0/5")["admin"] == 1


def test_port_status_reads_admin_oper_and_vlan(build: Build, agent: SnmpAgent) -> None:
    agent.update_port("Gi1/0/6", link=False)
    agent.update_port("Gi1/0/1", admin=2)
    with build() as driver:
        driver.set_port_vlan("Gi1/0/5", 10)
        five, six, one = (driver.port_status(p) for p in ("Gi1/0/5", "Gi1/0/6", "10101"))
    assert (five.vlan, five.admin_up, five.oper_up) == (10, True, True)
    assert (six.admin_up, six.oper_up) == (True, False)  # enabled, no link
    assert (one.port, one.admin_up, one.oper_up) == ("10101", False, False)


def test_batch_of_50_with_2_refused_ports(build: Build, agent: SnmpAgent) -> None:
    ports = [f"Gi2/0/{n}" for n in range(1, 51)]
    refused = {"Gi2/0/7", "Gi2/0/33"}
    for name in refused:
        agent.update_port(name, refuse=True)
    with build() as driver:
        driver.vlans()
        driver.if_index("Gi2/0/1")
        counts = agent.pdu_counts()
        outcomes = driver.move_ports([PortMove(p, 20, bounce=True) for p in ports])
        used = {k: v - counts[k] for k, v in agent.pdu_counts().items()}
    assert [o.port for o in outcomes] == ports
    good = [o for o in outcomes if o.port not in refused]
    bad = [o for o in outcomes if o.port in refused]
    assert all(o.ok and o.bounced for o in good)
    assert all(o.change is not None and (o.change.before, o.change.after) == (1, 20) for o in good)
    assert all(o.status is not None and (o.status.vlan, o.status.admin_up) == (20, True) for o in good)
    assert all(isinstance(o.error, CommandFailed) and "notWritable" in str(o.error) for o in bad)
    assert {o.error.port for o in bad if o.error is not None} == refused
    assert used["set"] <= 20  # 50 ports moved and bounced: 150 SETs one by one
    state = agent.state()
    for name in ports:
        row = _row(state, name)
        if name in refused:
            assert (_pvid(state, name), _member(state, name, 1), _member(state, name, 20)) == (
                1, (True, True), (False, False))
            assert (row["admin"], row["bounces"]) == (1, 0)
        else:
            assert (_pvid(state, name), _member(state, name, 20), _member(state, name, 1)) == (
                20, (True, True), (False, False))
            assert (row["admin"], row["bounces"]) == (1, 1)


def test_batch_finds_a_port_whose_vlan_membership_is_locked(build: Build, agent: SnmpAgent) -> None:
    """Q-BRIDGE: the port lists are per VLAN, so one locked port refuses the whole VLAN's SET; bisecting finds
    it in a few PDUs. (vmVlan has no lists: the locked port's own SET is refused.)"""
    ports = [f"Gi2/0/{n}" for n in range(1, 33)]
    agent.update_port("Gi2/0/9", refuse=True, refuse_lists=True)
    with build() as driver:
        driver.vlans()
        driver.if_index("Gi2/0/1")
        counts = agent.pdu_counts()
        outcomes = driver.move_ports([PortMove(p, 30) for p in ports])
        used = agent.pdu_counts()["set"] - counts["set"]
    assert [o.port for o in outcomes if not o.ok] == ["Gi2/0/9"]
    assert used <= 16  # bisection: ~2 log2(32) extra SETs, not 32
    state = agent.state()
    assert (_pvid(state, "Gi2/0/9"), _member(state, "Gi2/0/9", 30)) == (1, (False, False))
    assert all(_pvid(state, p) == 30 and _member(state, p, 1) == (False, False) for p in ports if p != "Gi2/0/9")


def test_batch_gives_each_bad_move_its_own_error(build: Build, agent: SnmpAgent) -> None:
    moves = [PortMove("Gi2/0/1", 20), PortMove("Gi2/0/2", 77), PortMove("Gi2/0/3", 5000), PortMove("Gi9/9/9", 20),
             PortMove("20001", 10), PortMove("Gi2/0/4", None, bounce=True), PortMove("Gi2/0/5", 1)]
    with build() as driver:
        outcomes = driver.move_ports(moves)
    kinds = [type(o.error) if o.error else None for o in outcomes]
    assert kinds == [None, VlanMissing, InvalidArgument, InterfaceMissing, InvalidArgument, None, None]
    assert "twice" in str(outcomes[4].error)
    assert outcomes[5].bounced and outcomes[5].change is None
    assert outcomes[6].change is not None and not outcomes[6].change.changed  # already in VLAN 1
    state = agent.state()
    assert [_pvid(state, f"Gi2/0/{n}") for n in range(1, 6)] == [20, 1, 1, 1, 1]
    assert _row(state, "Gi2/0/4")["bounces"] == 1


def test_batch_swaps_ports_between_two_vlans(build: Build, agent: SnmpAgent) -> None:
    tens, twenties = [f"Gi2/0/{n}" for n in range(1, 5)], [f"Gi2/0/{n}" for n in range(5, 9)]
    with build() as driver:
        assert all(o.ok for o in driver.move_ports([PortMove(p, 10) for p in tens] +
                                                   [PortMove(p, 20) for p in twenties]))
        outcomes = driver.move_ports([PortMove(p, 20) for p in tens] + [PortMove(p, 10) for p in twenties])
    assert [o.error for o in outcomes] == [None] * 8
    state = agent.state()
    assert all(_pvid(state, p) == 20 and _member(state, p, 10) == (False, False) for p in tens)
    assert all(_pvid(state, p) == 10 and _member(state, p, 20) == (False, False) for p in twenties)


def test_batch_stops_at_once_when_the_agent_stops_answering(build: Build, agent: SnmpAgent) -> None:
    assert agent.proc is not None
    with build(timeout=0.3, retries=0) as driver:
        os.kill(agent.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            outcomes = driver.move_ports([PortMove(f"Gi2/0/{n}", 20, bounce=True) for n in range(1, 31)])
            elapsed = time.monotonic() - started
        finally:
            os.kill(agent.proc.pid, signal.SIGCONT)
    assert all(isinstance(o.error, DriverTimeout) for o in outcomes)
    assert elapsed < 2  # one timeout for the batch, not one per port


def test_100_ports_batch_against_100_single_calls(build: Build, agent: SnmpAgent,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ports = [f"Gi2/0/{n}" for n in range(1, 101)]
    results: dict[str, tuple[dict[str, int], float]] = {}
    for label in ("single", "batch", "batch+bounce"):
        agent.reset(extra_ports=100)
        with build() as driver:
            counts, started = agent.pdu_counts(), time.monotonic()
            if label == "single":
                changes = [driver.set_port_vlan(p, 20) for p in ports]
                assert all(c.after == 20 for c in changes)
            else:
                outcomes = driver.move_ports([PortMove(p, 20, bounce=label == "batch+bounce") for p in ports])
                assert all(o.ok for o in outcomes)
            elapsed = time.monotonic() - started
            results[label] = ({k: v - counts[k] for k, v in agent.pdu_counts().items()}, elapsed)
            sent = dict(driver.snmp.sent)
        assert all(_pvid(agent.state(), p) == 20 for p in ports)
        with capsys.disabled():
            print(f"\n{driver.name} 100 ports {label}: agent counted {results[label][0]}, driver sent {sent}, "
                  f"{results[label][1]:.2f} s")
    assert results["batch"][0]["set"] * 5 <= results["single"][0]["set"]
    assert results["batch"][0]["get"] * 5 <= results["single"][0]["get"]
