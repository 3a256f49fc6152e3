"""``trustport worker``, ``trustport jobs`` and ``trustport sessions``."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.settings.config import load_config
from trustport.store.queue import SqlJobQueue
from trustport.store.sessions import SqlSessionStore


@click.command("worker")
@click.option("--drain", is_flag=True, help="run until no job is runnable now, then exit")
@click.option("--max-seconds", type=float, help="stop after this long")
@click.option("--worker-id", help="name in the job log (default host:pid)")
@config_option
def worker_command(drain: bool, max_seconds: float | None, worker_id: str | None, config_file: Path) -> None:
    """Apply queued enforcement jobs through the switch drivers (per-switch lock, read-back, retries)."""
    from trustport.worker.loop import Worker

    config = load_config(config_file)
    app = App(config)
    store = app.store
    enforcement = app.enforcement
    executor = app.executor
    done = {"n": 0}

    def report(job: Any, message: str) -> None:
        if job.state in ("done", "failed") or "failure" in message:
            done["n"] += job.state in ("done", "failed")
            counts = enforcement.queue.counts()
            cli_base.echo_safe(f"[{done['n']} finished, {counts.get('queued', 0)} queued] job #{job.id} "
                               f"({job.reason}): {message}")  # reason and switch output are untrusted

    worker = Worker(enforcement.queue, executor, enforcement.worker_settings, worker_id=worker_id,
                    on_event=report)
    stopping = {"flag": False}

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + max_seconds if max_seconds else None

    def should_stop() -> bool:
        return stopping["flag"] or (deadline is not None and time.monotonic() > deadline)

    try:
        enforcement.drain_reevaluations(cli_base.now_utc())
        if drain:
            worker.drain()
        else:
            worker.run_forever(should_stop, before_each=lambda: enforcement.drain_reevaluations(cli_base.now_utc()))
    finally:
        store.close()
    counts = enforcement.queue.counts()
    cli_base.echo_safe("queue: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts
                       else "queue: empty")
    if counts.get("failed"):
        sys.exit(1)


@click.group("jobs")
def jobs_group() -> None:
    """Enforcement jobs."""


@jobs_group.command("list")
@click.option("--state", type=click.Choice(["queued", "running", "done", "failed"]))
@click.option("--json", "as_json", is_flag=True)
@config_option
def jobs_list(state: str | None, as_json: bool, config_file: Path) -> None:
    store = App.from_file(config_file).store
    try:
        jobs = SqlJobQueue(store).list(state)
    finally:
        store.close()
    if as_json:
        cli_base.emit_json([{**{k: v for k, v in j.__dict__.items() if k != "plan"},
                           "steps": [s.__dict__ for s in j.plan.steps],
                           "fallback": [s.__dict__ for s in j.plan.fallback]} for j in jobs])
        return
    click.echo(cli_base.table(("id", "state", "device", "steps", "attempts", "reason", "last"), [
        (j.id, j.state, j.device_id, ", ".join(f"{s.kind.value} {s.target} {s.port}" for s in j.plan.steps),
         j.attempts, j.reason, j.log[-1]["message"] if j.log else "") for j in jobs]))


@click.command("sessions")
@click.option("--json", "as_json", is_flag=True)
@config_option
def sessions_command(as_json: bool, config_file: Path) -> None:
    """Active sessions: which device is on which NAS and port."""
    store = App.from_file(config_file).store
    try:
        active = SqlSessionStore(store).all_active()
    finally:
        store.close()
    if as_json:
        cli_base.emit_json(list(active))
        return
    click.echo(cli_base.table(("id", "device", "nas", "port", "mac", "acct-session-id", "vlan"), [
        (s.id, s.device_id, s.nas_ip or s.nas_identifier, s.nas_port, s.calling_station_id, s.acct_session_id, s.vlan)
        for s in active]))
