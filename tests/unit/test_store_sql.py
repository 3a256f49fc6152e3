"""SqlDeviceStore on SQLite: the shared behaviour suite, plus the file, pragmas and URL errors."""

from __future__ import annotations

import sqlite3
import stat
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from policy.errors import StoreError
from policy.model import CertKind, LifecycleState
from tests.support.store_contract import KEY, NOW, StoreContract, facts_for
from trustport.store.sql import SqlDeviceStore, normalize_fingerprint


class SqliteBackend:
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._count = 0

    def fresh_url(self) -> str:
        self._count += 1
        return f"sqlite:///{self._directory / f'registry-{self._count}.db'}"

    @contextmanager
    def hold_write_lock(self, url: str) -> Iterator[None]:
        conn = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()


@pytest.fixture
def backend(tmp_path: Path) -> SqliteBackend:
    return SqliteBackend(tmp_path)


class TestSqliteStore(StoreContract):
    """The shared behaviour, against a SQLite file."""


def _full_text(error: BaseException) -> str:
    """Everything a log or a traceback could show of the error and its chain."""
    return "".join(traceback.format_exception(error)) + repr(error)


# -- SQLite file -------------------------------------------------------------------------------------------


def test_file_and_directory_are_created_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "trustport" / "registry.db"
    with SqlDeviceStore(f"sqlite:///{path}", create=True) as store:
        assert not path.exists()  # nothing happens before first use
        store.register_pending(KEY, facts_for(), CertKind.IDEVID, NOW)
        created = sorted(p.name for p in path.parent.iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    assert "registry.db" in created
    assert modes == dict.fromkeys(created, 0o600)  # the -wal/-shm files inherit the mode
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_existing_file_keeps_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with SqlDeviceStore(url, create=True) as store:
        device = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW)
    with SqlDeviceStore(url) as store:
        assert store.find_device(KEY) == device


def test_pragmas(tmp_path: Path) -> None:
    with SqlDeviceStore(f"sqlite:///{tmp_path / 'r.db'}", statement_timeout_s=1.5, create=True) as store:
        store.ensure_schema()
        with store._engine.connect() as conn:
            got = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    assert got == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 1500, "foreign_keys": 1}


def test_in_memory_database_is_shared_between_threads() -> None:
    with SqlDeviceStore("sqlite://", create=True) as store:
        device = store.register_pending(KEY, facts_for(), CertKind.IDEVID, NOW)
        seen: list[object] = []
        thread = threading.Thread(target=lambda: seen.append(store.find_device(KEY)))
        thread.start()
        thread.join()
    assert seen == [device]


def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"cannot create the SQLite database .*choose a path"):
        SqlDeviceStore(f"sqlite:///{blocker / 'sub' / 'r.db'}", create=True).find_device(KEY)


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"registry sqlite:///.*junk\.db is not a trustport registry: the file is not"):
        SqlDeviceStore(f"sqlite:///{path}", create=True).find_device(KEY)
    assert path.read_bytes() == b"this is not sqlite" * 100  # refused, not overwritten


# -- URLs and secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "is not valid; use sqlite:///"),
        ("not a url", "is not valid; use sqlite:///"),
        ("postgresql://trustport:s3cr3t-pw@db:notaport/registry", "is not valid; use sqlite:///"),
        ("mysql://trustport:s3cr3t-pw@db/registry", "unsupported backend 'mysql'"),
        (
            "postgresql+psycopg2://trustport:s3cr3t-pw@db/registry",
            "unsupported backend 'postgresql\\+psycopg2'",
        ),
        ("oracle+oracledb://trustport:s3cr3t-pw@db/registry", "unsupported backend"),
    ],
)
def test_bad_urls_are_explained_without_the_password(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        SqlDeviceStore(url)
    assert "s3cr3t-pw" not in _full_text(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://trustport:s3cr3t-pw@db.example:5433/registry", "postgresql+psycopg://trustport:***@"),
        ("postgres://trustport:s3cr3t-pw@db.example/registry", "postgresql+psycopg://trustport:***@"),
        (
            "postgresql+psycopg://trustport:s3cr3t-pw@db.example/registry",
            "postgresql+psycopg://trustport:***@",
        ),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
        ("sqlite+pysqlite:////abs/path.db", "sqlite+pysqlite:////abs/path.db"),
    ],
)
def test_urls_are_normalised_and_shown_redacted(url: str, shown: str) -> None:
    store = SqlDeviceStore(url)  # no I/O until first use
    try:
        assert store.display_url.startswith(shown)
        assert "s3cr3t-pw" not in repr(store)
        assert "s3cr3t-pw" not in str(store)
        assert "s3cr3t-pw" not in repr(store._engine)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("given", "stored"),
    [("ABCDEF", "abcdef"), ("ab:cd:ef", "abcdef"), (" AB CD\tEF\n", "abcdef"), ("abcdef", "abcdef")],
)
def test_normalize_fingerprint(given: str, stored: str) -> None:
    assert normalize_fingerprint(given) == stored


@pytest.mark.parametrize(("connect", "statement"), [(0, 1), (1, 0), (-1, 1)])
def test_timeouts_must_be_positive(connect: float, statement: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        SqlDeviceStore("sqlite://", connect_timeout_s=connect, statement_timeout_s=statement)
