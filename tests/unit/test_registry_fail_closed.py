"""A damaged registry fails closed: never recreated, never answered from, never accepted.

Each damaged state (missing, 0 bytes, truncated mid-file, random bytes, a foreign SQLite database, replaced or
deleted while a store has it open) must raise a ``StoreError`` naming what is wrong and what to do, leave the
file as damaged as it was (no schema created), and make the hook reject — including a hook that was already
running and has pages of the old file cached. Once the file is restored, the same store works again.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from policy.errors import StoreError
from policy.model import CertKind, DecisionLogEntry, DeviceKey, LifecycleState, Outcome
from policy.x509facts import facts_from_certificate
from radius_hooks.hook import Hook
from tests.pki_fixtures import NOW, DevicePki
from tests.support.hook_env import AUTH_PATHS, REJECT, UPDATED, FakeRadiusd, valid_request, write_settings
from tests.support.registry_damage import (
    backup,
    checkpoint,
    delete,
    overwrite_random,
    random_bytes,
    replace_foreign,
    replace_random,
    truncate_half,
    zero_bytes,
)
from tests.support.store_contract import KEY, entry, facts_for
from trustport.cli.main import cli
from trustport.store.sql import SQLITE_APPLICATION_ID, RegistryState, SqlDeviceStore

OPERATIONAL = LifecycleState.OPERATIONAL
NEW = DeviceKey("/CN=x", "SN-NEW")


def _entry(reason: str = "test") -> DecisionLogEntry:
    return entry(None, NOW, Outcome.REJECT, reasons=(reason,))


# -- building and damaging registries ----------------------------------------------------------------------


def new_registry(path: Path, devices: int = 40) -> None:
    """A registry with enough rows that its file spans many pages (so half of it is a real truncation)."""
    with SqlDeviceStore(f"sqlite:///{path}", create=True) as store:
        for i in range(devices):
            store.add_device(DeviceKey("/CN=Fill CA", f"SN-FILL-{i:04d}"), state=OPERATIONAL, now=NOW,
                             notes="x" * 400)
    checkpoint(path)


@dataclass(frozen=True)
class Damage:
    name: str
    apply: Callable[[Path], None]
    message: str  # regex, after "registry sqlite:///<path> "


DAMAGES = [
    Damage("deleted", delete, r"is missing: .* does not exist"),
    Damage("0 bytes", zero_bytes, r"is empty: the file has 0 bytes; run 'trustport db init' to create a new one, "
                                  r"or restore the backup"),
    Damage("truncated mid-file", truncate_half, r"is corrupt: truncated: the file has \d+ bytes"),
    Damage("random bytes in place", overwrite_random, r"is not a trustport registry: the file is not a SQLite "
                                                      r"database"),
    Damage("replaced by random bytes", replace_random, r"is not a trustport registry: the file is not a SQLite "
                                                       r"database"),
    Damage("replaced by a foreign SQLite database", replace_foreign,
           r"is not a trustport registry: (it has tables \(plants\) but not trustport's|its SQLite header carries "
           r"application id 0x0, trustport's is 0x54505254); move the file aside"),
]
DAMAGE_IDS = [d.name for d in DAMAGES]


def snapshot(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def assert_untouched(path: Path, before: bytes | None) -> None:
    """No schema was created: the damaged file is exactly as damaged as it was (or still absent)."""
    assert snapshot(path) == before


# -- a store that was never opened -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", DAMAGES, ids=DAMAGE_IDS)
def test_damaged_registry_is_refused_and_left_alone(tmp_path: Path, damage: Damage) -> None:
    path = tmp_path / "registry.sqlite"
    new_registry(path)
    damage.apply(path)
    before = snapshot(path)
    store = SqlDeviceStore(f"sqlite:///{path}")
    try:
        for attempt in (lambda: store.find_device(KEY), store.ping, store.list_devices):
            with pytest.raises(StoreError, match=rf"registry sqlite:///{path} {damage.message}"):
                attempt()
        assert not store.inspect().healthy
    finally:
        store.close()
    assert_untouched(path, before)


@pytest.mark.parametrize(("prepare", "state", "message"), [
    ("empty sqlite", RegistryState.EMPTY, r"is empty: the database has no tables"),
    ("other application id", RegistryState.FOREIGN, r"application id 0x1234"),
    ("other application in trustport_meta", RegistryState.FOREIGN, r"trustport_meta names application 'billing'"),
    ("table dropped", RegistryState.CORRUPT, r"is corrupt: table\(s\) sessions are missing"),
    ("column dropped", RegistryState.CORRUPT, r"is corrupt: table devices lacks column\(s\) mud_url"),
    ("pages overwritten", RegistryState.CORRUPT, r"is corrupt: .*malformed"),
    ("newer schema", RegistryState.UNSUPPORTED, r"has schema version 99, newer than this trustport understands"),
])
def test_other_bad_registries(tmp_path: Path, prepare: str, state: RegistryState, message: str) -> None:
    path = tmp_path / "registry.sqlite"
    if prepare == "empty sqlite":
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 7")  # a valid SQLite file, one page, no tables
        conn.close()
    else:
        new_registry(path)
        statements = {
            "other application id": ["PRAGMA application_id = 4660"],
            "other application in trustport_meta": ["UPDATE trustport_meta SET value = 'billing' "
                                                    "WHERE key = 'application'"],
            "table dropped": ["DROP TABLE sessions"],
            # SQLite refuses to drop a column a trigger reads: whoever drops it drops the trigger first
            "column dropped": ["DROP TRIGGER trustport_devices_update", "ALTER TABLE devices DROP COLUMN mud_url"],
            "newer schema": ["UPDATE schema_version SET version = 99"],
        }.get(prepare, [])
        conn = sqlite3.connect(path)
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        if prepare == "pages overwritten":
            data = bytearray(path.read_bytes())
            data[100:] = random_bytes(len(data) - 100)  # header intact, every table page destroyed
            path.write_bytes(bytes(data))
    before = snapshot(path)
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        health = store.inspect()
        assert health.state is state, health
        with pytest.raises(StoreError, match=message):
            store.find_device(KEY)
    with SqlDeviceStore(f"sqlite:///{path}", create=True) as creator:
        if state is RegistryState.EMPTY:
            assert creator.find_device(KEY) is None  # an empty database is what a creating store may fill
            return
        with pytest.raises(StoreError, match=message):
            creator.find_device(KEY)  # anything else not even a creating store may touch
    assert snapshot(path) == before


@pytest.mark.parametrize("damage", [d for d in DAMAGES if d.name not in ("deleted", "0 bytes")],
                         ids=[d.name for d in DAMAGES if d.name not in ("deleted", "0 bytes")])
def test_create_never_overwrites_a_damaged_file(tmp_path: Path, damage: Damage) -> None:
    path = tmp_path / "registry.sqlite"
    new_registry(path)
    damage.apply(path)
    before = snapshot(path)
    with SqlDeviceStore(f"sqlite:///{path}", create=True) as store, pytest.raises(StoreError,
                                                                                  match=damage.message):
        store.find_device(KEY)
    assert snapshot(path) == before


def test_create_fills_a_missing_or_empty_file_only_when_asked(tmp_path: Path) -> None:
    missing, empty = tmp_path / "missing.sqlite", tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    for path in (missing, empty):
        with SqlDeviceStore(f"sqlite:///{path}") as reader, pytest.raises(StoreError, match="db init"):
            reader.find_device(KEY)
        assert snapshot(path) in (None, b"")  # the reader created nothing
        with SqlDeviceStore(f"sqlite:///{path}", create=True) as creator:
            assert creator.find_device(KEY) is None
            health = creator.inspect(integrity=True)
        assert health.healthy and health.schema_version == 1 and health.registry_id and health.devices == 0
        with open(path, "rb") as file:
            head = file.read(100)
        assert int.from_bytes(head[68:72], "big") == SQLITE_APPLICATION_ID  # `file` shows it, foreign ids refused


def test_in_memory_reader_does_not_create() -> None:
    with SqlDeviceStore("sqlite://") as store, pytest.raises(StoreError, match="is empty: the database has no "
                                                                            "tables"):
        store.find_device(KEY)


# -- a store that is open (the running hook) ---------------------------------------------------------------


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[SqlDeviceStore, Path, Path]]:
    """An open store that has read the registry (its pool holds connections and cached pages), and a backup."""
    path, saved = tmp_path / "registry.sqlite", tmp_path / "backup.sqlite"
    new_registry(path)
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        store.add_device(KEY, state=OPERATIONAL, now=NOW)
        assert store.find_device(KEY) is not None
        backup(path, saved)
        yield store, path, saved


def restore(saved: Path, path: Path) -> None:
    copy = path.with_name("restoring.sqlite")
    copy.write_bytes(saved.read_bytes())
    os.replace(copy, path)


@pytest.mark.parametrize("damage", DAMAGES, ids=DAMAGE_IDS)
def test_open_store_notices_damage_and_recovers_after_restore(running: tuple[SqlDeviceStore, Path, Path],
                                                              damage: Damage) -> None:
    store, path, saved = running
    damage.apply(path)
    before = snapshot(path)
    for _ in range(3):  # not once: every statement, until the file is healthy again
        with pytest.raises(StoreError, match=damage.message):
            store.find_device(KEY)
        with pytest.raises(StoreError, match=damage.message):
            store.register_pending(NEW, facts_for(NEW), CertKind.IDEVID, NOW)
    assert_untouched(path, before)
    restore(saved, path)
    device = store.find_device(KEY)  # no restart: the same store, fresh connections
    assert device is not None and device.state is OPERATIONAL
    assert store.find_device(NEW) is None  # nothing was registered meanwhile


def test_deleted_while_open_says_so_and_is_not_recreated(running: tuple[SqlDeviceStore, Path, Path]) -> None:
    store, path, _ = running
    path.unlink()
    with pytest.raises(StoreError, match=r"is missing: .* does not exist \(it was deleted or moved while in use\); "
                                         r"run 'trustport db init'"):
        store.append_decision(_entry())
    assert not path.exists()


def test_replaced_by_another_registry_is_refused(running: tuple[SqlDeviceStore, Path, Path]) -> None:
    store, path, _ = running
    other = path.with_name("other.sqlite")
    new_registry(other)
    os.replace(other, path)
    with pytest.raises(StoreError, match=r"was replaced by another registry: its registry id is .*, this process "
                                         r"opened .*; restore the original file, or restart"):
        store.find_device(KEY)


def test_same_registry_restored_from_backup_is_used(running: tuple[SqlDeviceStore, Path, Path]) -> None:
    store, path, saved = running
    restore(saved, path)
    assert store.find_device(KEY) is not None


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_write_into_a_file_that_went_away_meanwhile_fails(running: tuple[SqlDeviceStore, Path, Path],
                                                          how: str) -> None:
    """The row went to an inode nobody will read again: the write must fail, so the hook rejects."""
    store, path, saved = running

    def pull_the_file(*_: Any) -> None:
        if how == "deleted":
            path.unlink()
        else:
            restore(saved, path)

    sa.event.listen(store._engine, "commit", pull_the_file, once=True)
    with pytest.raises(StoreError, match=rf"appending to the decision log on registry .* was lost: the file was {how}"):
        store.append_decision(_entry())


def test_failed_statement_forces_a_fresh_check(running: tuple[SqlDeviceStore, Path, Path]) -> None:
    store, path, _ = running
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE decision_log")  # into the WAL: the main file's inode, size and mtime stay the same
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"appending to the decision log failed .*no such table: decision_log"):
        store.append_decision(_entry())
    with pytest.raises(StoreError, match=r"is corrupt: table\(s\) decision_log are missing"):
        store.append_decision(_entry())  # the failure made the store look at the whole registry again
    with pytest.raises(StoreError, match=r"is corrupt: table\(s\) decision_log are missing"):
        store.find_device(KEY)  # and every statement after it, until it is healthy


def test_checkpoint_by_another_process_is_not_damage(running: tuple[SqlDeviceStore, Path, Path]) -> None:
    store, path, _ = running
    for i in range(30):
        store.append_decision(_entry(reason=f"#{i}"))
    checkpoint(path)  # the main file grows and its mtime moves: checked again, found healthy
    assert len(store.decisions(limit=100)) == 30


# -- the hook ------------------------------------------------------------------------------------------------


@dataclass
class RunningHook:
    hook: Hook
    radiusd: FakeRadiusd
    path: Path
    saved: Path
    pki: DevicePki

    def decide(self, name: str, ca: str) -> Any:
        return self.hook.check_eap_tls(valid_request(self.pki, name, ca))

    def registered(self, name: str) -> LifecycleState | None:
        facts = facts_from_certificate(self.pki.devices[name].cert)
        assert facts.device_serial
        with SqlDeviceStore(f"sqlite:///{self.path}") as reader:
            device = reader.find_device(DeviceKey(facts.issuer, facts.device_serial))
        return device.state if device is not None else None


@pytest.fixture(params=AUTH_PATHS)
def running_hook(pki: DevicePki, tmp_path: Path, request: pytest.FixtureRequest) -> RunningHook:
    return start_hook(pki, tmp_path, request.param)


@pytest.fixture
def direct_hook(pki: DevicePki, tmp_path: Path) -> RunningHook:
    return start_hook(pki, tmp_path, "direct")


def start_hook(pki: DevicePki, tmp_path: Path, auth_path: str) -> RunningHook:
    """A hook that has already decided (cached pages, pooled connections, its registry cache filled) over a
    registry with an operational LDevID device and a decommissioned IDevID one; a backup of that registry."""
    settings = write_settings(pki, tmp_path, auth_path)  # creates the registry, as 'trustport db init' does
    path, saved = tmp_path / "registry.sqlite", tmp_path / "backup.sqlite"
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        for name, state in (("ldevid-ok", OPERATIONAL), ("idevid-ok", LifecycleState.DECOMMISSIONED)):
            facts = facts_from_certificate(pki.devices[name].cert)
            assert facts.device_serial
            store.add_device(DeviceKey(facts.issuer, facts.device_serial), state=state, now=NOW,
                             segment="production", facts=facts)
    radiusd = FakeRadiusd()
    hook = Hook(radiusd, clock=lambda: NOW)
    assert hook.instantiate({"settings": str(settings)}) == 0
    running = RunningHook(hook, radiusd, path, saved, pki)
    assert running.decide("ldevid-ok", "ldevid")[0] == UPDATED
    assert running.decide("idevid-ok", "idevid") == REJECT
    checkpoint(path)
    backup(path, saved)
    return running


@pytest.mark.parametrize("damage", DAMAGES, ids=DAMAGE_IDS)
def test_running_hook_rejects_on_a_damaged_registry_and_recovers(running_hook: RunningHook, damage: Damage) -> None:
    h = running_hook
    damage.apply(h.path)
    before = snapshot(h.path)
    h.radiusd.lines.clear()
    assert h.decide("ldevid-ok", "ldevid") == REJECT  # operational: would be accepted from cached pages
    assert h.decide("idevid-ok", "idevid") == REJECT  # decommissioned: must not turn into a quarantined unknown
    assert h.decide("rsa2048", "idevid") == REJECT  # genuine unknown: must not be registered as pending
    rejects = [line for _, line in h.radiusd.lines if line.startswith("trustport: reject")]
    assert len(rejects) == 3  # one clear line per reject, naming the registry, what is wrong, what to do
    assert all(re.search(rf"reject .*registry sqlite:///{h.path} {damage.message}", line) for line in rejects), rejects
    assert_untouched(h.path, before)
    restore(h.saved, h.path)
    rcode, lists = h.decide("ldevid-ok", "ldevid")
    assert rcode == UPDATED and ("Tunnel-Private-Group-Id", ":=", "30") in lists["reply"]
    assert h.registered("rsa2048") is None  # nothing was registered while the registry was damaged
    assert h.registered("idevid-ok") is LifecycleState.DECOMMISSIONED


def test_hook_started_without_a_registry_rejects_and_creates_none(pki: DevicePki, tmp_path: Path) -> None:
    settings = write_settings(pki, tmp_path)
    path = tmp_path / "registry.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    radiusd = FakeRadiusd()
    hook = Hook(radiusd, clock=lambda: NOW)
    assert hook.instantiate({"settings": str(settings)}) == 0  # radiusd starts; every request fails closed
    assert any("registry unusable" in line and "is missing" in line for _, line in radiusd.lines)
    assert hook.check_eap_tls(valid_request(pki)) == REJECT
    assert hook.check_eap_tls(valid_request(pki, "ldevid-ok", "ldevid")) == REJECT
    assert not path.exists()


def test_hook_logs_a_healthy_registry_at_start(running_hook: RunningHook) -> None:
    assert any("is healthy" in line for _, line in running_hook.radiusd.lines)


def test_decision_that_cannot_be_recorded_is_not_accepted(direct_hook: RunningHook) -> None:
    """Without a journal: the lookup succeeds, the decision log write lands in a file that was replaced meanwhile:
    reject. (With the journal the decision is on disk before the answer: tests/unit/test_hook_journal.py.)"""
    h = direct_hook
    assert h.hook.runtime is not None
    store = h.hook.runtime.store
    logged = len(decisions(h.saved))
    sa.event.listen(store._engine, "commit", lambda *_: restore(h.saved, h.path), once=True)
    assert h.decide("ldevid-ok", "ldevid") == REJECT
    assert any("was lost: the file was replaced" in line for _, line in h.radiusd.lines)
    assert len(decisions(h.path)) == logged  # the accept went to the old inode: no trace, so no accept
    assert h.decide("ldevid-ok", "ldevid")[0] == UPDATED  # the next one, on the restored file, is recorded
    assert decisions(h.path)[0].outcome is Outcome.ACCEPT and len(decisions(h.path)) == logged + 1


def decisions(path: Path) -> list[DecisionLogEntry]:
    with SqlDeviceStore(f"sqlite:///{path}") as reader:
        return list(reader.decisions(limit=1000))


# -- trustport db init / status --------------------------------------------------------------------------------


def write_config(pki: DevicePki, path: Path, url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": "db-test-shared-secret"}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))}],
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": url},
    }))
    return path


@pytest.fixture
def config_file(pki: DevicePki, tmp_path: Path) -> Path:
    return write_config(pki, tmp_path / "trustport.yaml", "sqlite:///var/registry.sqlite")


def db(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["db", *args, "--config", str(config)])


def test_db_init_creates_once_and_then_changes_nothing(config_file: Path) -> None:
    path = config_file.parent / "var" / "registry.sqlite"
    first = db(config_file, "init")
    assert first.exit_code == 0, first.output
    assert f"created registry sqlite:///{path} (schema version 1, id " in first.output
    created = path.read_bytes()
    again = db(config_file, "init")
    assert again.exit_code == 0, again.output
    assert "is already initialised (schema version 1" in again.output and "nothing changed" in again.output
    assert path.read_bytes() == created
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("damage", [d for d in DAMAGES if d.name not in ("deleted", "0 bytes")],
                         ids=[d.name for d in DAMAGES if d.name not in ("deleted", "0 bytes")])
def test_db_init_refuses_a_foreign_or_damaged_file(config_file: Path, damage: Damage) -> None:
    path = config_file.parent / "var" / "registry.sqlite"
    path.parent.mkdir()
    new_registry(path)
    damage.apply(path)
    before = snapshot(path)
    result = db(config_file, "init")
    assert result.exit_code == 2
    assert re.search(r"error: registry sqlite:///.* " + damage.message, result.output), result.output
    assert "Traceback" not in result.output
    assert snapshot(path) == before


def test_db_init_fills_an_empty_file(config_file: Path) -> None:
    path = config_file.parent / "var" / "registry.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"")
    result = db(config_file, "init")
    assert result.exit_code == 0 and "created registry" in result.output


def test_db_init_records_the_identity_of_an_older_registry(config_file: Path) -> None:
    path = config_file.parent / "var" / "registry.sqlite"
    path.parent.mkdir()
    new_registry(path, devices=3)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE trustport_meta")  # as made by trustport before it recorded its identity
    conn.execute("PRAGMA application_id = 0")
    conn.commit()
    conn.close()
    with SqlDeviceStore(f"sqlite:///{path}") as reader:
        assert len(reader.list_devices()) == 3  # still usable: an upgrade is no outage
        health = reader.inspect()
    assert health.healthy and not health.identity_recorded
    status = db(config_file, "status")
    assert status.exit_code == 0 and "not recorded: run 'trustport db init'" in status.output
    result = db(config_file, "init")
    assert result.exit_code == 0 and "recorded trustport's identity" in result.output and "3 device(s)" in result.output
    with SqlDeviceStore(f"sqlite:///{path}") as reader:
        health = reader.inspect()
    assert health.identity_recorded and health.registry_id and health.devices == 3


def test_db_status_healthy(config_file: Path) -> None:
    assert db(config_file, "init").exit_code == 0
    result = db(config_file, "status")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines())
    assert lines["registry"].startswith("sqlite:///") and lines["registry"].endswith("var/registry.sqlite")
    assert (lines["state"], lines["schema"], lines["devices"], lines["healthy"]) == ("healthy", "1", "0", "yes")
    as_json = yaml.safe_load(db(config_file, "status", "--json").output)
    assert as_json["healthy"] is True and as_json["schema_version"] == 1 and as_json["devices"] == 0


@pytest.mark.parametrize("damage", DAMAGES, ids=DAMAGE_IDS)
def test_db_status_unhealthy_exits_non_zero(config_file: Path, damage: Damage) -> None:
    path = config_file.parent / "var" / "registry.sqlite"
    path.parent.mkdir()
    new_registry(path)
    damage.apply(path)
    before = snapshot(path)
    result = db(config_file, "status")
    assert result.exit_code == 1, result.output
    assert "healthy   NO" in result.output
    assert re.search(damage.message, result.output), result.output
    assert snapshot(path) == before


def test_db_status_finds_what_only_a_full_check_sees(config_file: Path) -> None:
    path = config_file.parent / "var" / "registry.sqlite"
    path.parent.mkdir()
    new_registry(path, devices=200)
    conn = sqlite3.connect(path)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'ix_jobs_state_not_before'").fetchone()
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(path, "r+b") as file:  # one page of an index nothing reads at authentication destroyed
        file.seek((root - 1) * page_size)
        file.write(random_bytes(page_size))
    assert db(config_file, "status", "--quick").exit_code == 0
    full = db(config_file, "status")
    assert full.exit_code == 1 and "quick_check" in full.output


def test_db_status_never_shows_the_password(pki: DevicePki, tmp_path: Path) -> None:
    secret = "S3cret-db-pass"
    path = write_config(pki, tmp_path / "trustport.yaml",
                        f"postgresql://trustport:{secret}@127.0.0.1:9/registry?connect_timeout=2")
    result = db(path, "status")
    assert result.exit_code == 1
    assert "postgresql+psycopg://trustport:***@127.0.0.1:9/registry" in result.output
    assert secret not in result.output



def test_a_registry_of_an_older_trustport_is_refused_until_db_init_adds_the_new_tables(tmp_path: Path) -> None:
    """An upgrade never turns an old registry into 'corrupt': it says what to run, and that keeps the data."""
    path = tmp_path / "registry.sqlite"
    new_registry(path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE attestation_seen")  # what a registry made before that table existed looks like
    conn.commit()
    conn.close()
    expected = re.escape("made by an older trustport: table(s) attestation_seen do not exist yet; run "
                         "'trustport db init'")
    with SqlDeviceStore(f"sqlite:///{path}") as store, pytest.raises(StoreError, match=expected):
        store.list_devices()
    with SqlDeviceStore(f"sqlite:///{path}", create=True) as store:
        done, health = store.initialise()
    assert done.startswith("upgraded") and health.healthy and health.devices == 40
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        assert len(store.list_devices()) == 40


def _registry_before_policy_revisions(path: Path) -> None:
    """What a registry made before decision_log.policy_revision, device_certificates and radius_servers looks like:
    the column and tables simply are not there (and an older decision is already logged)."""
    new_registry(path)
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        store.append_decision(_entry("before the upgrade"))
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE decision_log DROP COLUMN policy_revision")
    conn.execute("DROP TABLE device_certificates")
    conn.execute("DROP TABLE radius_servers")
    conn.commit()
    conn.close()


def test_a_registry_lacking_an_added_column_is_outdated_and_db_init_adds_it(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    _registry_before_policy_revisions(path)
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        health = store.inspect()
        assert health.state is RegistryState.OUTDATED
        assert "column(s) decision_log.policy_revision do not exist yet" in (health.problem or "")
        assert "device_certificates" in (health.problem or "") and "radius_servers" in (health.problem or "")
        with pytest.raises(StoreError, match="made by an older trustport"):
            store.decisions()
    with SqlDeviceStore(f"sqlite:///{path}", create=True) as store:
        done, health = store.initialise()
    assert done.startswith("upgraded") and health.healthy and health.devices == 40
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        store.append_decision(DecisionLogEntry(NOW, None, "after", _entry().context, Outcome.REJECT, None, None,
                                               ("after the upgrade",), policy_revision="abc123abc123"))
        newest, older = store.decisions(limit=2)
    assert (newest.policy_revision, older.policy_revision) == ("abc123abc123", None)
    assert older.reasons == ("before the upgrade",)


def test_a_registry_lacking_only_the_added_column_is_outdated_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    new_registry(path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE decision_log DROP COLUMN policy_revision")
    conn.commit()
    conn.close()
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        health = store.inspect()
    assert health.state is RegistryState.OUTDATED
    assert "made by an older trustport: column(s) decision_log.policy_revision do not exist yet; run 'trustport db " \
           "init'" in (health.problem or "")
    with SqlDeviceStore(f"sqlite:///{path}", create=True) as store:
        assert store.initialise()[0].startswith("upgraded")
    conn = sqlite3.connect(path)
    assert "policy_revision" in {row[1] for row in conn.execute("PRAGMA table_info(decision_log)")}
    conn.close()


def test_a_registry_lacking_another_column_is_still_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    new_registry(path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE decision_log DROP COLUMN user_name")
    conn.commit()
    conn.close()
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        health = store.inspect()
    assert health.state is RegistryState.CORRUPT and "lacks column(s) user_name" in (health.problem or "")


def test_db_init_adds_the_job_columns_and_the_index_an_older_registry_lacks(tmp_path: Path) -> None:
    """Registries made before batched enforcement: no bounce/failure columns on jobs, no session index."""
    path = tmp_path / "registry.sqlite"
    new_registry(path)
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX ix_jobs_session")
    for column in ("bounce_in_progress", "failure", "failures"):
        conn.execute(f"ALTER TABLE enforcement_jobs DROP COLUMN {column}")
    conn.commit()
    conn.close()
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        assert store.inspect().state is RegistryState.OUTDATED
    with SqlDeviceStore(f"sqlite:///{path}", create=True) as store:
        done, health = store.initialise()
    assert done.startswith("upgraded") and health.healthy
    conn = sqlite3.connect(path)
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(enforcement_jobs)")}
    columns = {row[1] for row in conn.execute("PRAGMA table_info(enforcement_jobs)")}
    conn.close()
    assert "ix_jobs_session" in indexes
    assert {"bounce_in_progress", "failure", "failures"} <= columns
