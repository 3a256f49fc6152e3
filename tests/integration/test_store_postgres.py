"""SqlDeviceStore on a real, throw-away PostgreSQL: the same behaviour suite as SQLite, plus server failures.

Needs the PostgreSQL server binaries (Debian: ``apt-get install postgresql``); without them these tests fail,
they never skip.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from policy.errors import StoreError
from tests.support.postgres import PostgresServer, free_port
from tests.support.store_contract import KEY, StoreContract
from trustport.store.sql import SqlDeviceStore

pytestmark = pytest.mark.integration


class PostgresBackend:
    name = "postgresql"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def fresh_url(self) -> str:
        return self.server.create_database()

    @contextmanager
    def hold_write_lock(self, url: str) -> Iterator[None]:
        database = url.rsplit("/", 1)[1]
        with self.server.connect(database) as conn:
            conn.execute("LOCK TABLE decision_log IN EXCLUSIVE MODE")  # psycopg opened a transaction
            yield
            conn.rollback()


@pytest.fixture
def backend(postgres: PostgresServer) -> PostgresBackend:
    return PostgresBackend(postgres)


class TestPostgresStore(StoreContract):
    """The shared behaviour, against PostgreSQL."""


def _full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


def test_plain_postgresql_url_uses_psycopg(postgres: PostgresServer) -> None:
    url = postgres.create_database().replace("postgresql+psycopg://", "postgresql://", 1)
    with SqlDeviceStore(url, create=True) as store:
        store.ping()
        assert store.display_url.startswith(f"postgresql+psycopg://{postgres.user}:***@")
        assert postgres.password not in repr(store)


def test_session_settings(postgres: PostgresServer) -> None:
    with SqlDeviceStore(postgres.create_database(), statement_timeout_s=1.25, create=True) as store:
        store.ensure_schema()
        with store._engine.connect() as conn:
            timeout = conn.exec_driver_sql("SHOW statement_timeout").scalar()
            app = conn.exec_driver_sql("SHOW application_name").scalar()
    assert (timeout, app) == ("1250ms", "trustport")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-password", "password authentication failed"),
        ("missing-database", 'database "no_such_db" does not exist'),
        ("closed-port", "check that the server is running and reachable"),
    ],
)
def test_connection_failures_name_the_database_but_never_the_password(
    postgres: PostgresServer, case: str, expected: str
) -> None:
    secret = postgres.password
    if case == "wrong-password":
        secret = "Wr0ng-s3cr3t-pw"
        url = postgres.url("postgres", password=secret)
    elif case == "missing-database":
        url = postgres.url("no_such_db")
    else:
        url = postgres.url("postgres").replace(f":{postgres.port}/", f":{free_port()}/")
    store = SqlDeviceStore(url, connect_timeout_s=2)
    try:
        with pytest.raises(StoreError) as info:
            store.find_device(KEY)
    finally:
        store.close()
    message = str(info.value)
    assert expected in message
    assert f"postgresql+psycopg://{postgres.user}:***@127.0.0.1:" in message
    assert "check that" in message
    assert secret not in _full_text(info.value)
    assert isinstance(info.value.__cause__, Exception)


def test_slow_statement_is_cancelled(postgres: PostgresServer) -> None:
    """A stuck server must not hang radiusd: the statement timeout turns it into a StoreError."""
    url = postgres.create_database()
    with SqlDeviceStore(url, statement_timeout_s=0.3, create=True) as store:
        store.ensure_schema()
        database = url.rsplit("/", 1)[1]
        with postgres.connect(database) as blocker:
            blocker.execute("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreError, match="statement timeout"):
                store.find_device(KEY)
            blocker.rollback()
        assert store.find_device(KEY) is None


def test_reconnects_after_the_server_dropped_its_connections(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    database = url.rsplit("/", 1)[1]
    with SqlDeviceStore(url, create=True) as store:
        store.ping()
        with postgres.connect(autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        assert store.find_device(KEY) is None  # pool_pre_ping replaced the dead connection


def test_helper_server_requires_a_password_over_tcp(postgres: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=postgres.host, port=postgres.port, user=postgres.user, password="nope", dbname="postgres"
        ).close()
