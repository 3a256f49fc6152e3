"""A stand-in attestation verifier for the lab and the tests: signs EAR tokens in both spellings.

Real deployments receive tokens from Veraison/Keylime; this only exists so the whole path can be shown and
tested without one. It never runs in the RADIUS hook.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from policy.attestation import IETF_PROFILE, VERAISON_PROFILE

SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def new_signing_key(kind: str = "p256") -> SigningKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP384R1() if kind == "p384" else ec.SECP256R1())


def algorithm_of(key: SigningKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "ES384" if key.curve.name == "secp384r1" else "ES256"


def public_jwk(key: SigningKey) -> str:
    """The verification key as Veraison publishes it (JWK)."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return jwt.algorithms.OKPAlgorithm.to_jwk(public)
    return jwt.algorithms.ECAlgorithm.to_jwk(public)


def write_public_jwk(key: SigningKey, path: Path) -> Path:
    path.write_text(public_jwk(key), encoding="utf-8")
    return path


def ear_claims(*, status: str, issued_at: datetime, profile: str = VERAISON_PROFILE, akpub: bytes | None = None,
               nonce: str | None = None, cnf_x5t: str | None = None, expires_at: datetime | None = None,
               submod: str = "device", vector: dict[str, int] | None = None) -> dict[str, Any]:
    import base64

    ietf = profile == IETF_PROFILE
    body: dict[str, Any] = {("ear_status" if ietf else "ear.status"): status}
    vector = vector if vector is not None else {"instance-identity": 2, "executables": 2, "hardware": 2}
    body["ear_trustworthiness_vector" if ietf else "ear.trustworthiness-vector"] = vector
    if ietf:
        body["ear_appraisal_policy_ids"] = ["policy://trustport-lab/1"]
    else:
        body["ear.appraisal-policy-id"] = "policy://trustport-lab/1"
    if akpub is not None:
        encoded = base64.urlsafe_b64encode(akpub).rstrip(b"=").decode()
        body["ear_veraison_key_attestation" if ietf else "ear.veraison.key-attestation"] = {"akpub": encoded}
    claims: dict[str, Any] = {
        "eat_profile": profile,
        "iat": int(issued_at.timestamp()),
        ("ear_verifier_id" if ietf else "ear.verifier-id"): {"developer": "https://trustport.example/lab",
                                                              "build": "fake-verifier 0.1"},
        "submods": {submod: body},
    }
    if expires_at is not None:
        claims["exp"] = int(expires_at.timestamp())
    if nonce is not None:
        claims["eat_nonce"] = nonce
    if cnf_x5t is not None:
        claims["cnf"] = {"x5t#S256": cnf_x5t}
    return claims


def sign(claims: dict[str, Any], key: SigningKey, *, kid: str | None = None) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm_of(key), headers=headers)


def mint(key: SigningKey, *, status: str, now: datetime, akpub: bytes | None = None, kid: str | None = None,
         lifetime: timedelta = timedelta(hours=1), **kw: Any) -> str:
    return sign(ear_claims(status=status, issued_at=now, akpub=akpub, expires_at=now + lifetime, **kw), key, kid=kid)


__all__ = ["ear_claims", "mint", "new_signing_key", "public_jwk", "sign", "write_public_jwk"]
