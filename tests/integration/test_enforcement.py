"""The enforcement worker against the switch fakes: success, switch down then back, CoA NAK fallback, crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.enforce_env import ENV, EnforceEnv, coa_nas, fake_switch
from tests.pki_fixtures import DevicePki
from trustport.services.lifecycle import LifecycleService
from trustport.store.queue import SqlJobQueue
from trustport.worker.executor import DriverExecutor
from trustport.worker.loop import Worker, WorkerSettings
from trustport_lab.fakes.fake_cli import free_tcp_port

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
    return Worker(queue, executor, WorkerSettings(lease=timedelta(seconds=30)), worker_id="test", clock=clock)


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
    first = worker.run_once()
    assert first is not None and first.state == "done"
    executor = worker.executor
    assert isinstance(executor, DriverExecutor) and executor.connections == 1
    executor._open["access-1"].__exit__(None, None, None)  # the switch dropped the idle session
    rest = worker.drain()
    assert [j.state for j in rest] == ["done", "done"]
    assert executor.connections == 2  # one fresh login after the stale one, shared by the remaining jobs
    assert [p.vlan for p in switch.states["cisco_ios"].ports.values()][:3] == [999, 999, 999]
