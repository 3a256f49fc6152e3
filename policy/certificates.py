"""Certificate validation beyond what OpenSSL already did during the TLS handshake.

Pure: facts, trust anchors, revocation data and ``now`` in; a ``CertificateVerdict`` with one ``Check`` per
rule out. The same function serves the RADIUS hook (facts from attributes) and ``trustport decide`` (PEM).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from policy.model import CertificateFacts, CertificateVerdict, CertKind, Check

CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2"
ANY_EKU_OID = "2.5.29.37.0"
# 802.1AR: "no well-defined expiration" (GeneralizedTime 99991231235959Z).
NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
STRONG_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1", "brainpoolP256r1", "brainpoolP384r1"})
WEAK_HASHES = frozenset({"sha1", "md5", "md2", "md4"})
MIN_RSA_BITS = 2048
DELEGATED = "not exported by FreeRADIUS; enforced in the TLS handshake by OpenSSL (@SECLEVEL=2)"


@dataclass(frozen=True)
class TrustAnchor:
    """A configured issuing CA and the role of the certificates it issues."""

    name: str
    role: CertKind
    subject: str  # OpenSSL one-line DN of the issuing CA
    key_id: str | None  # subjectKeyIdentifier, OpenSSL hex form (AA:BB:...)


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


def normalise_key_id(value: str | None) -> str | None:
    """'keyid:4c:90:..' / '4C90..' / '4C:90:..\\nDirName:..' -> '4C:90:..'."""
    if not value:
        return None
    first = value.strip().splitlines()[0].strip()
    if first.lower().startswith("keyid:"):
        first = first[6:]
    digits = "".join(ch for ch in first if ch in "0123456789abcdefABCDEF")
    if not digits or len(digits) % 2:
        return None
    digits = digits.upper()
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def find_anchor(facts: CertificateFacts, anchors: Mapping[str, TrustAnchor]) -> tuple[TrustAnchor | None, Check]:
    """The anchor whose subject is the certificate's issuer (and whose key id matches the AKI, when both known)."""
    anchor = anchors.get(facts.issuer)
    if anchor is None:
        return None, Check("trust-anchor", False, f"issuer {facts.issuer!r} is not a configured trust anchor")
    aki = normalise_key_id(facts.authority_key_id)
    if aki and anchor.key_id and aki != anchor.key_id:
        return None, Check(
            "trust-anchor", False,
            f"authority key id {aki} does not match anchor {anchor.name!r} ({anchor.key_id}): same name, other CA",
        )
    return anchor, Check("trust-anchor", True, f"issued by {anchor.name} ({anchor.role.value} CA)")


def check_validity(facts: CertificateFacts, now: datetime) -> Check:
    if facts.not_after is None or facts.not_before is None:
        return Check("validity", False, "validity dates missing or unparseable")
    if now < facts.not_before:
        return Check("validity", False, f"not valid before {facts.not_before.isoformat()}")
    if facts.not_after >= NO_EXPIRY:
        return Check("validity", True, "no well-defined expiration (802.1AR 99991231235959Z)")
    if now > facts.not_after:
        return Check("validity", False, f"expired at {facts.not_after.isoformat()}")
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
    key = facts.public_key
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
    anchors: Mapping[str, TrustAnchor],
    crls: Mapping[str, CrlInfo],
    now: datetime,
    revocation_policy: RevocationPolicy = RevocationPolicy(),
    extra_checks: tuple[Check, ...] = (),
) -> CertificateVerdict:
    """Every rule, each as a Check; valid only if none failed. ``anchors`` is keyed by CA subject DN."""
    anchor, anchor_check = find_anchor(facts, anchors)
    kind = anchor.role if anchor else None
    checks = [
        anchor_check,
        *extra_checks,
        check_validity(facts, now),
        *check_profile(facts),
        check_key_strength(facts),
        check_signature(facts),
        check_revocation(facts, kind, crls, revocation_policy, now),
        check_mud_url(facts),
    ]
    valid = all(c.ok is not False for c in checks)
    return CertificateVerdict(valid=valid, kind=kind, anchor=anchor.name if anchor else None, checks=tuple(checks))
