"""Every REST route with each role: no token (401), a role too low (403), and allowed (never 401/403/5xx).

The table below is checked against the app's routes, so a route added without a row fails here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.attest_env import AttestEnv
from tests.support.api_env import ROLES, ApiEnv, serve_api


@pytest.fixture
def api(env: AttestEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    yield from serve_api(env, monkeypatch)

DEVICE = "1"
PASSWORD = "correct horse battery"
ROUTES: list[tuple[str, str, str, Any]] = [  # method, path, role needed, JSON body
    ("GET", "/v1/overview", "viewer", None),
    ("GET", "/v1/devices", "viewer", None),
    ("GET", f"/v1/devices/{DEVICE}", "viewer", None),
    ("POST", "/v1/devices", "admin", {"issuer": "/C=DE/O=Acme/CN=Acme IDevID CA", "serial": "SN-NEW-1"}),
    ("POST", f"/v1/devices/{DEVICE}/actions/quarantine", "operator", {"reason": "role test"}),
    ("POST", "/v1/devices/actions/release", "operator", {"devices": [DEVICE], "reason": "role test"}),
    ("GET", "/v1/sessions", "viewer", None),
    ("POST", "/v1/sessions", "operator", {"device": DEVICE, "nas": "10.0.0.1", "port": "7",
                                          "mac": "02:00:00:00:00:01"}),
    ("DELETE", f"/v1/devices/{DEVICE}/sessions", "operator", None),
    ("GET", "/v1/decisions", "viewer", None),
    ("GET", "/v1/jobs", "viewer", None),
    ("GET", "/v1/jobs/1", "viewer", None),
    ("POST", "/v1/jobs/1/retry", "operator", None),
    ("POST", "/v1/jobs/1/cancel", "operator", {"force": False}),
    ("GET", "/v1/audit", "viewer", None),
    ("GET", "/v1/policy", "viewer", None),
    ("POST", "/v1/policy/check", "viewer", {"document": "segments: {production: 30}\n"}),
    ("POST", "/v1/decide", "viewer", "PEM"),
    ("GET", "/v1/tokens", "admin", None),
    ("POST", "/v1/tokens", "admin", {"name": "made-by-test", "role": "viewer"}),
    ("DELETE", "/v1/tokens/no-such-token", "admin", None),
    ("GET", "/v1/users", "admin", None),
    ("POST", "/v1/users", "admin", {"name": "alice", "role": "viewer", "password": PASSWORD}),
    ("POST", "/v1/users/alice/disable", "admin", None),
    ("POST", "/v1/users/alice/enable", "admin", None),
    ("PUT", "/v1/users/alice/password", "admin", {"password": PASSWORD + "!"}),
    ("POST", "/v1/attestation-results", "operator", {"token": "a.b.c"}),
    ("GET", f"/v1/devices/{DEVICE}/attestation-results", "viewer", None),
    ("POST", f"/v1/devices/{DEVICE}/attestation-nonce", "operator", None),
    ("GET", "/metrics", "viewer", None),
]
TEMPLATES = {"/v1/devices/1": "/v1/devices/{device}", "/v1/jobs/1": "/v1/jobs/{job_id}"}


def _template(path: str) -> str:
    path = path.replace(f"/v1/devices/{DEVICE}/", "/v1/devices/{device}/")
    path = path.replace("/v1/jobs/1/", "/v1/jobs/{job_id}/").replace("/actions/quarantine", "/actions/{action}")
    path = path.replace("/actions/release", "/actions/{action}").replace("/no-such-token", "/{name}")
    return TEMPLATES.get(path, path.replace("/users/alice/", "/users/{name}/"))


def _call(api: ApiEnv, method: str, path: str, role: str | None, body: Any) -> Any:
    if body == "PEM":
        body = {"certificate": api.env.pki.devices["ldevid-ok"].cert.public_bytes(serialization.Encoding.PEM)
                .decode(), "nas_ip": "10.0.0.1", "nas_port": "7"}
    return api.client.request(method, path, json=body, headers=api.auth(role))


def test_the_table_covers_every_route(api: ApiEnv) -> None:
    spec = api.client.get("/openapi.json").json()
    routed = {(method.upper(), path) for path, operations in spec["paths"].items()
              for method, operation in operations.items() if operation.get("x-trustport-role")}
    assert len([p for p in spec["paths"] if p.startswith("/v1/")]) >= 20
    table = {(m, _template(p)) for m, p, _role, _body in ROUTES}
    assert routed == table


def test_openapi_documents_each_routes_role(api: ApiEnv) -> None:
    spec = api.client.get("/openapi.json").json()
    for method, path, role, _body in ROUTES:
        operation = spec["paths"][_template(path)][method.lower()]
        assert operation["x-trustport-role"] == role
        assert f"**Role:** {role}" in operation["description"]
        assert {"401", "403"} <= set(operation["responses"])


@pytest.mark.parametrize(("method", "path", "role", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _r, _b in ROUTES])
def test_route_with_each_role(api: ApiEnv, method: str, path: str, role: str, body: Any) -> None:
    reply = _call(api, method, path, None, body)
    assert reply.status_code == 401, reply.text
    assert reply.headers["www-authenticate"] == "Bearer" and reply.json()["detail"]["reason"] == "unauthenticated"
    reply = _call(api, method, path, None, body) if False else api.client.request(
        method, path, headers={"Authorization": "Bearer tp_" + "x" * 43})
    assert reply.status_code == 401
    for have in ROLES:
        reply = _call(api, method, path, have, body)
        if ROLES.index(have) < ROLES.index(role):
            assert reply.status_code == 403, (have, reply.text)
            detail = reply.json()["detail"]
            assert detail["reason"] == "forbidden" and f"role {have} cannot" in detail["message"]
            assert f"needs role {role}" in detail["message"]
        else:
            assert reply.status_code not in (401, 403), (have, reply.text)
            assert reply.status_code < 500, (have, reply.text)


def test_public_paths_need_no_token(api: ApiEnv) -> None:
    for path in ("/healthz", "/openapi.json", "/docs", "/docs/static/swagger-ui-bundle.js",
                 "/docs/static/swagger-ui.css", "/docs/static/favicon-32x32.png"):
        assert api.client.get(path).status_code == 200, path


def test_docs_are_served_from_local_assets_only(api: ApiEnv) -> None:
    page = api.client.get("/docs").text
    assert "/docs/static/swagger-ui-bundle.js" in page and "/docs/static/swagger-ui.css" in page
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs", "http://", "https://"):
        assert cdn not in page, cdn
    assert api.client.get("/redoc").status_code in (401, 404)  # not served (it would load from a CDN)
    bundle = api.client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert len(bundle.content) > 100_000


def test_viewer_allowed_everywhere_it_reads(api: ApiEnv) -> None:
    """The answers are the data, not only a status: a viewer sees the device, and its detail."""
    page = api.client.get("/v1/devices", headers=api.auth("viewer")).json()
    assert page["total"] == 1 and page["items"][0]["device"]["serial_number"] == api.device.key.serial_number
    detail = api.client.get(f"/v1/devices/{api.device.key.serial_number}", headers=api.auth("viewer")).json()
    assert detail["device"]["id"] == api.device.id and "certificate" in detail and detail["lifecycle"] == []
    metrics = api.client.get("/metrics", headers=api.auth("viewer"))
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")


def test_config_token_has_its_configured_role(api: ApiEnv) -> None:
    """The config's 'verifier' token has the default role, operator: it may post results, not list tokens."""
    from tests.attest_env import API_TOKEN

    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    assert api.client.post("/v1/devices/1/attestation-nonce", headers=headers).status_code == 201
    assert api.client.get("/v1/tokens", headers=headers).status_code == 403


def test_dashboard_paths_pass_the_guard_without_a_token(api: ApiEnv) -> None:
    """/ui is the dashboard's (cookie sessions, its own login): the bearer guard lets it through; / goes there."""
    reply = api.client.get("/ui/login", follow_redirects=False)
    assert reply.status_code not in (401, 403) and reply.status_code < 500
    home = api.client.get("/", follow_redirects=False)
    assert home.status_code in (302, 303, 307) and home.headers["location"] == "/ui/"
    _problem = api.client.get("/ui/..%2f..%2fv1/tokens")
    assert _problem.status_code == 400  # the path checks still apply


def test_a_bug_is_a_logged_500_without_details(api: ApiEnv, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    from trustport.services.console import ConsoleService

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(ConsoleService, "overview", broken)
    reply = api.client.get("/v1/overview", headers=api.auth("viewer"))
    assert reply.status_code == 500 and reply.json()["detail"]["reason"] == "internal-error"
    assert "secret internals" not in reply.text
    assert any("unhandled error" in r.getMessage() for r in caplog.records)
