"""The device's attestation standing at authentication time, from its current result: the newest accepted one
by the verifier's issue time (``iat``), so a late-arriving older result can never become the current one.

Results arrive out of band (REST, CLI) and are verified there; here the stored token's signature is re-checked
(cached by token hash, so the auth path does no crypto twice), its freshness is re-checked against ``now``, and
the certificate the device presents must be the one the result was bound to.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from policy.attestation import (
    AttestationStanding,
    EarClaims,
    TokenRejected,
    check_fresh,
    parse_claims,
    verify_signature,
)
from policy.model import CertificateFacts, DeviceRecord
from trustport.settings.attestation import AttestationConfig
from trustport.store.protocols import AttestationRepository


class AttestationGate:
    CACHE_SIZE = 4096

    def __init__(self, settings: AttestationConfig, store: AttestationRepository) -> None:
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
