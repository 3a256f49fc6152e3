"""Hostile and malformed input to every route family: a 4xx problem with a specific reason, never a 500; the
registry down is 503 with Retry-After; writes are audited with the token's name; tokens shown once, stored hashed,
refused once revoked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from policy.enforcement import Plan, Step, StepKind
from tests.attest_env import API_TOKEN, AttestEnv
from tests.support.api_env import NOW, ApiEnv, serve_api
from trustport.api import create_app
from trustport.settings.config import load_config
from trustport.store.accounts import SqlAccountStore
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.queue import SqlJobQueue
from trustport.store.schema import api_tokens


@pytest.fixture
def api(env: AttestEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    yield from serve_api(env, monkeypatch)


def _problem(reply: Any, code: int | tuple[int, ...], reason: str | tuple[str, ...] | None = None) -> str:
    codes = code if isinstance(code, tuple) else (code,)
    assert reply.status_code in codes, (reply.status_code, reply.text)
    detail = reply.json()["detail"]
    assert detail["message"]
    if reason is not None:
        assert detail["reason"] in (reason if isinstance(reason, tuple) else (reason,)), detail
    return str(detail["message"])


# -- wrong types, wrong shapes, oversize strings -----------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body", "where"), [
    ("GET", "/v1/devices?limit=abc", None, "query.limit"),
    ("GET", "/v1/devices?limit=0", None, "query.limit"),
    ("GET", "/v1/devices?limit=100000", None, "query.limit"),
    ("GET", "/v1/devices?state=exploded", None, "query.state"),
    ("GET", "/v1/devices?connected=perhaps", None, "query.connected"),
    ("GET", "/v1/devices?text=" + "x" * 5_000, None, "query.text"),
    ("GET", "/v1/decisions?after_id=-1", None, "query.after_id"),
    ("GET", "/v1/decisions?outcome=maybe", None, "query.outcome"),
    ("GET", "/v1/jobs?state=sleeping", None, "query.state"),
    ("GET", "/v1/jobs/abc", None, "path.job_id"),
    ("POST", "/v1/devices/1/actions/explode", {}, "path.action"),
    ("POST", "/v1/devices/1/actions/quarantine", {"reason": 42}, "body.reason"),
    ("POST", "/v1/devices/1/actions/quarantine", {"reason": "r" * 10_000}, "body.reason"),
    ("POST", "/v1/devices/1/actions/quarantine", [1, 2], "body"),
    ("POST", "/v1/devices/actions/quarantine", {"devices": "1"}, "body.devices"),
    ("POST", "/v1/devices/actions/quarantine", {"devices": []}, "body.devices"),
    ("POST", "/v1/devices/actions/quarantine", {"devices": ["x" * 5000]}, "body.devices"),
    ("POST", "/v1/sessions", {"device": "1", "nas": "10.0.0.1", "port": "7", "mac": "02:00:00:00:00:01",
                              "vlan": "x"}, "body.vlan"),
    ("POST", "/v1/sessions", {"device": "1", "nas": "10.0.0.1", "port": "7", "mac": "not-a-mac"}, "body.mac"),
    ("POST", "/v1/sessions", {"device": "1", "nas": " padded", "port": "7", "mac": "02:00:00:00:00:01"},
     "body.nas"),
    ("POST", "/v1/sessions", {"device": "1", "nas": "10.0.0.1", "port": "7\x00", "mac": "02:00:00:00:00:01"},
     "body.port"),
    ("POST", "/v1/sessions", ["device"], "body"),
    ("POST", "/v1/jobs/1/cancel", {"force": "very"}, "body.force"),
    ("POST", "/v1/policy/check", {"document": 7}, "body.document"),
    ("POST", "/v1/policy/check", {"document": "x" * 300_000}, None),  # 413 before it is parsed
    ("POST", "/v1/decide", {"certificate": ["PEM"]}, "body.certificate"),
    ("POST", "/v1/decide", {}, "body.certificate"),
    ("POST", "/v1/tokens", {"name": "ok-name", "role": "root"}, "body.role"),
    ("POST", "/v1/tokens", {"name": "", "role": "viewer"}, "body.name"),
    ("POST", "/v1/users", {"name": "bob", "role": "viewer", "password": "short"}, "body.password"),
    ("POST", "/v1/devices", {"issuer": 5, "serial": "SN-1"}, "body.issuer"),
    ("POST", "/v1/devices", {"issuer": "/CN=x", "serial": "SN-1", "state": "flying"}, "body.state"),
    ("POST", "/v1/attestation-results", {"token": {"a": 1}}, "body.token"),
])
def test_malformed_input_is_422_with_the_field(api: ApiEnv, method: str, path: str, body: Any,
                                                where: str | None) -> None:
    reply = api.client.request(method, path, json=body, headers=api.auth("admin"))
    if where is None:
        _problem(reply, 413, "too-large")
        return
    message = _problem(reply, 422, "invalid-request")
    assert where in message


@pytest.mark.parametrize("raw", [b'{"reason": ', b"\xff\xfe{\x00", b"[" * 50_000, b"null", b'"text"', b"",
                                 b'{"reason": NaN}', b'{"reason": "\\ud800"}'])
def test_broken_json_bodies_are_4xx(api: ApiEnv, raw: bytes) -> None:
    for path in ("/v1/devices/actions/quarantine", "/v1/sessions", "/v1/tokens", "/v1/decide"):
        reply = api.client.post(path, content=raw, headers={**api.auth("admin"), "Content-Type": "application/json"})
        assert 400 <= reply.status_code < 500, (path, raw[:20], reply.text)
        assert reply.json()["detail"]["reason"]


def test_oversize_body_is_413(api: ApiEnv) -> None:
    reply = api.client.post("/v1/decide", content=b"{" + b" " * 300_000 + b"}",
                            headers={**api.auth("viewer"), "Content-Type": "application/json"})
    _problem(reply, 413, "too-large")


# -- unknown ids ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body", "code", "reason"), [
    ("GET", "/v1/devices/999", None, 404, "unknown-device"),
    ("GET", "/v1/devices/SN-NOBODY", None, 404, "unknown-device"),
    ("GET", "/v1/devices/0", None, 422, "bad-device-ref"),
    ("GET", "/v1/devices/99999999999999999999999", None, 422, "bad-device-ref"),
    ("GET", "/v1/devices/" + "9" * 5000, None, 422, "bad-device-ref"),
    ("POST", "/v1/devices/999/actions/quarantine", {}, 404, "unknown-device"),
    ("POST", "/v1/devices/actions/quarantine", {"devices": ["1", "999", "SN-NOBODY"]}, 404, "unknown-device"),
    ("GET", "/v1/sessions?device=999", None, 404, "unknown-device"),
    ("DELETE", "/v1/devices/1/sessions?session=12345", None, 404, "unknown-session"),
    ("GET", "/v1/audit?device=999", None, 404, "unknown-device"),
    ("GET", "/v1/jobs/999", None, 404, "unknown-job"),
    ("GET", "/v1/jobs/0", None, 404, "unknown-job"),
    ("GET", "/v1/jobs/99999999999999999999999999", None, 404, "unknown-job"),
    ("POST", "/v1/jobs/999/retry", None, 404, "unknown-job"),
    ("POST", "/v1/jobs/999/cancel", None, 404, "unknown-job"),
    ("DELETE", "/v1/tokens/nobody", None, 404, "unknown-token"),
    ("DELETE", "/v1/tokens/" + "n" * 65, None, 422, "invalid-request"),
    ("POST", "/v1/users/nobody/disable", None, 404, "unknown-user"),
    ("PUT", "/v1/users/nobody/password", {"password": "a long enough password"}, 404, "unknown-user"),
    ("GET", "/v1/devices/999/attestation-results", None, 404, "unknown-device"),
    ("GET", "/v1/nothing-here", None, 404, "not-found"),
    ("PATCH", "/v1/devices", None, 405, "method-not-allowed"),
])
def test_unknown_ids_are_404(api: ApiEnv, method: str, path: str, body: Any, code: int, reason: str) -> None:
    _problem(api.client.request(method, path, json=body, headers=api.auth("admin")), code, reason)


def test_nothing_is_changed_when_one_of_many_devices_is_unknown(api: ApiEnv) -> None:
    api.client.post("/v1/devices/actions/quarantine", json={"devices": ["1", "999"]}, headers=api.auth("operator"))
    assert api.env.store.get_device(1).state.value == "operational"  # type: ignore[union-attr]


# -- path tricks ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/v1/devices/..%2f..%2fetc%2fpasswd", "/v1/devices/%2e%2e/tokens", "/v1/devices/a%5cb", "/v1/devices/SN%00",
    "/v1/devices/%0aSN", "/v1/devices/%ff%fe", "/v1/devices/" + "A" * 10_000, "/v1/jobs/%00/retry",
    "/v1/tokens/..%2f", "/v1/users/%00/disable", "/docs/static/..%2f..%2f__init__.py",
    "/docs/static/%2e%2e/core.py", "/v1/devices?text=SN%00", "/v1/decisions?text=" + "x" * 9000,
])
def test_path_tricks_are_400(api: ApiEnv, path: str) -> None:
    for method in ("GET", "POST"):
        reply = api.client.request(method, path, headers=api.auth("admin"))
        _problem(reply, 400, "bad-path")


def test_path_tricks_are_refused_before_authentication(api: ApiEnv) -> None:
    _problem(api.client.get("/v1/devices/..%2f"), 400, "bad-path")


# -- refused actions -----------------------------------------------------------------------------------------------

def test_transition_refused_is_409(api: ApiEnv) -> None:
    message = _problem(api.client.post("/v1/devices/1/actions/release", json={}, headers=api.auth("operator")),
                       409, "refused")
    assert "release" in message


def test_job_state_conflict_is_409(api: ApiEnv) -> None:
    job = _job(api)
    _problem(api.client.post(f"/v1/jobs/{job}/retry", headers=api.auth("operator")), 409, "job-state")


def test_unknown_segment_is_422(api: ApiEnv) -> None:
    _problem(api.client.post("/v1/devices/1/actions/quarantine", json={"segment": "nowhere"},
                             headers=api.auth("operator")), 422)
    _problem(api.client.post("/v1/devices", json={"issuer": "/CN=X", "serial": "S-1", "segment": "nowhere"},
                             headers=api.auth("admin")), 422, "unknown-segment")


def test_duplicate_names_are_409(api: ApiEnv) -> None:
    body = {"name": "dup", "role": "viewer"}
    assert api.client.post("/v1/tokens", json=body, headers=api.auth("admin")).status_code == 201
    _problem(api.client.post("/v1/tokens", json=body, headers=api.auth("admin")), 409, "exists")
    device = {"issuer": "/C=DE/O=Acme/CN=Acme CA", "serial": "SN-DUP"}
    assert api.client.post("/v1/devices", json=device, headers=api.auth("admin")).status_code == 201
    _problem(api.client.post("/v1/devices", json=device, headers=api.auth("admin")), 409, "exists")


@pytest.mark.parametrize("pem", ["not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                                 "\u00e9t\u00e9"])
def test_bad_certificates_are_422(api: ApiEnv, pem: str) -> None:
    _problem(api.client.post("/v1/decide", json={"certificate": pem}, headers=api.auth("viewer")), 422)
    _problem(api.client.post("/v1/devices", json={"certificate": pem}, headers=api.auth("admin")), 422)


def test_policy_check_reports_problems_and_applies_nothing(api: ApiEnv) -> None:
    before = api.client.get("/v1/policy", headers=api.auth("viewer")).json()
    reply = api.client.post("/v1/policy/check", json={"document": "segments: {a: 99999}\npolicy: 3\n"},
                            headers=api.auth("viewer"))
    assert reply.status_code == 200 and reply.json()["ok"] is False and reply.json()["problems"]
    assert all("trustport-policy-" not in p["location"] for p in reply.json()["problems"])
    reply = api.client.post("/v1/policy/check", json={"document": "a: [\n"}, headers=api.auth("viewer"))
    assert reply.status_code == 200 and reply.json()["ok"] is False
    good = api.client.post("/v1/policy/check", json={"document": "segments: {prod: 30, quarantine: 999}\n"
                                                                 "policy: {default_segment: prod}\n"},
                           headers=api.auth("viewer"))
    assert good.status_code == 200 and good.json()["ok"] is True, good.text
    assert api.client.get("/v1/policy", headers=api.auth("viewer")).json() == before


def test_decide_writes_nothing(api: ApiEnv) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = api.env.pki.devices["ldevid-ok"].cert.public_bytes(serialization.Encoding.PEM).decode()
    before = api.client.get("/v1/decisions", headers=api.auth("viewer")).json()
    reply = api.client.post("/v1/decide", json={"certificate": pem, "nas_ip": "10.0.0.1", "nas_port": "7"},
                            headers=api.auth("viewer"))
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["decision"]["outcome"] in ("accept", "quarantine", "reject") and answer["checks"]
    assert answer["device"]["registry_id"] == api.device.id
    assert api.client.get("/v1/decisions", headers=api.auth("viewer")).json() == before


# -- the registry down ---------------------------------------------------------------------------------------------

@pytest.fixture
def broken(env: AttestEnv, tmp_path: Path) -> Iterator[TestClient]:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be\n")
    data = yaml.safe_load(env.config_path.read_text())
    data["database"] = {"url": f"sqlite:///{blocker}/registry.sqlite"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with TestClient(create_app(load_config(path)), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/healthz", None), ("GET", "/v1/overview", None), ("GET", "/v1/devices", None),
    ("GET", "/v1/devices/1", None), ("GET", "/v1/sessions", None), ("GET", "/v1/decisions", None),
    ("GET", "/v1/jobs", None), ("GET", "/v1/jobs/1", None), ("GET", "/v1/audit", None),
    ("POST", "/v1/devices/1/actions/quarantine", {}), ("POST", "/v1/jobs/1/retry", None),
    ("POST", "/v1/sessions", {"device": "1", "nas": "10.0.0.1", "port": "7", "mac": "02:00:00:00:00:01"}),
    ("POST", "/v1/devices/1/attestation-nonce", None),
])
def test_database_down_is_503(broken: TestClient, method: str, path: str, body: Any) -> None:
    reply = broken.request(method, path, json=body, headers={"Authorization": f"Bearer {API_TOKEN}"})
    _problem(reply, 503, "store-unavailable")
    assert int(reply.headers["retry-after"]) > 0


def test_database_down_with_a_registry_token_is_503_not_401(broken: TestClient) -> None:
    reply = broken.get("/v1/devices", headers={"Authorization": "Bearer tp_" + "a" * 43})
    _problem(reply, 503, "store-unavailable")


# -- audit: the token's name is the actor ---------------------------------------------------------------------------

def _job(api: ApiEnv) -> int:
    plan = Plan((Step(StepKind.SET_VLAN, "sw1", "ge-0/0/7", 999),))
    job, _created = SqlJobQueue(api.env.store).enqueue(plan, lock_key="sw1", reason="test", now=NOW,
                                                       device_id=api.device.id)
    return job.id


def test_writes_are_audited_with_the_tokens_name(api: ApiEnv) -> None:
    client, store = api.client, api.env.store
    assert client.post("/v1/devices/1/actions/quarantine", json={"reason": "looks odd"},
                       headers=api.auth("operator")).status_code == 200
    event = SqlLifecycleStore(store).events(1)[0]
    assert (event.actor, event.action, event.reason) == ("operator-token", "quarantine", "looks odd")
    assert client.post("/v1/sessions", json={"device": "1", "nas": "10.0.0.1", "port": "7",
                                             "mac": "02:00:00:00:00:01"}, headers=api.auth("operator")).status_code \
        == 201
    assert client.delete("/v1/devices/1/sessions", headers=api.auth("operator")).json()["ended"] == 1
    job = _job(api)
    cancelled = client.post(f"/v1/jobs/{job}/cancel", headers=api.auth("operator")).json()
    assert "cancelled by operator-token" in cancelled["log"][-1]["message"]
    assert client.post(f"/v1/jobs/{job}/retry", headers=api.auth("admin")).json()["state"] == "queued"
    assert client.post("/v1/tokens", json={"name": "t2", "role": "viewer"}, headers=api.auth("admin")).status_code \
        == 201
    assert client.post("/v1/users", json={"name": "carol", "role": "operator", "password": "p" * 12},
                       headers=api.auth("admin")).status_code == 201
    assert client.post("/v1/users/carol/disable", headers=api.auth("admin")).status_code == 200
    assert client.post("/v1/devices", json={"issuer": "/C=DE/O=Acme/CN=Acme CA", "serial": "SN-A1"},
                       headers=api.auth("admin")).status_code == 201
    entries = {(e.actor, e.action) for e in SqlAccountStore(store).audit_entries(100)}
    assert {("operator-token", "session-add"), ("operator-token", "session-clear"),
            ("operator-token", "job-cancel"), ("admin-token", "job-retry"), ("admin-token", "token-create"),
            ("admin-token", "user-add"), ("admin-token", "user-disable"), ("admin-token", "device-add")} <= entries
    audit = client.get("/v1/audit?actor=operator-token", headers=api.auth("viewer")).json()
    assert audit and all(a["actor"] == "operator-token" for a in audit)


# -- tokens ------------------------------------------------------------------------------------------------------

def test_token_shown_once_stored_hashed_and_revocable(api: ApiEnv) -> None:
    created = api.client.post("/v1/tokens", json={"name": "scraper", "role": "viewer"}, headers=api.auth("admin"))
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("tp_") and "shown once" in created.json()["note"]
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.client.get("/v1/devices", headers=headers).status_code == 200
    assert api.client.get("/v1/tokens", headers=headers).status_code == 403  # its role: viewer
    listed = api.client.get("/v1/tokens", headers=api.auth("admin")).text
    assert secret not in listed and "scraper" in listed
    with api.env.store.transaction("reading tokens") as conn:
        rows = [tuple(str(v) for v in row) for row in conn.execute(sa.select(api_tokens))]
    assert all(secret not in value for row in rows for value in row)
    assert any(hashlib.sha256(secret.encode()).hexdigest() in row for row in rows)
    assert api.client.delete("/v1/tokens/scraper", headers=api.auth("admin")).status_code == 200
    _problem(api.client.get("/v1/devices", headers=headers), 401, "unauthenticated")
    _problem(api.client.delete("/v1/tokens/scraper", headers=api.auth("admin")), 404, "unknown-token")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic abc", "bearer tp_" + "x" * 43, "Bearer " + "x" * 600,
                                    "Bearer t\u00e9st", "Token abc"])
def test_malformed_authorization_is_401(api: ApiEnv, header: str) -> None:
    reply = api.client.get("/v1/devices", headers=[(b"Authorization", header.encode("utf-8"))])
    _problem(reply, 401, "unauthenticated")
