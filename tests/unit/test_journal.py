"""trustport.store.journal on SQLite: same rows as the direct writes, exactly once through database outages, crashes
(SIGKILL), concurrent writers, torn and hostile lines, deleted devices, rotation and write failures."""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from policy.errors import StoreError
from policy.model import NetworkContext
from tests.support import journal_cases as jc
from tests.support.store_contract import NOW
from trustport.store import journal as journal_module
from trustport.store.journal import Journal, JournalError, drain_orphans, journal_status, wait_for_journal
from trustport.store.schema import journal_progress, sessions
from trustport.store.sql import SqlDeviceStore


class Registry:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.count = 0

    def url(self) -> str:
        self.count += 1
        return f"sqlite:///{self.tmp_path / f'registry-{self.count}.db'}"

    def store(self, url: str | None = None, **kw: Any) -> SqlDeviceStore:
        return SqlDeviceStore(url or self.url(), create=True, **kw)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path)


@pytest.fixture
def store(registry: Registry) -> Iterator[SqlDeviceStore]:
    with registry.store() as s:
        yield s


@pytest.fixture
def device_id(store: SqlDeviceStore) -> int:
    return jc.seed(store)[0]


class Reports(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def journal(tmp_path: Path, store: SqlDeviceStore, reports: Reports) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal", store, owner="test", report=reports)
    yield j
    j.close()


wait_for = jc.wait_for


def journal_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("journal-*.jsonl"))


def rejected(directory: Path) -> list[dict[str, Any]]:
    path = directory / "rejected.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def progress_rows(store: SqlDeviceStore) -> list[tuple[Any, ...]]:
    with store.transaction("reading progress") as conn:
        return [tuple(r) for r in conn.execute(sa.select(journal_progress.c.name, journal_progress.c["offset"],
                                                         journal_progress.c.records))]


# -- the two paths agree -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(jc.CASES))
def test_journal_writes_the_same_rows_as_the_direct_calls(registry: Registry, tmp_path: Path, case: str) -> None:
    jc.compare(registry.store, tmp_path / "journal", jc.CASES[case])


def test_one_batch_holds_many_records_and_matches_too(registry: Registry, tmp_path: Path) -> None:
    ops = [op for case in jc.CASES.values() for op in case] * 3
    jc.compare(registry.store, tmp_path / "journal", ops)


def test_naive_time_is_refused_at_once_like_the_direct_call(journal: Journal, device_id: int,
                                                            store: SqlDeviceStore) -> None:
    naive = jc.tagged(device_id, "naive")
    naive = type(naive)(**{**naive.__dict__, "time": NOW.replace(tzinfo=None)})
    with pytest.raises(ValueError, match="timezone-aware"):
        store.append_decision(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        journal.decision(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        journal.session(device_id, jc.CTX, 20, "s", NOW.replace(tzinfo=None))
    assert journal.status().pending_bytes == 0


def test_files_are_private_and_named_by_host_pid_start_seq(journal: Journal) -> None:
    (name,) = journal.status().files
    assert name.startswith("journal-") and f"-{os.getpid()}-" in name and name.endswith("-0.jsonl")
    assert (journal.directory.stat().st_mode & 0o777) == 0o700
    assert ((journal.directory / name).stat().st_mode & 0o777) == 0o600
    assert not [p for p in journal.directory.iterdir() if p.name.startswith(".")]  # the temporary name is gone


# -- the database is unusable ----------------------------------------------------------------------------------------


def test_locked_database_keeps_records_and_applies_each_once_afterwards(registry: Registry, tmp_path: Path) -> None:
    url = registry.url()
    with registry.store(url, statement_timeout_s=0.2) as store:
        device_id = jc.seed(store)[0]
        journal = Journal(tmp_path / "j", store, owner="t", batch=4)
        for i in range(10):
            journal.decision(jc.tagged(device_id, f"r-{i}"), jc.SEEN_FIRST)
            journal.session(device_id, jc.CTX, 20, "s", NOW)
        before = journal.status()
        lock = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked"):
                journal.drain()
            assert journal.status().pending_bytes == before.pending_bytes  # nothing advanced
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert jc.count(store) == 0 and jc.count(store, sessions) == 0  # nothing half-applied
        assert journal.drain() == 20
        assert journal.drain() == 0
        assert jc.reasons_logged(store) == [f"r-{i}" for i in range(10)]
        assert jc.count(store, sessions) == 1
        journal.close()


def test_drainer_thread_backs_off_reports_once_and_catches_up(registry: Registry, tmp_path: Path) -> None:
    url = registry.url()
    reports = Reports()
    with registry.store(url, statement_timeout_s=0.05) as store:
        device_id = jc.seed(store)[0]
        journal = Journal(tmp_path / "j", store, owner="t", report=reports)
        journal.start()
        journal.decision(jc.tagged(device_id, "warm-up"))
        wait_for(lambda: jc.count(store) == 1)
        lock = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            for i in range(5):
                journal.decision(jc.tagged(device_id, f"r-{i}"))
                time.sleep(0.3)  # appends during the outage do not cut the backoff short or add reports
            assert journal.status().last_error is not None
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        wait_for(lambda: jc.count(store) == 6)
        failures = [r for r in reports if "failed" in r]
        assert len(failures) == 1, reports  # one report per problem, not one per retry
        wait_for(lambda: any("draining again" in r for r in reports))
        assert journal.status().last_error is None
        journal.close()
        assert jc.reasons_logged(store) == ["warm-up"] + [f"r-{i}" for i in range(5)]


def test_drainer_thread_applies_promptly(journal: Journal, store: SqlDeviceStore, device_id: int) -> None:
    journal.start()
    time.sleep(0.2)  # the first drain (orphans) is done
    start = time.monotonic()
    journal.decision(jc.tagged(device_id, "prompt"))
    wait_for(lambda: jc.count(store) == 1, timeout=2)
    assert time.monotonic() - start < 0.5  # woken by the append, not by a one-second poll


# -- crashes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sleep", "thread"])
def test_sigkilled_writer_is_applied_once_by_another_process(registry: Registry, tmp_path: Path, mode: str) -> None:
    url = registry.url()
    directory = tmp_path / "j"
    with registry.store(url) as store:
        device_id = jc.seed(store)[0]
        n = 1500
        proc = jc.child(url, directory, device_id, n, mode, batch=1)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            if mode == "thread":  # killed while its drainer is at it
                wait_for(lambda: jc.count(store) > 0)
            (name,) = journal_files(directory)
            assert drain_orphans(directory, store, lambda _m: None) == 0  # alive: its file is left alone
            assert journal_files(directory) == [name]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
        applied_by_child = jc.count(store)
        if mode == "thread":
            assert 0 < applied_by_child < n, "the kill was meant to land mid-drain"
        reports = Reports()
        assert drain_orphans(directory, store, reports) == n - applied_by_child
        assert jc.reasons_logged(store) == [f"r-{i}" for i in range(n)]  # all, once, in order
        assert journal_files(directory) == []
        assert progress_rows(store) == []
        assert any(name in r and "removed" in r for r in reports)


def test_committed_then_died_before_anything_else(registry: Registry, tmp_path: Path) -> None:
    url = registry.url()
    directory = tmp_path / "j"
    with registry.store(url) as store:
        device_id = jc.seed(store)[0]
        proc = jc.child(url, directory, device_id, 50, "drain")
        out, _ = proc.communicate(timeout=60)
        assert out.strip() == "drained"
        (name,) = journal_files(directory)
        assert progress_rows(store) == [(name, (directory / name).stat().st_size, 50)]
        # a new process: the progress row, committed with the records, says they are applied
        journal = Journal(directory, store, owner="next")
        assert journal.drain() == 0
        journal.close()
        assert jc.count(store) == 50
        assert journal_files(directory) == []


def test_stale_offset_cannot_apply_a_batch_twice(journal: Journal, store: SqlDeviceStore, device_id: int) -> None:
    for i in range(7):
        journal.decision(jc.tagged(device_id, f"r-{i}"))
    assert journal.drain() == 7
    own = journal._files[-1]
    # a drainer that believes nothing was applied (it died between commit and noting the offset)
    taken, offset = journal._applier.drain_file(own.read_fd, own.name, 0, final=False)
    assert (taken, offset) == (0, os.fstat(own.read_fd).st_size)
    own.offset = 0
    journal.decision(jc.tagged(device_id, "r-7"))
    assert journal.drain() == 1
    assert jc.reasons_logged(store) == [f"r-{i}" for i in range(8)]


# -- concurrency -----------------------------------------------------------------------------------------------------


def test_threads_appending_while_draining_each_applied_once_in_order(journal: Journal, store: SqlDeviceStore,
                                                                     device_id: int) -> None:
    journal.start()
    threads, per_thread = 6, 300

    def writer(t: int) -> None:
        for i in range(per_thread):
            journal.decision(jc.tagged(device_id, f"{t}:{i}"), jc.SEEN_FIRST)
            journal.session(device_id, NetworkContext(nas_ip="192.0.2.1", calling_station_id=f"02:00:00:00:01:{t:02x}"),
                            20 + i % 2, "s", NOW)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wait_for(lambda: jc.count(store) == threads * per_thread)
    journal.close()
    logged = jc.reasons_logged(store)
    assert len(logged) == len(set(logged)) == threads * per_thread
    for t in range(threads):
        assert [int(r.split(":")[1]) for r in logged if r.startswith(f"{t}:")] == list(range(per_thread))
    with store.transaction("sessions") as conn:
        vlans = dict(conn.execute(sa.select(sessions.c.calling_station_id, sessions.c.vlan)).all())
    assert vlans == {f"02-00-00-00-01-{t:02X}": 20 + (per_thread - 1) % 2 for t in range(threads)}


# -- hostile and broken input --------------------------------------------------------------------------------------


def raw_append(journal: Journal, data: bytes) -> None:
    """Bytes written into the journal's current file behind its back (corruption, a torn write)."""
    path = journal.directory / journal.status().files[-1]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    journal._size += len(data)


CORRUPT = [b"not json\n", b"{\"r\": \"decision\"}\n", b"[1, 2]\n", b"\xff\xfe\n", b"[" * 100000 + b"\n",
           b"{\"r\": \"rm -rf\"}\n", b"\n",
           b'{"r":"decision","time":"2026-11-27T03:30:15","device_id":1,"device":"x","outcome":"accept",'
           b'"reasons":[]}\n',  # naive time
           b'{"r":"decision","time":"2026-11-27T03:30:15+00:00","device_id":true,"device":"x","outcome":"accept",'
           b'"reasons":[]}\n',  # a bool is not a device id
           b'{"r":"decision","time":"2026-11-27T03:30:15+00:00","device_id":1,"device":"x","outcome":"allow",'
           b'"reasons":[]}\n']


def test_corrupt_lines_are_set_aside_and_do_not_block(journal: Journal, store: SqlDeviceStore, device_id: int,
                                                      reports: Reports) -> None:
    journal.decision(jc.tagged(device_id, "before"))
    for line in CORRUPT:
        raw_append(journal, line)
    journal.decision(jc.tagged(device_id, "after"))
    assert journal.drain() == len(CORRUPT) + 2
    assert jc.reasons_logged(store) == ["before", "after"]
    kept = rejected(journal.directory)
    assert len(kept) == len(CORRUPT)
    assert all(k["error"] and k["journal"] == journal.status().files[-1] for k in kept)
    assert len([r for r in reports if "rejected" in r]) == len(CORRUPT)
    assert journal.status().pending_bytes == 0
    assert journal.drain() == 0 and len(rejected(journal.directory)) == len(CORRUPT)


def test_half_written_line_of_a_live_writer_waits_for_its_end(journal: Journal, store: SqlDeviceStore,
                                                              device_id: int) -> None:
    line = journal_module.encode_decision(jc.tagged(device_id, "torn"), None, None, None)
    journal.decision(jc.tagged(device_id, "first"))
    raw_append(journal, line[:40])
    assert journal.drain() == 1
    assert journal.status().pending_bytes == 40
    assert rejected(journal.directory) == []
    raw_append(journal, line[40:])
    assert journal.drain() == 1
    assert jc.reasons_logged(store) == ["first", "torn"]


def test_dead_writers_unterminated_last_line_is_reported_and_skipped(store: SqlDeviceStore, device_id: int,
                                                                     tmp_path: Path) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    orphan = directory / "journal-deadhost-999999-1-0.jsonl"
    lines = [journal_module.encode_decision(jc.tagged(device_id, f"r-{i}"), None, None, None) for i in range(3)]
    orphan.write_bytes(b"".join(lines) + lines[0][:25])
    reports = Reports()
    assert drain_orphans(directory, store, reports) == 4
    assert jc.reasons_logged(store) == ["r-0", "r-1", "r-2"]
    (kept,) = rejected(directory)
    assert "unterminated" in kept["error"] and kept["record"] == lines[0][:25].decode()
    assert any("unterminated" in r for r in reports)
    assert not orphan.exists() and progress_rows(store) == []


def test_record_for_a_deleted_device_is_rejected_the_rest_applied(journal: Journal, store: SqlDeviceStore,
                                                                  device_id: int) -> None:
    doomed, kept = device_id, device_id + 1
    journal.decision(jc.tagged(kept, "a"), jc.SEEN_FIRST)
    journal.decision(jc.tagged(doomed, "gone"), jc.SEEN_FIRST)  # last seen: DeviceNotFound
    journal.session(doomed, jc.CTX, 20, "s", NOW)  # sessions.device_id: foreign key
    journal.decision(jc.tagged(kept, "b"), jc.SEEN_FIRST)
    with store.transaction("deleting a device") as conn:
        conn.execute(sa.text("DELETE FROM devices WHERE id = :id"), {"id": doomed})
    assert journal.drain() == 4
    assert jc.reasons_logged(store) == ["a", "b"]
    errors = [k["error"] for k in rejected(journal.directory)]
    assert len(errors) == 2 and "DeviceNotFound" in errors[0] and "FOREIGN KEY" in errors[1]
    assert jc.count(store, sessions) == 0
    assert journal.status().pending_bytes == 0


def test_rotation_applies_every_file_and_removes_the_finished_ones(tmp_path: Path, store: SqlDeviceStore,
                                                                   device_id: int) -> None:
    journal = Journal(tmp_path / "j", store, owner="t", max_bytes=2000, batch=3)
    for i in range(40):
        journal.decision(jc.tagged(device_id, f"r-{i}"))
    files = journal.status().files
    assert len(files) > 5 and journal_files(journal.directory) == sorted(files)
    assert journal.drain() == 40
    assert jc.reasons_logged(store) == [f"r-{i}" for i in range(40)]
    assert journal.status().files == (files[-1],) == tuple(journal_files(journal.directory))
    assert [row[0] for row in progress_rows(store)] == [files[-1]]  # the rows of removed files are gone
    journal.close()
    assert journal_files(journal.directory) == []  # fully applied and no longer written


def test_another_live_journal_in_the_same_process_is_left_alone(tmp_path: Path, store: SqlDeviceStore,
                                                                device_id: int) -> None:
    first = Journal(tmp_path / "j", store, owner="a")
    second = Journal(tmp_path / "j", store, owner="b")
    second.decision(jc.tagged(device_id, "second's"))
    assert first.drain() == 0
    assert jc.count(store) == 0
    second.close(timeout=0.1)  # applies its own; nothing left for anybody
    assert jc.count(store) == 1
    first.close()


def test_unfinished_file_left_by_close_is_an_orphan_for_the_next_process(registry: Registry, tmp_path: Path) -> None:
    url = registry.url()
    with registry.store(url, statement_timeout_s=0.1) as store:
        device_id = jc.seed(store)[0]
        journal = Journal(tmp_path / "j", store, owner="t", report=lambda _m: None)
        journal.decision(jc.tagged(device_id, "late"))
        lock = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        journal.close(timeout=1)  # the last drain fails: the file stays, unlocked
        lock.execute("ROLLBACK")
        lock.close()
        (name,) = journal_files(tmp_path / "j")
        status = journal_status(tmp_path / "j", store)
        assert status.files == (name,) and status.pending_records == 1
        assert drain_orphans(tmp_path / "j", store) == 1
        assert jc.reasons_logged(store) == ["late"]
        with pytest.raises(JournalError, match="closed"):
            journal.decision(jc.tagged(device_id, "after close"))


# -- write failures ------------------------------------------------------------------------------------------------


def test_directory_that_cannot_be_made_raises_journal_error(tmp_path: Path, store: SqlDeviceStore) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JournalError, match=re.escape(str(blocker / "j"))):
        Journal(blocker / "j", store, owner="t")


@pytest.mark.parametrize("failure", ["enospc", "short", "eio-on-sync"])
def test_write_failure_raises_and_leaves_no_torn_line(journal: Journal, store: SqlDeviceStore, device_id: int,
                                                      monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    journal.decision(jc.tagged(device_id, "ok-1"))
    real_write = os.write
    name = journal.status().files[-1]

    def broken_write(fd: int, data: bytes) -> int:
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data[: len(data) // 2] if failure == "short" else data)

    def broken_sync(_fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_module.os, "write", broken_write)
    if failure == "eio-on-sync":
        monkeypatch.setattr(journal, "_sync_each", True)
        monkeypatch.setattr(journal_module.os, "fdatasync", broken_sync)
    with pytest.raises(JournalError, match=re.escape(name)) as raised:
        journal.decision(jc.tagged(device_id, "lost"))
    assert isinstance(raised.value, StoreError)  # the hook's fail-closed path catches StoreError
    monkeypatch.undo()
    journal.decision(jc.tagged(device_id, "ok-2"))
    assert journal.drain() == 2
    assert jc.reasons_logged(store) == ["ok-1", "ok-2"]  # the failed record is not half there
    assert rejected(journal.directory) == []


def test_write_to_a_file_whose_descriptor_is_gone_raises(journal: Journal, device_id: int) -> None:
    own = journal._files[-1]
    os.close(own.write_fd)
    try:
        with pytest.raises(JournalError, match=re.escape(own.name)):
            journal.decision(jc.tagged(device_id, "x"))
    finally:
        own.write_fd = os.open(journal.directory / own.name, os.O_WRONLY | os.O_APPEND)
        fcntl.flock(own.write_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_rejected_file_unwritable_stops_without_advancing(journal: Journal, store: SqlDeviceStore,
                                                          device_id: int) -> None:
    raw_append(journal, b"garbage\n")
    (journal.directory / "rejected.jsonl").mkdir()  # cannot be opened for appending
    with pytest.raises(JournalError, match=r"rejected\.jsonl"):
        journal.drain()
    assert journal.status().pending_bytes == len(b"garbage\n")
    (journal.directory / "rejected.jsonl").rmdir()
    assert journal.drain() == 1


def test_status_counts_pending_records(journal: Journal, device_id: int) -> None:
    for i in range(3):
        journal.decision(jc.tagged(device_id, f"r-{i}"))
    journal.session(device_id, jc.CTX, 20, "s", NOW)
    journal.session(device_id, NetworkContext(nas_ip="192.0.2.1"), 20, "s", NOW)  # no MAC: nothing to record
    status = journal.status()
    assert status.pending_records == 4 and status.pending_bytes > 0 and status.last_error is None
    journal.drain()
    assert journal.status().pending_records == 0


def test_orphan_removed_by_another_drainer_between_open_and_lock_is_not_applied_again(
        store: SqlDeviceStore, device_id: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    orphan = directory / "journal-deadhost-999999-1-0.jsonl"
    orphan.write_bytes(b"".join(journal_module.encode_decision(jc.tagged(device_id, f"r-{i}"), None, None, None)
                                for i in range(3)))
    real_flock = fcntl.flock
    raced = []

    def flock_after_the_other_drainer(fd: int, operation: int) -> None:
        if not raced:  # the other drainer applies and removes the file while we hold our descriptor of it
            raced.append(True)
            assert drain_orphans(directory, store) == 3
        real_flock(fd, operation)

    monkeypatch.setattr(journal_module.fcntl, "flock", flock_after_the_other_drainer)
    assert drain_orphans(directory, store) == 0
    assert raced and jc.reasons_logged(store) == ["r-0", "r-1", "r-2"]


def test_backoff_is_not_cut_short_by_appends(registry: Registry, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = registry.url()
    with registry.store(url, statement_timeout_s=0.02) as store:
        device_id = jc.seed(store)[0]
        journal = Journal(tmp_path / "j", store, owner="t", report=lambda _m: None)
        attempts = []
        real_drain = journal._drain

        def counted(*, orphans: bool) -> int:
            attempts.append(time.monotonic())
            return real_drain(orphans=orphans)

        monkeypatch.setattr(journal, "_drain", counted)
        lock = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            journal.start()
            end, appended = time.monotonic() + 2.0, 0
            while time.monotonic() < end:  # ~100 appends during a 2 s outage
                journal.decision(jc.tagged(device_id, f"r-{appended}"))
                appended += 1
                time.sleep(0.02)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        # 0.05, 0.1, 0.2, 0.4, 0.8, 1.0 s apart: about 7 attempts in 2 s, not one per append
        assert 3 <= len(attempts) <= 9, len(attempts)
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert max(gaps) < 1.5  # capped at ~1 s (plus the statement timeout)
        wait_for(lambda: jc.count(store) == appended)
        journal.close()
        assert jc.reasons_logged(store) == [f"r-{i}" for i in range(appended)]


def test_a_dead_writers_files_are_applied_in_the_order_it_wrote_them(store: SqlDeviceStore, device_id: int,
                                                                      tmp_path: Path) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    for seq, tag in ((10, "third"), (2, "second"), (1, "first")):  # 10 sorts before 2 as text
        (directory / f"journal-deadhost-999999-1-{seq}.jsonl").write_bytes(
            journal_module.encode_decision(jc.tagged(device_id, tag), None, None, None))
    assert drain_orphans(directory, store) == 3
    assert jc.reasons_logged(store) == ["first", "second", "third"]


def test_stale_drainer_does_not_set_a_rejected_record_aside_twice(journal: Journal, store: SqlDeviceStore,
                                                                  device_id: int) -> None:
    journal.decision(jc.tagged(device_id + 1, "gone"), jc.SEEN_FIRST)
    with store.transaction("deleting a device") as conn:
        conn.execute(sa.text("DELETE FROM devices WHERE id = :id"), {"id": device_id + 1})
    assert journal.drain() == 1 and len(rejected(journal.directory)) == 1
    own = journal._files[-1]
    assert journal._applier.drain_file(own.read_fd, own.name, 0, final=False)[0] == 0
    assert len(rejected(journal.directory)) == 1


def test_wait_for_journal_returns_once_another_processs_drainer_applied_it(registry: Registry,
                                                                           tmp_path: Path) -> None:
    url = registry.url()
    directory = tmp_path / "j"
    with registry.store(url) as store:
        device_id = jc.seed(store)[0]
        proc = jc.child(url, directory, device_id, 300, "thread")
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            wait_for_journal(directory, store, 20)
            assert jc.count(store) == 300  # everything journaled before the call is readable now
        finally:
            proc.kill()
            proc.wait(10)


def test_wait_for_journal_times_out_when_nobody_drains(journal: Journal, store: SqlDeviceStore,
                                                       device_id: int) -> None:
    journal.decision(jc.tagged(device_id, "r"))
    start = time.monotonic()
    with pytest.raises(JournalError, match=r"\(1 record\(s\)\) after 0\.2 s"):
        wait_for_journal(journal.directory, store, 0.2)
    assert time.monotonic() - start < 1
    journal.drain()
    wait_for_journal(journal.directory, store, 0.2)


def test_a_batch_of_sessions_is_the_same_as_one_after_the_other(tmp_path: Path) -> None:
    """The drainer's batch (authenticated_many_in) against the same calls one by one: the same MAC twice, a new
    session then its refresh, a NAS known only by identifier (NULL address), a VLAN change that clears the
    read-back, an Acct-Session-Id that a later Accept without one keeps."""
    from datetime import timedelta

    from sqlalchemy import select

    from policy.model import NetworkContext
    from tests.support.store_contract import NOW
    from trustport.store.schema import sessions as sessions_table
    from trustport.store.sessions import SqlSessionStore, normalise_mac

    a = NetworkContext(nas_ip="192.0.2.1", nas_port="1", calling_station_id="02:00:00:00:00:01")
    a_named = NetworkContext(nas_identifier="sw-a", nas_port="1", calling_station_id="02-00-00-00-00-01")
    b = NetworkContext(nas_ip="192.0.2.2", nas_port="7", calling_station_id="02:00:00:00:00:02")
    items = [
        (None, a, 30, "production", NOW, "acct-1"),
        (None, b, 30, "production", NOW, None),
        (None, a, 30, "production", NOW + timedelta(seconds=1), None),  # keeps acct-1
        (None, a_named, 999, "quarantine", NOW + timedelta(seconds=2), None),  # another place: a new session
        (None, a, 999, "quarantine", NOW + timedelta(seconds=3), "acct-2"),  # VLAN changed: read-back cleared
        (None, NetworkContext(nas_ip="192.0.2.1"), 30, None, NOW, None),  # no MAC: nothing
    ]
    rows = []
    for batched in (False, True):
        with SqlDeviceStore(f"sqlite:///{tmp_path / f'r{batched}.db'}", create=True) as store:
            store.ensure_schema()
            with store.transaction("seed") as conn:  # a session the switch read back already
                SqlSessionStore.authenticated_many_in(conn, [items[0]])
                conn.execute(sessions_table.update().values(vlan_read_back_at=NOW))
            with store.transaction("apply") as conn:
                if batched:
                    SqlSessionStore.authenticated_many_in(conn, items)
                else:
                    for item in items:
                        SqlSessionStore.authenticated_in(conn, *item)
                rows.append([tuple(r) for r in conn.execute(select(sessions_table).order_by(sessions_table.c.id))])
                # and what the store's own query (_same_place) finds at each place afterwards
                found = {name: SqlSessionStore._active(conn, ctx, normalise_mac(ctx.calling_station_id or ""))
                         for name, ctx in (("a", a), ("a_named", a_named), ("b", b))}
                assert {n: (r.vlan, r.acct_session_id, r.vlan_read_back_at) for n, r in found.items() if r} == {
                    "a": (999, "acct-2", None), "a_named": (999, None, None), "b": (30, None, None)}
    assert rows[0] == rows[1]
    assert len(rows[0]) == 3
