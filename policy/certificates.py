"""Certificate validation beyond what OpenSSL already did during the TLS handshake.

Pure: facts, trust anchors, revocation data and ``now`` in; a ``CertificateVerdict`` with one ``Check`` per
rule out. The same function serves the RADIUS hook (facts from attributes) and ``trustport decide`` (PEM).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from policy.model import CertificateFacts, CertificateVerdict, CertKind, Check, DeviceRecord, KeyInfo

CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2"
ANY_EKU_OID = "2.5.29.37.0"
# 802.1AR: "no well-defined expiration" (GeneralizedTime 99991231235959Z).
NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# The curves OpenSSL's TLS server accepts from a client by default (its supported groups): anything else fails
# the handshake with "wrong curve", so the PEM path refuses it too.
STRONG_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
WEAK_HASHES = frozenset({"sha1", "md5", "md2", "md4"})
MIN_RSA_BITS = 2048
DELEGATED = ("not exported by FreeRADIUS; enforced in the TLS handshake by OpenSSL (@SECLEVEL=2, sigalgs_list "
             "without DSA/SHA-1, client curves P-256/P-384/P-521 only)")


@dataclass(frozen=True)
class TrustAnchor:
    """A configured CA certificate (the anchor itself, or an issuing CA under it) and the role of the device
    certificates it issues. Identified by subject, issuer and serial: what FreeRADIUS reports for depth 1."""

    name: str  # the configured trust anchor it belongs to
    role: CertKind
    subject: str  # canonical DN text (policy.dn)
    issuer: str
    serial: str  # lower-case hex
    not_after: datetime | None = None
    root: bool = True
    max_lifetime: timedelta | None = None  # longest validity accepted for the certificates it issues

    @property
    def ref(self) -> tuple[str, str, str]:
        return (self.subject, self.issuer, self.serial)


AnchorIndex = Mapping[tuple[str, str, str], TrustAnchor]  # (subject, issuer, serial) -> configured CA


@dataclass(frozen=True)
class CrlInfo:
    """Revoked serials of one issuer, from a CRL loaded out of band."""

    issuer: str
    revoked: frozenset[str]  # certificate serials, lower-case hex
    this_update: datetime
    next_update: datetime | None
    source: str


@dataclass(frozen=True)
class RevocationPolicy:
    """Which certificate kinds must have a current CRL (fail closed without one)."""

    require_crl_for: frozenset[CertKind] = frozenset({CertKind.LDEVID})
    accept_stale_crl: bool = False


def find_anchor(facts: CertificateFacts, anchors: AnchorIndex) -> tuple[TrustAnchor | None, Check]:
    """The configured CA certificate that signed this one, in the chain that was verified.

    Never from the leaf's own issuer DN or authority key identifier: the signer writes those, and a CA under one
    anchor can copy another CA's name and key id. The certificate at depth 1 (FreeRADIUS ``TLS-Cert-*``; on the
    PEM path the verified chain's second element) must itself be a configured CA certificate: same subject,
    issuer and serial. With at most one intermediate allowed (``verify_depth = 1``), a certificate reported with
    a configured CA's issuer was signed by that CA's own issuer, so the match cannot be forged below an anchor.
    """
    ref = facts.issuer_certificate
    if ref is None:
        return None, Check("trust-anchor", False,
                           "the issuing CA certificate is unknown (no verified chain, or FreeRADIUS reported no "
                           "TLS-Cert-* attributes): cannot tell which anchor verified the certificate")
    if ref.subject != facts.issuer:
        return None, Check("trust-anchor", False,
                           f"certificate issuer {facts.issuer!r} is not the subject of the certificate that "
                           f"signed it ({ref.subject!r})")
    anchor = anchors.get((ref.subject, ref.issuer, ref.serial))
    if anchor is None:
        look_alike = any(a.subject == ref.subject for a in anchors.values())
        return None, Check("trust-anchor", False,
                           f"issued by {ref.subject!r} (serial {ref.serial[:40]}, issued by {ref.issuer!r}), which "
                           "is not a configured CA certificate"
                           + ("; it copies the name of a configured CA (a look-alike)" if look_alike else ""))
    if ref.not_after is not None and anchor.not_after is not None and ref.not_after != anchor.not_after:
        return None, Check("trust-anchor", False,
                           f"issuing CA {ref.subject!r} has the configured serial but another validity period "
                           "(a look-alike)")
    where = "anchor" if anchor.root else "issuing CA under anchor"
    return anchor, Check("trust-anchor", True, f"issued by {where} {anchor.name} ({anchor.role.value} CA)")


def check_validity(facts: CertificateFacts, now: datetime, anchor: TrustAnchor | None = None) -> Check:
    if facts.not_after is None or facts.not_before is None:
        return Check("validity", False, "validity dates missing or unparseable")
    if now < facts.not_before:
        return Check("validity", False, f"not valid before {facts.not_before.isoformat()}")
    if facts.not_after >= NO_EXPIRY:
        if anchor is not None and anchor.role is not CertKind.IDEVID:
            return Check("validity", False,
                         f"{anchor.role.value} certificate never expires (99991231235959Z is for IDevIDs only)")
        return Check("validity", True, "no well-defined expiration (802.1AR 99991231235959Z)")
    if now > facts.not_after:
        return Check("validity", False, f"expired at {facts.not_after.isoformat()}")
    if anchor is not None and anchor.max_lifetime is not None \
            and facts.not_after - facts.not_before > anchor.max_lifetime:
        days = (facts.not_after - facts.not_before).days
        return Check("validity", False,
                     f"valid for {days} days, more than the {anchor.max_lifetime.days} days allowed for "
                     f"{anchor.role.value} certificates of {anchor.name}")
    return Check("validity", True, f"valid until {facts.not_after.isoformat()}")


def check_profile(facts: CertificateFacts) -> list[Check]:
    checks = []
    if facts.device_serial:
        checks.append(Check("802.1ar-serial", True, f"subject serialNumber {facts.device_serial}"))
    else:
        checks.append(Check("802.1ar-serial", False, "subject has no serialNumber (2.5.4.5) attribute"))
    if facts.is_ca:
        checks.append(Check("leaf-not-ca", False, "certificate is a CA (basicConstraints CA:TRUE)"))
    else:
        checks.append(Check("leaf-not-ca", True, "basicConstraints CA:FALSE or absent"))
    if facts.key_usage is None:
        checks.append(Check("key-usage", None, "no keyUsage extension (802.1AR expects digitalSignature)"))
    elif "Digital Signature" in facts.key_usage:
        checks.append(Check("key-usage", True, "digitalSignature"))
    else:
        checks.append(Check("key-usage", False, f"keyUsage lacks digitalSignature: {', '.join(facts.key_usage)}"))
    if facts.eku_oids is None:
        checks.append(Check("extended-key-usage", None, "no extendedKeyUsage extension"))
    elif CLIENT_AUTH_OID in facts.eku_oids or ANY_EKU_OID in facts.eku_oids:
        checks.append(Check("extended-key-usage", True, "clientAuth"))
    else:
        checks.append(Check("extended-key-usage", False,
                            f"extendedKeyUsage present without clientAuth: {', '.join(facts.eku_oids)}"))
    return checks


def check_key_strength(facts: CertificateFacts) -> Check:
    return check_public_key(facts.public_key)


def check_public_key(key: KeyInfo | None) -> Check:
    """The key policy of device certificates: what authentication accepts, and what the owner CA issues for."""
    if key is None:
        return Check("key-strength", None, DELEGATED)
    if key.algorithm == "rsa":
        ok = key.bits >= MIN_RSA_BITS
        return Check("key-strength", ok, f"RSA {key.bits} bits" + ("" if ok else f" (< {MIN_RSA_BITS})"))
    if key.algorithm == "ec":
        ok = key.curve in STRONG_CURVES
        return Check("key-strength", ok, f"EC {key.curve}" + ("" if ok else " (need P-256 or stronger)"))
    if key.algorithm in ("ed25519", "ed448"):
        return Check("key-strength", True, key.algorithm)
    return Check("key-strength", False, f"{key.algorithm} keys are not accepted")


def check_signature(facts: CertificateFacts) -> Check:
    if facts.signature_hash is None:
        if facts.source == "pem":  # Ed25519/Ed448 carry no separate hash
            return Check("signature", True, "EdDSA signature")
        return Check("signature", None, DELEGATED)
    if facts.signature_hash.lower() in WEAK_HASHES:
        return Check("signature", False, f"signed with {facts.signature_hash.upper()}, which is broken")
    return Check("signature", True, f"signed with {facts.signature_hash.upper()}")


def check_revocation(
    facts: CertificateFacts,
    kind: CertKind | None,
    crls: Mapping[str, CrlInfo],
    policy: RevocationPolicy,
    now: datetime,
) -> Check:
    crl = crls.get(facts.issuer)
    required = kind in policy.require_crl_for
    if crl is None:
        if required:
            return Check("revocation", False,
                         f"no CRL loaded for {facts.issuer!r}; {kind} certificates require one (fail closed)")
        return Check("revocation", None, "issuer publishes no CRL here (IDevID: rely on allow/deny lists)")
    if facts.cert_serial.lower().lstrip("0") in crl.revoked:
        return Check("revocation", False, f"serial {facts.cert_serial} is revoked by {crl.source}")
    if crl.next_update is not None and now > crl.next_update and not policy.accept_stale_crl:
        return Check("revocation", False,
                     f"CRL {crl.source} expired at {crl.next_update.isoformat()}; refresh it (fail closed)")
    return Check("revocation", True, f"not on CRL {crl.source} (this update {crl.this_update.isoformat()})")


def check_mud_url(facts: CertificateFacts) -> Check:
    if facts.mud_url_error:
        return Check("mud-url", False, f"MUD URL extension is malformed: {facts.mud_url_error}")
    if facts.mud_url:
        return Check("mud-url", True, facts.mud_url)
    return Check("mud-url", None, "no MUD URL extension")


def validate_certificate(
    facts: CertificateFacts,
    anchors: AnchorIndex,
    crls: Mapping[str, CrlInfo],
    now: datetime,
    revocation_policy: RevocationPolicy = RevocationPolicy(),
    extra_checks: tuple[Check, ...] = (),
) -> CertificateVerdict:
    """Every rule, each as a Check; valid only if none failed."""
    anchor, anchor_check = find_anchor(facts, anchors)
    kind = anchor.role if anchor else None
    checks = [
        anchor_check,
        *extra_checks,
        check_validity(facts, now, anchor),
        *check_profile(facts),
        check_key_strength(facts),
        check_signature(facts),
        check_revocation(facts, kind, crls, revocation_policy, now),
        check_mud_url(facts),
    ]
    valid = all(c.ok is not False for c in checks)
    return CertificateVerdict(valid=valid, kind=kind, anchor=anchor.name if anchor else None, checks=tuple(checks))


BINDING = "certificate-binding"


def check_binding(facts: CertificateFacts, device: DeviceRecord | None, anchors: AnchorIndex) -> Check:
    """A registered device is bound to one certificate (its serial; on the PEM path also its fingerprint).

    Another certificate with the same issuer and subject serialNumber is not that device, however valid it is:
    it is refused, and the registry keeps the bound certificate until an operator re-binds the device or an
    enrolment replaces its certificate. A device registered without a certificate is bound on first use. The
    certificate kind is the role of the anchor that verified it (``anchors``, as for validation)."""
    if device is None:
        return Check(BINDING, None, "not registered")
    anchor, _ = find_anchor(facts, anchors)
    kind = anchor.role if anchor is not None else None
    if device.cert_kind is not None and kind is not None and device.cert_kind is not kind:
        return Check(BINDING, False, f"certificate does not match the registered one: device {device.id} is "
                                     f"registered with an {device.cert_kind.value}, this is an {kind.value}")
    if device.cert_serial is None:
        return Check(BINDING, None, f"device {device.id} has no registered certificate yet: bound on first use")
    if facts.cert_serial != device.cert_serial:
        return Check(BINDING, False, f"certificate does not match the registered one: serial {facts.cert_serial[:40]}"
                                     f", device {device.id} is bound to {device.cert_serial[:40]} (re-bind with "
                                     "'trustport devices rebind' if the device really has a new certificate)")
    registered = (device.fingerprint_sha256 or "").replace(":", "").lower()
    if facts.fingerprint_sha256 and registered and facts.fingerprint_sha256.lower() != registered:
        return Check(BINDING, False, f"certificate does not match the registered one: same serial, other "
                                     f"fingerprint than device {device.id}'s (a forged or re-issued certificate)")
    return Check(BINDING, True, f"the certificate device {device.id} is bound to")
