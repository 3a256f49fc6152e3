"""Driver registry (an explicit, immutable object — no class-level global state) and many-switch runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from .base import Capability, SwitchDriver, Target
from .errors import DriverError, InvalidArgument

__all__ = ["DriverEntry", "DriverRegistry", "SwitchResult", "default_registry", "run_each"]

T = TypeVar("T")
ENTRY_POINT_GROUP = "trustport.switch_drivers"


@dataclass(frozen=True, slots=True)
class DriverEntry:
    """A registered driver: its factory, typed options class and declared capabilities."""

    name: str
    factory: Callable[[Target, Any], SwitchDriver]
    options_type: type[BaseModel]
    capabilities: Capability
    summary: str


class DriverRegistry(Mapping[str, DriverEntry]):
    """Name -> :class:`DriverEntry`. Build one with :func:`default_registry` and extend with :meth:`with_entry`."""

    def __init__(self, entries: Iterable[DriverEntry] = ()) -> None:
        self._entries: dict[str, DriverEntry] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise ValueError(f"driver {entry.name!r} registered twice")
            self._entries[entry.name] = entry

    def __getitem__(self, name: str) -> DriverEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise InvalidArgument(f"unknown driver {name!r}; known drivers: {', '.join(sorted(self))}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def with_entry(self, entry: DriverEntry) -> DriverRegistry:
        """A new registry with ``entry`` added (this one is left unchanged)."""
        return DriverRegistry([*self._entries.values(), entry])

    def options(self, name: str, raw: Mapping[str, Any] | BaseModel, *, switch: str = "") -> BaseModel:
        """Validate ``raw`` against the driver's options class; errors name every bad field."""
        entry = self[name]
        if isinstance(raw, entry.options_type):
            return raw
        data = raw.model_dump() if isinstance(raw, BaseModel) else dict(raw)
        try:
            return entry.options_type.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(options)'}: {e['msg']}" for e in exc.errors())
            raise InvalidArgument(f"invalid {name} options: {problems}", switch=switch) from None

    def create(self, name: str, target: Target, options: Mapping[str, Any] | BaseModel) -> SwitchDriver:
        """Instantiate driver ``name`` (not yet connected: use it as a context manager)."""
        return self[name].factory(target, self.options(name, options, switch=target.name))

    @classmethod
    def from_entry_points(cls, base: DriverRegistry | None = None) -> DriverRegistry:
        """``base`` plus third-party drivers advertised under the ``trustport.switch_drivers`` group."""
        from importlib.metadata import entry_points

        registry = base or default_registry()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            entry = ep.load()
            if not isinstance(entry, DriverEntry):
                raise TypeError(f"entry point {ep.name} must point at a DriverEntry")
            registry = registry.with_entry(entry)
        return registry


def _entry(cls: Any, summary: str) -> DriverEntry:
    return DriverEntry(name=cls.name, factory=cast(Callable[[Target, Any], SwitchDriver], cls),
                       options_type=cls.options_type, capabilities=cls.capabilities, summary=summary)


def default_registry() -> DriverRegistry:
    """The eight built-in drivers."""
    from .cli import AristaEosDriver, ArubaAosCxDriver, CiscoIosDriver, HpProcurveDriver, JuniperJunosDriver
    from .coa import CoaDriver
    from .snmp import CiscoVmVlanDriver, QBridgeDriver

    return DriverRegistry([
        _entry(CiscoIosDriver, "Cisco IOS / IOS-XE over SSH (netmiko)"),
        _entry(ArubaAosCxDriver, "Aruba AOS-CX over SSH (netmiko)"),
        _entry(HpProcurveDriver, "HPE ProCurve / ArubaOS-Switch over SSH (netmiko)"),
        _entry(JuniperJunosDriver, "Juniper Junos ELS over SSH (netmiko, commit/rollback)"),
        _entry(AristaEosDriver, "Arista EOS over SSH (netmiko, JSON read-back)"),
        _entry(QBridgeDriver, "SNMP Q-BRIDGE-MIB (dot1qPvid + static PortLists)"),
        _entry(CiscoVmVlanDriver, "SNMP CISCO-VLAN-MEMBERSHIP-MIB vmVlan"),
        _entry(CoaDriver, "RADIUS CoA / Disconnect (RFC 5176)"),
    ])


@dataclass(frozen=True, slots=True)
class SwitchResult(Generic[T]):
    """Outcome of one operation on one switch: ``value`` on success, ``error`` otherwise."""

    switch: str
    value: T | None
    error: Exception | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


def run_each(
    drivers: Mapping[str, Callable[[], SwitchDriver]],
    operation: Callable[[SwitchDriver], T],
    *,
    max_workers: int = 4,
) -> list[SwitchResult[T]]:
    """Run ``operation`` on every switch (each inside its own ``with driver:``); one result per switch.

    A failure on one switch never stops the others. Results are in the order of ``drivers``.
    """

    def one(name: str, make: Callable[[], SwitchDriver]) -> SwitchResult[T]:
        start = time.monotonic()
        try:
            with make() as driver:
                value = operation(driver)
        except DriverError as exc:
            return SwitchResult(name, None, exc, time.monotonic() - start)
        except Exception as exc:  # a bug or an untranslated library error: still one result per switch
            return SwitchResult(name, None, exc, time.monotonic() - start)
        return SwitchResult(name, value, None, time.monotonic() - start)

    if not drivers:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(drivers)))) as pool:
        futures = [pool.submit(one, name, make) for name, make in drivers.items()]
        return [f.result() for f in futures]
