"""Reading the registry's header must never drop this process's SQLite locks.

POSIX releases every lock a process holds on a file when it closes any descriptor of that file, SQLite's own included.
The store once read the header with open()/close() while its connections had the registry open: another process
(radiusd, the worker) could then believe it was the last connection and checkpoint and remove the WAL under our
readers, who saw "database disk image is malformed" until restarted (found by bench_eap_tls: an in-process hook next
to a busy radiusd). A second process asks the kernel (F_GETLK) whether our read lock is still there."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from trustport.store.sql import SqlDeviceStore

# SQLite's lock bytes (os_unix.c): PENDING_BYTE 0x40000000, SHARED_FIRST = PENDING_BYTE + 2, SHARED_SIZE 510
PROBE = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
request = struct.pack("hh4xqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0x40000002, 510, 0)
l_type = struct.unpack("hh4xqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, request))[0]
print("locked" if l_type != fcntl.F_UNLCK else "free")
"""


def shared_lock_held(path: Path) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "locked"


def test_the_probe_sees_a_read_transaction_and_a_plain_close_drops_it(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    SqlDeviceStore(f"sqlite:///{path}", create=True).ensure_schema()
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM devices").fetchone()
    assert shared_lock_held(path)
    with open(path, "rb") as file:  # what the store used to do
        file.read(100)
    assert not shared_lock_held(path)  # POSIX: the close dropped SQLite's lock of this process
    reader.close()


def test_the_store_reads_its_header_without_dropping_the_locks(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    store = SqlDeviceStore(f"sqlite:///{path}", create=True)
    store.ensure_schema()
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM devices").fetchone()
    assert shared_lock_held(path)
    for _ in range(3):
        assert store.inspect(integrity=True).healthy  # reads the header (and checks the schema) each time
        other = SqlDeviceStore(f"sqlite:///{path}")  # a second store in the same process, opened and closed
        assert other.inspect().healthy
        other.close()
        assert shared_lock_held(path)
    reader.close()
    store.close()
