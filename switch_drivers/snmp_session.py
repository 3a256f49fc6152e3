"""SNMP transport for the drivers in ``snmp``: a pysnmp engine and target per session, on a private event loop.

Numeric OIDs only (one shared, pre-warmed MIB view serves every engine). pysnmp's error indications and error
statuses are translated here, at the edge, into the ``switch_drivers`` exception tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .base import Target
from .errors import (
    AuthenticationError,
    CommandFailed,
    ConnectError,
    DriverError,
    DriverTimeout,
    InterfaceMissing,
    Unsupported,
)

if TYPE_CHECKING:
    from .snmp import SnmpOptions

__all__ = ["OIDS", "Oid", "Pair"]


T = TypeVar("T")
Oid = tuple[int, ...]
Pair = tuple[Oid, Any]
log = logging.getLogger("switch_drivers.snmp")  # the name it logged under before the split


def _oid(text: str) -> Oid:
    return tuple(int(x) for x in text.split("."))


# Object table: name -> OID prefix (instance index is appended).
OIDS: dict[str, Oid] = {
    "sysObjectID": _oid("1.3.6.1.2.1.1.2"),
    "ifName": _oid("1.3.6.1.2.1.31.1.1.1.1"),
    "ifAdminStatus": _oid("1.3.6.1.2.1.2.2.1.7"),
    "ifOperStatus": _oid("1.3.6.1.2.1.2.2.1.8"),
    "dot1dBasePortIfIndex": _oid("1.3.6.1.2.1.17.1.4.1.2"),
    "dot1qPvid": _oid("1.3.6.1.2.1.17.7.1.4.5.1.1"),
    "dot1qVlanStaticEgressPorts": _oid("1.3.6.1.2.1.17.7.1.4.3.1.2"),
    "dot1qVlanStaticUntaggedPorts": _oid("1.3.6.1.2.1.17.7.1.4.3.1.4"),
    "dot1qVlanStaticRowStatus": _oid("1.3.6.1.2.1.17.7.1.4.3.1.5"),
    "vmVlan": _oid("1.3.6.1.4.1.9.9.68.1.2.2.1.2"),
    "vtpVlanState": _oid("1.3.6.1.4.1.9.9.46.1.3.1.1.2"),  # index: managementDomainIndex.vlan
    "dot1xPaePortReauthenticate": _oid("1.0.8802.1.1.1.1.1.2.1.5"),
}
# a missing instance of these columns means the interface does not exist
_PORT_COLUMNS = frozenset(OIDS[n] for n in ("ifName", "ifAdminStatus", "ifOperStatus", "dot1dBasePortIfIndex",
                                            "dot1qPvid", "vmVlan", "dot1xPaePortReauthenticate"))
# pysnmp ErrorIndication class names / texts (lower-case, no spaces) that mean "credentials or access"
_AUTH_INDICATIONS = ("unknownusername", "unknownusmuser", "wrongdigest", "pdudigest", "authenticationerror",
                     "authenticationfailure", "decryptionerror", "ciphering", "unknownsecurityname",
                     "unsupportedsecuritylevel", "unknowncommunityname", "nosuchview", "noaccessentry",
                     "nogroupname", "notinview", "nosuchcontext")
_TIMEOUT_INDICATIONS = ("requesttimedout", "timeout", "noresponse", "timedout")
_ACCESS_STATUSES = ("noAccess", "authorizationError", "readOnly")
_MAX_PDU_BYTES = 1200  # request size bound for multi-varbind SETs (stays under a 1500-byte MTU with v3 headers)


def _oid_text(oid: Oid) -> str:
    names = {v: k for k, v in OIDS.items()}
    for cut in (1, 2):
        if oid[:-cut] in names:
            return f"{names[oid[:-cut]]}.{'.'.join(map(str, oid[-cut:]))}"
    return ".".join(map(str, oid))


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


def _pairs_bytes(pairs: Sequence[Pair]) -> int:
    """A generous estimate of the encoded size of ``pairs`` (OID sub-ids up to 3 bytes, value, BER headers)."""
    return sum(2 * len(oid) + 8 + (len(bytes(value)) if hasattr(value, "asOctets") else 6) for oid, value in pairs)


class _SnmpSession:
    """A pysnmp engine + target on a private event loop, with error translation at the edge."""

    def __init__(self, target: Target, options: SnmpOptions) -> None:
        self.target = target
        self.options = options
        self.sent: Counter[str] = Counter()  # PDUs sent by kind (get, set, getbulk)
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

    def _indication_error(self, action: str, port: str | None, error_indication: Any) -> DriverError:
        name, text = self.target.name, str(error_indication)
        kind = type(error_indication).__name__ if isinstance(error_indication, Exception) else ""
        low = (kind + text).replace(" ", "").lower()
        if any(key in low for key in _AUTH_INDICATIONS):
            return AuthenticationError(f"{action}: SNMP credentials rejected ({text}); check the user, keys, "
                                       "protocols and context (AES needs the 'cryptography' package)",
                                       switch=name, port=port)
        if any(key in low for key in _TIMEOUT_INDICATIONS):
            return DriverTimeout(
                f"{action}: no SNMP response within {self.options.timeout:g}s x{self.options.retries + 1} "
                "(host down, port closed, ACL, or wrong v2c community)", switch=name, port=port)
        return ConnectError(f"{action}: SNMP failure ({text})", switch=name, port=port)

    def _status_error(self, action: str, port: str | None, error_status: Any, error_index: Any,
                      var_binds: Any) -> DriverError:
        status = error_status.prettyPrint()
        where = ""
        if error_index and 0 < int(error_index) <= len(var_binds):
            where = f" at {_oid_text(tuple(var_binds[int(error_index) - 1][0]))}"
        if status in _ACCESS_STATUSES:
            return AuthenticationError(f"{action}: agent answered {status}{where}; the credential is "
                                       "read-only or lacks this view", switch=self.target.name, port=port)
        return CommandFailed(f"{action}: agent answered {status}{where}", switch=self.target.name, port=port)

    def _raise_for_errors(self, action: str, port: str | None, error_indication: Any, error_status: Any,
                          error_index: Any, var_binds: Any) -> None:
        if error_indication:
            raise self._indication_error(action, port, error_indication)
        if error_status and int(error_status) != 0:
            raise self._status_error(action, port, error_status, error_index, var_binds)

    def _check(self, action: str, port: str | None, error_indication: Any, error_status: Any,
               error_index: Any, var_binds: Any) -> list[tuple[Oid, Any]]:
        self._raise_for_errors(action, port, error_indication, error_status, error_index, var_binds)
        result: list[tuple[Oid, Any]] = []
        for oid_obj, value in var_binds:
            oid = tuple(oid_obj)
            kind = type(value).__name__
            if kind == "NoSuchObject":
                raise Unsupported(f"{action}: agent does not implement {_oid_text(oid)} (noSuchObject)",
                                  switch=self.target.name, port=port)
            if kind == "NoSuchInstance" and oid[:-1] in _PORT_COLUMNS:
                raise InterfaceMissing(f"{action}: agent has no {_oid_text(oid)} (NoSuchInstance): the switch "
                                       "has no such interface; check the port name or ifIndex",
                                       switch=self.target.name, port=port)
            if kind in ("NoSuchInstance", "EndOfMibView"):
                raise CommandFailed(f"{action}: agent has no {_oid_text(oid)} ({kind}); check the port",
                                    switch=self.target.name, port=port)
            result.append((oid, value))
        return result

    async def _get_raw(self, oids: Sequence[Oid]) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, get_cmd

        self.sent["get"] += 1
        return await get_cmd(self._engine, self._auth, self._transport, self._context,
                             *(ObjectType(ObjectIdentity(o)) for o in oids))

    def get(self, oids: Iterable[Oid], action: str, port: str | None = None) -> list[Any]:
        """One GET PDU; any missing instance raises."""
        wanted = list(oids)
        rows = self._check(action, port, *self.run(self._get_raw(wanted)))
        if [r[0] for r in rows] != wanted:
            raise CommandFailed(f"{action}: agent answered for other OIDs than requested", switch=self.target.name,
                                port=port)
        return [value for _, value in rows]

    def get_many(self, oids: Sequence[Oid], action: str, per_pdu: int | None = None) -> list[Any | None]:
        """GETs of at most ``per_pdu`` varbinds (halved on tooBig); ``None`` for a missing instance."""
        size = per_pdu or self.options.max_varbinds
        out: list[Any | None] = []
        start = 0
        while start < len(oids):
            chunk = list(oids[start:start + size])
            indication, status, index, binds = self.run(self._get_raw(chunk))
            if not indication and status and status.prettyPrint() == "tooBig" and size > 1:
                size = max(1, size // 2)
                continue
            self._raise_for_errors(action, None, indication, status, index, binds)
            if [tuple(oid) for oid, _ in binds] != chunk:
                raise CommandFailed(f"{action}: agent answered for other OIDs than requested",
                                    switch=self.target.name)
            for oid, value in binds:
                kind = type(value).__name__
                if kind == "NoSuchObject":
                    raise Unsupported(f"{action}: agent does not implement {_oid_text(tuple(oid))} (noSuchObject)",
                                      switch=self.target.name)
                out.append(None if kind in ("NoSuchInstance", "EndOfMibView") else value)
            start += len(chunk)
        return out

    async def _set_raw(self, pairs: Sequence[Pair], action: str) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, set_cmd

        log.debug("%s: %s: SET %s", self.target.name, action, ", ".join(_oid_text(o) for o, _ in pairs))
        self.sent["set"] += 1
        return await set_cmd(self._engine, self._auth, self._transport, self._context,
                             *(ObjectType(ObjectIdentity(o), v) for o, v in pairs))

    def set(self, pairs: list[Pair], action: str, port: str | None = None) -> None:
        self._check(action, port, *self.run(self._set_raw(pairs, action)))

    def try_set(self, pairs: Sequence[Pair], action: str, port: str | None = None) -> tuple[CommandFailed, int] | None:
        """One SET PDU; the agent's refusal (error-status) is returned with its 1-based error-index.

        A failure of the session (timeout, credentials, read-only access) raises."""
        indication, status, index, binds = self.run(self._set_raw(pairs, action))
        if indication:
            raise self._indication_error(action, port, indication)
        if not status or int(status) == 0:
            return None
        error = self._status_error(action, port, status, index, binds)
        if not isinstance(error, CommandFailed):
            raise error
        return error, int(index or 0)

    def walk(self, prefix: Oid, action: str) -> list[tuple[Oid, Any]]:
        """The rows under ``prefix``, ``max_repetitions`` per GETBULK."""
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, bulk_cmd

        async def _walk() -> list[tuple[Oid, Any]]:
            rows: list[tuple[Oid, Any]] = []
            last = prefix
            while True:
                self.sent["getbulk"] += 1
                reply = await bulk_cmd(self._engine, self._auth, self._transport, self._context, 0,
                                       self.options.max_repetitions, ObjectType(ObjectIdentity(last)))
                self._raise_for_errors(action, None, *reply)
                if not reply[3]:
                    return rows
                for oid_obj, value in reply[3]:
                    oid = tuple(oid_obj)
                    if oid[:len(prefix)] != prefix or type(value).__name__ == "EndOfMibView":
                        return rows
                    if oid <= last:
                        raise CommandFailed(f"{action}: agent returned OIDs out of order (at {_oid_text(oid)})",
                                            switch=self.target.name)
                    rows.append((oid, value))
                    last = oid

        return self.run(_walk())
