"""Hostile attestation results: every malformed header and claim type, confusable statuses, rollback and replay.

Each token here is signed with the configured verifier key (a buggy or compromised verifier, or a token altered
before signing), so the signature is not what stops it: the header and claim checks are. Every one must end as
``TokenRejected`` with its reason code, never another exception, and leave the device's standing as it was.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from policy.attestation import IETF_PROFILE, VERAISON_PROFILE, StoredAttestation, Tier, TokenRejected, token_hash
from policy.model import DeviceRecord
from policy.x509facts import facts_from_certificate
from tests.attest_env import API_TOKEN, AttestEnv, make_env
from tests.pki_fixtures import DevicePki
from trustport.api import create_app
from trustport.cli.main import cli
from trustport.services.attestation import AttestationService
from trustport.services.attestation_gate import AttestationGate
from trustport.services.trust import TrustMaterial
from trustport.store.attestation import SqlAttestationStore
from trustport.store.schema import attestation_results, attestation_seen
from trustport_lab.fake_verifier import ear_claims, sign

NOW = datetime.now(UTC).replace(microsecond=0)
CURRENT_IAT = NOW - timedelta(minutes=10)  # the device's current (contraindicated) result
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
_ES256 = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class World:
    env: AttestEnv
    service: AttestationService
    device: DeviceRecord
    other: DeviceRecord

    def akpub(self, name: str = "ldevid-ok") -> bytes:
        return self.env.akpub(name)

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Well-formed claims bound to the device by akpub; ``changes`` set (or, with DROP, remove) claims
        (``ear__status`` is ``ear.status``, ``_dash_`` a hyphen)."""
        out = ear_claims(status="affirming", issued_at=NOW, akpub=self.akpub())
        for spelled, value in changes.items():
            name = spelled.replace("__", ".").replace("_dash_", "-")
            if value is DROP:
                out.pop(name, None)
            else:
                out[name] = value
        return out

    def submod(self, **changes: Any) -> dict[str, Any]:
        claims = self.claims()
        body = claims["submods"]["device"]
        for spelled, value in changes.items():
            name = spelled.replace("__", ".").replace("_dash_", "-")
            if value is DROP:
                body.pop(name, None)
            else:
                body[name] = value
        return claims

    def raw(self, header: bytes | dict[str, Any], claims: bytes | dict[str, Any]) -> str:
        """Sign exactly these header and payload bytes (PyJWT would normalise them)."""
        head = header if isinstance(header, bytes) else json.dumps(header).encode()
        body = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
        signing_input = f"{_b64(head)}.{_b64(body)}"
        assert isinstance(self.env.verifier, ec.EllipticCurvePrivateKey)  # make_env's verifier is P-256
        return f"{signing_input}.{_b64(_ES256.sign(signing_input.encode(), self.env.verifier))}"

    def with_header(self, **changes: Any) -> str:
        header: dict[str, Any] = {"alg": "ES256", "typ": "JWT"}
        for name, value in changes.items():
            if value is DROP:
                header.pop(name, None)
            else:
                header[name] = value
        return self.raw(header, self.claims())

    def with_claims(self, claims: dict[str, Any] | bytes) -> str:
        return self.raw({"alg": "ES256", "typ": "JWT"}, claims)

    def current(self) -> StoredAttestation | None:
        return self.service.results.latest_accepted(self.device.id)

    def standing(self) -> Tier | None:
        """What the RADIUS hook would use for the device right now."""
        settings = self.env.config.hook_settings().attestation
        assert settings is not None
        facts = facts_from_certificate(self.env.pki.devices["ldevid-ok"].cert, self.env.pki.cas["ldevid"].cert)
        return AttestationGate(settings, SqlAttestationStore(self.env.store)).standing(self.device, facts, NOW).tier


DROP = object()


def services(env: AttestEnv) -> AttestationService:
    settings = env.config.hook_settings()
    trust = TrustMaterial.load(settings.anchors, settings.crl_dir, 30, time.monotonic)
    return AttestationService(settings.attestation, env.store, trust)


def build_world(pki: DevicePki, tmp_path: Path) -> World:
    env = make_env(pki, tmp_path)
    env.store.ensure_schema()  # the registry exists before the API's own store opens it
    device = env.register("ldevid-ok", NOW, seen=True)
    other = env.register("idevid-ok", NOW)
    service = services(env)
    world = World(env, service, device, other)
    first = service.import_token(sign(ear_claims(status="contraindicated", issued_at=CURRENT_IAT,
                                                 akpub=world.akpub()), env.verifier), NOW)
    assert first.accepted and first.stored.status is Tier.CONTRAINDICATED
    return world


@pytest.fixture(scope="module")
def shared(pki: DevicePki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One registry for the stateless table: no refused token stores anything."""
    world = build_world(pki, tmp_path_factory.mktemp("hostile"))
    yield world
    world.env.store.close()


@pytest.fixture
def world(pki: DevicePki, tmp_path: Path) -> Iterator[World]:
    fresh = build_world(pki, tmp_path)
    yield fresh
    fresh.env.store.close()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _claims_bytes(w: World, extra: bytes) -> bytes:
    """The well-formed claims with raw JSON text ``extra`` spliced in as the last member(s)."""
    return json.dumps(w.claims()).encode()[:-1] + b", " + extra + b"}"


def _raw_iat(w: World, raw: bytes) -> bytes:
    """The claims with iat written as the JSON text ``raw``."""
    claims = w.claims()
    claims["iat"] = "@IAT@"
    return json.dumps(claims).encode().replace(b'"@IAT@"', raw)


Make = Callable[[World], str]


def _veraison_status(value: object) -> Make:
    return lambda w: w.with_claims(w.submod(ear__status=value))


def _ietf_status(value: object) -> Make:
    return lambda w: w.with_claims(_ietf(w, ear_status=value))


HEADERS: list[tuple[str, Make, str]] = [
    ("header is an array", lambda w: w.raw(b'["ES256"]', w.claims()), "malformed"),
    ("header is a string", lambda w: w.raw(b'"ES256"', w.claims()), "malformed"),
    ("header is null", lambda w: w.raw(b"null", w.claims()), "malformed"),
    ("header is a huge number", lambda w: w.raw(b"1e999", w.claims()), "malformed"),
    ("header is not UTF-8", lambda w: w.raw(b'{"alg":"ES256","kid":"\xff"}', w.claims()), "malformed"),
    ("header is UTF-16", lambda w: w.raw('{"alg":"ES256"}'.encode("utf-16"), w.claims()), "malformed"),
    ("header repeats alg", lambda w: w.raw(b'{"alg":"HS256","alg":"ES256"}', w.claims()), "malformed"),
    ("header has NaN", lambda w: w.raw(b'{"alg":"ES256","x":NaN}', w.claims()), "malformed"),
    ("header nested 40 deep", lambda w: w.raw(b'{"alg":"ES256","x":' + _nested(40) + b"}", w.claims()),
     "malformed"),
    ("header nested 3000 deep", lambda w: w.raw(b'{"alg":"ES256","x":' + _nested(3000) + b"}", w.claims()),
     "oversize"),
    ("header oversize", lambda w: w.with_header(x="x" * 5000), "oversize"),
    ("header not base64url", lambda w: "e30!." + w.with_header().split(".", 1)[1], "malformed"),
    ("alg is a list", lambda w: w.with_header(alg=["ES256"]), "algorithm"),
    ("alg in lower case", lambda w: w.with_header(alg="es256"), "algorithm"),
    ("alg missing", lambda w: w.with_header(alg=DROP), "algorithm"),
    ("alg null", lambda w: w.with_header(alg=None), "algorithm"),
    ("kid is a number", lambda w: w.with_header(kid=1), "malformed"),
    ("kid is a list", lambda w: w.with_header(kid=["veraison"]), "malformed"),
    ("kid is an object", lambda w: w.with_header(kid={"name": "veraison"}), "malformed"),
    ("kid is true", lambda w: w.with_header(kid=True), "malformed"),
    ("kid is null", lambda w: w.with_header(kid=None), "malformed"),
    ("kid is empty", lambda w: w.with_header(kid=""), "malformed"),
    ("kid is too long", lambda w: w.with_header(kid="v" * 300), "malformed"),
    ("kid has a lone surrogate", lambda w: w.with_header(kid="veraison\ud800"), "malformed"),
    ("kid names no key", lambda w: w.with_header(kid="someone-else"), "no-key"),
    ("typ of another token kind", lambda w: w.with_header(typ="at+jwt"), "typ"),
    ("typ JOSE+JSON", lambda w: w.with_header(typ="JOSE+JSON"), "typ"),
    ("typ full-width JWT", lambda w: w.with_header(typ="\uff2a\uff37\uff34"), "typ"),
    ("typ is a number", lambda w: w.with_header(typ=1), "malformed"),
    ("typ is a list", lambda w: w.with_header(typ=["JWT"]), "malformed"),
    ("cty nested JWT", lambda w: w.with_header(cty="JWT"), "typ"),
    ("crit is a string", lambda w: w.with_header(crit="exp"), "malformed"),
    ("crit is empty", lambda w: w.with_header(crit=[]), "malformed"),
    ("crit is null", lambda w: w.with_header(crit=None), "malformed"),
    ("crit holds a number", lambda w: w.with_header(crit=[1]), "malformed"),
    ("crit repeats a name", lambda w: w.with_header(crit=["x", "x"], x=1), "malformed"),
    ("crit names an unknown extension", lambda w: w.with_header(crit=["urn:example:ext"],
                                                                **{"urn:example:ext": True}), "crit"),
    ("crit names exp", lambda w: w.with_header(crit=["exp"], exp=1), "crit"),
    ("crit b64 unencoded payload", lambda w: w.with_header(crit=["b64"], b64=False), "crit"),
    ("b64 without crit", lambda w: w.with_header(b64=False), "crit"),
]

STATUSES: list[tuple[str, object]] = [
    ("upper case", "AFFIRMING"), ("title case", "Affirming"), ("dotless i", "aff\u0131rming"),
    ("ffi ligature", "a\ufb03rming"), ("full-width", "\uff41\uff46\uff46\uff49\uff52\uff4d\uff49\uff4e\uff47"),
    ("leading space", " affirming"), ("zero-width space", "affirming\u200b"), ("NUL", "affirming\x00"),
    ("empty", ""), ("true", True), ("float", 2.0), ("out of range", 128), ("below range", -129),
    ("beyond I-JSON", 10**30), ("list", ["affirming"]), ("object", {"status": "affirming"}), ("null", None),
]

CLAIMS: list[tuple[str, Make, str]] = [
    ("claims are an array", lambda w: w.with_claims(b"[]"), "malformed"),
    ("claims are a string", lambda w: w.with_claims(b'"affirming"'), "malformed"),
    ("claims are not UTF-8", lambda w: w.with_claims(_claims_bytes(w, b'"x": "\xff"')), "malformed"),
    ("claims repeat eat_profile", lambda w: w.with_claims(_claims_bytes(w, b'"eat_profile": "tag:other"')),
     "malformed"),
    ("submod repeats its status", lambda w: w.with_claims(json.dumps(w.claims()).encode().replace(
        b'"ear.status": "affirming"', b'"ear.status": "contraindicated", "ear.status": "affirming"')), "malformed"),
    ("eat_profile is a list", lambda w: w.with_claims(w.claims(eat_profile=[VERAISON_PROFILE])), "profile"),
    ("eat_profile is an object", lambda w: w.with_claims(w.claims(eat_profile={"p": VERAISON_PROFILE})), "profile"),
    ("eat_profile is a number", lambda w: w.with_claims(w.claims(eat_profile=1)), "profile"),
    ("eat_profile is null", lambda w: w.with_claims(w.claims(eat_profile=None)), "profile"),
    ("eat_profile missing", lambda w: w.with_claims(w.claims(eat_profile=DROP)), "profile"),
    ("eat_profile in upper case", lambda w: w.with_claims(w.claims(eat_profile=VERAISON_PROFILE.upper())),
     "profile"),
    ("eat_profile with a trailing space", lambda w: w.with_claims(w.claims(eat_profile=VERAISON_PROFILE + " ")),
     "profile"),
    ("iat is a string", lambda w: w.with_claims(w.claims(iat=str(int(NOW.timestamp())))), "malformed"),
    ("iat is true", lambda w: w.with_claims(w.claims(iat=True)), "malformed"),
    ("iat is null", lambda w: w.with_claims(w.claims(iat=None)), "malformed"),
    ("iat is a list", lambda w: w.with_claims(w.claims(iat=[int(NOW.timestamp())])), "malformed"),
    ("iat is an object", lambda w: w.with_claims(w.claims(iat={"t": 1})), "malformed"),
    ("iat is negative", lambda w: w.with_claims(w.claims(iat=-1)), "malformed"),
    ("iat missing", lambda w: w.with_claims(w.claims(iat=DROP)), "malformed"),
    ("iat is NaN", lambda w: w.with_claims(_raw_iat(w, b"NaN")), "malformed"),
    ("iat is Infinity", lambda w: w.with_claims(_raw_iat(w, b"-Infinity")), "malformed"),
    ("iat is 1e999", lambda w: w.with_claims(_raw_iat(w, b"1e999")), "malformed"),
    ("iat beyond I-JSON", lambda w: w.with_claims(w.claims(iat=10**30)), "malformed"),
    ("iat of 5000 digits", lambda w: w.with_claims(_raw_iat(w, b"9" * 5000)), "malformed"),
    ("iat after year 9999", lambda w: w.with_claims(w.claims(iat=253402300800)), "malformed"),
    ("iat in the future", lambda w: w.with_claims(w.claims(iat=int(NOW.timestamp()) + 3600)), "not-yet-valid"),
    ("exp is a string", lambda w: w.with_claims(w.claims(exp="tomorrow")), "malformed"),
    ("exp is false", lambda w: w.with_claims(w.claims(exp=False)), "malformed"),
    ("exp has passed", lambda w: w.with_claims(w.claims(exp=int(NOW.timestamp()) - 3600)), "expired"),
    ("nbf is a string", lambda w: w.with_claims(w.claims(nbf="now")), "malformed"),
    ("nbf is in the future", lambda w: w.with_claims(w.claims(nbf=int(NOW.timestamp()) + 3600)), "not-yet-valid"),
    ("submods is a list", lambda w: w.with_claims(w.claims(submods=[{"ear.status": "affirming"}])), "malformed"),
    ("submods is a string", lambda w: w.with_claims(w.claims(submods="device")), "malformed"),
    ("submods is empty", lambda w: w.with_claims(w.claims(submods={})), "malformed"),
    ("submods is null", lambda w: w.with_claims(w.claims(submods=None)), "malformed"),
    ("a submod is a list", lambda w: w.with_claims(w.claims(submods={"d": ["affirming"]})), "malformed"),
    ("a submod is a string", lambda w: w.with_claims(w.claims(submods={"d": "affirming"})), "malformed"),
    ("a submod is null", lambda w: w.with_claims(w.claims(submods={"d": None})), "malformed"),
    ("a submod has no status", lambda w: w.with_claims(w.submod(ear__status=DROP)), "malformed"),
    ("65 submods", lambda w: w.with_claims(w.claims(submods={f"s{i}": {"ear.status": "affirming"}
                                                            for i in range(65)})), "oversize"),
    ("top-level status in upper case", lambda w: w.with_claims(w.claims(ear__status="AFFIRMING")), "malformed"),
    ("vector is a string", lambda w: w.with_claims(w.submod(ear__trustworthiness_dash_vector="good")),
     "malformed"),
    ("vector level is true", lambda w: w.with_claims(w.submod(ear__trustworthiness_dash_vector={"hardware": True})),
     "malformed"),
    ("vector level is a float", lambda w: w.with_claims(w.submod(
        ear__trustworthiness_dash_vector={"hardware": 2.5})), "malformed"),
    ("vector claim in another case", lambda w: w.with_claims(w.submod(
        ear__trustworthiness_dash_vector={"Hardware": 2})), "malformed"),
    ("policy id is a number", lambda w: w.with_claims(w.submod(ear__appraisal_dash_policy_dash_id=7)), "malformed"),
    ("policy id is a list", lambda w: w.with_claims(w.submod(ear__appraisal_dash_policy_dash_id=["p"])),
     "malformed"),
    ("IETF policy ids not a list", lambda w: w.with_claims(_ietf(w, ear_appraisal_policy_ids="p")), "malformed"),
    ("IETF policy ids hold a number", lambda w: w.with_claims(_ietf(w, ear_appraisal_policy_ids=[1])), "malformed"),
    ("key attestation is a string", lambda w: w.with_claims(w.submod(ear__veraison__key_dash_attestation="k")),
     "malformed"),
    ("akpub is a number", lambda w: w.with_claims(w.submod(ear__veraison__key_dash_attestation={"akpub": 1})),
     "malformed"),
    ("akpub is not DER", lambda w: w.with_claims(w.submod(ear__veraison__key_dash_attestation={"akpub": "AAAA"})),
     "malformed"),
    ("akpub has spaces", lambda w: w.with_claims(w.submod(ear__veraison__key_dash_attestation={
        "akpub": " " + _b64(w.akpub())})), "malformed"),
    ("eat_nonce is a number", lambda w: w.with_claims(w.claims(eat_nonce=1)), "malformed"),
    ("eat_nonce is a list", lambda w: w.with_claims(w.claims(eat_nonce=["n"])), "malformed"),
    ("eat_nonce is empty", lambda w: w.with_claims(w.claims(eat_nonce="")), "malformed"),
    ("cnf is a string", lambda w: w.with_claims(w.claims(cnf="x5t")), "malformed"),
    ("cnf thumbprint is a number", lambda w: w.with_claims(w.claims(cnf={"x5t#S256": 1})), "malformed"),
    ("verifier id is a string", lambda w: w.with_claims(w.claims(ear__verifier_dash_id="veraison")), "malformed"),
    ("verifier id holds a number", lambda w: w.with_claims(w.claims(ear__verifier_dash_id={"build": 1})),
     "malformed"),
    ("verifier id has a lone surrogate", lambda w: w.with_claims(w.claims(
        ear__verifier_dash_id={"build": "v\udfff"})), "malformed"),
    ("jti is a number", lambda w: w.with_claims(w.claims(jti=42)), "malformed"),
    ("jti is a list", lambda w: w.with_claims(w.claims(jti=["a"])), "malformed"),
    ("jti is empty", lambda w: w.with_claims(w.claims(jti="")), "malformed"),
    ("jti is too long", lambda w: w.with_claims(w.claims(jti="j" * 300)), "malformed"),
    ("garbage nested 40 deep", lambda w: w.with_claims(_claims_bytes(w, b'"x": ' + _nested(40))), "malformed"),
    ("garbage nested 20000 deep", lambda w: w.with_claims(_claims_bytes(w, b'"x": ' + _nested(20000))),
     "malformed"),
    ("oversize token", lambda w: w.with_claims(w.claims(padding="p" * 70_000)), "oversize"),
    *[(f"status {name}", _veraison_status(value), "malformed") for name, value in STATUSES],
    *[(f"IETF status {name}", _ietf_status(value), "malformed") for name, value in STATUSES],
]


def _ietf(w: World, **submod: Any) -> dict[str, Any]:
    claims = ear_claims(status="affirming", issued_at=NOW, profile=IETF_PROFILE, akpub=w.akpub())
    claims["submods"]["device"].update(submod)
    return claims


HOSTILE = HEADERS + CLAIMS


@pytest.mark.parametrize(("name", "make", "reason"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_token_is_refused_and_changes_nothing(shared: World, name: str, make: Make, reason: str) -> None:
    before = shared.current()
    token = make(shared)
    with pytest.raises(TokenRejected) as caught:
        shared.service.import_token(token, NOW, device_ref=str(shared.device.id))
    assert caught.value.reason == reason, f"{name}: {caught.value}"
    assert str(caught.value)  # a message that says what failed
    after = shared.current()
    assert before is not None and after is not None
    assert (after.id, after.status) == (before.id, Tier.CONTRAINDICATED)
    assert shared.standing() is Tier.CONTRAINDICATED


@pytest.mark.parametrize("header", [{"alg": "ES256"}, {"alg": "ES256", "typ": "JWT"}, {"alg": "ES256", "typ": "jwt"},
                                    {"alg": "ES256", "typ": "application/jwt"}, {"alg": "ES256", "typ": "eat+jwt"},
                                    {"alg": "ES256", "kid": "veraison"}, {"alg": "ES256", "jwk": {"kty": "EC"}}])
def test_well_formed_headers_still_verify(shared: World, header: dict[str, Any]) -> None:
    """The control for the table: the same claims under an acceptable header verify (nothing is stored)."""
    claims = shared.service.verify(shared.raw(header, shared.claims(jti="control")), NOW)
    assert claims.status is Tier.AFFIRMING and claims.jti == "control"


def test_fractional_iat_still_verifies(shared: World) -> None:
    claims = shared.service.verify(shared.with_claims(_raw_iat(shared, str(NOW.timestamp() - 0.5).encode())), NOW)
    assert claims.issued_at == NOW - timedelta(seconds=0.5)


@pytest.mark.parametrize("status", ["none", "affirming", "warning", "contraindicated", 0, 2, 32, 96, -1])
def test_exact_status_spellings_still_verify(shared: World, status: str | int) -> None:
    claims = shared.service.verify(shared.with_claims(shared.submod(ear__status=status)), NOW)
    assert claims.status in Tier


# -- rollback and replay -------------------------------------------------------------------------------------

def _token(w: World, status: str, iat: datetime, *, device: str = "ldevid-ok", **claims: Any) -> str:
    body = ear_claims(status=status, issued_at=iat, akpub=w.akpub(device))
    body.update(claims)
    return sign(body, w.env.verifier)


def test_older_affirming_token_after_newer_contraindicated_is_stale(world: World) -> None:
    before = world.current()
    old_affirming = _token(world, "affirming", CURRENT_IAT - timedelta(minutes=5))  # received later, issued before
    with pytest.raises(TokenRejected) as caught:
        world.service.import_token(old_affirming, NOW)
    assert caught.value.reason == "stale" and "before the device's current result" in str(caught.value)
    current = world.current()
    assert current is not None and before is not None
    assert (current.id, current.status) == (before.id, Tier.CONTRAINDICATED)
    assert world.standing() is Tier.CONTRAINDICATED  # the hook still quarantines it


def test_same_instant_different_token_is_rollback(world: World) -> None:
    twin = _token(world, "affirming", CURRENT_IAT)
    with pytest.raises(TokenRejected) as caught:
        world.service.import_token(twin, NOW)
    assert caught.value.reason == "rollback"
    current = world.current()
    assert current is not None and current.status is Tier.CONTRAINDICATED


def test_newer_result_still_replaces_the_current_one(world: World) -> None:
    outcome = world.service.import_token(_token(world, "affirming", NOW), NOW)
    assert outcome.accepted
    current = world.current()
    assert current is not None and (current.id, current.status) == (outcome.stored.id, Tier.AFFIRMING)


def test_current_is_newest_by_issue_time_not_arrival(world: World) -> None:
    """Rows as an older trustport may have stored them: the later arrival was issued earlier."""
    newer = world.service.results.latest_accepted(world.device.id)
    assert newer is not None and newer.issued_at is not None
    older = StoredAttestation(**{**newer.__dict__, "id": None, "token_sha256": "0" * 64,
                                 "issued_at": newer.issued_at - timedelta(minutes=30), "status": Tier.AFFIRMING,
                                 "received_at": NOW + timedelta(minutes=1)})
    world.service.results.save_result(older)
    current = world.current()
    assert current is not None and (current.id, current.status) == (newer.id, Tier.CONTRAINDICATED)


def test_replay_of_the_same_token_is_refused(world: World) -> None:
    token = _token(world, "warning", NOW)
    assert world.service.import_token(token, NOW).accepted
    for padded in (token, f"  {token}\n"):
        with pytest.raises(TokenRejected) as caught:
            world.service.import_token(padded, NOW + timedelta(seconds=5))
        assert caught.value.reason == "replay"


def test_replay_for_another_device_is_refused(world: World) -> None:
    token = _token(world, "affirming", NOW)
    assert world.service.import_token(token, NOW, device_ref=str(world.device.id)).accepted
    with pytest.raises(TokenRejected) as caught:
        world.service.import_token(token, NOW, device_ref=str(world.other.id))
    assert caught.value.reason == "replay" and f"device #{world.device.id}" in str(caught.value)


def test_a_refused_token_is_seen_too(world: World) -> None:
    """A token stored as refused (another device's key) cannot be tried again against another device."""
    foreign = _token(world, "affirming", NOW, device="idevid-ok")
    assert not world.service.import_token(foreign, NOW, device_ref=str(world.device.id)).accepted
    with pytest.raises(TokenRejected) as caught:
        world.service.import_token(foreign, NOW, device_ref=str(world.other.id))
    assert caught.value.reason == "replay"


def test_replay_by_jti_is_refused_for_any_device(world: World) -> None:
    assert world.service.import_token(_token(world, "affirming", NOW - timedelta(minutes=1), jti="ear-1"),
                                      NOW).accepted
    same_id_newer = _token(world, "affirming", NOW, jti="ear-1")  # a different token, the same token id
    with pytest.raises(TokenRejected) as caught:
        world.service.import_token(same_id_newer, NOW)
    assert caught.value.reason == "replay" and "jti" in str(caught.value)
    with pytest.raises(TokenRejected) as elsewhere:
        world.service.import_token(_token(world, "affirming", NOW, device="idevid-ok", jti="ear-1"), NOW,
                                   device_ref=str(world.other.id))
    assert elsewhere.value.reason == "replay"
    assert world.service.import_token(_token(world, "warning", NOW, jti="ear-2"), NOW).accepted  # the control


def test_racing_copies_of_one_token_store_it_once(world: World) -> None:
    token = _token(world, "affirming", NOW)
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def post() -> None:
        start.wait()
        try:
            world.service.import_token(token, NOW)
            outcomes.append("accepted")
        except TokenRejected as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes) == ["accepted", "replay", "replay", "replay"]
    assert sum(r.token_sha256 == world.current().token_sha256 for r in world.service.results.results(  # type: ignore[union-attr]
        world.device.id)) == 1


def test_rest_api_refuses_stale_and_replay(world: World) -> None:
    client = TestClient(create_app(world.env.config, clock=lambda: NOW))
    stale = client.post("/v1/attestation-results", headers=AUTH,
                        json={"token": _token(world, "affirming", CURRENT_IAT - timedelta(minutes=1))})
    assert stale.status_code == 422 and stale.json()["detail"]["reason"] == "stale"
    fresh = _token(world, "warning", NOW)
    assert client.post("/v1/attestation-results", headers=AUTH, json={"token": fresh}).status_code == 201
    again = client.post("/v1/attestation-results", headers=AUTH, json={"token": fresh})
    assert again.status_code == 422 and again.json()["detail"]["reason"] == "replay"
    current = world.current()
    assert current is not None and current.status is Tier.WARNING


def test_cli_import_refuses_stale_and_replay(world: World, tmp_path: Path) -> None:
    c = ("--config", str(world.env.config_path))
    old = tmp_path / "old.jwt"
    old.write_text(_token(world, "affirming", CURRENT_IAT - timedelta(minutes=1)))
    refused = CliRunner().invoke(cli, ["attest", "import", str(old), "--json", *c])
    assert refused.exit_code == 1 and json.loads(refused.output)["reason"] == "stale", refused.output
    fresh = tmp_path / "fresh.jwt"
    fresh.write_text(_token(world, "warning", datetime.now(UTC).replace(microsecond=0)))
    assert CliRunner().invoke(cli, ["attest", "import", str(fresh), *c]).exit_code == 0
    again = CliRunner().invoke(cli, ["attest", "import", str(fresh), *c])
    assert again.exit_code == 1 and "refused (replay)" in again.output
    current = world.current()
    assert current is not None and current.status is Tier.WARNING


def test_hostile_token_through_the_rest_api_is_a_422_problem(shared: World) -> None:
    client = TestClient(create_app(shared.env.config, clock=lambda: NOW))
    for name, make, reason in HOSTILE[::7]:
        reply = client.post("/v1/attestation-results", headers=AUTH, json={"token": make(shared)})
        if reason == "oversize" and reply.status_code == 422 and reply.json()["detail"]["reason"] == "invalid-request":
            continue  # longer than the request model allows: refused before verification
        assert (reply.status_code, reply.json()["detail"]["reason"]) == (422, reason), name


@pytest.mark.parametrize(("name", "make", "reason"), HOSTILE[::5], ids=[case[0] for case in HOSTILE[::5]])
def test_gate_refuses_a_hostile_token_found_in_the_registry(shared: World, name: str, make: Make,
                                                            reason: str) -> None:
    """A row written behind trustport's back (or by an older version) is re-parsed at authentication time with
    the same checks: the device gets no attestation standing from it, and the hook gets no exception."""
    token = make(shared)
    current = shared.current()
    assert current is not None
    planted = StoredAttestation(**{**current.__dict__, "id": None, "token": token,
                                   "token_sha256": token_hash(token), "issued_at": NOW + timedelta(hours=2),
                                   "status": Tier.AFFIRMING})
    gate = AttestationGate(shared.env.config.hook_settings().attestation,  # type: ignore[arg-type]
                           SqlAttestationStore(shared.env.store))
    facts = facts_from_certificate(shared.env.pki.devices["ldevid-ok"].cert, shared.env.pki.cas["ldevid"].cert)
    stored = shared.service.results.save_result(planted)
    try:
        standing = gate.standing(shared.device, facts, NOW)
        assert standing.tier is None and "no longer acceptable" in standing.detail, name
    finally:
        with shared.env.store.transaction("removing the planted row") as conn:
            conn.execute(attestation_results.delete().where(attestation_results.c.id == stored.id))
            conn.execute(attestation_seen.delete().where(attestation_seen.c.token_sha256 == stored.token_sha256))
    assert shared.current() == current
