"""The operator's view of enforcement: ``devices ACTION --wait``, ``jobs show|retry|cancel|stats``, ``sessions
list|add|clear`` and the plain warning when a connected device stays in its VLAN. The worker is played through
the queue API (the real worker against real fakes is in tests/integration/test_enforcement.py)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from policy.enforcement import Plan, Step, StepKind
from policy.model import DeviceKey, LifecycleState, NetworkContext
from tests.pki_fixtures import DevicePki
from trustport.cli.main import cli
from trustport.settings.config import load_config
from trustport.store import queue as jobq
from trustport.store.queue import SqlJobQueue
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore

NOW = datetime.now(UTC).replace(microsecond=0)
SERIAL = "SN-4242"


def write_config(pki: DevicePki, tmp_path: Path, *, enforcement: bool = True) -> Path:
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({"switches": {
        "nas-coa": {"driver": "coa", "address": "127.0.0.1", "port": 3799,
                    "options": {"secret_env": "TP_TEST_COA_SECRET", "vendor": "cisco"}}}}))
    data: dict[str, Any] = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "run_as_user": None, "reject_delay": 0,
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": "enforce-cli-test-secret"}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))}],
        "revocation": {"crl_dir": str(pki.root / "crl")},
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
    }
    if enforcement:
        data["enforcement"] = {"inventory": "inventory.yaml", "nas": [{"nas_ip": "127.0.0.1", "coa": "nas-coa"}]}
    path = tmp_path / "trustport.yaml"
    path.write_text(yaml.safe_dump(data))
    assert CliRunner().invoke(cli, ["db", "init", "--config", str(path)]).exit_code == 0
    return path


def open_store(config_file: Path) -> SqlDeviceStore:
    return SqlDeviceStore(load_config(config_file, check_files=False).database_url())


def connected(config_file: Path, *, nas_ip: str = "127.0.0.1", port: str = "7", vlan: int = 30) -> int:
    store = open_store(config_file)
    try:
        device = store.find_device(DeviceKey("/CN=CA", SERIAL)) or store.add_device(
            DeviceKey("/CN=CA", SERIAL), state=LifecycleState.OPERATIONAL, now=NOW, segment="production")
        SqlSessionStore(store).authenticated(device.id, NetworkContext(nas_ip=nas_ip, nas_port=port,
                                                                       calling_station_id="02:00:00:00:42:42"),
                                             vlan, "production", NOW)
        return device.id
    finally:
        store.close()


def run(config_file: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, [*args, "--config", str(config_file)])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def config_file(pki: DevicePki, tmp_path: Path) -> Path:
    return write_config(pki, tmp_path)


def play_worker(config_file: Path, outcome: str, stop: threading.Event) -> None:
    """What a worker elsewhere does: claim what is queued and finish it (``outcome``: done or failed)."""
    store = open_store(config_file)
    queue = SqlJobQueue(store)
    try:
        while not stop.is_set():
            for job in queue.claim_batch("elsewhere", datetime.now(UTC), timedelta(seconds=15), 10):
                change = (jobq.finish(job, ["calling-station-id=02-00-00-00-42-42: CoA-ACK (re-authenticate)"],
                                      step=1) if outcome == "done" else
                          jobq.fail(job, [], "coa-reauth: nas-coa: the NAS did not answer"))
                queue.apply([change], datetime.now(UTC))
            time.sleep(0.05)
    finally:
        store.close()


@pytest.mark.parametrize(("outcome", "code", "expected"), [
    ("done", 0, "done: calling-station-id=02-00-00-00-42-42: CoA-ACK (re-authenticate)"),
    ("failed", 1, "FAILED: coa-reauth: nas-coa: the NAS did not answer"),
])
def test_wait_reports_each_job_and_fails_when_one_did(config_file: Path, outcome: str, code: int,
                                                      expected: str) -> None:
    connected(config_file)
    stop = threading.Event()
    worker = threading.Thread(target=play_worker, args=(config_file, outcome, stop))
    worker.start()
    try:
        result = run(config_file, "devices", "quarantine", SERIAL, "--wait", "--timeout", "20", code=code)
    finally:
        stop.set()
        worker.join()
    assert "job #1 queued -> VLAN 999 via coa-reauth nas-coa" in result.output
    assert f"job #1 {expected}" in result.output


def test_wait_gives_up_after_the_timeout(config_file: Path) -> None:
    connected(config_file)
    start = time.monotonic()
    result = run(config_file, "devices", "quarantine", SERIAL, "--wait", "--timeout", "0.5", code=1)
    assert time.monotonic() - start < 10
    assert "job #1 still queued after 0.5 s: is 'trustport worker' running?" in result.output
    out = json.loads(run(config_file, "devices", "release", SERIAL, "--wait", "--timeout", "0", "--json",
                         code=1).output)
    # a CoA re-authentication plan is the same whatever the target VLAN: the job still waiting is the one
    assert list(out["outcomes"]) == ["1"] and out["outcomes"]["1"]["state"] == "queued"


def test_a_connected_device_without_an_enforcement_path_is_said_plainly(pki: DevicePki, tmp_path: Path) -> None:
    config_file = write_config(pki, tmp_path)
    connected(config_file, nas_ip="10.9.9.9", port="12")
    result = run(config_file, "devices", "quarantine", SERIAL)  # without --wait: still a success
    assert (f"warning: device {SERIAL} is connected on NAS 10.9.9.9 port 12 and stays in VLAN 30 until it "
            "re-authenticates: no enforcement.nas entry for NAS 10.9.9.9") in result.output
    assert "nothing queued" not in result.output
    run(config_file, "devices", "release", SERIAL, "--wait", code=1)  # --wait: the move did not happen


def test_without_an_enforcement_section_each_connected_session_is_named(pki: DevicePki, tmp_path: Path) -> None:
    config_file = write_config(pki, tmp_path, enforcement=False)
    connected(config_file, port="3")
    result = run(config_file, "devices", "quarantine", SERIAL)
    assert (f"warning: device {SERIAL} is connected on NAS 127.0.0.1 port 3 and stays in VLAN 30 until it "
            "re-authenticates: no 'enforcement:' section in the config") in result.output
    assert json.loads(run(config_file, "devices", "release", SERIAL, "--json").output)["warnings"] == [
        f"device {SERIAL} is connected on NAS 127.0.0.1 port 3 and stays in VLAN 30 until it re-authenticates: "
        "no 'enforcement:' section in the config"]


def test_a_session_vlan_is_only_trusted_once_a_switch_read_it_back(config_file: Path) -> None:
    device_id = connected(config_file, vlan=999)  # RADIUS said 999; the port may be in VLAN 60 all along
    run(config_file, "devices", "quarantine", SERIAL)
    store = open_store(config_file)
    try:
        (job,) = SqlJobQueue(store).list("queued")  # not skipped as "already in VLAN 999"
        sessions = SqlSessionStore(store)
        (session,) = sessions.active_for_device(device_id)
        sessions.record_read_back({session.id: 999}, NOW)
        SqlJobQueue(store).cancel(job.id, NOW, "test")
    finally:
        store.close()
    run(config_file, "devices", "release", SERIAL)
    run(config_file, "devices", "quarantine", SERIAL)  # the release's job is still waiting: queued, not skipped
    store = open_store(config_file)
    try:
        assert [(j.id, j.state) for j in SqlJobQueue(store).list()] == [(2, "queued"), (1, "cancelled")]
        SqlJobQueue(store).cancel(2, NOW, "test")
    finally:
        store.close()
    run(config_file, "devices", "release", SERIAL)
    store = open_store(config_file)
    try:  # nothing waits any more, and the switch read 999 back: a quarantine now has nothing to do
        SqlJobQueue(store).cancel(3, NOW, "test")
    finally:
        store.close()
    result = run(config_file, "devices", "quarantine", SERIAL)
    assert "nothing queued (already in VLAN 999 (read back from the switch at" in result.output


def test_jobs_show_retry_cancel_and_stats(config_file: Path) -> None:
    store = open_store(config_file)
    queue = SqlJobQueue(store)
    try:
        plan = Plan((Step(StepKind.COA_REAUTH, "nas-coa", "calling-station-id=02-00-00-00-42-42"),),
                    (Step(StepKind.SET_VLAN, "sw-1", "Gi1/0/7", 999), Step(StepKind.BOUNCE, "sw-1", "Gi1/0/7")))
        job, _ = queue.enqueue(plan, lock_key="sw-1", reason="quarantine by alice", now=NOW)
        (claimed,) = queue.claim_batch("w1", NOW, timedelta(seconds=15), 10)
        (claimed,) = queue.apply([jobq.use_fallback(claimed, ["coa-reauth: nas-coa: the NAS did not answer; "
                                                              "falling back"], lease=timedelta(seconds=15))], NOW)
        assert claimed is not None
        (claimed,) = queue.apply([jobq.mark_bounce(claimed, "sw-1", "Gi1/0/7")], NOW)
        assert claimed is not None
        queue.apply([jobq.fail(claimed, [], "coa-reauth: no answer; bounce: sw-1 port Gi1/0/7: session lost",
                               step=2)], NOW)
        running, _ = queue.enqueue(Plan((Step(StepKind.BOUNCE, "sw-2", "Gi1/0/1"),)), lock_key="sw-2",
                                   reason="r", now=NOW)
        queue.claim_batch("w1", datetime.now(UTC), timedelta(seconds=60), 10)
    finally:
        store.close()
    shown = run(config_file, "jobs", "show", str(job.id)).output
    assert f"job #{job.id}: failed" in shown
    assert "why:      coa-reauth: no answer; bounce: sw-1 port Gi1/0/7: session lost" in shown
    assert "WARNING:  a bounce of sw-1 Gi1/0/7 did not finish" in shown
    assert "1. primary  coa-reauth nas-coa" in shown and "given up: fallback used" in shown
    assert "2. fallback set-vlan sw-1 Gi1/0/7 -> VLAN 999  done" in shown
    assert "3. fallback bounce sw-1 Gi1/0/7  stopped here (failed)" in shown
    assert json.loads(run(config_file, "jobs", "show", str(job.id), "--json").output)["failures"] == 1
    listed = run(config_file, "jobs", "list", "--state", "failed").output
    assert "session lost" in listed

    stats = run(config_file, "jobs", "stats", code=1).output  # a failed job: exit 1
    assert "failures total: 1" in stats
    prom = run(config_file, "jobs", "stats", "--prometheus", code=1).output
    assert 'trustport_enforcement_jobs{state="failed"} 1' in prom and "trustport_enforcement_failures_total 1" in prom

    assert "queued again (by bob)" in run(config_file, "jobs", "retry", str(job.id), "--actor", "bob").output
    assert "retried by bob (was failed: coa-reauth: no answer" in run(config_file, "jobs", "show", str(job.id)).output
    assert "only a failed or cancelled job" in run(config_file, "jobs", "retry", str(job.id), code=2).output
    cancel = run(config_file, "jobs", "cancel", str(job.id), "--actor", "carol").output
    assert "cancelled (by carol)" in cancel and "was bouncing sw-1 Gi1/0/7" in cancel
    assert "already cancelled" in run(config_file, "jobs", "cancel", str(job.id), code=2).output
    assert "--force" in run(config_file, "jobs", "cancel", str(running.id), code=2).output
    run(config_file, "jobs", "cancel", str(running.id), "--force")
    assert "no enforcement job 77" in run(config_file, "jobs", "show", "77", code=1).output
    assert json.loads(run(config_file, "jobs", "stats", "--json").output) == {
        "by_state": {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 2}, "failures_total": 1}


def test_sessions_list_add_clear(config_file: Path) -> None:
    device_id = connected(config_file)
    added = run(config_file, "sessions", "add", SERIAL, "--nas", "lab-hostapd", "--port", "wlan0",
                "--mac", "02:00:00:00:42:43", "--vlan", "35").output
    assert f"device #{device_id} {SERIAL} on NAS lab-hostapd port wlan0 (02-00-00-00-42-43), VLAN 35" in added
    listed = run(config_file, "sessions").output  # without a subcommand: the list, as before
    assert "lab-hostapd" in listed and "manual" in listed and "RADIUS" in listed
    assert run(config_file, "sessions", "list", "--device", SERIAL).output == run(config_file, "sessions",
                                                                                  "list").output
    rows = json.loads(run(config_file, "sessions", "--json").output)
    assert sorted((r["nas_ip"] or r["nas_identifier"], r["source"]) for r in rows) == [
        ("127.0.0.1", "radius"), ("lab-hostapd", "manual")]
    manual = next(r["id"] for r in rows if r["source"] == "manual")
    assert "1 session(s) ended" in run(config_file, "sessions", "clear", SERIAL, "--session", str(manual)).output
    assert "not an active session" in run(config_file, "sessions", "clear", SERIAL, "--session", str(manual),
                                          code=1).output
    assert "1 session(s) ended" in run(config_file, "sessions", "clear", SERIAL).output
    assert json.loads(run(config_file, "sessions", "--json").output) == []
    assert "no device with id or serial" in run(config_file, "sessions", "clear", "SN-NOPE", code=2).output


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--mac", "not-a-mac", "a MAC address such as"),
    ("--mac", "02:00:00:00:00", "a MAC address such as"),
    ("--mac", "02:00:00:00:00:0G", "a MAC address such as"),
    ("--mac", "02:00:00:00:00:01:02", "a MAC address such as"),
    ("--nas", "x" * 65, "1-64 printable characters"),
    ("--nas", "nas\x1b[31m", "1-64 printable characters"),
    ("--nas", " lab-hostapd", "1-64 printable characters"),
    ("--port", "", "1-64 printable characters"),
    ("--port", "wlan0\u202e", "1-64 printable characters"),
])
def test_sessions_add_refuses_hostile_values_and_records_nothing(config_file: Path, option: str, value: str,
                                                                 message: str) -> None:
    connected(config_file)
    before = json.loads(run(config_file, "sessions", "--json").output)
    args = {"--nas": "lab-hostapd", "--port": "wlan0", "--mac": "02:00:00:00:42:43", option: value}
    result = run(config_file, "sessions", "add", SERIAL, *[x for kv in args.items() for x in kv], code=2)
    assert message in result.output and "\x1b" not in result.output and "Traceback" not in result.output
    assert json.loads(run(config_file, "sessions", "--json").output) == before


def test_the_worker_applies_the_journal_of_a_radiusd_that_is_gone(config_file: Path) -> None:
    """A radiusd killed and not restarted leaves its journal (decisions it answered, sessions it opened): the worker
    applies it, so the planner sees the session and the decision log is complete; a live radiusd's file (its lock
    held) is left to it."""
    import fcntl

    from policy.model import DecisionLogEntry, Outcome
    from trustport.store.journal_records import encode_decision, encode_session

    device_id = connected(config_file)  # the registry knows the device
    directory = config_file.parent / "journal"
    directory.mkdir()
    context = NetworkContext(nas_ip="127.0.0.1", nas_port="9", calling_station_id="02:00:00:00:42:43")
    entry = DecisionLogEntry(time=NOW, device_id=device_id, device="dead-radiusd", context=context,
                             outcome=Outcome.ACCEPT, vlan=30, segment="production", reasons=("journaled",),
                             policy_revision="r")
    dead = directory / "journal-deadhost-999999-1-0.jsonl"
    dead.write_bytes(encode_decision(entry, None, None, None)
                     + encode_session(device_id, context, 30, "production", NOW, None))
    live = directory / "journal-livehost-1-1-0.jsonl"
    live.write_bytes(encode_decision(entry, None, None, None))
    with live.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a radiusd that is still running holds its file
        run(config_file, "worker", "--drain")
        assert live.exists()
    assert not dead.exists()
    store = open_store(config_file)
    try:
        logged = [e for e in store.decisions(device_id, limit=10) if e.device == "dead-radiusd"]
        assert [e.reasons for e in logged] == [("journaled",)]  # the dead one's, once; not the live one's
        ports = {s.nas_port for s in SqlSessionStore(store).active_for_device(device_id)}
        assert ports == {"7", "9"}
    finally:
        store.close()


def test_radius_journal_and_caches_say_plainly_what_they_find(config_file: Path) -> None:
    """No journal yet: nothing pending, no error. A rejected record (or a garbage line in rejected.jsonl): counted,
    exit 1. The journal off in the config: a clear error, not a traceback. No radiusd: no cache, said so."""
    directory = config_file.parent / "journal"
    out = run(config_file, "radius", "journal")
    assert "0 file(s), 0 byte(s)" in out.output
    directory.mkdir(exist_ok=True)
    (directory / "rejected.jsonl").write_bytes(b'{"journal": "j", "error": "x"}\n\x00\xff not json\n\n')
    out = run(config_file, "radius", "journal", "--json", code=1)
    assert '"rejected": 2' in out.stdout
    assert "no hook has a registry cache" in run(config_file, "radius", "caches").output
    text = config_file.read_text() + "auth_path: {journal: false}\n"
    config_file.write_text(text)
    out = run(config_file, "radius", "journal", code=1)
    assert "auth_path.journal is off" in out.output and "Traceback" not in out.output
