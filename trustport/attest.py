"""Receiving attestation results (REST API and ``trustport attest import``): verify, bind, store, and record a
re-evaluation when a connected device's standing drops."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from policy.attestation import (
    DeviceBinding,
    EarClaims,
    StoredAttestation,
    Tier,
    TokenRejected,
    VerifierKey,
    check_binding,
    check_fresh,
    parse_claims,
    token_hash,
    verify_signature,
)
from policy.attestation_sql import SqlAttestationStore
from policy.errors import AttestationError, CertificateError, DeviceNotFound
from policy.model import DeviceKey, DeviceRecord
from policy.store_sql import SqlDeviceStore
from policy.x509facts import facts_from_certificate, load_pem_certificates
from radius_hooks.attestation_gate import AttestationSettings
from radius_hooks.trust import TrustMaterial
from trustport.chain import verify_chain
from trustport.devices import resolve_device


class AttestationDisabled(AttestationError):
    pass


@dataclass(frozen=True)
class ImportOutcome:
    device: DeviceRecord
    stored: StoredAttestation
    claims: EarClaims
    reevaluation: str | None  # why a re-evaluation was requested, if one was

    @property
    def accepted(self) -> bool:
        return self.stored.accepted


class AttestationService:
    def __init__(self, settings: AttestationSettings | None, store: SqlDeviceStore, trust: TrustMaterial) -> None:
        if settings is None:
            raise AttestationDisabled("attestation is not configured: add an 'attestation:' section with the "
                                      "verifier's public key(s) to the config")
        self.settings = settings
        self.keys: tuple[VerifierKey, ...] = settings.load_keys()
        self.store = store
        self.results = SqlAttestationStore(store)
        self.trust = trust

    def verify(self, token: str, now: datetime) -> EarClaims:
        raw, key = verify_signature(token, self.keys)
        claims = parse_claims(raw, token_hash(token.strip()), key.name)
        check_fresh(claims, now, self.settings.max_age, self.settings.leeway)
        return claims

    def _device_from_certificate(self, pem: bytes, now: datetime) -> tuple[DeviceRecord, x509.Certificate]:
        cert = load_pem_certificates(pem, "attestation certificate")[0]
        chain = verify_chain(cert, [], self.trust.ca_certs.values(), now)
        if not chain.ok:
            raise CertificateError(f"the certificate sent with the result {chain.detail}")
        facts = facts_from_certificate(cert)
        if not facts.device_serial:
            raise CertificateError("the certificate sent with the result has no subject serialNumber")
        device = self.store.find_device(DeviceKey(facts.issuer, facts.device_serial))
        if device is None:
            raise DeviceNotFound(f"device {facts.device_serial} ({facts.issuer}) is not registered")
        return device, cert

    def _device_from_claims(self, claims: EarClaims) -> DeviceRecord:
        for akpub in claims.akpubs:
            device = self.store.find_by_spki(hashlib.sha256(akpub).hexdigest())
            if device is not None:
                return device
        raise DeviceNotFound("no registered device has the attested key; name the device (device id or serial) "
                             "or send its certificate with the result")

    def resolve(self, ref: str) -> DeviceRecord:
        return resolve_device(self.store, ref)

    def import_token(self, token: str, now: datetime, *, device_ref: str | None = None,
                     certificate_pem: bytes | None = None) -> ImportOutcome:
        """Verify and store. Raises TokenRejected for tokens that do not verify (nothing stored); a genuine
        token that does not belong to the device is stored as refused, with its reason."""
        claims = self.verify(token, now)
        cert = None
        if certificate_pem is not None:
            device, cert = self._device_from_certificate(certificate_pem, now)
            if device_ref is not None and self.resolve(device_ref).id != device.id:
                raise AttestationError("the device named and the certificate sent are different devices")
        elif device_ref is not None:
            device = self.resolve(device_ref)
        else:
            device = self._device_from_claims(claims)
        facts = facts_from_certificate(cert) if cert is not None else None
        binding_info = DeviceBinding(
            spki_sha256=facts.spki_sha256 if facts else device.spki_sha256,
            cert_sha256=facts.fingerprint_sha256 if facts else device.fingerprint_sha256,
            issued_nonces=self.results.nonces(device.id, now),
        )
        previous = self.results.latest_accepted(device.id)
        try:
            binding: str | None = check_binding(claims, binding_info)
            accepted, reasons = True, (f"{claims.status.name.lower()}, bound by {binding}",)
        except TokenRejected as exc:
            binding, accepted, reasons = None, False, (f"refused: {exc}",)
        expiry = claims.issued_at + self.settings.max_age
        if claims.expires_at is not None:
            expiry = min(expiry, claims.expires_at)
        stored = self.results.save_result(StoredAttestation(
            device_id=device.id, received_at=now, token=token.strip(), token_sha256=claims.token_sha256,
            accepted=accepted, status=claims.status if accepted else None, issued_at=claims.issued_at,
            expires_at=expiry, binding=binding,
            bound_cert_serial=(facts.cert_serial if facts else device.cert_serial) if binding != "nonce" else None,
            vector=claims.vector(), reasons=reasons,
        ))
        reevaluation = None
        if accepted and device.last_seen is not None and _dropped(previous, claims.status):
            before = previous.status.name.lower() if previous and previous.status is not None else "none"
            reevaluation = f"attestation dropped from {before} to {claims.status.name.lower()}"
            self.results.request_reevaluation(device.id, reevaluation, now)
        return ImportOutcome(device, stored, claims, reevaluation)


def _dropped(previous: StoredAttestation | None, status: Tier) -> bool:
    """A drop worth acting on: worse than the last accepted result (or warning/worse with none before)."""
    if previous is None or previous.status is None:
        return status >= Tier.WARNING
    return status > previous.status
