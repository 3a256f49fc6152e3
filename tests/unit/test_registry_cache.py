"""The registry cache and change feed on SQLite (the shared suite), plus the barrier's own edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.cache_contract import CacheContract
from tests.unit.test_store_sql import SqliteBackend
from trustport.store import changes


@pytest.fixture
def backend(tmp_path: Path) -> SqliteBackend:
    return SqliteBackend(tmp_path)


class TestSqliteCache(CacheContract):
    """The shared suite against a SQLite file."""


def test_barrier_outwaits_every_lease_when_the_caches_cannot_be_read() -> None:
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    def connect() -> Any:
        raise OSError("connection refused")

    result = changes.wait_for_caches(connect, max_lease_s=2.0, sleep=sleep, monotonic=lambda: clock[0])
    assert result.error is not None
    assert "connection refused" in result.error
    assert sum(slept) == pytest.approx(2.0)


@pytest.mark.parametrize(("statement", "tracked"), [
    ("UPDATE devices SET state=?", True),
    ('UPDATE "devices" SET state=?', True),
    ("  insert into attestation_results (a) values (1)", True),
    ("INSERT OR REPLACE INTO denied_certificates (a) VALUES (1)", True),
    ("DELETE FROM devices WHERE id=1", True),
    ("UPDATE devices_archive SET x=1", False),
    ("INSERT INTO decision_log (a) VALUES (1)", False),
    ("SELECT * FROM devices", False),
    ("UPDATE sessions SET vlan=1", False),
])
def test_which_statements_make_a_store_wait(statement: str, tracked: bool) -> None:
    assert changes.is_tracked_dml(statement) is tracked
