"""EAR verification: valid tokens of both spellings, and every forgery with a clear reason, never affirming."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from policy.attestation import (
    IETF_PROFILE,
    VERAISON_PROFILE,
    DeviceBinding,
    StoredAttestation,
    Tier,
    TokenRejected,
    check_binding,
    check_newer,
    load_verifier_key,
    verify_ear,
)
from policy.errors import AttestationError
from trustport_lab.fake_verifier import ear_claims, new_signing_key, public_jwk, sign

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(hours=24)
VERIFIER = new_signing_key("p256")
OTHER = new_signing_key("p256")
KEYS = (load_verifier_key("veraison", public_jwk(VERIFIER).encode()),)
DEVICE_KEY = ec.generate_private_key(ec.SECP256R1())
ANOTHER_DEVICE_KEY = ec.generate_private_key(ec.SECP256R1())


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


BINDING = DeviceBinding(spki_sha256=hashlib.sha256(spki(DEVICE_KEY)).hexdigest(), cert_sha256="ab" * 32,
                        issued_nonces=frozenset({"nonce-we-issued"}))


def token(status: str = "affirming", *, profile: str = VERAISON_PROFILE, akpub: bytes | None = None,
          key=VERIFIER, iat: datetime = NOW - timedelta(minutes=5), **kw) -> str:  # type: ignore[no-untyped-def]
    return sign(ear_claims(status=status, issued_at=iat, profile=profile,
                           akpub=spki(DEVICE_KEY) if akpub is None else akpub, **kw), key)


def verify(tok: str):  # type: ignore[no-untyped-def]
    return verify_ear(tok, KEYS, now=NOW, max_age=MAX_AGE)


@pytest.mark.parametrize("profile", [VERAISON_PROFILE, IETF_PROFILE])
@pytest.mark.parametrize(("status", "tier"), [("affirming", Tier.AFFIRMING), ("warning", Tier.WARNING),
                                              ("contraindicated", Tier.CONTRAINDICATED), ("none", Tier.NONE)])
def test_valid_tokens_both_spellings(profile: str, status: str, tier: Tier) -> None:
    claims = verify(token(status, profile=profile))
    assert claims.status is tier
    assert claims.profile == profile
    assert claims.vector()["device"]["hardware"] == 2
    assert check_binding(claims, BINDING) == "akpub"


def test_worst_submodule_wins() -> None:
    claims = ear_claims(status="affirming", issued_at=NOW, akpub=spki(DEVICE_KEY))
    claims["submods"]["firmware"] = {"ear.status": "contraindicated", "ear.trustworthiness-vector": {"executables": 96}}
    assert verify(sign(claims, VERIFIER)).status is Tier.CONTRAINDICATED


def test_numeric_status_and_top_level_ietf_status() -> None:
    claims = ear_claims(status="affirming", issued_at=NOW, profile=IETF_PROFILE, akpub=spki(DEVICE_KEY))
    claims["ear_status"] = 40
    assert verify(sign(claims, VERIFIER)).status is Tier.WARNING


def test_veraison_reference_claims_shape() -> None:
    """The shape of veraison/ear's arc/data/ear-claims-key-attestation-ok.json (our own key and akpub)."""
    akpub = base64.urlsafe_b64encode(spki(DEVICE_KEY)).rstrip(b"=").decode()
    claims = {"eat_profile": VERAISON_PROFILE, "iat": int(NOW.timestamp()),
              "ear.verifier-id": {"developer": "https://veraison-project.org", "build": "vts 0.0.1"},
              "ear.raw-evidence": "NzQ3MjY5NzM2NTYzNzQK",
              "submods": {"PARSEC_TPM": {"ear.status": "affirming",
                                         "ear.trustworthiness-vector": {"instance-identity": 2, "executables": 2,
                                                                        "hardware": 2},
                                         "ear.appraisal-policy-id": "policy://parsec/60a0068d",
                                         "ear.veraison.key-attestation": {"akpub": akpub}}}}
    parsed = verify(sign(claims, VERIFIER))
    assert parsed.status is Tier.AFFIRMING and parsed.submods[0].policy_ids == ("policy://parsec/60a0068d",)
    assert parsed.verifier_id["build"] == "vts 0.0.1"


def _segments(tok: str) -> list[str]:
    return tok.split(".")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none() -> str:
    claims = ear_claims(status="affirming", issued_at=NOW, akpub=spki(DEVICE_KEY))
    return _b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode()) + "."


def _hs256_with_public_key() -> str:
    """The classic confusion attack: HMAC keyed with the verifier's public key bytes."""
    secret = VERIFIER.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    payload = _b64(json.dumps(ear_claims(status="affirming", issued_at=NOW, akpub=spki(DEVICE_KEY))).encode())
    import hmac

    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


def _tampered() -> str:
    head, _body, sig = _segments(token("contraindicated"))
    forged_body = _b64(json.dumps(ear_claims(status="affirming", issued_at=NOW, akpub=spki(DEVICE_KEY))).encode())
    return f"{head}.{forged_body}.{sig}"


def _es384_header_on_p256() -> str:
    _head, body, sig = _segments(token())
    return _b64(b'{"alg":"ES384","typ":"JWT"}') + f".{body}.{sig}"


FORGED = [
    ("wrong key", lambda: token(key=OTHER), "signature"),
    ("alg none", _alg_none, "algorithm"),
    ("HS256 with public key bytes", _hs256_with_public_key, "algorithm"),
    ("tampered payload", _tampered, "signature"),
    ("alg/key mismatch", _es384_header_on_p256, "no-key"),
    ("expired", lambda: token(expires_at=NOW - timedelta(minutes=1)), "expired"),
    ("not yet valid", lambda: token(iat=NOW + timedelta(hours=1)), "not-yet-valid"),
    ("over max age", lambda: token(iat=NOW - timedelta(days=2)), "too-old"),
    ("wrong profile", lambda: sign({**ear_claims(status="affirming", issued_at=NOW),
                                    "eat_profile": "tag:github.com/veraison/ar4si,2022-10-17"}, VERIFIER), "profile"),
    ("malformed base64", lambda: "eyJhbGciOiJFUzI1NiJ9.!!!.abc", "malformed"),
    ("malformed JSON header", lambda: _b64(b"{not json") + "." + _b64(b"{}") + ".c2ln", "malformed"),
    ("malformed JSON payload", lambda: _segments(token())[0] + "." + _b64(b"[1,2") + "." + _segments(token())[2],
     "signature"),
    ("two parts", lambda: "abc.def", "malformed"),
    ("empty", lambda: "", "malformed"),
    ("oversize", lambda: "a" * 70_000 + ".b.c", "oversize"),
    ("no submods", lambda: sign({"eat_profile": VERAISON_PROFILE, "iat": int(NOW.timestamp())}, VERIFIER),
     "malformed"),
    ("bad status", lambda: token("excellent"), "malformed"),
    ("vector out of range", lambda: token(vector={"hardware": 500}), "malformed"),
    ("unknown vector claim", lambda: token(vector={"vibes": 2}), "malformed"),
    ("akpub not base64", lambda: sign({**ear_claims(status="affirming", issued_at=NOW),
                                       "submods": {"d": {"ear.status": "affirming",
                                                         "ear.veraison.key-attestation": {"akpub": "%%%"}}}},
                                      VERIFIER), "malformed"),
    ("iat not a number", lambda: sign({**ear_claims(status="affirming", issued_at=NOW), "iat": "yesterday"},
                                      VERIFIER), "malformed"),
]


@pytest.mark.parametrize(("name", "make", "reason"), FORGED, ids=[f[0] for f in FORGED])
def test_forged_and_malformed_tokens_are_refused(name: str, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TokenRejected) as caught:
        verify(make())
    assert caught.value.reason == reason, str(caught.value)
    assert str(caught.value)


def test_another_devices_akpub_is_refused() -> None:
    claims = verify(token(akpub=spki(ANOTHER_DEVICE_KEY)))
    assert claims.status is Tier.AFFIRMING  # the token itself is genuine ...
    with pytest.raises(TokenRejected, match="belongs to another device"):
        check_binding(claims, BINDING)  # ... but not this device's


@pytest.mark.parametrize(("nonce", "ok"), [("nonce-we-issued", True), ("someone-elses-nonce", False)])
def test_nonce_binding(nonce: str, ok: bool) -> None:
    claims = verify(sign(ear_claims(status="affirming", issued_at=NOW, nonce=nonce), VERIFIER))
    if ok:
        assert check_binding(claims, BINDING) == "nonce"
    else:
        with pytest.raises(TokenRejected, match="not issued by trustport"):
            check_binding(claims, BINDING)


def test_cnf_thumbprint_binding() -> None:
    x5t = base64.urlsafe_b64encode(bytes.fromhex("ab" * 32)).rstrip(b"=").decode()
    good = verify(sign(ear_claims(status="affirming", issued_at=NOW, cnf_x5t=x5t), VERIFIER))
    assert check_binding(good, BINDING) == "cnf"
    bad = verify(sign(ear_claims(status="affirming", issued_at=NOW, cnf_x5t=_b64(b"x" * 32)), VERIFIER))
    with pytest.raises(TokenRejected, match="thumbprint"):
        check_binding(bad, BINDING)


def test_unbound_token_is_refused() -> None:
    claims = verify(sign(ear_claims(status="affirming", issued_at=NOW), VERIFIER))
    with pytest.raises(TokenRejected, match="no akpub, eat_nonce or cnf"):
        check_binding(claims, BINDING)


@pytest.mark.parametrize("kind", ["p384", "ed25519"])
def test_es384_and_eddsa(kind: str) -> None:
    key = new_signing_key(kind)
    keys = (load_verifier_key("k", public_jwk(key).encode()),)
    claims = verify_ear(sign(ear_claims(status="warning", issued_at=NOW, akpub=spki(DEVICE_KEY)), key), keys,
                        now=NOW, max_age=MAX_AGE)
    assert claims.status is Tier.WARNING


@pytest.mark.parametrize(("data", "message"), [
    (b'{"kty":"oct","k":"c2VjcmV0"}', "kty EC or OKP"),
    (json.dumps({**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(VERIFIER)), "kty": "EC"}).encode(), "private key"),
    (b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----", "not a PEM public key"),
    (b"garbage", "not a PEM public key"),
])
def test_bad_verifier_keys(data: bytes, message: str) -> None:
    with pytest.raises(AttestationError, match=message):
        load_verifier_key("v", data)


def test_veraison_well_known_document() -> None:
    doc = json.dumps({"ear-verification-key": json.loads(public_jwk(VERIFIER)), "media-types": []}).encode()
    assert load_verifier_key("v", doc).algorithm == "ES256"


def test_pem_verifier_key() -> None:
    pem = VERIFIER.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    assert load_verifier_key("v", pem).algorithm == "ES256"


def _stored(issued_at: datetime, digest: str = "a" * 64) -> StoredAttestation:
    return StoredAttestation(device_id=1, received_at=NOW, token="t", token_sha256=digest, accepted=True,
                             status=Tier.CONTRAINDICATED, issued_at=issued_at, expires_at=None, binding="akpub",
                             bound_cert_serial=None, vector={}, reasons=())


@pytest.mark.parametrize(("seconds", "same_token", "reason"), [
    (-3600, False, "stale"), (-1, False, "stale"), (0, False, "rollback"), (0, True, "replay"), (1, False, None),
    (300, False, None),
])
def test_a_result_only_replaces_an_older_one(seconds: float, same_token: bool, reason: str | None) -> None:
    current = _stored(NOW - timedelta(minutes=10))
    claims = verify(token(iat=NOW - timedelta(minutes=10) + timedelta(seconds=seconds)))
    if same_token:
        current = _stored(claims.issued_at, claims.token_sha256)
    if reason is None:
        check_newer(claims, current)
        check_newer(claims, None)  # no current result: anything fresh is newer
        return
    with pytest.raises(TokenRejected) as caught:
        check_newer(claims, current)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("value", "tier"), [
    ("none", Tier.NONE), ("affirming", Tier.AFFIRMING), ("warning", Tier.WARNING),
    ("contraindicated", Tier.CONTRAINDICATED), (0, Tier.NONE), (31, Tier.AFFIRMING), (95, Tier.WARNING),
    (127, Tier.CONTRAINDICATED), ("AFFIRMING", None), ("aff\u0131rming", None), ("a\ufb03rming", None),
    ("Warning", None), ("NONE", None), ("contraindicated ", None), (True, None), (2.0, None), (-129, None),
])
def test_status_names_are_compared_exactly(value: object, tier: Tier | None) -> None:
    if tier is not None:
        assert Tier.parse(value, "status") is tier
        return
    with pytest.raises(TokenRejected) as caught:
        Tier.parse(value, "status")
    assert caught.value.reason == "malformed"
