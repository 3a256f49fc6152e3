"""Lifecycle actions are atomic on PostgreSQL too: a subset of ``tests/unit/test_lifecycle_atomic.py`` against a
real, throw-away cluster (the deny-list conflict and the row lock only exist there).

Needs the PostgreSQL server binaries (Debian: ``apt-get install postgresql``); without them these tests fail,
they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policy.model import LifecycleState
from tests.enforce_env import EnforceEnv
from tests.pki_fixtures import DevicePki
from tests.support.postgres import PostgresServer
from tests.unit.test_lifecycle_atomic import (
    NOW,
    check_fault_changes_nothing,
    check_happy_path,
    check_revoke_without_serial,
    connect,
    snapshot,
)
from trustport.services.lifecycle import LifecycleService
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.sql import SqlDeviceStore

pytestmark = pytest.mark.integration
S = LifecycleState


@pytest.fixture
def env(tmp_path: Path, pki: DevicePki, postgres: PostgresServer) -> Iterator[EnforceEnv]:
    """Enforcement configured, the registry on a fresh PostgreSQL database."""
    environment = EnforceEnv(tmp_path, pki, switch_port=1, coa_port=2)
    environment.write(coa=False)
    environment.store.close()
    environment.store = SqlDeviceStore(postgres.create_database(), create=True)
    environment.store.ensure_schema()
    yield environment
    environment.store.close()


@pytest.mark.parametrize(("action", "state", "vlan", "fault"), [
    ("quarantine", S.OPERATIONAL, 30, "audit"),
    ("quarantine", S.OPERATIONAL, 30, "enqueue"),
    ("revoke", S.OPERATIONAL, 30, "deny"),
    ("revoke", S.OPERATIONAL, 30, "enqueue"),
    ("release", S.QUARANTINED, 999, "enqueue"),
])
def test_fault_between_parts_changes_nothing(monkeypatch: pytest.MonkeyPatch, env: EnforceEnv, pki: DevicePki,
                                             action: str, state: S, vlan: int, fault: str) -> None:
    assert env.store.display_url.startswith("postgresql")
    device = connect(env.store, pki, "ldevid-ok", state=state, vlan=vlan)
    check_fault_changes_nothing(monkeypatch, LifecycleService(env.config, env.store), env.store, device, action,
                                fault)


def test_happy_path_writes_every_part(env: EnforceEnv, pki: DevicePki) -> None:
    device = connect(env.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    check_happy_path(LifecycleService(env.config, env.store), env.store, device)


def test_revoke_without_certificate_serial_changes_nothing(env: EnforceEnv, pki: DevicePki) -> None:
    device = connect(env.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    check_revoke_without_serial(LifecycleService(env.config, env.store), env.store, device.key.issuer)


def test_already_denied_certificate_does_not_abort_the_transaction(env: EnforceEnv, pki: DevicePki) -> None:
    """On PostgreSQL a failed INSERT would abort the whole transaction: the conflict must not be an error."""
    device = connect(env.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    assert device.cert_serial
    SqlLifecycleStore(env.store).deny(device.key.issuer, device.cert_serial, device_id=None, time=NOW,
                                      actor="earlier", reason=None)
    result = LifecycleService(env.config, env.store).act(device, "revoke", actor="op", reason=None, now=NOW)
    assert (result.after.state, result.denied) == (S.DECOMMISSIONED, False)
    assert len([q for q in result.queued if q.job is not None]) == 1
    after = snapshot(env.store)
    assert (len(after["lifecycle_events"]), len(after["enforcement_jobs"]), len(after["denied_certificates"])) == (
        1, 1, 1)
