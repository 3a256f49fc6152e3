"""SNMP drivers (pysnmp 7, asyncio): standards Q-BRIDGE and Cisco vmVlan, bounce via ifAdminStatus.

``port`` is an ifName (``Gi1/0/5``, looked up by walking IF-MIB ifName) or a decimal ifIndex (``10105``).
pysnmp is asyncio-only; each driver owns a private event loop, so call it from plain (or worker) threads,
not from inside a running event loop (use ``asyncio.to_thread`` there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .base import Capability, Target, VlanChange, check_vlan
from .errors import (
    AuthenticationError,
    CommandFailed,
    ConnectError,
    DriverError,
    DriverTimeout,
    InvalidArgument,
    Unsupported,
    VerificationFailed,
)

__all__ = [
    "OIDS",
    "CiscoVmVlanDriver",
    "CiscoVmVlanOptions",
    "QBridgeDriver",
    "QBridgeOptions",
    "SnmpOptions",
    "portlist_has",
    "portlist_with",
]

T = TypeVar("T")
Oid = tuple[int, ...]
log = logging.getLogger(__name__)


def _oid(text: str) -> Oid:
    return tuple(int(x) for x in text.split("."))


# Object table: name -> OID prefix (instance index is appended).
OIDS: dict[str, Oid] = {
    "sysObjectID": _oid("1.3.6.1.2.1.1.2"),
    "ifName": _oid("1.3.6.1.2.1.31.1.1.1.1"),
    "ifAdminStatus": _oid("1.3.6.1.2.1.2.2.1.7"),
    "dot1dBasePortIfIndex": _oid("1.3.6.1.2.1.17.1.4.1.2"),
    "dot1qPvid": _oid("1.3.6.1.2.1.17.7.1.4.5.1.1"),
    "dot1qVlanStaticEgressPorts": _oid("1.3.6.1.2.1.17.7.1.4.3.1.2"),
    "dot1qVlanStaticUntaggedPorts": _oid("1.3.6.1.2.1.17.7.1.4.3.1.4"),
    "vmVlan": _oid("1.3.6.1.4.1.9.9.68.1.2.2.1.2"),
    "dot1xPaePortReauthenticate": _oid("1.0.8802.1.1.1.1.1.2.1.5"),
}
IF_UP, IF_DOWN, TRUTH_TRUE = 1, 2, 1
# pysnmp ErrorIndication class names / texts (lower-case, no spaces) that mean "credentials or access"
_AUTH_INDICATIONS = ("unknownusername", "unknownusmuser", "wrongdigest", "pdudigest", "authenticationerror",
                     "authenticationfailure", "decryptionerror", "ciphering", "unknownsecurityname",
                     "unsupportedsecuritylevel", "unknowncommunityname", "nosuchview", "noaccessentry",
                     "nogroupname", "notinview", "nosuchcontext")
_TIMEOUT_INDICATIONS = ("requesttimedout", "timeout", "noresponse", "timedout")
_ACCESS_STATUSES = ("noAccess", "authorizationError", "readOnly")
_PORT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/:._-]{0,63}", re.ASCII)


class SnmpOptions(BaseModel):
    """SNMP v2c (``community``) or v3 authPriv (``username``/``auth_key``/``priv_key``). Seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal["2c", "3"] = "3"
    community: SecretStr | None = None
    username: str | None = None
    auth_key: SecretStr | None = None
    priv_key: SecretStr | None = None
    auth_protocol: Literal["SHA", "SHA256"] = "SHA"
    priv_protocol: Literal["AES", "AES256"] = "AES"
    context: str = ""
    timeout: float = Field(default=2.0, gt=0)
    retries: int = Field(default=1, ge=0, le=5)
    bounce_down_seconds: float = Field(default=2.0, ge=0)

    @model_validator(mode="after")
    def _credentials_present(self) -> SnmpOptions:
        if self.version == "2c" and self.community is None:
            raise ValueError("SNMP v2c needs 'community' (the read-write community)")
        if self.version == "3" and not (self.username and self.auth_key and self.priv_key):
            raise ValueError("SNMP v3 needs 'username', 'auth_key' and 'priv_key' (authPriv only)")
        return self


class QBridgeOptions(SnmpOptions):
    """Standards Q-BRIDGE-MIB switches (HP/Aruba, many others)."""


class CiscoVmVlanOptions(SnmpOptions):
    """Cisco CISCO-VLAN-MEMBERSHIP-MIB vmVlan (IOS access ports)."""


def portlist_has(data: bytes, bridge_port: int) -> bool:
    """True if ``bridge_port`` (1-based) is set in a Q-BRIDGE PortList (octet 0 MSB = port 1)."""
    index, bit = divmod(bridge_port - 1, 8)
    return index < len(data) and bool(data[index] & (0x80 >> bit))


def portlist_with(data: bytes, bridge_port: int, member: bool) -> bytes:
    """Return ``data`` with ``bridge_port`` set or cleared (the list grows if needed)."""
    if bridge_port < 1:
        raise InvalidArgument(f"bridge port {bridge_port} must be >= 1")
    index, bit = divmod(bridge_port - 1, 8)
    out = bytearray(data.ljust(index + 1, b"\x00"))
    if member:
        out[index] |= 0x80 >> bit
    else:
        out[index] &= ~(0x80 >> bit) & 0xFF
    return bytes(out)


def _oid_text(oid: Oid) -> str:
    names = {v: k for k, v in OIDS.items()}
    head = names.get(oid[:-1])
    return f"{head}.{oid[-1]}" if head else ".".join(map(str, oid))


_MIB_VIEW_LOCK = threading.Lock()
_MIB_VIEW: list[Any] = []  # one shared, pre-warmed pysnmp MibViewController (process cache)


def _shared_mib_view() -> Any:
    """pysnmp builds a MIB view per engine and, with pysmi installed, a MIB compiler (~0.4 s each).

    Every driver only uses numeric OIDs, so one view, warmed up once under a lock, serves all engines.
    """
    with _MIB_VIEW_LOCK:
        if not _MIB_VIEW:
            from pysnmp.smi import builder, view
            from pysnmp.smi.rfc1902 import ObjectIdentity

            mib_view = view.MibViewController(builder.MibBuilder())
            for oid in OIDS.values():
                ObjectIdentity(oid).resolve_with_mib(mib_view)
            _MIB_VIEW.append(mib_view)
        return _MIB_VIEW[0]


class _SnmpSession:
    """A pysnmp engine + target on a private event loop, with error translation at the edge."""

    def __init__(self, target: Target, options: SnmpOptions) -> None:
        self.target = target
        self.options = options
        self._loop = asyncio.new_event_loop()
        self._engine: Any = None
        self._auth: Any = None
        self._transport: Any = None
        self._context: Any = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def open(self) -> None:
        self.run(self._open())

    async def _open(self) -> None:
        from pysnmp.hlapi.v3arch.asyncio import (
            CommunityData,
            ContextData,
            SnmpEngine,
            UdpTransportTarget,
            UsmUserData,
            usmAesCfb128Protocol,
            usmAesCfb256Protocol,
            usmHMAC192SHA256AuthProtocol,
            usmHMACSHAAuthProtocol,
        )

        opts = self.options
        self._engine = SnmpEngine()
        self._engine.cache["mibViewController"] = _shared_mib_view()
        if opts.version == "2c":
            assert opts.community is not None
            self._auth = CommunityData(opts.community.get_secret_value(), mpModel=1)  # noqa: S508 - opt-in v2c
        else:
            assert opts.auth_key is not None
            assert opts.priv_key is not None
            self._auth = UsmUserData(
                opts.username,
                authKey=opts.auth_key.get_secret_value(),
                privKey=opts.priv_key.get_secret_value(),
                authProtocol={"SHA": usmHMACSHAAuthProtocol, "SHA256": usmHMAC192SHA256AuthProtocol}[
                    opts.auth_protocol],
                privProtocol={"AES": usmAesCfb128Protocol, "AES256": usmAesCfb256Protocol}[opts.priv_protocol],
            )
        try:
            self._transport = await UdpTransportTarget.create(
                (self.target.host, self.target.port or 161), timeout=opts.timeout, retries=opts.retries
            )
        except Exception as exc:
            raise ConnectError(f"cannot open SNMP transport ({type(exc).__name__}); check the address",
                               switch=self.target.name) from exc
        self._context = ContextData(contextName=opts.context)

    def close(self) -> None:
        if self._engine is not None:
            with contextlib.suppress(Exception):  # best effort on teardown
                self._engine.close_dispatcher()
            self._engine = None
        if self._loop.is_closed():
            return
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def _check(self, action: str, port: str | None, error_indication: Any, error_status: Any,
               error_index: Any, var_binds: Any) -> list[tuple[Oid, Any]]:
        name = self.target.name
        if error_indication:
            text = str(error_indication)
            kind = type(error_indication).__name__ if isinstance(error_indication, Exception) else ""
            low = (kind + text).replace(" ", "").lower()
            if any(key in low for key in _AUTH_INDICATIONS):
                raise AuthenticationError(f"{action}: SNMP credentials rejected ({text}); check the user, keys, "
                                          "protocols and context (AES needs the 'cryptography' package)",
                                          switch=name, port=port)
            if any(key in low for key in _TIMEOUT_INDICATIONS):
                raise DriverTimeout(
                    f"{action}: no SNMP response within {self.options.timeout:g}s x{self.options.retries + 1} "
                    "(host down, port closed, ACL, or wrong v2c community)", switch=name, port=port)
            raise ConnectError(f"{action}: SNMP failure ({text})", switch=name, port=port)
        if error_status and int(error_status) != 0:
            status = error_status.prettyPrint()
            where = ""
            if error_index and 0 < int(error_index) <= len(var_binds):
                where = f" at {_oid_text(tuple(var_binds[int(error_index) - 1][0]))}"
            if status in _ACCESS_STATUSES:
                raise AuthenticationError(f"{action}: agent answered {status}{where}; the credential is "
                                          "read-only or lacks this view", switch=name, port=port)
            raise CommandFailed(f"{action}: agent answered {status}{where}", switch=name, port=port)
        result: list[tuple[Oid, Any]] = []
        for oid_obj, value in var_binds:
            oid = tuple(oid_obj)
            kind = type(value).__name__
            if kind in ("NoSuchInstance", "NoSuchObject", "EndOfMibView"):
                if kind == "NoSuchObject":
                    raise Unsupported(f"{action}: agent does not implement {_oid_text(oid)} (noSuchObject)",
                                      switch=name, port=port)
                raise CommandFailed(f"{action}: agent has no {_oid_text(oid)} ({kind}); check the port",
                                    switch=name, port=port)
            result.append((oid, value))
        return result

    def get(self, oids: Iterable[Oid], action: str, port: str | None = None) -> list[Any]:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, get_cmd

        wanted = list(oids)

        async def _get() -> Any:
            return await get_cmd(self._engine, self._auth, self._transport, self._context,
                                 *(ObjectType(ObjectIdentity(o)) for o in wanted))

        rows = self._check(action, port, *self.run(_get()))
        if [r[0] for r in rows] != wanted:
            raise CommandFailed(f"{action}: agent answered for other OIDs than requested", switch=self.target.name,
                                port=port)
        return [value for _, value in rows]

    def set(self, pairs: list[tuple[Oid, Any]], action: str, port: str | None = None) -> None:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, set_cmd

        log.debug("%s: %s: SET %s", self.target.name, action, ", ".join(_oid_text(o) for o, _ in pairs))

        async def _set() -> Any:
            return await set_cmd(self._engine, self._auth, self._transport, self._context,
                                 *(ObjectType(ObjectIdentity(o), v) for o, v in pairs))

        self._check(action, port, *self.run(_set()))

    def walk(self, prefix: Oid, action: str) -> list[tuple[Oid, Any]]:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, walk_cmd

        async def _walk() -> list[tuple[Oid, Any]]:
            rows: list[tuple[Oid, Any]] = []
            async for reply in walk_cmd(self._engine, self._auth, self._transport, self._context,
                                        ObjectType(ObjectIdentity(prefix)), lexicographicMode=False):
                rows.extend(self._check(action, None, *reply))
            return rows

        return self.run(_walk())


class _SnmpDriver:
    """Shared SNMP plumbing: session lifecycle, port resolution, bounce and 802.1X re-auth."""

    name: ClassVar[str]
    options_type: ClassVar[type[SnmpOptions]] = SnmpOptions
    capabilities: ClassVar[Capability] = (
        Capability.GET_VLAN | Capability.SET_VLAN | Capability.BOUNCE_PORT | Capability.REAUTHENTICATE
    )

    def __init__(self, target: Target, options: SnmpOptions) -> None:
        self._target = target
        self.options = options
        self._session: _SnmpSession | None = None
        self._if_names: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target.name!r}, {self._target.host!r})"

    @property
    def target(self) -> Target:
        return self._target

    def __enter__(self) -> Self:
        session = _SnmpSession(self._target, self.options)
        try:
            session.open()
            session.get([(*OIDS["sysObjectID"], 0)], "check SNMP access")
        except BaseException:
            session.close()
            raise
        self._session = session
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    @property
    def snmp(self) -> _SnmpSession:
        if self._session is None:
            raise ConnectError("not connected; use the driver as a context manager", switch=self._target.name)
        return self._session

    def if_index(self, port: str) -> int:
        """Resolve an ifName or decimal ifIndex to the ifIndex."""
        if not isinstance(port, str) or not _PORT_RE.fullmatch(port):
            raise InvalidArgument(f"port {port!r} is not an ifName or ifIndex", switch=self._target.name)
        if port.isdigit():
            return int(port)
        if self._if_names is None:
            rows = self.snmp.walk(OIDS["ifName"], "read ifName table")
            self._if_names = {str(value): oid[-1] for oid, value in rows}
        if port not in self._if_names:
            raise InvalidArgument(f"no interface named {port!r} in the switch's ifName table",
                                  switch=self._target.name)
        return self._if_names[port]

    def bounce_port(self, port: str) -> None:
        index = self.if_index(port)
        oid = (*OIDS["ifAdminStatus"], index)
        from pysnmp.proto.rfc1902 import Integer32

        self.snmp.set([(oid, Integer32(IF_DOWN))], "set ifAdminStatus down", port)
        time.sleep(self.options.bounce_down_seconds)
        try:
            self.snmp.set([(oid, Integer32(IF_UP))], "set ifAdminStatus up", port)
            (status,) = self.snmp.get([oid], "read back ifAdminStatus", port)
        except DriverError as exc:
            exc.annotate("the port was set down and may still be DOWN; set it up by hand")
            raise
        if int(status) != IF_UP:
            raise VerificationFailed("port did not come back up", switch=self._target.name, port=port,
                                     expected="up(1)", actual=int(status))

    def reauthenticate(self, port: str) -> None:
        from pysnmp.proto.rfc1902 import Integer32

        index = self.if_index(port)
        self.snmp.set([((*OIDS["dot1xPaePortReauthenticate"], index), Integer32(TRUTH_TRUE))],
                      "set dot1xPaePortReauthenticate", port)


class CiscoVmVlanDriver(_SnmpDriver):
    """Access VLAN via CISCO-VLAN-MEMBERSHIP-MIB ``vmVlan.<ifIndex>`` (single SET, like PacketFence)."""

    name = "snmp_cisco_vmvlan"
    options_type = CiscoVmVlanOptions

    def get_port_vlan(self, port: str) -> int:
        index = self.if_index(port)
        (value,) = self.snmp.get([(*OIDS["vmVlan"], index)], "read vmVlan", port)
        return int(value)

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        from pysnmp.proto.rfc1902 import Integer32

        vlan = check_vlan(vlan, switch=self._target.name, port=port)
        before = self.get_port_vlan(port)
        index = self.if_index(port)
        self.snmp.set([((*OIDS["vmVlan"], index), Integer32(vlan))], f"set vmVlan to {vlan}", port)
        after = self.get_port_vlan(port)
        if after != vlan:
            raise VerificationFailed(f"vmVlan change to {vlan} did not take effect", switch=self._target.name,
                                     port=port, expected=vlan, actual=after)
        return VlanChange(switch=self._target.name, port=port, before=before, after=after)


class QBridgeDriver(_SnmpDriver):
    """Q-BRIDGE-MIB: ``dot1qPvid`` plus static egress/untagged PortLists, indexed by bridge port."""

    name = "snmp_qbridge"
    options_type = QBridgeOptions

    def __init__(self, target: Target, options: SnmpOptions) -> None:
        super().__init__(target, options)
        self._bridge_ports: dict[int, int] | None = None

    def bridge_port(self, port: str) -> int:
        index = self.if_index(port)
        if self._bridge_ports is None:
            rows = self.snmp.walk(OIDS["dot1dBasePortIfIndex"], "read dot1dBasePortIfIndex")
            self._bridge_ports = {int(value): oid[-1] for oid, value in rows}
        if index not in self._bridge_ports:
            raise InvalidArgument(f"ifIndex {index} is not a bridge port (dot1dBasePortIfIndex)",
                                  switch=self._target.name, port=port)
        return self._bridge_ports[index]

    def get_port_vlan(self, port: str) -> int:
        bp = self.bridge_port(port)
        (value,) = self.snmp.get([(*OIDS["dot1qPvid"], bp)], "read dot1qPvid", port)
        return int(value)

    def _lists(self, vlan: int, port: str) -> tuple[bytes, bytes]:
        try:
            egress, untagged = self.snmp.get(
                [(*OIDS["dot1qVlanStaticEgressPorts"], vlan), (*OIDS["dot1qVlanStaticUntaggedPorts"], vlan)],
                f"read VLAN {vlan} port lists", port)
        except CommandFailed as exc:
            if "NoSuchInstance" not in str(exc):
                raise
            raise CommandFailed(f"VLAN {vlan} does not exist on the switch (no dot1qVlanStaticTable row); "
                                "create it first", switch=self._target.name, port=port) from exc
        return bytes(egress), bytes(untagged)

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        from pysnmp.proto.rfc1902 import OctetString, Unsigned32

        vlan = check_vlan(vlan, switch=self._target.name, port=port)
        bp = self.bridge_port(port)
        before = self.get_port_vlan(port)
        new_egress, new_untagged = self._lists(vlan, port)
        egress_oid, untagged_oid = OIDS["dot1qVlanStaticEgressPorts"], OIDS["dot1qVlanStaticUntaggedPorts"]
        # Order matters for agents that check each varbind: join new VLAN, move PVID, leave old VLAN.
        pairs: list[tuple[Oid, Any]] = [
            ((*egress_oid, vlan), OctetString(portlist_with(new_egress, bp, True))),
            ((*untagged_oid, vlan), OctetString(portlist_with(new_untagged, bp, True))),
            ((*OIDS["dot1qPvid"], bp), Unsigned32(vlan)),
        ]
        if before != vlan:
            old_egress, old_untagged = self._lists(before, port)
            pairs += [
                ((*untagged_oid, before), OctetString(portlist_with(old_untagged, bp, False))),
                ((*egress_oid, before), OctetString(portlist_with(old_egress, bp, False))),
            ]
        try:
            self.snmp.set(pairs, f"move bridge port {bp} from VLAN {before} to {vlan}", port)
        except DriverError as exc:
            exc.annotate(self._state_note(port, bp, before, vlan))
            raise
        self._verify(port, bp, before, vlan)
        return VlanChange(switch=self._target.name, port=port, before=before, after=vlan)

    def _membership(self, port: str, bp: int, vlan: int) -> tuple[bool, bool]:
        egress, untagged = self._lists(vlan, port)
        return portlist_has(egress, bp), portlist_has(untagged, bp)

    def _verify(self, port: str, bp: int, before: int, vlan: int) -> None:
        pvid = self.get_port_vlan(port)
        member_new = self._membership(port, bp, vlan)
        member_old = self._membership(port, bp, before) if before != vlan else (False, False)
        if pvid != vlan or member_new != (True, True) or any(member_old):
            raise VerificationFailed(
                f"VLAN move {before}->{vlan} not fully applied (PVID {pvid}, new VLAN egress/untagged "
                f"{member_new}, old VLAN egress/untagged {member_old})",
                switch=self._target.name, port=port, expected=vlan, actual=pvid)

    def _state_note(self, port: str, bp: int, before: int, vlan: int) -> str:
        """Describe what a partly-applied SET left behind (agents apply varbinds one by one)."""
        try:
            pvid = self.get_port_vlan(port)
            new = self._membership(port, bp, vlan)
            old = self._membership(port, bp, before) if before != vlan else new
        except DriverError:
            return "port state could not be read back; check it by hand"
        return (f"port state now: PVID {pvid}, VLAN {vlan} egress/untagged {new}, "
                f"VLAN {before} egress/untagged {old}")
