"""The REST endpoint and the import pipeline, against a real SQLite registry."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from policy.errors import StoreError
from policy.model import LifecycleState
from tests.attest_env import API_TOKEN, AttestEnv
from trustport.api import create_app
from trustport.services.attestation import InvalidDeviceRef, check_device_ref
from trustport.store.attestation import SqlAttestationStore
from trustport_lab.fake_verifier import ear_claims, mint, new_signing_key, sign

NOW = datetime.now(UTC).replace(microsecond=0)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def client(env: AttestEnv) -> TestClient:
    return TestClient(create_app(env.config, clock=lambda: NOW))


def test_affirming_result_is_accepted_and_stored(env: AttestEnv, client: TestClient) -> None:
    device = env.register("ldevid-ok", NOW)
    token = mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("ldevid-ok"))
    reply = client.post("/v1/attestation-results", json={"token": token}, headers=AUTH)  # device found by akpub
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert (body["device_id"], body["accepted"], body["status"], body["binding"]) == (device.id, True, "affirming",
                                                                                      "akpub")
    stored = SqlAttestationStore(env.store).latest_accepted(device.id)
    assert stored is not None and stored.bound_cert_serial == device.cert_serial


def test_another_devices_key_is_stored_as_refused(env: AttestEnv, client: TestClient) -> None:
    env.register("ldevid-ok", NOW)
    victim = env.register("idevid-ok", NOW)
    token = mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("ldevid-ok"))
    reply = client.post("/v1/attestation-results", json={"token": token, "device": "SN-0001"}, headers=AUTH)
    assert reply.status_code == 201
    assert reply.json()["accepted"] is False and "another device" in reply.json()["reasons"][0]
    assert SqlAttestationStore(env.store).latest_accepted(victim.id) is None


@pytest.mark.parametrize(("headers", "code"), [
    ({}, 401), ({"Authorization": "Bearer wrong-token"}, 401), ({"Authorization": f"Basic {API_TOKEN}"}, 401),
    ({"Authorization": API_TOKEN}, 401),
])
def test_unauthenticated(client: TestClient, headers: dict[str, str], code: int) -> None:
    reply = client.post("/v1/attestation-results", json={"token": "a.b.c"}, headers=headers)
    assert reply.status_code == code
    assert reply.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize(("body", "code", "reason"), [
    ({"token": "not-a-jwt"}, 422, "malformed"),
    ({"token": ""}, 422, None),
    ({}, 422, None),
    ({"token": 42}, 422, None),
    ({"token": "a" * 70000}, 422, None),
    ({"token": "eyJhbGciOiJub25lIn0.e30."}, 422, "algorithm"),
])
def test_malformed_requests(client: TestClient, body: dict[str, object], code: int, reason: str | None) -> None:
    reply = client.post("/v1/attestation-results", json=body, headers=AUTH)
    assert reply.status_code == code, reply.text
    if reason:
        assert reply.json()["detail"]["reason"] == reason


def test_garbage_body_and_oversize(client: TestClient) -> None:
    garbage = client.post("/v1/attestation-results", content=b"\xff\x00{",
                          headers={**AUTH, "content-type": "application/json"})
    assert garbage.status_code == 400
    big = client.post("/v1/attestation-results", content=b"x" * 300_000, headers=AUTH)
    assert big.status_code == 413


def test_forged_and_expired_tokens(env: AttestEnv, client: TestClient) -> None:
    env.register("ldevid-ok", NOW)
    forged = mint(new_signing_key(), status="affirming", now=NOW, akpub=env.akpub("ldevid-ok"))
    expired = mint(env.verifier, status="affirming", now=NOW - timedelta(hours=3), akpub=env.akpub("ldevid-ok"))
    for token, reason in ((forged, "signature"), (expired, "expired")):
        reply = client.post("/v1/attestation-results", json={"token": token}, headers=AUTH)
        assert (reply.status_code, reply.json()["detail"]["reason"]) == (422, reason)


def test_unknown_device(client: TestClient, env: AttestEnv) -> None:
    token = mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("rsa2048"))
    reply = client.post("/v1/attestation-results", json={"token": token}, headers=AUTH)
    assert reply.status_code == 404 and reply.json()["detail"]["reason"] == "unknown-device"


def test_certificate_sent_with_result_must_chain(env: AttestEnv, client: TestClient) -> None:
    env.register("ldevid-ok", NOW)
    token = mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("rogue"))
    rogue_pem = env.pki.cert_path("rogue").read_text()
    reply = client.post("/v1/attestation-results", json={"token": token, "certificate": rogue_pem}, headers=AUTH)
    assert reply.status_code == 422 and "trust anchor" in reply.json()["detail"]["message"]


def test_nonce_flow(env: AttestEnv, client: TestClient) -> None:
    device = env.register("idevid-ok", NOW)
    nonce = client.post("/v1/devices/SN-0001/attestation-nonce", headers=AUTH).json()["nonce"]
    token = sign(ear_claims(status="warning", issued_at=NOW, nonce=nonce), env.verifier)
    reply = client.post("/v1/attestation-results", json={"token": token, "device": str(device.id)}, headers=AUTH)
    assert reply.json()["binding"] == "nonce"
    stranger = sign(ear_claims(status="affirming", issued_at=NOW, nonce="made-up"), env.verifier)
    refused = client.post("/v1/attestation-results", json={"token": stranger, "device": "SN-0001"}, headers=AUTH)
    assert refused.json()["accepted"] is False
    listed = client.get("/v1/devices/SN-0001/attestation-results", headers=AUTH).json()
    assert [r["accepted"] for r in listed] == [False, True]


def test_cnf_binding_via_certificate(env: AttestEnv, client: TestClient) -> None:
    env.register("ldevid-ok", NOW)
    der_sha = hashlib.sha256(env.pki.devices["ldevid-ok"].cert.public_bytes(serialization.Encoding.DER)).digest()
    x5t = base64.urlsafe_b64encode(der_sha).rstrip(b"=").decode()
    token = sign(ear_claims(status="affirming", issued_at=NOW, cnf_x5t=x5t), env.verifier)
    reply = client.post("/v1/attestation-results", headers=AUTH,
                        json={"token": token, "certificate": env.pki.cert_path("ldevid-ok").read_text()})
    assert reply.json()["binding"] == "cnf"


def test_drop_of_a_connected_device_requests_reevaluation(env: AttestEnv, client: TestClient) -> None:
    device = env.register("ldevid-ok", NOW, seen=True)
    akpub = env.akpub("ldevid-ok")
    first = client.post("/v1/attestation-results", headers=AUTH,
                        json={"token": mint(env.verifier, status="affirming", now=NOW, akpub=akpub)}).json()
    assert first["reevaluation"] is None
    later = NOW + timedelta(seconds=1)
    dropped = client.post("/v1/attestation-results", headers=AUTH, json={
        "token": mint(env.verifier, status="contraindicated", now=later, akpub=akpub)}).json()
    assert dropped["reevaluation"] == "attestation dropped from affirming to contraindicated"
    (pending,) = SqlAttestationStore(env.store).pending_reevaluations()
    assert pending.device_id == device.id


def test_never_seen_device_needs_no_reevaluation(env: AttestEnv, client: TestClient) -> None:
    env.register("ldevid-ok", NOW, state=LifecycleState.OPERATIONAL)
    reply = client.post("/v1/attestation-results", headers=AUTH, json={
        "token": mint(env.verifier, status="contraindicated", now=NOW, akpub=env.akpub("ldevid-ok"))}).json()
    assert reply["reevaluation"] is None


def test_openapi_documents_the_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/attestation-results"]["post"]
    assert {"201", "401", "404", "422"} <= set(post["responses"])
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(("ref", "ok"), [
    ("1", True), ("007", True), ("9223372036854775807", True), ("SN-0001", True), ("HLD-\u00fc-0205", True),
    ("\u00b2", False), ("1\u00b2", False), ("\u0661\u0662", False), ("\uff11", False), ("0", False), ("-1", False),
    ("+1", False), ("9223372036854775808", False), ("99999999999999999999999", False), ("9" * 5000, False),
    ("", False), (" SN-0001", False), ("SN-0001\n", False), ("SN\x00", False), ("\ud800", False),
    ("\u202eSN", False), ("S" * 129, False),
])
def test_device_refs_are_checked_before_lookup(ref: str, ok: bool) -> None:
    if ok:
        assert check_device_ref(ref) == ref
        return
    with pytest.raises(InvalidDeviceRef) as caught:
        check_device_ref(ref)
    assert "registry id" in str(caught.value)


def test_database_outage_is_503_not_500(env: AttestEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    env.register("ldevid-ok", NOW)
    token = mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("ldevid-ok"))

    def down(*_args: object, **_kwargs: object) -> None:
        raise StoreError("reading failed on database sqlite:///registry.sqlite: disk I/O error; check the disk")

    store = client.app.state.store  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "transaction", down)
    monkeypatch.setattr(store, "find_by_spki", down)
    monkeypatch.setattr(store, "ping", down)
    for reply in (client.post("/v1/attestation-results", json={"token": token}, headers=AUTH),
                  client.get("/healthz"), client.get("/v1/devices/SN-0002/attestation-results", headers=AUTH)):
        assert reply.status_code == 503 and reply.headers["retry-after"] == "5"
        assert reply.json()["detail"]["reason"] == "store-unavailable"


def test_certificate_sent_with_result_must_be_the_registered_one(env: AttestEnv, client: TestClient,
                                                                  tmp_path: Path) -> None:
    """An impostor's certificate (same CA, same serialNumber, its own key) cannot carry a result to the device."""
    from policy.x509facts import spki_der
    from trustport_lab.pki import issue_device

    device = env.register("ldevid-ok", NOW)
    impostor = issue_device(env.pki.cas["ldevid"], cn="ldev.example", serial_number="SN-0002", now=NOW,
                            not_after=NOW + timedelta(days=365))
    cert_path, _ = impostor.write(tmp_path, "impostor")
    token = mint(env.verifier, status="affirming", now=NOW, akpub=spki_der(impostor.cert))
    reply = client.post("/v1/attestation-results", headers=AUTH,
                        json={"token": token, "certificate": cert_path.read_text()})
    assert reply.status_code == 422, reply.text
    assert "not device" in reply.json()["detail"]["message"] and "registered" in reply.json()["detail"]["message"]
    assert client.get(f"/v1/devices/{device.id}/attestation-results", headers=AUTH).json() == []
