"""Fixtures shared by the integration tests: one real PostgreSQL cluster for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer, PostgresUnavailable, running_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as e:
        pytest.fail(f"PostgreSQL is required for the integration tests: {e}", pytrace=False)
