"""Real FreeRADIUS 3.2 + rlm_python3 with the hook's cache and journal (the rendered default), eapol_test as the
client: an operator's action is in force for the very next authentication, a radiusd killed with SIGKILL loses no
decision it answered, and the operator can see both (``trustport radius caches`` / ``journal``)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from policy.model import LifecycleState, Outcome
from trustport.cli.main import cli
from trustport.freeradius.run import run_eapol, write_eapol_conf
from trustport.store.sql import SqlDeviceStore
from trustport_lab.lab import Lab

pytestmark = pytest.mark.integration

SERIAL = "SN-1001"  # operational, production VLAN 30


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), datetime.now(UTC), echo=lambda _m: None) as running:
        yield running


def _device_id(lab: Lab) -> int:
    return next(d.id for d in lab.store.list_devices() if d.key.serial_number == SERIAL)


def _vlan(result) -> str | None:  # type: ignore[no-untyped-def]
    return result.attributes.get("Tunnel-Private-Group-Id") if result.code == "Access-Accept" else "reject"


def test_each_operator_action_is_in_force_for_the_next_authentication(lab: Lab) -> None:
    """Quarantine, release, decommission, each through the CLI, each followed at once by an authentication: never
    the answer from before the action (the hook answered the previous one from its cache)."""
    runner = CliRunner()
    c = ("--config", str(lab.config_path))
    assert _vlan(lab.authenticate(SERIAL)) == "30"
    assert _vlan(lab.authenticate(SERIAL)) == "30"  # now from the cache
    steps = [("quarantine", "999"), ("release", "30"), ("quarantine", "999"), ("release", "30"),
             ("decommission", "reject")]
    for action, expected in steps:
        out = runner.invoke(cli, ["devices", action, SERIAL, "--reason", "test", "--actor", "alice", *c])
        assert out.exit_code == 0, out.output
        assert _vlan(lab.authenticate(SERIAL)) == expected, f"after {action}"
    caches = runner.invoke(cli, ["radius", "caches", "--json", *c])
    assert caches.exit_code == 0, caches.output
    report = json.loads(caches.stdout)
    (cache,) = report["caches"]  # the running radiusd's (the 'freeradius -XC' check took no lease)
    assert cache["state"] == "live"
    assert cache["behind"] == 0
    assert cache["lease_left_s"] > 0
    logged = [e.outcome for e in lab.store.decisions(_device_id(lab), limit=20)]
    assert logged[0] is Outcome.REJECT and logged.count(Outcome.QUARANTINE) == 2


def test_radiusd_killed_loses_no_decision_it_answered(lab: Lab) -> None:
    """The registry is locked (nothing can be written), four authentications are answered, radiusd is killed with
    SIGKILL before its journal could be applied: once the registry is writable again, 'trustport radius journal
    --drain' applies all four, exactly once."""
    device_id = _device_id(lab)
    before = len(lab.store.decisions(device_id, limit=1000))
    cert, key = lab.devices[SERIAL]
    conf = write_eapol_conf(lab.work / "eapol-kill.conf", identity="sn-1001.devices.example",
                            ca_cert=lab.work / "pki" / "server-ca.pem", client_cert=cert, private_key=key)
    registry = sqlite3.connect(lab.config.database_url().removeprefix("sqlite:///"), isolation_level=None)
    registry.execute("BEGIN IMMEDIATE")
    try:
        answers = [run_eapol(conf, port=lab.config.radius.auth_port,
                             secret=lab.config.radius.clients[0].secret.get_secret_value(),
                             mac="02:00:00:00:0a:01", nas_port=41) for _ in range(4)]
        assert [_vlan(a) for a in answers] == ["30"] * 4
        journal = lab.config.journal_dir()
        assert journal is not None
        pending = [p for p in journal.glob("journal-*.jsonl") if p.stat().st_size > 0]
        assert pending, "the answers must be in the journal"
        os.kill(lab.server.process.pid, signal.SIGKILL)
        lab.server.process.wait(10)
    finally:
        registry.execute("ROLLBACK")
        registry.close()
    assert len(lab.store.decisions(device_id, limit=1000)) == before  # nothing reached the registry
    runner = CliRunner()
    out = runner.invoke(cli, ["radius", "journal", "--drain", "--json", "--config", str(lab.config_path)])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["pending_bytes"] == 0
    assert report["applied_now"] >= 8  # four decisions and four sessions
    with SqlDeviceStore(lab.config.database_url()) as reader:
        entries = reader.decisions(device_id, limit=1000)
        assert len(entries) == before + 4
        assert all(e.outcome is Outcome.ACCEPT and e.vlan == 30 for e in entries[:4])
        device = reader.get_device(device_id)
        assert device is not None and device.state is LifecycleState.OPERATIONAL and device.last_seen is not None
    again = runner.invoke(cli, ["radius", "journal", "--drain", "--json", "--config", str(lab.config_path)])
    assert json.loads(again.stdout)["applied_now"] == 0  # exactly once
