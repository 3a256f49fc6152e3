"""Receiving attestation results (REST API and ``trustport attest import``): verify, bind, store, and record a
re-evaluation when a connected device's standing drops.

Both adapters call ``import_token``, so both refuse the same tokens: a replay (the same compact token, or the same
``jti``, seen before for any device), a result issued before the device's current one (``stale``) or at the same
instant but different (``rollback``). The device's current result is the newest by the verifier's ``iat``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from policy.attestation import (
    DeviceBinding,
    EarClaims,
    StoredAttestation,
    Tier,
    TokenRejected,
    VerifierKey,
    check_binding,
    check_fresh,
    check_newer,
    parse_claims,
    token_hash,
    verify_signature,
)
from policy.certificates import check_binding as check_certificate_binding
from policy.errors import AttestationError, CertificateError, DeviceNotFound
from policy.model import CertificateFacts, DeviceKey, DeviceRecord
from policy.x509facts import load_pem_certificates
from trustport.services.chain import pem_facts
from trustport.services.devices import resolve_device
from trustport.services.trust import TrustMaterial
from trustport.settings.attestation import AttestationConfig
from trustport.store.attestation import SqlAttestationStore
from trustport.store.protocols import AttestationRepository
from trustport.store.sql import SqlDeviceStore

MAX_DEVICE_ID = 2**63 - 1  # BIGINT / SQLite INTEGER
MAX_DEVICE_REF = 128


class AttestationDisabled(AttestationError):
    pass


class InvalidDeviceRef(DeviceNotFound):
    """A device reference that cannot name a device (an id out of range, non-ASCII digits, control characters)."""


def check_device_ref(ref: str) -> str:
    """``ref`` if it can be given to ``resolve_device``; raises InvalidDeviceRef otherwise.

    Anything made of digits (any script's, as ``str.isdigit`` sees them: ``"²"``, ``"١٢"``), with or without a
    sign, is read as a registry id and must be ASCII 0-9 in 1..2**63-1. Anything else is a serial number: 1 to 128
    printable characters.
    """
    unsigned = ref[1:] if ref[:1] in ("+", "-") else ref
    if unsigned and unsigned.isdigit():
        if not (unsigned == ref and ref.isascii() and len(ref) <= 19 and 1 <= int(ref) <= MAX_DEVICE_ID):
            raise InvalidDeviceRef(f"device id {ref[:40]!r} is not a registry id: ids are ASCII decimal integers "
                                   f"1..{MAX_DEVICE_ID}; see 'trustport devices list'")
        return ref
    if not 0 < len(ref) <= MAX_DEVICE_REF or not ref.isprintable() or ref != ref.strip():
        raise InvalidDeviceRef(f"device {ref[:40]!r} is neither a registry id nor a serial number (1..."
                               f"{MAX_DEVICE_REF} printable characters, no surrounding spaces)")
    return ref


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
    def __init__(self, settings: AttestationConfig | None, store: SqlDeviceStore, trust: TrustMaterial) -> None:
        if settings is None:
            raise AttestationDisabled("attestation is not configured: add an 'attestation:' section with the "
                                      "verifier's public key(s) to the config")
        self.settings = settings
        self.keys: tuple[VerifierKey, ...] = settings.load_keys()
        self.store = store
        self.results: AttestationRepository = SqlAttestationStore(store)
        self.trust = trust

    def verify(self, token: str, now: datetime) -> EarClaims:
        raw, key = verify_signature(token, self.keys)
        claims = parse_claims(raw, token_hash(token.strip()), key.name)
        check_fresh(claims, now, self.settings.max_age, self.settings.leeway)
        return claims

    def _device_from_certificate(self, pem: bytes, now: datetime) -> tuple[DeviceRecord, CertificateFacts]:
        cert = load_pem_certificates(pem, "attestation certificate")[0]
        facts, chain = pem_facts(cert, [], self.trust, now)
        if not chain.ok:
            raise CertificateError(f"the certificate sent with the result {chain.detail}")
        if not facts.device_serial:
            raise CertificateError("the certificate sent with the result has no subject serialNumber")
        device = self.store.find_device(DeviceKey(facts.issuer, facts.device_serial))
        if device is None:
            raise DeviceNotFound(f"device {facts.device_serial} ({facts.issuer}) is not registered")
        bound = check_certificate_binding(facts, device, self.trust.anchors)
        if bound.ok is not True:
            # a result can only be bound through the certificate the device is registered with
            raise CertificateError(f"the certificate sent with the result is not device {device.id}'s registered "
                                   f"certificate ({bound.detail})")
        return device, facts

    def _device_from_claims(self, claims: EarClaims) -> DeviceRecord:
        for akpub in claims.akpubs:
            device = self.store.find_by_spki(hashlib.sha256(akpub).hexdigest())
            if device is not None:
                return device
        raise DeviceNotFound("no registered device has the attested key; name the device (device id or serial) "
                             "or send its certificate with the result")

    def resolve(self, ref: str) -> DeviceRecord:
        return resolve_device(self.store, check_device_ref(ref))

    def import_token(self, token: str, now: datetime, *, device_ref: str | None = None,
                     certificate_pem: bytes | None = None) -> ImportOutcome:
        """Verify and store. Raises TokenRejected for tokens that do not verify, replays and results older than
        the device's current one (nothing stored); a genuine token that does not belong to the device is stored
        as refused, with its reason."""
        claims = self.verify(token, now)
        self.results.refuse_seen(claims.token_sha256, claims.jti)
        facts = None
        if certificate_pem is not None:
            device, facts = self._device_from_certificate(certificate_pem, now)
            if device_ref is not None and self.resolve(device_ref).id != device.id:
                raise AttestationError("the device named and the certificate sent are different devices")
        elif device_ref is not None:
            device = self.resolve(device_ref)
        else:
            device = self._device_from_claims(claims)
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
        if accepted:
            check_newer(claims, previous)  # a result the device cannot use changes nothing, so only these
        expiry = claims.issued_at + self.settings.max_age
        if claims.expires_at is not None:
            expiry = min(expiry, claims.expires_at)
        stored = self.results.save_result(StoredAttestation(
            device_id=device.id, received_at=now, token=token.strip(), token_sha256=claims.token_sha256,
            accepted=accepted, status=claims.status if accepted else None, issued_at=claims.issued_at,
            expires_at=expiry, binding=binding,
            bound_cert_serial=(facts.cert_serial if facts else device.cert_serial) if binding != "nonce" else None,
            vector=claims.vector(), reasons=reasons,
        ), jti=claims.jti)
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
