"""``trustport worker``, ``trustport jobs`` (list, show, retry, cancel, stats) and ``trustport sessions`` (list, add,
clear; without a subcommand it lists)."""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from policy.errors import TrustportError
from policy.text import safe_text
from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.services.devices import resolve_device
from trustport.settings.config import TrustportConfig, load_config
from trustport.store.journal import drain_orphans
from trustport.store.queue import FINISHED, STATES, Job, SqlJobQueue, last_results
from trustport.store.sessions import SessionInputError, SqlSessionStore, manual_context
from trustport.worker.metrics import render as render_metrics

if TYPE_CHECKING:
    from trustport.services.lifecycle import ActionResult


def _actor() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser() or "cli"


CRL_CHECK_SECONDS = 60.0  # how often the worker checks whether the owner CA's CRL is due for renewal
JOURNAL_CHECK_SECONDS = 10.0  # how often it looks for the journals of radiusd processes that are gone
actor_option = click.option("--actor", default=_actor, show_default="the invoking user", help="who (job log)")


worker_log = logging.getLogger("trustport.worker")  # the worker's job events (trustport.worker.loop logs there too)


def _log_job_event(job: Job, message: str, finished: int) -> None:
    """One worker event as a ``trustport.worker`` log line: error when the job failed, warning for a retry, a
    fallback, a job taken over or cancelled, info for progress and done."""
    quiet = job.state in ("done", "running") and not any(
        word in message for word in ("retry", "falling back", "no longer ours"))
    level = logging.ERROR if job.state == "failed" else logging.INFO if quiet else logging.WARNING
    # the message quotes switch output and exception text: the formatter escapes it (text) or JSON-encodes it
    worker_log.log(level, "[%d finished] job #%d (%s): %s", finished, job.id, job.reason, message,
                   extra={"job_id": job.id, "reason": job.reason, "state": job.state, "device": job.device_id,
                          "finished": finished})


class _Housekeeping:
    """What the worker does between batches: the journals of radiusd processes that died and were not restarted
    (a live radiusd drains its own; at most every JOURNAL_CHECK_SECONDS, their sessions first, since they may queue
    re-evaluations), re-evaluation requests, and the owner CA's CRL when it is due. A problem is said once per
    distinct problem, and the worker goes on."""

    def __init__(self, config: TrustportConfig, app: App) -> None:
        self.config = config
        self.app = app
        self.journals = config.journal_dir()
        self.journals_checked = self.crl_checked = -1e9
        self.problem = ""

    def __call__(self) -> None:
        now = cli_base.now_utc()
        self._dead_journals()
        self.app.enforcement.drain_reevaluations(now)
        if self.config.ca is not None and time.monotonic() - self.crl_checked >= CRL_CHECK_SECONDS:
            self.crl_checked = time.monotonic()
            try:  # the owner CA's CRL is re-issued before it expires, so LDevIDs are never refused for a stale one
                renewed = self.app.owner_ca.renew_crl_if_due(now)
            except TrustportError as exc:
                worker_log.error("owner CA: cannot renew the CRL: %s", exc)
            else:
                if renewed is not None:
                    worker_log.info("owner CA: CRL re-issued before it expired: %s", renewed)

    def _dead_journals(self) -> None:
        directory = self.journals
        if directory is None or not directory.is_dir() or \
                time.monotonic() - self.journals_checked < JOURNAL_CHECK_SECONDS:
            return
        self.journals_checked = time.monotonic()
        try:
            drain_orphans(directory, self.app.store, report=worker_log.warning)
            self.problem = ""
        except (TrustportError, OSError) as exc:
            if str(exc) != self.problem:
                self.problem = str(exc)
                worker_log.error("journal %s: cannot apply the journals of dead radiusd processes: %s", directory, exc)


@click.command("worker")
@click.option("--drain", is_flag=True, help="run until no job is runnable now, then exit")
@click.option("--max-seconds", type=float, help="stop after this long")
@click.option("--worker-id", help="name in the job log (default host:pid; a dead host:pid worker's jobs are taken "
              "over at once by the next worker on the same host)")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="switches worked on at once (still one worker per switch)")
@config_option
def worker_command(drain: bool, max_seconds: float | None, worker_id: str | None, concurrency: int,
                   config_file: Path) -> None:
    """Apply queued enforcement jobs through the switch drivers (per-switch lock, read-back, retries).

    Job events are log lines of ``trustport.worker`` on stderr (info: progress and done, warning: retries and
    fallbacks, error: failed; fields job_id, reason, state, device, finished in ``--log-format json``); the last
    line, the queue's summary, is on stdout."""
    import threading

    cli_base.serve_logging()  # info unless --log-level says otherwise
    config = load_config(config_file)
    app = App(config)
    enforcement = app.enforcement
    finished: set[int] = set()  # the jobs that ended here (a job's last change may carry several messages)
    count_lock = threading.Lock()

    def report(job: Job, message: str) -> None:
        with count_lock:
            finished.update([job.id] if job.state in ("done", "failed") else [])
            n = len(finished)
        _log_job_event(job, message, n)

    worker = app.worker(concurrency=concurrency, worker_id=worker_id, on_event=report)
    stopping = {"flag": False}

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + max_seconds if max_seconds else None

    def should_stop() -> bool:
        return stopping["flag"] or (deadline is not None and time.monotonic() > deadline)

    housekeeping = _Housekeeping(config, app)

    try:
        housekeeping()
        with _directory_sync(config, enabled=not drain):
            if drain:
                worker.drain()
            else:
                worker.run_forever(should_stop, before_each=housekeeping)
        stats = enforcement.queue.stats()
    finally:
        app.close()
    counts = stats.by_state
    cli_base.echo_safe("queue: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty")
                       + f"; failures total {stats.failures_total}")
    if counts.get("failed"):
        cli_base.echo_safe(f"{counts['failed']} job(s) failed on every path: 'trustport jobs list --state failed', "
                           "'trustport jobs show ID' says why", err=True)
        sys.exit(1)


@contextlib.contextmanager
def _directory_sync(config: TrustportConfig, *, enabled: bool) -> Iterator[None]:
    """With a 'directory:' section (and not --drain), the worker syncs it every interval_seconds in a thread of
    its own (its own registry connection), so a slow directory never holds up an enforcement job."""
    if config.directory is None or not enabled:
        yield
        return
    from trustport.services.directory import DirectoryScheduler

    with App(config) as app:
        scheduler = DirectoryScheduler(lambda: app.directory, config.directory.interval_seconds, cli_base.now_utc)
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()


@click.group("jobs")
def jobs_group() -> None:
    """Enforcement jobs: list, show, retry, cancel, stats."""


def _job_json(job: Job) -> dict[str, Any]:
    return {**{k: v for k, v in job.__dict__.items() if k != "plan"},
            "steps": [s.__dict__ for s in job.plan.steps], "fallback": [s.__dict__ for s in job.plan.fallback]}


def _queue(config_file: Path) -> tuple[Any, SqlJobQueue]:
    store = App.from_file(config_file).store
    return store, SqlJobQueue(store)


@jobs_group.command("list")
@click.option("--state", type=click.Choice(STATES))
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@config_option
def jobs_list(state: str | None, limit: int, as_json: bool, config_file: Path) -> None:
    """Newest first; a failed job's last column says why."""
    store, queue = _queue(config_file)
    try:
        jobs = queue.list(state, limit)
    finally:
        store.close()
    if as_json:
        cli_base.emit_json([_job_json(j) for j in jobs])
        return
    click.echo(cli_base.table(("id", "state", "device", "steps", "attempts", "reason", "last / why"), [
        (j.id, j.state, j.device_id, ", ".join(f"{s.kind.value} {s.target} {s.port}" for s in j.plan.steps),
         j.attempts, j.reason, j.failure if j.state == "failed" and j.failure else
         (j.log[-1]["message"] if j.log else "")) for j in jobs]))


def _get(queue: SqlJobQueue, job_id: int) -> Job:
    job = queue.get(job_id)
    if job is None:
        raise click.ClickException(f"no enforcement job {job_id}; 'trustport jobs list' shows them")
    return job


def describe_job(job: Job) -> list[str]:
    """``jobs show``: state, why, the steps (primary and fallback, where the job is) and the log."""
    primary = len(job.plan.steps)
    lines = [f"job #{job.id}: {job.state}", f"  reason:   {job.reason}",
             f"  device:   #{job.device_id} (session {job.session_id})",
             f"  switch:   {job.lock_key} (one worker at a time)",
             f"  attempts: {job.attempts} of {job.max_attempts}; failed {job.failures} time(s) in all"]
    if job.state == "running":
        lines.append(f"  worker:   {job.worker}, lease until {job.lease_until.isoformat() if job.lease_until else '-'}")
    if job.state == "queued":
        lines.append(f"  runs at:  {job.not_before.isoformat()}")
    if job.failure and job.state == "failed":
        lines.append(f"  why:      {job.failure}")
    if job.bounce_in_progress is not None:
        target, port = job.bounce_in_progress
        lines.append(f"  WARNING:  a bounce of {target} {port} did not finish: the port may be shut down; a worker "
                     f"re-enables it first when it takes this job again ('trustport jobs retry {job.id}')")
    lines.append("  steps:")
    in_fallback = bool(job.plan.fallback) and (job.step > primary or (job.step == primary and job.state != "done"))
    for n, step in enumerate(job.plan.all_steps()):
        path = "primary" if n < primary else "fallback"
        if n < primary:
            mark = "given up: fallback used" if in_fallback else ("done" if n < job.step else "")
        else:
            mark = "done" if n < job.step else ("" if in_fallback or job.state != "done" else "not needed")
        if n == job.step and job.state in ("queued", "running"):
            mark = "next"
        elif n == job.step and job.state in ("failed", "cancelled"):
            mark = f"stopped here ({job.state})"
        vlan = f" -> VLAN {step.vlan}" if step.vlan is not None else ""
        lines.append(f"    {n + 1}. {path:8} {step.kind.value} {step.target} {step.port}{vlan}  {mark}".rstrip())
    lines.append("  log:")
    lines += [f"    {e.get('time', '')}  step {e.get('step', '')}  {e.get('message', '')}" for e in job.log]
    return lines


@jobs_group.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@config_option
def jobs_show(job_id: int, as_json: bool, config_file: Path) -> None:
    """One job: its state and why, its steps and its whole log."""
    store, queue = _queue(config_file)
    try:
        job = _get(queue, job_id)
    finally:
        store.close()
    if as_json:
        cli_base.emit_json(_job_json(job))
        return
    for line in describe_job(job):
        cli_base.echo_safe(line)


@jobs_group.command("retry")
@click.argument("job_id", type=int)
@actor_option
@config_option
def jobs_retry(job_id: int, actor: str, config_file: Path) -> None:
    """Put a failed (or cancelled) job back in the queue, from its first step; audited in its log."""
    store, queue = _queue(config_file)
    try:
        job = queue.retry(job_id, cli_base.now_utc(), actor)
    finally:
        store.close()
    cli_base.echo_safe(f"job #{job.id} queued again (by {actor}); a running 'trustport worker' takes it")


@jobs_group.command("cancel")
@click.argument("job_id", type=int)
@click.option("--force", is_flag=True, help="cancel even a running job (its worker stops at its next step)")
@actor_option
@config_option
def jobs_cancel(job_id: int, force: bool, actor: str, config_file: Path) -> None:
    """Cancel a queued or failed job (a running one only with --force); audited in its log."""
    store, queue = _queue(config_file)
    try:
        job = queue.cancel(job_id, cli_base.now_utc(), actor, force=force)
    finally:
        store.close()
    cli_base.echo_safe(f"job #{job.id} cancelled (by {actor})")
    if job.bounce_in_progress is not None:
        target, port = job.bounce_in_progress
        cli_base.echo_safe(f"warning: job #{job.id} was bouncing {target} {port}: check that the port is up "
                           f"('trustport switch get-vlan', or 'trustport jobs retry {job.id}')", err=True)


@jobs_group.command("stats")
@click.option("--prometheus", is_flag=True, help="Prometheus text format (what /metrics serves)")
@click.option("--json", "as_json", is_flag=True)
@config_option
def jobs_stats(prometheus: bool, as_json: bool, config_file: Path) -> None:
    """Jobs per state, and how many times jobs failed on every path (exit 1 if any job is failed now)."""
    store, queue = _queue(config_file)
    try:
        stats = queue.stats()
    finally:
        store.close()
    if prometheus:
        click.echo(render_metrics(stats), nl=False)
    elif as_json:
        cli_base.emit_json({"by_state": {s: stats.by_state.get(s, 0) for s in STATES},
                            "failures_total": stats.failures_total})
    else:
        click.echo(cli_base.table(("state", "jobs"), [(s, stats.by_state.get(s, 0)) for s in STATES]))
        click.echo(f"failures total: {stats.failures_total}")
    if stats.by_state.get("failed"):
        sys.exit(1)


def summary(job: Job) -> str:
    """One line: what a finished job read back, or why it failed."""
    if job.state == "failed":
        return f"FAILED: {job.failure or (job.log[-1]['message'] if job.log else 'no reason recorded')}"
    results = [m.removeprefix("done: ") for m in last_results(job)]
    return f"{job.state}: " + ("; ".join(results) if results else (job.log[-1]["message"] if job.log else ""))


def report_actions(results: Sequence[ActionResult], errors: Sequence[str], waited: Mapping[int, Job], *, wait: bool,
                   timeout: float, segment: str | None, as_json: bool) -> int:
    """What ``trustport devices ACTION`` prints: each change, its jobs (with --wait: what each read back or why it
    failed), every connected device that stays where it is; the exit code (2 errors; with --wait 1 when a job
    failed or was cancelled, the timeout passed, or a connected device stays in its VLAN)."""
    note = next((r.enforcement_note for r in results if r.enforcement_note), None)
    warnings = [w for r in results for w in r.warnings]
    unfinished = [i for i, j in waited.items() if j.state not in FINISHED]
    bad = [i for i, j in waited.items() if j.state in ("failed", "cancelled")]
    if as_json:
        cli_base.emit_json({"changed": [{"device": r.after, "from": r.before.state, "denied": r.denied,
                                       "jobs": [q.job.id for q in r.queued if q.job is not None]} for r in results],
                            "errors": list(errors), "enforcement": note, "warnings": warnings,
                            **({"outcomes": {str(i): {"state": j.state, "summary": summary(j), "failure": j.failure}
                                             for i, j in waited.items()}} if wait else {})})
    else:
        for r in results:
            cli_base.echo_safe(f"device #{r.after.id} {r.after.key.serial_number}: {r.before.state.value} -> "
                               f"{r.after.state.value}" + (f" (segment {r.after.segment})" if segment else "")
                               + (" — certificate added to the deny list" if r.denied else ""))
            for q in r.queued:
                if q.job is None:
                    if not q.stays:  # a device that stays where it is is said below, as a warning
                        cli_base.echo_safe(f"  session {q.session.id} on {q.session.nas_ip or q.session.nas_identifier}"
                                           f": nothing queued ({q.problem})")
                    continue
                plan = ", ".join(f"{s.kind.value} {s.target}" for s in q.job.plan.steps)
                cli_base.echo_safe(f"  session {q.session.id} on {q.session.nas_ip or q.session.nas_identifier}: "
                                   f"job #{q.job.id} queued -> VLAN {q.decision.vlan} via {plan}"
                                   + ("" if q.created else " (already queued)"))
                if q.job.id in waited:
                    job = waited[q.job.id]
                    line = (f"still {job.state} after {timeout:g} s: is 'trustport worker' running?"
                            if q.job.id in unfinished else summary(job))
                    cli_base.echo_safe(f"  job #{q.job.id} {line}", err=job.state == "failed")
        if note:
            cli_base.echo_safe(f"note: {note}", err=True)
        for warning in warnings:
            cli_base.echo_safe(f"warning: {warning}", err=True)
        for error in errors:
            cli_base.echo_safe(f"error: {error}", err=True)
    if errors:
        return 2
    return 1 if wait and (bad or unfinished or warnings) else 0


# -- sessions ------------------------------------------------------------------------------------------------------

def _print_sessions(active: Any, as_json: bool) -> None:
    if as_json:
        cli_base.emit_json(list(active))
        return
    click.echo(cli_base.table(("id", "device", "nas", "port", "mac", "acct-session-id", "vlan", "vlan from",
                               "source"), [
        (s.id, s.device_id, s.nas_ip or s.nas_identifier, s.nas_port, s.calling_station_id, s.acct_session_id, s.vlan,
         f"read back {s.vlan_read_back_at.isoformat(timespec='seconds')}" if s.vlan_read_back_at else "RADIUS",
         s.source) for s in active]))


@click.group("sessions", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@config_option
@click.pass_context
def sessions_group(ctx: click.Context, as_json: bool, config_file: Path) -> None:
    """Active sessions: which device is on which NAS and port (without a subcommand: list them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(sessions_list, device=None, as_json=as_json, config_file=config_file)


@sessions_group.command("list")
@click.option("--device", help="only this device's (id or serial)")
@click.option("--json", "as_json", is_flag=True)
@config_option
def sessions_list(device: str | None, as_json: bool, config_file: Path) -> None:
    """Active sessions; 'vlan from' says whether a switch read the VLAN back or only RADIUS assigned it."""
    store = App.from_file(config_file).store
    try:
        sessions = SqlSessionStore(store)
        active = (sessions.active_for_device(resolve_device(store, device).id) if device is not None
                  else sessions.all_active())
    finally:
        store.close()
    _print_sessions(active, as_json)


@sessions_group.command("add")
@click.argument("device")
@click.option("--nas", required=True, help="the NAS's IP address (NAS-IP-Address) or its NAS-Identifier")
@click.option("--port", "nas_port", required=True, help="NAS-Port (as mapped under enforcement.nas.ports) or the "
              "NAS-Port-Id")
@click.option("--mac", required=True, help="the device's MAC address (Calling-Station-Id)")
@click.option("--vlan", type=click.IntRange(1, 4094), help="the VLAN it is in now, if known")
@config_option
def sessions_add(device: str, nas: str, nas_port: str, mac: str, vlan: int | None, config_file: Path) -> None:
    """Record by hand where a device is connected, for NASes that send no RADIUS accounting."""
    try:
        context = manual_context(nas, nas_port, mac)  # the same checks as the REST API's POST /v1/sessions
    except SessionInputError as exc:
        raise click.BadParameter(safe_text(str(exc)), param_hint=f"--{exc.field}") from exc
    store = App.from_file(config_file).store
    try:
        record = resolve_device(store, device)
        session = SqlSessionStore(store).add_manual(record.id, context, vlan, cli_base.now_utc())
    finally:
        store.close()
    cli_base.echo_safe(f"session {session.id}: device #{record.id} {record.key.serial_number} on NAS {nas} port "
                       f"{nas_port} ({session.calling_station_id})"
                       + (f", VLAN {vlan} (not read back)" if vlan else ""))


@sessions_group.command("clear")
@click.argument("device")
@click.option("--session", "session_id", type=int, help="only this session (default: all the device's)")
@config_option
def sessions_clear(device: str, session_id: int | None, config_file: Path) -> None:
    """End a device's active sessions (one, or all of them): it is no longer connected there."""
    store = App.from_file(config_file).store
    try:
        record = resolve_device(store, device)
        ended = SqlSessionStore(store).clear(record.id, cli_base.now_utc(), session_id)
    finally:
        store.close()
    cli_base.echo_safe(f"device #{record.id} {record.key.serial_number}: {ended} session(s) ended")
    if ended == 0 and session_id is not None:
        raise click.ClickException(f"session {session_id} is not an active session of device #{record.id}")

