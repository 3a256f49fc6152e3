"""Ways to damage a SQLite registry file, for the fail-closed tests (unit and integration)."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path


def checkpoint(path: Path) -> None:
    """Everything into the main file, as a backup copy of it would be."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def backup(path: Path, to: Path) -> None:
    """A consistent copy through SQLite (what `sqlite3 registry .backup` does)."""
    source, target = sqlite3.connect(path), sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE plants (name TEXT, watered_at TEXT)")
        conn.execute("INSERT INTO plants VALUES ('fern', 'monday')")
        conn.commit()
    finally:
        conn.close()


def random_bytes(size: int) -> bytes:
    return random.Random(8021).randbytes(size)


def delete(path: Path) -> None:
    path.unlink()


def zero_bytes(path: Path) -> None:
    os.truncate(path, 0)


def truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def overwrite_random(path: Path) -> None:
    with open(path, "r+b") as file:  # in place: same inode, same size
        file.write(random_bytes(path.stat().st_size))


def replace_foreign(path: Path) -> None:
    other = path.with_name("foreign.sqlite")
    foreign_sqlite(other)
    os.replace(other, path)


def replace_random(path: Path) -> None:
    other = path.with_name("junk.bin")
    other.write_bytes(random_bytes(16384))
    os.replace(other, path)
