"""What the operator's console shows (the REST API and the dashboard read the same): the overview, device lists
with where each device is connected now, one device's whole story, the pending-approval queue, the live
authentications. Writes are not here: they go through the lifecycle service, the job queue and the session
repository, exactly as the CLI's do."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from policy.model import DeviceRecord, LifecycleState, VerifiedCertificate
from trustport.services.devices import resolve_device
from trustport.services.trust import crl_files
from trustport.settings.config import TrustportConfig
from trustport.settings.hook import AnchorFile
from trustport.store.attestation import SqlAttestationStore
from trustport.store.console import AuditItem, Connected, DeviceRow, LoggedDecision, SqlConsoleReads
from trustport.store.directory import DirectoryStatus, SqlDirectoryStore
from trustport.store.lifecycle import LifecycleEvent, SqlLifecycleStore
from trustport.store.queue import Job, JobNotFound, JobStats, SqlJobQueue
from trustport.store.sql import SqlDeviceStore


@dataclass(frozen=True)
class CrlAge:
    file: str
    issuer: str | None
    this_update: datetime | None
    next_update: datetime | None
    problem: str | None = None

    def age_seconds(self, now: datetime) -> float | None:
        return (now - self.this_update).total_seconds() if self.this_update else None


@dataclass(frozen=True)
class Overview:
    devices: dict[str, int]  # by state
    decisions: dict[str, int]  # by outcome, last 24 h
    active_sessions: int
    jobs: JobStats
    failed_jobs: list[Job]
    crls: list[CrlAge]
    directory: DirectoryStatus | None
    directory_name: str | None


@dataclass(frozen=True)
class DeviceDetail:
    device: DeviceRecord
    certificate: VerifiedCertificate | None
    connected: list[Connected]
    sessions: list[dict[str, Any]]
    decisions: list[LoggedDecision]
    lifecycle: list[LifecycleEvent]
    jobs: list[Job]
    attestation: list[dict[str, Any]] = field(default_factory=list)


def crl_ages(crl_dir: Path | None, anchors: tuple[AnchorFile, ...]) -> list[CrlAge]:
    """Every CRL file in the revocation directory as the hook takes it (signature checked against its anchor), with
    its issuer and update times; a file the hook refuses is listed with why, not skipped."""
    if crl_dir is None:
        return []
    return [CrlAge(f.path.name, f.crl.issuer, f.crl.this_update, f.crl.next_update) if f.crl is not None
            else CrlAge(f.path.name, None, None, None, f.problem) for f in crl_files(crl_dir, anchors)]


class ConsoleService:
    def __init__(self, config: TrustportConfig, store: SqlDeviceStore) -> None:
        self.config = config
        self.store = store
        self.reads = SqlConsoleReads(store)
        self.queue = SqlJobQueue(store)

    def overview(self, now: datetime) -> Overview:
        counts = self.reads.counts(now - timedelta(hours=24))
        crl_dir = self.config.path(self.config.revocation.crl_dir) if self.config.revocation.crl_dir else None
        name = self.config.directory.name if self.config.directory is not None else None
        return Overview(counts["devices"], counts["decisions"], counts["sessions"]["active"], self.queue.stats(),
                        list(self.queue.list("failed", limit=20)),
                        crl_ages(crl_dir, tuple(dataclasses.replace(a, file=self.config.path(a.file))
                                                for a in self.config.trust_anchors)),
                        SqlDirectoryStore(self.store, name).status() if name else None, name)

    def devices(self, *, state: LifecycleState | None = None, segment: str | None = None, text: str | None = None,
                connected: bool | None = None, limit: int = 100, offset: int = 0) -> tuple[list[DeviceRow], int]:
        return self.reads.devices(state=state, segment=segment, text=text, connected=connected, limit=limit,
                                  offset=offset)

    def pending(self, limit: int = 200) -> list[tuple[DeviceRow, LoggedDecision | None]]:
        """The pending-approval queue: each pending device with its last decision (why it is waiting)."""
        rows, _ = self.reads.devices(state=LifecycleState.PENDING, limit=limit)
        return [(row, next(iter(self.reads.decisions(device_id=row.device.id, limit=1)), None)) for row in rows]

    def device(self, ref: str) -> DeviceDetail:
        """One device (by id or serial) with everything the console shows about it; DeviceNotFound names it."""
        record = resolve_device(self.store, ref)
        jobs = list(self.queue.list(limit=50, device_id=record.id))
        results = SqlAttestationStore(self.store).results(record.id, limit=10)
        attestation = [{"received_at": r.received_at, "accepted": r.accepted,
                        "tier": r.status.name.lower() if r.status is not None else None,
                        "expires_at": r.expires_at, "reasons": list(r.reasons)} for r in results]
        return DeviceDetail(record, self.store.last_certificate(record.id), self.reads.connected(record.id),
                            self.reads.recent_sessions(record.id), self.reads.decisions(device_id=record.id),
                            list(SqlLifecycleStore(self.store).events(record.id)), jobs, attestation)

    def decisions(self, *, outcome: str | None = None, text: str | None = None, after_id: int | None = None,
                  limit: int = 50) -> list[LoggedDecision]:
        return self.reads.decisions(outcome=outcome, text=text, after_id=after_id, limit=limit)

    def audit(self, *, limit: int = 100, device_id: int | None = None, actor: str | None = None) -> list[AuditItem]:
        return self.reads.audit(limit=limit, device_id=device_id, actor=actor)

    def job(self, job_id: int) -> Job:
        job = self.queue.get(job_id)
        if job is None:
            raise JobNotFound(f"no enforcement job {job_id}; 'trustport jobs list' shows them")
        return job
