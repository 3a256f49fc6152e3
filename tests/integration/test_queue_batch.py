"""The enforcement queue's batch claim, batch bookkeeping, heartbeat, take-over and operator actions, on SQLite and
on a real PostgreSQL (the session fixture): the same assertions against both."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policy.enforcement import Plan, Step, StepKind
from tests.support.postgres import PostgresServer
from trustport.store import queue as jobq
from trustport.store.queue import JobStateError, SqlJobQueue
from trustport.store.sql import SqlDeviceStore

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)


@pytest.fixture(params=["sqlite", "postgresql"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlJobQueue]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database()
    store = SqlDeviceStore(url, create=True)
    yield SqlJobQueue(store)
    store.close()


def plan(port: str, switch: str) -> Plan:
    return Plan((Step(StepKind.SET_VLAN, switch, port, 999), Step(StepKind.BOUNCE, switch, port)))


def fill(queue: SqlJobQueue, switches: int, ports: int) -> None:
    for p in range(ports):
        for s in range(switches):
            queue.enqueue(plan(f"Gi1/0/{p}", f"sw{s}"), lock_key=f"sw{s}", reason="bulk", now=NOW)


def test_a_batch_is_one_switch_oldest_first_and_locks_it(queue: SqlJobQueue) -> None:
    fill(queue, switches=3, ports=5)
    first = queue.claim_batch("w1", NOW, LEASE, 4)
    assert [j.lock_key for j in first] == ["sw0"] * 4
    assert [j.plan.steps[0].port for j in first] == ["Gi1/0/0", "Gi1/0/1", "Gi1/0/2", "Gi1/0/3"]
    assert all(j.state == "running" and j.worker == "w1" and j.lease_until == NOW + LEASE for j in first)
    second = queue.claim_batch("w2", NOW, LEASE, 100)
    assert {j.lock_key for j in second} == {"sw1"} and len(second) == 5  # sw0's fifth job: its switch is busy
    third = queue.claim_batch("w3", NOW, LEASE, 100, prefer="sw0")
    assert {j.lock_key for j in third} == {"sw2"}
    assert queue.claim_batch("w4", NOW, LEASE, 100) == []
    queue.apply([jobq.finish(j, ["done: ok"], step=2) for j in first], NOW)
    rest = queue.claim_batch("w1", NOW, LEASE, 100)
    assert [(j.lock_key, j.plan.steps[0].port) for j in rest] == [("sw0", "Gi1/0/4")]


def test_concurrent_claims_never_share_a_job_or_a_switch(queue: SqlJobQueue) -> None:
    fill(queue, switches=8, ports=6)
    got: dict[str, list[jobq.Job]] = {}
    barrier = threading.Barrier(8)

    def claim(name: str) -> None:
        barrier.wait()
        got[name] = queue.claim_batch(name, NOW, LEASE, 100)

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [{j.lock_key for j in batch} for batch in got.values()]
    assert all(len(k) == 1 for k in keys) and len({next(iter(k)) for k in keys}) == 8
    ids = [j.id for batch in got.values() for j in batch]
    assert len(ids) == len(set(ids)) == 48


def test_bookkeeping_for_a_batch_is_per_job(queue: SqlJobQueue) -> None:
    fill(queue, switches=1, ports=3)
    a, b, c = queue.claim_batch("w1", NOW, LEASE, 10)
    marked = queue.apply([jobq.mark_bounce(j, "sw0", j.plan.steps[0].port) for j in (a, b, c)], NOW)
    assert [j.bounce_in_progress for j in marked if j] == [("sw0", "Gi1/0/0"), ("sw0", "Gi1/0/1"),
                                                            ("sw0", "Gi1/0/2")]
    later = NOW + timedelta(seconds=1)
    done, retried, failed = queue.apply([
        jobq.finish(a, ["Gi1/0/0: VLAN 30 -> 999 (read back)", "done: Gi1/0/0: bounced"], step=2, bounce_over=True),
        jobq.retry_or_fail(b, ["Gi1/0/1: VLAN 30 -> 999 (read back)"], "bounce: refused",
                           retry_at=later + timedelta(seconds=2), step=1),
        jobq.fail(c, [], "set-vlan: no such interface", bounce_over=True),
    ], later)
    assert done is not None and (done.state, done.step, done.bounce_in_progress, done.lease_until) == (
        "done", 2, None, None)
    assert jobq.last_results(done) == ["Gi1/0/0: VLAN 30 -> 999 (read back)", "done: Gi1/0/0: bounced"]
    assert retried is not None and (retried.state, retried.attempts, retried.step) == ("queued", 1, 1)
    assert retried.bounce_in_progress == ("sw0", "Gi1/0/1") and retried.not_before == later + timedelta(seconds=2)
    assert failed is not None and (failed.state, failed.failure, failed.failures) == (
        "failed", "set-vlan: no such interface", 1)
    stats = queue.stats()
    assert stats.by_state == {"done": 1, "queued": 1, "failed": 1} and stats.failures_total == 1
    # a failed job retried by an operator, failing again, counts twice: the metric never goes down
    queue.retry(failed.id, later, "alice")
    (again,) = queue.claim_batch("w1", later, LEASE, 1, prefer="sw0")
    assert again.id == failed.id and again.step == 0 and again.attempts == 0
    queue.apply([jobq.fail(again, [], "set-vlan: no such interface")], later)
    assert queue.stats().failures_total == 2


def test_heartbeat_takeover_and_dead_workers(queue: SqlJobQueue) -> None:
    fill(queue, switches=2, ports=2)
    mine = queue.claim_batch("host-a:1", NOW, LEASE, 10)
    theirs = queue.claim_batch("host-a:2", NOW, LEASE, 10)
    later = NOW + timedelta(seconds=10)
    assert queue.renew("host-a:1", [j.id for j in mine], later, LEASE) == 2
    assert queue.renew("host-a:1", [j.id for j in theirs], later, LEASE) == 0  # not its jobs
    expired = NOW + timedelta(seconds=16)
    taken = queue.claim_batch("host-b:9", expired, LEASE, 10)  # host-a:2 stopped renewing: its lease ran out
    assert {j.id for j in taken} == {j.id for j in theirs}
    assert all("resumed after an expired lease of host-a:2" in j.log[-1]["message"] for j in taken)
    assert queue.apply([jobq.finish(theirs[0], ["done"], step=2)], expired) == [None]  # the old worker must stop
    released = queue.reclaim(lambda w: w == "host-a:1", expired, "host-a:3")
    assert sorted(released) == sorted(j.id for j in mine)
    resumed = queue.claim_batch("host-a:3", expired, LEASE, 10)
    assert {j.id for j in resumed} == set(released)


def test_operators_retry_and_cancel_by_the_rules(queue: SqlJobQueue) -> None:
    fill(queue, switches=1, ports=3)
    queued_job = queue.list("queued")[-1]
    with pytest.raises(JobStateError, match="only a failed or cancelled job can be retried"):
        queue.retry(queued_job.id, NOW, "alice")
    cancelled = queue.cancel(queued_job.id, NOW, "alice")
    assert cancelled.state == "cancelled" and "cancelled by alice (was queued)" in cancelled.log[-1]["message"]
    with pytest.raises(JobStateError, match="already cancelled"):
        queue.cancel(queued_job.id, NOW, "alice")
    running = queue.claim_batch("w1", NOW, LEASE, 1)[0]
    with pytest.raises(JobStateError, match="is running on w1"):
        queue.cancel(running.id, NOW, "alice")
    forced = queue.cancel(running.id, NOW, "alice", force=True)
    assert forced.state == "cancelled" and "was running on w1" in forced.log[-1]["message"]
    assert queue.apply([jobq.finish(running, ["done"], step=2)], NOW) == [None]  # the worker stops touching it
    retried = queue.retry(forced.id, NOW, "bob")
    assert (retried.state, retried.step, retried.worker) == ("queued", 0, None)
    assert retried.log[-1]["event"] == "retried"
    with pytest.raises(JobStateError, match="no enforcement job 999999"):
        queue.cancel(999999, NOW, "bob")
