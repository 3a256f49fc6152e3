"""``trustport switch`` / ``trustport coa`` commands against the fakes, through an inventory file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trustport.cli.switch import coa, switch
from trustport_lab.fakes.coa_nas import CoaNas
from trustport_lab.fakes.fake_cli import FakeCliServer

ENV = {"TP_SW_PW": "fake-pass-123", "TP_SW_EN": "fake-enable-456", "TP_COA": "testing123"}


@pytest.fixture
def inventory(cli_fake: tuple[FakeCliServer, Path], coa_fake: CoaNas, tmp_path: Path,
              closed_tcp_port: int) -> Path:
    server, known = cli_fake
    for state in server.states.values():
        state.reset()
    coa_fake.requests.clear()
    coa_fake.silent = False
    common = f"username: admin, password_env: TP_SW_PW, enable_secret_env: TP_SW_EN, known_hosts: {known}"
    path = tmp_path / "inventory.yaml"
    path.write_text(f"""
switches:
  ios:
    driver: cisco_ios
    address: 127.0.0.1
    port: {server.ports["cisco_ios"]}
    site: lab
    options: {{{common}, conn_timeout: 3}}
  ios2:
    driver: cisco_ios
    address: 127.0.0.1
    port: {closed_tcp_port}
    options: {{{common}, conn_timeout: 2}}
  nas:
    driver: coa
    address: 127.0.0.1
    port: {coa_fake.port}
    options: {{secret_env: TP_COA, vendor: cisco, timeout: 0.3, retries: 2}}
""")
    return path


def test_set_get_bounce_text(inventory: Path, cli_fake: tuple[FakeCliServer, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(switch, ["set-vlan", "-i", str(inventory), "ios", "Gi1/0/5", "30"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "ios: Gi1/0/5 VLAN 1 -> 30 (verified)" in result.output
    result = runner.invoke(switch, ["get-vlan", "-i", str(inventory), "ios", "Gi1/0/5"], env=ENV)
    assert result.output.strip() == "ios: Gi1/0/5 is in VLAN 30"
    result = runner.invoke(switch, ["bounce", "-i", str(inventory), "ios", "Gi1/0/5"], env=ENV)
    assert result.exit_code == 0
    assert cli_fake[0].states["cisco_ios"].ports["GigabitEthernet1/0/5"].bounces == 1


def test_many_switches_json_one_result_each(inventory: Path) -> None:
    result = CliRunner().invoke(switch, ["set-vlan", "--json", "-i", str(inventory), "ios,ios2", "Gi1/0/5", "20"],
                                env=ENV)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [d["switch"] for d in doc] == ["ios", "ios2"]
    assert doc[0]["result"] == {"port": "Gi1/0/5", "before": 1, "after": 20, "changed": True}
    assert doc[1]["error"]["type"] == "ConnectError"
    assert "fake-pass-123" not in result.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["set-vlan", "ios", "Gi1/0/5", "5000"], 2),
        (["set-vlan", "ios", "Gi1/0/5;reload", "20"], 2),
        (["get-vlan", "nosuch", "Gi1/0/5"], 2),
    ],
)
def test_bad_arguments_exit_2(inventory: Path, args: list[str], code: int) -> None:
    result = CliRunner().invoke(switch, [args[0], "-i", str(inventory), *args[1:]], env=ENV)
    assert result.exit_code == code, result.output


def test_missing_secret_is_reported(inventory: Path) -> None:
    result = CliRunner().invoke(switch, ["check", "-i", str(inventory)], env={})
    assert result.exit_code == 2
    assert "TP_SW_PW" in result.output


def test_coa_commands(inventory: Path, coa_fake: CoaNas) -> None:
    runner = CliRunner()
    ok = runner.invoke(coa, ["reauth", "-i", str(inventory), "nas", "aa:bb:cc:00:11:22"], env=ENV)
    assert ok.exit_code == 0, ok.output
    nak = runner.invoke(coa, ["disconnect", "--json", "-i", str(inventory), "nas", "AA-BB-CC-99-99-99"], env=ENV)
    assert nak.exit_code == 1
    assert json.loads(nak.stdout)[0]["error"]["type"] == "CoANak"
    assert [r["kind"] for r in coa_fake.requests] == ["coa", "disconnect"]


def _one_switch(tmp_path: Path, port: int, known: Path | None, **extra: str) -> Path:
    known_hosts = f", known_hosts: {known}" if known is not None else ""
    options = ", ".join(f"{k}: {v}" for k, v in extra.items())
    path = tmp_path / "one.yaml"
    path.write_text(f"""
switches:
  ios:
    driver: cisco_ios
    address: 127.0.0.1
    port: {port}
    options: {{username: admin, password_env: TP_SW_PW, enable_secret_env: TP_SW_EN, conn_timeout: 3{known_hosts}
               {", " + options if options else ""}}}
""")
    return path


def test_check_without_known_hosts_file_is_not_ok(cli_fake: tuple[FakeCliServer, Path], tmp_path: Path) -> None:
    """Finding 3: 'inventory OK' with strict host keys and no known_hosts file; every connect then failed."""
    server, _ = cli_fake
    inventory = _one_switch(tmp_path, server.ports["cisco_ios"], tmp_path / "missing_known_hosts")
    for args in (["check"], ["check", "--offline"]):
        result = CliRunner().invoke(switch, [*args, "-i", str(inventory)], env=ENV)
        assert result.exit_code == 1, result.output
        assert "inventory OK" not in result.output
        assert "ios: FAILED" in result.output and "does not exist" in result.output
    doc = json.loads(CliRunner().invoke(switch, ["check", "--json", "-i", str(inventory)], env=ENV).stdout)
    assert doc["ok"] is False
    assert doc["switches"][0]["host_key"]["state"] == "no-known-hosts"
    assert doc["switches"][0]["host_key"]["offered"] == f"ssh-ed25519 {server.fingerprint}"
    assert doc["switches"][0]["login"] is None  # never tried: it could not succeed


def test_check_reports_unknown_and_changed_keys_apart(cli_fake: tuple[FakeCliServer, Path], tmp_path: Path) -> None:
    server, good = cli_fake
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    result = CliRunner().invoke(switch, ["check", "-i", str(_one_switch(tmp_path, server.ports["cisco_ios"], empty))],
                                env=ENV)
    assert result.exit_code == 1
    assert f"host key unknown (ssh-ed25519 {server.fingerprint})" in result.output
    assert "ssh-keyscan" in result.output and "impostor" not in result.output
    other = FakeCliServer(("cisco_ios",))
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(good.read_text().replace(
        good.read_text().split()[2], other.host_key.export_public_key("openssh").decode().split()[1]))
    result = CliRunner().invoke(switch, ["check", "-i", str(_one_switch(tmp_path, server.ports["cisco_ios"],
                                                                        changed))], env=ENV)
    assert result.exit_code == 1
    assert "host key changed" in result.output and "impostor" in result.output
    assert server.fingerprint in result.output and other.fingerprint in result.output


def test_check_contacts_each_switch(inventory: Path, cli_fake: tuple[FakeCliServer, Path]) -> None:
    server, _ = cli_fake
    result = CliRunner().invoke(switch, ["check", "--json", "-i", str(inventory)], env=ENV)
    assert result.exit_code == 1  # ios2 points at a closed port
    doc = {s["switch"]: s for s in json.loads(result.stdout)["switches"]}
    ios = doc["ios"]
    assert (ios["ok"], ios["reachable"], ios["login"], ios["host_key"]["state"]) == (True, True, True, "known")
    assert ios["vlans"] == len(server.states["cisco_ios"].vlans) + 4  # and IOS's 1002-1005
    assert {"SET_VLAN", "VLAN_TABLE", "PORT_STATUS", "BATCH"} <= set(ios["capabilities"])
    assert doc["ios2"]["reachable"] is False and "TCP connection" in doc["ios2"]["errors"][0]
    assert doc["nas"]["ok"] is True and "REAUTHENTICATE" in doc["nas"]["capabilities"]
    text = CliRunner().invoke(switch, ["check", "-i", str(inventory)], env=ENV)
    assert f"ios (cisco_ios): reachable, login OK, host key known (ssh-ed25519 {server.fingerprint})" in text.output
    offline = CliRunner().invoke(switch, ["check", "--offline", "-i", str(inventory)], env=ENV)
    assert offline.exit_code == 1  # nothing contacted, but known_hosts has no entry for ios2's port
    assert f"ios (cisco_ios): host key listed (ssh-ed25519 {server.fingerprint})" in offline.output
    assert "ios2: FAILED" in offline.output and "is not in known_hosts" in offline.output


def test_status_move_and_ensure_up(inventory: Path, cli_fake: tuple[FakeCliServer, Path]) -> None:
    state = cli_fake[0].states["cisco_ios"]
    runner = CliRunner()
    result = runner.invoke(switch, ["move", "-i", str(inventory), "--bounce", "ios", "30", "Gi1/0/5", "Gi1/0/6",
                                    "Gi1/0/99"], env=ENV)
    assert result.exit_code == 1, result.output  # one port failed
    assert "2/3 ports moved" in result.output
    assert "Gi1/0/99: FAILED InterfaceMissing" in result.output
    assert state.ports["GigabitEthernet1/0/6"].vlan == 30 and state.ports["GigabitEthernet1/0/6"].bounces == 1
    state.ports["GigabitEthernet1/0/5"].shutdown = True
    status = runner.invoke(switch, ["status", "-i", str(inventory), "ios", "Gi1/0/5"], env=ENV)
    assert status.output.strip() == "ios: Gi1/0/5: VLAN 30, shut down, link down"
    up = runner.invoke(switch, ["ensure-up", "-i", str(inventory), "ios", "Gi1/0/5"], env=ENV)
    assert up.exit_code == 0 and "was down: enabled (verified)" in up.output
    bounced = runner.invoke(switch, ["bounce", "-i", str(inventory), "ios", "Gi1/0/5"], env=ENV)
    assert "Gi1/0/5 bounced (read back: VLAN 30, enabled, link up)" in bounced.output
    missing = runner.invoke(switch, ["set-vlan", "-i", str(inventory), "ios", "Gi1/0/5", "77"], env=ENV)
    assert missing.exit_code == 1 and "VlanMissing" in missing.output and 77 not in state.vlans
