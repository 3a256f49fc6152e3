"""``trustport worker``: takes enforcement jobs from the database and applies them, many switches at once.

Each of ``concurrency`` threads claims a batch -- up to ``batch_limit`` runnable jobs of ONE switch (the queue's
per-switch lock keeps every other worker and thread off that switch) -- and applies it in rounds: the next unit
of every job (a CoA request, or a set-VLAN + bounce of its port), all ports of the switch in one driver session,
the NAS requests concurrently, then one transaction of bookkeeping for the whole batch. Results stay per job: a
port that fails fails its own job only; a transient failure sends that job back to the queue with its own
backoff; a NAS that did not answer, like a NAK, sends it down its fallback path at once, in the next round.
A job fails only when every path failed, and then loudly (logger ``trustport.worker`` at error, ``jobs show``,
the failure metric).

Crash-safe by construction: the job's completed-step counter and lease live in the database (see
``trustport.store.queue``); a bounce is recorded before the port is shut, so whoever resumes the job re-enables
the port first. A heartbeat thread renews the leases this worker holds, so they can be short, and a starting
worker releases at once the jobs of dead workers of the same host (worker id ``host:pid``, pid gone).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policy.enforcement import (
    FailureKind,
    Step,
    StepExecutor,
    StepFailure,
    StepKind,
    Unit,
    UnitResult,
    first_unit,
    not_before,
)
from trustport.store import queue as jobq
from trustport.store.protocols import JobQueue, SessionRepository
from trustport.store.queue import Job, JobChange

log = logging.getLogger("trustport.worker")


@dataclass(frozen=True)
class WorkerSettings:
    lease: timedelta = timedelta(seconds=15)  # short: the heartbeat renews it while the worker is alive
    backoff_base: timedelta = timedelta(seconds=2)
    backoff_cap: timedelta = timedelta(minutes=5)
    poll_seconds: float = 0.5
    concurrency: int = 8  # switches worked on at once (one thread each)
    batch_limit: int = 256  # jobs of one switch claimed (and pushed) together

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.05, self.lease.total_seconds() / 3)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_is_dead(worker_id: str) -> bool:
    """True only when ``worker_id`` is ``host:pid`` of THIS host and that process no longer exists (or is a
    zombie). Any other id (another host, a name given with --worker-id) is never judged dead: its jobs wait for
    their lease to run out."""
    host, sep, pid_text = worker_id.rpartition(":")
    if not sep or host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid != os.getpid() and not _process_alive(pid)


def _process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] not in ("Z", "X", "x")


@dataclass
class _Run:
    """One job of a batch while it is being worked on."""

    job: Job
    notes: list[str] = field(default_factory=list)  # paths that failed earlier in this run (the final why)
    nas_silent: bool = False  # the primary path was left because its NAS did not answer: a retry tries it again


class Worker:
    def __init__(self, queue: JobQueue, executor: StepExecutor, settings: WorkerSettings = WorkerSettings(),
                 worker_id: str | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_event: Callable[[Job, str], None] | None = None,
                 sessions: SessionRepository | None = None) -> None:
        """``sessions``: corrected from read-backs after verified moves (None: not corrected)."""
        self.queue = queue
        self.executor = executor
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.on_event = on_event or (lambda _job, _message: None)
        self.sessions = sessions
        self._local = threading.local()  # per thread: the lock key (switch) whose session it has open
        self._held: set[int] = set()
        self._held_lock = threading.Lock()

    # -- one batch ---------------------------------------------------------------------------------------------

    def run_once(self) -> list[Job]:
        """Claim one switch's batch and run each job to completion, a retry or failure; the jobs as they ended
        (empty if nothing was runnable)."""
        return self._claim_and_run() or []

    def _claim_and_run(self) -> list[Job] | None:
        last: str | None = getattr(self._local, "last", None)
        batch = self.queue.claim_batch(self.worker_id, self.clock(), self.settings.lease, self.settings.batch_limit,
                                       prefer=last)
        if not batch or batch[0].lock_key != last:
            self.executor.release()
        if not batch:
            self._local.last = None
            return None
        self._local.last = batch[0].lock_key
        with self._held_lock:
            self._held.update(j.id for j in batch)
        try:
            return self._run_batch(batch)
        finally:
            with self._held_lock:
                self._held.difference_update(j.id for j in batch)

    def _run_batch(self, batch: Sequence[Job]) -> list[Job]:
        runs = {job.id: _Run(job) for job in batch}
        ended: list[Job] = []
        resuming = [r for r in runs.values() if r.job.bounce_in_progress is not None]
        if resuming:  # an interrupted bounce may have left the port shut: bring it up before anything else
            units = [Unit((Step(StepKind.ENSURE_UP, *r.job.bounce_in_progress),)) for r in resuming
                     if r.job.bounce_in_progress is not None]
            results = self.executor.run(units)
            self._apply(runs, [self._resumed(r, res) for r, res in zip(resuming, results, strict=True)], ended)
        while runs:
            active = list(runs.values())
            finished = [r for r in active if r.job.step >= self._path_end(r.job)]
            if finished:
                self._apply(runs, [jobq.finish(r.job, ["done: nothing left to do"], step=r.job.step)
                                   for r in finished], ended)
                continue
            units = [first_unit(r.job.plan.all_steps(), r.job.step, self._path_end(r.job)) for r in active]
            marks = [jobq.mark_bounce(r.job, u.target, u.port) for r, u in zip(active, units, strict=True)
                     if u.bounces]
            if marks:  # recorded before any port is shut, so a resumed job knows to re-enable it
                self._apply(runs, marks, ended)
                kept = [(r, u) for r, u in zip(active, units, strict=True) if r.job.id in runs]
                active, units = [r for r, _ in kept], [u for _, u in kept]
            if not active:
                break
            results = self.executor.run(units)
            now = self.clock()
            read_back = {r.job.session_id: res.vlan for r, res in zip(active, results, strict=True)
                         if res.vlan is not None and r.job.session_id is not None}
            changes = [self._after(r, u, res, now) for r, u, res in zip(active, units, results, strict=True)]
            self._apply(runs, changes, ended)
            if read_back and self.sessions is not None:
                self.sessions.record_read_back(read_back, now)
        return ended

    @staticmethod
    def _path_end(job: Job) -> int:
        primary = len(job.plan.steps)
        return primary if job.step < primary else primary + len(job.plan.fallback)

    def _resumed(self, run: _Run, result: UnitResult) -> JobChange:
        if result.failure is None:
            return JobChange(run.job, result.messages, lease=self.settings.lease, bounce_over=True)
        # the bounce record stays: whoever takes the job next tries to re-enable the port first again
        failure = StepFailure(result.failure.kind, result.failure.message + " (the port may still be shut down)")
        return self._retry(run, failure, (), step=run.job.step, bounce_over=False, now=self.clock())

    def _after(self, run: _Run, unit: Unit, result: UnitResult, now: datetime) -> JobChange:
        job = run.job
        primary = len(job.plan.steps)
        in_primary = job.step < primary
        step = job.step + result.done
        messages = list(result.messages)
        failed = result.failure
        if failed is None and result.done == 0:  # an executor that did nothing and said nothing: never loop on it
            failed = StepFailure(FailureKind.TRANSIENT, f"{unit.steps[0].kind.value}: the executor reported no "
                                 "result for this step")
        # the port is known to be up unless the failure happened at the bounce itself
        bounce_over = unit.bounces and (failed is None or unit.steps[result.done].kind is not StepKind.BOUNCE)
        if failed is None:
            if step >= self._path_end(job):
                messages = [*messages[:-1], f"done: {messages[-1]}"] if messages else ["done"]
                return jobq.finish(job, messages, step=step, bounce_over=bounce_over)
            return jobq.progress(job, messages, step=step, lease=self.settings.lease, bounce_over=bounce_over)
        if in_primary and job.plan.fallback and failed.kind in (FailureKind.PERMANENT, FailureKind.NO_ANSWER):
            fallback = ", ".join(f"{s.kind.value} on {s.target}" for s in job.plan.fallback)
            run.notes.append(failed.message)
            run.nas_silent = failed.kind is FailureKind.NO_ANSWER
            if run.nas_silent:
                log.warning("job #%d (%s): %s; using the switch fallback (%s)", job.id, job.reason, failed.message,
                            fallback)
            return jobq.use_fallback(job, [*messages, f"{failed.message}; falling back to {fallback}"],
                                     lease=self.settings.lease, bounce_over=bounce_over)
        if failed.kind is FailureKind.PERMANENT and not run.nas_silent:
            return self._failed(jobq.fail(job, messages, self._why(run, failed), step=step, bounce_over=bounce_over))
        return self._retry(run, failed, messages, step=0 if run.nas_silent else step, bounce_over=bounce_over,
                           now=now)

    def _retry(self, run: _Run, failed: StepFailure, messages: Sequence[str], *, step: int, bounce_over: bool,
               now: datetime) -> JobChange:
        job = run.job
        retry_at = not_before(now, job.attempts + 1, self.settings.backoff_base, self.settings.backoff_cap)
        change = jobq.retry_or_fail(job, messages, self._why(run, failed), retry_at=retry_at, step=step,
                                    bounce_over=bounce_over)
        return self._failed(change) if change.state == jobq.FAILED else change

    @staticmethod
    def _why(run: _Run, failed: StepFailure) -> str:
        return "; ".join([*run.notes, failed.message])

    @staticmethod
    def _failed(change: JobChange) -> JobChange:
        job = change.job
        log.error("enforcement job #%d (%s, device %s) FAILED on every path: %s", job.id, job.reason, job.device_id,
                  change.failure)
        return change

    def _apply(self, runs: dict[int, _Run], changes: Sequence[JobChange], ended: list[Job]) -> None:
        updated = self.queue.apply(changes, self.clock())
        for change, job in zip(changes, updated, strict=True):
            if job is None:  # taken over (our lease ran out) or cancelled: stop touching it
                runs.pop(change.job.id, None)
                self.on_event(change.job, f"no longer ours (taken over or cancelled); {self.worker_id} stops")
                continue
            for message in change.messages:
                self.on_event(job, message)
            if job.state in (jobq.RUNNING,):
                runs[job.id].job = job
            else:
                runs.pop(job.id, None)
                ended.append(job)

    # -- many batches ------------------------------------------------------------------------------------------

    def reclaim_dead(self) -> list[int]:
        """Release at once the jobs of dead workers of this host; their ids."""
        ids = self.queue.reclaim(worker_is_dead, self.clock(), self.worker_id)
        if ids:
            log.warning("released %d job(s) of dead worker(s) on this host: %s", len(ids),
                        ", ".join(f"#{i}" for i in ids))
        return ids

    def heartbeat(self) -> int:
        """Renew the leases this worker holds; how many it still holds."""
        with self._held_lock:
            held = sorted(self._held)
        return self.queue.renew(self.worker_id, held, self.clock(), self.settings.lease) if held else 0

    def drain(self, max_jobs: int = 1_000_000) -> list[Job]:
        """Run jobs until none is runnable now (jobs waiting for a retry later are left queued); the jobs as
        they ended, in the order they did."""
        self.reclaim_dead()
        ended: list[Job] = []
        lock = threading.Lock()

        def work() -> None:
            try:
                while True:
                    with lock:
                        if len(ended) >= max_jobs:
                            return
                    batch = self._claim_and_run()
                    if batch is None:
                        return
                    with lock:
                        ended.extend(batch)
            finally:
                self.executor.release()

        self._in_threads(work)
        return ended

    def run_forever(self, stop: Callable[[], bool], before_each: Callable[[], object] | None = None) -> None:
        """Work until ``stop()``; ``before_each`` runs on this thread between polls (re-evaluations)."""
        self.reclaim_dead()

        def work() -> None:
            try:
                while not stop():
                    try:
                        if self._claim_and_run() is None:
                            time.sleep(self.settings.poll_seconds)
                    except Exception:  # the database or a driver blew up: say so, keep serving the others
                        log.exception("worker thread %s: unexpected error; continuing", threading.current_thread().name)
                        time.sleep(self.settings.poll_seconds)
            finally:
                self.executor.release()

        def main() -> None:
            last_reclaim = time.monotonic()
            while not stop():
                if before_each is not None:
                    before_each()
                if time.monotonic() - last_reclaim > self.settings.heartbeat_seconds:
                    self.reclaim_dead()
                    last_reclaim = time.monotonic()
                time.sleep(self.settings.poll_seconds)

        self._in_threads(work, main)

    def _in_threads(self, work: Callable[[], None], main: Callable[[], None] | None = None) -> None:
        """``work`` on ``concurrency`` threads (on this one when it is 1 and there is no ``main``), with the
        heartbeat alongside; the first error of a thread is raised here after all have stopped."""
        stopped = threading.Event()
        errors: list[BaseException] = []

        def beat() -> None:
            while not stopped.wait(self.settings.heartbeat_seconds):
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("lease heartbeat failed; retrying")

        def guarded() -> None:
            try:
                work()
            except BaseException as exc:  # re-raised on the calling thread
                errors.append(exc)

        heart = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        heart.start()
        try:
            if self.settings.concurrency <= 1 and main is None:
                work()
                return
            threads = [threading.Thread(target=guarded, name=f"worker-{n}", daemon=True)
                       for n in range(max(1, self.settings.concurrency))]
            for thread in threads:
                thread.start()
            try:
                if main is not None:
                    main()
            finally:
                for thread in threads:
                    thread.join()
        finally:
            stopped.set()
            heart.join(timeout=5)
        if errors:
            raise errors[0]
