"""Where each device is connected right now, from RADIUS post-auth and accounting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from policy.enforcement import SessionView
from policy.model import NetworkContext
from trustport.store.schema import sessions
from trustport.store.sql import SqlDeviceStore

ACCT_KINDS = frozenset({"Start", "Interim-Update", "Stop", "Accounting-On", "Accounting-Off"})


def _view(row: Row[Any]) -> SessionView:
    return SessionView(row.id, row.device_id, row.nas_ip, row.nas_identifier, row.nas_port, row.calling_station_id,
                       row.acct_session_id, row.vlan)


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

    def _active(self, conn: Connection, context: NetworkContext, mac: str) -> Row[Any] | None:
        query = sa.select(sessions).where(self._same_place(context, mac)).order_by(sessions.c.id.desc()).limit(1)
        return conn.execute(query).first()

    def authenticated(self, device_id: int | None, context: NetworkContext, vlan: int | None, segment: str | None,
                      now: datetime, acct_session_id: str | None = None) -> SessionView | None:
        """An Access-Accept went out: open (or refresh) the device's session on this NAS and MAC."""
        if not context.calling_station_id:
            return None
        mac = normalise_mac(context.calling_station_id)
        values = {"device_id": device_id, "nas_ip": context.nas_ip, "nas_identifier": context.nas_identifier,
                  "nas_port": context.nas_port, "user_name": context.user_name, "vlan": vlan, "segment": segment,
                  "updated_at": now}
        if acct_session_id:
            values["acct_session_id"] = acct_session_id
        with self.store.transaction("recording a session") as conn:
            row = self._active(conn, context, mac)
            if row is None:
                conn.execute(sessions.insert().values(calling_station_id=mac, active=True, started_at=now,
                                                      **values))
            else:
                conn.execute(sessions.update().where(sessions.c.id == row.id).values(**values))
            found = self._active(conn, context, mac)
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
