"""The durable enforcement queue: jobs live in the registry database, never only in memory.

Claiming is one short transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory
lock), so two workers never take the same job, and never two jobs for the same switch (``lock_key``) while one
is running with a live lease. A job whose worker died is taken again when its lease runs out and resumes at the
first step not yet completed (``step``); every step is idempotent or harmless to repeat (set VLAN reads back
first, a second bounce or re-authentication does no damage).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from policy.enforcement import Plan
from trustport.store.schema import enforcement_jobs as jobs
from trustport.store.sql import SqlDeviceStore

_CLAIM_LOCK = 0x7470_6A6F_6273  # PostgreSQL advisory lock id ("tpjobs")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(frozen=True)
class Job:
    id: int
    device_id: int | None
    session_id: int | None
    target: str
    lock_key: str
    plan: Plan
    reason: str
    state: str
    attempts: int
    max_attempts: int
    not_before: datetime
    lease_until: datetime | None
    worker: str | None
    step: int
    log: tuple[dict[str, Any], ...]
    created_at: datetime
    updated_at: datetime


def _job(row: Row[Any]) -> Job:
    return Job(row.id, row.device_id, row.session_id, row.target, row.lock_key, Plan.from_json(row.plan), row.reason,
               row.state, row.attempts, row.max_attempts, row.not_before, row.lease_until, row.worker, row.step,
               tuple(json.loads(row.log)), row.created_at, row.updated_at)


class SqlJobQueue:
    def __init__(self, store: SqlDeviceStore) -> None:
        self.store = store

    def enqueue(self, plan: Plan, *, lock_key: str, reason: str, now: datetime, device_id: int | None = None,
                session_id: int | None = None, max_attempts: int = 8) -> tuple[Job, bool]:
        """Queue a job; an identical job still waiting is returned instead (idempotent). -> (job, created)."""
        with self.store.transaction("queueing an enforcement job") as conn:
            self.lock(conn)
            return self.enqueue_in(conn, plan, lock_key=lock_key, reason=reason, now=now, device_id=device_id,
                                   session_id=session_id, max_attempts=max_attempts)

    @staticmethod
    def enqueue_in(conn: Connection, plan: Plan, *, lock_key: str, reason: str, now: datetime,
                   device_id: int | None = None, session_id: int | None = None,
                   max_attempts: int = 8) -> tuple[Job, bool]:
        """``enqueue`` inside the caller's transaction, which must have called ``lock(conn)`` first: the job
        commits or rolls back with whatever else the caller writes (a lifecycle action's state change)."""
        dedupe = f"{device_id}:{session_id}:{plan.to_json()}"
        existing = conn.execute(sa.select(jobs).where(jobs.c.dedupe_key == dedupe, jobs.c.state == QUEUED)
                                .limit(1)).first()
        if existing is not None:
            return _job(existing), False
        first = plan.steps[0] if plan.steps else None
        new_id = conn.execute(jobs.insert().values(
            device_id=device_id, session_id=session_id, target=first.target if first else "-", lock_key=lock_key,
            plan=plan.to_json(), reason=reason, dedupe_key=dedupe, state=QUEUED, attempts=0,
            max_attempts=max_attempts, not_before=now, step=0, log="[]", created_at=now, updated_at=now,
        ).returning(jobs.c.id)).scalar_one()
        row = conn.execute(sa.select(jobs).where(jobs.c.id == new_id)).one()
        return _job(row), True

    @staticmethod
    def lock(conn: Connection) -> None:
        """Take the queue's write lock; the first statement of the transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CLAIM_LOCK)))
        else:  # pysqlite has not sent BEGIN yet: take the write lock now, so the read-then-write is atomic
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def claim(self, worker: str, now: datetime, lease: timedelta, prefer: str | None = None) -> Job | None:
        """The oldest runnable job whose switch is free, now leased to ``worker``; None if there is none.
        ``prefer``: a lock key (switch) whose jobs go first, so a worker keeps using the session it has open."""
        busy = sa.select(jobs.c.lock_key).where(jobs.c.state == RUNNING, jobs.c.lease_until >= now)
        runnable = sa.or_(sa.and_(jobs.c.state == QUEUED, jobs.c.not_before <= now),
                          sa.and_(jobs.c.state == RUNNING, jobs.c.lease_until < now))  # lease expired: worker died
        with self.store.transaction("claiming an enforcement job") as conn:
            self.lock(conn)
            first = sa.case((jobs.c.lock_key == prefer, 0), else_=1) if prefer is not None else sa.literal(0)
            row = conn.execute(sa.select(jobs).where(runnable, jobs.c.lock_key.not_in(busy))
                               .order_by(first, jobs.c.not_before, jobs.c.id).limit(1)).first()
            if row is None:
                return None
            resumed = row.state == RUNNING
            entry = {"time": now.isoformat(), "step": row.step,
                     "message": f"{'resumed after an expired lease of ' + str(row.worker) if resumed else 'claimed'}"
                                f" by {worker}"}
            conn.execute(jobs.update().where(jobs.c.id == row.id).values(
                state=RUNNING, worker=worker, lease_until=now + lease, updated_at=now,
                log=json.dumps([*json.loads(row.log), entry])))
            claimed = conn.execute(sa.select(jobs).where(jobs.c.id == row.id)).one()
        return _job(claimed)

    def _update(self, job: Job, now: datetime, message: str, **values: Any) -> Job:
        with self.store.transaction("updating an enforcement job") as conn:
            row = conn.execute(sa.select(jobs.c.log, jobs.c.worker).where(jobs.c.id == job.id)).one()
            if row.worker != job.worker:
                raise LeaseLost(f"job {job.id} was taken over by {row.worker}; {job.worker} stops")
            entry = {"time": now.isoformat(), "step": values.get("step", job.step), "message": message}
            conn.execute(jobs.update().where(jobs.c.id == job.id).values(
                updated_at=now, log=json.dumps([*json.loads(row.log), entry]), **values))
            updated = conn.execute(sa.select(jobs).where(jobs.c.id == job.id)).one()
        return _job(updated)

    def step_done(self, job: Job, now: datetime, lease: timedelta, message: str) -> Job:
        """Record one completed step (the resume point) and renew the lease."""
        return self._update(job, now, message, step=job.step + 1, lease_until=now + lease)

    def use_fallback(self, job: Job, now: datetime, message: str) -> Job:
        """Switch to the fallback steps: the primary path failed permanently."""
        return self._update(job, now, message, step=len(job.plan.steps))

    def finish(self, job: Job, now: datetime, message: str) -> Job:
        return self._update(job, now, message, state=DONE, lease_until=None)

    def retry_or_fail(self, job: Job, now: datetime, message: str, retry_at: datetime | None) -> Job:
        """After a failure: back to the queue at ``retry_at``, or failed for good when attempts are used up."""
        attempts = job.attempts + 1
        if retry_at is None or attempts >= job.max_attempts:
            return self._update(job, now, f"{message}; giving up after {attempts} attempt(s)", state=FAILED,
                                attempts=attempts, lease_until=None)
        return self._update(job, now, f"{message}; retry {attempts}/{job.max_attempts - 1} at {retry_at.isoformat()}",
                            state=QUEUED, attempts=attempts, not_before=retry_at, lease_until=None)

    def get(self, job_id: int) -> Job | None:
        with self.store.transaction("reading an enforcement job") as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return _job(row) if row is not None else None

    def list(self, state: str | None = None, limit: int = 100) -> Sequence[Job]:
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(jobs.c.state == state)
        with self.store.transaction("listing enforcement jobs") as conn:
            return [_job(r) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        with self.store.transaction("counting enforcement jobs") as conn:
            rows = conn.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)).all()
        return {str(state): int(count) for state, count in rows}


class LeaseLost(RuntimeError):
    """Another worker took the job over (this one was too slow); stop touching it."""
