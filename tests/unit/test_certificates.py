"""Every validation outcome, from real certificates made by the test PKI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from policy.certificates import CrlInfo, RevocationPolicy, validate_certificate
from policy.model import CertificateFacts, CertKind, KeyInfo
from policy.x509facts import facts_from_certificate
from tests.pki_fixtures import NOW, DevicePki, sha1_signed_device
from trustport.services.chain import pem_facts
from trustport.services.trust import TrustMaterial
from trustport.settings.hook import AnchorFile


@pytest.fixture(scope="module")
def trust(pki: DevicePki) -> TrustMaterial:
    anchors = (AnchorFile("acme", CertKind.IDEVID, pki.cert_path("idevid-ca")),
               AnchorFile("site", CertKind.LDEVID, pki.cert_path("ldevid-ca")))
    return TrustMaterial.load(anchors, pki.root / "crl", 30.0, lambda: 0.0)


def verdict_for(pki: DevicePki, trust: TrustMaterial, name: str, **kw):  # type: ignore[no-untyped-def]
    facts, _chain = pem_facts(pki.devices[name].cert, [], trust, NOW)
    return validate_certificate(facts, trust.anchors, kw.pop("crls", trust.crls), kw.pop("now", NOW), **kw)


def failed(verdict) -> set[str]:  # type: ignore[no-untyped-def]
    return {c.name for c in verdict.failures}


# (certificate, expected failing checks, expected kind)
CASES = [
    ("idevid-ok", set(), CertKind.IDEVID),
    ("ldevid-ok", set(), CertKind.LDEVID),
    ("ldevid-revoked", {"revocation"}, CertKind.LDEVID),
    ("expired", {"validity"}, CertKind.LDEVID),
    ("not-yet-valid", {"validity"}, CertKind.IDEVID),
    ("no-serial", {"802.1ar-serial"}, CertKind.IDEVID),
    ("leaf-is-ca", {"leaf-not-ca"}, CertKind.IDEVID),
    ("eku-server-only", {"extended-key-usage"}, CertKind.IDEVID),
    ("no-eku", set(), CertKind.IDEVID),
    ("no-digital-signature", {"key-usage"}, CertKind.IDEVID),
    ("rsa1024", {"key-strength"}, CertKind.IDEVID),
    ("rsa2048", set(), CertKind.IDEVID),
    ("p224", {"key-strength"}, CertKind.IDEVID),
    ("p384", set(), CertKind.IDEVID),
    ("rogue", {"trust-anchor"}, None),
    ("lookalike", {"trust-anchor"}, None),
    ("mud-http", {"mud-url"}, CertKind.IDEVID),
    ("mud-garbage", {"mud-url"}, CertKind.IDEVID),
]


@pytest.mark.parametrize(("name", "expected_failures", "kind"), CASES)
def test_validation_outcome(pki: DevicePki, trust: TrustMaterial, name: str, expected_failures: set[str],
                            kind: CertKind | None) -> None:
    verdict = verdict_for(pki, trust, name)
    assert failed(verdict) == expected_failures
    assert verdict.valid is (not expected_failures)
    assert verdict.kind == kind
    for check in verdict.failures:
        assert check.detail, f"{check.name} failed without a reason"


def test_idevid_without_expiry_is_accepted_and_says_so(pki: DevicePki, trust: TrustMaterial) -> None:
    verdict = verdict_for(pki, trust, "idevid-ok", now=NOW + timedelta(days=365 * 50))
    validity = next(c for c in verdict.checks if c.name == "validity")
    assert validity.ok is True
    assert "99991231235959Z" in validity.detail


def test_mud_url_is_extracted(pki: DevicePki) -> None:
    facts = facts_from_certificate(pki.devices["idevid-ok"].cert)
    assert facts.mud_url == "https://mud.acme.example/sensor.json"


def test_revoked_reason_names_serial_and_crl(pki: DevicePki, trust: TrustMaterial) -> None:
    verdict = verdict_for(pki, trust, "ldevid-revoked")
    (reason,) = verdict.reasons()
    assert format(pki.devices["ldevid-revoked"].cert.serial_number, "x") in reason
    assert "ldevid.crl" in reason


def test_ldevid_without_crl_fails_closed(pki: DevicePki, trust: TrustMaterial) -> None:
    verdict = verdict_for(pki, trust, "ldevid-ok", crls={})
    assert failed(verdict) == {"revocation"}
    assert "fail closed" in verdict.failures[0].detail


def test_idevid_without_crl_is_not_required(pki: DevicePki, trust: TrustMaterial) -> None:
    verdict = verdict_for(pki, trust, "idevid-ok", crls={})
    assert verdict.valid
    assert next(c for c in verdict.checks if c.name == "revocation").ok is None


def test_stale_crl_fails_closed_unless_allowed(pki: DevicePki, trust: TrustMaterial) -> None:
    later = NOW + timedelta(days=30)  # the test CRL's nextUpdate is 7 days after NOW
    ldev = pem_facts(pki.devices["ldevid-ok"].cert, [], trust, NOW)[0]
    crls = trust.crls
    stale = validate_certificate(ldev, trust.anchors, crls, later)
    assert "expired at" in next(c for c in stale.failures if c.name == "revocation").detail
    tolerant = validate_certificate(ldev, trust.anchors, crls, later,
                                    RevocationPolicy(frozenset({CertKind.LDEVID}), accept_stale_crl=True))
    assert tolerant.valid


def test_sha1_signature_is_refused(pki: DevicePki, trust: TrustMaterial) -> None:
    facts = facts_from_certificate(sha1_signed_device(pki, NOW))
    assert facts.not_before is not None  # openssl stamps the real current time, not NOW
    verdict = validate_certificate(facts, trust.anchors, trust.crls, facts.not_before + timedelta(minutes=1))
    assert "signature" in failed(verdict)  # (no verified chain either: the chain verifier refuses SHA-1 too)
    assert "SHA1" in next(c for c in verdict.failures if c.name == "signature").detail


@pytest.mark.parametrize(("key", "ok"), [
    (KeyInfo("rsa", 2047), False), (KeyInfo("rsa", 4096), True), (KeyInfo("ec", 256, "secp256r1"), True),
    (KeyInfo("ec", 256, "secp256k1"), False), (KeyInfo("ed25519", 256), True), (KeyInfo("dsa", 2048), False),
    (None, None),
])
def test_key_strength_table(pki: DevicePki, trust: TrustMaterial, key: KeyInfo | None, ok: bool | None) -> None:
    base = pem_facts(pki.devices["idevid-ok"].cert, [], trust, NOW)[0]
    facts = CertificateFacts(**{**base.__dict__, "public_key": key})
    check = next(c for c in validate_certificate(facts, trust.anchors, {}, NOW).checks if c.name == "key-strength")
    assert check.ok is ok


@pytest.mark.parametrize(("hash_name", "source", "ok"), [
    ("sha256", "pem", True), ("sha1", "pem", False), ("md5", "radius", False), (None, "radius", None),
    (None, "pem", True),  # EdDSA has no separate hash
])
def test_signature_table(pki: DevicePki, trust: TrustMaterial, hash_name: str | None, source: str,
                         ok: bool | None) -> None:
    base = pem_facts(pki.devices["idevid-ok"].cert, [], trust, NOW)[0]
    facts = CertificateFacts(**{**base.__dict__, "signature_hash": hash_name, "source": source})
    check = next(c for c in validate_certificate(facts, trust.anchors, {}, NOW).checks if c.name == "signature")
    assert check.ok is ok




def test_crl_with_bad_signature_is_refused(pki: DevicePki, tmp_path: Path) -> None:
    from trustport_lab.pki import crl_pem, make_crl

    forged = make_crl(pki.cas["lookalike"], [], now=NOW)  # same issuer name, other key
    (tmp_path / "forged.crl").write_bytes(crl_pem(forged))
    (tmp_path / "garbage.crl").write_bytes(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
    material = TrustMaterial.load((AnchorFile("acme", CertKind.IDEVID, pki.cert_path("idevid-ca")),),
                                  tmp_path, 30.0, lambda: 0.0)
    assert material.crls == {}
    assert any("signature does not verify" in e for e in material.errors)
    assert any("not a PEM or DER CRL" in e for e in material.errors)


def test_crl_reload_after_change(pki: DevicePki, tmp_path: Path) -> None:
    from trustport_lab.pki import crl_pem, make_crl

    anchors = (AnchorFile("site", CertKind.LDEVID, pki.cert_path("ldevid-ca")),)
    clock = [0.0]
    material = TrustMaterial.load(anchors, tmp_path, 5.0, lambda: clock[0])
    assert material.crls == {}
    serial = pki.devices["ldevid-ok"].cert.serial_number
    (tmp_path / "site.crl").write_bytes(crl_pem(make_crl(pki.cas["ldevid"], [serial], now=NOW)))
    material.refresh(1.0)  # within the refresh interval: not re-read yet
    assert material.crls == {}
    material.refresh(6.0)
    info: CrlInfo = next(iter(material.crls.values()))
    assert format(serial, "x") in info.revoked
