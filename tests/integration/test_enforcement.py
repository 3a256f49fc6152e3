"""The enforcement worker against the switch fakes: success, switch down then back, CoA NAK and silent-NAS fallback,
every path failing loudly, a worker killed mid-job and mid-bounce, ``--wait``, stale sessions, and a bulk move of
1,000 ports on 10 fake switches with 10 ports failing on their own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from policy.model import DeviceKey, LifecycleState, NetworkContext
from tests.enforce_env import ENV, EnforceEnv, coa_nas, fake_switch
from tests.pki_fixtures import DevicePki
from trustport.cli.main import cli as main_cli
from trustport.services.lifecycle import LifecycleService
from trustport.store.queue import SqlJobQueue
from trustport.store.sessions import SqlSessionStore
from trustport.worker.executor import DriverExecutor
from trustport.worker.loop import Worker, WorkerSettings
from trustport_lab.fakes.fake_cli import FakeCliServer, free_tcp_port

MAC = "02-00-00-00-10-01"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def switch() -> Iterator[object]:
    with fake_switch() as server:
        yield server


@pytest.fixture
def nas() -> Iterator[object]:
    fake = coa_nas({MAC})
    yield fake
    fake.stop()


@pytest.fixture
def env(tmp_path: Path, pki: DevicePki, switch, nas) -> Iterator[EnforceEnv]:  # type: ignore[no-untyped-def]
    environment = EnforceEnv(tmp_path, pki, switch.ports["cisco_ios"], nas.port,  # type: ignore[attr-defined]
                             host_key_lines=switch.known_hosts_lines())  # type: ignore[attr-defined]
    yield environment
    if hasattr(environment, "store"):
        environment.store.close()


def worker_for(env: EnforceEnv, clock=lambda: datetime.now(UTC)) -> Worker:  # type: ignore[no-untyped-def]
    queue = SqlJobQueue(env.store)
    assert env.config.enforcement is not None
    executor = DriverExecutor.from_file(env.config.path(env.config.enforcement.inventory))
    return Worker(queue, executor, WorkerSettings(lease=timedelta(seconds=30), concurrency=1), worker_id="test",
                  clock=clock, sessions=SqlSessionStore(env.store))


def quarantine(env: EnforceEnv, serial: str, now: datetime | None = None):  # type: ignore[no-untyped-def]
    service = LifecycleService(env.config, env.store)
    device = next(d for d in env.store.list_devices() if d.key.serial_number == serial)
    return service.act(device, "quarantine", actor="test", reason="suspicious", now=now or datetime.now(UTC))


def test_quarantine_moves_the_switch_port_and_reads_it_back(env: EnforceEnv, switch) -> None:  # type: ignore[no-untyped-def]
    env.write(coa=False)
    env.connected_device("ldevid-ok", "3", MAC)
    result = quarantine(env, "SN-0002")
    (queued,) = result.queued
    assert queued.job is not None and queued.decision.vlan == 999
    assert [s.kind.value for s in queued.job.plan.steps] == ["set-vlan", "bounce"]
    (job,) = worker_for(env).drain()
    assert job.state == "done", job.log
    port = switch.states["cisco_ios"].ports["GigabitEthernet1/0/3"]
    assert (port.vlan, port.bounces, port.shutdown) == (999, 1, False)
    assert any("VLAN 30 -> 999 (read back)" in entry["message"] for entry in job.log)


def test_repeated_request_is_one_job(env: EnforceEnv) -> None:
    env.write(coa=False)
    env.connected_device("ldevid-ok", "3", MAC)
    quarantine(env, "SN-0002")
    service = LifecycleService(env.config, env.store)
    device = env.store.list_devices()[0]
    again = service.enforcement.device_changed(device, "again", datetime.now(UTC))  # type: ignore[union-attr]
    assert [q.created for q in again] == [False]
    assert SqlJobQueue(env.store).counts() == {"queued": 1}


def test_switch_down_then_back_converges(env: EnforceEnv, tmp_path: Path) -> None:
    down_port = free_tcp_port()
    env.write(coa=False, switch_port=down_port)
    env.connected_device("ldevid-ok", "2", MAC)
    quarantine(env, "SN-0002")
    now = datetime.now(UTC)
    (job,) = worker_for(env, clock=lambda: now).drain()
    assert (job.state, job.attempts) == ("queued", 1)
    assert "set-vlan: access-1: SSH connection failed" in job.log[-1]["message"]
    assert "retry 1/4" in job.log[-1]["message"]
    assert worker_for(env, clock=lambda: now).drain() == []  # backing off: not runnable yet
    with fake_switch(port=down_port) as back:
        env.host_key_lines = back.known_hosts_lines()
        (env.work / "known_hosts").write_text(env.host_key_lines)
        later = now + timedelta(seconds=3)
        (job,) = worker_for(env, clock=lambda: later).drain()
        assert job.state == "done", job.log
        assert back.states["cisco_ios"].ports["GigabitEthernet1/0/2"].vlan == 999


def test_coa_ack_needs_no_switch_change(env: EnforceEnv, switch, nas) -> None:  # type: ignore[no-untyped-def]
    env.write(coa=True)
    env.connected_device("ldevid-ok", "4", MAC)
    quarantine(env, "SN-0002")
    (job,) = worker_for(env).drain()
    assert job.state == "done" and "CoA-ACK" in job.log[-1]["message"]
    assert any("subscriber:command=reauthenticate" in str(r["attrs"]) for r in nas.requests)
    assert switch.states["cisco_ios"].ports["GigabitEthernet1/0/4"].vlan == 30


def test_coa_nak_falls_back_to_the_switch(env: EnforceEnv, switch, nas) -> None:  # type: ignore[no-untyped-def]
    nas.sessions.clear()  # the NAS does not know the session: NAK 503
    env.write(coa=True)
    env.connected_device("ldevid-ok", "5", MAC)
    quarantine(env, "SN-0002")
    (job,) = worker_for(env).drain()
    assert job.state == "done", job.log
    assert any("Session-Context-Not-Found" in e["message"] and "falling back" in e["message"] for e in job.log)
    assert switch.states["cisco_ios"].ports["GigabitEthernet1/0/5"].vlan == 999


def test_permanent_failure_without_fallback_is_reported(env: EnforceEnv, nas) -> None:  # type: ignore[no-untyped-def]
    nas.sessions.clear()
    env.write(coa=True, switch=False)
    env.connected_device("ldevid-ok", "5", MAC)
    quarantine(env, "SN-0002")
    (job,) = worker_for(env).drain()
    assert job.state == "failed" and "giving up" in job.log[-1]["message"]


def test_unmapped_nas_port_is_reported_not_guessed(env: EnforceEnv) -> None:
    env.write(coa=False)
    env.connected_device("ldevid-ok", "", MAC)  # the NAS sent no port
    (queued,) = quarantine(env, "SN-0002").queued
    assert queued.job is None and "no NAS port" in (queued.problem or "")


def test_worker_killed_mid_job_resumes_and_applies_once(env: EnforceEnv, switch) -> None:  # type: ignore[no-untyped-def]
    env.write(coa=False, read_timeout=30, lease_seconds=2)
    env.connected_device("ldevid-ok", "6", MAC)
    quarantine(env, "SN-0002")
    state = switch.states["cisco_ios"]
    state.stall_show = True  # the worker hangs reading the port's VLAN
    process = subprocess.Popen([sys.executable, "-m", "trustport.cli.main", "worker", "--config", str(env.config_path)],
                               env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    queue = SqlJobQueue(env.store)
    deadline = time.monotonic() + 20
    while queue.counts().get("running", 0) == 0:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"the worker never claimed the job: {process.communicate()[0].decode()[-2000:]}")
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    state.stall_show = False
    (running,) = queue.list("running")
    assert running.worker and running.worker != "test"
    later = datetime.now(UTC) + timedelta(seconds=3)  # the dead worker's lease has run out
    (job,) = worker_for(env, clock=lambda: later).drain()
    assert job.state == "done", job.log
    assert any("resumed after an expired lease" in e["message"] for e in job.log)
    assert state.ports["GigabitEthernet1/0/6"].vlan == 999
    applied = [c for c in state.commands if c.strip() == "switchport access vlan 999"]
    assert len(applied) == 1, state.commands


def test_one_login_per_switch_when_draining_and_stale_sessions_are_replaced(env: EnforceEnv, switch) -> None:  # type: ignore[no-untyped-def]
    env.write(coa=False)
    for n, name in enumerate(("ldevid-ok", "idevid-ok", "rsa2048"), start=1):
        env.connected_device(name, str(n), f"02-00-00-00-20-0{n}")
    service = LifecycleService(env.config, env.store)
    now = datetime.now(UTC)
    for device in env.store.list_devices():
        service.act(device, "quarantine", actor="test", reason="bulk", now=now)
    worker = worker_for(env)
    first = worker.run_once()  # the three ports of the switch: one batch, one login
    assert [j.state for j in first] == ["done", "done", "done"]
    executor = worker.executor
    assert isinstance(executor, DriverExecutor) and executor.connections == 1
    ports = switch.states["cisco_ios"].ports
    assert [ports[f"GigabitEthernet1/0/{n}"].vlan for n in (1, 2, 3)] == [999, 999, 999]
    executor._open["access-1"].__exit__(None, None, None)  # the switch dropped the idle session
    for device in env.store.list_devices():
        service.act(device, "release", actor="test", reason="bulk", now=now)
    rest = worker.drain()
    assert [j.state for j in rest] == ["done", "done", "done"], [j.log for j in rest]
    assert executor.connections == 2  # one fresh login after the stale one, shared by the whole batch
    assert [ports[f"GigabitEthernet1/0/{n}"].vlan for n in (1, 2, 3)] == [30, 30, 30]


# -- a NAS that never answers ----------------------------------------------------------------------------------

def test_a_silent_nas_is_left_for_the_switch_at_once(env: EnforceEnv, switch, nas) -> None:  # type: ignore[no-untyped-def]
    nas.silent = True  # the NAS drops every CoA-Request: no ACK, no NAK
    env.write(coa=True)
    env.connected_device("ldevid-ok", "5", MAC)
    quarantine(env, "SN-0002")
    start = time.monotonic()
    (job,) = worker_for(env).drain()
    elapsed = time.monotonic() - start
    assert job.state == "done", job.log
    assert job.attempts == 0  # not retried: the switch fallback ran in the same attempt
    assert any("the NAS did not answer" in e["message"] and "falling back to set-vlan on access-1" in e["message"]
               for e in job.log), job.log
    assert switch.states["cisco_ios"].ports["GigabitEthernet1/0/5"].vlan == 999
    assert nas.unanswered >= 1 and elapsed < 20


def start_worker(env: EnforceEnv, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``trustport worker`` as its own process (a worker elsewhere), its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "trustport.cli.main", "worker", "--config",
                                 str(env.config_path), *args], env={**os.environ, **ENV}, stdout=out,
                                stderr=subprocess.STDOUT)


def stop_worker(process: subprocess.Popen[bytes], log: Path) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return log.read_text(errors="replace")


def cli(env: EnforceEnv, *args: str) -> Result:
    return CliRunner().invoke(main_cli, [*args, "--config", str(env.config_path)])


def test_silent_nas_and_switch_down_fail_loudly(env: EnforceEnv, nas, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nas.silent = True
    env.write(coa=True, switch_port=free_tcp_port(), max_attempts=2)  # nothing listens where the switch should be
    env.connected_device("ldevid-ok", "5", MAC)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        result = cli(env, "devices", "quarantine", "SN-0002", "--reason", "test", "--wait", "--timeout", "60")
    finally:
        output = stop_worker(worker, log)
    assert result.exit_code == 1, result.output
    assert "job #1 FAILED: coa-reauth:" in result.output and "the NAS did not answer" in result.output
    assert "set-vlan: access-1: SSH connection failed" in result.output
    assert re.search(r"ERROR trustport\.worker: enforcement job #1 .* FAILED on every path: coa-reauth", output), output
    assert "retry 1/1" in output  # the first failure was retried (both paths again), the second was final
    shown = cli(env, "jobs", "show", "1")
    assert shown.exit_code == 0 and "job #1: failed" in shown.output
    why = next(line for line in shown.output.splitlines() if line.strip().startswith("why:"))
    assert "did not answer" in why and "SSH connection failed" in why
    metrics = cli(env, "jobs", "stats", "--prometheus")
    assert "trustport_enforcement_failures_total 1" in metrics.output
    assert 'trustport_enforcement_jobs{state="failed"} 1' in metrics.output
    listed = cli(env, "jobs", "list", "--state", "failed")
    assert "did not answer" in listed.output


def test_wait_reports_what_was_read_back(env: EnforceEnv, switch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env.write(coa=False)
    env.connected_device("ldevid-ok", "4", MAC)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        result = cli(env, "devices", "quarantine", "SN-0002", "--wait", "--timeout", "60")
    finally:
        stop_worker(worker, log)
    assert result.exit_code == 0, result.output
    assert "job #1 done: Gi1/0/4: VLAN 30 -> 999 (read back); Gi1/0/4: bounced, up in VLAN 999 (read back)" in \
        result.output
    (session,) = SqlSessionStore(env.store).all_active()
    assert session.vlan == 999 and session.vlan_read_back_at is not None  # corrected from the read-back


def test_wait_times_out_without_a_worker(env: EnforceEnv) -> None:
    env.write(coa=False)
    env.connected_device("ldevid-ok", "4", MAC)
    result = cli(env, "devices", "quarantine", "SN-0002", "--wait", "--timeout", "1")
    assert result.exit_code == 1
    assert "job #1 still queued after 1 s" in result.output


def test_a_stale_session_vlan_does_not_skip_the_move(env: EnforceEnv, switch) -> None:  # type: ignore[no-untyped-def]
    env.write(coa=False)
    device = env.connected_device("ldevid-ok", "2", MAC)
    sessions = SqlSessionStore(env.store)
    (session,) = sessions.active_for_device(device.id)
    context = NetworkContext(nas_ip="127.0.0.1", nas_port="2", calling_station_id=MAC)
    sessions.authenticated(device.id, context, 999, "quarantine", datetime.now(UTC))  # RADIUS said 999 ...
    port = switch.states["cisco_ios"].ports["GigabitEthernet1/0/2"]
    port.vlan = 60  # ... but the switch never applied it
    switch.states["cisco_ios"].vlans.add(60)
    (queued,) = quarantine(env, "SN-0002").queued
    assert queued.job is not None, queued.problem  # not "already in VLAN 999"
    (job,) = worker_for(env).drain()
    assert job.state == "done" and any("VLAN 60 -> 999 (read back)" in e["message"] for e in job.log)
    assert port.vlan == 999
    after = sessions.get(session.id)
    assert after is not None and after.vlan == 999 and after.vlan_read_back_at is not None
    service = LifecycleService(env.config, env.store)
    again = service.enforcement.device_changed(env.store.list_devices()[0], "again", datetime.now(UTC))  # type: ignore[union-attr]
    assert [q.job for q in again] == [None]
    assert "already in VLAN 999 (read back from the switch" in (again[0].problem or "")


# -- a worker killed mid-bounce --------------------------------------------------------------------------------

def test_a_worker_killed_mid_bounce_leaves_no_port_down(env: EnforceEnv, switch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env.write(coa=False, read_timeout=30, lease_seconds=15)
    env.connected_device("ldevid-ok", "6", MAC)
    quarantine(env, "SN-0002")
    state = switch.states["cisco_ios"]
    port = state.ports["GigabitEthernet1/0/6"]
    state.hang_on = "no shutdown"  # the switch takes 'shutdown', then never answers 'no shutdown'
    log = tmp_path / "worker.log"
    first = start_worker(env, log)
    queue = SqlJobQueue(env.store)
    deadline = time.monotonic() + 30
    while not port.shutdown:
        if time.monotonic() > deadline or first.poll() is not None:
            pytest.fail(f"the worker never shut the port: {stop_worker(first, log)[-3000:]}")
        time.sleep(0.05)
    time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()
    (running,) = queue.list("running")
    assert running.bounce_in_progress == ("access-1", "Gi1/0/6")  # written before the port was shut
    assert port.shutdown  # the dead worker left it down
    state.hang_on = None
    second = start_worker(env, log)
    try:
        while port.shutdown or queue.counts().get("done", 0) == 0:
            if time.monotonic() - killed_at > 60 or second.poll() is not None:
                pytest.fail(f"no recovery: {log.read_text()[-3000:]}")
            time.sleep(0.05)
        recovered = time.monotonic() - killed_at
    finally:
        stop_worker(second, log)
    print(f"\nworker SIGKILLed mid-bounce: port up again and job done {recovered:.2f} s after the kill "
          f"(lease 15 s; the dead worker's lease was released at once)")
    assert recovered < 15  # well before the lease would have run out: the dead pid was seen at once
    (job,) = queue.list()
    assert job.state == "done" and job.bounce_in_progress is None, job.log
    messages = [e["message"] for e in job.log]
    assert any("released by" in m and "process is gone" in m for m in messages), messages
    assert any("Gi1/0/6: was left shut by an interrupted bounce: re-enabled" in m for m in messages), messages
    assert (port.vlan, port.shutdown) == (999, False)


# -- bulk ------------------------------------------------------------------------------------------------------

def test_bulk_move_of_1000_ports_with_10_failing_on_their_own(pki: DevicePki, tmp_path: Path) -> None:
    fleet = FakeCliServer.fleet("cisco_ios", switches=10, ports=100)
    for state in fleet.states.values():
        for p in state.ports.values():
            p.vlan = 30
    fleet.start()
    try:
        names = sorted(fleet.states)
        env = EnforceEnv(tmp_path, pki, fleet.ports[names[0]], free_tcp_port(),
                         host_key_lines=fleet.known_hosts_lines())
        refused = {names[n]: "GigabitEthernet1/0/7" for n in range(5, 10)}  # the switch refuses these
        for name, interface in refused.items():
            fleet.states[name].refuse_ports.add(interface)
        switches = {f"sw{n}": {"driver": "cisco_ios", "address": "127.0.0.1", "port": fleet.ports[name],
                               "options": {"username": "admin", "password_env": "TP_TEST_SWITCH_PASSWORD",
                                           "enable_secret_env": "TP_TEST_ENABLE_SECRET",
                                           "known_hosts": str(tmp_path / "known_hosts"), "conn_timeout": 10,
                                           "read_timeout": 60}} for n, name in enumerate(names)}
        ports = {str(p): f"Gi1/0/{p}" for p in range(1, 101)} | {"150": "Gi1/0/150"}  # 150: no such interface
        nas = [{"nas_ip": f"127.0.1.{n}", "switch": f"sw{n}", "ports": ports} for n in range(10)]
        env.write(coa=False, extra_switches=switches, nas=nas, max_attempts=1)
        store, sessions = env.store, SqlSessionStore(env.store)
        now = datetime.now(UTC)
        for n in range(10):
            for p in range(1, 101):
                nas_port = "150" if n < 5 and p == 9 else str(p)  # switches 0-4: port 9's session names Gi1/0/150
                device = store.add_device(DeviceKey("/CN=Bulk CA", f"SN-{n}-{p}"), state=LifecycleState.OPERATIONAL,
                                          now=now, segment="production")
                sessions.authenticated(device.id, NetworkContext(nas_ip=f"127.0.1.{n}", nas_port=nas_port,
                                                                 calling_station_id=f"02-00-00-00-{n:02x}-{p:02x}"),
                                       30, "production", now)
        service = LifecycleService(env.config, store)
        start = time.monotonic()
        for device in store.list_devices():
            service.act(device, "quarantine", actor="test", reason="bulk", now=now)
        queued = time.monotonic()
        log = tmp_path / "worker.log"
        worker = start_worker(env, log, "--drain", "--concurrency", "8")
        worker.wait(timeout=600)
        output = log.read_text(errors="replace")
        elapsed = time.monotonic() - queued
        print(f"\n1,000 ports on 10 fake switches: queued in {queued - start:.1f} s, worker --drain "
              f"(concurrency 8) {elapsed:.1f} s ({1000 / elapsed:.0f} ports/s)")
        assert worker.returncode == 1, output[-3000:]  # some jobs failed: the worker says so
        jobs = SqlJobQueue(store).list(limit=2000)
        assert len(jobs) == 1000
        failed = [j for j in jobs if j.state == "failed"]
        assert len(failed) == 10 and sum(j.state == "done" for j in jobs) == 990, output[-3000:]
        assert sorted(f.plan.steps[0].port for f in failed) == ["Gi1/0/150"] * 5 + ["Gi1/0/7"] * 5
        for job in failed:
            assert job.failure and (("Gi1/0/150" in job.failure) or ("Gi1/0/7" in job.failure)), job.failure
        for n, name in enumerate(names):
            state = fleet.states[name]
            for p in range(1, 101):
                port = state.ports[f"GigabitEthernet1/0/{p}"]
                bad = (n < 5 and p == 9) or (n >= 5 and p == 7)
                assert (port.vlan, port.shutdown) == ((30, False) if bad else (999, False)), (name, p)
            assert state.logins <= 3, (name, state.logins)  # one session per batch, not one per port
        read_back = [s for s in sessions.all_active() if s.vlan_read_back_at is not None]
        assert len(read_back) == 990 and all(s.vlan == 999 for s in read_back)
    finally:
        fleet.stop()
