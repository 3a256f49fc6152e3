"""The durable enforcement queue: jobs live in the registry database, never only in memory.

Claiming is one short transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory
lock), so two workers never take the same job, and never jobs of the same switch (``lock_key``) while one of its
jobs is running with a live lease: ``claim_batch`` hands one worker up to N runnable jobs of ONE switch, which it
applies in one driver session. A worker renews the leases it holds (``renew``, its heartbeat), so leases can be
short; a job whose worker died is taken again when its lease runs out -- at once when a worker of the same host
sees that the dead one's process is gone (``reclaim``) -- and resumes at the first step not yet completed
(``step``). Every step is idempotent or harmless to repeat (set VLAN reads back, a second bounce or
re-authentication does no damage); a bounce is recorded (``bounce_in_progress``) before the port is shut, so the
job that resumes it re-enables the port first.

Bookkeeping for many jobs is one transaction (``apply``) of ``JobChange``s, built by the functions below. Log
entries are ``{time, step, message}``; those the queue writes itself (claims, take-overs, operator retries and
cancels) also carry ``event``, so the worker's own results since the last claim are easy to tell apart
(``last_results``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from policy.enforcement import Plan
from policy.errors import EnforcementError
from trustport.store.schema import enforcement_jobs as jobs
from trustport.store.sql import SqlDeviceStore

_CLAIM_LOCK = 0x7470_6A6F_6273  # PostgreSQL advisory lock id ("tpjobs")
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINISHED = frozenset({DONE, FAILED, CANCELLED})


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
    bounce_in_progress: tuple[str, str] | None = None  # (target, port) this job may have left shut
    failure: str | None = None  # why it failed for good
    failures: int = 0  # times it ended failed (retries do not reset it)


def _job(row: Row[Any]) -> Job:
    bounce = json.loads(row.bounce_in_progress) if row.bounce_in_progress else None
    return Job(row.id, row.device_id, row.session_id, row.target, row.lock_key, Plan.from_json(row.plan), row.reason,
               row.state, row.attempts, row.max_attempts, row.not_before, row.lease_until, row.worker, row.step,
               tuple(json.loads(row.log)), row.created_at, row.updated_at,
               (str(bounce["target"]), str(bounce["port"])) if bounce else None, row.failure, row.failures or 0)


@dataclass(frozen=True)
class JobChange:
    """What a worker does to one job; ``SqlJobQueue.apply`` writes many in one transaction. None: unchanged."""

    job: Job
    messages: tuple[str, ...] = ()  # appended to the job's log, in order
    state: str | None = None
    step: int | None = None
    attempts: int | None = None
    not_before: datetime | None = None
    lease: timedelta | None = None  # renew: lease_until = now + lease
    release: bool = False  # lease_until = NULL (finished, or back in the queue)
    bounce: tuple[str, str] | None = None  # record (before shutting the port) that a bounce is in progress
    bounce_over: bool = False  # the port is known to be up again
    failure: str | None = None  # set with state FAILED (counts one more failure)


@dataclass(frozen=True)
class JobStats:
    by_state: dict[str, int]
    failures_total: int  # jobs that ended failed, counted each time (the failure metric; never decreases)


class JobStateError(EnforcementError):
    """An operator action that the job's state does not allow (the message says why and what to do)."""


class JobNotFound(JobStateError):
    """No enforcement job has this id."""


# -- the changes a worker makes (pure) -----------------------------------------------------------------------

def progress(job: Job, messages: Sequence[str], *, step: int, lease: timedelta, bounce_over: bool = False
             ) -> JobChange:
    """Steps completed up to ``step`` (the resume point); the lease is renewed."""
    return JobChange(job, tuple(messages), step=step, lease=lease, bounce_over=bounce_over)


def use_fallback(job: Job, messages: Sequence[str], *, lease: timedelta, bounce_over: bool = False) -> JobChange:
    """The primary path failed permanently or its NAS did not answer: continue with the fallback steps."""
    return JobChange(job, tuple(messages), step=len(job.plan.steps), lease=lease, bounce_over=bounce_over)


def finish(job: Job, messages: Sequence[str], *, step: int, bounce_over: bool = False) -> JobChange:
    return JobChange(job, tuple(messages), state=DONE, step=step, release=True, bounce_over=bounce_over)


def fail(job: Job, messages: Sequence[str], why: str, *, step: int | None = None, count_attempt: bool = True,
         bounce_over: bool = False) -> JobChange:
    """Failed for good: ``why`` names every path that failed."""
    attempts = job.attempts + 1 if count_attempt else job.attempts
    return JobChange(job, (*messages, f"FAILED: {why}; giving up after {attempts} attempt(s)"), state=FAILED,
                     step=step, attempts=attempts, release=True, failure=why, bounce_over=bounce_over)


def retry_or_fail(job: Job, messages: Sequence[str], why: str, *, retry_at: datetime, step: int,
                  bounce_over: bool = False) -> JobChange:
    """After a transient failure: back to the queue at ``retry_at``, or failed for good when attempts are used up."""
    attempts = job.attempts + 1
    if attempts >= job.max_attempts:
        return fail(job, messages, why, step=step, bounce_over=bounce_over)
    return JobChange(job, (*messages, f"{why}; retry {attempts}/{job.max_attempts - 1} at {retry_at.isoformat()}"),
                     state=QUEUED, step=step, attempts=attempts, not_before=retry_at, release=True,
                     bounce_over=bounce_over)


def mark_bounce(job: Job, target: str, port: str) -> JobChange:
    return JobChange(job, bounce=(target, port))


def last_results(job: Job) -> list[str]:
    """What the worker reported since the job was last claimed: the steps it did, read-backs, the failure."""
    out: list[str] = []
    for entry in job.log:
        if entry.get("event") in ("claimed", "resumed"):
            out = []
        elif "event" not in entry:
            out.append(str(entry.get("message", "")))
    return out


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
        plan_json = plan.to_json()
        dedupe = f"{device_id}:{session_id}:{plan_json}"
        older: Sequence[Row[Any]] = ()
        if session_id is None:
            existing = conn.execute(sa.select(jobs).where(jobs.c.dedupe_key == dedupe, jobs.c.state == QUEUED)
                                    .limit(1)).first()
        else:  # one read: the identical job still waiting, and the session's older jobs a new one supersedes
            older = conn.execute(sa.select(jobs).where(jobs.c.session_id == session_id,
                                                       jobs.c.state.in_((QUEUED, FAILED)))).all()
            existing = next((r for r in older if r.dedupe_key == dedupe and r.state == QUEUED), None)
        if existing is not None:
            return _job(existing), False
        first = plan.steps[0] if plan.steps else None
        row = conn.execute(jobs.insert().values(
            device_id=device_id, session_id=session_id, target=first.target if first else "-", lock_key=lock_key,
            plan=plan_json, reason=reason, dedupe_key=dedupe, state=QUEUED, attempts=0,
            max_attempts=max_attempts, not_before=now, step=0, log="[]", created_at=now, updated_at=now,
        ).returning(*jobs.c)).one()
        for old in older:  # the newest decision for a session wins: its older waiting or failed jobs go
            entry = {"time": now.isoformat(), "step": old.step, "message": f"superseded by job #{row.id}",
                     "event": "cancelled"}
            conn.execute(jobs.update().where(jobs.c.id == old.id).values(
                state=CANCELLED, updated_at=now, log=json.dumps([*json.loads(old.log), entry])))
        return _job(row), True

    @staticmethod
    def lock(conn: Connection) -> None:
        """Take the queue's write lock; the first statement of the transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CLAIM_LOCK)))
        else:  # pysqlite has not sent BEGIN yet: take the write lock now, so the read-then-write is atomic
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def claim_batch(self, worker: str, now: datetime, lease: timedelta, limit: int,
                    prefer: str | None = None) -> list[Job]:
        """Up to ``limit`` runnable jobs of one free switch (``lock_key``: the one whose oldest runnable job is
        oldest), now leased to ``worker``, oldest first; empty if nothing is runnable. ``prefer``: a lock key whose
        jobs go first, so a worker keeps using the session it has open."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        busy = sa.select(jobs.c.lock_key).where(jobs.c.state == RUNNING, jobs.c.lease_until >= now)
        runnable = sa.or_(sa.and_(jobs.c.state == QUEUED, jobs.c.not_before <= now),
                          sa.and_(jobs.c.state == RUNNING, jobs.c.lease_until < now))  # lease expired: worker died
        with self.store.transaction("claiming enforcement jobs") as conn:
            self.lock(conn)
            first = sa.case((jobs.c.lock_key == prefer, 0), else_=1) if prefer is not None else sa.literal(0)
            key = conn.execute(sa.select(jobs.c.lock_key).where(runnable, jobs.c.lock_key.not_in(busy))
                               .order_by(first, jobs.c.not_before, jobs.c.id).limit(1)).scalar()
            if key is None:
                return []
            rows = conn.execute(sa.select(jobs.c.id, jobs.c.state, jobs.c.worker, jobs.c.step, jobs.c.log)
                                .where(runnable, jobs.c.lock_key == key)
                                .order_by(jobs.c.not_before, jobs.c.id).limit(limit)).all()
            updates = []
            for row in rows:
                resumed = row.state == RUNNING
                how = f"resumed after an expired lease of {row.worker}" if resumed else "claimed"
                entry = {"time": now.isoformat(), "step": row.step, "message": f"{how} by {worker}",
                         "event": "resumed" if resumed else "claimed"}
                updates.append({"b_id": row.id, "b_log": json.dumps([*json.loads(row.log), entry])})
            conn.execute(jobs.update().where(jobs.c.id == sa.bindparam("b_id")).values(
                state=RUNNING, worker=worker, lease_until=now + lease, updated_at=now, log=sa.bindparam("b_log")),
                updates)
            claimed = conn.execute(sa.select(jobs).where(jobs.c.id.in_([r.id for r in rows]))).all()
        by_id = {row.id: _job(row) for row in claimed}
        return [by_id[row.id] for row in rows]

    def apply(self, changes: Sequence[JobChange], now: datetime) -> list[Job | None]:
        """Write many jobs' changes in one transaction; per change the updated job, or None when the job is no
        longer this worker's (taken over after its lease ran out, or cancelled): that worker must stop."""
        if not changes:
            return []
        ids = [c.job.id for c in changes]
        if len(set(ids)) != len(ids):
            raise ValueError("one change per job")
        with self.store.transaction("updating enforcement jobs") as conn:
            current = {row.id: row for row in conn.execute(
                sa.select(jobs.c.id, jobs.c.log, jobs.c.worker, jobs.c.state, jobs.c.failures)
                .where(jobs.c.id.in_(ids)))}
            mine = [c for c in changes if (row := current.get(c.job.id)) is not None
                    and row.worker == c.job.worker and row.state == RUNNING]
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # one executemany per set of columns
            for change in mine:
                row = current[change.job.id]
                values = self._values(change, now, row.log, row.failures)
                groups.setdefault(tuple(sorted(values)), []).append(
                    {"b_id": change.job.id, **{f"b_{k}": v for k, v in values.items()}})
            for columns, params in groups.items():
                conn.execute(jobs.update().where(jobs.c.id == sa.bindparam("b_id"))
                             .values({c: sa.bindparam(f"b_{c}") for c in columns}), params)
            updated = {row.id: _job(row) for row in conn.execute(
                sa.select(jobs).where(jobs.c.id.in_([c.job.id for c in mine])))} if mine else {}
        return [updated.get(job_id) for job_id in ids]

    @staticmethod
    def _values(change: JobChange, now: datetime, log_json: str, failures: int | None) -> dict[str, Any]:
        values: dict[str, Any] = {"updated_at": now}
        if change.messages:
            step = change.step if change.step is not None else change.job.step
            log = json.loads(log_json)
            log += [{"time": now.isoformat(), "step": step, "message": m} for m in change.messages]
            values["log"] = json.dumps(log)
        for name in ("state", "step", "attempts", "not_before"):
            if getattr(change, name) is not None:
                values[name] = getattr(change, name)
        if change.lease is not None:
            values["lease_until"] = now + change.lease
        if change.release:
            values["lease_until"] = None
        if change.bounce is not None:
            values["bounce_in_progress"] = json.dumps({"target": change.bounce[0], "port": change.bounce[1]})
        if change.bounce_over:
            values["bounce_in_progress"] = None
        if change.failure is not None:
            values.update(failure=change.failure, failures=(failures or 0) + 1)
        elif change.state is not None:
            values["failure"] = None
        return values

    def renew(self, worker: str, job_ids: Sequence[int], now: datetime, lease: timedelta) -> int:
        """The heartbeat: extend the leases ``worker`` still holds on these jobs; how many it still holds."""
        if not job_ids:
            return 0
        with self.store.transaction("renewing enforcement job leases") as conn:
            result = conn.execute(jobs.update().where(jobs.c.id.in_(list(job_ids)), jobs.c.worker == worker,
                                                      jobs.c.state == RUNNING).values(lease_until=now + lease))
        return int(result.rowcount)

    def reclaim(self, is_dead: Callable[[str], bool], now: datetime, by: str) -> list[int]:
        """Expire at once the leases of running jobs whose worker ``is_dead`` says is gone (its process no longer
        exists), so they are claimable now instead of when the lease runs out; the ids of those jobs."""
        with self.store.transaction("reclaiming jobs of dead workers") as conn:
            self.lock(conn)
            rows = conn.execute(sa.select(jobs.c.id, jobs.c.worker, jobs.c.step, jobs.c.log)
                                .where(jobs.c.state == RUNNING, jobs.c.lease_until >= now)).all()
            dead = {w for w in {row.worker for row in rows} if w is not None and w != by and is_dead(w)}
            taken = [row for row in rows if row.worker in dead]
            for row in taken:
                entry = {"time": now.isoformat(), "step": row.step,
                         "message": f"lease of {row.worker} released by {by}: that worker's process is gone",
                         "event": "released"}
                conn.execute(jobs.update().where(jobs.c.id == row.id).values(
                    lease_until=now - timedelta(microseconds=1), updated_at=now,
                    log=json.dumps([*json.loads(row.log), entry])))
        return [row.id for row in taken]

    def retry(self, job_id: int, now: datetime, actor: str) -> Job:
        """A failed (or cancelled) job back in the queue, from its first step, with its attempts reset; audited in
        its log. A bounce it may have left unfinished is finished first by the worker."""
        with self.store.transaction(f"retrying enforcement job {job_id}") as conn:
            self.lock(conn)
            row = self._row(conn, job_id)
            if row.state not in (FAILED, CANCELLED):
                raise JobStateError(f"job {job_id} is {row.state}; only a failed or cancelled job can be retried"
                                    + ("" if row.state != QUEUED else " (it is already waiting for a worker)"))
            why = f": {row.failure}" if row.failure else ""
            entry = {"time": now.isoformat(), "step": 0,
                     "message": f"retried by {actor} (was {row.state}{why}); starting again at its first step",
                     "event": "retried"}
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                state=QUEUED, attempts=0, step=0, not_before=now, lease_until=None, worker=None, updated_at=now,
                log=json.dumps([*json.loads(row.log), entry])))
            return _job(self._row(conn, job_id))

    def cancel(self, job_id: int, now: datetime, actor: str, force: bool = False) -> Job:
        """A queued or failed job -> cancelled (a running one only with ``force``: its worker stops at its next
        write, having possibly applied part of it); audited in its log."""
        with self.store.transaction(f"cancelling enforcement job {job_id}") as conn:
            self.lock(conn)
            row = self._row(conn, job_id)
            live = row.state == RUNNING and row.lease_until is not None and row.lease_until >= now
            if row.state in (DONE, CANCELLED):
                raise JobStateError(f"job {job_id} is already {row.state}; nothing to cancel")
            if live and not force:
                raise JobStateError(f"job {job_id} is running on {row.worker}; wait for it, or cancel it with "
                                    "--force (the worker stops at its next step; part of the job may be applied)")
            entry = {"time": now.isoformat(), "step": row.step,
                     "message": f"cancelled by {actor} (was {row.state}" + (f" on {row.worker})" if live else ")"),
                     "event": "cancelled"}
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                state=CANCELLED, lease_until=None, updated_at=now, log=json.dumps([*json.loads(row.log), entry])))
            return _job(self._row(conn, job_id))

    @staticmethod
    def _row(conn: Connection, job_id: int) -> Row[Any]:
        row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise JobNotFound(f"no enforcement job {job_id}; 'trustport jobs list' shows them")
        return row

    def get(self, job_id: int) -> Job | None:
        with self.store.transaction("reading an enforcement job") as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return _job(row) if row is not None else None

    def get_many(self, job_ids: Sequence[int]) -> dict[int, Job]:
        """The jobs with these ids that exist, by id (one query: ``--wait`` polls many jobs)."""
        if not job_ids:
            return {}
        with self.store.transaction("reading enforcement jobs") as conn:
            rows = conn.execute(sa.select(jobs).where(jobs.c.id.in_(list(job_ids)))).all()
        return {row.id: _job(row) for row in rows}

    def sessions_with_open_jobs(self, session_ids: Sequence[int]) -> set[int]:
        """Those of these sessions that have a job queued or running (whose outcome is not known yet)."""
        if not session_ids:
            return set()
        with self.store.transaction("reading enforcement jobs") as conn:
            rows = conn.execute(sa.select(jobs.c.session_id).distinct().where(
                jobs.c.session_id.in_(list(session_ids)), jobs.c.state.in_((QUEUED, RUNNING)))).scalars()
            return {int(r) for r in rows if r is not None}

    def list(self, state: str | None = None, limit: int = 100, device_id: int | None = None) -> Sequence[Job]:
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if device_id is not None:
            query = query.where(jobs.c.device_id == device_id)
        with self.store.transaction("listing enforcement jobs") as conn:
            return [_job(r) for r in conn.execute(query)]

    def finished_durations(self) -> Sequence[tuple[str, float]]:
        """(state, seconds from enqueue to its last change) of every job that ended (done or failed)."""
        query = sa.select(jobs.c.state, jobs.c.created_at, jobs.c.updated_at).where(jobs.c.state.in_((DONE, FAILED)))
        with self.store.transaction("reading enforcement job times") as conn:
            return [(state, max(0.0, (updated - created).total_seconds())) for state, created, updated in
                    conn.execute(query)]

    def logs_of_coa_jobs(self) -> Sequence[str]:
        """The raw JSON log of every job whose plan has a CoA step (what the CoA metrics count)."""
        with self.store.transaction("reading enforcement job logs") as conn:
            return [str(text) for (text,) in conn.execute(sa.select(jobs.c.log).where(jobs.c.plan.contains('"coa-')))]

    def counts(self) -> dict[str, int]:
        with self.store.transaction("counting enforcement jobs") as conn:
            rows = conn.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)).all()
        return {str(state): int(count) for state, count in rows}

    def stats(self) -> JobStats:
        with self.store.transaction("counting enforcement jobs") as conn:
            rows = conn.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)).all()
            failures = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(jobs.c.failures), 0))).scalar_one()
        return JobStats({str(state): int(count) for state, count in rows}, int(failures))
