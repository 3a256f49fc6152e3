"""Lifecycle audit log and the local certificate deny list, in the registry database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc

from policy.errors import StoreError
from policy.sql_schema import denied_certificates, lifecycle_events
from policy.store_sql import SqlDeviceStore


@dataclass(frozen=True)
class LifecycleEvent:
    device_id: int
    time: datetime
    actor: str
    action: str
    from_state: str
    to_state: str
    reason: str | None


class SqlLifecycleStore:
    def __init__(self, store: SqlDeviceStore) -> None:
        self.store = store

    def record(self, event: LifecycleEvent) -> None:
        with self.store.transaction("recording a lifecycle event") as conn:
            conn.execute(lifecycle_events.insert().values(**event.__dict__))

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
            rows = conn.execute(sa.select(denied_certificates)).all()
        return {(r.issuer, r.cert_serial): f"on the local deny list since {r.time.isoformat()}"
                + (f": {r.reason}" if r.reason else "") for r in rows}
