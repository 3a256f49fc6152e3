"""Attestation results, nonces and re-evaluation requests in the registry database (same engine, same schema).

A device's current result is its newest accepted one by the verifier's issue time (``iat``), never by when it
arrived, so a late or replayed old token can never become current. Every stored result is also recorded in
``attestation_seen`` (unique token hash, unique ``jti``) in the same transaction: two copies of one token racing
in cannot both be stored.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from policy.attestation import StoredAttestation, Tier, TokenRejected
from policy.errors import StoreError
from trustport.store.schema import attestation_nonces, attestation_results, attestation_seen, reevaluations
from trustport.store.sql import SqlDeviceStore


@dataclass(frozen=True)
class Reevaluation:
    id: int
    device_id: int
    created_at: datetime
    reason: str
    done_at: datetime | None


class SqlAttestationStore:
    def __init__(self, store: SqlDeviceStore) -> None:
        self.store = store

    def refuse_seen(self, token_sha256: str, jti: str | None) -> None:
        """Raises TokenRejected('replay') if this token, or another with the same ``jti``, was processed before."""
        with self.store.transaction("checking for a replayed attestation result") as conn:
            self._refuse_seen(conn, token_sha256, jti)

    @staticmethod
    def _refuse_seen(conn: sa.Connection, token_sha256: str, jti: str | None, *, stored_only: bool = False) -> None:
        row = None
        if not stored_only:
            seen = attestation_seen.c.token_sha256 == token_sha256
            if jti is not None:
                seen = sa.or_(seen, attestation_seen.c.jti == jti)
            row = conn.execute(sa.select(attestation_seen).where(seen).limit(1)).first()
        stored = conn.execute(sa.select(attestation_results.c.device_id, attestation_results.c.received_at)
                              .where(attestation_results.c.token_sha256 == token_sha256).limit(1)).first()
        if row is not None:
            same = "token id (jti)" if row.token_sha256 != token_sha256 else "token"
            device_id, when = row.device_id, row.seen_at
        elif stored is not None:  # stored before attestation_seen existed
            same, device_id, when = "token", stored.device_id, stored.received_at
        else:
            return
        owner = f"device #{device_id}" if device_id is not None else "a device since deleted"
        raise TokenRejected("replay", f"this {same} was already received at {when.isoformat()} for {owner}; "
                                      "a verifier result is used once — have the verifier appraise the device again")

    def save_result(self, result: StoredAttestation, *, jti: str | None = None) -> StoredAttestation:
        """Store a result and mark its token (and ``jti``) seen; raises TokenRejected('replay') if either was."""
        values = {
            "device_id": result.device_id, "received_at": result.received_at, "token": result.token,
            "token_sha256": result.token_sha256, "accepted": result.accepted,
            "status": int(result.status) if result.status is not None else None, "issued_at": result.issued_at,
            "expires_at": result.expires_at, "binding": result.binding, "bound_cert_serial": result.bound_cert_serial,
            "vector": json.dumps(result.vector, sort_keys=True), "reasons": json.dumps(list(result.reasons)),
        }
        with self.store.transaction("storing an attestation result") as conn:
            # The insert comes first: it takes the write lock (waiting for a concurrent writer) before anything is
            # read, and the unique keys decide which of two racing copies of a token wins.
            try:
                conn.execute(attestation_seen.insert().values(token_sha256=result.token_sha256, jti=jti,
                                                              device_id=result.device_id,
                                                              seen_at=result.received_at))
            except sa.exc.IntegrityError as exc:
                raise TokenRejected("replay", "this token (or another with its jti) was already received; a "
                                              "verifier result is used once — have the verifier appraise the "
                                              "device again") from exc
            self._refuse_seen(conn, result.token_sha256, None, stored_only=True)
            new_id = conn.execute(attestation_results.insert().values(**values)
                                  .returning(attestation_results.c.id)).scalar_one()
        return StoredAttestation(**{**result.__dict__, "id": new_id})

    def latest_accepted(self, device_id: int) -> StoredAttestation | None:
        """The device's current result: the accepted one the verifier issued last (ties: the one stored first)."""
        query = (sa.select(attestation_results)
                 .where(attestation_results.c.device_id == device_id, attestation_results.c.accepted.is_(True),
                        attestation_results.c.issued_at.is_not(None))
                 .order_by(attestation_results.c.issued_at.desc(), attestation_results.c.id.asc()).limit(1))
        with self.store.transaction("reading the latest attestation result") as conn:
            row = conn.execute(query).first()
        return None if row is None else self._result(row)

    def results(self, device_id: int, limit: int = 20) -> Sequence[StoredAttestation]:
        query = (sa.select(attestation_results).where(attestation_results.c.device_id == device_id)
                 .order_by(attestation_results.c.received_at.desc(), attestation_results.c.id.desc()).limit(limit))
        with self.store.transaction("reading attestation results") as conn:
            return [self._result(row) for row in conn.execute(query)]

    def _result(self, row: Row[Any]) -> StoredAttestation:
        m = row._mapping
        try:
            vector = json.loads(m["vector"])
            reasons = tuple(str(r) for r in json.loads(m["reasons"]))
            status = Tier(m["status"]) if m["status"] is not None else None
        except (ValueError, TypeError) as exc:
            raise StoreError(f"attestation result row {m['id']} is malformed ({exc}); delete it") from exc
        return StoredAttestation(
            device_id=m["device_id"], received_at=m["received_at"], token=m["token"],
            token_sha256=m["token_sha256"], accepted=bool(m["accepted"]), status=status, issued_at=m["issued_at"],
            expires_at=m["expires_at"], binding=m["binding"], bound_cert_serial=m["bound_cert_serial"],
            vector=vector, reasons=reasons, id=m["id"],
        )

    def issue_nonce(self, device_id: int, now: datetime, ttl: timedelta = timedelta(hours=1)) -> str:
        """A fresh nonce for the verifier to put in ``eat_nonce`` when it appraises this device."""
        nonce = secrets.token_urlsafe(24)
        with self.store.transaction("issuing an attestation nonce") as conn:
            conn.execute(attestation_nonces.delete().where(attestation_nonces.c.expires_at < now))
            conn.execute(attestation_nonces.insert().values(nonce=nonce, device_id=device_id, issued_at=now,
                                                            expires_at=now + ttl))
        return nonce

    def nonces(self, device_id: int, now: datetime) -> frozenset[str]:
        query = sa.select(attestation_nonces.c.nonce).where(attestation_nonces.c.device_id == device_id,
                                                            attestation_nonces.c.expires_at >= now)
        with self.store.transaction("reading attestation nonces") as conn:
            return frozenset(str(n) for n in conn.execute(query).scalars())

    def request_reevaluation(self, device_id: int, reason: str, now: datetime) -> None:
        """Record that a connected device's standing dropped, for the enforcement worker to act on."""
        with self.store.transaction("recording a re-evaluation request") as conn:
            conn.execute(reevaluations.insert().values(device_id=device_id, created_at=now, reason=reason))

    def mark_reevaluated(self, request_id: int, now: datetime) -> None:
        with self.store.transaction("closing a re-evaluation request") as conn:
            conn.execute(reevaluations.update().where(reevaluations.c.id == request_id).values(done_at=now))

    def pending_reevaluations(self) -> Sequence[Reevaluation]:
        query = sa.select(reevaluations).where(reevaluations.c.done_at.is_(None)).order_by(reevaluations.c.id)
        with self.store.transaction("reading re-evaluation requests") as conn:
            return [Reevaluation(r.id, r.device_id, r.created_at, r.reason, r.done_at) for r in conn.execute(query)]


__all__ = ["Reevaluation", "SqlAttestationStore", "Tier"]
