"""The repository interfaces of the registry database, all in one place: services and adapters depend on these,
the ``Sql*`` classes next to this module implement them, and tests can substitute plain fakes.

Not declared here: the static ``*_in(conn, ...)`` functions (``SqlLifecycleStore.record_in``, ``deny_in``,
``move_binding_in``, ``set_state_in``, ``standing_for_update``, ``active_session_ids_in``; ``SqlJobQueue.enqueue_in``,
``lock``). They write inside a transaction the caller holds on the ``SqlDeviceStore`` database and are called on the
SQL classes themselves (``trustport.services.lifecycle``, ``trustport.services.enrollment``), never through a
repository instance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.engine import Connection

from policy.attestation import StoredAttestation
from policy.enforcement import Plan, SessionView
from policy.issuance import RevokedEntry
from policy.model import NetworkContext
from policy.store import DeviceStore
from trustport.store.attestation import Reevaluation
from trustport.store.issued import IssuedRecord
from trustport.store.lifecycle import LifecycleEvent
from trustport.store.queue import Job, JobChange, JobStats


class LifecycleRepository(Protocol):
    """The lifecycle audit log and the local deny list, so operator actions leave a record and revoked certificates
    stay refused."""

    def record(self, event: LifecycleEvent) -> None:
        """Append one audit entry in its own transaction."""

    def events(self, device_id: int, limit: int = 50) -> Sequence[LifecycleEvent]:
        """Newest first."""

    def deny(self, issuer: str, cert_serial: str, *, device_id: int | None, time: datetime, actor: str,
             reason: str | None) -> bool:
        """Add a certificate to the deny list; False if it was already there."""

    def denied_index(self) -> dict[tuple[str, str], str]:
        """Every denied (issuer, serial) -> why, for the hook to keep in memory."""


class JobQueue(Protocol):
    """The durable enforcement queue, so switch work survives a crash and never runs twice at once per switch."""

    def enqueue(self, plan: Plan, *, lock_key: str, reason: str, now: datetime, device_id: int | None = None,
                session_id: int | None = None, max_attempts: int = 8) -> tuple[Job, bool]:
        """Queue a job, or return the identical one still waiting (idempotent): (job, created). A new job
        supersedes the session's older queued or failed ones (cancelled)."""

    def claim_batch(self, worker: str, now: datetime, lease: timedelta, limit: int,
                    prefer: str | None = None) -> list[Job]:
        """Lease up to ``limit`` runnable jobs of one free switch to ``worker``, oldest first; empty if none."""

    def apply(self, changes: Sequence[JobChange], now: datetime) -> list[Job | None]:
        """Write many jobs' changes in one transaction; None for a job that is no longer this worker's."""

    def renew(self, worker: str, job_ids: Sequence[int], now: datetime, lease: timedelta) -> int:
        """Extend the leases ``worker`` still holds (its heartbeat); how many it holds."""

    def reclaim(self, is_dead: Callable[[str], bool], now: datetime, by: str) -> list[int]:
        """Expire at once the leases of running jobs whose worker is gone; their ids."""

    def retry(self, job_id: int, now: datetime, actor: str) -> Job:
        """A failed or cancelled job back to the queue (audited); raises ``JobStateError`` otherwise."""

    def cancel(self, job_id: int, now: datetime, actor: str, force: bool = False) -> Job:
        """A queued or failed job (a running one with ``force``) -> cancelled (audited)."""

    def get(self, job_id: int) -> Job | None:
        """The job with this id, or None."""

    def get_many(self, job_ids: Sequence[int]) -> dict[int, Job]:
        """The jobs with these ids that exist, by id."""

    def sessions_with_open_jobs(self, session_ids: Sequence[int]) -> set[int]:
        """Those of these sessions with a job queued or running."""

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""

    def stats(self) -> JobStats:
        """Jobs per state and the total of failures (the metric)."""

    def finished_durations(self) -> Sequence[tuple[str, float]]:
        """(state, seconds from enqueue to its last change) of every job that ended (done or failed)."""

    def logs_of_coa_jobs(self) -> Sequence[str]:
        """The raw JSON log of every job whose plan has a CoA step."""

    def list(self, state: str | None = None, limit: int = 100,  # last: shadows ``list``
             device_id: int | None = None) -> Sequence[Job]:
        """Newest first, optionally of one state and/or one device."""


class SessionRepository(Protocol):
    """Where each device is connected now, so enforcement knows which ports to move."""

    def authenticated(self, device_id: int | None, context: NetworkContext, vlan: int | None, segment: str | None,
                      now: datetime, acct_session_id: str | None = None) -> SessionView | None:
        """An Access-Accept went out: open (or refresh) the session on this NAS and MAC."""

    def accounting(self, kind: str, context: NetworkContext, acct_session_id: str | None,
                   now: datetime) -> SessionView | None:
        """Apply one Accounting-Request; the session it touched, or None."""

    def active_for_device(self, device_id: int) -> Sequence[SessionView]:
        """The device's active sessions, in id order."""

    def all_active(self) -> Sequence[SessionView]:
        """Every active session."""

    def get(self, session_id: int) -> SessionView | None:
        """The session with this id, active or not, or None."""

    def add_manual(self, device_id: int, context: NetworkContext, vlan: int | None, now: datetime) -> SessionView:
        """Record by hand where a device is connected (NASes without accounting)."""

    def clear(self, device_id: int, now: datetime, session_id: int | None = None) -> int:
        """End the device's active sessions (or one of them); how many."""

    def record_read_back(self, vlans: Mapping[int, int], now: datetime) -> None:
        """Set sessions' VLANs to what a switch read back after a verified move (session id -> VLAN)."""


class AttestationRepository(Protocol):
    """Attestation results, nonces and re-evaluation requests, so a replayed or older result never becomes current."""

    def refuse_seen(self, token_sha256: str, jti: str | None) -> None:
        """Raise TokenRejected('replay') if this token, or one with the same ``jti``, was processed before."""

    def save_result(self, result: StoredAttestation, *, jti: str | None = None) -> StoredAttestation:
        """Store a result and mark its token seen; raises TokenRejected('replay') if it was."""

    def latest_accepted(self, device_id: int) -> StoredAttestation | None:
        """The device's current result: the accepted one the verifier issued last."""

    def results(self, device_id: int, limit: int = 20) -> Sequence[StoredAttestation]:
        """Newest received first."""

    def issue_nonce(self, device_id: int, now: datetime, ttl: timedelta = timedelta(hours=1)) -> str:
        """A fresh nonce for the verifier's ``eat_nonce``."""

    def nonces(self, device_id: int, now: datetime) -> frozenset[str]:
        """The device's nonces not yet expired."""

    def request_reevaluation(self, device_id: int, reason: str, now: datetime) -> None:
        """Record that a connected device's standing dropped, for the enforcement worker."""

    def mark_reevaluated(self, request_id: int, now: datetime) -> None:
        """Close a re-evaluation request."""

    def pending_reevaluations(self) -> Sequence[Reevaluation]:
        """Open re-evaluation requests, oldest first."""


class IssuedCertificateRepository(Protocol):
    """What the owner CA issued and revoked, so the CRL lists every revoked LDevID and a re-issue revokes the old one
    atomically."""

    def record_issued(self, record: IssuedRecord, *, replaces: str | None = None, reason: str | None = None,
                      also: Callable[[Connection], None] | None = None) -> None:
        """Store a new certificate; with ``replaces``, revoke (and deny-list) that one, and run ``also``, all in the
        same transaction."""

    def revoke(self, cert_serial: str, *, reason: str, now: datetime, actor: str) -> bool:
        """Mark revoked and deny-list it; False if it already was revoked."""

    def get(self, cert_serial: str) -> IssuedRecord | None:
        """The certificate with this serial, or None."""

    def revoked(self, issuer: str, now: datetime) -> Sequence[RevokedEntry]:
        """Revoked, not yet expired certificates of ``issuer`` (the CRL's entries)."""

    def list(self, device_serial: str | None = None, limit: int = 1000) -> Sequence[IssuedRecord]:  # shadows list
        """Newest first."""


if TYPE_CHECKING:  # mypy proves every implementation satisfies its interface; nothing here runs
    from trustport.store.attestation import SqlAttestationStore
    from trustport.store.issued import SqlIssuedStore
    from trustport.store.lifecycle import SqlLifecycleStore
    from trustport.store.queue import SqlJobQueue
    from trustport.store.sessions import SqlSessionStore
    from trustport.store.sql import SqlDeviceStore

    _devices: type[DeviceStore] = SqlDeviceStore
    _lifecycle: type[LifecycleRepository] = SqlLifecycleStore
    _queue: type[JobQueue] = SqlJobQueue
    _sessions: type[SessionRepository] = SqlSessionStore
    _attestation: type[AttestationRepository] = SqlAttestationStore
    _issued: type[IssuedCertificateRepository] = SqlIssuedStore


__all__ = ["AttestationRepository", "DeviceStore", "IssuedCertificateRepository", "JobQueue", "LifecycleRepository",
           "SessionRepository"]
