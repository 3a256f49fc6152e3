"""/metrics: trustport.observability.metrics.exposition over a real SQLite registry, hook snapshot files and CRLs."""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from policy.enforcement import Plan, Step, StepKind
from policy.model import DecisionLogEntry, DeviceKey, LifecycleState, NetworkContext, Outcome
from tests.pki_fixtures import DevicePki
from trustport.app import App
from trustport.observability.hook_counters import BUCKETS, HookCounters
from trustport.observability.metrics import coa_result, exposition
from trustport.settings.config import load_config
from trustport.store.directory import SqlDirectoryStore
from trustport.store.queue import SqlJobQueue
from trustport.store.schema import enforcement_jobs
from trustport.store.sql import SqlDeviceStore
from trustport_lab.pki import crl_pem, make_crl

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def write_config(pki: DevicePki, tmp: Path, **extra: Any) -> Path:
    crl_dir = tmp / "crl"
    crl_dir.mkdir()
    config = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": "metrics-test-shared-secret"}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))},
                          {"name": "site", "role": "ldevid", "file": str(pki.cert_path("ldevid-ca"))}],
        "revocation": {"crl_dir": "crl"},
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production", "quarantine_segment": "quarantine"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "metrics": {"directory": "metrics"},
        **extra,
    }
    path = tmp / "trustport.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def parse(body: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> {sorted labels: value}; fails on anything the Prometheus parser refuses."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture
def setup(pki: DevicePki, tmp_path: Path) -> tuple[Path, SqlDeviceStore]:
    path = write_config(pki, tmp_path, directory={
        "name": "corp", "url": "ldaps://ldap.example", "ca_file": str(pki.cert_path("server-ca")),
        "bind_dn": "cn=trustport", "bind_password": "secret-secret", "base_dn": "ou=devices,dc=example"})
    store = SqlDeviceStore(f"sqlite:///{tmp_path / 'registry.sqlite'}", create=True)
    store.ensure_schema()
    return path, store


def hook_snapshot(directory: Path, accepts: int, rejects: int, pid: int | None = None) -> None:
    counters = HookCounters(directory, 5, f"{socket.gethostname()}:/raddb/hook.json")
    for _ in range(accepts):
        counters.authentication("accept", "production")
        counters.latency["check_eap_tls"].observe(0.0008)
    for _ in range(rejects):
        counters.authentication("reject", None)
        counters.latency["check_eap_tls"].observe(0.003)
    counters.registry_errors = 1
    if pid is not None:
        counters.pid = pid
        counters.path = directory / f"hook-other-{pid}.json"
    assert counters.flush()


def test_exposition_has_every_source_and_parses(pki: DevicePki, setup: tuple[Path, SqlDeviceStore],
                                                tmp_path: Path) -> None:
    config_path, store = setup
    # hook: two processes' snapshots (this one, alive; one written a minute ago) are summed
    hook_snapshot(tmp_path / "metrics", accepts=3, rejects=1)
    hook_snapshot(tmp_path / "metrics", accepts=2, rejects=0, pid=os.getpid() + 100_000)
    # decision log
    device = store.add_device(DeviceKey("CN=x", "SN-1"), state=LifecycleState.OPERATIONAL, now=NOW)
    for outcome in (Outcome.ACCEPT, Outcome.ACCEPT, Outcome.REJECT):
        store.append_decision(DecisionLogEntry(NOW, device.id, "SN-1", NetworkContext(), outcome, 30, "production"))
    # jobs: a CoA job that was ACKed, one NAKed then done by the fallback, one failed
    queue = SqlJobQueue(store)
    coa = Plan((Step(StepKind.COA_REAUTH, "nas", "sess-1"),), (Step(StepKind.SET_VLAN, "sw1", "Gi1/0/1", 30),))
    logs = {
        "done": ["sess-1: CoA-ACK (re-authenticate)", "done: sess-1: CoA-ACK (re-authenticate)"],
        "failed": ["coa-reauth: CoA-Request rejected by the NAS (503 Session-Context-Not-Found); check the session "
                   "selector and NAS policy; falling back to set-vlan on sw1",
                   "coa-reauth: CoA-Request rejected by the NAS (503); check it; set-vlan: sw1 unreachable; "
                   "retry 1/7 at 2026",
                   "FAILED: coa-reauth: the NAS did not answer: timeout; giving up after 1 attempt(s)"],
    }
    for index, (state, messages) in enumerate(logs.items()):
        job, _ = queue.enqueue(coa, lock_key=f"sw{index}", reason="test", now=NOW - timedelta(seconds=100))
        log = [{"time": NOW.isoformat(), "step": 0, "message": m} for m in messages]
        log.append({"time": NOW.isoformat(), "step": 0, "event": "claim", "message": "sess-1: CoA-ACK"})
        with store.transaction("test") as conn:
            conn.execute(enforcement_jobs.update().where(enforcement_jobs.c.id == job.id).values(
                state=state, log=json.dumps(log), updated_at=NOW - timedelta(seconds=100 - 3 * (index + 1)),
                failures=1 if state == "failed" else 0))
    queue.enqueue(Plan((Step(StepKind.SET_VLAN, "sw9", "Gi1/0/2", 30),)), lock_key="sw9", reason="t", now=NOW)
    # directory
    SqlDirectoryStore(store, "corp").record_attempt(url="ldaps://ldap.example", now=NOW - timedelta(seconds=42),
                                                    error=None, entries=7)
    # CRLs: two of the LDevID CA (the newer counts), one of the IDevID CA, one the hook would refuse
    crl_dir = tmp_path / "crl"
    (crl_dir / "ldevid-old.crl").write_bytes(crl_pem(make_crl(pki.cas["ldevid"], [], now=NOW - timedelta(days=2))))
    (crl_dir / "ldevid.crl").write_bytes(crl_pem(make_crl(pki.cas["ldevid"], [], now=NOW - timedelta(hours=1))))
    (crl_dir / "idevid.crl").write_bytes(crl_pem(make_crl(pki.cas["idevid"], [], now=NOW - timedelta(days=8))))
    (crl_dir / "rogue.crl").write_bytes(crl_pem(make_crl(pki.cas["rogue"], [], now=NOW)))
    store.close()

    with App(load_config(config_path, check_files=False)) as app:
        body, content_type = exposition(app, now=lambda: NOW)
    assert content_type.startswith("text/plain; version=0.0.4")
    m = parse(body)

    auths = m["trustport_authentications_total"]
    assert auths == {(("outcome", "accept"), ("segment", "production")): 5.0,
                     (("outcome", "reject"), ("segment", "none")): 1.0}
    assert m["trustport_registry_errors_total"][()] == 2
    assert m["trustport_hook_processes"][()] == 2
    buckets = m["trustport_hook_seconds_bucket"]
    assert buckets[(("call", "check_eap_tls"), ("le", "0.001"))] == 5
    assert buckets[(("call", "check_eap_tls"), ("le", "0.0025"))] == 5
    assert buckets[(("call", "check_eap_tls"), ("le", "0.005"))] == 6
    assert buckets[(("call", "check_eap_tls"), ("le", "+Inf"))] == 6
    assert m["trustport_hook_seconds_count"][(("call", "check_eap_tls"),)] == 6
    assert len([k for k in buckets if k[0] == ("call", "check_eap_tls")]) == len(BUCKETS) + 1

    assert m["trustport_registry_up"][()] == 1
    jobs = m["trustport_enforcement_jobs"]
    assert (jobs[(("state", "done"),)], jobs[(("state", "failed"),)], jobs[(("state", "queued"),)]) == (1, 1, 1)
    assert m["trustport_enforcement_failures_total"][()] == 1
    assert m["trustport_job_seconds_count"] == {(("state", "done"),): 1, (("state", "failed"),): 1}
    assert m["trustport_job_seconds_bucket"][(("le", "2.5"), ("state", "done"))] == 0
    assert m["trustport_job_seconds_bucket"][(("le", "5.0"), ("state", "done"))] == 1
    assert m["trustport_job_seconds_sum"][(("state", "failed"),)] == pytest.approx(6)
    assert m["trustport_coa_results_total"] == {(("result", "ack"),): 2, (("result", "nak"),): 1,
                                                (("result", "no_answer"),): 1, (("result", "error"),): 0}

    assert m["trustport_directory_up"] == {(("directory", "corp"),): 1}
    assert m["trustport_directory_sync_age_seconds"] == {(("directory", "corp"),): 42}

    ldevid, idevid = "/C=DE/O=Example Site/CN=Site LDevID CA", "/C=DE/O=Acme Devices/CN=Acme Manufacturer IDevID CA"
    age = {dict(k)["issuer"]: v for k, v in m["trustport_crl_age_seconds"].items()}
    nxt = {dict(k)["issuer"]: v for k, v in m["trustport_crl_next_update_seconds"].items()}
    assert set(age) == {ldevid, idevid}, age
    assert age[ldevid] == 3600 + 300  # make_crl's thisUpdate is five minutes before its 'now'
    assert nxt[ldevid] == 7 * 86400 - 3600
    assert nxt[idevid] < 0  # overdue
    assert m["trustport_crl_refused_files"][()] == 1
    assert m["trustport_decision_log_entries_total"] == {(("outcome", "accept"),): 2, (("outcome", "quarantine"),): 0,
                                                         (("outcome", "reject"),): 1}


def test_registry_down_still_serves_metrics(pki: DevicePki, tmp_path: Path) -> None:
    config_path = write_config(pki, tmp_path)  # no registry.sqlite: not initialised
    hook_snapshot(tmp_path / "metrics", accepts=1, rejects=0)
    with App(load_config(config_path, check_files=False)) as app:
        body, _ = exposition(app, now=lambda: NOW)
    m = parse(body)
    assert m["trustport_registry_up"] == {(): 0}
    assert "trustport_enforcement_jobs" not in m and "trustport_coa_results_total" not in m
    assert m["trustport_authentications_total"] == {(("outcome", "accept"), ("segment", "production")): 1}
    assert not (tmp_path / "registry.sqlite").exists()  # the scrape never creates a registry


def test_label_values_are_escaped(pki: DevicePki, tmp_path: Path) -> None:
    config_path = write_config(pki, tmp_path)
    counters = HookCounters(tmp_path / "metrics", 5, "h")
    counters.authentication("accept", 'odd"seg\\ment\nx')
    assert counters.flush()
    with App(load_config(config_path, check_files=False)) as app:
        body, _ = exposition(app, now=lambda: NOW)
    assert b'segment="odd\\"seg\\\\ment\\nx"' in body
    assert parse(body)["trustport_authentications_total"] == {
        (("outcome", "accept"), ("segment", 'odd"seg\\ment\nx')): 1}


def test_metrics_disabled_has_no_hook_series(pki: DevicePki, tmp_path: Path) -> None:
    config_path = write_config(pki, tmp_path, metrics={"enabled": False})
    with App(load_config(config_path, check_files=False)) as app:
        m = parse(exposition(app, now=lambda: NOW)[0])
    assert "trustport_authentications_total" not in m and m["trustport_registry_up"] == {(): 0}


@pytest.mark.parametrize(("message", "result"), [
    ("Gi1/0/1: CoA-ACK (re-authenticate)", "ack"),
    ("done: Gi1/0/1: Disconnect-ACK", "ack"),
    ("coa-disconnect: Disconnect-Request rejected by the NAS (no Error-Cause); check; falling back to x", "nak"),
    ("coa-reauth: the NAS did not answer: no answer after 3 tries; retry 1/7 at 2026-01-01", "no_answer"),
    ("FAILED: coa-reauth: unsupported vendor; giving up after 2 attempt(s)", "error"),
    ("coa-reauth: the NAS did not answer: x; set-vlan: sw1: unreachable; retry 2/7 at t", None),
    ("Gi1/0/1: VLAN 30 -> 40 (read back)", None),
])
def test_coa_results_from_job_log_messages(message: str, result: str | None) -> None:
    assert coa_result(message) == result


def test_command_line_helper_prints_the_exposition(pki: DevicePki, tmp_path: Path) -> None:
    import subprocess

    config_path = write_config(pki, tmp_path)
    done = subprocess.run([sys.executable, "-m", "trustport.observability.metrics", "--config", str(config_path)],
                          capture_output=True, text=True, check=True)
    assert "trustport_registry_up 0.0" in done.stdout
    list(text_string_to_metric_families(done.stdout))
