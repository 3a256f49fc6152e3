"""The device's attestation standing at authentication time, from its current result: the newest accepted one
by the verifier's issue time (``iat``), so a late-arriving older result can never become the current one.

Results arrive out of band (REST, CLI) and are verified there; here the stored token's signature is re-checked
(cached by token hash, so the auth path does no crypto twice), its freshness is re-checked against ``now``, and
the certificate the device presents must be the one the result was bound to.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from policy.attestation import (
    AttestationStanding,
    EarClaims,
    TokenRejected,
    VerifierKey,
    check_fresh,
    load_verifier_key,
    parse_claims,
    verify_signature,
)
from policy.errors import AttestationError
from policy.model import CertificateFacts, DeviceRecord
from trustport.store.attestation import SqlAttestationStore


@dataclass(frozen=True)
class AttestationSettings:
    verifier_keys: tuple[tuple[str, Path], ...]
    max_age: timedelta
    leeway: timedelta = timedelta(seconds=30)

    def load_keys(self) -> tuple[VerifierKey, ...]:
        keys = []
        for name, path in self.verifier_keys:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise AttestationError(f"verifier key {name!r}: cannot read {path}: {exc.strerror}") from exc
            keys.append(load_verifier_key(name, data))
        return tuple(keys)


class AttestationGate:
    CACHE_SIZE = 4096

    def __init__(self, settings: AttestationSettings, store: SqlAttestationStore) -> None:
        self.settings = settings
        self.keys = settings.load_keys()
        self.store = store
        self._verified: OrderedDict[str, EarClaims | TokenRejected] = OrderedDict()
        self.cache_hits = 0

    def claims(self, token: str, digest: str) -> EarClaims:
        """Signature + claims of a stored token, verified once per token hash."""
        cached = self._verified.get(digest)
        if cached is not None:
            self.cache_hits += 1
            self._verified.move_to_end(digest)
        else:
            try:
                raw, key = verify_signature(token, self.keys)
                cached = parse_claims(raw, digest, key.name)
            except TokenRejected as exc:
                cached = exc
            self._verified[digest] = cached
            if len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)
        if isinstance(cached, TokenRejected):
            raise cached
        return cached

    def standing(self, device: DeviceRecord, facts: CertificateFacts, now: datetime) -> AttestationStanding:
        stored = self.store.latest_accepted(device.id)
        if stored is None:
            return AttestationStanding(None, "no attestation result received for this device")
        try:
            claims = self.claims(stored.token, stored.token_sha256)
            check_fresh(claims, now, self.settings.max_age, self.settings.leeway)
        except TokenRejected as exc:
            return AttestationStanding(None, f"latest result no longer acceptable: {exc}")
        if stored.binding != "nonce" and stored.bound_cert_serial and stored.bound_cert_serial != facts.cert_serial:
            return AttestationStanding(None, f"latest result is bound to certificate serial {stored.bound_cert_serial},"
                                             f" the device presented {facts.cert_serial}")
        return AttestationStanding(claims.status, f"bound by {stored.binding}, issued {claims.issued_at.isoformat()}"
                                                  f" by key {claims.key_name}", claims.vector())
