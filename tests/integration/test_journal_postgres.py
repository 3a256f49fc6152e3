"""trustport.store.journal on a real PostgreSQL: the same rows as the direct writes, exactly once across a server
that stops, drops its connections or holds locks, a SIGKILLed writer, and two drainers racing on one file."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from policy.errors import StoreError
from tests.support import journal_cases as jc
from tests.support.postgres import PostgresServer, _run, _server_user, find_bin_dir, running_postgres
from tests.support.store_contract import NOW
from trustport.store import journal as journal_module
from trustport.store.journal import Journal, drain_orphans
from trustport.store.schema import sessions
from trustport.store.sql import SqlDeviceStore

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", list(jc.CASES))
def test_journal_writes_the_same_rows_as_the_direct_calls(postgres: PostgresServer, tmp_path: Path,
                                                          case: str) -> None:
    jc.compare(lambda: SqlDeviceStore(postgres.create_database(), create=True), tmp_path / "j", jc.CASES[case])


def test_all_cases_in_one_batch(postgres: PostgresServer, tmp_path: Path) -> None:
    ops = [op for case in jc.CASES.values() for op in case] * 3
    jc.compare(lambda: SqlDeviceStore(postgres.create_database(), create=True), tmp_path / "j", ops)


@pytest.fixture
def store(postgres: PostgresServer) -> Iterator[SqlDeviceStore]:
    with SqlDeviceStore(postgres.create_database(), create=True, statement_timeout_s=0.3,
                        connect_timeout_s=2) as s:
        yield s


def _database(store: SqlDeviceStore) -> str:
    return store.display_url.rsplit("/", 1)[1]


def test_locked_table_keeps_records_then_each_applied_once(postgres: PostgresServer, store: SqlDeviceStore,
                                                           tmp_path: Path) -> None:
    device_id = jc.seed(store)[0]
    journal = Journal(tmp_path / "j", store, owner="t", batch=3)
    for i in range(8):
        journal.decision(jc.tagged(device_id, f"r-{i}"), jc.SEEN_FIRST)
        journal.session(device_id, jc.CTX, 20, "s", NOW)
    pending = journal.status().pending_bytes
    with postgres.connect(_database(store)) as blocker:
        blocker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StoreError, match="statement timeout"):
            journal.drain()
        blocker.rollback()
    assert journal.status().pending_bytes == pending
    assert jc.count(store) == 0  # the decision of the failed batch was rolled back with its session
    assert journal.drain() == 16
    assert journal.drain() == 0
    assert jc.reasons_logged(store) == [f"r-{i}" for i in range(8)] and jc.count(store, sessions) == 1
    journal.close()


def test_database_refusing_connections_then_back(postgres: PostgresServer, store: SqlDeviceStore,
                                                 tmp_path: Path) -> None:
    device_id = jc.seed(store)[0]
    journal = Journal(tmp_path / "j", store, owner="t", report=lambda _m: None)
    journal.decision(jc.tagged(device_id, "r-0"))
    assert journal.drain() == 1
    for i in range(1, 6):
        journal.decision(jc.tagged(device_id, f"r-{i}"))
    name = _database(store)
    with postgres.connect(autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            with pytest.raises(StoreError):
                journal.drain()
            assert journal.status().pending_records == 5
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert journal.drain() == 5
    assert jc.reasons_logged(store) == [f"r-{i}" for i in range(6)]
    journal.close()


def _pg_ctl(server: PostgresServer, action: str) -> None:
    data = server.base_dir / "data"
    command = [str(find_bin_dir() / "pg_ctl"), action, "-D", str(data), "-w", "-t", "30"]
    if action == "stop":
        command += ["-m", "fast"]
    else:
        command += ["-l", str(server.base_dir / "server.log"), "-o",
                    f"-c listen_addresses=127.0.0.1 -k {server.base_dir / 'sock'} -p {server.port} -c fsync=off"]
    _run(command, _server_user(), server.base_dir, timeout=60)


def test_server_stopped_while_the_drainer_runs(tmp_path: Path) -> None:
    """A private cluster (the shared one must stay up): stopped with records pending, started again."""
    with running_postgres() as server:
        reports: list[str] = []
        with SqlDeviceStore(server.create_database(), create=True, connect_timeout_s=2) as store:
            device_id = jc.seed(store)[0]
            journal = Journal(tmp_path / "j", store, owner="t", report=reports.append)
            journal.start()
            journal.decision(jc.tagged(device_id, "r-0"))
            jc.wait_for(lambda: jc.count(store) == 1)
            _pg_ctl(server, "stop")
            try:
                for i in range(1, 21):
                    journal.decision(jc.tagged(device_id, f"r-{i}"), jc.SEEN_FIRST)
                    journal.session(device_id, jc.CTX, 20 + i % 2, "s", NOW)
                jc.wait_for(lambda: journal.status().last_error is not None)
                assert journal.status().pending_records == 40
            finally:
                _pg_ctl(server, "start")
            jc.wait_for(lambda: jc.count(store) == 21, timeout=20)
            journal.close()
            assert jc.reasons_logged(store) == [f"r-{i}" for i in range(21)]
            failures = [r for r in reports if "failed" in r]
            # once per distinct problem (a dropped connection, then a refused one), never once per retry
            assert 1 <= len(failures) <= 3 and len(set(failures)) == len(failures), reports
            assert jc.count(store, sessions) == 1


def test_sigkilled_writer_mid_drain_is_applied_once(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.create_database()
    directory = tmp_path / "j"
    with SqlDeviceStore(url, create=True) as store:
        device_id = jc.seed(store)[0]
        n = 1500
        proc = jc.child(url, directory, device_id, n, "thread", batch=1)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            jc.wait_for(lambda: jc.count(store) > 0)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
        applied = jc.count(store)
        assert 0 < applied < n
        assert drain_orphans(directory, store, lambda _m: None) == n - applied
        assert jc.reasons_logged(store) == [f"r-{i}" for i in range(n)]
        assert list(directory.glob("journal-*")) == []


def test_two_drainers_racing_on_one_file_apply_each_record_once(postgres: PostgresServer, tmp_path: Path) -> None:
    """The flock keeps drainers apart; should two meet anyway, the progress compare-and-set does."""
    url = postgres.create_database()
    directory = tmp_path / "j"
    directory.mkdir()
    orphan = directory / "journal-deadhost-1-1-0.jsonl"
    with SqlDeviceStore(url, create=True) as store, SqlDeviceStore(url) as other:
        device_id = jc.seed(store)[0]
        orphan.write_bytes(b"".join(journal_module.encode_decision(jc.tagged(device_id, f"r-{i}"), None, None, None)
                                    for i in range(600)))
        barrier = threading.Barrier(2)
        results: list[int] = []

        def drain(s: SqlDeviceStore) -> None:
            applier = journal_module._Applier(directory, s, lambda _m: None, batch=7)
            fd = os.open(orphan, os.O_RDONLY)
            try:
                barrier.wait()
                results.append(applier.drain_file(fd, orphan.name, None, final=True)[0])
            finally:
                os.close(fd)

        threads = [threading.Thread(target=drain, args=(s,)) for s in (store, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(results) == 600 and len(results) == 2
        assert jc.reasons_logged(store) == [f"r-{i}" for i in range(600)]
