"""The driver contract: capabilities, result values and the ``SwitchDriver`` protocol."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Protocol, Self, runtime_checkable

from .errors import InvalidArgument

__all__ = [
    "VLAN_MAX",
    "VLAN_MIN",
    "Capability",
    "SwitchDriver",
    "Target",
    "VlanChange",
    "check_vlan",
]

VLAN_MIN = 1
VLAN_MAX = 4094


class Capability(enum.Flag):
    """What a driver can do (compare PacketFence ``SwitchSupports``)."""

    NONE = 0
    GET_VLAN = enum.auto()
    SET_VLAN = enum.auto()
    BOUNCE_PORT = enum.auto()
    REAUTHENTICATE = enum.auto()
    DISCONNECT = enum.auto()
    SAVE_CONFIG = enum.auto()


@dataclass(frozen=True, slots=True)
class Target:
    """Where a driver connects: inventory name (used in messages), address and transport port."""

    name: str
    host: str
    port: int | None = None

    def __post_init__(self) -> None:
        if self.port is not None and not 0 < self.port < 65536:
            raise InvalidArgument(f"transport port {self.port} is out of range 1-65535", switch=self.name)


@dataclass(frozen=True, slots=True)
class VlanChange:
    """Outcome of ``set_port_vlan``: the VLAN read before the change and the one read back after it."""

    switch: str
    port: str
    before: int
    after: int

    @property
    def changed(self) -> bool:
        return self.before != self.after


def check_vlan(vlan: object, *, switch: str = "", port: str | None = None) -> int:
    """Return ``vlan`` if it is an access VLAN id 1-4094; raise :class:`InvalidArgument` otherwise."""
    if isinstance(vlan, bool) or not isinstance(vlan, int) or not VLAN_MIN <= vlan <= VLAN_MAX:
        raise InvalidArgument(
            f"VLAN {vlan!r} is not a valid access VLAN id; use an integer {VLAN_MIN}-{VLAN_MAX}",
            switch=switch,
            port=port,
        )
    return vlan


@runtime_checkable
class SwitchDriver(Protocol):
    """Intent-level enforcement operations on one device.

    Use as a context manager: ``__enter__`` connects (and authenticates), ``__exit__`` disconnects.
    ``port`` is the vendor's interface name (``Gi1/0/5``, ``1/1/5``, ``ge-0/0/5``...) for CLI drivers, an
    ifName or numeric ifIndex for SNMP drivers, and a session selector for the CoA driver.
    Operations a driver cannot do raise :class:`~switch_drivers.errors.Unsupported`.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capability]

    @property
    def target(self) -> Target: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def get_port_vlan(self, port: str) -> int:
        """Return the access VLAN configured on ``port``."""
        ...

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        """Move ``port`` to access VLAN ``vlan`` and verify by reading it back."""
        ...

    def bounce_port(self, port: str) -> None:
        """Take the port down and up again so the client re-runs DHCP/802.1X."""
        ...

    def reauthenticate(self, port: str) -> None:
        """Force 802.1X re-authentication of the port (or session, for CoA)."""
        ...
