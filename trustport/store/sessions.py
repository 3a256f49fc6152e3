"""Where each device is connected right now, from RADIUS post-auth and accounting, from an operator for NASes that
send no accounting (``trustport sessions add``), and corrected by the enforcement worker's read-backs: the VLAN a
session records is what RADIUS assigned until a switch read it back (``vlan_read_back_at``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from policy.enforcement import SessionView
from policy.model import NetworkContext
from trustport.store.schema import sessions
from trustport.store.sql import SqlDeviceStore

ACCT_KINDS = frozenset({"Start", "Interim-Update", "Stop", "Accounting-On", "Accounting-Off"})


MANUAL = "manual"
MAX_SESSION_TEXT = 64  # a hand-typed NAS name or port: what a NAS-Identifier / NAS-Port-Id looks like
MAC_RE = re.compile(r"[0-9A-F]{2}(?:-[0-9A-F]{2}){5}")


class SessionInputError(ValueError):
    """A hand-given NAS, port or MAC that cannot be recorded; ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def manual_context(nas: str, nas_port: str, mac: str) -> NetworkContext:
    """The NetworkContext of a session recorded by hand (``sessions add``, the REST API), each value checked:
    NAS and port 1-64 printable characters without surrounding blanks, a MAC address in any usual spelling; the
    NAS is an IP address (NAS-IP-Address) or else a NAS-Identifier."""
    for field, value in (("nas", nas), ("port", nas_port)):
        if not value or len(value) > MAX_SESSION_TEXT or not value.isprintable() or value != value.strip():
            raise SessionInputError(field, f"1-{MAX_SESSION_TEXT} printable characters without surrounding blanks, "
                                           f"not {value[:40]!r}")
    if not MAC_RE.fullmatch(normalise_mac(mac)):
        raise SessionInputError("mac", f"a MAC address such as 02:00:00:00:00:01 or 02-00-00-00-00-01, not "
                                       f"{mac[:40]!r}")
    try:
        ipaddress.ip_address(nas)
    except ValueError:
        return NetworkContext(nas_identifier=nas, nas_port=nas_port, calling_station_id=mac)
    return NetworkContext(nas_ip=nas, nas_port=nas_port, calling_station_id=mac)


def _view(row: Row[Any]) -> SessionView:
    return SessionView(row.id, row.device_id, row.nas_ip, row.nas_identifier, row.nas_port, row.calling_station_id,
                       row.acct_session_id, row.vlan, row.vlan_read_back_at, row.source or "radius")


def normalise_mac(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isalnum()).upper()
    if len(digits) == 12 and all(ch in "0123456789ABCDEF" for ch in digits):
        return "-".join(digits[i:i + 2] for i in range(0, 12, 2))
    return value.strip()[:64]


# The arguments of one ``authenticated``: device id, context, VLAN, segment, time, Acct-Session-Id.
Opened = tuple[int | None, NetworkContext, int | None, str | None, datetime, str | None]


def _param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


# What ``authenticated`` writes into the session it found (by id): a new VLAN clears the read-back.
_REFRESH = sessions.update().where(sessions.c.id == sa.bindparam("s_id")).values(
    device_id=_param("s_device", sessions.c.device_id), nas_ip=_param("s_nas_ip", sessions.c.nas_ip),
    nas_identifier=_param("s_nas_id", sessions.c.nas_identifier), nas_port=_param("s_port", sessions.c.nas_port),
    user_name=_param("s_user", sessions.c.user_name), segment=_param("s_segment", sessions.c.segment),
    # RADIUS assigned another VLAN: no switch has read this one back yet
    vlan_read_back_at=sa.case((sessions.c.vlan.is_not_distinct_from(_param("s_vlan", sessions.c.vlan)),
                               sessions.c.vlan_read_back_at), else_=None),
    vlan=_param("s_vlan", sessions.c.vlan), updated_at=_param("s_now", sessions.c.updated_at),
    acct_session_id=sa.func.coalesce(_param("s_acct", sessions.c.acct_session_id), sessions.c.acct_session_id),
)


class SqlSessionStore:
    def __init__(self, store: SqlDeviceStore) -> None:
        self.store = store

    @staticmethod
    def _same_place(context: NetworkContext, mac: str) -> sa.ColumnElement[bool]:
        nas = sa.or_(sessions.c.nas_ip == context.nas_ip, sessions.c.nas_identifier == context.nas_identifier)
        return sa.and_(sessions.c.calling_station_id == mac, sessions.c.active.is_(True), nas)

    @staticmethod
    def _active(conn: Connection, context: NetworkContext, mac: str) -> Row[Any] | None:
        query = (sa.select(sessions).where(SqlSessionStore._same_place(context, mac))
                 .order_by(sessions.c.id.desc()).limit(1))
        return conn.execute(query).first()

    def authenticated(self, device_id: int | None, context: NetworkContext, vlan: int | None, segment: str | None,
                      now: datetime, acct_session_id: str | None = None) -> SessionView | None:
        """An Access-Accept went out: open (or refresh) the device's session on this NAS and MAC."""
        if not context.calling_station_id:
            return None
        with self.store.transaction("recording a session") as conn:
            return self.authenticated_in(conn, device_id, context, vlan, segment, now, acct_session_id)

    @staticmethod
    def authenticated_in(conn: Connection, device_id: int | None, context: NetworkContext, vlan: int | None,
                         segment: str | None, now: datetime, acct_session_id: str | None = None) -> SessionView | None:
        """``authenticated`` inside the caller's transaction."""
        if not context.calling_station_id:
            return None
        SqlSessionStore.authenticated_many_in(conn, [(device_id, context, vlan, segment, now, acct_session_id)])
        found = SqlSessionStore._active(conn, context, normalise_mac(context.calling_station_id))
        return _view(found) if found is not None else None

    @staticmethod
    def authenticated_many_in(conn: Connection, items: Sequence[Opened]) -> None:
        """Several ``authenticated``s in order, in the caller's transaction (the journal's drainer applies its
        batches with this): one SELECT of the active sessions of these MACs, one executemany UPDATE of the ones
        found (a new VLAN clears its read-back), an INSERT for each new one."""
        wanted = [(item, normalise_mac(item[1].calling_station_id)) for item in items if item[1].calling_station_id]
        if not wanted:
            return
        macs = sorted({mac for _, mac in wanted})
        active: list[dict[str, Any]] = [dict(r._mapping) for r in conn.execute(
            sa.select(sessions.c.id, sessions.c.calling_station_id, sessions.c.nas_ip, sessions.c.nas_identifier)
            .where(sessions.c.active.is_(True), sessions.c.calling_station_id.in_(macs)))]
        updates: list[dict[str, Any]] = []
        for (device_id, context, vlan, segment, now, acct_session_id), mac in wanted:
            # the newest active session of this MAC on this NAS (by address or identifier), as _same_place finds it
            here = [r for r in active if r["calling_station_id"] == mac
                    and (r["nas_ip"] == context.nas_ip or r["nas_identifier"] == context.nas_identifier)]
            values = {"s_device": device_id, "s_nas_ip": context.nas_ip, "s_nas_id": context.nas_identifier,
                      "s_port": context.nas_port, "s_user": context.user_name, "s_vlan": vlan, "s_segment": segment,
                      "s_now": now, "s_acct": acct_session_id or None}
            if here:
                current = max(here, key=lambda r: int(r["id"]))
                current.update(nas_ip=context.nas_ip, nas_identifier=context.nas_identifier)
                updates.append({"s_id": current["id"], **values})
                continue
            if updates:  # in order: what is already updated first, then the new session
                conn.execute(_REFRESH, updates)
                updates = []
            new_id = conn.execute(sessions.insert().values(
                calling_station_id=mac, active=True, started_at=now, device_id=device_id, nas_ip=context.nas_ip,
                nas_identifier=context.nas_identifier, nas_port=context.nas_port, user_name=context.user_name,
                vlan=vlan, segment=segment, updated_at=now, acct_session_id=acct_session_id or None)
                .returning(sessions.c.id)).scalar_one()
            active.append({"id": new_id, "calling_station_id": mac, "nas_ip": context.nas_ip,
                           "nas_identifier": context.nas_identifier})
        if updates:
            conn.execute(_REFRESH, updates)

    def accounting(self, kind: str, context: NetworkContext, acct_session_id: str | None,
                   now: datetime) -> SessionView | None:
        """Apply one Accounting-Request; returns the session it touched (None for On/Off or unknown MACs)."""
        with self.store.transaction("recording accounting") as conn:
            if kind in ("Accounting-On", "Accounting-Off"):  # the NAS (re)started: its sessions are gone
                nas = sa.or_(sessions.c.nas_ip == context.nas_ip, sessions.c.nas_identifier == context.nas_identifier)
                conn.execute(sessions.update().where(nas, sessions.c.active.is_(True))
                             .values(active=False, stopped_at=now, updated_at=now))
                return None
            if not context.calling_station_id:
                return None
            mac = normalise_mac(context.calling_station_id)
            row = self._active(conn, context, mac)
            if row is None and kind == "Stop":
                return None
            if row is None:  # accounting for a session we did not authorize here (or lost): track it anyway
                conn.execute(sessions.insert().values(
                    calling_station_id=mac, active=True, started_at=now, updated_at=now, nas_ip=context.nas_ip,
                    nas_identifier=context.nas_identifier, nas_port=context.nas_port, user_name=context.user_name,
                    acct_session_id=acct_session_id))
                row = self._active(conn, context, mac)
                assert row is not None
            values: dict[str, Any] = {"updated_at": now}
            if acct_session_id:
                values["acct_session_id"] = acct_session_id
            if context.nas_port and not row.nas_port:
                values["nas_port"] = context.nas_port
            if kind == "Stop":
                values.update(active=False, stopped_at=now)
            conn.execute(sessions.update().where(sessions.c.id == row.id).values(**values))
            updated = conn.execute(sa.select(sessions).where(sessions.c.id == row.id)).first()
        return _view(updated) if updated is not None else None

    def active_for_device(self, device_id: int) -> Sequence[SessionView]:
        query = sa.select(sessions).where(sessions.c.device_id == device_id, sessions.c.active.is_(True))
        with self.store.transaction("reading sessions") as conn:
            return [_view(r) for r in conn.execute(query.order_by(sessions.c.id))]

    def all_active(self) -> Sequence[SessionView]:
        with self.store.transaction("reading sessions") as conn:
            return [_view(r) for r in conn.execute(sa.select(sessions).where(sessions.c.active.is_(True)))]

    def get(self, session_id: int) -> SessionView | None:
        with self.store.transaction("reading a session") as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.id == session_id)).first()
        return _view(row) if row is not None else None

    def add_manual(self, device_id: int, context: NetworkContext, vlan: int | None, now: datetime) -> SessionView:
        """Record by hand where a device is connected (a NAS that sends no accounting); replaces an active session
        of the same MAC on the same NAS."""
        if not context.calling_station_id:
            raise ValueError("a session needs the device's MAC address (Calling-Station-Id)")
        mac = normalise_mac(context.calling_station_id)
        with self.store.transaction("recording a session by hand") as conn:
            conn.execute(sessions.update().where(self._same_place(context, mac))
                         .values(active=False, stopped_at=now, updated_at=now))
            new_id = conn.execute(sessions.insert().values(
                device_id=device_id, nas_ip=context.nas_ip, nas_identifier=context.nas_identifier,
                nas_port=context.nas_port, calling_station_id=mac, vlan=vlan, active=True, started_at=now,
                updated_at=now, source=MANUAL).returning(sessions.c.id)).scalar_one()
            row = conn.execute(sa.select(sessions).where(sessions.c.id == new_id)).one()
        return _view(row)

    def clear(self, device_id: int, now: datetime, session_id: int | None = None) -> int:
        """End the device's active sessions (or the one with ``session_id``); how many were ended."""
        where = [sessions.c.device_id == device_id, sessions.c.active.is_(True)]
        if session_id is not None:
            where.append(sessions.c.id == session_id)
        with self.store.transaction("clearing sessions") as conn:
            result = conn.execute(sessions.update().where(*where).values(active=False, stopped_at=now,
                                                                         updated_at=now))
        return int(result.rowcount)

    def record_read_back(self, vlans: Mapping[int, int], now: datetime) -> None:
        """Sessions whose switch port was read back after a verified move (session id -> VLAN read), in one
        transaction: the session now says what the switch said."""
        if not vlans:
            return
        with self.store.transaction("recording read-back VLANs") as conn:
            conn.execute(sessions.update().where(sessions.c.id == sa.bindparam("b_id"))
                         .values(vlan=sa.bindparam("b_vlan"), vlan_read_back_at=now, updated_at=now),
                         [{"b_id": sid, "b_vlan": vlan} for sid, vlan in vlans.items()])
