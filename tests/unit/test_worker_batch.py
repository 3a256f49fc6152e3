"""The worker's batching, fallback, failure and resume rules against a scripted executor and a real SQLite queue.

The executor plays the equipment: per (target, port) it answers a step kind with success or a ``StepFailure``;
it records every ``run`` call, so a test can see what went to the switch together, in which order, and what the
queue said about the job while the step ran (the bounce record must be written before a port is shut).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policy.enforcement import FailureKind, Plan, Step, StepFailure, StepKind, Unit, UnitResult
from policy.model import DeviceKey, LifecycleState, NetworkContext
from trustport.store.queue import SqlJobQueue
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore
from trustport.worker import metrics
from trustport.worker.loop import Worker, WorkerSettings, worker_is_dead

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NAS_SILENT = StepFailure(FailureKind.NO_ANSWER, "coa-reauth: nas-1: CoA-Request: no valid reply -- the NAS did not "
                                                "answer")
SWITCH_DOWN = StepFailure(FailureKind.TRANSIENT, "set-vlan: sw-1: SSH connection failed (refused)")
NO_SUCH_PORT = StepFailure(FailureKind.PERMANENT, "set-vlan: sw-1 port Gi9/9: interface does not exist")


@dataclass
class Equipment:
    """A scripted StepExecutor. ``answers[(target, port)]``: failure per step kind (missing: success)."""

    queue: SqlJobQueue | None = None
    answers: dict[tuple[str, str], dict[StepKind, StepFailure]] = field(default_factory=dict)
    calls: list[list[Unit]] = field(default_factory=list)
    bounce_records: list[tuple[str, str] | None] = field(default_factory=list)  # per bounced unit, during run
    in_flight: set[str] = field(default_factory=set)
    overlaps: list[str] = field(default_factory=list)
    crash_on_bounce: bool = False
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, units: Sequence[Unit]) -> list[UnitResult]:
        keys = {u.target for u in units}
        with self.lock:
            self.calls.append(list(units))
            self.overlaps += sorted(keys & self.in_flight)
            self.in_flight |= keys
        try:
            if self.delay:
                time.sleep(self.delay)
            return [self._one(u) for u in units]
        finally:
            with self.lock:
                self.in_flight -= keys

    def _one(self, unit: Unit) -> UnitResult:
        answers = self.answers.get((unit.target, unit.port), {})
        messages: list[str] = []
        vlan = None
        for step in unit.steps:
            if step.kind is StepKind.BOUNCE and self.queue is not None:
                job = next(j for j in self.queue.list("running") if j.plan.all_steps()[j.step].port == unit.port)
                self.bounce_records.append(job.bounce_in_progress)
                if self.crash_on_bounce:
                    raise KeyboardInterrupt("killed mid-bounce")
            if step.kind in answers:
                return UnitResult(len(messages), tuple(messages), answers[step.kind], vlan)
            if step.kind is StepKind.SET_VLAN:
                vlan = step.vlan
                messages.append(f"{step.port}: VLAN 30 -> {step.vlan} (read back)")
            else:
                messages.append(f"{step.port}: {step.kind.value} ok")
        return UnitResult(len(messages), tuple(messages), vlan=vlan)

    def release(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlDeviceStore]:
    db = SqlDeviceStore(f"sqlite:///{tmp_path / 'registry.sqlite'}", create=True)
    yield db
    db.close()


def coa_then_switch(port: str, switch: str = "sw-1", nas: str = "nas-1") -> Plan:
    return Plan((Step(StepKind.COA_REAUTH, nas, f"calling-station-id={port}"),),
                (Step(StepKind.SET_VLAN, switch, port, 999), Step(StepKind.BOUNCE, switch, port)))


def switch_only(port: str, switch: str = "sw-1") -> Plan:
    return Plan((Step(StepKind.SET_VLAN, switch, port, 999), Step(StepKind.BOUNCE, switch, port)))


def worker(queue: SqlJobQueue, equipment: Equipment, *, at: datetime = NOW, worker_id: str = "w1",
           concurrency: int = 1, sessions: SqlSessionStore | None = None) -> Worker:
    settings = WorkerSettings(lease=timedelta(seconds=15), backoff_base=timedelta(seconds=2), concurrency=concurrency)
    return Worker(queue, equipment, settings, worker_id=worker_id, clock=lambda: at, sessions=sessions)


def messages(job: object) -> list[str]:
    return [e["message"] for e in job.log]  # type: ignore[attr-defined]


def test_a_nas_that_never_answers_is_left_for_the_switch_at_once(store: SqlDeviceStore) -> None:
    queue = SqlJobQueue(store)
    queue.enqueue(coa_then_switch("Gi1/0/5"), lock_key="sw-1", reason="quarantine", now=NOW)
    equipment = Equipment(answers={("nas-1", "calling-station-id=Gi1/0/5"): {StepKind.COA_REAUTH: NAS_SILENT}})
    (job,) = worker(queue, equipment).drain()
    assert (job.state, job.attempts) == ("done", 0), job.log  # no retry of the silent NAS first
    assert any("did not answer" in m and "falling back to set-vlan on sw-1, bounce on sw-1" in m
               for m in messages(job))
    assert [[u.steps[0].kind for u in call] for call in equipment.calls] == [[StepKind.COA_REAUTH],
                                                                          [StepKind.SET_VLAN]]
    assert messages(job)[-1] == "done: Gi1/0/5: bounce ok"


def test_every_path_failing_fails_loudly_after_the_retries(store: SqlDeviceStore,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    queue = SqlJobQueue(store)
    (queued, _) = queue.enqueue(coa_then_switch("Gi1/0/5"), lock_key="sw-1", reason="quarantine", now=NOW,
                                max_attempts=2)
    equipment = Equipment(answers={("nas-1", "calling-station-id=Gi1/0/5"): {StepKind.COA_REAUTH: NAS_SILENT},
                                   ("sw-1", "Gi1/0/5"): {StepKind.SET_VLAN: SWITCH_DOWN}})
    (first,) = worker(queue, equipment).drain()
    assert (first.state, first.attempts, first.step) == ("queued", 1, 0)  # the retry tries the NAS again too
    assert "retry 1/1" in messages(first)[-1]
    assert queue.stats().failures_total == 0
    assert worker(queue, equipment).drain() == []  # backing off
    with caplog.at_level(logging.ERROR, logger="trustport.worker"):
        (last,) = worker(queue, equipment, at=NOW + timedelta(seconds=3)).drain()
    assert last.state == "failed"
    assert last.failure is not None and "did not answer" in last.failure and "SSH connection failed" in last.failure
    assert "giving up after 2 attempt(s)" in messages(last)[-1]
    errors = [r for r in caplog.records if r.name == "trustport.worker" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"job #{queued.id}" in errors[0].getMessage()
    assert queue.stats().failures_total == 1
    text = metrics.prometheus_text(queue)
    assert 'trustport_enforcement_jobs{state="failed"} 1' in text
    assert "trustport_enforcement_failures_total 1" in text


def test_a_batch_goes_to_the_switch_together_and_a_bad_port_fails_alone(store: SqlDeviceStore) -> None:
    queue = SqlJobQueue(store)
    for n in range(1, 6):
        queue.enqueue(switch_only(f"Gi1/0/{n}"), lock_key="sw-1", reason="bulk", now=NOW)
    queue.enqueue(switch_only("Gi9/9"), lock_key="sw-1", reason="bulk", now=NOW)
    queue.enqueue(switch_only("Gi1/0/1", switch="sw-2"), lock_key="sw-2", reason="bulk", now=NOW)
    equipment = Equipment(answers={("sw-1", "Gi9/9"): {StepKind.SET_VLAN: NO_SUCH_PORT}})
    jobs = worker(queue, equipment).drain()
    assert sorted(j.state for j in jobs) == ["done"] * 6 + ["failed"]
    (bad,) = [j for j in jobs if j.state == "failed"]
    assert bad.attempts == 1 and "interface does not exist" in (bad.failure or "")  # permanent: no retry
    assert [len(call) for call in equipment.calls] == [6, 1]  # one push per switch, not one per port
    assert [{u.target for u in call} for call in equipment.calls] == [{"sw-1"}, {"sw-2"}]


def test_a_transient_failure_retries_that_job_alone_with_its_own_backoff(store: SqlDeviceStore) -> None:
    queue = SqlJobQueue(store)
    for n in (1, 2):
        queue.enqueue(switch_only(f"Gi1/0/{n}"), lock_key="sw-1", reason="bulk", now=NOW)
    refused = StepFailure(FailureKind.TRANSIENT, "bounce: sw-1 port Gi1/0/2: refused")
    equipment = Equipment(answers={("sw-1", "Gi1/0/2"): {StepKind.BOUNCE: refused}})
    jobs = {j.plan.steps[0].port: j for j in worker(queue, equipment).drain()}
    assert jobs["Gi1/0/1"].state == "done"
    retried = jobs["Gi1/0/2"]
    assert (retried.state, retried.step, retried.not_before) == ("queued", 1, NOW + timedelta(seconds=2))
    assert retried.bounce_in_progress == ("sw-1", "Gi1/0/2")  # the bounce failed midway: the port may be shut
    (again,) = worker(queue, Equipment(), at=NOW + timedelta(seconds=2)).drain()
    assert again.state == "done" and again.bounce_in_progress is None
    assert any("ensure-up ok" in m for m in messages(again))  # re-enabled first, then the bounce again


def test_the_bounce_is_recorded_before_the_port_is_shut_and_finished_by_whoever_resumes(
        store: SqlDeviceStore) -> None:
    queue = SqlJobQueue(store)
    queue.enqueue(switch_only("Gi1/0/6"), lock_key="sw-1", reason="quarantine", now=NOW)
    dying = Equipment(queue=queue, crash_on_bounce=True)
    with pytest.raises(KeyboardInterrupt):
        worker(queue, dying, worker_id="dead-host:1").drain()
    assert dying.bounce_records == [("sw-1", "Gi1/0/6")]
    (left,) = queue.list("running")
    assert left.bounce_in_progress == ("sw-1", "Gi1/0/6")
    assert worker(queue, Equipment(), at=NOW + timedelta(seconds=5)).drain() == []  # the lease is still live
    resumer = Equipment(queue=queue)
    (job,) = worker(queue, resumer, at=NOW + timedelta(seconds=16)).drain()
    assert job.state == "done" and job.bounce_in_progress is None
    assert [[s.kind for u in call for s in u.steps] for call in resumer.calls] == [
        [StepKind.ENSURE_UP], [StepKind.SET_VLAN, StepKind.BOUNCE]]
    assert any("resumed after an expired lease of dead-host:1" in m for m in messages(job))


def test_a_dead_worker_of_this_host_is_taken_over_at_once(store: SqlDeviceStore) -> None:
    import socket

    gone = subprocess.Popen(["true"])
    gone.wait()
    queue = SqlJobQueue(store)
    queue.enqueue(switch_only("Gi1/0/6"), lock_key="sw-1", reason="quarantine", now=NOW)
    dead_id = f"{socket.gethostname()}:{gone.pid}"
    assert len(queue.claim_batch(dead_id, NOW, timedelta(seconds=60), 10)) == 1
    assert worker_is_dead(dead_id) and not worker_is_dead(f"{socket.gethostname()}:1")  # pid 1 lives
    assert not worker_is_dead(f"another-host:{gone.pid}") and not worker_is_dead("named-worker")
    (job,) = worker(queue, Equipment(), at=NOW + timedelta(seconds=1)).drain()  # long before the lease ends
    assert job.state == "done"
    assert any(f"lease of {dead_id} released by w1" in m for m in messages(job))


def test_the_heartbeat_keeps_a_slow_job_from_being_taken_over(store: SqlDeviceStore) -> None:
    queue = SqlJobQueue(store)
    queue.enqueue(switch_only("Gi1/0/1"), lock_key="sw-1", reason="slow", now=NOW)
    clock = {"now": NOW}
    settings = WorkerSettings(lease=timedelta(seconds=0.3))
    slow = Worker(queue, Equipment(delay=1.2), settings, worker_id="slow", clock=lambda: clock["now"])

    stolen: list[object] = []

    def advance_and_try_to_take_it() -> None:
        for _ in range(10):
            time.sleep(0.1)
            clock["now"] += timedelta(seconds=0.1)
            stolen.extend(queue.claim_batch("thief", clock["now"], settings.lease, 10))

    thief = threading.Thread(target=advance_and_try_to_take_it)
    thief.start()
    ended = slow.drain()
    thief.join()
    assert stolen == []  # 1 s of work on a 0.3 s lease: renewed all along
    assert [j.state for j in ended] == ["done"]
    assert not any("resumed" in m for m in messages(ended[0]))


def test_switches_run_in_parallel_but_never_two_batches_of_one_switch(store: SqlDeviceStore) -> None:
    queue = SqlJobQueue(store)
    for switch in range(6):
        for port in range(1, 4):
            queue.enqueue(switch_only(f"Gi1/0/{port}", switch=f"sw-{switch}"), lock_key=f"sw-{switch}",
                          reason="bulk", now=NOW)
    equipment = Equipment(delay=0.2)
    w = worker(queue, equipment, concurrency=4)
    w.settings = WorkerSettings(concurrency=4, batch_limit=2)  # 2 of the 3 ports per claim: the switch stays locked
    start = time.monotonic()
    jobs = w.drain()
    elapsed = time.monotonic() - start
    assert len(jobs) == 18 and all(j.state == "done" for j in jobs)
    assert equipment.overlaps == []
    assert len(equipment.calls) == 12 and elapsed < 12 * 0.2  # batches of different switches overlapped


def test_a_verified_move_corrects_the_session_and_a_cancelled_job_is_left_alone(store: SqlDeviceStore) -> None:
    device = store.add_device(DeviceKey("/CN=CA", "SN-1"), state=LifecycleState.OPERATIONAL, now=NOW)
    sessions = SqlSessionStore(store)
    session = sessions.authenticated(device.id, NetworkContext(nas_ip="10.0.0.1", nas_port="1",
                                                               calling_station_id="02:00:00:00:00:01"), 30, None, NOW)
    assert session is not None and session.vlan_read_back_at is None
    queue = SqlJobQueue(store)
    queue.enqueue(switch_only("Gi1/0/1"), lock_key="sw-1", reason="q", now=NOW, device_id=device.id,
                  session_id=session.id)
    (job,) = worker(queue, Equipment(), sessions=sessions).drain()
    after = sessions.get(session.id)
    assert job.state == "done" and after is not None and (after.vlan, after.vlan_read_back_at) == (999, NOW)
    # RADIUS assigning another VLAN makes it unverified again
    sessions.authenticated(device.id, NetworkContext(nas_ip="10.0.0.1", nas_port="1",
                                                     calling_station_id="02:00:00:00:00:01"), 30, None, NOW)
    assert sessions.get(session.id).vlan_read_back_at is None  # type: ignore[union-attr]

    (other, _) = queue.enqueue(switch_only("Gi1/0/2"), lock_key="sw-1", reason="q", now=NOW)

    class CancelMidway(Equipment):
        def run(self, units: Sequence[Unit]) -> list[UnitResult]:
            queue.cancel(other.id, NOW, "op", force=True)
            return super().run(units)

    assert worker(queue, CancelMidway()).drain() == []
    cancelled = queue.get(other.id)
    assert cancelled is not None and cancelled.state == "cancelled"
    assert messages(cancelled)[-1].startswith("cancelled by op (was running")
