"""Inventory loading, secret references, registry and the one-result-per-switch runner (no network)."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import pytest

from switch_drivers import (
    Capability,
    CommandFailed,
    DriverBase,
    DriverEntry,
    InvalidArgument,
    SwitchDriver,
    Target,
    VlanChange,
    default_registry,
    run_each,
)
from switch_drivers.inventory import InventoryError, load_inventory
from switch_drivers.registry import BUILTIN_DRIVERS
from switch_drivers.snmp import QBridgeDriver
from switch_drivers.vendors import CiscoIosDriver

INVENTORY = """
switches:
  access-1:
    driver: cisco_ios
    address: 192.0.2.10
    site: hq
    options:
      username: netops
      password_env: TP_TEST_PW
      enable_secret_file: {secret_file}
      host_key_policy: insecure-ignore
  snmp-1:
    driver: snmp_qbridge
    address: 192.0.2.11
    port: 1161
    options:
      version: "3"
      username: nac
      auth_key_env: TP_TEST_AUTH
      priv_key_env: TP_TEST_PRIV
"""


@pytest.fixture
def inventory_file(tmp_path: Path) -> Path:
    secret = tmp_path / "enable"
    secret.write_text("enable-from-file\n")
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY.format(secret_file=secret))
    return path


ENV = {"TP_TEST_PW": "pw-from-env", "TP_TEST_AUTH": "auth-key-123", "TP_TEST_PRIV": "priv-key-456"}


def test_inventory_builds_drivers_with_resolved_secrets(inventory_file: Path) -> None:
    inv = load_inventory(inventory_file)
    driver = inv.driver("access-1", environ=ENV)
    assert isinstance(driver, CiscoIosDriver)
    assert driver.target == Target("access-1", "192.0.2.10", None)
    assert driver.options.password.get_secret_value() == "pw-from-env"
    assert driver.options.enable_secret is not None
    assert driver.options.enable_secret.get_secret_value() == "enable-from-file"
    assert "pw-from-env" not in repr(driver.options)
    snmp = inv.driver("snmp-1", environ=ENV)
    assert isinstance(snmp, QBridgeDriver)
    assert snmp.target.port == 1161
    assert inv.problems(environ=ENV) == []


def test_inventory_reports_every_problem(inventory_file: Path) -> None:
    inv = load_inventory(inventory_file)
    problems = inv.problems(environ={})
    assert len(problems) == 2
    assert any("TP_TEST_PW" in p and "access-1" in p for p in problems)
    assert any("TP_TEST_AUTH" in p for p in problems)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("switches:\n  a:\n    driver: cisco_ios\n    address: x\n    options: {username: u, password: inline}\n",
         "must not be written inline"),
        ("switches:\n  a:\n    driver: nope\n    address: x\n", "unknown driver"),
        ("switches:\n  a:\n    driver: coa\n    address: 'x; rm'\n", "address"),
        ("switches:\n  a:\n    driver: coa\n    address: x\n    port: 70000\n", "port"),
        ("switches: [1, 2\n", "not valid YAML"),
        ("switches:\n  a:\n    driver: coa\n    address: x\n    colour: red\n", "colour"),
    ],
)
def test_inventory_errors_name_the_location(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(body)
    def load_and_build() -> None:
        load_inventory(path).driver("a", environ={})

    with pytest.raises(InventoryError, match=message):
        load_and_build()


def test_registry_is_explicit_and_immutable() -> None:
    registry = default_registry()
    assert len(registry) == 8
    with pytest.raises(InvalidArgument, match="unknown driver"):
        registry["nope"]
    extra = DriverEntry("fake", _FakeDriver, default_registry()["coa"].options_type, Capability.GET_VLAN, "test")
    bigger = registry.with_entry(extra)
    assert "fake" in bigger
    assert "fake" not in registry
    with pytest.raises(ValueError, match="twice"):
        bigger.with_entry(extra)


def test_registry_options_errors_list_fields() -> None:
    with pytest.raises(InvalidArgument, match=r"username.*password|password.*username"):
        default_registry().options("cisco_ios", {})


class _FakeDriver(DriverBase):
    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capability] = Capability.GET_VLAN | Capability.SET_VLAN

    def __init__(self, target: Target, options: object = None) -> None:
        super().__init__(target)

    def _open(self) -> None:
        if self._target.host == "down":
            raise CommandFailed("boom", switch=self._target.name)

    def get_port_vlan(self, port: str) -> int:
        return 1

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        if self._target.host == "bug":
            raise RuntimeError("untranslated")
        return VlanChange(self._target.name, port, 1, vlan)


def test_run_each_returns_one_result_per_switch_in_order() -> None:
    hosts = {"a": "ok", "b": "down", "c": "bug", "d": "ok"}
    drivers = {name: (lambda n=name, h=host: _FakeDriver(Target(n, h))) for name, host in hosts.items()}
    assert isinstance(_FakeDriver(Target("x", "y")), SwitchDriver)
    results = run_each(drivers, lambda d: d.set_port_vlan("p", 20))
    assert [r.switch for r in results] == ["a", "b", "c", "d"]
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[0].value == VlanChange("a", "p", 1, 20)
    assert isinstance(results[1].error, CommandFailed)
    assert isinstance(results[2].error, RuntimeError)
    assert run_each({}, lambda d: None) == []


PLUGIN = '''
from switch_drivers import Capability, DriverEntry
from switch_drivers.coa import CoaOptions
from switch_drivers.base import DriverBase


class AcmeDriver(DriverBase):
    """ACME access switches (test plugin)."""

    name = "acme"
    options_type = CoaOptions
    capabilities = Capability.BOUNCE_PORT

    def __init__(self, target, options):
        super().__init__(target)


class Impostor(AcmeDriver):
    """Claims to be cisco_ios."""

    name = "cisco_ios"


ACME_ENTRY = DriverEntry("acme_entry", AcmeDriver, CoaOptions, Capability.BOUNCE_PORT, "ACME via an entry object")
'''


def _install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: str) -> None:
    """A third-party distribution on sys.path, as `pip install` would leave it."""
    (tmp_path / "acme_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "acme_plugin-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugin\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_plugin", raising=False)


def test_third_party_entry_point_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, monkeypatch, "[trustport.switch_drivers]\nacme = acme_plugin:AcmeDriver\n"
                                           "acme_entry = acme_plugin:ACME_ENTRY\n")
    registry = default_registry()
    assert {"acme", "acme_entry", "cisco_ios", "coa"} <= set(registry)
    assert len(registry) == 10 and not registry.problems
    acme = registry["acme"]
    assert acme.factory is sys.modules["acme_plugin"].AcmeDriver
    assert acme.summary == "ACME access switches (test plugin)."
    assert acme.source == "entry point acme = acme_plugin:AcmeDriver (acme-plugin 1.2)"
    assert registry["acme_entry"].summary == "ACME via an entry object"
    driver = registry.create("acme", Target("a", "192.0.2.1"), {"secret": "s"})
    assert isinstance(driver, SwitchDriver)


def test_plugins_cannot_replace_a_driver_or_break_the_others(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, monkeypatch, "[trustport.switch_drivers]\ncisco_ios = acme_plugin:Impostor\n"
                                           "broken = acme_plugin:DoesNotExist\nmisnamed = acme_plugin:AcmeDriver\n")
    registry = default_registry()
    assert registry["cisco_ios"].factory is CiscoIosDriver  # the built-in stays
    assert set(registry.problems) == {"cisco_ios", "broken", "misnamed"}
    assert "cannot replace" in registry.problems["cisco_ios"]
    with pytest.raises(InvalidArgument, match=r"driver 'broken' could not be loaded: .*AttributeError"):
        registry["broken"]
    with pytest.raises(InvalidArgument, match="must be called that"):
        registry["misnamed"]
    assert len(registry) == 8


def test_without_distribution_metadata_the_builtins_are_used(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    def missing(name: str) -> None:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    registry = default_registry()
    assert set(registry) == set(BUILTIN_DRIVERS)
    assert registry["cisco_ios"].factory is CiscoIosDriver
    assert registry["coa"].source == "built-in switch_drivers.coa:CoaDriver"
    assert "distribution metadata is missing" in caplog.text and "pip install -e ." in caplog.text


def test_builtin_list_matches_the_entry_points() -> None:
    declared = {ep.name: ep.value for ep in metadata.entry_points(group="trustport.switch_drivers")
                if ep.dist is not None and ep.dist.name == "trustport"}
    assert declared == BUILTIN_DRIVERS
