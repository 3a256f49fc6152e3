"""``trustport lab --dashboard``: after the stories, the lab stays up -- FreeRADIUS, the fake switches, the REST API
with the dashboard on a loopback URL, and an enforcement worker -- until Ctrl-C, so a newcomer can look around:
approve a pending device, quarantine one and watch the job move its port, authenticate a device again."""

from __future__ import annotations

import secrets
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING

from trustport.files import write_private

if TYPE_CHECKING:
    from trustport_lab.enforce import LabNetwork
    from trustport_lab.lab import Lab, LabRun

USER = "admin"
PASSWORD_FILE = "dashboard-password"  # noqa: S105 -- the file's name; the password is random


def dashboard_url(lab: Lab) -> str:
    assert lab.config.api is not None
    return f"http://127.0.0.1:{lab.config.api.port}/ui/"


def create_login(lab: Lab, name: str = USER, role: str = "admin") -> str:
    """A dashboard user with a random password (written to the lab directory); returns the password."""
    from trustport.app import App

    password = secrets.token_urlsafe(12)
    with App(lab.config) as app:
        app.accounts.add_user(name, role, password, actor="lab", now=datetime.now(UTC))
    write_private(lab.work / f"{PASSWORD_FILE}-{name}", password.encode())
    return password


def hold(echo: Callable[[str], None], wait: Callable[[threading.Event], None] | None = None
         ) -> Callable[[Lab, LabNetwork, LabRun], None]:
    """The ``run_lab`` hold that serves the dashboard and runs a worker until SIGINT/SIGTERM (or ``wait``
    returns: tests pass one)."""

    def serve(lab: Lab, network: LabNetwork, run: LabRun) -> None:
        from trustport.app import App
        from trustport_lab.attest import ApiServer

        password = create_login(lab)
        stop = threading.Event()
        with App(lab.config) as app, ApiServer(lab):
            worker = app.worker(concurrency=2, worker_id="lab-dashboard-worker")
            thread = threading.Thread(target=worker.run_forever, args=(stop.is_set,), daemon=True)
            thread.start()
            echo("")
            echo(f"dashboard: {dashboard_url(lab)}  (user {USER}, password {password}; also in "
                 f"{lab.work / (PASSWORD_FILE + '-' + USER)})")
            echo(f"REST API: http://127.0.0.1:{lab.config.api.port if lab.config.api else 0}/docs; "
                 f"config {lab.config_path}")
            echo(f"authenticate a lab device again: eapol_test -c {lab.work}/eapol-<serial>.conf -a 127.0.0.1 "
                 f"-p {lab.config.radius.auth_port} -s \"$(cat {lab.work}/radius-secret)\"; Ctrl-C stops the lab")
            try:
                if wait is not None:
                    wait(stop)
                else:
                    _until_signal(stop)
            finally:
                stop.set()
                thread.join(timeout=15)

    return serve


def _until_signal(stop: threading.Event) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
