"""Driver-family behaviour beyond the common contract: SSH host keys, Junos commit/rollback, partial SNMP
state, CoA wire details, and many switches at once (one result each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from switch_drivers import (
    AuthenticationError,
    Capability,
    CoANak,
    CommandFailed,
    ConnectError,
    HostKeyChanged,
    HostKeyUnknown,
    PortMove,
    Target,
    VlanMissing,
    default_registry,
    run_each,
)
from trustport_lab.fakes.coa_nas import CoaNas
from trustport_lab.fakes.fake_cli import FakeCliServer
from trustport_lab.fakes.harness import cli_harness, coa_harness, snmp_harness
from trustport_lab.fakes.snmp_agent import SnmpAgent

CLI_OPTS: dict[str, Any] = {"username": "admin", "password": "fake-pass-123", "enable_secret": "fake-enable-456",
                            "conn_timeout": 3, "read_timeout": 4}


def _cisco(server: FakeCliServer, **options: Any) -> Any:
    server.states["cisco_ios"].reset()
    return default_registry().create("cisco_ios", Target("fake-ios", "127.0.0.1", server.ports["cisco_ios"]),
                                     {**CLI_OPTS, **options})


def _other_key_line(good: Path) -> tuple[str, str]:
    """known_hosts content naming a different key for the same switches, and that key's fingerprint."""
    other = FakeCliServer(("cisco_ios",))  # a different generated key, never started
    text = good.read_text()
    public = other.host_key.export_public_key("openssh").decode().split()[1]
    return text.replace(text.split()[2], public), other.fingerprint


def test_unknown_host_key_names_the_offered_fingerprint(cli_fake: tuple[FakeCliServer, Path],
                                                        tmp_path: Path) -> None:
    """Finding 3: an unknown and a changed key got the same message. Unknown: how to add it, and the fingerprint
    the switch offered so it can be compared with the switch's console first."""
    server, _ = cli_fake
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    logins = server.states["cisco_ios"].logins
    with pytest.raises(HostKeyUnknown) as info, _cisco(server, known_hosts=empty):
        pass
    message = str(info.value)
    assert not isinstance(info.value, HostKeyChanged)
    assert info.value.fingerprint == server.fingerprint
    assert server.fingerprint in message and "ssh-ed25519" in message
    assert f"ssh-keyscan -p {server.ports['cisco_ios']} -t ed25519 127.0.0.1 >> {empty}" in message
    assert "impostor" not in message
    assert server.states["cisco_ios"].logins == logins  # no password was sent


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_host_key_is_called_a_possible_impostor(cli_fake: tuple[FakeCliServer, Path], tmp_path: Path,
                                                        policy: str) -> None:
    server, good = cli_fake
    wrong = tmp_path / "known_hosts"
    text, expected_fp = _other_key_line(good)
    wrong.write_text(text)
    logins = server.states["cisco_ios"].logins
    with pytest.raises(HostKeyChanged) as info, _cisco(server, known_hosts=wrong, host_key_policy=policy):
        pass
    message = str(info.value)
    assert info.value.fingerprint == server.fingerprint
    assert f"offered ssh-ed25519 {server.fingerprint}" in message
    assert f"has ssh-ed25519 {expected_fp}" in message and str(wrong) in message
    assert "impostor" in message and "ssh-keygen -R" in message
    assert wrong.read_text() == text  # accept-new never replaces a changed key
    assert server.states["cisco_ios"].logins == logins


@pytest.mark.parametrize(("known", "message"), [("absent", "does not exist"), (None, "no known_hosts file")])
def test_strict_without_known_hosts_file_says_how_to_create_it(cli_fake: tuple[FakeCliServer, Path],
                                                               tmp_path: Path, known: str | None,
                                                               message: str) -> None:
    server, _ = cli_fake
    path = tmp_path / known if known else None
    with pytest.raises(HostKeyUnknown, match=message) as info, _cisco(server, known_hosts=path):
        pass
    assert "ssh-keyscan" in str(info.value)


DEAD_PEER = """
import socket, threading
from switch_drivers import Target, default_registry
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(5)
def serve():
    while True:
        conn, _ = sock.accept(); conn.close()      # a dead peer: accepts, then hangs up before the SSH banner
threading.Thread(target=serve, daemon=True).start()
options = {"username": "u", "password": "p", "host_key_policy": "insecure-ignore", "conn_timeout": 2}
driver = default_registry().create("cisco_ios", Target("dead", "127.0.0.1", sock.getsockname()[1]), options)
try:
    with driver:
        pass
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_dead_peer_prints_no_traceback() -> None:
    """Finding 3: paramiko printed its transport thread's traceback on stderr for a peer that hangs up."""
    result = subprocess.run([sys.executable, "-c", DEAD_PEER], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.stdout.startswith("ConnectError dead: SSH connection failed"), result.stdout
    assert result.stderr == ""


def test_aoscx_routed_port_is_never_bounced_or_batched(cli_fake: tuple[FakeCliServer, Path]) -> None:
    server, known = cli_fake
    harness = cli_harness("aruba_aoscx", server, known)
    with harness.build() as driver:
        with pytest.raises(CommandFailed, match="routed port"):
            driver.bounce_port("1/1/1")
        outcome = driver.move_ports([PortMove("1/1/1", 20, bounce=True), PortMove("1/1/5", 20)])
    assert isinstance(outcome[0].error, CommandFailed) and "routed" in str(outcome[0].error)
    assert outcome[1].ok
    port = server.states["aruba_aoscx"].ports["1/1/1"]
    assert port.routed and not port.shutdown and port.bounces == 0


def test_accept_new_records_the_key(cli_fake: tuple[FakeCliServer, Path], tmp_path: Path) -> None:
    server, _ = cli_fake
    known = tmp_path / "known_hosts"
    known.write_text("")
    with _cisco(server, known_hosts=known, host_key_policy="accept-new") as driver:
        assert driver.get_port_vlan("Gi1/0/5") == server.states["cisco_ios"].ports["GigabitEthernet1/0/5"].vlan
    assert f"[127.0.0.1]:{server.ports['cisco_ios']}" in known.read_text()
    with _cisco(server, known_hosts=known) as driver:  # now strict mode accepts it
        driver.get_port_vlan("Gi1/0/5")


def test_insecure_ignore_needs_no_known_hosts(cli_fake: tuple[FakeCliServer, Path]) -> None:
    server, _ = cli_fake
    with _cisco(server, host_key_policy="insecure-ignore") as driver:
        assert driver.get_port_vlan("Gi1/0/6") >= 1


def test_wrong_enable_secret_is_an_authentication_error(cli_fake: tuple[FakeCliServer, Path]) -> None:
    server, known = cli_fake
    with pytest.raises(AuthenticationError, match="enable") as info, \
            _cisco(server, known_hosts=known, enable_secret="wrong-enable"):
        pass
    assert "wrong-enable" not in str(info.value)


def test_junos_failed_commit_is_rolled_back(cli_fake: tuple[FakeCliServer, Path]) -> None:
    server, known = cli_fake
    harness = cli_harness("juniper_junos", server, known)
    state = server.states["juniper_junos"]
    with harness.build() as driver:
        state.fail_next_commit = "error: configuration database locked by:\r\n  admin terminal p0 (pid 1234)"
        with pytest.raises(CommandFailed, match="rolled back") as info:
            driver.set_port_vlan("ge-0/0/5", 20)
        assert "database locked" in str(info.value)
        assert state.ports["ge-0/0/5"].vlan == 1
        assert state.candidate == {n: (p.vlan, p.shutdown) for n, p in state.ports.items()}
        assert "rollback 0" in state.commands
        change = driver.set_port_vlan("ge-0/0/5", 20)  # the session is still usable
    assert change.after == 20 == state.ports["ge-0/0/5"].vlan


def test_aoscx_routed_port_is_reported_not_converted(cli_fake: tuple[FakeCliServer, Path]) -> None:
    server, known = cli_fake
    harness = cli_harness("aruba_aoscx", server, known)
    with harness.build() as driver, pytest.raises(CommandFailed, match="access port"):
        driver.set_port_vlan("1/1/1", 20)
    assert server.states["aruba_aoscx"].ports["1/1/1"].routed


def test_cli_save_config(cli_fake: tuple[FakeCliServer, Path]) -> None:
    server, known = cli_fake
    harness = cli_harness("cisco_ios", server, known)
    with harness.build(save_config=True) as driver:
        driver.set_port_vlan("Gi1/0/6", 30)
    assert server.states["cisco_ios"].saves == 1


def test_qbridge_partial_set_is_reported(snmp_fake: SnmpAgent) -> None:
    """The agent applies varbinds one by one; a refused PVID leaves the new memberships behind: say so."""
    harness = snmp_harness("snmp_qbridge", snmp_fake)
    state = snmp_fake.state()
    state["vlans"]["20"]["egress"] = []
    del state["vlans"]["30"]
    snmp_fake.reset(state)
    with harness.build() as driver, pytest.raises(CommandFailed, match="VLAN 30 does not exist"):
        driver.set_port_vlan("Gi1/0/5", 30)
    assert harness.vlan_of("Gi1/0/5") == 1


def test_snmp_v2c_and_read_only_community(snmp_fake: SnmpAgent) -> None:
    harness = snmp_harness("snmp_qbridge", snmp_fake)
    with harness.build(version="2c", community="private", username=None, auth_key=None, priv_key=None) as d:
        assert d.set_port_vlan("10106", 10).after == 10  # ifIndex form
    with pytest.raises(AuthenticationError, match="read-only"), \
            harness.build(version="2c", community="public", username=None, auth_key=None, priv_key=None) as d:
        d.set_port_vlan("Gi1/0/6", 20)
    assert harness.vlan_of("Gi1/0/6") == 10


def test_vmvlan_agent_error_status(snmp_fake: SnmpAgent) -> None:
    """A VLAN the agent lacks: refused by the VLAN pre-flight where the driver reads the table, otherwise by the
    agent's own error status."""
    harness = snmp_harness("snmp_cisco_vmvlan", snmp_fake)
    with harness.build() as driver, pytest.raises(CommandFailed) as info:
        driver.set_port_vlan("Gi1/0/5", 77)
    if Capability.VLAN_TABLE in driver.capabilities:
        assert isinstance(info.value, VlanMissing)
    else:
        assert "inconsistentValue" in str(info.value)
    assert harness.vlan_of("Gi1/0/5") == 1


def test_coa_requests_carry_message_authenticator_and_nak_cause(coa_fake: CoaNas) -> None:
    harness = coa_harness(coa_fake)
    coa_fake.prohibited = {"sess-0001"}
    try:
        with harness.build(vendor="hp") as driver:
            driver.bounce_port("AA-BB-CC-00-11-22")
            driver.reauthenticate("AA-BB-CC-00-11-22")  # HP: re-auth by Disconnect-Request
            with pytest.raises(CoANak) as info:
                driver.disconnect("acct-session-id=sess-0001")  # type: ignore[attr-defined]
    finally:
        coa_fake.prohibited = set()
    assert info.value.error_cause == 501
    kinds = [r["kind"] for r in coa_fake.requests]
    assert kinds == ["coa", "disconnect", "disconnect"]
    assert coa_fake.requests[0]["attrs"]["HP-Port-Bounce-Host"] == [12]
    assert all("Message-Authenticator" in r["attrs"] for r in coa_fake.requests)


def test_many_switches_one_result_each(cli_fake: tuple[FakeCliServer, Path], coa_fake: CoaNas,
                                       closed_tcp_port: int) -> None:
    server, known = cli_fake
    cisco = cli_harness("cisco_ios", server, known)
    eos = cli_harness("arista_eos", server, known)
    drivers = {
        "ios": cisco.build,
        "ios-badpw": lambda: cisco.build(password="nope"),
        "eos": eos.build,
        "gone": lambda: cisco.build(port=closed_tcp_port),
    }
    results = run_each(drivers, lambda d: d.set_port_vlan("Ethernet5" if "arista" in d.target.name else "Gi1/0/5", 30))
    assert [r.switch for r in results] == ["ios", "ios-badpw", "eos", "gone"]
    assert [r.ok for r in results] == [True, False, True, False]
    assert isinstance(results[1].error, AuthenticationError)
    assert isinstance(results[3].error, ConnectError)
    assert server.states["cisco_ios"].ports["GigabitEthernet1/0/5"].vlan == 30
    assert server.states["arista_eos"].ports["Ethernet5"].vlan == 30


def test_snmp_drivers_in_parallel_threads(snmp_fake: SnmpAgent) -> None:
    """Each SNMP driver owns an event loop; several run at once from worker threads (run_each)."""
    qbridge = snmp_harness("snmp_qbridge", snmp_fake)
    vmvlan = snmp_harness("snmp_cisco_vmvlan", snmp_fake)
    drivers = {f"sw{i}": (qbridge.build if i % 2 else vmvlan.build) for i in range(6)}
    results = run_each(drivers, lambda d: d.get_port_vlan("Gi1/0/6"), max_workers=6)
    assert [(r.switch, r.value, r.error) for r in results] == [(f"sw{i}", 1, None) for i in range(6)]
