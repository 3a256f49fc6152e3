"""The driver contract: capabilities, result values, the ``SwitchDriver`` protocol and ``DriverBase``.

``DriverBase`` does the open/close lifecycle once (``__enter__`` -> ``_open``, ``__exit__`` -> ``_close``) and gives
every driver the batch operation ``move_ports`` -- pre-flight (the VLAN exists), the change, the bounce and the
read-back, one result per port -- built from the single-port operations; drivers that can do better (one CLI
session push for many ports, one multi-varbind SNMP SET) override it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Protocol, Self, runtime_checkable

from .errors import DriverError, InvalidArgument, Unsupported, VerificationFailed, VlanMissing

__all__ = [
    "VLAN_MAX",
    "VLAN_MIN",
    "Capability",
    "DriverBase",
    "PortMove",
    "PortOutcome",
    "PortStatus",
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
    VLAN_TABLE = enum.auto()  # vlans(): the VLANs defined on the switch (pre-flight before a move)
    PORT_STATUS = enum.auto()  # port_status(): admin/oper state and VLAN (read-back after a bounce)
    BATCH = enum.auto()  # move_ports() natively batches (one session push / one SET for many ports)


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


@dataclass(frozen=True, slots=True)
class PortStatus:
    """What a port is now: its access VLAN and whether it is administratively enabled and link-up."""

    port: str
    vlan: int
    admin_up: bool
    oper_up: bool | None = None  # None: the driver cannot tell (or the link state is not meaningful)


@dataclass(frozen=True, slots=True)
class PortMove:
    """One port of a batch: move it to ``vlan`` (None: leave the VLAN) and optionally bounce it afterwards."""

    port: str
    vlan: int | None
    bounce: bool = False


@dataclass(frozen=True, slots=True)
class PortOutcome:
    """The result for one port of a batch: what was read back, or the error for this port alone."""

    port: str
    change: VlanChange | None = None
    bounced: bool = False
    status: PortStatus | None = None  # the read-back after the bounce, when there was one
    error: DriverError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


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

    def disconnect(self, port: str) -> None:
        """End the session (CoA Disconnect-Request); switches raise ``Unsupported``."""
        ...

    def save_config(self) -> None:
        """Persist the running configuration (no-op where changes persist by themselves)."""
        ...

    def vlans(self) -> frozenset[int]:
        """The VLAN ids defined on the device, read once per session (the pre-flight of every move)."""
        ...

    def port_status(self, port: str) -> PortStatus:
        """The port's VLAN and admin/oper state, read from the device."""
        ...

    def ensure_port_up(self, port: str) -> bool:
        """Enable the port if it is administratively down (a bounce that was interrupted); True if it was down."""
        ...

    def move_ports(self, moves: Sequence[PortMove]) -> list[PortOutcome]:
        """Move many ports: pre-flight, change, bounce, read back; one outcome per move, in order. A port that
        fails does not fail the others."""
        ...


class DriverBase:
    """The lifecycle and the batch operation, once for every driver. Subclasses set ``name``/``capabilities``,
    implement ``_open``/``_close`` and the single-port operations; a missing operation raises ``Unsupported``."""

    name: ClassVar[str]
    capabilities: ClassVar[Capability] = Capability.NONE

    def __init__(self, target: Target) -> None:
        self._target = target
        self._vlans: frozenset[int] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target.name!r}, {self._target.host!r})"

    @property
    def target(self) -> Target:
        return self._target

    def __enter__(self) -> Self:
        self._vlans = None  # a new session reads the VLAN table afresh
        self._open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def _open(self) -> None:
        """Connect and authenticate; raise a ``DriverError``."""

    def _close(self) -> None:
        """Disconnect; never raises."""

    def _unsupported(self, what: str, port: str | None = None) -> Unsupported:
        return Unsupported(f"{self.name} cannot {what}", switch=self._target.name, port=port)

    # single-port operations: drivers implement what their capabilities say
    def get_port_vlan(self, port: str) -> int:
        raise self._unsupported("read a port's VLAN", port)

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        raise self._unsupported("set a port's VLAN", port)

    def bounce_port(self, port: str) -> None:
        raise self._unsupported("bounce a port", port)

    def reauthenticate(self, port: str) -> None:
        raise self._unsupported("re-authenticate a port", port)

    def disconnect(self, port: str) -> None:
        raise self._unsupported("disconnect a session", port)

    def save_config(self) -> None:
        """Nothing to save unless the driver says so."""

    def _read_vlans(self) -> frozenset[int]:
        raise self._unsupported("read its VLAN table")

    def port_status(self, port: str) -> PortStatus:
        raise self._unsupported("read a port's state", port)

    def ensure_port_up(self, port: str) -> bool:
        raise self._unsupported("enable a port", port)

    def vlans(self) -> frozenset[int]:
        if self._vlans is None:
            self._vlans = self._read_vlans()
        return self._vlans

    def check_vlan_exists(self, vlan: int, port: str | None = None) -> None:
        """Pre-flight: a move into a VLAN the switch does not have is refused before anything is sent."""
        if Capability.VLAN_TABLE in self.capabilities and vlan not in self.vlans():
            raise VlanMissing(f"VLAN {vlan} does not exist on this switch; create it there or fix the segment's "
                              "VLAN in the policy (nothing was changed)", switch=self._target.name, port=port,
                              vlan=vlan)

    def verify_up(self, port: str, vlan: int | None) -> PortStatus:
        """The read-back after a bounce: the port is enabled again and in the expected VLAN."""
        status = self.port_status(port)
        if not status.admin_up:
            raise VerificationFailed("port is still shut down after the bounce", switch=self._target.name,
                                     port=port, expected="enabled", actual="shut down")
        if vlan is not None and status.vlan != vlan:
            raise VerificationFailed("port left the VLAN it was moved to", switch=self._target.name, port=port,
                                     expected=vlan, actual=status.vlan)
        return status

    def move_ports(self, moves: Sequence[PortMove]) -> list[PortOutcome]:
        """One port after the other over this session; drivers with a native batch override this."""
        return [self._move_one(move) for move in moves]

    def _move_one(self, move: PortMove) -> PortOutcome:
        change = None
        try:
            if move.vlan is not None:
                self.check_vlan_exists(move.vlan, move.port)
                change = self.set_port_vlan(move.port, move.vlan)
            if not move.bounce:
                return PortOutcome(move.port, change)
            self.bounce_port(move.port)
            status = self.verify_up(move.port, move.vlan) if Capability.PORT_STATUS in self.capabilities else None
            return PortOutcome(move.port, change, True, status)
        except DriverError as exc:
            return PortOutcome(move.port, change, error=exc)
