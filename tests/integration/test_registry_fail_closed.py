"""Real FreeRADIUS + eapol_test: the registry file is damaged while radiusd runs (the hook has it open, with
pages cached), and a registered operational device is rejected with EAP-Failure until the file is restored;
then it is accepted again without restarting radiusd. A revoked device never turns into a quarantined unknown,
and nothing is registered or recreated while the registry is damaged. On a real PostgreSQL, an empty or
foreign database is refused the same way (the identity lives in a table, not in a SQLite header)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from policy.errors import StoreError
from policy.model import DeviceKey, LifecycleState
from policy.x509facts import facts_from_certificate
from tests.support.postgres import PostgresServer
from tests.support.registry_damage import backup, delete, replace_foreign, replace_random, truncate_half, zero_bytes
from tests.support.store_contract import KEY
from trustport.cli.main import cli
from trustport.freeradius.run import EapolResult
from trustport.store.sql import RegistryState, SqlDeviceStore
from trustport_lab.lab import Lab

EAP_FAILURE = 4


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("lab-registry")
    with Lab(work, datetime.now(UTC), echo=lambda _m: None) as running:
        # The lab's own store may create a registry (it builds one): closed, so only radiusd's hook holds the file.
        running.store.close()
        revoked = CliRunner().invoke(cli, ["devices", "revoke", "SN-1102", "--reason", "stolen",
                                           "--config", str(running.config_path)])
        assert revoked.exit_code == 0, revoked.output
        yield running


def registry_path(lab: Lab) -> Path:
    database = sa.make_url(lab.config.database_url()).database
    assert database
    return Path(database)


def state_of(lab: Lab, serial: str) -> LifecycleState | None:
    facts = facts_from_certificate(lab.certificate(serial))
    with SqlDeviceStore(lab.config.database_url()) as reader:
        device = reader.find_device(DeviceKey(facts.issuer, serial))
    return device.state if device is not None else None


def assert_vlan(result: EapolResult, vlan: int) -> None:
    assert result.code == "Access-Accept", result.output[-2000:]
    assert result.attributes.get("Tunnel-Private-Group-Id") == str(vlan)


def assert_eap_reject(result: EapolResult) -> None:
    assert result.code == "Access-Reject", result.output[-2000:]
    assert result.eap_code == EAP_FAILURE
    assert "Tunnel-Private-Group-Id" not in result.attributes


DAMAGES: list[tuple[Callable[[Path], None], str]] = [
    (zero_bytes, r"is empty: the file has 0 bytes"),
    (truncate_half, r"is corrupt: truncated"),
    (replace_foreign, r"is not a trustport registry"),
    (replace_random, r"is not a trustport registry: the file is not a SQLite database"),
    (delete, r"is missing: .* does not exist \(it was deleted or moved while in use\)"),
]


@pytest.mark.parametrize(("damage", "logged"), DAMAGES, ids=[d.__name__ for d, _ in DAMAGES])
def test_damaged_registry_rejects_until_restored(lab: Lab, tmp_path: Path, damage: Callable[[Path], None],
                                                 logged: str) -> None:
    path = registry_path(lab)
    assert_vlan(lab.authenticate("SN-1001"), 30)  # healthy, and the hook now has the file open and cached
    saved = tmp_path / "backup.sqlite"
    backup(path, saved)
    log_start = lab.server.log_file.stat().st_size

    damage(path)
    damaged = path.read_bytes() if path.exists() else None
    assert_eap_reject(lab.authenticate("SN-1001"))  # registered and operational: still no accept
    assert_eap_reject(lab.authenticate("SN-1102"))  # revoked (deny list): not a quarantined unknown
    assert_eap_reject(lab.authenticate("SN-2002"))  # genuine unknown IDevID: not quarantined, not pending
    assert (path.read_bytes() if path.exists() else None) == damaged  # nothing recreated or written
    log = lab.server.log_file.read_bytes()[log_start:].decode(errors="replace")
    assert re.search(r"trustport: reject .*registry sqlite:///\S+ " + logged, log), log[-3000:]
    assert "Sent Access-Accept" not in log and "trustport: accept" not in log and "trustport: quarantine" not in log

    restored = path.with_name("restoring.sqlite")
    restored.write_bytes(saved.read_bytes())
    os.replace(restored, path)
    assert_vlan(lab.authenticate("SN-1001"), 30)  # the same radiusd, no restart
    assert state_of(lab, "SN-2002") is None  # nothing was registered while the registry was damaged
    assert state_of(lab, "SN-1102") is LifecycleState.DECOMMISSIONED
    assert_eap_reject(lab.authenticate("SN-1102"))


def test_db_status_of_the_running_lab(lab: Lab) -> None:
    result = CliRunner().invoke(cli, ["db", "status", "--config", str(lab.config_path)])
    assert result.exit_code == 0, result.output
    assert "healthy   yes" in result.output


# -- PostgreSQL: the same identity, in trustport_meta ------------------------------------------------------


def tables(postgres: PostgresServer, url: str) -> set[str]:
    with postgres.connect(url.rsplit("/", 1)[1]) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {str(r[0]) for r in rows}


def test_postgres_empty_database_is_refused_until_db_init(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    with SqlDeviceStore(url) as reader, pytest.raises(StoreError, match=r"registry postgresql\+psycopg://\S+:\*\*\*@"
                                                                     r"\S+ is empty: the database has no tables; "
                                                                     r"run 'trustport db init'"):
        reader.find_device(KEY)
    assert tables(postgres, url) == set()  # the reader created nothing
    with SqlDeviceStore(url, create=True) as creator:
        done, health = creator.initialise()
    assert done == "created" and health.healthy and health.registry_id and health.devices == 0
    with SqlDeviceStore(url, create=True) as creator:
        assert creator.initialise()[0] == "unchanged"
    with SqlDeviceStore(url) as reader:
        assert reader.find_device(KEY) is None


@pytest.mark.parametrize(("setup", "message"), [
    (["CREATE TABLE plants (name text)"], r"is not a trustport registry: it has tables \(plants\) but not trustport's; "
                                          r"point database.url at an empty database and run 'trustport db init'"),
    (["CREATE TABLE trustport_meta (key varchar(64) PRIMARY KEY, value text NOT NULL)",
      "INSERT INTO trustport_meta VALUES ('application', 'billing')"],
     r"is not a trustport registry: its trustport_meta names application 'billing'"),
])
def test_postgres_foreign_database_is_refused_even_by_db_init(postgres: PostgresServer, setup: list[str],
                                                              message: str) -> None:
    url = postgres.create_database()
    with postgres.connect(url.rsplit("/", 1)[1]) as conn:
        for statement in setup:
            conn.execute(statement)
        conn.commit()
    before = tables(postgres, url)
    for create in (False, True):
        with SqlDeviceStore(url, create=create) as store, pytest.raises(StoreError, match=message):
            store.find_device(KEY)
    with SqlDeviceStore(url, create=True) as creator, pytest.raises(StoreError, match=message):
        creator.initialise()
    assert tables(postgres, url) == before


def test_postgres_registry_emptied_while_in_use_fails_closed(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    with SqlDeviceStore(url, create=True) as creator:
        creator.add_device(KEY, state=LifecycleState.OPERATIONAL, now=datetime.now(UTC))
    with SqlDeviceStore(url) as store:
        assert store.find_device(KEY) is not None
        with postgres.connect(url.rsplit("/", 1)[1]) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
            conn.commit()
        with pytest.raises(StoreError, match=r"relation .*devices.* does not exist"):
            store.find_device(KEY)  # the statement fails, and makes the store look again
        with pytest.raises(StoreError, match=r"is empty: the database has no tables") as info:
            store.find_device(KEY)
        assert store.inspect().state is RegistryState.EMPTY
        assert "trustport_meta" not in str(info.value) and tables(postgres, url) == set()
