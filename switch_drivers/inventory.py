"""Switch inventory: which driver talks to which device, with secrets referenced, never inlined.

```yaml
switches:
  access-1:
    driver: cisco_ios
    address: 192.0.2.10
    port: 22                    # optional transport port (SSH 22, SNMP 161, CoA 3799/1700)
    site: hq
    options:                    # the driver's options class; secrets only as <field>_env / <field>_file
      username: netops
      password_env: TP_ACCESS1_PASSWORD
      enable_secret_file: /run/secrets/access1-enable
      known_hosts: /etc/trustport/known_hosts
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .base import Capability, SwitchDriver, Target
from .errors import ConnectError, DriverError, InvalidArgument
from .hostkeys import HostKeyReport
from .registry import DriverRegistry, default_registry

__all__ = ["Inventory", "InventoryError", "SwitchCheck", "SwitchEntry", "load_inventory"]


class InventoryError(InvalidArgument):
    """The inventory file is unreadable or invalid; the message lists every problem with its location."""


class SwitchEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    driver: str = Field(min_length=1)
    address: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int | None = Field(default=None, ge=1, le=65535)
    site: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class Inventory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    switches: dict[str, SwitchEntry]

    def entry(self, name: str) -> SwitchEntry:
        try:
            return self.switches[name]
        except KeyError:
            raise InventoryError(f"switch {name!r} is not in the inventory; known: "
                                 f"{', '.join(sorted(self.switches))}") from None

    def target(self, name: str) -> Target:
        entry = self.entry(name)
        return Target(name=name, host=entry.address, port=entry.port)

    def resolved_options(self, name: str, registry: DriverRegistry,
                         environ: Mapping[str, str] | None = None) -> BaseModel:
        """Validate the switch's options, reading ``<secret>_env``/``<secret>_file`` references."""
        entry = self.entry(name)
        if entry.driver not in registry:
            raise InventoryError(f"switches.{name}.driver: unknown driver {entry.driver!r}; known: "
                                 f"{', '.join(sorted(registry))}")
        options_type = registry[entry.driver].options_type
        data = resolve_secrets(options_type, entry.options, environ if environ is not None else os.environ,
                               where=f"switches.{name}.options")
        return registry.options(entry.driver, data, switch=name)

    def driver(self, name: str, registry: DriverRegistry | None = None,
               environ: Mapping[str, str] | None = None) -> SwitchDriver:
        registry = registry or default_registry()
        entry = self.entry(name)
        return registry.create(entry.driver, self.target(name), self.resolved_options(name, registry, environ))

    def problems(self, registry: DriverRegistry | None = None,
                 environ: Mapping[str, str] | None = None) -> list[str]:
        """Every problem in the inventory (unknown drivers, bad options, missing secrets), with location."""
        registry = registry or default_registry()
        found: list[str] = []
        for name, entry in self.switches.items():
            if entry.driver not in registry:
                found.append(f"switches.{name}.driver: unknown driver {entry.driver!r}")
                continue
            try:
                self.resolved_options(name, registry, environ)
            except InvalidArgument as exc:
                found.append(f"switches.{name}: {exc}")
        return found


    def check(self, name: str, registry: DriverRegistry | None = None, environ: Mapping[str, str] | None = None,
              *, contact: bool = True) -> SwitchCheck:
        """Everything that decides whether trustport can drive switch ``name``: its options and secrets, and unless
        ``contact`` is False its host key (against known_hosts and the key it offers), reachability and login."""
        registry = registry or default_registry()
        entry = self.entry(name)
        check = _CheckBuilder(name, entry.driver)
        try:
            options = self.resolved_options(name, registry, environ)
        except InvalidArgument as exc:
            check.problems.append(str(exc))
            return check.build()
        caps = registry[entry.driver].capabilities
        check.capabilities = tuple(c.name for c in Capability if c and c in caps and c.name)
        driver = registry.create(entry.driver, self.target(name), options)
        from .cli import CliDriver

        if isinstance(driver, CliDriver):
            _check_ssh(driver, check, contact)
        elif contact:
            _check_login(driver, check)
        return check.build()


@dataclass(frozen=True, slots=True)
class SwitchCheck:
    """What ``trustport switch check`` reports for one switch. ``problems`` are inventory/option errors (fix the
    file); ``errors`` are what a connection would run into (host key, reachability, login). None: not tried."""

    switch: str
    driver: str
    capabilities: tuple[str, ...]
    problems: tuple[str, ...]
    errors: tuple[str, ...]
    reachable: bool | None
    login: bool | None
    host_key: HostKeyReport | None
    vlans: int | None  # how many VLANs the switch reported (drivers with a VLAN table)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.errors


class _CheckBuilder:
    def __init__(self, switch: str, driver: str) -> None:
        self.switch, self.driver = switch, driver
        self.capabilities: tuple[str, ...] = ()
        self.problems: list[str] = []
        self.errors: list[str] = []
        self.reachable: bool | None = None
        self.login: bool | None = None
        self.host_key: HostKeyReport | None = None
        self.vlans: int | None = None

    def build(self) -> SwitchCheck:
        return SwitchCheck(self.switch, self.driver, self.capabilities, tuple(self.problems), tuple(self.errors),
                           self.reachable, self.login, self.host_key, self.vlans)


def _check_ssh(driver: Any, check: _CheckBuilder, contact: bool) -> None:
    from . import hostkeys

    options, target = driver.options, driver.target
    if not contact:
        report = hostkeys.offline(target, options.host_key_policy, options.known_hosts)
        check.host_key = report
        if report.error is not None:
            check.errors.append(str(report.error))
        return
    try:
        report = hostkeys.inspect(target, options.host_key_policy, options.known_hosts, options.conn_timeout)
    except ConnectError as exc:
        check.reachable = False
        check.errors.append(str(exc))
        return
    check.reachable, check.host_key = True, report
    if report.error is not None:
        check.errors.append(str(report.error))
        return
    if report.state in ("known", "not-checked"):  # an unknown key under accept-new is recorded only by a real job
        _check_login(driver, check)


def _check_login(driver: SwitchDriver, check: _CheckBuilder) -> None:
    try:
        with driver:
            check.login = True
            if Capability.VLAN_TABLE in driver.capabilities:
                check.vlans = len(driver.vlans())
                check.reachable = True
    except DriverError as exc:
        check.login = False
        check.errors.append(str(exc))
    except Exception as exc:  # a driver bug: still one result for this switch
        check.login = False
        check.errors.append(f"{type(exc).__name__}: {exc}")


def _secret_fields(options_type: type[BaseModel]) -> set[str]:
    fields = set()
    for field_name, info in options_type.model_fields.items():
        if "SecretStr" in repr(info.annotation):
            fields.add(field_name)
    return fields


def resolve_secrets(options_type: type[BaseModel], raw: Mapping[str, Any], environ: Mapping[str, str],
                    *, where: str) -> dict[str, Any]:
    """Replace ``<field>_env: VAR`` / ``<field>_file: PATH`` by the secret value; refuse inline secrets."""
    secrets = _secret_fields(options_type)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in secrets:
            raise InventoryError(f"{where}.{key}: secrets must not be written inline; use {key}_env or {key}_file")
        stem, _, kind = key.rpartition("_")
        if stem in secrets and kind in ("env", "file"):
            if stem in out:
                raise InventoryError(f"{where}: give only one of {stem}_env / {stem}_file")
            out[stem] = SecretStr(_read_secret(kind, str(value), f"{where}.{key}", environ))
        else:
            out[key] = value
    return out


def _read_secret(kind: str, ref: str, where: str, environ: Mapping[str, str]) -> str:
    if kind == "env":
        value = environ.get(ref)
        if not value:
            raise InventoryError(f"{where}: environment variable {ref} is not set or empty")
        return value
    path = Path(ref)
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise InventoryError(f"{where}: cannot read secret file {ref} ({exc.strerror})") from None
    if not value:
        raise InventoryError(f"{where}: secret file {ref} is empty")
    return value


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate an inventory YAML file; every schema problem is reported with its location."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"inventory {path} is not valid YAML: {exc}") from None
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise InventoryError(f"inventory {path} is invalid: {problems}") from None
