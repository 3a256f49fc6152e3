"""The registry cache and change feed on a real, throw-away PostgreSQL: the shared suite (tests/support/cache_contract),
where generations are handed out in commit order by the generation row's lock."""

from __future__ import annotations

import threading

import pytest

from tests.support.cache_contract import CacheContract
from tests.support.postgres import PostgresServer
from trustport.store import changes
from trustport.store.sql import SqlDeviceStore

pytestmark = pytest.mark.integration


class PostgresBackend:
    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def fresh_url(self) -> str:
        return self.server.create_database()


@pytest.fixture
def backend(postgres: PostgresServer) -> PostgresBackend:
    return PostgresBackend(postgres)


class TestPostgresCache(CacheContract):
    """The shared suite against PostgreSQL."""


def test_generations_are_committed_in_order(postgres: PostgresServer) -> None:
    """A transaction that took generation n blocks the next one from taking n+1 until it commits, so a reader never
    sees n+1 committed while n is still open (which would let a cache skip n for good)."""
    url = postgres.create_database()
    with SqlDeviceStore(url, create=True) as admin:
        admin.initialise(integrity=False)
    from datetime import UTC, datetime

    from policy.model import DeviceKey, LifecycleState

    with SqlDeviceStore(url, wait_for_caches=False) as store:
        a = store.add_device(DeviceKey("CN=x", "A"), state=LifecycleState.OPERATIONAL, now=datetime.now(UTC)).id
        b = store.add_device(DeviceKey("CN=x", "B"), state=LifecycleState.OPERATIONAL, now=datetime.now(UTC)).id
        holding = threading.Event()
        release = threading.Event()
        second_done = threading.Event()

        def first() -> None:
            with store.transaction("first") as conn:
                conn.exec_driver_sql(f"UPDATE devices SET owner = 'one' WHERE id = {a}")
                holding.set()
                release.wait(10)

        def second() -> None:
            holding.wait(10)
            with store.transaction("second") as conn:
                conn.exec_driver_sql(f"UPDATE devices SET owner = 'two' WHERE id = {b}")
            second_done.set()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        holding.wait(10)
        assert not second_done.wait(0.5)  # the second writer waits for the first's generation to commit
        with store.transaction("reader") as conn:
            seen = changes.generation(conn)
        release.set()
        for thread in threads:
            thread.join(10)
        assert second_done.is_set()
        with store.transaction("reader") as conn:
            feed, complete = changes.changes(conn, seen, changes.generation(conn))
        assert complete
        assert [(c.device_id, c.generation) for c in feed] == [(a, seen + 1), (b, seen + 2)]
