"""A durable local journal for what the RADIUS hook writes, so the authentication path never waits on the database.

The hook appends one JSON line per record (a decision with its last-seen facts, or an opened session) to a file
of its own with one ``os.write``; a background drainer applies the lines to the registry with exactly the SQL of
``SqlDeviceStore.append_decision`` and ``SqlSessionStore.authenticated`` (their ``*_in`` halves), in batches, and
records how far it got in ``journal_progress`` in the same transaction: a record is applied exactly once, however
the process dies. The progress update is a compare-and-set on the previous offset, so two drainers that meet on a
file cannot both apply a batch.

Files are ``journal-<host>-<pid>-<start_ns>-<seq>.jsonl``. Their writer holds ``flock(LOCK_EX)`` on each until it
is applied and removed; a file whose lock can be taken belongs to a dead process (radiusd crashed) and any drainer
applies it and removes it. A new file is created under a dot-name, locked, then renamed, so no drainer ever sees a
live file unlocked. A line the database refuses for a reason of its own (its device was deleted since, a
constraint) goes to ``rejected.jsonl`` with the error instead of blocking everything behind it; an unusable
database stops the drainer with nothing advanced.

Durability: a record is in the kernel's page cache once ``decision``/``session`` returns, so it survives a crash
of radiusd (``kill -9``, a segfault); it survives losing the host (power, kernel panic) only with ``sync_each``
(one ``fdatasync`` per record).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from policy.errors import DeviceNotFound, StoreError
from policy.model import AuditNote, CertificateFacts, CertKind, DecisionLogEntry, NetworkContext
from trustport.store import changes
from trustport.store.journal_records import (
    DecisionRecord,
    Record,
    SessionRecord,
    decode,
    encode_decision,
    encode_session,
)
from trustport.store.schema import journal_progress
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import Appended, SqlDeviceStore

__all__ = ["Journal", "JournalError", "JournalStatus", "decode", "drain_orphans", "encode_decision",
           "encode_session", "journal_status", "wait_for_journal"]

MAX_BYTES: Final = 16 * 1024 * 1024
REJECTED: Final = "rejected.jsonl"
_NAME_RE: Final = re.compile(r"(journal-.+-\d+-\d+)-(\d+)\.jsonl")
_READ_CHUNK: Final = 1024 * 1024
_COUNT_LIMIT: Final = 4 * 1024 * 1024  # pending records are counted (a scan for b"\n") up to this many bytes
_ORPHAN_SCAN_S: Final = 1.0
_COALESCE_S: Final = 0.02  # after a wake-up, let a burst of appends land before one transaction takes them
_BACKOFF_S: Final = (0.05, 1.0)
_OFFSET: Final = journal_progress.c["offset"]
_log = logging.getLogger("trustport.journal")


class JournalError(StoreError):
    """The journal cannot be written or read (the hook then fails closed: it rejects)."""


@dataclass(frozen=True)
class JournalStatus:
    files: tuple[str, ...]
    pending_bytes: int  # not yet applied (all of a file's bytes when its progress is unknown)
    pending_records: int | None  # None: not counted (too much pending to scan cheaply)
    last_error: str | None = None


class _Conflict(Exception):
    """Another drainer advanced the file's progress first: re-read it and go on from there."""


def _record_fault(error: BaseException) -> bool:
    """The database refused this record for a reason of the record's (not because it is unusable)."""
    if isinstance(error, DeviceNotFound | ValueError | TypeError):
        return True
    cause = error.__cause__ if isinstance(error, StoreError) else error
    if isinstance(cause, exc.IntegrityError | exc.DataError):
        return True
    # A value a bind processor refused (SQLAlchemy wraps it before the driver sees it).
    return (isinstance(cause, exc.StatementError) and not isinstance(cause, exc.DBAPIError)
            and isinstance(cause.orig, ValueError | TypeError))


# -- applying ------------------------------------------------------------------------------------------------------


def _upsert_absent(conn: Connection, name: str, now: datetime) -> None:
    values = {"name": name, "offset": 0, "records": 0, "updated_at": now}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(journal_progress).values(**values).on_conflict_do_nothing(index_elements=["name"]))
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(journal_progress).values(**values).on_conflict_do_nothing(index_elements=["name"]))


class _Applier:
    """Applies journal files to the registry; shared by a ``Journal``'s drainer and ``drain_orphans``."""

    def __init__(self, directory: Path, store: SqlDeviceStore, report: Callable[[str], None], batch: int) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.directory = directory
        self.store = store
        self.report = report
        self.batch = batch

    def progress(self, name: str) -> int:
        with self.store.transaction(f"reading the progress of journal {name}") as conn:
            _upsert_absent(conn, name, datetime.now(UTC))
            offset = conn.execute(sa.select(_OFFSET).where(journal_progress.c.name == name)).scalar_one()
        return int(offset)

    def forget(self, name: str) -> None:
        """Delete the progress row of a file already unlinked (unlinked first: a row gone with the file still there
        would apply it again from the start)."""
        with self.store.transaction(f"removing the progress of journal {name}") as conn:
            conn.execute(journal_progress.delete().where(journal_progress.c.name == name))

    def _apply(self, conn: Connection, records: list[Record]) -> None:
        """A batch: its decisions and its sessions each in journal order, a few statements per table for the whole
        batch (the two kinds touch different tables). A session decided on a generation older than the registry's
        is checked for a change of its device since (``reevaluate_if_changed_since``)."""
        decisions: list[Appended] = []
        opened: list[SessionRecord] = []
        for record in records:
            if isinstance(record, DecisionRecord):
                decisions.append((record.entry, record.seen, record.audit, record.kind))
            else:
                opened.append(record)
        if decisions:
            self.store.append_decisions_in(conn, decisions)
        if not opened:
            return
        SqlSessionStore.authenticated_many_in(conn, [(r.device_id, r.context, r.vlan, r.segment, r.now,
                                                      r.acct_session_id) for r in opened])
        newest = changes.generation(conn)
        for r in opened:
            if r.device_id is not None and 0 <= r.decided_at < newest:
                changes.reevaluate_if_changed_since(conn, r.device_id, r.decided_at, r.now)

    @staticmethod
    def _advance(conn: Connection, name: str, start: int, end: int, records: int) -> None:
        result = conn.execute(journal_progress.update()
                              .where(journal_progress.c.name == name, journal_progress.c["offset"] == start)
                              .values(offset=end, records=journal_progress.c.records + records,
                                      updated_at=datetime.now(UTC)))
        if result.rowcount != 1:
            raise _Conflict(name)

    def _commit(self, name: str, start: int, end: int, records: list[Record], taken: int) -> None:
        with self.store.transaction(f"applying journal {name} at offset {start}") as conn:
            # The compare-and-set first: a drainer that lost the race stops before applying (or setting aside)
            # anything, and on PostgreSQL the row lock it takes keeps a second one waiting until this commits.
            self._advance(conn, name, start, end, taken)
            self._apply(conn, records)

    def reject(self, name: str, offset: int, line: bytes, error: BaseException | str) -> None:
        """Keep a record the database refused (or that does not decode) in ``rejected.jsonl``, and say so."""
        why = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        text = line.decode("utf-8", "replace").rstrip("\n")
        entry = json.dumps({"journal": name, "offset": offset, "error": why, "record": text}, ensure_ascii=True)
        path = self.directory / REJECTED
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (entry + "\n").encode("ascii"))
            finally:
                os.close(fd)
        except OSError as e:
            raise JournalError(f"cannot write {path}: {e.strerror or e}; the record at offset {offset} of journal "
                               f"{name} stays there until it can be set aside") from e
        self.report(f"journal {name}: record at offset {offset} rejected ({why[:300]}); kept in {path}")

    def drain_file(self, fd: int, name: str, offset: int | None, *, final: bool) -> tuple[int, int]:
        """Apply ``name`` (read through ``fd``) from its progress offset up to its last complete line; ``final``:
        nobody writes it any more, so a tail without a newline is torn and set aside. Returns (records, offset)."""
        taken = 0
        start = self.progress(name) if offset is None else offset
        while True:
            lines, end = _read_lines(fd, start, self.batch)
            if not lines:
                break
            try:
                taken += self._drain_lines(name, start, lines)
            except _Conflict:
                start = self.progress(name)
                continue
            start = end
        if final:
            size = os.fstat(fd).st_size
            if size > start:
                tail = os.pread(fd, min(size - start, 64 * 1024), start)
                self.reject(name, start, tail, f"unterminated last line ({size - start} bytes): its writer died "
                                               "while writing it")
                with self.store.transaction(f"skipping the torn end of journal {name}") as conn:
                    self._advance(conn, name, start, size, 1)
                taken, start = taken + 1, size
        return taken, start

    def _drain_lines(self, name: str, start: int, lines: list[tuple[int, bytes]]) -> int:
        decoded: list[Record | ValueError] = []
        for _, line in lines:
            try:
                decoded.append(decode(line))
            except (ValueError, TypeError, RecursionError) as e:
                decoded.append(ValueError(f"not a journal record: {e}"))
        good = [d for d in decoded if not isinstance(d, ValueError)]
        if len(good) == len(decoded):
            try:
                self._commit(name, start, lines[-1][0], good, len(lines))
                return len(lines)
            except _Conflict:
                raise
            except Exception as e:
                if not _record_fault(e):
                    raise
        # One record at a time, so only the bad ones are set aside.
        position = start
        for (end, line), item in zip(lines, decoded, strict=True):
            if isinstance(item, ValueError):
                self.reject(name, position, line, item)
                self._commit(name, position, end, [], 1)
            else:
                try:
                    self._commit(name, position, end, [item], 1)
                except _Conflict:
                    raise
                except Exception as e:
                    if not _record_fault(e):
                        raise
                    self.reject(name, position, line, e)
                    self._commit(name, position, end, [], 1)
            position = end
        return len(lines)

    def drain_orphans(self, skip: frozenset[str]) -> int:
        """Apply and remove every journal file in the directory whose lock can be taken (its writer is dead)."""
        taken = 0
        for path in _journal_files(self.directory):
            if path.name in skip:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # another drainer removed it meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer, or another drainer at it
                if not _same_file(fd, path):
                    continue  # applied and removed by another drainer between our open and our lock
                done, _ = self.drain_file(fd, path.name, None, final=True)
                taken += done
                path.unlink()
                self.forget(path.name)
                self.report(f"journal {path.name} of a process that is gone: {done} record(s) applied, file removed")
            finally:
                os.close(fd)  # drops our lock (flock: this descriptor is the only one on its open file description)
        return taken


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


def _read_lines(fd: int, start: int, limit: int) -> tuple[list[tuple[int, bytes]], int]:
    """Up to ``limit`` complete lines from ``start`` as (end offset, line); a line still being written is left."""
    size = _READ_CHUNK
    while True:
        data = os.pread(fd, size, start)
        cut = data.rfind(b"\n")
        if cut >= 0 or len(data) < size:
            break
        size *= 2  # one line longer than the chunk
    if cut < 0:
        return [], start
    lines: list[tuple[int, bytes]] = []
    position = 0
    while position <= cut and len(lines) < limit:
        newline = data.index(b"\n", position)
        lines.append((start + newline + 1, data[position:newline + 1]))
        position = newline + 1
    return lines, start + position


def _journal_files(directory: Path) -> list[Path]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(m.group(1), int(m.group(2)), n) for n in names if (m := _NAME_RE.fullmatch(n))]
    return [directory / n for *_, n in sorted(found)]  # a writer's files in the order it wrote them (seq 2 < 10)


def _pending(fd_or_path: int | Path, offset: int) -> tuple[int, int | None]:
    fd = os.open(fd_or_path, os.O_RDONLY | os.O_CLOEXEC) if isinstance(fd_or_path, Path) else fd_or_path
    try:
        size = os.fstat(fd).st_size
        pending = max(0, size - offset)
        count = os.pread(fd, pending, offset).count(b"\n") if pending <= _COUNT_LIMIT else None
    finally:
        if isinstance(fd_or_path, Path):
            os.close(fd)
    return pending, count


# -- the journal ---------------------------------------------------------------------------------------------------


@dataclass
class _OwnFile:
    name: str
    write_fd: int  # holds our flock until the file is applied and removed
    read_fd: int
    offset: int | None = None  # applied so far (None: not read from journal_progress yet)


class Journal:
    """The hook's writes, off the authentication path: append here, a drainer thread applies them (see module)."""

    def __init__(self, directory: Path, store: SqlDeviceStore, *, owner: str, max_bytes: int = MAX_BYTES,
                 sync_each: bool = False, report: Callable[[str], None] = _log.warning, batch: int = 500,
                 flush_seconds: float = 0.2) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        if not 0 < flush_seconds <= 10:
            raise ValueError(f"flush_seconds must be in (0, 10], got {flush_seconds}")
        self._flush_s = flush_seconds
        self.directory = Path(directory)
        self.owner = owner
        self._max_bytes = max_bytes
        self._sync_each = sync_each
        self._report = report
        self._applier = _Applier(self.directory, store, report, batch)
        self._prefix = (f"journal-{re.sub(r'[^A-Za-z0-9.]', '_', socket.gethostname())[:64]}-{os.getpid()}-"
                        f"{time.time_ns()}")
        self._lock = threading.Lock()  # writers: the current file, its size, rotation
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_problem: str | None = None
        self._reported: set[str] = set()
        self._last_orphan_scan = 0.0
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise JournalError(f"cannot create the journal directory {self.directory}: {e.strerror or e}; create "
                               "it writable by this user, or configure another") from e
        self._seq = 0
        self._files: list[_OwnFile] = [self._open_file(0)]  # oldest first; the last one is written
        self._size = 0

    def __repr__(self) -> str:
        return f"Journal({str(self.directory)!r}, owner={self.owner!r})"

    def _path(self, name: str) -> Path:
        return self.directory / name

    def _open_file(self, seq: int) -> _OwnFile:
        name = f"{self._prefix}-{seq}.jsonl"
        temporary = self._path(f".{name}.new")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(temporary, self._path(name))  # locked before any drainer can see it under its name
                read_fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)  # never locked: see drain_orphans
                if self._sync_each:
                    dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fsync(dir_fd)
                    finally:
                        os.close(dir_fd)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as e:
            raise JournalError(f"cannot create journal file {self._path(name)}: {e.strerror or e}; check that "
                               f"{self.directory} is writable by this user and its file system has room") from e
        return _OwnFile(name, fd, read_fd)

    # -- writer side (the authentication path) ---------------------------------------------------------------

    def decision(self, entry: DecisionLogEntry, seen: CertificateFacts | None = None, audit: AuditNote | None = None,
                 *, kind: CertKind | None = None) -> None:
        """What ``SqlDeviceStore.append_decision`` would write, journaled."""
        if entry.time.utcoffset() is None:
            raise ValueError(f"entry.time must be a timezone-aware datetime, got naive {entry.time.isoformat()}")
        self._append(encode_decision(entry, seen, audit, kind))

    def session(self, device_id: int | None, context: NetworkContext, vlan: int | None, segment: str | None,
                now: datetime, acct_session_id: str | None = None, *, decided_at: int = -1) -> None:
        """What ``SqlSessionStore.authenticated`` would write, journaled (nothing without a Calling-Station-Id).

        ``decided_at``: the registry generation the decision was taken on; when the device changed after it (an
        operator's action committed while this authentication was being decided), applying the session also asks
        the worker to re-evaluate the device, so the action's enforcement reaches this session too."""
        if not context.calling_station_id:
            return
        if now.utcoffset() is None:
            raise ValueError(f"now must be a timezone-aware datetime, got naive {now.isoformat()}")
        self._append(encode_session(device_id, context, vlan, segment, now, acct_session_id, decided_at))

    def _append(self, line: bytes) -> None:
        with self._lock:
            if self._closed:
                raise JournalError(f"journal {self.directory} is closed; nothing more can be recorded in it")
            current = self._files[-1]
            try:
                written = os.write(current.write_fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
                if self._sync_each:
                    os.fdatasync(current.write_fd)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.ftruncate(current.write_fd, self._size)  # no torn line for the next record to run into
                raise JournalError(f"cannot write journal file {self._path(current.name)}: {e.strerror or e}; "
                                   "free space on its file system or fix the directory's permissions") from e
            self._size += written
            if self._size >= self._max_bytes:
                self._rotate()
        if not self._wake.is_set():
            self._wake.set()

    def _rotate(self) -> None:
        try:
            new = self._open_file(self._seq + 1)
        except JournalError as e:
            self._problem(f"{e}; still writing the previous file")
            return
        self._seq += 1
        self._files.append(new)
        self._size = 0

    # -- drainer ----------------------------------------------------------------------------------------------

    def _problem(self, message: str) -> None:
        self._last_problem = message
        if message not in self._reported:  # once per distinct problem until the next success, not per retry
            self._reported.add(message)
            self._report(message)

    def drain(self) -> int:
        """Apply everything complete so far (own files, then files of dead processes); the records taken off.

        Raises ``StoreError`` when the database is unusable (nothing is advanced past what was committed)."""
        return self._drain(orphans=True)

    def _drain(self, *, orphans: bool) -> int:
        with self._drain_lock:
            return self._drain_locked(orphans=orphans)

    def _drain_locked(self, *, orphans: bool) -> int:
        taken = 0
        for own in list(self._files):
            done, own.offset = self._applier.drain_file(own.read_fd, own.name, own.offset, final=False)
            taken += done
            with self._lock:
                retired = own is not self._files[-1] or self._closed
            if retired and os.fstat(own.read_fd).st_size == own.offset:
                self._remove(own)
        if orphans:
            self._last_orphan_scan = time.monotonic()
            with self._lock:
                mine = frozenset(f.name for f in self._files)
            taken += self._applier.drain_orphans(mine)
        if self._last_problem is not None:
            self._last_problem = None
            self._reported.clear()
            self._report(f"journal {self.directory}: draining again")
        return taken

    def _remove(self, own: _OwnFile) -> None:
        try:
            os.unlink(self._path(own.name))
        except OSError as e:
            raise JournalError(f"cannot remove the applied journal file {self._path(own.name)}: {e.strerror or e}; "
                               f"check the permissions of {self.directory}") from e
        os.close(own.read_fd)
        os.close(own.write_fd)  # our lock goes with it, after the unlink
        with self._lock:
            self._files.remove(own)
        self._applier.forget(own.name)

    def start(self) -> None:
        """Drain in a daemon thread: promptly after appends, with backoff (up to 1 s) while the database is down."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"journal-{self.owner}", daemon=True)
        self._wake.set()  # a first drain at once: what an earlier, crashed process left
        self._thread.start()

    def _run(self) -> None:
        delay = 0.0
        last = 0.0
        while not self._stop.is_set():
            if delay:
                self._stop.wait(delay)  # appends do not cut a backoff short
            else:
                self._wake.wait(_ORPHAN_SCAN_S)
                # A record after a quiet spell is applied within _COALESCE_S; under load, one transaction per
                # flush_seconds takes everything that came meanwhile (a transaction costs ~1 ms of Python whatever
                # it holds, a record ~0.07 ms: this keeps the drainer's share of radiusd's CPU small).
                self._stop.wait(max(_COALESCE_S, last + self._flush_s - time.monotonic()))
            if self._stop.is_set():
                break
            self._wake.clear()
            try:
                last = time.monotonic()
                self._drain(orphans=last - self._last_orphan_scan >= _ORPHAN_SCAN_S)
                delay = 0.0
            except Exception as e:  # the thread must live on: report, back off, retry
                self._problem(f"journal {self.directory}: applying to the registry failed, retrying: {e}")
                delay = min(_BACKOFF_S[1], max(_BACKOFF_S[0], delay * 2))

    def close(self, timeout: float = 5.0) -> None:
        """Stop writing and the thread, try a last drain; a file not fully applied stays for the next process."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if not self._drain_lock.acquire(timeout=timeout):
            # The thread is stuck in the database and still reads the files: leave them open (and locked).
            self._report(f"journal {self.directory}: the drainer did not stop within {timeout} s; the files stay "
                         "open until the process exits, then the next start applies them")
            return
        try:
            self._drain_locked(orphans=False)
        except Exception as e:  # what is left is applied by the next process
            self._problem(f"journal {self.directory}: last drain failed, the next start applies the rest: {e}")
        finally:
            self._drain_lock.release()
        with self._lock:
            left, self._files = self._files, []
        for own in left:  # releases the locks: the files are orphans now, for the next drainer
            os.close(own.read_fd)
            os.close(own.write_fd)

    def status(self) -> JournalStatus:
        with self._lock:
            files = list(self._files)
        pending, records = 0, 0
        counted = True
        for own in files:
            size, count = _pending(own.read_fd, own.offset or 0)
            pending += size
            counted = counted and count is not None
            records += count or 0
        return JournalStatus(tuple(f.name for f in files), pending, records if counted else None, self._last_problem)


# -- for the CLI and the worker ------------------------------------------------------------------------------------


def drain_orphans(directory: Path, store: SqlDeviceStore, report: Callable[[str], None] = _log.warning, *,
                  batch: int = 500) -> int:
    """Apply and remove the journal files of dead processes in ``directory``; the records taken off them."""
    return _Applier(Path(directory), store, report, batch).drain_orphans(frozenset())


def journal_status(directory: Path, store: SqlDeviceStore | None = None) -> JournalStatus:
    """Every journal file in ``directory``; with ``store``, pending counts from their progress rows."""
    directory = Path(directory)
    files = _journal_files(directory)
    offsets: dict[str, int] = {}
    if store is not None and files:
        with store.transaction("reading journal progress") as conn:
            rows = conn.execute(sa.select(journal_progress.c.name, _OFFSET)
                                .where(journal_progress.c.name.in_([p.name for p in files])))
            offsets = {str(name): int(offset) for name, offset in rows}
    pending, records, counted = 0, 0, True
    names = []
    for path in files:
        try:
            size, count = _pending(path, offsets.get(path.name, 0))
        except FileNotFoundError:
            continue
        names.append(path.name)
        pending += size
        counted = counted and count is not None
        records += count or 0
    return JournalStatus(tuple(names), pending, records if counted else None)



def wait_for_journal(directory: Path, store: SqlDeviceStore, timeout: float, *, poll_s: float = 0.005) -> None:
    """Return once every journal file in ``directory`` is applied (another process's drainer does the work), so a
    reader of the registry sees what was journaled before the call; ``JournalError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = journal_status(directory, store)
        if status.pending_bytes == 0:
            return
        if time.monotonic() >= deadline:
            raise JournalError(f"journal {directory} still holds {status.pending_bytes} bytes "
                               f"({status.pending_records} record(s)) after {timeout} s: is its drainer running, "
                               "and the registry usable?")
        time.sleep(poll_s)
