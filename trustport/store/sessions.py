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
        """``authenticated`` inside the caller's transaction (the journal applies a batch of them in one)."""
        if not context.calling_station_id:
            return None
        mac = normalise_mac(context.calling_station_id)
        values = {"device_id": device_id, "nas_ip": context.nas_ip, "nas_identifier": context.nas_identifier,
                  "nas_port": context.nas_port, "user_name": context.user_name, "vlan": vlan, "segment": segment,
                  "updated_at": now}
        if acct_session_id:
            values["acct_session_id"] = acct_session_id
        row = SqlSessionStore._active(conn, context, mac)
        if row is None:
            conn.execute(sessions.insert().values(calling_station_id=mac, active=True, started_at=now, **values))
        else:
            if row.vlan != vlan:  # RADIUS assigned another VLAN: no switch has read this one back yet
                values["vlan_read_back_at"] = None
            conn.execute(sessions.update().where(sessions.c.id == row.id).values(**values))
        found = SqlSessionStore._active(conn, context, mac)
        return _view(found) if found is not None else None

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
