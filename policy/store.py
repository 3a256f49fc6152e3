"""The persistence interface policy and the RADIUS hook depend on.

The SQL implementation (SQLite by default, PostgreSQL by URL) lives in ``trustport.store.sql``; tests of pure rules
use plain in-memory values instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from policy.model import (
    AuditNote,
    CertificateFacts,
    CertKind,
    DecisionLogEntry,
    DeviceKey,
    DeviceRecord,
    LifecycleState,
    VerifiedCertificate,
)


class DeviceStore(Protocol):
    """Device registry plus the append-only decision log."""

    def find_device(self, key: DeviceKey) -> DeviceRecord | None:
        """The device with this issuer + device serial, or None."""

    def get_device(self, device_id: int) -> DeviceRecord | None: ...

    def list_devices(self, state: LifecycleState | None = None) -> Sequence[DeviceRecord]: ...

    def add_device(
        self,
        key: DeviceKey,
        *,
        state: LifecycleState,
        now: datetime,
        segment: str | None = None,
        owner: str | None = None,
        notes: str | None = None,
        cert_kind: CertKind | None = None,
        facts: CertificateFacts | None = None,
        device_class: str | None = None,
    ) -> DeviceRecord:
        """Create a device; raises ``DeviceExists`` if the key is already registered."""

    def register_pending(self, key: DeviceKey, facts: CertificateFacts, kind: CertKind, now: datetime) -> DeviceRecord:
        """Record a genuine unknown device as pending; returns the existing record if one appeared meanwhile."""

    def record_seen(self, device_id: int, facts: CertificateFacts, now: datetime) -> None:
        """Update last_seen and the certificate details last presented."""

    def update_device(
        self,
        device_id: int,
        *,
        state: LifecycleState | None = None,
        segment: str | None = None,
        owner: str | None = None,
        notes: str | None = None,
        device_class: str | None = None,
    ) -> DeviceRecord:
        """Change the given fields (None = leave as is); raises ``DeviceNotFound``."""

    def append_decision(self, entry: DecisionLogEntry, seen: CertificateFacts | None = None,
                        audit: AuditNote | None = None, *, kind: CertKind | None = None) -> None:
        """Append to the log; with ``seen``, also record the device as seen and ``seen`` (of anchor role ``kind``)
        as its last verified certificate, and with ``audit`` an audit entry for ``entry.device_id`` (one
        transaction)."""

    def last_certificate(self, device_id: int) -> VerifiedCertificate | None:
        """The certificate the device last authenticated with (verified and accepted), or None."""

    def bind_certificate(self, device_id: int, facts: CertificateFacts, now: datetime,
                         audit: AuditNote) -> DeviceRecord:
        """Replace the certificate a device is bound to (operator re-bind, enrolment), with its audit entry."""

    def decisions(self, device_id: int | None = None, limit: int = 50) -> Sequence[DecisionLogEntry]:
        """Newest first."""

    def close(self) -> None: ...
