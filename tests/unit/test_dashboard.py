"""The web dashboard (/ui) through FastAPI's TestClient on a real SQLite registry: logins, CSRF, roles, the
pages, the actions (written as the logged-in user), hostile text shown as text, offline assets, error pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from policy.enforcement import Plan, Step, StepKind
from policy.model import DecisionLogEntry, DeviceKey, DeviceRecord, LifecycleState, NetworkContext, Outcome
from trustport.app import App
from trustport.dashboard import mount
from trustport.settings.config import load_config
from trustport.store.accounts import SqlAccountStore
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.queue import SqlJobQueue
from trustport.store.sql import SqlDeviceStore

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ISSUER = "CN=Acme Device CA,O=Acme"
HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "\x1b[2J\x1b[31mfake\x1b[0m"]
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Env:
    path: Path
    app: App
    store: SqlDeviceStore
    client: TestClient

    def device(self, serial: str, state: LifecycleState = LifecycleState.PENDING) -> DeviceRecord:
        return self.store.add_device(DeviceKey(ISSUER, serial), state=state, now=NOW - timedelta(hours=1))

    def decision(self, device: DeviceRecord | None, outcome: Outcome = Outcome.ACCEPT, *, name: str = "SN",
                 reasons: tuple[str, ...] = ("ok",), port: str = "Gi1/0/1") -> None:
        self.store.append_decision(DecisionLogEntry(
            NOW, device.id if device else None, device.key.serial_number if device else name,
            NetworkContext(nas_ip="10.0.0.1", nas_port=port, calling_station_id="aa:bb:cc:dd:ee:01"),
            outcome, 30 if outcome is Outcome.ACCEPT else None, "production", reasons, "rev-7"))

    def user(self, name: str, role: str) -> None:
        self.app.accounts.add_user(name, role, PASSWORD, actor="test", now=NOW)

    def login(self, name: str, role: str = "operator", client: TestClient | None = None) -> str:
        """Log in (creating the user); the session's CSRF token."""
        self.user(name, role)
        client = client or self.client
        form = client.get("/ui/login")
        token = CSRF_FIELD.search(form.text)
        assert token
        reply = client.post("/ui/login", data={"name": name, "password": PASSWORD, "csrf": token.group(1),
                                               "next": "/ui/"}, follow_redirects=False)
        assert reply.status_code == 303, reply.text
        page = client.get("/ui/")
        assert page.status_code == 200
        csrf = CSRF_FIELD.search(page.text)
        assert csrf
        return csrf.group(1)

    def state(self, device: DeviceRecord) -> LifecycleState:
        found = self.store.get_device(device.id)
        assert found is not None
        return found.state


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.chdir(tmp_path)
    data = {
        "radius": {"server_certificate": "server.pem", "server_key": "server.key",
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": "s" * 24}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": "idevid-ca.pem"}],
        "segments": {"production": 30, "cameras": 40, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "api": {"session_minutes": 60},
    }
    path = tmp_path / "trustport.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, check_files=False)
    store = SqlDeviceStore(config.database_url(), create=True)
    store.ensure_schema()
    app = App(config)
    api = FastAPI()
    mount(api, app, lambda: NOW)
    with TestClient(api, base_url="http://testserver") as client:
        yield Env(tmp_path, app, store, client)
    app.close()
    store.close()


# -- login, logout, sessions -------------------------------------------------------------------------------------

def test_login_sets_a_strict_cookie_and_logout_ends_the_session(env: Env) -> None:
    csrf = env.login("alice", "viewer")
    assert "alice" in env.client.get("/ui/").text
    env.client.cookies.clear()
    form = env.client.get("/ui/login")
    env.user("bob", "viewer")
    reply = env.client.post("/ui/login", data={"name": "bob", "password": PASSWORD,
                                               "csrf": CSRF_FIELD.search(form.text).group(1),  # type: ignore[union-attr]
                                               "next": "/ui/devices"}, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/ui/devices"
    cookie = reply.headers["set-cookie"]
    assert "trustport_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
        "Strict", "strict") and "Path=/ui" in cookie and "Secure" not in cookie
    page = env.client.get("/ui/")
    csrf = CSRF_FIELD.search(page.text).group(1)  # type: ignore[union-attr]
    refused = env.client.post("/ui/logout", data={}, follow_redirects=False)
    assert refused.status_code == 403
    out = env.client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert env.client.get("/ui/", follow_redirects=False).status_code == 303


def test_wrong_password_and_unknown_user_get_the_same_answer(env: Env) -> None:
    env.user("alice", "operator")
    answers = []
    for name, password in (("alice", "wrong password here"), ("nobody", PASSWORD), ("bad name!", PASSWORD)):
        form = env.client.get("/ui/login")
        token = CSRF_FIELD.search(form.text).group(1)  # type: ignore[union-attr]
        reply = env.client.post("/ui/login", data={"name": name, "password": password, "csrf": token},
                                follow_redirects=False)
        assert reply.status_code == 401
        assert "wrong name or password" in reply.text
        assert "trustport_session" not in reply.headers.get("set-cookie", "")
        answers.append(CSRF_FIELD.sub("", reply.text))
    assert len(set(answers)) == 1  # nothing tells which part was wrong
    assert env.client.get("/ui/", follow_redirects=False).status_code == 303


def test_cookie_is_secure_with_tls(env: Env) -> None:
    data = yaml.safe_load(env.path.joinpath("trustport.yaml").read_text())
    data["api"].update(tls_certificate="api.pem", tls_key="api.key")
    env.path.joinpath("tls.yaml").write_text(yaml.safe_dump(data))
    app = App(load_config(env.path / "tls.yaml", check_files=False))
    api = FastAPI()
    mount(api, app, lambda: NOW)
    env.user("tina", "viewer")
    with TestClient(api, base_url="https://testserver") as client:
        token = CSRF_FIELD.search(client.get("/ui/login").text).group(1)  # type: ignore[union-attr]
        reply = client.post("/ui/login", data={"name": "tina", "password": PASSWORD, "csrf": token},
                            follow_redirects=False)
        assert reply.status_code == 303
        assert "Secure" in reply.headers["set-cookie"] and "trustport_session=" in reply.headers["set-cookie"]
        assert client.get("/ui/").status_code == 200
    app.close()


def test_login_form_needs_its_token(env: Env) -> None:
    env.user("alice", "operator")
    env.client.get("/ui/login")
    reply = env.client.post("/ui/login", data={"name": "alice", "password": PASSWORD, "csrf": "forged"},
                            follow_redirects=False)
    assert reply.status_code == 403
    assert "trustport_session" not in reply.headers.get("set-cookie", "")


@pytest.mark.parametrize("path", ["/ui/", "/ui/live", "/ui/live/rows?after=0", "/ui/devices", "/ui/devices/1",
                                  "/ui/pending", "/ui/jobs", "/ui/jobs/1"])
def test_pages_need_a_login(env: Env, path: str) -> None:
    reply = env.client.get(path, follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/ui/login?next=/ui/")


def test_htmx_poll_without_a_session_is_told_to_log_in(env: Env) -> None:
    reply = env.client.get("/ui/live/rows?after=0", headers={"HX-Request": "true"}, follow_redirects=False)
    assert reply.status_code == 401 and reply.headers["hx-redirect"].startswith("/ui/login")


def test_a_bogus_cookie_is_no_session(env: Env) -> None:
    env.client.cookies.set("trustport_session", "x" * 43)
    assert env.client.get("/ui/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/ui//evil.example",
                                    "/\\evil.example", "/ui/\\\\evil", "javascript:alert(1)", "/api/v1/x",
                                    "/ui/\r\nSet-Cookie: x=1"])
def test_no_open_redirect_after_login(env: Env, target: str) -> None:
    env.user("alice", "viewer")
    page = env.client.get("/ui/login", params={"next": target})
    assert page.status_code == 200
    token = CSRF_FIELD.search(page.text).group(1)  # type: ignore[union-attr]
    reply = env.client.post("/ui/login", data={"name": "alice", "password": PASSWORD, "csrf": token,
                                               "next": target}, follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/ui/"


def test_next_within_the_dashboard_is_kept(env: Env) -> None:
    reply = env.client.get("/ui/devices?state=pending", follow_redirects=False)
    assert reply.headers["location"] == "/ui/login?next=/ui/devices%3Fstate%3Dpending"
    page = env.client.get(reply.headers["location"])
    assert 'name="next" value="/ui/devices?state=pending"' in page.text


# -- CSRF and roles ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_post_without_the_right_csrf_token_is_refused_and_writes_nothing(env: Env, token: str | None) -> None:
    env.login("olga", "operator")
    device = env.device("SN-CSRF")
    data = {"action": "approve", "reason": "looks fine"}
    if token is not None:
        data["csrf"] = token
    reply = env.client.post(f"/ui/devices/{device.id}/action", data=data)
    assert reply.status_code == 403
    assert env.state(device) is LifecycleState.PENDING
    assert not list(SqlLifecycleStore(env.store).events(device.id))
    bulk = env.client.post("/ui/bulk", data={**data, "device": str(device.id)})
    assert bulk.status_code == 403 and env.state(device) is LifecycleState.PENDING


def test_csrf_token_of_another_session_is_refused(env: Env) -> None:
    other = TestClient(env.client.app, base_url="http://testserver")
    theirs = env.login("mallory", "operator", client=other)
    env.login("olga", "operator")
    device = env.device("SN-X")
    reply = env.client.post(f"/ui/devices/{device.id}/action",
                            data={"action": "approve", "reason": "r", "csrf": theirs})
    assert reply.status_code == 403 and env.state(device) is LifecycleState.PENDING


def test_csrf_header_is_accepted(env: Env) -> None:
    csrf = env.login("olga", "operator")
    device = env.device("SN-HDR")
    reply = env.client.post(f"/ui/devices/{device.id}/action", data={"action": "quarantine", "reason": "r"},
                            headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 200, reply.text
    assert env.state(device) is LifecycleState.QUARANTINED


def test_viewer_sees_no_buttons_and_cannot_approve(env: Env) -> None:
    csrf = env.login("vera", "viewer")
    device = env.device("SN-VIEW")
    for path in ("/ui/pending", f"/ui/devices/{device.id}"):
        page = env.client.get(path)
        assert page.status_code == 200
        assert f'data-test="approve-{device.id}"' not in page.text and 'id="bulk-form"' not in page.text
    reply = env.client.post(f"/ui/devices/{device.id}/action",
                            data={"action": "approve", "reason": "r", "csrf": csrf})
    assert reply.status_code == 403
    bulk = env.client.post("/ui/bulk", data={"action": "approve", "reason": "r", "csrf": csrf,
                                             "device": str(device.id)})
    assert bulk.status_code == 403
    assert env.state(device) is LifecycleState.PENDING


# -- actions -----------------------------------------------------------------------------------------------

def test_operator_approves_a_pending_device_as_themselves(env: Env) -> None:
    csrf = env.login("olga", "operator")
    device = env.device("SN-APPROVE")
    env.decision(device, Outcome.QUARANTINE, reasons=("device is pending approval",))
    pending = env.client.get("/ui/pending")
    assert f'data-test="approve-{device.id}"' in pending.text and "device is pending approval" in pending.text
    reply = env.client.post(f"/ui/devices/{device.id}/action",
                            data={"action": "approve", "reason": "ticket 42", "segment": "cameras", "csrf": csrf})
    assert reply.status_code == 200, reply.text
    assert "pending -&gt; operational" in reply.text and "segment cameras" in reply.text
    assert "enforcement is not configured" in reply.text  # says that connected ports are not moved
    after = env.store.get_device(device.id)
    assert after is not None and after.state is LifecycleState.OPERATIONAL and after.segment == "cameras"
    events = list(SqlLifecycleStore(env.store).events(device.id))
    assert [(e.actor, e.action, e.reason) for e in events] == [("olga", "approve", "ticket 42")]
    page = env.client.get(f"/ui/devices/{device.id}")
    assert 'data-test="audit-actor">olga<' in page.text


def test_an_action_needs_a_reason_and_a_known_segment(env: Env) -> None:
    csrf = env.login("olga", "operator")
    device = env.device("SN-R")
    assert env.client.post(f"/ui/devices/{device.id}/action",
                           data={"action": "approve", "reason": " ", "csrf": csrf}).status_code == 422
    bad = env.client.post(f"/ui/devices/{device.id}/action",
                          data={"action": "approve", "reason": "r", "segment": "nowhere", "csrf": csrf})
    assert bad.status_code == 422 and "nowhere" in bad.text
    assert env.client.post(f"/ui/devices/{device.id}/action",
                           data={"action": "explode", "reason": "r", "csrf": csrf}).status_code == 422
    assert env.state(device) is LifecycleState.PENDING


def test_bulk_quarantine(env: Env) -> None:
    csrf = env.login("olga", "operator")
    devices = [env.device(f"SN-B{i}") for i in range(3)]
    gone = env.device("SN-GONE", LifecycleState.DECOMMISSIONED)
    reply = env.client.post("/ui/bulk", data={"action": "quarantine", "reason": "campus incident", "csrf": csrf,
                                              "device": [str(d.id) for d in devices[:2]]})
    assert reply.status_code == 200, reply.text
    assert [env.state(d) for d in devices] == [LifecycleState.QUARANTINED] * 2 + [LifecycleState.PENDING]
    assert all(e.actor == "olga" for d in devices[:2] for e in SqlLifecycleStore(env.store).events(d.id))
    mixed = env.client.post("/ui/bulk", data={"action": "quarantine", "reason": "r", "csrf": csrf,
                                              "device": [str(devices[2].id), str(gone.id)]})
    assert mixed.status_code == 200 and "refused" in mixed.text
    assert env.state(devices[2]) is LifecycleState.QUARANTINED and env.state(gone) is LifecycleState.DECOMMISSIONED
    none = env.client.post("/ui/bulk", data={"action": "quarantine", "reason": "r", "csrf": csrf})
    assert none.status_code == 422


def test_refused_transition_is_409_and_unknown_device_404(env: Env) -> None:
    csrf = env.login("olga", "operator")
    gone = env.device("SN-DONE", LifecycleState.DECOMMISSIONED)
    refused = env.client.post(f"/ui/devices/{gone.id}/action", data={"action": "approve", "reason": "r",
                                                                      "csrf": csrf})
    assert refused.status_code == 409 and "decommissioned" in refused.text
    missing = env.client.post("/ui/devices/9999/action", data={"action": "approve", "reason": "r", "csrf": csrf})
    assert missing.status_code == 404 and "Traceback" not in missing.text
    assert env.client.get("/ui/devices/9999").status_code == 404
    assert env.client.get("/ui/devices/SN-NOPE").status_code == 404
    assert env.client.get("/ui/jobs/12345").status_code == 404
    assert env.client.get("/ui/jobs/abc").status_code == 404


def test_job_cancel_and_retry(env: Env) -> None:
    csrf = env.login("olga", "operator")
    device = env.device("SN-JOB", LifecycleState.OPERATIONAL)
    plan = Plan((Step(StepKind.SET_VLAN, "access-1", "Gi1/0/3", 30), Step(StepKind.BOUNCE, "access-1", "Gi1/0/3")))
    job, _ = SqlJobQueue(env.store).enqueue(plan, lock_key="access-1", reason="test", now=NOW, device_id=device.id)
    page = env.client.get(f"/ui/jobs/{job.id}")
    assert page.status_code == 200 and "set-vlan" in page.text and f'data-test="cancel-{job.id}"' in page.text
    cancel = env.client.post(f"/ui/jobs/{job.id}/cancel", data={"csrf": csrf})
    assert cancel.status_code == 200 and "cancelled (by olga)" in cancel.text
    assert SqlJobQueue(env.store).get(job.id).state == "cancelled"  # type: ignore[union-attr]
    again = env.client.post(f"/ui/jobs/{job.id}/cancel", data={"csrf": csrf})
    assert again.status_code == 409 and "already cancelled" in again.text
    retry = env.client.post(f"/ui/jobs/{job.id}/retry", data={"csrf": csrf})
    assert retry.status_code == 200 and "queued again" in retry.text
    assert SqlJobQueue(env.store).get(job.id).state == "queued"  # type: ignore[union-attr]
    audit = [(a.actor, a.action, a.target) for a in SqlAccountStore(env.store).audit_entries()]
    assert ("olga", "job-cancel", f"job {job.id}") in audit and ("olga", "job-retry", f"job {job.id}") in audit
    assert env.client.post(f"/ui/jobs/{job.id}/retry", data={"csrf": "nope"}).status_code == 403
    listed = env.client.get("/ui/jobs?state=queued")
    assert f"#{job.id}" in listed.text
    assert env.client.get("/ui/jobs?state=bogus").status_code == 422


def test_viewer_cannot_retry_a_job(env: Env) -> None:
    csrf = env.login("vera", "viewer")
    plan = Plan((Step(StepKind.COA_REAUTH, "nas", "sess-1"),))
    job, _ = SqlJobQueue(env.store).enqueue(plan, lock_key="nas", reason="test", now=NOW)
    assert f'data-test="cancel-{job.id}"' not in env.client.get(f"/ui/jobs/{job.id}").text
    assert env.client.post(f"/ui/jobs/{job.id}/cancel", data={"csrf": csrf}).status_code == 403
    assert SqlJobQueue(env.store).get(job.id).state == "queued"  # type: ignore[union-attr]


# -- pages -------------------------------------------------------------------------------------------------

def test_live_rows_after_an_id(env: Env) -> None:
    env.login("vera", "viewer")
    device = env.device("SN-LIVE", LifecycleState.OPERATIONAL)
    env.decision(device)
    env.decision(device, Outcome.REJECT, reasons=("certificate revoked",))
    page = env.client.get("/ui/live")
    assert page.status_code == 200 and 'id="live-rows"' in page.text and 'hx-get="/ui/live/rows"' in page.text
    ids = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', page.text)]
    assert len(ids) == 2 and ids[0] > ids[1]  # newest first
    assert env.client.get(f"/ui/live/rows?after={ids[0]}").text.strip() == ""
    env.decision(device, Outcome.QUARANTINE, reasons=("new one",))
    rows = env.client.get(f"/ui/live/rows?after={ids[0]}")
    assert rows.status_code == 200 and "new one" in rows.text and rows.text.count("<tr ") == 1
    assert "<html" not in rows.text
    rejected = env.client.get("/ui/live?outcome=reject")
    assert "certificate revoked" in rejected.text and "new one" not in rejected.text
    assert env.client.get("/ui/live/rows?after=0&outcome=reject").text.count("<tr ") == 1
    assert env.client.get("/ui/live/rows?after=0&text=Gi1/0/1").text.count("<tr ") == 3
    assert env.client.get("/ui/live/rows?after=-1").status_code == 422
    assert env.client.get("/ui/live?outcome=maybe").status_code == 422


def test_devices_page_filters_and_pages(env: Env) -> None:
    env.login("vera", "viewer")
    for i in range(55):
        env.device(f"SN-P{i:02d}", LifecycleState.OPERATIONAL if i % 2 else LifecycleState.PENDING)
    page = env.client.get("/ui/devices")
    assert page.status_code == 200 and "(55)" in page.text and 'data-test="page-next"' in page.text
    second = env.client.get("/ui/devices?page_no=2")
    assert second.text.count('data-test="device-') == 5
    pending = env.client.get("/ui/devices?state=pending&text=SN-P0")
    assert "(5)" in pending.text  # SN-P00, 02, 04, 06, 08
    assert env.client.get("/ui/devices?state=lost").status_code == 422
    assert env.client.get("/ui/devices?segment=nowhere").status_code == 422
    assert env.client.get("/ui/devices?connected=no").status_code == 200


def test_overview_counts(env: Env) -> None:
    env.login("vera", "viewer")
    env.device("SN-O1")
    device = env.device("SN-O2", LifecycleState.OPERATIONAL)
    env.decision(device)
    page = env.client.get("/ui/")
    assert page.status_code == 200
    assert 'data-test="state-pending">1<' in page.text and 'data-test="state-operational">1<' in page.text
    assert 'data-test="outcome-accept">1<' in page.text
    assert "no directory is configured" in page.text


def test_security_headers(env: Env) -> None:
    env.login("vera", "viewer")
    for path in ("/ui/", "/ui/login", "/ui/devices/999"):
        reply = env.client.get(path)
        assert reply.headers["content-security-policy"].startswith("default-src 'self'")
        assert reply.headers["x-frame-options"] == "DENY"
        assert reply.headers["referrer-policy"] == "same-origin"
        assert reply.headers["cache-control"] == "no-store"


def test_hostile_text_is_shown_as_text(env: Env) -> None:
    env.login("olga", "operator")
    records = [env.device(serial) for serial in HOSTILE]
    for record, text in zip(records, HOSTILE, strict=True):
        env.decision(record, Outcome.REJECT, reasons=(text,), port=text)
    pages = ["/ui/", "/ui/live", "/ui/live/rows?after=0", "/ui/devices", "/ui/pending",
             *(f"/ui/devices/{r.id}" for r in records), f"/ui/devices?text={HOSTILE[0]}"]
    for path in pages:
        reply = env.client.get(path)
        assert reply.status_code == 200, path
        body = reply.text
        assert "<script>alert" not in body and "<img" not in body and "\x1b" not in body, path
    body = env.client.get("/ui/live").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in body
    assert "\\x1b[2J" in body


def test_pages_use_only_shipped_assets(env: Env) -> None:
    env.login("olga", "operator")
    device = env.device("SN-A")
    env.decision(device)
    plan = Plan((Step(StepKind.COA_REAUTH, "nas", "sess-1"),))
    job, _ = SqlJobQueue(env.store).enqueue(plan, lock_key="nas", reason="t", now=NOW, device_id=device.id)
    pages = ["/ui/", "/ui/live", "/ui/devices", f"/ui/devices/{device.id}", "/ui/pending", "/ui/jobs",
             f"/ui/jobs/{job.id}", "/ui/login"]
    assets: set[str] = set()
    for path in pages:
        body = env.client.get(path).text
        assert not re.search(r"<script(?![^>]*\ssrc=)", body), path  # no inline script (the CSP forbids it)
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", body), path  # no inline event handlers
        assert "style=" not in body, path
        found = re.findall(r'<(?:script|link|img)[^>]*(?:src|href)="([^"]+)"', body)
        assert found, path
        assert all(u.startswith("/ui/static/") for u in found), (path, found)
        assert "http://" not in body and "https://" not in body and "//cdn" not in body, path
        assets.update(found)
    assert assets == {"/ui/static/dashboard.css", "/ui/static/htmx.min.js", "/ui/static/dashboard.js"}
    for url in assets:
        reply = env.client.get(url)
        assert reply.status_code == 200 and len(reply.content) > 100
    assert "htmx" in env.client.get("/ui/static/htmx.min.js").text
    assert env.client.get("/ui/static/LICENSE.htmx.txt").status_code == 200
    assert env.client.get("/ui/static/../__init__.py").status_code == 404
    assert env.client.get("/ui/static/nothing.js").status_code == 404


def test_shipped_files_name_no_cdn() -> None:
    root = Path(__file__).resolve().parents[2] / "trustport" / "dashboard"
    for path in [*root.glob("templates/*"), *root.glob("static/*.css"), *root.glob("static/dashboard.js")]:
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "cdn" not in text.lower(), path
    assert (root / "static" / "htmx.min.js").stat().st_size > 10_000
    assert "unpkg" not in (root / "static" / "htmx.min.js").read_text()


def test_database_down_is_a_503_page(env: Env) -> None:
    env.login("vera", "viewer")
    env.app.store.close()
    env.store.close()
    (env.path / "registry.sqlite").unlink()
    reply = env.client.get("/ui/devices")
    assert reply.status_code == 503
    assert "registry" in reply.text.lower() and "Traceback" not in reply.text
    assert reply.headers["content-type"].startswith("text/html")
