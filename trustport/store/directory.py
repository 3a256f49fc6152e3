"""Directory links and sync status in the registry database (``directory_links``, ``directory_status``).

The ``*_in`` functions write inside a transaction the caller holds, so that a device the directory adds, its link
and its audit record commit together, and a lifecycle action on a linked device changes its ``held`` flag in the
same transaction as its state (``trustport.services.directory``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from policy.directory import DIRECTORY_ACTOR, Link
from policy.model import DeviceKey, LifecycleState
from trustport.store.lifecycle import LifecycleEvent, SqlLifecycleStore
from trustport.store.schema import devices, directory_links, directory_status
from trustport.store.sql import SqlDeviceStore

_COLUMN = {"owner": "owner", "device_class": "device_class", "site": "location", "segment": "segment"}


@dataclass(frozen=True)
class DirectoryStatus:
    directory: str
    url: str
    last_attempt_at: datetime
    last_success_at: datetime | None
    last_error: str | None
    entries: int | None
    summary: Mapping[str, int]
    duration_seconds: float | None
    failures_total: int
    consecutive_failures: int
    linked: int

    @property
    def up(self) -> bool:
        return self.last_error is None


def device_columns(fields: Mapping[str, str | None]) -> dict[str, str | None]:
    """Directory fields (owner, device_class, site, segment) as ``devices`` columns."""
    return {_COLUMN[name]: value for name, value in fields.items()}


class SqlDirectoryStore:
    def __init__(self, store: SqlDeviceStore, directory: str) -> None:
        self.store = store
        self.directory = directory

    def links(self) -> list[Link]:
        query = sa.select(directory_links.c.device_id, directory_links.c.dn, directory_links.c.held).where(
            directory_links.c.directory == self.directory)
        with self.store.transaction("reading directory links") as conn:
            return [Link(int(r.device_id), r.dn, bool(r.held)) for r in conn.execute(query)]

    def add_in(self, conn: Connection, key: DeviceKey, dn: str, *, state: LifecycleState,
               fields: Mapping[str, str | None], held: bool, now: datetime) -> int:
        """A new device from a directory entry, its link and its audit record; returns its id."""
        values = {"issuer": key.issuer, "serial_number": key.serial_number, "state": state.value,
                  "created_at": now, "updated_at": now, **device_columns(fields)}
        device_id = int(conn.execute(devices.insert().values(**values).returning(devices.c.id)).scalar_one())
        self.link_in(conn, device_id, dn, held=held, now=now)
        SqlLifecycleStore.record_in(conn, LifecycleEvent(device_id, now, DIRECTORY_ACTOR, "directory-add", "new",
                                                         state.value, f"directory entry {dn}"))
        return device_id

    def link_in(self, conn: Connection, device_id: int, dn: str, *, held: bool, now: datetime) -> None:
        """Link (or re-link) a device to an entry; an older link of that DN to another device goes."""
        conn.execute(directory_links.delete().where(directory_links.c.directory == self.directory,
                                                    directory_links.c.dn == dn,
                                                    directory_links.c.device_id != device_id))
        values = {"device_id": device_id, "directory": self.directory, "dn": dn, "held": held, "linked_at": now,
                  "updated_at": now}
        insert = (postgresql.insert(directory_links) if conn.dialect.name == "postgresql"
                  else sqlite.insert(directory_links))
        conn.execute(insert.values(**values).on_conflict_do_update(
            index_elements=[directory_links.c.device_id],
            set_={"directory": self.directory, "dn": dn, "held": held, "updated_at": now}))

    def unlink_in(self, conn: Connection, dn: str) -> None:
        conn.execute(directory_links.delete().where(directory_links.c.directory == self.directory,
                                                    directory_links.c.dn == dn))

    def record_attempt(self, *, url: str, now: datetime, error: str | None, entries: int | None = None,
                       summary: Mapping[str, int] | None = None, duration_s: float | None = None) -> None:
        """One sync attempt: a success replaces the summary; a failure keeps the last good one (still in force)."""
        with self.store.transaction("recording a directory sync") as conn:
            row = conn.execute(sa.select(directory_status).where(
                directory_status.c.directory == self.directory)).first()
            failures = (row.failures_total if row is not None else 0) + (error is not None)
            values: dict[str, object] = {
                "url": url, "last_attempt_at": now, "last_error": error, "failures_total": failures,
                "consecutive_failures": ((row.consecutive_failures if row is not None else 0) + 1) if error else 0,
                "duration_seconds": duration_s}
            if error is None:
                values.update(last_success_at=now, entries=entries, summary=json.dumps(dict(summary or {})))
            if row is None:
                conn.execute(directory_status.insert().values(directory=self.directory, **values))
            else:
                conn.execute(directory_status.update().where(directory_status.c.directory == self.directory)
                             .values(**values))

    def status(self) -> DirectoryStatus | None:
        with self.store.transaction("reading the directory status") as conn:
            row = conn.execute(sa.select(directory_status).where(
                directory_status.c.directory == self.directory)).first()
            linked = conn.execute(sa.select(sa.func.count()).select_from(directory_links).where(
                directory_links.c.directory == self.directory)).scalar_one()
        if row is None:
            return None
        try:
            summary = {str(k): int(v) for k, v in json.loads(row.summary or "{}").items()}
        except (ValueError, TypeError, AttributeError):
            summary = {}
        return DirectoryStatus(row.directory, row.url, row.last_attempt_at, row.last_success_at, row.last_error,
                               row.entries, summary, row.duration_seconds, int(row.failures_total),
                               int(row.consecutive_failures), int(linked))
