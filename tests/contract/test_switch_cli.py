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
