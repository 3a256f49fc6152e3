"""The repository interfaces of the registry database, all in one place: services and adapters depend on these,
the ``Sql*`` classes next to this module implement them, and tests can substitute plain fakes.

Not declared here: the static ``*_in(conn, ...)`` functions (``SqlLifecycleStore.record_in``, ``deny_in``,
``set_state_in``, ``standing_for_update``, ``active_session_ids_in``; ``SqlJobQueue.enqueue_in``, ``lock``). They
write inside a transaction the caller holds on the ``SqlDeviceStore`` database and are called on the SQL classes
themselves (``trustport.services.lifecycle``), never through a repository instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from policy.attestation import StoredAttestation
from policy.enforcement import Plan, SessionView
from policy.model import NetworkContext
from policy.store import DeviceStore
from trustport.store.attestation import Reevaluation
from trustport.store.lifecycle import LifecycleEvent
from trustport.store.queue import Job


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
        """Queue a job, or return the identical one still waiting (idempotent): (job, created)."""

    def claim(self, worker: str, now: datetime, lease: timedelta, prefer: str | None = None) -> Job | None:
        """Lease the oldest runnable job whose switch is free to ``worker``; None if there is none."""

    def step_done(self, job: Job, now: datetime, lease: timedelta, message: str) -> Job:
        """Record the resume point and renew the lease."""

    def use_fallback(self, job: Job, now: datetime, message: str) -> Job:
        """Switch to the fallback steps after a permanent failure of the primary path."""

    def finish(self, job: Job, now: datetime, message: str) -> Job:
        """Mark the job done."""

    def retry_or_fail(self, job: Job, now: datetime, message: str, retry_at: datetime | None) -> Job:
        """Back to the queue at ``retry_at``, or failed for good when attempts are used up."""

    def get(self, job_id: int) -> Job | None:
        """The job with this id, or None."""

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""

    def list(self, state: str | None = None, limit: int = 100) -> Sequence[Job]:  # last: shadows ``list``
        """Newest first, optionally of one state."""


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


if TYPE_CHECKING:  # mypy proves every implementation satisfies its interface; nothing here runs
    from trustport.store.attestation import SqlAttestationStore
    from trustport.store.lifecycle import SqlLifecycleStore
    from trustport.store.queue import SqlJobQueue
    from trustport.store.sessions import SqlSessionStore
    from trustport.store.sql import SqlDeviceStore

    _devices: type[DeviceStore] = SqlDeviceStore
    _lifecycle: type[LifecycleRepository] = SqlLifecycleStore
    _queue: type[JobQueue] = SqlJobQueue
    _sessions: type[SessionRepository] = SqlSessionStore
    _attestation: type[AttestationRepository] = SqlAttestationStore


__all__ = ["AttestationRepository", "DeviceStore", "JobQueue", "LifecycleRepository", "SessionRepository"]
