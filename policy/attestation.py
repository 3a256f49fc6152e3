"""EAR (EAT Attestation Result) tokens: verification, freshness and binding to the EAP-TLS device.

Both spellings in use are parsed, with the profile pinned: Veraison's (``eat_profile`` =
``tag:github.com,2023:veraison/ear``, ``ear.status``, ``ear.trustworthiness-vector``, ``submods``) and the IETF
draft's (``tag:ietf.org,2026:rats/ear#03``, ``ear_status``, ``ear_trustworthiness_vector``). The JWS is checked
by PyJWT with an explicit algorithm allow-list (ES256, ES384, EdDSA) and keys whose type must match the header's
algorithm: ``alg: none``, HMAC and algorithm/key confusion are refused before any signature math. No clock reads:
callers pass ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from policy.errors import AttestationError

VERAISON_PROFILE = "tag:github.com,2023:veraison/ear"
IETF_PROFILE = "tag:ietf.org,2026:rats/ear#03"
PROFILES = frozenset({VERAISON_PROFILE, IETF_PROFILE})
ACCEPTED_ALGORITHMS = ("ES256", "ES384", "EdDSA")
MAX_TOKEN_BYTES = 64 * 1024
VECTOR_CLAIMS = frozenset({"instance-identity", "configuration", "executables", "file-system", "hardware",
                           "runtime-opaque", "storage-opaque", "sourced-data"})
_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class TokenRejected(AttestationError):
    """The token is not an acceptable attestation result; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Tier(IntEnum):
    """AR4SI status tiers; a higher value is worse, and the worst submodule wins."""

    NONE = 0
    AFFIRMING = 2
    WARNING = 32
    CONTRAINDICATED = 96

    @classmethod
    def parse(cls, value: object, where: str) -> Tier:
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise TokenRejected("malformed", f"{where}: unknown status {value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            if value in (-1, 0, 1):
                return cls.NONE
            if 2 <= value <= 31:
                return cls.AFFIRMING
            if 32 <= value <= 95:
                return cls.WARNING
            if 96 <= value <= 127:
                return cls.CONTRAINDICATED
        raise TokenRejected("malformed", f"{where}: status must be a tier name or -128..127, got {value!r}")


@dataclass(frozen=True)
class VerifierKey:
    """A verifier's public key and the one JWS algorithm it may be used with."""

    name: str
    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    algorithm: str


def _algorithm_for(key: object, name: str) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "ES256", "secp384r1": "ES384"}
        if key.curve.name not in curves:
            raise AttestationError(f"verifier key {name!r}: curve {key.curve.name} is not accepted (P-256, P-384)")
        return curves[key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise AttestationError(f"verifier key {name!r}: {type(key).__name__} keys are not accepted "
                           "(EC P-256/P-384 or Ed25519 only; never RSA or a shared secret)")


def load_verifier_key(name: str, data: bytes) -> VerifierKey:
    """A PEM public key, a JWK, or Veraison's ``/.well-known/veraison/verification`` document."""
    text = data.strip()
    try:
        if text.startswith(b"{"):
            document = json.loads(text)
            if isinstance(document, dict) and "ear-verification-key" in document:
                document = document["ear-verification-key"]
            if not isinstance(document, dict) or document.get("kty") not in ("EC", "OKP"):
                raise AttestationError(f"verifier key {name!r}: JWK must have kty EC or OKP (never oct/RSA)")
            if "d" in document:
                raise AttestationError(f"verifier key {name!r}: this JWK holds a private key; give the public part")
            key = jwt.PyJWK(document).key
        else:
            key = serialization.load_pem_public_key(text)
    except AttestationError:
        raise
    except (ValueError, TypeError, jwt.PyJWKError) as exc:
        raise AttestationError(f"verifier key {name!r}: not a PEM public key or JWK ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise AttestationError(f"verifier key {name!r}: {type(key).__name__} keys are not accepted")
    return VerifierKey(name, key, _algorithm_for(key, name))


@dataclass(frozen=True)
class Submodule:
    name: str
    status: Tier
    vector: Mapping[str, int]
    policy_ids: tuple[str, ...]
    akpub: bytes | None  # DER SubjectPublicKeyInfo of the attested key


@dataclass(frozen=True)
class EarClaims:
    token_sha256: str
    profile: str
    key_name: str
    issued_at: datetime
    expires_at: datetime | None
    status: Tier  # worst of the top-level status and every submodule
    submods: tuple[Submodule, ...]
    nonce: str | None
    cnf_x5t_s256: str | None
    verifier_id: Mapping[str, str] = field(default_factory=dict)

    @property
    def akpubs(self) -> tuple[bytes, ...]:
        return tuple(s.akpub for s in self.submods if s.akpub is not None)

    def vector(self) -> dict[str, dict[str, int]]:
        return {s.name: dict(s.vector) for s in self.submods}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _b64url(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise TokenRejected("malformed", f"{where}: expected a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected("malformed", f"{where}: not base64url ({exc})") from exc


def _vector(value: object, where: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TokenRejected("malformed", f"{where}: trustworthiness vector must be an object")
    out = {}
    for claim, level in value.items():
        if claim not in VECTOR_CLAIMS:
            raise TokenRejected("malformed", f"{where}: unknown trustworthiness claim {str(claim)[:40]!r}")
        if not isinstance(level, int) or isinstance(level, bool) or not -128 <= level <= 127:
            raise TokenRejected("malformed", f"{where}.{claim}: must be an integer in -128..127")
        out[claim] = level
    return out


def _submodule(name: str, body: object, ietf: bool) -> Submodule:
    where = f"submods.{name[:40]}"
    if not isinstance(body, dict):
        raise TokenRejected("malformed", f"{where}: must be an object")
    status_key, vector_key = ("ear_status", "ear_trustworthiness_vector") if ietf else (
        "ear.status", "ear.trustworthiness-vector")
    if status_key not in body:
        raise TokenRejected("malformed", f"{where}: {status_key} is missing")
    if ietf:
        ids = body.get("ear_appraisal_policy_ids", [])
        policies = tuple(str(i) for i in ids) if isinstance(ids, list) else ()
        attestation = body.get("ear_veraison_key_attestation")
    else:
        single = body.get("ear.appraisal-policy-id")
        policies = (str(single),) if single is not None else ()
        attestation = body.get("ear.veraison.key-attestation")
    akpub = None
    if attestation is not None:
        if not isinstance(attestation, dict):
            raise TokenRejected("malformed", f"{where}: key attestation must be an object")
        akpub = _b64url(attestation.get("akpub"), f"{where}.akpub")
        try:
            serialization.load_der_public_key(akpub)
        except ValueError as exc:
            raise TokenRejected("malformed", f"{where}.akpub: not a DER SubjectPublicKeyInfo") from exc
    return Submodule(name, Tier.parse(body[status_key], f"{where}.{status_key}"),
                     _vector(body.get(vector_key), f"{where}.{vector_key}"), policies, akpub)


def _time(claims: Mapping[str, Any], name: str, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenRejected("malformed", f"claim {name} is missing")
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 253402300800:
        raise TokenRejected("malformed", f"claim {name} must be a NumericDate")
    return datetime.fromtimestamp(value, UTC)


def check_fresh(claims: EarClaims, now: datetime, max_age: timedelta, leeway: timedelta) -> None:
    """Raises TokenRejected if the result is not yet valid, expired, or older than ``max_age``."""
    if claims.issued_at > now + leeway:
        raise TokenRejected("not-yet-valid", f"issued at {claims.issued_at.isoformat()}, in the future")
    if claims.expires_at is not None and now > claims.expires_at + leeway:
        raise TokenRejected("expired", f"expired at {claims.expires_at.isoformat()}")
    if now - claims.issued_at > max_age:
        raise TokenRejected("too-old", f"issued at {claims.issued_at.isoformat()}, older than the maximum age "
                                       f"of {int(max_age.total_seconds())} s")


def verify_signature(token: str, keys: Iterable[VerifierKey]) -> tuple[dict[str, Any], VerifierKey]:
    """The verified claims set and the key that verified it."""
    if not isinstance(token, str):
        raise TokenRejected("malformed", "token must be a string")
    token = token.strip()
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("oversize", f"token is {len(token)} bytes, more than {MAX_TOKEN_BYTES}")
    if not _JWS.match(token):
        raise TokenRejected("malformed", "not a JWS compact serialization (three base64url parts)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise TokenRejected("malformed", f"JWS header is not valid base64url JSON ({exc})") from exc
    alg = header.get("alg")
    if alg not in ACCEPTED_ALGORITHMS:
        raise TokenRejected("algorithm", f"JWS algorithm {str(alg)[:20]!r} is not accepted "
                                         f"(only {', '.join(ACCEPTED_ALGORITHMS)})")
    kid = header.get("kid")
    candidates = [k for k in keys if k.algorithm == alg and (kid is None or k.name == kid)]
    if not candidates:
        raise TokenRejected("no-key", f"no configured verifier key for algorithm {alg}"
                                      + (f" and kid {str(kid)[:40]!r}" if kid is not None else ""))
    for key in candidates:
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg],
                                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                         "verify_aud": False, "verify_iss": False})
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as exc:
            raise TokenRejected("malformed", f"token does not decode: {exc}") from exc
        if not isinstance(claims, dict):
            raise TokenRejected("malformed", "claims set is not a JSON object")
        return claims, key
    raise TokenRejected("signature", "signature does not verify with any configured verifier key "
                                     f"({', '.join(k.name for k in candidates)})")


def verify_ear(token: str, keys: Iterable[VerifierKey], *, now: datetime, max_age: timedelta,
               leeway: timedelta = timedelta(seconds=30), profiles: frozenset[str] = PROFILES) -> EarClaims:
    claims, key = verify_signature(token, keys)
    claims_obj = parse_claims(claims, token_hash(token.strip()), key.name, profiles)
    check_fresh(claims_obj, now, max_age, leeway)
    return claims_obj


def parse_claims(claims: Mapping[str, Any], digest: str, key_name: str,
                 profiles: frozenset[str] = PROFILES) -> EarClaims:
    profile = claims.get("eat_profile")
    if profile not in profiles:
        raise TokenRejected("profile", f"eat_profile {str(profile)[:80]!r} is not accepted "
                                       f"(pinned: {', '.join(sorted(profiles))})")
    ietf = profile == IETF_PROFILE
    raw_submods = claims.get("submods")
    if not isinstance(raw_submods, dict) or not raw_submods:
        raise TokenRejected("malformed", "submods is missing or empty")
    if len(raw_submods) > 64:
        raise TokenRejected("oversize", f"{len(raw_submods)} submodules, more than 64")
    submods = tuple(_submodule(str(name), body, ietf) for name, body in raw_submods.items())
    worst = max(s.status for s in submods)
    top = claims.get("ear_status" if ietf else "ear.status")
    if top is not None:
        worst = max(worst, Tier.parse(top, "ear_status" if ietf else "ear.status"))
    nonce = claims.get("eat_nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise TokenRejected("malformed", "eat_nonce must be a string")
    cnf = claims.get("cnf")
    x5t = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
    if x5t is not None and not isinstance(x5t, str):
        raise TokenRejected("malformed", "cnf.x5t#S256 must be a string")
    verifier = claims.get("ear_verifier_id" if ietf else "ear.verifier-id")
    return EarClaims(
        token_sha256=digest, profile=str(profile), key_name=key_name,
        issued_at=_time(claims, "iat", required=True) or datetime.min.replace(tzinfo=UTC),
        expires_at=_time(claims, "exp", required=False), status=worst, submods=submods, nonce=nonce,
        cnf_x5t_s256=x5t,
        verifier_id={str(k): str(v)[:200] for k, v in verifier.items()} if isinstance(verifier, dict) else {},
    )


@dataclass(frozen=True)
class DeviceBinding:
    """What trustport knows about the device's certificate, to bind a result to it (hex SHA-256 digests)."""

    spki_sha256: str | None = None  # over the EAP-TLS certificate's DER SubjectPublicKeyInfo
    cert_sha256: str | None = None  # over the DER certificate (its fingerprint)
    issued_nonces: frozenset[str] = frozenset()


def check_binding(claims: EarClaims, device: DeviceBinding) -> str:
    """How the result is bound to the device ('akpub', 'nonce' or 'cnf'); raises TokenRejected otherwise.

    An attested key that differs from the device's is a hard failure: the token belongs to another device,
    whatever else it carries.
    """
    if claims.akpubs and device.spki_sha256 is not None:
        if device.spki_sha256 in {hashlib.sha256(k).hexdigest() for k in claims.akpubs}:
            return "akpub"
        raise TokenRejected("binding", "the attested key (akpub) is not this device's certificate key: "
                                       "the result belongs to another device")
    if claims.nonce is not None and claims.nonce in device.issued_nonces:
        return "nonce"
    if claims.cnf_x5t_s256 is not None and device.cert_sha256 is not None:
        expected = base64.urlsafe_b64encode(bytes.fromhex(device.cert_sha256)).rstrip(b"=").decode()
        if claims.cnf_x5t_s256.rstrip("=") == expected:
            return "cnf"
        raise TokenRejected("binding", "cnf.x5t#S256 is not this device's certificate thumbprint")
    if claims.nonce is not None:
        raise TokenRejected("binding", "eat_nonce was not issued by trustport for this device")
    if claims.akpubs:
        raise TokenRejected("binding", "the result attests a key, but this device's certificate key is not known "
                                       "(register it with its certificate, or send the certificate with the result)")
    raise TokenRejected("binding", "the result carries no akpub, eat_nonce or cnf claim to bind it to a device")


@dataclass(frozen=True)
class StoredAttestation:
    """One received attestation result as the registry keeps it (accepted or refused, with reasons)."""

    device_id: int
    received_at: datetime
    token: str
    token_sha256: str
    accepted: bool
    status: Tier | None
    issued_at: datetime | None
    expires_at: datetime | None
    binding: str | None
    bound_cert_serial: str | None
    vector: Mapping[str, Mapping[str, int]]
    reasons: tuple[str, ...]
    id: int | None = None


@dataclass(frozen=True)
class AttestationStanding:
    """A device's attestation at decision time: its tier, or None when missing, expired or not bound."""

    tier: Tier | None
    detail: str
    vector: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.tier.name.lower() if self.tier is not None else "missing"
