"""A throw-away PostgreSQL cluster for tests and benchmarks.

``initdb`` into a fresh temporary directory, listen on 127.0.0.1 on a port chosen at run time (unix socket
in the same directory), password authentication over TCP so URLs carry a real secret, and
``pg_ctl stop -m fast`` at the end. PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` system user (``TRUSTPORT_PG_USER`` to pick another). Binaries are looked up in
``TRUSTPORT_PG_BIN``, then the newest ``/usr/lib/postgresql/*/bin``, then ``PATH``; when none is found
``PostgresUnavailable`` says how to install them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries are missing or the cluster could not be started."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[Path] = []
    if env := os.environ.get("TRUSTPORT_PG_BIN"):
        candidates.append(Path(env))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in TRUSTPORT_PG_BIN, "
        "/usr/lib/postgresql/*/bin or PATH; install them (Debian/Ubuntu: apt-get install postgresql) "
        "or set TRUSTPORT_PG_BIN to their directory"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    base_dir: Path

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``database``; ``password`` overrides the real one."""
        secret = self.password if password is None else password
        return f"postgresql+psycopg://{self.user}:{secret}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=5,
            **kwargs,
        )

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        name = name or f"t_{secrets.token_hex(6)}"
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


def _run(cmd: list[str], run_as: pwd.struct_passwd | None, cwd: Path, timeout: float) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "HOME": str(cwd)}
    kwargs: dict[str, Any] = {}
    if run_as is not None:
        kwargs.update(user=run_as.pw_uid, group=run_as.pw_gid, extra_groups=[])
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(cmd)} failed with exit code {result.returncode}:\n{result.stdout}{result.stderr}"
        )


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    name = os.environ.get("TRUSTPORT_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, and PostgreSQL refuses root: no user {name!r} to run it as; "
            "create one (useradd --system postgres), set TRUSTPORT_PG_USER, or run the tests as a normal user"
        ) from None


@contextlib.contextmanager
def running_postgres(*, durable: bool = False, start_timeout_s: int = 30) -> Iterator[PostgresServer]:
    """Start a fresh cluster, yield it, stop it and delete its files.

    ``durable=False`` turns off fsync and friends (fast, for tests); benchmarks pass ``durable=True`` so
    commit costs are the real ones.
    """
    bin_dir = find_bin_dir()
    run_as = _server_user()
    # Not under pytest's tmp_path: that is 0700 and owned by root, so the postgres user could not enter it.
    base = Path(tempfile.mkdtemp(prefix="trustport-pg-"))
    try:
        data, sockets = base / "data", base / "sock"
        sockets.mkdir(mode=0o700)
        password = secrets.token_urlsafe(18)
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if run_as is not None:
            for path in (base, sockets, pwfile):
                os.chown(path, run_as.pw_uid, run_as.pw_gid)
        user = "trustport"
        _run(
            [
                str(bin_dir / "initdb"),
                "-D", str(data),
                "-U", user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            run_as, base, timeout=120,
        )  # fmt: skip
        pwfile.unlink()
        settings = ["-c listen_addresses=127.0.0.1", f"-k {sockets}", "-c max_connections=50"]
        if not durable:
            settings += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        port = 0
        for attempt in range(3):  # the port we picked may be taken before the server binds it
            port = free_port()
            try:
                _run(
                    [
                        str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(base / "server.log"),
                        "-w", "-t", str(start_timeout_s), "-o", " ".join([*settings, f"-p {port}"]),
                    ],
                    run_as, base, timeout=start_timeout_s + 10,
                )  # fmt: skip
                break
            except PostgresUnavailable as e:
                log = base / "server.log"
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                if attempt == 2 or "could not bind" not in detail:
                    raise PostgresUnavailable(f"{e}\nserver log:\n{detail}") from None
        server = PostgresServer(host="127.0.0.1", port=port, user=user, password=password, base_dir=base)
        try:
            with server.connect() as conn:
                conn.execute("SELECT 1")
            yield server
        finally:
            _run(
                [str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "30"],
                run_as, base, timeout=60,
            )  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
