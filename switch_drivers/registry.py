"""Driver registry (an explicit, immutable object -- no class-level global state) and many-switch runs.

Drivers are found through the ``trustport.switch_drivers`` entry-point group, the built-in eight included (declared in
pyproject.toml); an entry point names a :class:`DriverEntry` or a driver class with ``name``, ``options_type``,
``capabilities`` and a docstring (or ``summary``). Only when trustport's own distribution metadata is missing
(running from a source tree that was never installed) does :func:`default_registry` fall back to the built-in list,
and it says so in the log.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from .base import Capability, SwitchDriver, Target
from .errors import DriverError, InvalidArgument

__all__ = [
    "BUILTIN_DRIVERS",
    "ENTRY_POINT_GROUP",
    "DriverEntry",
    "DriverRegistry",
    "SwitchResult",
    "default_registry",
    "entry_for",
    "run_each",
]

T = TypeVar("T")
ENTRY_POINT_GROUP = "trustport.switch_drivers"
DISTRIBUTION = "trustport"
log = logging.getLogger(__name__)

# the fallback when trustport's distribution metadata is missing; pyproject.toml declares the same eight
BUILTIN_DRIVERS: dict[str, str] = {
    "cisco_ios": "switch_drivers.vendors.cisco_ios:CiscoIosDriver",
    "arista_eos": "switch_drivers.vendors.arista_eos:AristaEosDriver",
    "aruba_aoscx": "switch_drivers.vendors.aruba_aoscx:ArubaAosCxDriver",
    "hp_procurve": "switch_drivers.vendors.hp_procurve:HpProcurveDriver",
    "juniper_junos": "switch_drivers.vendors.juniper_junos:JuniperJunosDriver",
    "snmp_qbridge": "switch_drivers.snmp:QBridgeDriver",
    "snmp_cisco_vmvlan": "switch_drivers.snmp:CiscoVmVlanDriver",
    "coa": "switch_drivers.coa:CoaDriver",
}


@dataclass(frozen=True, slots=True)
class DriverEntry:
    """A registered driver: its factory, typed options class and declared capabilities; ``source`` says where it
    came from (the entry point, or the built-in fallback)."""

    name: str
    factory: Callable[[Target, Any], SwitchDriver]
    options_type: type[BaseModel]
    capabilities: Capability
    summary: str
    source: str = ""


def entry_for(obj: object, *, source: str = "") -> DriverEntry:
    """A :class:`DriverEntry` from what an entry point names: an entry, or a driver class."""
    if isinstance(obj, DriverEntry):
        return obj if obj.source or not source else DriverEntry(obj.name, obj.factory, obj.options_type,
                                                                 obj.capabilities, obj.summary, source)
    if isinstance(obj, type):
        name = getattr(obj, "name", None)
        options_type = getattr(obj, "options_type", None)
        capabilities = getattr(obj, "capabilities", None)
        if (isinstance(name, str) and isinstance(options_type, type) and issubclass(options_type, BaseModel)
                and isinstance(capabilities, Capability)):
            doc = (obj.__doc__ or "").strip().splitlines()
            summary = getattr(obj, "summary", "") or (doc[0] if doc else name)
            return DriverEntry(name, cast(Callable[[Target, Any], SwitchDriver], obj), options_type, capabilities,
                               str(summary), source)
    raise TypeError(f"{source or obj!r}: must name a DriverEntry or a driver class with name, options_type (a "
                    "pydantic model) and capabilities (a Capability)")


class DriverRegistry(Mapping[str, DriverEntry]):
    """Name -> :class:`DriverEntry`. Build one with :func:`default_registry` and extend with :meth:`with_entry`.

    ``problems`` lists entry points that could not be used (import error, wrong object, a name already taken);
    asking for such a driver raises an error that quotes the problem."""

    def __init__(self, entries: Iterable[DriverEntry] = (), problems: Mapping[str, str] | None = None) -> None:
        self._entries: dict[str, DriverEntry] = {}
        self._problems: dict[str, str] = dict(problems or {})
        for entry in entries:
            if entry.name in self._entries:
                raise ValueError(f"driver {entry.name!r} registered twice")
            self._entries[entry.name] = entry

    @property
    def problems(self) -> dict[str, str]:
        return dict(self._problems)

    def __getitem__(self, name: str) -> DriverEntry:
        try:
            return self._entries[name]
        except KeyError:
            if name in self._problems:
                raise InvalidArgument(f"driver {name!r} could not be loaded: {self._problems[name]}") from None
            raise InvalidArgument(f"unknown driver {name!r}; known drivers: {', '.join(sorted(self))}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def with_entry(self, entry: DriverEntry) -> DriverRegistry:
        """A new registry with ``entry`` added (this one is left unchanged)."""
        return DriverRegistry([*self._entries.values(), entry], self._problems)

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


def _load(value: str, where: str) -> DriverEntry:
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return entry_for(obj, source=where)


def _load_entry_points(taken: set[str]) -> tuple[list[DriverEntry], dict[str, str]]:
    """Every driver advertised under the entry-point group, trustport's own first, then third parties (which may not
    replace a driver already registered)."""
    found = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    found.sort(key=lambda ep: (ep.dist is None or ep.dist.name != DISTRIBUTION, ep.name))
    entries: list[DriverEntry] = []
    problems: dict[str, str] = {}
    names = set(taken)
    for ep in found:
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
        where = f"entry point {ep.name} = {ep.value} ({dist})"
        if ep.name in names:
            problems.setdefault(ep.name, f"{where}: the name {ep.name!r} is already registered; a plugin cannot "
                                         "replace a driver (uninstall one of them)")
            continue
        try:
            entry = entry_for(ep.load(), source=where)
        except Exception as exc:  # a broken plugin must not take the built-in drivers down with it
            problems[ep.name] = f"{where}: {type(exc).__name__}: {exc}"
            continue
        if entry.name != ep.name:
            problems[ep.name] = f"{where}: it names driver {entry.name!r}; the entry point must be called that"
            continue
        names.add(entry.name)
        entries.append(entry)
    return entries, problems


def default_registry() -> DriverRegistry:
    """Every driver advertised under ``trustport.switch_drivers`` (the eight built-in ones and any plugin).

    Falls back to :data:`BUILTIN_DRIVERS` only when trustport's distribution metadata is missing."""
    try:
        metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        log.warning("trustport's distribution metadata is missing (a source tree that was never installed?): "
                    "using the built-in driver list; plugins under %r are not loaded until you run "
                    "`pip install -e .`", ENTRY_POINT_GROUP)
        return DriverRegistry(_load(value, f"built-in {value}") for value in BUILTIN_DRIVERS.values())
    entries, problems = _load_entry_points(set())
    missing = [name for name in BUILTIN_DRIVERS if name not in {e.name for e in entries} and name not in problems]
    if missing:  # metadata from an install older than the entry points: say how to fix it, keep working
        log.warning("trustport's installed metadata does not advertise %s; reinstall (`pip install -e .`) -- "
                    "using the built-in definitions meanwhile", ", ".join(missing))
        entries += [_load(BUILTIN_DRIVERS[name], f"built-in {BUILTIN_DRIVERS[name]}") for name in missing]
    return DriverRegistry(entries, problems)


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
