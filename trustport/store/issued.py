"""The certificates the owner CA issued, and which of them are revoked (the CRL is built from this table).

A revocation (or a re-issue that replaces a certificate) marks the row and puts the certificate on the local deny
list (``denied_certificates``, as ``trustport devices revoke`` does) in one transaction, so the hook refuses it even
before the new CRL is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policy.errors import IssuanceError
from policy.issuance import RevokedEntry
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.queue import SqlJobQueue
from trustport.store.schema import devices, issued_certificates
from trustport.store.sql import SqlDeviceStore


@dataclass(frozen=True)
class IssuedRecord:
    cert_serial: str  # lower-case hex
    issuer: str  # canonical DN text of the owner CA
    device_serial: str
    subject: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    actor: str
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    replaced_by: str | None = None
    pem: str = ""


def _record(row: Any) -> IssuedRecord:
    m = row._mapping
    return IssuedRecord(m["cert_serial"], m["issuer"], m["device_serial"], m["subject"], m["not_before"],
                        m["not_after"], m["issued_at"], m["actor"], m["revoked_at"], m["revocation_reason"],
                        m["replaced_by"], m["pem"])


class SqlIssuedStore:
    def __init__(self, store: SqlDeviceStore) -> None:
        self.store = store

    def record_issued(self, record: IssuedRecord, *, replaces: str | None = None, reason: str | None = None,
                      also: Callable[[Connection], None] | None = None) -> None:
        """Store a new certificate; with ``replaces``, revoke that one (same issuer and device) in the same
        transaction, and run ``also`` in it too (the registry binding moving to the new certificate). Raises
        IssuanceError, writing nothing, if the replaced certificate is unknown or another device's; whatever
        ``also`` raises rolls everything back."""
        with self.store.transaction("recording an issued certificate") as conn:
            if also is not None:  # it reads then writes the registry: the write lock first, as lifecycle actions do
                SqlJobQueue.lock(conn)
            if replaces is not None:
                old = self._get_in(conn, replaces)
                if old is None or old.issuer != record.issuer:
                    raise IssuanceError(f"certificate serial {replaces[:40]} to be replaced was not issued by this "
                                        "CA; nothing was issued")
                if old.device_serial != record.device_serial:
                    raise IssuanceError(f"certificate serial {replaces[:40]} belongs to device {old.device_serial!r}"
                                        f", not {record.device_serial!r}; nothing was issued")
            conn.execute(issued_certificates.insert().values(**record.__dict__))
            if replaces is not None:
                self._revoke_in(conn, replaces, reason=reason or f"replaced by {record.cert_serial}",
                                now=record.issued_at, actor=record.actor, replaced_by=record.cert_serial)
            if also is not None:
                also(conn)

    def revoke(self, cert_serial: str, *, reason: str, now: datetime, actor: str) -> bool:
        """Mark revoked and deny-list it; False if it already was revoked. IssuanceError if never issued here."""
        with self.store.transaction("revoking an issued certificate") as conn:
            if self._get_in(conn, cert_serial) is None:
                raise IssuanceError(f"certificate serial {cert_serial[:40]} was not issued by the owner CA "
                                    "(see 'trustport ca list')")
            return self._revoke_in(conn, cert_serial, reason=reason, now=now, actor=actor)

    @staticmethod
    def _get_in(conn: Connection, cert_serial: str) -> IssuedRecord | None:
        row = conn.execute(sa.select(issued_certificates).where(
            issued_certificates.c.cert_serial == cert_serial.lower())).first()
        return None if row is None else _record(row)

    def _revoke_in(self, conn: Connection, cert_serial: str, *, reason: str, now: datetime, actor: str,
                   replaced_by: str | None = None) -> bool:
        record = self._get_in(conn, cert_serial)
        assert record is not None
        values: dict[str, Any] = {}
        if replaced_by is not None:
            values["replaced_by"] = replaced_by
        fresh = record.revoked_at is None
        if fresh:
            values |= {"revoked_at": now, "revocation_reason": reason}
        if values:
            conn.execute(issued_certificates.update().where(
                issued_certificates.c.cert_serial == record.cert_serial).values(**values))
        device_id = conn.execute(sa.select(devices.c.id).where(
            devices.c.issuer == record.issuer, devices.c.serial_number == record.device_serial)).scalar()
        SqlLifecycleStore.deny_in(conn, record.issuer, record.cert_serial, device_id=device_id, time=now,
                                  actor=actor, reason=f"revoked by the owner CA: {reason}")
        return fresh

    def get(self, cert_serial: str) -> IssuedRecord | None:
        with self.store.transaction("reading an issued certificate") as conn:
            return self._get_in(conn, cert_serial)

    def list(self, device_serial: str | None = None, limit: int = 1000) -> Sequence[IssuedRecord]:
        """Newest first."""
        query = sa.select(issued_certificates)
        if device_serial is not None:
            query = query.where(issued_certificates.c.device_serial == device_serial)
        query = query.order_by(issued_certificates.c.issued_at.desc(), issued_certificates.c.id.desc()).limit(limit)
        with self.store.transaction("listing issued certificates") as conn:
            return [_record(r) for r in conn.execute(query)]

    def revoked(self, issuer: str, now: datetime) -> Sequence[RevokedEntry]:
        """Revoked certificates of ``issuer`` that have not expired yet (expired ones can leave the CRL)."""
        query = (sa.select(issued_certificates.c.cert_serial, issued_certificates.c.revoked_at)
                 .where(issued_certificates.c.issuer == issuer, issued_certificates.c.revoked_at.is_not(None),
                        issued_certificates.c.not_after >= now)
                 .order_by(issued_certificates.c.id))
        with self.store.transaction("reading revoked certificates") as conn:
            return [RevokedEntry(r.cert_serial, r.revoked_at) for r in conn.execute(query)]
