"""EAR (EAT Attestation Result) tokens: verification, freshness and binding to the EAP-TLS device.

Both spellings in use are parsed, with the profile pinned: Veraison's (``eat_profile`` =
``tag:github.com,2023:veraison/ear``, ``ear.status``, ``ear.trustworthiness-vector``, ``submods``) and the IETF
draft's (``tag:ietf.org,2026:rats/ear#03``, ``ear_status``, ``ear_trustworthiness_vector``). The JWS is checked
by PyJWT with an explicit algorithm allow-list (ES256, ES384, EdDSA) and keys whose type must match the header's
algorithm: ``alg: none``, HMAC and algorithm/key confusion are refused before any signature math. No clock reads:
callers pass ``now``.

Nothing in a token is trusted to have the type it should: the header and the claims set are parsed here as strict
JSON (UTF-8, no duplicate names, no NaN/Infinity, no lone surrogates, integers within I-JSON range, bounded
nesting) and every header parameter and claim is type-checked before use, so any malformed token ends as
``TokenRejected`` with a reason code, never another exception. Status names are compared exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from policy.errors import AttestationError

VERAISON_PROFILE = "tag:github.com,2023:veraison/ear"
IETF_PROFILE = "tag:ietf.org,2026:rats/ear#03"
PROFILES = frozenset({VERAISON_PROFILE, IETF_PROFILE})
ACCEPTED_ALGORITHMS = ("ES256", "ES384", "EdDSA")
MAX_TOKEN_BYTES = 64 * 1024
MAX_HEADER_BYTES = 4096
MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**53 - 1  # I-JSON (RFC 7493): integers beyond this are not interoperable
MAX_ID_CHARS = 256  # kid, jti
# RFC 7515 4.1.9: typ is case-insensitive and "application/" may be left out; compared as ASCII only.
ACCEPTED_TYPES = frozenset({"jwt", "eat+jwt", "ear+jwt", "eat-ear+jwt"})
VECTOR_CLAIMS = frozenset({"instance-identity", "configuration", "executables", "file-system", "hardware",
                           "runtime-opaque", "storage-opaque", "sourced-data"})
_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_JWS_CODEC = jwt.PyJWS()


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
        """A tier name exactly as AR4SI spells it (lower case), or an AR4SI integer; anything else is refused.

        No case folding: ``"aff\\u0131rming".upper()`` is ``"AFFIRMING"``, and a confusable must not pass for a name.
        """
        if isinstance(value, str):
            tier = _TIER_NAMES.get(value)
            if tier is None:
                raise TokenRejected("malformed", f"{where}: unknown status {value[:40]!r} (expected one of "
                                                 f"{', '.join(_TIER_NAMES)} or an integer -128..127)")
            return tier
        if isinstance(value, int) and not isinstance(value, bool):
            if value in (-1, 0, 1):
                return cls.NONE
            if 2 <= value <= 31:
                return cls.AFFIRMING
            if 32 <= value <= 95:
                return cls.WARNING
            if 96 <= value <= 127:
                return cls.CONTRAINDICATED
        raise TokenRejected("malformed", f"{where}: status must be a tier name or -128..127, "
                                         f"got {_describe(value)}")


_TIER_NAMES: dict[str, Tier] = {tier.name.lower(): tier for tier in Tier}


def _describe(value: object) -> str:
    """A short, safe description of an unexpected JSON value, for messages (never the whole value)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 24 else f"a {len(text)}-digit number"
    if isinstance(value, str):
        return repr(value[:40]) + ("…" if len(value) > 40 else "")
    return f"a JSON {'object' if isinstance(value, dict) else 'array' if isinstance(value, list) else 'value'}"


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
    not_before: datetime | None = None
    jti: str | None = None  # the verifier's token id, when it sets one: a second replay key besides the hash

    @property
    def akpubs(self) -> tuple[bytes, ...]:
        return tuple(s.akpub for s in self.submods if s.akpub is not None)

    def vector(self) -> dict[str, dict[str, int]]:
        return {s.name: dict(s.vector) for s in self.submods}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


# -- strict JSON ---------------------------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:  # RFC 7515 4: reject rather than guess which one another parser would use
            raise TokenRejected("malformed", f"duplicate member name {name[:40]!r}")
        out[name] = value
    return out


def _no_constants(name: str) -> Any:
    raise TokenRejected("malformed", f"{name} is not a JSON number")


def _check_tree(value: Any, where: str) -> None:
    """Bounded depth, finite numbers within I-JSON range, and text that is real Unicode (no lone surrogates)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise TokenRejected("malformed", f"{where}: nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, dict):
            for name, member in item.items():
                _check_text(name, where)
                stack.append((member, depth + 1))
        elif isinstance(item, list):
            stack.extend((member, depth + 1) for member in item)
        elif isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, float) and not math.isfinite(item):
            raise TokenRejected("malformed", f"{where}: a number is out of range")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_JSON_INT:
            raise TokenRejected("malformed", f"{where}: {_describe(item)} is beyond the interoperable range "
                                             f"(±{MAX_JSON_INT})")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TokenRejected("malformed", f"{where}: text with a lone surrogate (\\ud800-\\udfff)") from None


def strict_json(data: bytes, where: str) -> Any:
    """``data`` as JSON, or TokenRejected('malformed'): UTF-8 only, no duplicate names, no NaN/Infinity."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenRejected("malformed", f"{where} is not UTF-8 text") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise TokenRejected("malformed", f"{where} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python converts
        raise TokenRejected("malformed", f"{where} is not valid JSON ({str(exc)[:80]})") from None
    _check_tree(value, where)
    return value


def _b64url(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not _B64URL.match(value):
        raise TokenRejected("malformed", f"{where}: expected a base64url string")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected("malformed", f"{where}: not base64url ({exc})") from exc


def _optional_text(claims: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise TokenRejected("malformed", f"{name} must be a string of 1..{limit} characters, "
                                         f"got {_describe(value)}")
    return value


# -- the JWS header ------------------------------------------------------------------------------------------

def read_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, every parameter trustport looks at type-checked.

    ``crit`` follows RFC 7515 4.1.11: a non-empty list of distinct names, and since trustport implements no
    header extension, any critical extension is refused. ``typ`` must say JWT (or an EAT/EAR JWT); ``cty``
    (nested tokens) is refused. Key-carrying parameters (``jwk``, ``jku``, ``x5c``, ``x5u``) are ignored: keys
    only ever come from the configuration.
    """
    segment = token.split(".", 1)[0]
    if len(segment) > MAX_HEADER_BYTES * 4 // 3 + 4:
        raise TokenRejected("oversize", f"JWS header is longer than {MAX_HEADER_BYTES} bytes")
    header = strict_json(_b64url(segment, "JWS header"), "JWS header")
    if not isinstance(header, dict):
        raise TokenRejected("malformed", f"JWS header must be a JSON object, got {_describe(header)}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ACCEPTED_ALGORITHMS:
        raise TokenRejected("algorithm", f"JWS algorithm {_describe(alg)} is not accepted "
                                         f"(only {', '.join(ACCEPTED_ALGORITHMS)})")
    _optional_text(header, "kid", MAX_ID_CHARS)
    if "typ" in header:
        typ = header["typ"]
        if not isinstance(typ, str):
            raise TokenRejected("malformed", f"JWS header typ must be a string, got {_describe(typ)}")
        bare = typ.lower().removeprefix("application/") if typ.isascii() else typ
        if bare not in ACCEPTED_TYPES:
            raise TokenRejected("typ", f"JWS typ {_describe(typ)} is not an attestation result "
                                       "(expected JWT or eat+jwt)")
    if "cty" in header:
        raise TokenRejected("typ", f"JWS header cty {_describe(header['cty'])}: nested or typed content is "
                                   "not accepted in an attestation result")
    if "crit" in header:
        crit = header["crit"]
        if (not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit)
                or len(set(crit)) != len(crit)):
            raise TokenRejected("malformed", "JWS header crit must be a non-empty list of distinct names "
                                             f"(RFC 7515 4.1.11), got {_describe(crit)}")
        raise TokenRejected("crit", f"critical JWS extension(s) {', '.join(repr(c[:40]) for c in crit[:5])} "
                                    "not understood by trustport; the verifier must not mark extensions critical")
    if "b64" in header:  # RFC 7797 without crit is malformed, and trustport never takes unencoded payloads
        raise TokenRejected("crit", "JWS header b64 (unencoded payload, RFC 7797) is not accepted")
    return header


# -- claims --------------------------------------------------------------------------------------------------

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


def _policy_ids(body: Mapping[str, Any], where: str, ietf: bool) -> tuple[str, ...]:
    if ietf:
        ids = body.get("ear_appraisal_policy_ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 64:
            raise TokenRejected("malformed", f"{where}.ear_appraisal_policy_ids must be a list of strings")
        return tuple(i[:200] for i in ids)
    single = body.get("ear.appraisal-policy-id")
    if single is None:
        return ()
    if not isinstance(single, str):
        raise TokenRejected("malformed", f"{where}.ear.appraisal-policy-id must be a string, "
                                         f"got {_describe(single)}")
    return (single[:200],)


def _submodule(name: str, body: object, ietf: bool) -> Submodule:
    where = f"submods.{name[:40]}"
    if not isinstance(body, dict):
        raise TokenRejected("malformed", f"{where}: must be an object, got {_describe(body)}")
    status_key, vector_key = ("ear_status", "ear_trustworthiness_vector") if ietf else (
        "ear.status", "ear.trustworthiness-vector")
    if status_key not in body:
        raise TokenRejected("malformed", f"{where}: {status_key} is missing")
    policies = _policy_ids(body, where, ietf)
    attestation = body.get("ear_veraison_key_attestation" if ietf else "ear.veraison.key-attestation")
    akpub = None
    if attestation is not None:
        if not isinstance(attestation, dict):
            raise TokenRejected("malformed", f"{where}: key attestation must be an object")
        akpub = _b64url(attestation.get("akpub"), f"{where}.akpub")
        try:
            serialization.load_der_public_key(akpub)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise TokenRejected("malformed", f"{where}.akpub: not a DER SubjectPublicKeyInfo") from exc
    return Submodule(name, Tier.parse(body[status_key], f"{where}.{status_key}"),
                     _vector(body.get(vector_key), f"{where}.{vector_key}"), policies, akpub)


def _time(claims: Mapping[str, Any], name: str, required: bool) -> datetime | None:
    if name not in claims:
        if required:
            raise TokenRejected("malformed", f"claim {name} is missing")
        return None
    value = claims[name]
    if (not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
            or not 0 <= value < 253402300800):
        raise TokenRejected("malformed", f"claim {name} must be a NumericDate (seconds since 1970, before "
                                         f"year 10000), got {_describe(value)}")
    return datetime.fromtimestamp(value, UTC)


def check_fresh(claims: EarClaims, now: datetime, max_age: timedelta, leeway: timedelta) -> None:
    """Raises TokenRejected if the result is not yet valid, expired, or older than ``max_age``."""
    if claims.issued_at > now + leeway:
        raise TokenRejected("not-yet-valid", f"issued at {claims.issued_at.isoformat()}, in the future")
    if claims.not_before is not None and claims.not_before > now + leeway:
        raise TokenRejected("not-yet-valid", f"not valid before {claims.not_before.isoformat()}")
    if claims.expires_at is not None and now > claims.expires_at + leeway:
        raise TokenRejected("expired", f"expired at {claims.expires_at.isoformat()}")
    if now - claims.issued_at > max_age:
        raise TokenRejected("too-old", f"issued at {claims.issued_at.isoformat()}, older than the maximum age "
                                       f"of {int(max_age.total_seconds())} s")


def check_newer(claims: EarClaims, current: StoredAttestation | None) -> None:
    """A result only ever replaces an older one, by the verifier's issue time (``iat``), never by arrival.

    Refuses the device's current token again (``replay``), one issued before it (``stale``: an old affirming
    result replayed after a newer contraindicated one must not lift the quarantine) and a different one issued
    at the same instant (``rollback``: which of the two is newer cannot be told).
    """
    if current is None or current.issued_at is None:
        return
    if claims.token_sha256 == current.token_sha256:
        raise TokenRejected("replay", "this exact result is already the device's current one")
    if claims.issued_at < current.issued_at:
        raise TokenRejected("stale", f"issued at {claims.issued_at.isoformat()}, before the device's current "
                                     f"result (issued {current.issued_at.isoformat()}); an older result never "
                                     "replaces a newer one — have the verifier appraise the device again")
    if claims.issued_at == current.issued_at:
        raise TokenRejected("rollback", f"issued at {claims.issued_at.isoformat()}, the same instant as the "
                                        "device's current result but a different token; have the verifier "
                                        "issue a new result")


def verify_signature(token: str, keys: Iterable[VerifierKey]) -> tuple[dict[str, Any], VerifierKey]:
    """The verified claims set (strict JSON object) and the key that verified it."""
    if not isinstance(token, str):
        raise TokenRejected("malformed", "token must be a string")
    token = token.strip()
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("oversize", f"token is {len(token)} bytes, more than {MAX_TOKEN_BYTES}")
    if not _JWS.match(token):
        raise TokenRejected("malformed", "not a JWS compact serialization (three base64url parts)")
    header = read_header(token)
    alg, kid = header["alg"], header.get("kid")
    candidates = [k for k in keys if k.algorithm == alg and (kid is None or k.name == kid)]
    if not candidates:
        raise TokenRejected("no-key", f"no configured verifier key for algorithm {alg}"
                                      + (f" and kid {kid[:40]!r}" if kid is not None else ""))
    for key in candidates:
        try:
            payload = _JWS_CODEC.decode(token, key.key, algorithms=[alg])
        except jwt.InvalidSignatureError:
            continue
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise TokenRejected("malformed", f"token does not decode: {str(exc)[:120]}") from exc
        claims = strict_json(payload, "claims set")
        if not isinstance(claims, dict):
            raise TokenRejected("malformed", f"claims set must be a JSON object, got {_describe(claims)}")
        return claims, key
    raise TokenRejected("signature", "signature does not verify with any configured verifier key "
                                     f"({', '.join(k.name for k in candidates)})")


def verify_ear(token: str, keys: Iterable[VerifierKey], *, now: datetime, max_age: timedelta,
               leeway: timedelta = timedelta(seconds=30), profiles: frozenset[str] = PROFILES) -> EarClaims:
    claims, key = verify_signature(token, keys)
    claims_obj = parse_claims(claims, token_hash(token.strip()), key.name, profiles)
    check_fresh(claims_obj, now, max_age, leeway)
    return claims_obj


def _verifier_id(claims: Mapping[str, Any], name: str) -> dict[str, str]:
    value = claims.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TokenRejected("malformed", f"{name} must be an object of strings, got {_describe(value)}")
    return {k[:40]: v[:200] for k, v in list(value.items())[:16]}


def parse_claims(claims: Mapping[str, Any], digest: str, key_name: str,
                 profiles: frozenset[str] = PROFILES) -> EarClaims:
    if not isinstance(claims, Mapping):
        raise TokenRejected("malformed", f"claims set must be a JSON object, got {_describe(claims)}")
    profile = claims.get("eat_profile")
    if not isinstance(profile, str) or profile not in profiles:
        raise TokenRejected("profile", f"eat_profile {_describe(profile)} is not accepted "
                                       f"(pinned: {', '.join(sorted(profiles))})")
    ietf = profile == IETF_PROFILE
    raw_submods = claims.get("submods")
    if not isinstance(raw_submods, dict) or not raw_submods:
        raise TokenRejected("malformed", "submods is missing or empty (must be an object of submodules)")
    if len(raw_submods) > 64:
        raise TokenRejected("oversize", f"{len(raw_submods)} submodules, more than 64")
    submods = tuple(_submodule(str(name), body, ietf) for name, body in raw_submods.items())
    worst = max(s.status for s in submods)
    status_key = "ear_status" if ietf else "ear.status"
    if status_key in claims:
        worst = max(worst, Tier.parse(claims[status_key], status_key))
    nonce = _optional_text(claims, "eat_nonce", 1024)
    cnf = claims.get("cnf")
    if cnf is not None and not isinstance(cnf, dict):
        raise TokenRejected("malformed", f"cnf must be an object, got {_describe(cnf)}")
    x5t = _optional_text(cnf, "x5t#S256", 128) if cnf is not None else None
    issued_at = _time(claims, "iat", required=True)
    assert issued_at is not None  # required=True
    return EarClaims(
        token_sha256=digest, profile=profile, key_name=key_name, issued_at=issued_at,
        expires_at=_time(claims, "exp", required=False), status=worst, submods=submods, nonce=nonce,
        cnf_x5t_s256=x5t, verifier_id=_verifier_id(claims, "ear_verifier_id" if ietf else "ear.verifier-id"),
        not_before=_time(claims, "nbf", required=False), jti=_optional_text(claims, "jti", MAX_ID_CHARS),
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
