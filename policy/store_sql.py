"""The device registry and decision log in SQL: SQLite by default, PostgreSQL by URL, one code path.

SQLAlchemy Core (no ORM) keeps the statements visible and identical on both backends. Every SQLAlchemy
or driver exception is translated here into ``StoreError`` whose text names the database with its password
hidden, so a log line or a traceback never carries the credential. Timeouts are short on purpose: the RADIUS
hook calls this on the authentication path, and a slow database must fail closed instead of hanging radiusd.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, Row
from sqlalchemy.pool import StaticPool

from policy.errors import DeviceExists, DeviceNotFound, StoreError
from policy.model import (
    CertificateFacts,
    CertKind,
    DecisionLogEntry,
    DeviceKey,
    DeviceRecord,
    LifecycleState,
    NetworkContext,
    Outcome,
)
from policy.sql_schema import (
    UtcDateTime,
    decision_log,
    devices,
    metadata,
    schema_version,
)

SCHEMA_VERSION: Final = 1
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


class SqlDeviceStore:
    """``DeviceStore`` over SQLAlchemy Core.

    Nothing touches the database until the first call (or ``ensure_schema()``), which creates the tables if
    missing; so radiusd can start while the database is down and fail closed per request until it is back.
    ``statement_timeout_s`` bounds how long one statement may wait (PostgreSQL ``statement_timeout``, SQLite
    ``busy_timeout``) and ``connect_timeout_s`` bounds connecting and waiting for a pooled connection.
    """

    def __init__(self, url: str, *, connect_timeout_s: float = 3.0, statement_timeout_s: float = 2.0) -> None:
        if connect_timeout_s <= 0 or statement_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        self._url = _parse_url(url)
        self._password = self._url.password
        self.display_url = self._url.render_as_string(hide_password=True)
        self._is_sqlite = self._url.get_backend_name() == "sqlite"
        self._sqlite_path = self._sqlite_file(self._url) if self._is_sqlite else None
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        try:
            self._engine = self._create_engine(connect_timeout_s, statement_timeout_s)
        except (exc.SQLAlchemyError, ImportError) as e:
            raise self._store_error("opening the database", e) from e

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
        return Path(database)

    def _create_engine(self, connect_timeout_s: float, statement_timeout_s: float) -> Engine:
        pool_timeout = connect_timeout_s
        if self._is_sqlite:
            busy_ms = round(statement_timeout_s * 1000)
            sqlite_args: dict[str, Any] = {"check_same_thread": False, "timeout": statement_timeout_s}
            if self._sqlite_path is None:
                # In memory: one shared connection, else each pooled connection sees its own empty database.
                engine = sa.create_engine(
                    self._url, connect_args=sqlite_args, poolclass=StaticPool, hide_parameters=True
                )
            else:
                engine = sa.create_engine(
                    self._url, connect_args=sqlite_args, pool_timeout=pool_timeout, hide_parameters=True
                )
            in_memory = self._sqlite_path is None

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
                    if not in_memory:
                        _enable_wal(cursor, busy_ms / 1000)
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

    def ensure_schema(self) -> None:
        """Create missing tables and check the schema version; done once, on first use."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            try:
                self._prepare_sqlite_file()
            except OSError as e:
                raise StoreError(
                    f"cannot create the SQLite database {self.display_url}: {e.strerror or e}; "
                    "create its directory or choose a path this user can write"
                ) from e
            with self._translated("creating the schema"):
                self._create_schema()
            self._schema_ready = True

    def _create_schema(self) -> None:
        with self._engine.begin() as conn:
            # Two servers starting together on an empty database must not both run CREATE TABLE: take a lock
            # first, so the second one waits and then finds the tables made.
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite has not begun yet: DDL does not autobegin
            metadata.create_all(conn)
            found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one_or_none()
            if found is None:
                conn.execute(
                    schema_version.insert().values(version=SCHEMA_VERSION, applied_at=sa.func.current_timestamp())
                )
            elif found > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.display_url} has schema version {found}, newer than this trustport "
                    f"understands ({SCHEMA_VERSION}); upgrade trustport or point it at another database"
                )
            elif found < SCHEMA_VERSION:  # pragma: no cover - no older schema exists yet
                raise StoreError(
                    f"database {self.display_url} has schema version {found}; migrate it to {SCHEMA_VERSION}"
                )

    # -- error translation -----------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _store_error(self, action: str, error: BaseException) -> StoreError:
        detail: object = error
        if isinstance(error, exc.DBAPIError) and error.orig is not None:
            detail = error.orig
        reason = (str(detail).strip().splitlines() or [type(detail).__name__])[0]
        if isinstance(error, exc.IntegrityError):
            hint = "the change conflicts with data already stored"
        elif isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError | ImportError):
            hint = (
                "check that the file and its directory are writable by this user and no other process holds "
                "a long write lock"
                if self._is_sqlite
                else "check that the server is running and reachable, the credentials in the URL are right, "
                "and nothing holds long locks"
            )
        else:
            hint = "check that the URL points at a trustport database"
        return StoreError(self._scrub(f"{action} failed on database {self.display_url}: {reason}; {hint}"))

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except exc.SQLAlchemyError as e:
            raise self._store_error(action, e) from e

    @contextmanager
    def _transaction(self, action: str) -> Iterator[Connection]:
        self.ensure_schema()
        with self._translated(action), self._engine.begin() as conn:
            yield conn

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
        )

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
        except exc.IntegrityError:
            raise
        except exc.SQLAlchemyError as e:
            raise self._store_error(f"adding device {values['serial_number']} @ {values['issuer']}", e) from e
        assert record is not None  # just inserted in this transaction
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
        values: dict[str, Any] = {
            "last_seen": now,
            "first_seen": sa.func.coalesce(devices.c.first_seen, sa.literal(now, UtcDateTime)),
            "cert_serial": facts.cert_serial,
            "updated_at": now,
        }
        if facts.fingerprint_sha256:
            values["fingerprint_sha256"] = normalize_fingerprint(facts.fingerprint_sha256)
        if facts.spki_sha256:
            values["spki_sha256"] = facts.spki_sha256
        if facts.mud_url is not None:
            values["mud_url"] = facts.mud_url
        result = conn.execute(devices.update().where(devices.c.id == device_id).values(**values))
        if result.rowcount == 0:
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

    def append_decision(self, entry: DecisionLogEntry, seen: CertificateFacts | None = None) -> None:
        """Append to the log; with ``seen``, also record the device as seen, in the same transaction."""
        _aware(entry.time, "entry.time")
        ctx = entry.context
        values = {
            "time": entry.time,
            "device_id": entry.device_id,
            "device": entry.device,
            "nas_ip": ctx.nas_ip,
            "nas_identifier": ctx.nas_identifier,
            "nas_port": ctx.nas_port,
            "calling_station_id": ctx.calling_station_id,
            "user_name": ctx.user_name,
            "outcome": entry.outcome.value,
            "vlan": entry.vlan,
            "segment": entry.segment,
            "reasons": json.dumps(list(entry.reasons)),
        }
        with self._transaction("appending to the decision log") as conn:
            if seen is not None and entry.device_id is not None:
                self._seen(conn, entry.device_id, seen, entry.time)
            conn.execute(decision_log.insert().values(**values))

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
        )

    def ping(self) -> None:
        """Round trip to the database (``SELECT 1``); raises ``StoreError`` when it is unreachable."""
        with self._transaction("checking the database") as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()

    def close(self) -> None:
        self._engine.dispose()


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
