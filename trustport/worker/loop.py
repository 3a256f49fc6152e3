"""``trustport worker``: takes enforcement jobs from the database and applies them, one switch at a time.

Crash-safe by construction: the job's completed-step counter and lease live in the database (see
``trustport.store.queue``); a worker that dies mid-job leaves it to be resumed by the next one when the lease expires.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from policy.enforcement import PermanentStepError, StepExecutor, TransientStepError, not_before
from trustport.store.protocols import JobQueue
from trustport.store.queue import Job, LeaseLost


@dataclass(frozen=True)
class WorkerSettings:
    lease: timedelta = timedelta(seconds=60)
    backoff_base: timedelta = timedelta(seconds=2)
    backoff_cap: timedelta = timedelta(minutes=5)
    poll_seconds: float = 0.5


def default_worker_id() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(self, queue: JobQueue, executor: StepExecutor, settings: WorkerSettings = WorkerSettings(),
                 worker_id: str | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_event: Callable[[Job, str], None] | None = None) -> None:
        self.queue = queue
        self.executor = executor
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.on_event = on_event or (lambda _job, _message: None)
        self._last_switch: str | None = None

    def run_once(self) -> Job | None:
        """Claim one job and run it to completion, a retry or failure; None if nothing was runnable.
        Jobs for the switch the executor is still logged in to are taken first."""
        job = self.queue.claim(self.worker_id, self.clock(), self.settings.lease, prefer=self._last_switch)
        if job is None or job.lock_key != self._last_switch:
            self.executor.release()
        if job is None:
            self._last_switch = None
            return None
        self._last_switch = job.lock_key
        try:
            return self._run(job)
        except LeaseLost as exc:
            self.on_event(job, str(exc))
            return None

    def _run(self, job: Job) -> Job:
        primary = len(job.plan.steps)
        steps = job.plan.all_steps()
        while job.step < len(steps):
            step = steps[job.step]
            in_fallback = job.step >= primary
            try:
                message = self.executor.execute(step)
            except PermanentStepError as exc:
                if not in_fallback and job.plan.fallback:
                    fallback = ", ".join(f"{s.kind.value} on {s.target}" for s in job.plan.fallback)
                    job = self.queue.use_fallback(job, self.clock(), f"{exc}; falling back to {fallback}")
                    self.on_event(job, f"permanent failure, using fallback: {exc}")
                    continue
                job = self.queue.retry_or_fail(job, self.clock(), str(exc), retry_at=None)
                self.on_event(job, f"failed: {exc}")
                return job
            except TransientStepError as exc:
                now = self.clock()
                retry_at = not_before(now, job.attempts + 1, self.settings.backoff_base, self.settings.backoff_cap)
                job = self.queue.retry_or_fail(job, now, str(exc), retry_at=retry_at)
                self.on_event(job, f"transient failure: {exc}")
                return job
            last = job.step == len(steps) - 1 or (not in_fallback and job.step == primary - 1)
            now = self.clock()
            if last:
                job = self.queue.finish(job, now, message)
                self.on_event(job, f"done: {message}")
                return job
            job = self.queue.step_done(job, now, self.settings.lease, message)
            self.on_event(job, message)
        return self.queue.finish(job, self.clock(), "nothing left to do")

    def drain(self, max_jobs: int = 1_000_000) -> list[Job]:
        """Run jobs until none is runnable now (jobs waiting for a retry later are left queued)."""
        done = []
        try:
            for _ in range(max_jobs):
                job = self.run_once()
                if job is None:
                    break
                done.append(job)
        finally:
            self.executor.release()
        return done

    def run_forever(self, stop: Callable[[], bool], before_each: Callable[[], object] | None = None) -> None:
        try:
            while not stop():
                if before_each is not None:
                    before_each()
                if self.run_once() is None:
                    time.sleep(self.settings.poll_seconds)
        finally:
            self.executor.release()
