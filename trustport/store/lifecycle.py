"""Lifecycle audit log and the local certificate deny list, in the registry database.

The ``*_in`` functions write inside a transaction the caller holds (``store.transaction``), so that one
lifecycle action's state change, audit record, deny-list entry and enforcement jobs commit together or not at
all (``trustport.services.lifecycle``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from policy.errors import DeviceNotFound, StoreError
from policy.model import CertificateFacts, CertKind, DeviceRecord, LifecycleState
from trustport.store.schema import denied_certificates, devices, lifecycle_events, sessions
from trustport.store.sql import SqlDeviceStore, normalize_fingerprint

SETTABLE_COLUMNS = frozenset({"owner", "device_class", "location", "segment"})


@dataclass(frozen=True)
class LifecycleEvent:
    device_id: int
    time: datetime
    actor: str
    action: str
    from_state: str
    to_state: str
    reason: str | None


@dataclass(frozen=True)
class DeviceStanding:
    """The columns a lifecycle action is planned on; re-read (and locked) inside its transaction."""

    state: str
    segment: str | None
    notes: str | None
    cert_serial: str | None


class BindingConflict(StoreError):
    """The device changed under a binding move (or its new key is taken): nothing was written; ask again."""


class SqlLifecycleStore:
    def __init__(self, store: SqlDeviceStore) -> None:
        self.store = store

    def record(self, event: LifecycleEvent) -> None:
        with self.store.transaction("recording a lifecycle event") as conn:
            self.record_in(conn, event)

    @staticmethod
    def record_in(conn: Connection, event: LifecycleEvent) -> None:
        conn.execute(lifecycle_events.insert().values(**event.__dict__))

    @staticmethod
    def standing_for_update(conn: Connection, device_id: int) -> DeviceStanding:
        """The device's current standing, row-locked until the transaction ends (SQLite: the caller's
        ``BEGIN IMMEDIATE`` already holds the database's write lock)."""
        query = sa.select(devices.c.state, devices.c.segment, devices.c.notes, devices.c.cert_serial).where(
            devices.c.id == device_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise DeviceNotFound(f"device #{device_id} is no longer in the registry; nothing was changed")
        return DeviceStanding(row.state, row.segment, row.notes, row.cert_serial)

    @staticmethod
    def active_session_ids_in(conn: Connection, device_id: int) -> list[int]:
        """Ids of the device's active sessions, in id order (what enforcement planning iterated over)."""
        query = sa.select(sessions.c.id).where(sessions.c.device_id == device_id, sessions.c.active.is_(True))
        return [int(i) for i in conn.execute(query.order_by(sessions.c.id)).scalars()]

    @staticmethod
    def set_state_in(conn: Connection, device_id: int, *, state: LifecycleState, segment: str | None,
                     notes: str | None, now: datetime, columns: Mapping[str, str | None] | None = None) -> None:
        """Change the device's lifecycle state (and segment/notes when given) inside the caller's transaction;
        ``columns`` (owner, device_class, location, segment) are set exactly as given, None included."""
        values: dict[str, Any] = {"state": state.value, "updated_at": now}
        if segment is not None:
            values["segment"] = segment
        if notes is not None:
            values["notes"] = notes
        unknown = set(columns or ()) - SETTABLE_COLUMNS
        if unknown:
            raise ValueError(f"not a settable device column: {', '.join(sorted(unknown))}")
        values.update(columns or {})
        if conn.execute(devices.update().where(devices.c.id == device_id).values(**values)).rowcount != 1:
            raise DeviceNotFound(f"device #{device_id} is no longer in the registry; nothing was changed")

    @staticmethod
    def move_binding_in(conn: Connection, device: DeviceRecord, presented_serial: str, new: CertificateFacts,
                        kind: CertKind, now: datetime) -> None:
        """Inside the caller's transaction (holding the registry write lock): the device row now names ``new``
        (issuer, kind, serial, fingerprint, key, MUD URL). ``BindingConflict`` when the device changed since
        ``device`` was read (issuer, state, or bound to another certificate than ``presented_serial``) or another
        device is already registered under ``new``'s issuer and this serial; nothing is written then."""
        row = conn.execute(sa.select(devices.c.issuer, devices.c.state, devices.c.cert_serial)
                           .where(devices.c.id == device.id).with_for_update()).one_or_none()
        if row is None or (row.issuer, row.state) != (device.key.issuer, device.state.value) \
                or row.cert_serial not in (None, presented_serial):
            raise BindingConflict(f"device {device.id} changed while its certificate was being issued (another "
                                  "enrolment or an operator); ask again")
        if new.issuer != device.key.issuer:
            clash = conn.execute(sa.select(devices.c.id).where(devices.c.issuer == new.issuer,
                                                               devices.c.serial_number == device.key.serial_number)
                                 ).one_or_none()
            if clash is not None:
                raise BindingConflict(f"device {clash.id} is already registered as {device.key.serial_number} "
                                      "under the owner CA; decommission or remove it first")
        fingerprint = new.fingerprint_sha256
        conn.execute(devices.update().where(devices.c.id == device.id).values(
            issuer=new.issuer, cert_kind=kind.value, cert_serial=new.cert_serial,
            fingerprint_sha256=normalize_fingerprint(fingerprint) if fingerprint else None,
            spki_sha256=new.spki_sha256, updated_at=now,
            **({"mud_url": new.mud_url} if new.mud_url is not None else {})))

    @staticmethod
    def deny_in(conn: Connection, issuer: str, cert_serial: str, *, device_id: int | None, time: datetime,
                actor: str, reason: str | None) -> bool:
        """``deny`` inside the caller's transaction; False if the certificate was already denied.

        ``ON CONFLICT DO NOTHING`` rather than catching the IntegrityError: on PostgreSQL a failed statement
        aborts the whole transaction, and with it the rest of the action."""
        values = {"issuer": issuer, "cert_serial": cert_serial.lower(), "device_id": device_id, "time": time,
                  "actor": actor, "reason": reason}
        insert = (postgresql.insert(denied_certificates) if conn.dialect.name == "postgresql"
                  else sqlite.insert(denied_certificates))
        inserted = conn.execute(insert.values(**values).on_conflict_do_nothing(
            index_elements=[denied_certificates.c.issuer, denied_certificates.c.cert_serial])
            .returning(denied_certificates.c.id)).first()
        return inserted is not None

    def events(self, device_id: int, limit: int = 50) -> Sequence[LifecycleEvent]:
        query = (sa.select(lifecycle_events).where(lifecycle_events.c.device_id == device_id)
                 .order_by(lifecycle_events.c.time.desc(), lifecycle_events.c.id.desc()).limit(limit))
        with self.store.transaction("reading lifecycle events") as conn:
            return [LifecycleEvent(r.device_id, r.time, r.actor, r.action, r.from_state, r.to_state, r.reason)
                    for r in conn.execute(query)]

    def deny(self, issuer: str, cert_serial: str, *, device_id: int | None, time: datetime, actor: str,
             reason: str | None) -> bool:
        """Add a certificate to the deny list; False if it was already there."""
        values = {"issuer": issuer, "cert_serial": cert_serial.lower(), "device_id": device_id, "time": time,
                  "actor": actor, "reason": reason}
        try:
            with self.store.transaction("adding to the deny list") as conn:
                conn.execute(denied_certificates.insert().values(**values))
        except StoreError as error:  # the store translates IntegrityError; a duplicate means already denied
            if isinstance(error.__cause__, exc.IntegrityError):
                return False
            raise
        return True

    def denied_index(self) -> dict[tuple[str, str], str]:
        """Every denied certificate -> why (the hook keeps this in memory)."""
        with self.store.transaction("reading the deny list") as conn:
            return self.denied_index_in(conn)

    @staticmethod
    def denied_index_in(conn: Connection) -> dict[tuple[str, str], str]:
        rows = conn.execute(sa.select(denied_certificates)).all()
        return {(r.issuer, r.cert_serial): f"on the local deny list since {r.time.isoformat()}"
                + (f": {r.reason}" if r.reason else "") for r in rows}
