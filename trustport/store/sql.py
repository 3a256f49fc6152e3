"""The device registry and decision log in SQL: SQLite by default, PostgreSQL by URL, one code path.

SQLAlchemy Core (no ORM) keeps the statements visible and identical on both backends. Every SQLAlchemy
or driver exception is translated here into ``StoreError`` whose text names the database with its password
hidden, so a log line or a traceback never carries the credential. Timeouts are short on purpose: the RADIUS
hook calls this on the authentication path, and a slow database must fail closed instead of hanging radiusd.

A registry is never created as a side effect: only a store built with ``create=True`` (``trustport db init``,
the lab, test fixtures) makes the schema. Every other store checks before its first statement, again after any
failed statement, and again whenever the SQLite file's inode, size or mtime changed (one ``os.stat`` per
transaction, and one after it), that the database is a complete trustport registry; a missing, empty,
truncated, foreign or corrupt one raises ``StoreError``, so the hook rejects instead of quarantining revoked
devices from an empty table or answering from pages cached before the file was replaced.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import sqlite3
import stat
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, Row
from sqlalchemy.pool import StaticPool

from policy.errors import DeviceExists, DeviceNotFound, StoreError
from policy.model import (
    AuditNote,
    CertificateFacts,
    CertKind,
    DecisionLogEntry,
    DeviceKey,
    DeviceRecord,
    LifecycleState,
    NetworkContext,
    Outcome,
    RadiusServerRecord,
    VerifiedCertificate,
)
from trustport.store import changes
from trustport.store.schema import (
    UtcDateTime,
    decision_log,
    device_certificates,
    devices,
    lifecycle_events,
    metadata,
    radius_servers,
    schema_version,
    trustport_meta,
)

SCHEMA_VERSION: Final = 1
APPLICATION: Final = "trustport"  # trustport_meta 'application'
SQLITE_APPLICATION_ID: Final = 0x54505254  # "TPRT", in the SQLite header (``file`` shows it; foreign ids refused)
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_LEGACY_TABLES: Final = frozenset({"schema_version", "devices", "decision_log"})  # made before trustport_meta
# Tables added after registries were already in use: one that lacks only these is outdated, not corrupt, and
# 'trustport db init' adds them. Every new table goes here.
_ADDED_TABLES: Final = frozenset({"api_tokens", "attestation_seen", "audit_log", "device_certificates",
                                  "directory_links", "directory_status", "issued_certificates", "journal_progress",
                                  "radius_servers", "registry_caches", "registry_changes", "registry_generation",
                                  "users", "web_sessions"})
# Nullable columns added to existing tables later: a registry that lacks only these is outdated too, and
# 'trustport db init' adds them (ALTER TABLE ... ADD COLUMN). Every new column of an existing table goes here.
_ADDED_COLUMNS: Final[Mapping[str, frozenset[str]]] = {
    "decision_log": frozenset({"policy_revision"}),
    "devices": frozenset({"location"}),
    "enforcement_jobs": frozenset({"bounce_in_progress", "failure", "failures"}),
    "sessions": frozenset({"vlan_read_back_at", "source"}),
}
_SCHEMA_LOCK_KEY: Final = 0x7472_7573_7470  # PostgreSQL advisory lock id for schema creation ("trustp")
_SQLITE_DRIVERS: Final = frozenset({"sqlite", "sqlite+pysqlite"})
_POSTGRES_ALIASES: Final = frozenset({"postgresql", "postgres", "postgresql+psycopg"})


def normalize_fingerprint(fingerprint: str) -> str:
    """Lower-case hex without separators, so ``AB:CD:..`` from ``openssl x509 -fingerprint`` matches."""
    return re.sub(r"[\s:]", "", fingerprint).lower()


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")
    return value


def _redact_unparsed(url: str) -> str:
    """Best-effort password removal for a URL SQLAlchemy could not parse (so it cannot render it for us)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _parse_url(url: str) -> URL:
    try:
        parsed = sa.make_url(url)
    except (exc.ArgumentError, ValueError, TypeError):
        # The original exception may quote the URL with its password: do not chain it.
        raise StoreError(
            f"database URL {_redact_unparsed(url)!r} is not valid; "
            "use sqlite:///path/to/trustport.db or postgresql://user:password@host:port/dbname"
        ) from None
    if parsed.drivername in _POSTGRES_ALIASES:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in _SQLITE_DRIVERS:
        return parsed
    raise StoreError(
        f"database URL {parsed.render_as_string(hide_password=True)!r} uses unsupported backend "
        f"{parsed.drivername!r}; use sqlite:///path/to/trustport.db or postgresql://user:password@host/dbname"
    )


class RegistryState(enum.Enum):
    """What a look at the registry database found; only ``HEALTHY`` may be read or written."""

    HEALTHY = "healthy"
    MISSING = "missing"
    EMPTY = "empty"
    FOREIGN = "not a trustport registry"
    CORRUPT = "corrupt"
    UNSUPPORTED = "of an unsupported schema version"
    REPLACED = "replaced by another registry"
    UNREACHABLE = "unreachable"
    OUTDATED = "made by an older trustport"


@dataclass(frozen=True)
class RegistryHealth:
    """The registry as ``trustport db status`` shows it; ``problem`` says what is wrong and what to do."""

    url: str
    state: RegistryState
    problem: str | None = None
    schema_version: int | None = None
    registry_id: str | None = None
    devices: int | None = None
    identity_recorded: bool = True  # False: made before trustport_meta existed ('trustport db init' records it)
    error: BaseException | None = field(default=None, compare=False, repr=False)  # the driver's, if one was raised

    @property
    def healthy(self) -> bool:
        return self.state is RegistryState.HEALTHY


_FileId = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns of the SQLite file


# One read-only descriptor per SQLite file (st_dev, st_ino) this process ever read the header of, never closed:
# POSIX drops every lock a process holds on a file when it closes ANY descriptor of it, SQLite's own included
# (https://sqlite.org/howtocorrupt.html, "POSIX advisory locks canceled by a separate thread doing close()").
# Opening and closing the registry to read its header while this process had it open let another process (radiusd,
# the worker) believe it was the last connection and checkpoint and remove the WAL under our readers: they saw
# "database disk image is malformed" until restarted.
_HEADER_FDS: dict[tuple[int, int], int] = {}
_HEADER_LOCK = threading.Lock()


def _read_head(path: Path, st: os.stat_result) -> bytes:
    """The first 100 bytes of the (regular) file ``st`` describes, through the process's kept descriptor."""
    key = (st.st_dev, st.st_ino)
    with _HEADER_LOCK:
        fd = _HEADER_FDS.get(key)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):  # swapped for something else since the stat: use nothing of it
                os.close(fd)  # not our SQLite file: no lock of ours can be on it
                raise OSError(f"{path} is not a regular file")
            # (replaced between the stat and the open by a file already held: this descriptor stays open too --
            # closing it would drop our locks on that file just the same)
            _HEADER_FDS.setdefault((opened.st_dev, opened.st_ino), fd)
    return os.pread(fd, 100, 0)


def _file_id(path: Path) -> _FileId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class SqlDeviceStore:
    """``DeviceStore`` over SQLAlchemy Core.

    Nothing touches the database until the first call (or ``ensure_schema()``), so radiusd can start while the
    database is down and fail closed per request until it is back. Only with ``create=True`` does that first
    call create a missing or empty registry; otherwise it raises ``StoreError`` naming what is wrong.
    ``statement_timeout_s`` bounds how long one statement may wait (PostgreSQL ``statement_timeout``, SQLite
    ``busy_timeout``) and ``connect_timeout_s`` bounds connecting and waiting for a pooled connection.
    """

    def __init__(self, url: str, *, connect_timeout_s: float = 3.0, statement_timeout_s: float = 2.0,
                 create: bool = False, wait_for_caches: bool = True) -> None:
        if connect_timeout_s <= 0 or statement_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        self._url = _parse_url(url)
        self._password = self._url.password
        self.display_url = self._url.render_as_string(hide_password=True)
        self._is_sqlite = self._url.get_backend_name() == "sqlite"
        self._sqlite_path = self._sqlite_file(self._url) if self._is_sqlite else None
        self._create = create
        self._schema_lock = threading.Lock()
        self._schema_ready = False  # verified, and the file (if any) unchanged since: see ensure_schema
        self._file_seen: _FileId | None = None  # the SQLite file as it was when last verified
        self._registry_id: str | None = None  # pinned at the first successful check
        # After a commit that changed what decisions read, wait until the hooks' caches have it (see
        # trustport.store.changes); the hook's own store does not (its writes are its own authentications).
        self.wait_for_caches = wait_for_caches
        self.last_barrier: changes.BarrierResult | None = None
        try:
            self._engine = self._create_engine(connect_timeout_s, statement_timeout_s)
        except (exc.SQLAlchemyError, ImportError) as e:
            raise self._store_error("opening the database", e) from e
        event.listen(self._engine, "before_cursor_execute", _note_tracked_change)

    def __repr__(self) -> str:
        return f"SqlDeviceStore({self.display_url!r})"

    def __enter__(self) -> SqlDeviceStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- setup -----------------------------------------------------------------------------------------------

    @staticmethod
    def _sqlite_file(url: URL) -> Path | None:
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(os.path.abspath(database))  # pinned now: a later chdir must not move the registry

    def _create_engine(self, connect_timeout_s: float, statement_timeout_s: float) -> Engine:
        pool_timeout = connect_timeout_s
        if self._is_sqlite:
            busy_ms = round(statement_timeout_s * 1000)
            sqlite_args: dict[str, Any] = {"check_same_thread": False, "timeout": statement_timeout_s}
            path = self._sqlite_path
            if path is None:
                # In memory: one shared connection, else each pooled connection sees its own empty database.
                engine = sa.create_engine(
                    self._url, connect_args=sqlite_args, poolclass=StaticPool, hide_parameters=True
                )
            else:
                # mode=rw: opening never creates the file (sqlite3.connect would, empty); only
                # _prepare_sqlite_file does, for a store built with create=True.
                target = f"file:{urllib.parse.quote(str(path))}?mode=rw"

                def connect() -> sqlite3.Connection:
                    return sqlite3.connect(target, timeout=statement_timeout_s, check_same_thread=False, uri=True)

                engine = sa.create_engine(
                    self._url, creator=connect, pool_timeout=pool_timeout, hide_parameters=True
                )

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
                # Nothing here writes to the file: WAL is switched on only once the file is known to be ours.
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                    cursor.execute("PRAGMA foreign_keys=ON")
                finally:
                    cursor.close()

            return engine

        query = self._url.query
        options = f"-c statement_timeout={round(statement_timeout_s * 1000):d}"
        if "options" in query:
            options = f"{_query_value(query, 'options')} {options}"
        pg_args: dict[str, Any] = {"options": options, "application_name": "trustport"}
        if "connect_timeout" not in query:
            # libpq takes whole seconds (and treats values below 2 as 2).
            pg_args["connect_timeout"] = max(2, round(connect_timeout_s))
        return sa.create_engine(
            self._url,
            connect_args=pg_args,
            pool_pre_ping=True,
            pool_timeout=pool_timeout,
            hide_parameters=True,
        )

    def _prepare_sqlite_file(self) -> None:
        path = self._sqlite_path
        if path is None or path.exists():
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create it ourselves so it is 0600 from the first byte; SQLite gives -wal/-shm files the same mode.
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def file_unchanged(self) -> bool:
        """The SQLite file is exactly as last verified (inode, size, mtime; one ``os.stat``): for readers that
        answer from memory (the hook's cache) and must not do so once the file under them was replaced, truncated or
        rewritten. A WAL checkpoint changes it too: the next transaction re-verifies and the readers go on. Always
        True on PostgreSQL."""
        return self._schema_ready and self._file_unchanged()

    def _file_unchanged(self) -> bool:
        return self._sqlite_path is None or _file_id(self._sqlite_path) == self._file_seen

    def ensure_schema(self) -> None:
        """Check that the registry is a healthy trustport registry; with ``create=True``, create it if missing.

        Done on first use, and again after a failed statement or when the SQLite file's inode, size or mtime
        changed (a checkpoint, or someone truncating, replacing or deleting it): one ``os.stat`` per call.
        """
        if self._schema_ready and self._file_unchanged():
            return
        with self._schema_lock:
            if self._schema_ready and self._file_unchanged():
                return
            self._schema_ready = False
            path = self._sqlite_path
            before = _file_id(path) if path is not None else None
            damaged = self._sqlite_file_problem(path) if path is not None else None
            if damaged is not None and not (self._create and damaged.state in (RegistryState.MISSING,
                                                                               RegistryState.EMPTY)):
                # Keep the open connections: closing the last one would checkpoint the WAL into a damaged file.
                raise StoreError(damaged.problem or f"registry {self.display_url} is {damaged.state.value}")
            self._engine.dispose()  # no page cached from the file as it was: every connection opens it afresh
            health = self.inspect()
            if self._create and (health.state in (RegistryState.MISSING, RegistryState.EMPTY)
                                 or (health.healthy and not health.identity_recorded)):
                self._initialise()
                before = _file_id(self._sqlite_path) if self._sqlite_path is not None else None
                health = self.inspect()
            if not health.healthy:
                raise StoreError(health.problem or f"registry {self.display_url} is {health.state.value}"
                                 ) from health.error
            if self._registry_id is not None and health.registry_id != self._registry_id:
                raise StoreError(self._problem(RegistryState.REPLACED, (
                    f"its registry id is {health.registry_id}, this process opened {self._registry_id}")))
            if self._sqlite_path is not None:
                with self._translated("switching the registry to WAL"), self._engine.connect() as conn:
                    if conn.exec_driver_sql("PRAGMA journal_mode").scalar() != "wal":
                        _switch_to_wal(conn)
                after = _file_id(self._sqlite_path)
                if before is None or after is None or before[:2] != after[:2]:
                    raise StoreError(self._problem(RegistryState.REPLACED, "the file changed while it was checked"))
                self._file_seen = after
            self._registry_id = self._registry_id or health.registry_id
            self._schema_ready = True

    def initialise(self, *, integrity: bool = True) -> tuple[str, RegistryHealth]:
        """``trustport db init``: create a missing or empty registry, record the identity of one made before
        trustport recorded it, add the tables a newer trustport introduced to an outdated one, leave a healthy one
        alone, refuse anything else. Returns what was done and the registry as it is now."""
        if not self._create:
            raise ValueError("initialise() needs a store built with create=True")
        with self._schema_lock:
            self._schema_ready = False
            self._engine.dispose()
            health = self.inspect(integrity=integrity)
            if health.healthy and health.identity_recorded:
                return "unchanged", health
            creatable = (RegistryState.MISSING, RegistryState.EMPTY, RegistryState.OUTDATED)
            if health.state not in creatable and not health.healthy:
                raise StoreError(health.problem or f"registry {self.display_url} is {health.state.value}"
                                 ) from health.error
            done = ("upgraded (tables/columns added)" if health.state is RegistryState.OUTDATED
                    else "created" if not health.healthy else "identity recorded")
            self._initialise()
            health = self.inspect(integrity=integrity)
            if not health.healthy:  # pragma: no cover - what we just made must pass our own check
                raise StoreError(health.problem or f"registry {self.display_url} is {health.state.value}")
            return done, health

    def _initialise(self) -> None:
        try:
            self._prepare_sqlite_file()
        except OSError as e:
            raise StoreError(
                f"cannot create the SQLite database {self.display_url}: {e.strerror or e}; "
                "create its directory or choose a path this user can write"
            ) from e
        with self._translated("creating the schema"):
            self._create_schema()
            if self._sqlite_path is not None:
                self._engine.dispose()  # a fresh connection: one that ran DDL keeps statements that block a checkpoint
                with self._engine.connect() as conn:
                    _switch_to_wal(conn)
                    # Everything into the main file now, so a copy of it alone is a complete registry.
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def _create_schema(self) -> None:
        with self._engine.begin() as conn:
            # Two servers initialising an empty database together must not both run CREATE TABLE: take a lock
            # first, so the second one waits and then finds the tables made.
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite has not begun yet: DDL does not autobegin
            tables = set(sa.inspect(conn).get_table_names())
            if tables and not (tables >= _LEGACY_TABLES or trustport_meta.name in tables):
                raise StoreError(self._problem(RegistryState.FOREIGN, _foreign_tables(tables)))
            metadata.create_all(conn)
            _add_columns(conn)
            changes.install(conn)
            found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one_or_none()
            if found is None:
                conn.execute(
                    schema_version.insert().values(version=SCHEMA_VERSION, applied_at=sa.func.current_timestamp())
                )
            elif found != SCHEMA_VERSION:
                raise StoreError(self._version_problem(found))
            have = set(conn.execute(sa.select(trustport_meta.c.key)).scalars())
            identity = {"application": APPLICATION, "registry_id": str(uuid.uuid4()),
                        "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
            for key, value in identity.items():
                if key not in have:
                    conn.execute(trustport_meta.insert().values(key=key, value=value))
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql(f"PRAGMA application_id={SQLITE_APPLICATION_ID:d}")

    # -- health ----------------------------------------------------------------------------------------------

    def _problem(self, state: RegistryState, reason: str) -> str:
        where = f"registry {self.display_url}"
        if state in (RegistryState.MISSING, RegistryState.EMPTY):
            return (f"{where} is {state.value}: {reason}; run 'trustport db init' to create a new one, "
                    "or restore the backup")
        if state is RegistryState.REPLACED:
            return (f"{where} was {state.value}: {reason}; restore the original file, or restart the service to use "
                    "the new registry")
        if state is RegistryState.UNREACHABLE:
            return f"{where} cannot be used: {reason}"
        if state is RegistryState.OUTDATED:
            return (f"{where} was {state.value}: {reason}; run 'trustport db init' to add them (existing data is "
                    "not touched); until then every authentication is rejected")
        aside = ("move the file aside and run 'trustport db init' to create a new one" if self._sqlite_path
                 else "point database.url at an empty database and run 'trustport db init'")
        return f"{where} is {state.value}: {reason}; {aside}, or restore the backup"

    def _version_problem(self, found: int) -> str:
        if found > SCHEMA_VERSION:
            return (f"registry {self.display_url} has schema version {found}, newer than this trustport "
                    f"understands ({SCHEMA_VERSION}); upgrade trustport or point it at another database")
        return f"registry {self.display_url} has schema version {found}; migrate it to {SCHEMA_VERSION}"

    def _unhealthy(self, state: RegistryState, reason: str, error: BaseException | None = None) -> RegistryHealth:
        return RegistryHealth(self.display_url, state, self._problem(state, reason), error=error)

    def inspect(self, *, integrity: bool = False) -> RegistryHealth:
        """Look at the registry without changing it (``trustport db status``); never raises ``StoreError``.

        ``integrity`` adds SQLite's ``PRAGMA quick_check`` (reads every page: for operators, not for each
        authentication)."""
        if self._sqlite_path is not None:
            found = self._sqlite_file_problem(self._sqlite_path)
            if found is not None:
                return found
        try:
            with self._engine.connect() as conn:
                return self._inspect_schema(conn, integrity)
        except exc.SQLAlchemyError as e:
            return self._health_from_error(e)

    def _sqlite_file_problem(self, path: Path) -> RegistryHealth | None:
        """What the file itself shows, before SQLite opens it (which would write to an empty file)."""
        for attempt in range(_HEADER_LOOKS):
            try:
                st = os.stat(path)
                if not stat.S_ISREG(st.st_mode):
                    return self._unhealthy(RegistryState.FOREIGN, f"{path} is not a regular file")
                if st.st_size == 0:
                    return self._unhealthy(RegistryState.EMPTY, "the file has 0 bytes")
                head = _read_head(path, st)
            except (FileNotFoundError, NotADirectoryError):
                deleted = " (it was deleted or moved while in use)" if self._file_seen is not None else ""
                return self._unhealthy(RegistryState.MISSING, f"{path} does not exist{deleted}")
            except OSError as e:
                return self._unhealthy(RegistryState.UNREACHABLE, f"cannot read {path}: {e.strerror or e}; check "
                                       "that the file and its directory are readable by this user")
            found = _sqlite_header_problem(head, st.st_size, self._registry_id is not None)
            if found is None:
                return None
            state, reason = found
            if state is not RegistryState.CORRUPT or attempt == _HEADER_LOOKS - 1:
                return self._unhealthy(state, reason)
            # The header can run ahead of the file while another process checkpoints (page 1 is written before the
            # page that extends the file; a busy machine can hold the checkpointer in between): look again, up to
            # ~0.3 s in all, before calling a registry truncated.
            time.sleep(0.005 * 2 ** attempt)
        return None  # pragma: no cover - the loop returns

    def _inspect_schema(self, conn: Connection, integrity: bool) -> RegistryHealth:
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        if not tables:
            return self._unhealthy(RegistryState.EMPTY, "the database has no tables")
        registry_id = None
        recorded = trustport_meta.name in tables
        if recorded:
            meta = {str(k): str(v) for k, v in conn.execute(sa.select(trustport_meta.c.key, trustport_meta.c.value))}
            if meta.get("application") != APPLICATION:
                return self._unhealthy(RegistryState.FOREIGN, f"its trustport_meta names application "
                                                              f"{meta.get('application')!r}")
            registry_id = meta.get("registry_id")
        elif not tables >= _LEGACY_TABLES:
            return self._unhealthy(RegistryState.FOREIGN, _foreign_tables(tables))
        if conn.dialect.name == "sqlite":
            app_id = conn.exec_driver_sql("PRAGMA application_id").scalar()
            if app_id not in (0, SQLITE_APPLICATION_ID):
                return self._unhealthy(RegistryState.FOREIGN, f"its SQLite application_id is {app_id:#x}, "
                                                              f"trustport's is {SQLITE_APPLICATION_ID:#x}")
        if schema_version.name not in tables:
            return self._unhealthy(RegistryState.CORRUPT, "its schema_version table is missing")
        version = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one_or_none()
        if version is None:
            return self._unhealthy(RegistryState.CORRUPT, "its schema_version table is empty")
        if version != SCHEMA_VERSION:
            return RegistryHealth(self.display_url, RegistryState.UNSUPPORTED, self._version_problem(version),
                                  schema_version=version, registry_id=registry_id)
        expected = set(metadata.tables) - ({trustport_meta.name} if not recorded else set())
        missing = sorted(expected - tables)
        if not set(missing) <= _ADDED_TABLES:
            return self._unhealthy(RegistryState.CORRUPT, f"table(s) {', '.join(missing)} are missing")
        outdated = [f"table(s) {', '.join(missing)} do not exist yet"] if missing else []
        added_columns = []
        for name in sorted(expected - set(missing)):
            present = {column["name"] for column in inspector.get_columns(name)}
            lacking = sorted(set(metadata.tables[name].columns.keys()) - present)
            if not set(lacking) <= _ADDED_COLUMNS.get(name, frozenset()):
                return self._unhealthy(RegistryState.CORRUPT, f"table {name} lacks column(s) {', '.join(lacking)}")
            added_columns += [f"{name}.{column}" for column in lacking]
        if added_columns:
            outdated.append(f"column(s) {', '.join(added_columns)} do not exist yet")
        if not missing:
            lacking_triggers = changes.missing_triggers(conn)
            if lacking_triggers:
                outdated.append(f"the change trigger(s) {', '.join(lacking_triggers)} do not exist yet")
        if outdated:  # tables/columns a newer trustport added: 'db init' creates them next to the data
            return self._unhealthy(RegistryState.OUTDATED, ", ".join(outdated))
        count = conn.execute(sa.select(sa.func.count()).select_from(devices)).scalar_one()
        if integrity and conn.dialect.name == "sqlite":
            result = [str(r) for r in conn.exec_driver_sql("PRAGMA quick_check(5)").scalars()]
            if result != ["ok"]:
                found = [line for r in result for line in r.splitlines() if line and not line.startswith("***")]
                return self._unhealthy(RegistryState.CORRUPT, "PRAGMA quick_check: " + "; ".join(found)[:500])
        return RegistryHealth(self.display_url, RegistryState.HEALTHY, None, version, registry_id, count,
                              identity_recorded=recorded)

    def _health_from_error(self, error: exc.SQLAlchemyError) -> RegistryHealth:
        detail: object = error.orig if isinstance(error, exc.DBAPIError) and error.orig is not None else error
        reason = self._scrub((str(detail).strip().splitlines() or [type(detail).__name__])[0])
        if _is_damage(error):
            return self._unhealthy(RegistryState.CORRUPT, reason, error)
        return self._unhealthy(RegistryState.UNREACHABLE, f"{reason}; {self._hint(error)}", error)

    # -- error translation -----------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _hint(self, error: BaseException) -> str:
        if isinstance(error, exc.IntegrityError):
            return "the change conflicts with data already stored"
        if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError | ImportError):
            return (
                "check that the file and its directory are writable by this user and no other process holds "
                "a long write lock"
                if self._is_sqlite
                else "check that the server is running and reachable, the credentials in the URL are right, "
                "and nothing holds long locks"
            )
        return "check that the URL points at a trustport database"

    def _store_error(self, action: str, error: BaseException) -> StoreError:
        detail: object = error
        if isinstance(error, exc.DBAPIError) and error.orig is not None:
            detail = error.orig
        reason = (str(detail).strip().splitlines() or [type(detail).__name__])[0]
        if isinstance(error, exc.SQLAlchemyError) and not isinstance(error, exc.IntegrityError):
            # The database failed under us: check it again, from fresh connections, before the next statement.
            self._schema_ready = False
            damaged = self._sqlite_file_problem(self._sqlite_path) if self._sqlite_path is not None else None
            if damaged is not None and damaged.problem is not None:
                return StoreError(self._scrub(f"{action} failed: {damaged.problem} ({reason})"))
            if _is_damage(error):
                return StoreError(self._scrub(f"{action} failed: {self._problem(RegistryState.CORRUPT, reason)}"))
        return StoreError(self._scrub(f"{action} failed on database {self.display_url}: {reason}; "
                                      f"{self._hint(error)}"))

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except exc.SQLAlchemyError as e:
            raise self._store_error(action, e) from e

    @contextmanager
    def _transaction(self, action: str) -> Iterator[Connection]:
        self.ensure_schema()
        opened = self._file_seen
        with self._translated(action), self._engine.begin() as conn:
            conn.info.pop(_TRACKED, None)
            yield conn
            tracked = conn.info.pop(_TRACKED, False)
        self._check_unchanged(action, opened)
        if tracked:
            self._after_change(action)

    def _after_change(self, action: str) -> None:
        """A committed change of what decisions read: return only once no hook's cache can decide without it."""
        if self.wait_for_caches:
            self.barrier(action)

    def barrier(self, action: str) -> changes.BarrierResult:
        """Wait until every hook's cache has applied the registry's current generation (or its lease ran out)."""
        result = changes.wait_for_caches(self._engine.connect)
        self.last_barrier = result
        if result.error is not None or result.lapsed:
            _log.warning("%s: committed (generation %d); %s", action, result.generation,
                         f"could not confirm the FreeRADIUS caches ({result.error}); waited "
                         f"{result.waited_s:.1f} s, until every lease had run out" if result.error else
                         f"cache(s) {', '.join(result.lapsed)} did not confirm it; their leases ran out, so they "
                         "read the registry directly until they catch up")
        return result

    def _check_unchanged(self, action: str, opened: _FileId | None) -> None:
        """After the commit: a file replaced or deleted meanwhile took the change with it (fail, so the hook
        rejects); changed in place (a checkpoint, or damage) is checked now."""
        if self._sqlite_path is None or opened is None:
            return
        now = _file_id(self._sqlite_path)
        if now == opened:
            return
        self._schema_ready = False
        if now is None or now[:2] != opened[:2]:
            gone = "deleted" if now is None else "replaced"
            raise StoreError(f"{action} on registry {self.display_url} was lost: the file was {gone} while in use; "
                             "find out what changed it and restore the backup if needed")
        self.ensure_schema()

    def transaction(self, action: str) -> AbstractContextManager[Connection]:
        """A transaction on the registry database, for companion stores that share its engine and schema."""
        return self._transaction(action)

    # -- reads -----------------------------------------------------------------------------------------------

    def _record(self, row: Row[Any]) -> DeviceRecord:
        m = row._mapping
        try:
            state = LifecycleState(m["state"])
            kind = CertKind(m["cert_kind"]) if m["cert_kind"] is not None else None
        except ValueError as e:
            raise StoreError(
                f"device id {m['id']} in {self.display_url} has an unknown value ({e}); "
                "fix the row or upgrade trustport"
            ) from e
        return DeviceRecord(
            id=m["id"],
            key=DeviceKey(issuer=m["issuer"], serial_number=m["serial_number"]),
            state=state,
            segment=m["segment"],
            owner=m["owner"],
            notes=m["notes"],
            cert_kind=kind,
            cert_serial=m["cert_serial"],
            fingerprint_sha256=m["fingerprint_sha256"],
            mud_url=m["mud_url"],
            first_seen=m["first_seen"],
            last_seen=m["last_seen"],
            spki_sha256=m["spki_sha256"],
            device_class=m["device_class"],
            location=m["location"],
        )

    def device_from_row(self, row: Row[Any]) -> DeviceRecord:
        """A ``devices`` row another repository selected, as a record (the same checks as every read)."""
        return self._record(row)

    def decision_from_row(self, row: Row[Any]) -> DecisionLogEntry:
        """A ``decision_log`` row another repository selected, as an entry."""
        return self._entry(row)

    def _one(self, conn: Connection, where: sa.ColumnElement[bool]) -> DeviceRecord | None:
        row = conn.execute(sa.select(devices).where(where).order_by(devices.c.id).limit(1)).first()
        return None if row is None else self._record(row)

    @staticmethod
    def _key_is(key: DeviceKey) -> sa.ColumnElement[bool]:
        return sa.and_(devices.c.issuer == key.issuer, devices.c.serial_number == key.serial_number)

    def find_device(self, key: DeviceKey) -> DeviceRecord | None:
        with self._transaction("looking up a device") as conn:
            return self._one(conn, self._key_is(key))

    def get_device(self, device_id: int) -> DeviceRecord | None:
        with self._transaction("looking up a device") as conn:
            return self._one(conn, devices.c.id == device_id)

    def find_by_fingerprint(self, fingerprint_sha256: str) -> DeviceRecord | None:
        """The device whose last presented certificate has this SHA-256 fingerprint (any hex spelling)."""
        fingerprint = normalize_fingerprint(fingerprint_sha256)
        with self._transaction("looking up a device by fingerprint") as conn:
            return self._one(conn, devices.c.fingerprint_sha256 == fingerprint)

    def find_by_spki(self, spki_sha256: str) -> DeviceRecord | None:
        """The device whose certificate key (SHA-256 of its SubjectPublicKeyInfo) is this one."""
        with self._transaction("looking up a device by public key") as conn:
            return self._one(conn, devices.c.spki_sha256 == spki_sha256.lower())

    def list_devices(self, state: LifecycleState | None = None) -> Sequence[DeviceRecord]:
        query = sa.select(devices).order_by(devices.c.id)
        if state is not None:
            query = query.where(devices.c.state == state.value)
        with self._transaction("listing devices") as conn:
            return [self._record(row) for row in conn.execute(query)]

    # -- writes ----------------------------------------------------------------------------------------------

    def add_device(
        self,
        key: DeviceKey,
        *,
        state: LifecycleState,
        now: datetime,
        segment: str | None = None,
        owner: str | None = None,
        notes: str | None = None,
        cert_kind: CertKind | None = None,
        facts: CertificateFacts | None = None,
        device_class: str | None = None,
    ) -> DeviceRecord:
        _aware(now, "now")
        values = self._new_device_values(key, state, now, facts, cert_kind)
        values.update(segment=segment, owner=owner, notes=notes, device_class=device_class)
        try:
            return self._insert_device(values)
        except exc.IntegrityError as e:
            existing = self.find_device(key)
            if existing is not None:
                raise DeviceExists(
                    f"device {key} is already registered (id {existing.id}, state {existing.state}) in "
                    f"{self.display_url}; update it instead of adding it"
                ) from e
            raise self._store_error(f"adding device {key}", e) from e

    def register_pending(self, key: DeviceKey, facts: CertificateFacts, kind: CertKind, now: datetime) -> DeviceRecord:
        _aware(now, "now")
        values = self._new_device_values(key, LifecycleState.PENDING, now, facts, kind)
        values.update(first_seen=now, last_seen=now)
        try:
            return self._insert_device(values)
        except exc.IntegrityError as e:
            # Already there, or another server inserted it a moment ago: the unique key decides, we return it.
            existing = self.find_device(key)
            if existing is not None:
                return existing
            raise self._store_error(f"registering pending device {key}", e) from e

    @staticmethod
    def _new_device_values(
        key: DeviceKey,
        state: LifecycleState,
        now: datetime,
        facts: CertificateFacts | None,
        kind: CertKind | None,
    ) -> dict[str, Any]:
        fingerprint = facts.fingerprint_sha256 if facts is not None else None
        return {
            "issuer": key.issuer,
            "serial_number": key.serial_number,
            "state": state.value,
            "cert_kind": kind.value if kind is not None else None,
            "cert_serial": facts.cert_serial if facts is not None else None,
            "fingerprint_sha256": normalize_fingerprint(fingerprint) if fingerprint else None,
            "spki_sha256": facts.spki_sha256 if facts is not None else None,
            "mud_url": facts.mud_url if facts is not None else None,
            "created_at": now,
            "updated_at": now,
        }

    def _insert_device(self, values: Mapping[str, Any]) -> DeviceRecord:
        """Insert and read back; IntegrityError escapes untranslated so callers can tell a duplicate apart."""
        self.ensure_schema()
        try:
            with self._engine.begin() as conn:
                new_id = conn.execute(devices.insert().values(**values).returning(devices.c.id)).scalar_one()
                record = self._one(conn, devices.c.id == new_id)
                conn.info.pop(_TRACKED, None)
        except exc.IntegrityError:
            raise
        except exc.SQLAlchemyError as e:
            raise self._store_error(f"adding device {values['serial_number']} @ {values['issuer']}", e) from e
        assert record is not None  # just inserted in this transaction
        self._after_change(f"adding device {values['serial_number']} @ {values['issuer']}")
        return record

    def record_seen(self, device_id: int, facts: CertificateFacts, now: datetime) -> None:
        """Set last_seen (and first_seen once) and the certificate last presented.

        The fingerprint and MUD URL are only overwritten when the facts carry them: the RADIUS path cannot
        always extract them, and a missing value there must not erase one learnt from a PEM.
        """
        with self._transaction(f"recording device id {device_id} as seen") as conn:
            self._seen(conn, device_id, facts, now)

    def _seen(self, conn: Connection, device_id: int, facts: CertificateFacts, now: datetime) -> None:
        _aware(now, "now")
        if conn.execute(_SEEN, [_seen_row(device_id, facts, now)]).rowcount == 0:
            raise DeviceNotFound(f"no device with id {device_id} in {self.display_url}")

    def update_device(
        self,
        device_id: int,
        *,
        state: LifecycleState | None = None,
        segment: str | None = None,
        owner: str | None = None,
        notes: str | None = None,
        device_class: str | None = None,
    ) -> DeviceRecord:
        changes: dict[str, Any] = {
            name: value
            for name, value in (("segment", segment), ("owner", owner), ("notes", notes),
                                ("device_class", device_class))
            if value is not None
        }
        if state is not None:
            changes["state"] = state.value
        # The interface passes no clock here; the database's own UTC time stamps the change.
        changes["updated_at"] = sa.func.current_timestamp()
        with self._transaction(f"updating device id {device_id}") as conn:
            conn.execute(devices.update().where(devices.c.id == device_id).values(**changes))
            record = self._one(conn, devices.c.id == device_id)
        if record is None:
            raise DeviceNotFound(f"no device with id {device_id} in {self.display_url}")
        return record

    # -- decision log ----------------------------------------------------------------------------------------

    def bind_certificate(self, device_id: int, facts: CertificateFacts, now: datetime,
                         audit: AuditNote) -> DeviceRecord:
        _aware(now, "now")
        fingerprint = facts.fingerprint_sha256
        values = {"cert_serial": facts.cert_serial, "updated_at": now,
                  "fingerprint_sha256": normalize_fingerprint(fingerprint) if fingerprint else None,
                  "spki_sha256": facts.spki_sha256}
        if facts.mud_url is not None:
            values["mud_url"] = facts.mud_url
        with self._transaction(f"binding device id {device_id} to a certificate") as conn:
            result = conn.execute(devices.update().where(devices.c.id == device_id).values(**values))
            if result.rowcount == 0:
                raise DeviceNotFound(f"no device with id {device_id} in {self.display_url}")
            self._audit(conn, device_id, now, audit)
            record = self._one(conn, devices.c.id == device_id)
        assert record is not None  # updated in this transaction
        return record

    @staticmethod
    def _audit(conn: Connection, device_id: int, now: datetime, audit: AuditNote) -> None:
        conn.execute(lifecycle_events.insert().values(**SqlDeviceStore._audit_values(device_id, now, audit)))

    @staticmethod
    def _audit_values(device_id: int, now: datetime, audit: AuditNote) -> dict[str, Any]:
        return {"device_id": device_id, "time": now, "actor": audit.actor[:200], "action": audit.action[:32],
                "from_state": audit.state, "to_state": audit.state, "reason": audit.reason[:2000]}

    def append_decision(self, entry: DecisionLogEntry, seen: CertificateFacts | None = None,
                        audit: AuditNote | None = None, *, kind: CertKind | None = None) -> None:
        """Append to the log; with ``seen``, also record the device as seen and ``seen`` as its last verified
        certificate (``kind``: its anchor role), and with ``audit`` an audit entry, in the same transaction."""
        _aware(entry.time, "entry.time")
        with self._transaction("appending to the decision log") as conn:
            self.append_decision_in(conn, entry, seen, audit, kind=kind)

    def append_decision_in(self, conn: Connection, entry: DecisionLogEntry, seen: CertificateFacts | None = None,
                           audit: AuditNote | None = None, *, kind: CertKind | None = None) -> None:
        """``append_decision`` inside the caller's transaction."""
        self.append_decisions_in(conn, [(entry, seen, audit, kind)])

    def append_decisions_in(self, conn: Connection, items: Sequence[Appended]) -> None:
        """Several ``append_decision``s in the caller's transaction, one statement per table (executemany): the
        journal's drainer applies its batches with this. A device that is gone raises ``DeviceNotFound``."""
        seen_rows: list[dict[str, Any]] = []
        certificates: list[dict[str, Any]] = []
        audits: list[dict[str, Any]] = []
        log_rows: list[dict[str, Any]] = []
        for entry, seen, audit, kind in items:
            _aware(entry.time, "entry.time")
            ctx, device_id = entry.context, entry.device_id
            log_rows.append({
                "time": entry.time, "device_id": device_id, "device": entry.device, "nas_ip": ctx.nas_ip,
                "nas_identifier": ctx.nas_identifier, "nas_port": ctx.nas_port,
                "calling_station_id": ctx.calling_station_id, "user_name": ctx.user_name,
                "outcome": entry.outcome.value, "vlan": entry.vlan, "segment": entry.segment,
                "reasons": json.dumps(list(entry.reasons)), "policy_revision": entry.policy_revision})
            if device_id is None:
                continue
            if seen is not None:
                seen_rows.append(_seen_row(device_id, seen, entry.time))
                certificates.append({
                    "device_id": device_id, "subject": seen.subject, "issuer": seen.issuer,
                    "cert_kind": kind.value if kind is not None else None, "mud_url": seen.mud_url,
                    "not_after": seen.not_after, "updated_at": entry.time})
            if audit is not None:
                audits.append(self._audit_values(device_id, entry.time, audit))
        if seen_rows:
            result = conn.execute(_SEEN, seen_rows)
            if conn.dialect.supports_sane_multi_rowcount and result.rowcount != len(seen_rows):
                raise DeviceNotFound(f"a device to record as seen is no longer in {self.display_url}")
        self._upsert_many(conn, device_certificates, "device_id", certificates)
        if audits:
            conn.execute(lifecycle_events.insert(), audits)
        conn.execute(decision_log.insert(), log_rows)

    def decisions(self, device_id: int | None = None, limit: int = 50) -> Sequence[DecisionLogEntry]:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        query = sa.select(decision_log).order_by(decision_log.c.time.desc(), decision_log.c.id.desc()).limit(limit)
        if device_id is not None:
            query = query.where(decision_log.c.device_id == device_id)
        with self._transaction("reading the decision log") as conn:
            rows = conn.execute(query).all()
        return [self._entry(row) for row in rows]

    def _entry(self, row: Row[Any]) -> DecisionLogEntry:
        m = row._mapping
        try:
            outcome = Outcome(m["outcome"])
            reasons = tuple(str(r) for r in json.loads(m["reasons"]))
        except (ValueError, TypeError) as e:
            raise StoreError(
                f"decision log row {m['id']} in {self.display_url} is malformed ({e}); fix or delete the row"
            ) from e
        return DecisionLogEntry(
            time=m["time"],
            device_id=m["device_id"],
            device=m["device"],
            context=NetworkContext(
                nas_ip=m["nas_ip"],
                nas_identifier=m["nas_identifier"],
                nas_port=m["nas_port"],
                calling_station_id=m["calling_station_id"],
                user_name=m["user_name"],
            ),
            outcome=outcome,
            vlan=m["vlan"],
            segment=m["segment"],
            reasons=reasons,
            policy_revision=m["policy_revision"],
        )

    # -- last verified certificate, running FreeRADIUS servers -------------------------------------------------

    @staticmethod
    def _upsert(conn: Connection, table: sa.Table, key: str, values: Mapping[str, Any]) -> None:
        """Insert or replace one row by its primary key, atomically on both backends."""
        SqlDeviceStore._upsert_many(conn, table, key, [values])

    @staticmethod
    def _upsert_many(conn: Connection, table: sa.Table, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """``_upsert`` of several rows (one executemany; of rows with the same key, the last one wins)."""
        if not rows:
            return
        last = list({row[key]: row for row in rows}.values())
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg = pg_insert(table)
            conn.execute(pg.on_conflict_do_update(index_elements=[key],
                                                  set_={k: pg.excluded[k] for k in last[0] if k != key}), last)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            lite = sqlite_insert(table)
            conn.execute(lite.on_conflict_do_update(index_elements=[key],
                                                    set_={k: lite.excluded[k] for k in last[0] if k != key}), last)

    def _remember_certificate(self, conn: Connection, device_id: int, facts: CertificateFacts,
                              kind: CertKind | None, now: datetime) -> None:
        self._upsert(conn, device_certificates, "device_id", {
            "device_id": device_id, "subject": facts.subject, "issuer": facts.issuer,
            "cert_kind": kind.value if kind is not None else None, "mud_url": facts.mud_url,
            "not_after": facts.not_after, "updated_at": now})

    def last_certificate(self, device_id: int) -> VerifiedCertificate | None:
        """The certificate ``device_id`` last authenticated with (verified, accepted), or None."""
        with self._transaction(f"reading the last certificate of device id {device_id}") as conn:
            row = conn.execute(sa.select(device_certificates)
                               .where(device_certificates.c.device_id == device_id)).first()
        if row is None:
            return None
        m = row._mapping
        try:
            kind = CertKind(m["cert_kind"]) if m["cert_kind"] else None
        except ValueError as e:
            raise StoreError(f"device_certificates row {device_id} in {self.display_url} is malformed ({e}); "
                             "delete the row (it is rewritten at the next authentication)") from e
        return VerifiedCertificate(device_id, m["subject"], m["issuer"], kind, m["mud_url"], m["not_after"],
                                   m["updated_at"])

    def record_radius_server(self, server: RadiusServerRecord) -> None:
        """A FreeRADIUS hook (re)loaded its policy: remember which revision it holds."""
        _aware(server.loaded_at, "loaded_at")
        values: dict[str, Any] = {
            "server_id": server.server_id[:512], "pid": server.pid, "policy_revision": server.policy_revision,
            "settings_file": server.settings_file, "config_file": server.config_file, "loaded_at": server.loaded_at}
        if server.last_auth_at is not None:  # a reload keeps the last authentication time already recorded
            values["last_auth_at"] = server.last_auth_at
        with self._transaction("recording the running FreeRADIUS") as conn:
            self._upsert(conn, radius_servers, "server_id", values)

    def touch_radius_server(self, server_id: str, now: datetime) -> None:
        """Note that the server authenticated someone (the hook calls this at most once a minute)."""
        with self._transaction("recording the last authentication time") as conn:
            conn.execute(radius_servers.update().where(radius_servers.c.server_id == server_id[:512])
                         .values(last_auth_at=now))

    def radius_servers(self) -> Sequence[RadiusServerRecord]:
        with self._transaction("reading the running FreeRADIUS servers") as conn:
            rows = conn.execute(sa.select(radius_servers).order_by(radius_servers.c.server_id)).all()
        return [RadiusServerRecord(r.server_id, r.pid, r.policy_revision, r.loaded_at, r.last_auth_at,
                                   r.settings_file, r.config_file) for r in rows]

    def ping(self) -> None:
        """Round trip to the database (``SELECT 1``) after the registry check; raises ``StoreError`` when it is
        unreachable or not a healthy trustport registry (the API's /healthz, the hook at start)."""
        with self._transaction("checking the database") as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()

    def close(self) -> None:
        self._engine.dispose()


# A decision log entry with what ``append_decision`` takes beside it: (entry, seen, audit, kind).
Appended = tuple[DecisionLogEntry, CertificateFacts | None, AuditNote | None, CertKind | None]
# ``_seen`` as one statement for executemany: a value the facts lack (NULL) leaves the stored one (COALESCE), the
# binding (cert_serial), fingerprint and SPKI are written on first use only, the MUD URL whenever the facts carry one.
_SEEN: Final = devices.update().where(devices.c.id == sa.bindparam("d_id")).values(
    last_seen=sa.bindparam("d_now", type_=UtcDateTime),
    first_seen=sa.func.coalesce(devices.c.first_seen, sa.bindparam("d_now", type_=UtcDateTime)),
    cert_serial=sa.func.coalesce(devices.c.cert_serial, sa.bindparam("d_serial")),
    fingerprint_sha256=sa.func.coalesce(devices.c.fingerprint_sha256, sa.bindparam("d_fp")),
    spki_sha256=sa.func.coalesce(devices.c.spki_sha256, sa.bindparam("d_spki")),
    mud_url=sa.func.coalesce(sa.bindparam("d_mud", type_=sa.Text), devices.c.mud_url),
    updated_at=sa.bindparam("d_now", type_=UtcDateTime),
)


def _seen_row(device_id: int, facts: CertificateFacts, now: datetime) -> dict[str, Any]:
    """The parameters of ``_SEEN``. The certificate binding is written once (first use) and never overwritten here:
    another certificate with the same issuer and serial number is not this device (``bind_certificate`` re-binds);
    the fingerprint and MUD URL only when the facts carry them (the RADIUS path cannot always extract them)."""
    fingerprint = facts.fingerprint_sha256
    return {"d_id": device_id, "d_now": now, "d_serial": facts.cert_serial, "d_mud": facts.mud_url,
            "d_fp": normalize_fingerprint(fingerprint) if fingerprint else None, "d_spki": facts.spki_sha256 or None}


_HEADER_LOOKS: Final = 7  # 5, 10, 20, 40, 80, 160 ms between looks at a header that runs ahead of the file
_TRACKED: Final = "trustport_tracked_change"
_log = logging.getLogger("trustport.store")


def _note_tracked_change(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
    """Mark the transaction when a statement may change a table decisions read (the triggers do the rest)."""
    if changes.is_tracked_dml(statement):
        conn.info[_TRACKED] = True


def _add_columns(conn: Connection) -> None:
    """ALTER TABLE ... ADD COLUMN for the ``_ADDED_COLUMNS`` an existing registry lacks (nullable, no data touched)."""
    inspector = sa.inspect(conn)
    for name, columns in sorted(_ADDED_COLUMNS.items()):
        present = {column["name"] for column in inspector.get_columns(name)}
        table = metadata.tables[name]
        for column in sorted(columns - present):
            kind = table.c[column].type.compile(dialect=conn.dialect)
            preparer = conn.dialect.identifier_preparer
            conn.exec_driver_sql(f"ALTER TABLE {preparer.quote(name)} ADD COLUMN {preparer.quote(column)} {kind}")
    _add_indexes(conn)


def _add_indexes(conn: Connection) -> None:
    """CREATE INDEX for indexes a newer trustport declares on tables an older one made (create_all skips tables
    that exist, indexes included)."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        present = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if index.name not in present:
                index.create(conn)


def _sqlite_header_problem(head: bytes, size: int, ours: bool) -> tuple[RegistryState, str] | None:
    """The first 100 bytes of a SQLite file against its size (https://sqlite.org/fileformat.html#the_database_header):
    a file shorter than the page count its header records was truncated. ``ours``: the file was verified as a
    registry with a recorded identity, so its header must carry trustport's application id."""
    if not head.startswith(_SQLITE_MAGIC[: len(head)]) or (len(head) >= 16 and head[:16] != _SQLITE_MAGIC):
        return RegistryState.FOREIGN, "the file is not a SQLite database (it does not start with the SQLite header)"
    if len(head) < 100:
        return RegistryState.CORRUPT, f"truncated: the file has {size} bytes, less than a SQLite header"
    (app_id,) = struct.unpack(">I", head[68:72])
    if app_id not in (0, SQLITE_APPLICATION_ID) or (ours and app_id != SQLITE_APPLICATION_ID):
        return RegistryState.FOREIGN, (f"its SQLite header carries application id {app_id:#x}, trustport's is "
                                       f"{SQLITE_APPLICATION_ID:#x}")
    (raw_page_size,) = struct.unpack(">H", head[16:18])
    page_size = 65536 if raw_page_size == 1 else raw_page_size
    if page_size < 512 or page_size & (page_size - 1):
        return RegistryState.CORRUPT, f"its header names an invalid page size ({raw_page_size})"
    change_counter, pages = struct.unpack(">II", head[24:32])
    (valid_for,) = struct.unpack(">I", head[92:96])
    if size % page_size:
        return RegistryState.CORRUPT, (f"truncated: the file has {size} bytes, not a whole number of "
                                       f"{page_size}-byte pages")
    if pages and change_counter == valid_for and size < pages * page_size:
        return RegistryState.CORRUPT, (f"truncated: the file has {size} bytes, its header says {pages} pages of "
                                       f"{page_size} bytes ({pages * page_size} bytes)")
    return None


def _foreign_tables(tables: set[str]) -> str:
    shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
    return f"it has tables ({shown}) but not trustport's"


def _is_damage(error: exc.SQLAlchemyError) -> bool:
    """SQLite saying the file is not (or no longer) a sound database, as opposed to busy or unreachable."""
    orig = error.orig if isinstance(error, exc.DBAPIError) else None
    if isinstance(orig, sqlite3.DatabaseError) and not isinstance(orig, sqlite3.OperationalError
                                                                  | sqlite3.IntegrityError):
        return True
    text = str(orig or error).lower()
    return any(sign in text for sign in ("not a database", "malformed", "disk i/o error"))


def _switch_to_wal(conn: Connection) -> None:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    cursor = raw.cursor()
    try:
        _enable_wal(cursor, 2.0)
    finally:
        cursor.close()


def _enable_wal(cursor: sqlite3.Cursor, wait_s: float) -> None:
    """Switch a new database file to WAL; persistent, so later connections find it already set.

    The switch needs the file to itself and SQLite reports "database is locked" at once, without its busy
    handler, when another connection is open on it at that moment (two servers starting together): retry.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal":
                return
            problem = "SQLite kept its old journal mode instead of switching to WAL"
        except sqlite3.OperationalError as e:
            if "locked" not in str(e):
                raise
            problem = str(e)
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(problem)
        time.sleep(0.005)


def _query_value(query: Mapping[str, str | Sequence[str]], name: str) -> str:
    value = query[name]
    return value if isinstance(value, str) else " ".join(value)
