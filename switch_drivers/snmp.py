"""SNMP drivers (pysnmp 7, asyncio): standards Q-BRIDGE and Cisco vmVlan, bounce via ifAdminStatus.

``port`` is an ifName (``Gi1/0/5``, looked up in IF-MIB ifName) or a decimal ifIndex (``10105``).
pysnmp is asyncio-only; each driver owns a private event loop, so call it from plain (or worker) threads,
not from inside a running event loop (use ``asyncio.to_thread`` there).

Every move is pre-flighted against the switch's VLAN table (Q-BRIDGE ``dot1qVlanStaticRowStatus``, Cisco
``vtpVlanState``): a VLAN the switch does not have is refused before anything is set. ``move_ports`` batches:
all ports' VLANs in multi-varbind SETs of at most ``max_varbinds`` varbinds, all bounces as one ifAdminStatus
down and one up per PDU, and the read-back in a few GETs. A conforming agent applies a SET PDU atomically
(net-snmp's pass_persist applies it varbind by varbind); a refused PDU is split -- the varbind named by the
error-index alone, the rest together -- so a port the agent refuses fails alone and the others go on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .base import Capability, DriverBase, PortMove, PortOutcome, PortStatus, Target, VlanChange, check_vlan
from .errors import (
    CommandFailed,
    ConnectError,
    DriverError,
    InterfaceMissing,
    InvalidArgument,
    Unsupported,
    VerificationFailed,
    VlanMissing,
)
from .snmp_session import _MAX_PDU_BYTES, OIDS, Oid, Pair, _oid_text, _pairs_bytes, _SnmpSession

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

IF_UP, IF_DOWN, TRUTH_TRUE, ROW_ACTIVE, VTP_OPERATIONAL = 1, 2, 1, 1, 1
_PORT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/:._-]{0,63}", re.ASCII)


class SnmpOptions(BaseModel):
    """SNMP v2c (``community``) or v3 authPriv (``username``/``auth_key``/``priv_key``). Seconds.

    ``max_varbinds`` bounds every batch PDU (SET and GET); ``max_repetitions`` is the GETBULK size of table walks.
    """

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
    max_varbinds: int = Field(default=24, ge=1, le=100)
    max_repetitions: int = Field(default=25, ge=1, le=100)

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


def _portlist_edit(data: bytes, ports: Iterable[int], member: bool) -> bytes:
    for bp in ports:
        data = portlist_with(data, bp, member)
    return data


def _int(value: int) -> Any:
    from pysnmp.proto.rfc1902 import Integer32

    return Integer32(value)




@dataclass(eq=False)
class _Item:
    """One move of a batch while it is being worked on."""

    move: PortMove
    index: int = 0  # ifIndex
    key: int = 0  # index of the VLAN object: the ifIndex (vmVlan) or the bridge port (dot1qPvid)
    before: int | None = None
    joined: bool = False  # Q-BRIDGE: this batch added the port to the target VLAN's lists
    down: bool = False  # set admin down by the bounce and not yet up again
    bounced: bool = False
    change: VlanChange | None = None
    status: PortStatus | None = None
    error: DriverError | None = None

    @property
    def port(self) -> str:
        return self.move.port

    def fail(self, error: DriverError) -> None:
        if self.error is None:
            self.error = error

    def outcome(self) -> PortOutcome:
        return PortOutcome(self.port, self.change, self.bounced, self.status, self.error)


@dataclass(eq=False)
class _Unit:
    """Varbinds that go into the same SET PDU, and the items that fail if the agent refuses them."""

    pairs: list[Pair]
    items: list[_Item] = field(default_factory=list)
    port: str | None = None


class _SnmpDriver(DriverBase):
    """Shared SNMP plumbing: session lifecycle, port resolution, port state, bounce, 802.1X re-auth, batches."""

    name: ClassVar[str]
    options_type: ClassVar[type[SnmpOptions]] = SnmpOptions
    capabilities: ClassVar[Capability] = (
        Capability.GET_VLAN | Capability.SET_VLAN | Capability.BOUNCE_PORT | Capability.REAUTHENTICATE
        | Capability.VLAN_TABLE | Capability.PORT_STATUS | Capability.BATCH
    )
    _vlan_object: ClassVar[str]  # the per-port VLAN column: "vmVlan" or "dot1qPvid"

    def __init__(self, target: Target, options: SnmpOptions) -> None:
        super().__init__(target)
        self.options = options
        self._session: _SnmpSession | None = None
        self._if_names: dict[str, int] | None = None

    def _open(self) -> None:
        self._if_names = None  # interfaces can be renumbered between sessions (reboot, stack change)
        session = _SnmpSession(self._target, self.options)
        try:
            session.open()
            session.get([(*OIDS["sysObjectID"], 0)], "check SNMP access")
        except BaseException:
            session.close()
            raise
        self._session = session

    def _close(self) -> None:
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
            raise InterfaceMissing(f"no interface named {port!r} in the switch's ifName table; check the port name "
                                   "(nothing was changed)", switch=self._target.name, port=port)
        return self._if_names[port]

    def _vlan_key(self, port: str) -> int:
        """The index of the port's VLAN object (ifIndex or bridge port)."""
        return self.if_index(port)

    def _vlan_oid(self, key: int) -> Oid:
        return (*OIDS[self._vlan_object], key)

    def get_port_vlan(self, port: str) -> int:
        (value,) = self.snmp.get([self._vlan_oid(self._vlan_key(port))], f"read {self._vlan_object}", port)
        return int(value)

    def port_status(self, port: str) -> PortStatus:
        key, index = self._vlan_key(port), self.if_index(port)
        vlan, admin, oper = self.snmp.get(
            [self._vlan_oid(key), (*OIDS["ifAdminStatus"], index), (*OIDS["ifOperStatus"], index)],
            "read port status", port)
        return PortStatus(port, int(vlan), int(admin) == IF_UP, int(oper) == IF_UP)

    def bounce_port(self, port: str) -> None:
        self.port_status(port)  # the interface exists (and is a bridge port) before anything is set
        oid = (*OIDS["ifAdminStatus"], self.if_index(port))
        self.snmp.set([(oid, _int(IF_DOWN))], "set ifAdminStatus down", port)
        time.sleep(self.options.bounce_down_seconds)
        try:
            self.snmp.set([(oid, _int(IF_UP))], "set ifAdminStatus up", port)
            self.verify_up(port, None)
        except DriverError as exc:
            exc.annotate("the port was set down and may still be DOWN; run ensure_port_up or set it up by hand")
            raise

    def ensure_port_up(self, port: str) -> bool:
        oid = (*OIDS["ifAdminStatus"], self.if_index(port))
        (admin,) = self.snmp.get([oid], "read ifAdminStatus", port)
        if int(admin) == IF_UP:
            return False
        self.snmp.set([(oid, _int(IF_UP))], "set ifAdminStatus up", port)
        self.verify_up(port, None)
        return True

    def reauthenticate(self, port: str) -> None:
        index = self.if_index(port)
        self.snmp.set([((*OIDS["dot1xPaePortReauthenticate"], index), _int(TRUTH_TRUE))],
                      "set dot1xPaePortReauthenticate", port)

    def disconnect(self, port: str) -> None:
        raise Unsupported("SNMP cannot end an 802.1X session; bounce the port or use the coa driver's disconnect",
                          switch=self._target.name, port=port)

    def save_config(self) -> None:
        """Nothing to do: the SETs change the running configuration, which is what enforcement needs."""

    def _vlans_from(self, column: str, usable: int) -> frozenset[int]:
        rows = self.snmp.walk(OIDS[column], f"read the VLAN table ({column})")
        if not rows:
            raise Unsupported(f"the switch lists no VLANs in {column}, so a move cannot be checked before it is "
                              "made; check the SNMP view, or use a CLI driver", switch=self._target.name)
        return frozenset(oid[-1] for oid, value in rows if int(value) == usable)

    # -- batches -----------------------------------------------------------------------------------------------
    def move_ports(self, moves: Sequence[PortMove]) -> list[PortOutcome]:
        """Pre-flight every move, then set, bounce and read back all ports with multi-varbind PDUs."""
        items = self._prepare(moves)
        for step in (self._read_before, self._set_vlans, self._bounce_all, self._read_back):
            live = [item for item in items if item.error is None]
            if not live:
                break
            try:
                step(live)
            except DriverError as exc:  # the session failed (timeout, credentials): no port can go on
                for item in live:
                    item.fail(exc)
                break
        return [item.outcome() for item in items]

    def _prepare(self, moves: Sequence[PortMove]) -> list[_Item]:
        items = [_Item(move) for move in moves]
        seen: dict[int, str] = {}
        for n, item in enumerate(items):
            try:
                if item.move.vlan is not None:
                    check_vlan(item.move.vlan, switch=self._target.name, port=item.port)
                item.index = self.if_index(item.port)
                if item.index in seen:
                    raise InvalidArgument(f"the batch moves this interface twice (also as {seen[item.index]!r}); "
                                          "give each port one move", switch=self._target.name, port=item.port)
                seen[item.index] = item.port
                item.key = self._vlan_key(item.port)
                if item.move.vlan is not None:
                    self.check_vlan_exists(item.move.vlan, item.port)
            except (InvalidArgument, InterfaceMissing, VlanMissing) as exc:  # this port alone
                item.fail(exc)
            except DriverError as exc:  # the session or a table walk failed: every port not yet done
                for rest in items[n:]:
                    rest.fail(exc)
                break
        return items

    def _read_before(self, items: list[_Item]) -> None:
        """Each port's VLAN (and so that it exists), in a few GETs."""
        values = self.snmp.get_many([self._vlan_oid(item.key) for item in items], "read the ports' VLANs")
        for item, value in zip(items, values, strict=True):
            if value is None:
                item.fail(InterfaceMissing(f"agent has no {_oid_text(self._vlan_oid(item.key))} (NoSuchInstance): "
                                           "the switch has no such interface (nothing was changed)",
                                           switch=self._target.name, port=item.port))
            else:
                item.before = int(value)

    def _set_vlans(self, items: list[_Item]) -> None:
        raise NotImplementedError

    def _chunks(self, units: list[_Unit]) -> list[list[_Unit]]:
        chunks: list[list[_Unit]] = []
        count = size = 0
        for unit in units:
            unit_size = _pairs_bytes(unit.pairs)
            if chunks and count + len(unit.pairs) <= self.options.max_varbinds and size + unit_size <= _MAX_PDU_BYTES:
                chunks[-1].append(unit)
                count, size = count + len(unit.pairs), size + unit_size
            else:
                chunks.append([unit])
                count, size = len(unit.pairs), unit_size
        return chunks

    def _set_units(self, units: list[_Unit], action: str) -> list[tuple[_Unit, CommandFailed]]:
        """SET ``units`` in as few PDUs as ``max_varbinds`` allows; return the units refused on their own."""
        refused: list[tuple[_Unit, CommandFailed]] = []
        for chunk in self._chunks(units):
            self._set_chunk(chunk, action, refused)
        return refused

    def _set_chunk(self, chunk: list[_Unit], action: str, refused: list[tuple[_Unit, CommandFailed]]) -> None:
        answer = self.snmp.try_set([p for unit in chunk for p in unit.pairs], action,
                                   chunk[0].port if len(chunk) == 1 else None)
        if answer is None:
            return
        error, index = answer
        if len(chunk) == 1:
            refused.append((chunk[0], error))
            return
        bad, seen = None, 0
        for unit in chunk:  # the unit holding the varbind the agent named
            seen += len(unit.pairs)
            if 0 < index <= seen:
                bad = unit
                break
        if bad is None:  # the agent did not say which: each unit on its own
            for unit in chunk:
                self._set_chunk([unit], action, refused)
            return
        self._set_chunk([bad], action, refused)
        self._set_chunk([unit for unit in chunk if unit is not bad], action, refused)

    @staticmethod
    def _port_units(items: list[_Item], oid_of: Callable[[_Item], Oid], value: Any) -> list[_Unit]:
        return [_Unit([(oid_of(item), value)], [item], item.port) for item in items]

    def _bounce_all(self, items: list[_Item]) -> None:
        bouncing = [item for item in items if item.move.bounce]
        if not bouncing:
            return
        admin = OIDS["ifAdminStatus"]
        for unit, error in self._set_units(
                self._port_units(bouncing, lambda i: (*admin, i.index), _int(IF_DOWN)), "set ifAdminStatus down"):
            unit.items[0].fail(error)
        down = [item for item in bouncing if item.error is None]
        if not down:
            return
        for item in down:
            item.down = True
        time.sleep(self.options.bounce_down_seconds)
        try:
            refused = self._set_units(self._port_units(down, lambda i: (*admin, i.index), _int(IF_UP)),
                                      "set ifAdminStatus up")
        except DriverError as exc:
            exc.annotate(f"{len(down)} port(s) were set down and may still be DOWN: "
                         f"{', '.join(i.port for i in down)}; run ensure_port_up on them")
            raise
        for unit, error in refused:
            unit.items[0].fail(error.annotate("the port was set down and may still be DOWN; run ensure_port_up"))
        for item in down:
            if item.error is None:
                item.down, item.bounced = False, True

    def _read_back(self, items: list[_Item]) -> None:
        """VLAN (and admin/oper state after a bounce) of every port, in a few GETs; verify each port."""
        oids: list[Oid] = []
        for item in items:
            oids.append(self._vlan_oid(item.key))
            if item.bounced:
                oids += [(*OIDS["ifAdminStatus"], item.index), (*OIDS["ifOperStatus"], item.index)]
        values = iter(self.snmp.get_many(oids, "read back the ports"))
        for item in items:
            vlan = next(values)
            admin, oper = (next(values), next(values)) if item.bounced else (None, None)
            if vlan is None or (item.bounced and admin is None):
                item.fail(CommandFailed("read back: the port's state vanished (NoSuchInstance)",
                                        switch=self._target.name, port=item.port))
                continue
            wanted = item.move.vlan
            if wanted is not None:
                assert item.before is not None
                if int(vlan) != wanted:
                    item.fail(VerificationFailed(f"VLAN move {item.before}->{wanted} did not take effect",
                                                 switch=self._target.name, port=item.port, expected=wanted,
                                                 actual=int(vlan)))
                    continue
                item.change = VlanChange(self._target.name, item.port, item.before, wanted)
            if item.bounced and admin is not None:
                oper_up = oper is not None and int(oper) == IF_UP
                item.status = PortStatus(item.port, int(vlan), int(admin) == IF_UP, oper_up)
                if not item.status.admin_up:
                    item.fail(VerificationFailed("port is still shut down after the bounce", switch=self._target.name,
                                                 port=item.port, expected="enabled", actual="shut down"))


class CiscoVmVlanDriver(_SnmpDriver):
    """Access VLAN via CISCO-VLAN-MEMBERSHIP-MIB ``vmVlan.<ifIndex>``; VLANs from CISCO-VTP-MIB ``vtpVlanState``
    (only operational VLANs count: a suspended VLAN forwards nothing)."""

    name = "snmp_cisco_vmvlan"
    options_type = CiscoVmVlanOptions
    _vlan_object = "vmVlan"

    def _read_vlans(self) -> frozenset[int]:
        return self._vlans_from("vtpVlanState", VTP_OPERATIONAL)

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        vlan = check_vlan(vlan, switch=self._target.name, port=port)
        before = self.get_port_vlan(port)
        self.check_vlan_exists(vlan, port)
        self.snmp.set([(self._vlan_oid(self.if_index(port)), _int(vlan))], f"set vmVlan to {vlan}", port)
        after = self.get_port_vlan(port)
        if after != vlan:
            raise VerificationFailed(f"vmVlan change to {vlan} did not take effect", switch=self._target.name,
                                     port=port, expected=vlan, actual=after)
        return VlanChange(switch=self._target.name, port=port, before=before, after=after)

    def _set_vlans(self, items: list[_Item]) -> None:
        units = [_Unit([(self._vlan_oid(i.key), _int(i.move.vlan))], [i], i.port)
                 for i in items if i.move.vlan is not None and i.move.vlan != i.before]
        for unit, error in self._set_units(units, "set vmVlan"):
            unit.items[0].fail(error)


class QBridgeDriver(_SnmpDriver):
    """Q-BRIDGE-MIB: ``dot1qPvid`` plus static egress/untagged PortLists, indexed by bridge port; VLANs from the
    active rows of ``dot1qVlanStaticTable``."""

    name = "snmp_qbridge"
    options_type = QBridgeOptions
    _vlan_object = "dot1qPvid"

    def __init__(self, target: Target, options: SnmpOptions) -> None:
        super().__init__(target, options)
        self._bridge_ports: dict[int, int] | None = None

    def _open(self) -> None:
        self._bridge_ports = None
        super()._open()

    def _read_vlans(self) -> frozenset[int]:
        return self._vlans_from("dot1qVlanStaticRowStatus", ROW_ACTIVE)

    def bridge_port(self, port: str) -> int:
        index = self.if_index(port)
        if self._bridge_ports is None:
            rows = self.snmp.walk(OIDS["dot1dBasePortIfIndex"], "read dot1dBasePortIfIndex")
            self._bridge_ports = {int(value): oid[-1] for oid, value in rows}
        if index not in self._bridge_ports:
            raise InterfaceMissing(f"ifIndex {index} is not a bridge port (dot1dBasePortIfIndex); check the port",
                                   switch=self._target.name, port=port)
        return self._bridge_ports[index]

    def _vlan_key(self, port: str) -> int:
        return self.bridge_port(port)

    def _lists_of(self, vlans: Iterable[int]) -> dict[int, tuple[bytes, bytes] | None]:
        """Egress and untagged PortLists of ``vlans`` (None: no such VLAN row), two varbinds per VLAN."""
        wanted = sorted(set(vlans))
        oids = [(*OIDS[col], v) for v in wanted
                for col in ("dot1qVlanStaticEgressPorts", "dot1qVlanStaticUntaggedPorts")]
        values = self.snmp.get_many(oids, "read VLAN port lists", per_pdu=8)
        out: dict[int, tuple[bytes, bytes] | None] = {}
        for n, vlan in enumerate(wanted):
            egress, untagged = values[2 * n], values[2 * n + 1]
            out[vlan] = None if egress is None or untagged is None else (bytes(egress), bytes(untagged))
        return out

    def _lists(self, vlan: int, port: str) -> tuple[bytes, bytes]:
        lists = self._lists_of([vlan])[vlan]
        if lists is None:
            raise VlanMissing(f"VLAN {vlan} does not exist on the switch (no dot1qVlanStaticTable row); create it "
                              "first", switch=self._target.name, port=port, vlan=vlan)
        return lists

    @staticmethod
    def _list_pairs(vlan: int, lists: tuple[bytes, bytes], ports: Iterable[int], member: bool) -> list[Pair]:
        """Join: egress before untagged; leave: untagged before egress (untagged must stay a subset)."""
        from pysnmp.proto.rfc1902 import OctetString

        ports = list(ports)
        egress = ((*OIDS["dot1qVlanStaticEgressPorts"], vlan), OctetString(_portlist_edit(lists[0], ports, member)))
        untagged = ((*OIDS["dot1qVlanStaticUntaggedPorts"], vlan),
                    OctetString(_portlist_edit(lists[1], ports, member)))
        return [egress, untagged] if member else [untagged, egress]

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        from pysnmp.proto.rfc1902 import Unsigned32

        vlan = check_vlan(vlan, switch=self._target.name, port=port)
        bp = self.bridge_port(port)
        before = self.get_port_vlan(port)
        self.check_vlan_exists(vlan, port)
        # Order matters for agents that check each varbind: join new VLAN, move PVID, leave old VLAN.
        pairs = [*self._list_pairs(vlan, self._lists(vlan, port), [bp], True), (self._vlan_oid(bp), Unsigned32(vlan))]
        if before != vlan:
            pairs += self._list_pairs(before, self._lists(before, port), [bp], False)
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

    # -- batches: join the target VLANs' lists, move the PVIDs, leave the old VLANs' lists ----------------------
    def _set_vlans(self, items: list[_Item]) -> None:
        from pysnmp.proto.rfc1902 import Unsigned32

        movers = [i for i in items if i.move.vlan is not None]
        self._edit_lists(movers, lambda i: i.move.vlan, member=True)
        moving = [i for i in movers if i.error is None and i.move.vlan != i.before]
        refused = self._set_units([_Unit([(self._vlan_oid(i.key), Unsigned32(i.move.vlan))], [i], i.port)
                                   for i in moving], "set dot1qPvid")
        for unit, error in refused:
            item = unit.items[0]
            item.fail(error)
            if item.joined and item.move.vlan is not None:  # the PVID stayed: leave the VLAN it was added to
                undo = self._edit_group(item.move.vlan, [item], member=False)
                error.annotate(f"the port stays in VLAN {item.before}" if undo is None else
                               f"the port stays in VLAN {item.before} but is left a member of VLAN "
                               f"{item.move.vlan} as well: {undo}")
        self._edit_lists([i for i in moving if i.error is None], lambda i: i.before, member=False)

    def _edit_lists(self, items: list[_Item], vlan_of: Callable[[_Item], int | None], member: bool) -> None:
        """Add ``items`` to (or remove them from) the lists of ``vlan_of(item)``: one unit per VLAN; a VLAN the
        agent refuses is retried port by port."""
        by_vlan: dict[int, list[_Item]] = {}
        for item in items:
            vlan = vlan_of(item)
            assert vlan is not None
            by_vlan.setdefault(vlan, []).append(item)
        lists = self._lists_of(by_vlan)
        units: list[_Unit] = []
        for vlan, group in by_vlan.items():
            current = lists[vlan]
            if current is None:
                for item in group:
                    item.fail(VlanMissing(f"VLAN {vlan} vanished from dot1qVlanStaticTable during the batch",
                                          switch=self._target.name, port=item.port, vlan=vlan))
                continue
            egress, untagged = current
            todo = [i for i in group if not (portlist_has(egress, i.key) and portlist_has(untagged, i.key))] \
                if member else [i for i in group if portlist_has(egress, i.key) or portlist_has(untagged, i.key)]
            if todo:
                units.append(_Unit(self._list_pairs(vlan, current, [i.key for i in todo], member), todo))
        for unit, error in self._set_units(units, f"{'add to' if member else 'remove from'} VLAN port lists"):
            vlan = vlan_of(unit.items[0])
            assert vlan is not None
            if len(unit.items) == 1:
                self._list_failed(unit.items[0], error, member)
            else:  # the VLAN's lists were refused as a whole: find the port(s) the agent refuses
                self._edit_split(vlan, unit.items, member)
        for unit in units:
            for item in unit.items:
                item.joined = member and item.error is None

    def _edit_split(self, vlan: int, items: list[_Item], member: bool) -> None:
        """Halve a refused group until the refused ports are alone: a few PDUs per bad port, not one per port."""
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            error = self._edit_group(vlan, part, member)
            if error is not None and len(part) == 1:
                self._list_failed(part[0], error, member)
            elif error is not None:
                self._edit_split(vlan, part, member)

    def _list_failed(self, item: _Item, error: CommandFailed, member: bool) -> None:
        if not member:
            error.annotate(f"the port is in VLAN {item.move.vlan} but still a member of VLAN {item.before}")
        item.fail(error)

    def _edit_group(self, vlan: int, items: list[_Item], member: bool) -> CommandFailed | None:
        """One SET of ``vlan``'s lists, read afresh, with ``items`` added or removed; the agent's refusal."""
        port = items[0].port if len(items) == 1 else None
        try:
            lists = self._lists(vlan, items[0].port)
            answer = self.snmp.try_set(self._list_pairs(vlan, lists, [i.key for i in items], member),
                                       f"{'add to' if member else 'remove from'} VLAN {vlan} port lists", port)
        except CommandFailed as exc:  # the VLAN row vanished
            return exc
        return None if answer is None else answer[0]

    def _read_back(self, items: list[_Item]) -> None:
        super()._read_back(items)
        moved = [i for i in items if i.error is None and i.move.vlan is not None]
        if not moved:
            return
        lists = self._lists_of({v for i in moved for v in (i.move.vlan, i.before) if v is not None})
        for item in moved:
            assert item.move.vlan is not None
            assert item.before is not None
            new, old = lists[item.move.vlan], lists[item.before]
            member_new = (new is not None and portlist_has(new[0], item.key), new is not None
                          and portlist_has(new[1], item.key))
            member_old = (False, False) if item.before == item.move.vlan or old is None else (
                portlist_has(old[0], item.key), portlist_has(old[1], item.key))
            if member_new != (True, True) or any(member_old):
                item.change = None
                item.fail(VerificationFailed(
                    f"VLAN move {item.before}->{item.move.vlan} not fully applied: PVID moved, port lists did not "
                    "(egress, untagged)", switch=self._target.name, port=item.port,
                    expected={item.move.vlan: (True, True), item.before: (False, False)},
                    actual={item.move.vlan: member_new, item.before: member_old}))
