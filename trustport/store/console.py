"""The reads the operator's console (REST API and dashboard) needs beyond the repositories: devices filtered and
paged with where they are connected now, the decision log filtered (the live authentications view), counts for the
overview, and the audit trail of lifecycle events and other writes together. Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from policy.model import DecisionLogEntry, DeviceRecord, LifecycleState
from trustport.store.schema import audit_log, decision_log, devices, lifecycle_events, sessions
from trustport.store.sql import SqlDeviceStore

MAX_PAGE = 500


@dataclass(frozen=True)
class Connected:
    """Where a device is connected now (an active session)."""

    session_id: int
    nas: str  # NAS-IP-Address or NAS-Identifier
    port: str | None
    mac: str
    vlan: int | None
    read_back: bool  # a switch read the VLAN back (not only RADIUS said so)
    since: datetime


@dataclass(frozen=True)
class DeviceRow:
    device: DeviceRecord
    connected: tuple[Connected, ...]


@dataclass(frozen=True)
class LoggedDecision:
    id: int
    entry: DecisionLogEntry


@dataclass(frozen=True)
class AuditItem:
    time: datetime
    actor: str
    action: str
    target: str
    detail: str | None


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SqlConsoleReads:
    def __init__(self, store: SqlDeviceStore) -> None:
        self.store = store

    def devices(self, *, state: LifecycleState | None = None, segment: str | None = None, text: str | None = None,
                connected: bool | None = None, limit: int = 100, offset: int = 0) -> tuple[list[DeviceRow], int]:
        """One page of devices (newest first) and how many match; ``text`` matches serial, owner, class or
        location (a substring, wildcards taken literally)."""
        where: list[sa.ColumnElement[bool]] = []
        if state is not None:
            where.append(devices.c.state == state.value)
        if segment is not None:
            where.append(devices.c.segment == segment)
        if text:
            pattern = _like(text)
            where.append(sa.or_(*(column.like(pattern, escape="\\") for column in (
                devices.c.serial_number, devices.c.owner, devices.c.device_class, devices.c.location))))
        active = sa.select(sessions.c.device_id).where(sessions.c.active.is_(True), sessions.c.device_id.is_not(None))
        if connected is True:
            where.append(devices.c.id.in_(active))
        elif connected is False:
            where.append(devices.c.id.not_in(active))
        limit = max(1, min(limit, MAX_PAGE))
        query = sa.select(devices).where(*where).order_by(devices.c.id.desc()).limit(limit).offset(max(0, offset))
        count = sa.select(sa.func.count()).select_from(devices).where(*where)
        with self.store.transaction("listing devices") as conn:
            rows = conn.execute(query).all()
            total = int(conn.execute(count).scalar_one())
            ids = [r.id for r in rows]
            places = conn.execute(sa.select(sessions).where(sessions.c.device_id.in_(ids),
                                                            sessions.c.active.is_(True))
                                  .order_by(sessions.c.id)).all() if ids else []
        by_device: dict[int, list[Connected]] = {}
        for s in places:
            by_device.setdefault(s.device_id, []).append(_connected(s))
        return [DeviceRow(self.store.device_from_row(r), tuple(by_device.get(r.id, ()))) for r in rows], total

    def connected(self, device_id: int) -> list[Connected]:
        query = sa.select(sessions).where(sessions.c.device_id == device_id, sessions.c.active.is_(True))
        with self.store.transaction("reading a device's sessions") as conn:
            return [_connected(s) for s in conn.execute(query.order_by(sessions.c.id))]

    def recent_sessions(self, device_id: int, limit: int = 20) -> list[dict[str, Any]]:
        query = (sa.select(sessions).where(sessions.c.device_id == device_id)
                 .order_by(sessions.c.id.desc()).limit(limit))
        with self.store.transaction("reading a device's sessions") as conn:
            return [{"id": s.id, "nas": s.nas_ip or s.nas_identifier, "port": s.nas_port,
                     "mac": s.calling_station_id, "vlan": s.vlan, "segment": s.segment, "active": bool(s.active),
                     "started_at": s.started_at, "stopped_at": s.stopped_at, "source": s.source or "radius"}
                    for s in conn.execute(query)]

    def decisions(self, *, outcome: str | None = None, text: str | None = None, device_id: int | None = None,
                  after_id: int | None = None, limit: int = 50) -> list[LoggedDecision]:
        """Newest first; ``after_id`` gives only newer ones (what a live view polls for); ``text`` matches the
        device, NAS, port or MAC."""
        where: list[sa.ColumnElement[bool]] = []
        if outcome is not None:
            where.append(decision_log.c.outcome == outcome)
        if device_id is not None:
            where.append(decision_log.c.device_id == device_id)
        if after_id is not None:
            where.append(decision_log.c.id > after_id)
        if text:
            pattern = _like(text)
            where.append(sa.or_(*(column.like(pattern, escape="\\") for column in (
                decision_log.c.device, decision_log.c.nas_ip, decision_log.c.nas_identifier, decision_log.c.nas_port,
                decision_log.c.calling_station_id))))
        query = (sa.select(decision_log).where(*where).order_by(decision_log.c.id.desc())
                 .limit(max(1, min(limit, MAX_PAGE))))
        with self.store.transaction("reading the decision log") as conn:
            rows = conn.execute(query).all()
        return [LoggedDecision(r.id, self.store.decision_from_row(r)) for r in rows]

    def counts(self, since: datetime) -> dict[str, dict[str, int]]:
        """Devices by state, decisions since ``since`` by outcome, active sessions."""
        with self.store.transaction("counting for the overview") as conn:
            states: dict[str, int] = {str(k): int(v) for k, v in conn.execute(
                sa.select(devices.c.state, sa.func.count()).group_by(devices.c.state))}
            outcomes: dict[str, int] = {str(k): int(v) for k, v in conn.execute(
                sa.select(decision_log.c.outcome, sa.func.count()).where(decision_log.c.time >= since)
                .group_by(decision_log.c.outcome))}
            active = conn.execute(sa.select(sa.func.count()).select_from(sessions)
                                  .where(sessions.c.active.is_(True))).scalar_one()
        return {"devices": states, "decisions": outcomes, "sessions": {"active": int(active)}}

    def decision_counts(self) -> dict[str, int]:
        """Every decision-log entry ever, by outcome."""
        query = sa.select(decision_log.c.outcome, sa.func.count()).group_by(decision_log.c.outcome)
        with self.store.transaction("counting decisions") as conn:
            return {str(outcome): int(n) for outcome, n in conn.execute(query)}

    def audit(self, *, limit: int = 100, device_id: int | None = None, actor: str | None = None) -> list[AuditItem]:
        """Lifecycle events and other writes (tokens, users, jobs, sessions), newest first."""
        limit = max(1, min(limit, MAX_PAGE))
        events = sa.select(lifecycle_events).order_by(lifecycle_events.c.time.desc()).limit(limit)
        others = sa.select(audit_log).order_by(audit_log.c.time.desc()).limit(limit)
        if device_id is not None:
            events = events.where(lifecycle_events.c.device_id == device_id)
        if actor is not None:
            events = events.where(lifecycle_events.c.actor == actor)
            others = others.where(audit_log.c.actor == actor)
        with self.store.transaction("reading the audit trail") as conn:
            items = [AuditItem(e.time, e.actor, e.action, f"device #{e.device_id}",
                               f"{e.from_state} -> {e.to_state}" + (f": {e.reason}" if e.reason else ""))
                     for e in conn.execute(events)]
            if device_id is None:
                items += [AuditItem(a.time, a.actor, a.action, a.target, a.detail) for a in conn.execute(others)]
        return sorted(items, key=lambda i: i.time, reverse=True)[:limit]


def _connected(s: sa.Row[Any]) -> Connected:
    return Connected(s.id, s.nas_ip or s.nas_identifier or "?", s.nas_port, s.calling_station_id, s.vlan,
                     s.vlan_read_back_at is not None, s.started_at)

