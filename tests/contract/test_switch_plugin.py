"""The worked example of docs/switch-drivers.md ("Adding a vendor in one file"), taken from the document, installed
as a third-party distribution with its entry point, found by the registry and driven against the IOS fake."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from switch_drivers import Capability, InterfaceMissing, PortMove, VlanMissing, default_registry
from trustport_lab.fakes.fake_cli import FakeCliServer
from trustport_lab.fakes.harness import FAKE_DIALECT, Harness, cli_harness

DOC = Path(__file__).resolve().parents[2] / "docs" / "switch-drivers.md"


def _block(language: str, first_line: str) -> str:
    for body in re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S):
        if body.startswith(first_line):
            return str(body)
    raise AssertionError(f"docs/switch-drivers.md has no ```{language} block starting with {first_line!r}")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           cli_fake: tuple[FakeCliServer, Path]) -> Harness:
    (tmp_path / "trustport_cisco_xe.py").write_text(_block("python", "# trustport_cisco_xe.py"))
    declared = tomllib.loads(_block("toml", "[project.entry-points"))["project"]["entry-points"]
    lines = "".join(f"{name} = {value}\n" for name, value in declared["trustport.switch_drivers"].items())
    dist = tmp_path / "trustport_cisco_xe-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: trustport-cisco-xe\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[trustport.switch_drivers]\n{lines}")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "trustport_cisco_xe", raising=False)
    monkeypatch.setitem(FAKE_DIALECT, "cisco_xe", "cisco_ios")  # the one line the document says to add
    server, known_hosts = cli_fake
    return cli_harness("cisco_xe", server, known_hosts)


def test_documented_vendor_is_found_through_its_entry_point(plugin: Harness) -> None:
    registry = default_registry()
    entry = registry["cisco_xe"]
    assert entry.source == "entry point cisco_xe = trustport_cisco_xe:CiscoXeDriver (trustport-cisco-xe 1.0)"
    assert entry.summary == "Cisco IOS-XE (Catalyst 9000) over SSH."
    assert {Capability.VLAN_TABLE, Capability.PORT_STATUS, Capability.BATCH} <= set(entry.capabilities)
    assert len(registry) == 9 and not registry.problems


def test_documented_vendor_passes_the_basics(plugin: Harness) -> None:
    with plugin.build() as driver:
        assert type(driver).__module__ == "trustport_cisco_xe"
        assert driver.set_port_vlan(plugin.port, 20).after == 20 == plugin.vlan_of(plugin.port)
        with pytest.raises(VlanMissing):
            driver.set_port_vlan(plugin.port, 77)
        with pytest.raises(InterfaceMissing):
            driver.bounce_port("Gi1/0/99")
        driver.bounce_port(plugin.port)
        ports = plugin.ports(10)
        outcomes = driver.move_ports([PortMove(p, 999, bounce=True) for p in ports] + [PortMove("Gi1/0/99", 30)])
    assert [o.ok for o in outcomes] == [True] * 10 + [False]
    assert all(plugin.vlan_of(p) == 999 and plugin.bounces_of(p) == 1 for p in ports)
    assert 77 not in plugin.fake.vlans
