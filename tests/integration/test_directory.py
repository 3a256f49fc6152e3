"""The directory sync against a real OpenLDAP slapd (trustport_lab.slapd): LDAPS with a test CA, StartTLS, a wrong
password, a wrong CA, an unreachable server (the last data stays in force), an entry disabled and then removed
(enforced through the queue on a fake switch), hostile values, the mass-removal guard, Active Directory computer
objects, the CLI, and the worker's scheduled sync."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap3
import pytest
from click.testing import CliRunner

from policy.model import DeviceKey, LifecycleState
from policy.x509facts import facts_from_certificate
from tests.enforce_env import ENV, EnforceEnv, fake_switch
from tests.pki_fixtures import DevicePki
from trustport.app import App
from trustport.cli.main import cli
from trustport.directory.client import DirectoryAuthError, DirectoryTlsError, DirectoryUnreachable
from trustport.services.directory import DirectoryScheduler, MassRemoval
from trustport.store.directory import SqlDirectoryStore
from trustport.store.lifecycle import SqlLifecycleStore
from trustport_lab.slapd import Slapd, ad_computer_ldif, device_ldif, generated_devices, running_slapd

MAC = "02-00-00-00-12-01"
S = LifecycleState


def issuer_of(pki: DevicePki, name: str) -> tuple[str, str]:
    facts = facts_from_certificate(pki.devices[name].cert)
    assert facts.device_serial
    return facts.issuer, facts.device_serial


def entry(cn: str, serial: str, issuer: str, *, approved: str = "TRUE", **extra: str) -> dict[str, str]:
    return {"cn": cn, "serialNumber": serial, "trustportIssuer": issuer, "trustportApproved": approved, **extra}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def switch() -> Iterator[Any]:
    with fake_switch() as server:
        yield server


@pytest.fixture
def slapd(pki: DevicePki) -> Iterator[Slapd]:
    issuer, _ = issuer_of(pki, "idevid-ok")
    ldif = device_ldif([
        entry("camera-1", "SN-0001", issuer, trustportSegment="cameras", trustportOwner="facilities",
              trustportDeviceClass="camera", trustportSite="hq"),
        entry("sensor-7", "SN-7007", issuer, approved="FALSE", trustportOwner="labs"),
    ], "ou=devices,dc=example,dc=org")
    with running_slapd(ldif=ldif) as server:
        yield server


def directory_section(slapd: Slapd, *, starttls: bool = False, **over: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "url": slapd.ldap_url if starttls else slapd.ldaps_url, "start_tls": starttls,
        "ca_file": str(slapd.ca_file), "bind_dn": slapd.bind_dn, "bind_password": {"env": "TP_TEST_LDAP_PASSWORD"},
        "base_dn": slapd.devices_dn, "timeout_seconds": 3}
    section.update(over)
    return section


@pytest.fixture
def env(tmp_path: Path, pki: DevicePki, switch: Any, slapd: Slapd,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[EnforceEnv]:
    monkeypatch.setenv("TP_TEST_LDAP_PASSWORD", slapd.bind_password)
    environment = EnforceEnv(tmp_path, pki, switch.ports["cisco_ios"], 9, host_key_lines=switch.known_hosts_lines())
    yield environment
    if hasattr(environment, "store"):
        environment.store.close()


def sync(env: EnforceEnv, **kw: Any) -> Any:
    with App(env.config) as app:
        return app.directory.sync(datetime.now(UTC), **kw)


def device(env: EnforceEnv, serial: str) -> Any:
    return next(d for d in env.store.list_devices() if d.key.serial_number == serial)


def status(env: EnforceEnv) -> Any:
    return SqlDirectoryStore(env.store, "directory").status()


def test_ldaps_sync_adds_approved_and_disabled_devices_audited_as_the_directory(env: EnforceEnv, slapd: Slapd,
                                                                               pki: DevicePki) -> None:
    env.write(coa=False, directory=directory_section(slapd))
    report = sync(env)
    assert report.counts()["added"] == 2, report.summary()
    camera, sensor = device(env, "SN-0001"), device(env, "SN-7007")
    assert (camera.state, camera.segment, camera.owner, camera.device_class, camera.location) == (
        S.OPERATIONAL, "cameras", "facilities", "camera", "hq")
    assert (sensor.state, sensor.owner) == (S.PENDING, "labs")
    (event,) = SqlLifecycleStore(env.store).events(camera.id)
    assert (event.actor, event.action, event.to_state) == ("directory", "directory-add", "operational")
    again = sync(env)  # nothing changed in the directory: nothing is written
    assert (again.counts()["added"], again.counts()["changed"], again.counts()["unchanged"]) == (0, 0, 2)
    recorded = status(env)
    assert recorded.up and recorded.entries == 2 and recorded.linked == 2


def test_starttls_sync(env: EnforceEnv, slapd: Slapd) -> None:
    env.write(coa=False, directory=directory_section(slapd, starttls=True))
    assert sync(env).counts()["added"] == 2


def test_plain_ldap_without_starttls_is_refused_by_the_config(env: EnforceEnv, slapd: Slapd) -> None:
    with pytest.raises(Exception, match="would send the bind password in clear"):
        env.write(coa=False, directory=directory_section(slapd) | {"url": slapd.ldap_url})


def test_wrong_password_is_refused_recorded_and_never_shown(env: EnforceEnv, slapd: Slapd,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP_TEST_LDAP_PASSWORD", "not-the-password-4711")
    env.write(coa=False, directory=directory_section(slapd))
    with pytest.raises(DirectoryAuthError, match="invalid credentials") as caught:
        sync(env)
    assert "4711" not in str(caught.value) and slapd.bind_password not in str(caught.value)
    assert env.store.list_devices() == []
    recorded = status(env)
    assert not recorded.up and "invalid credentials" in (recorded.last_error or "")
    assert "4711" not in json.dumps(recorded.__dict__, default=str)


@pytest.mark.parametrize("starttls", [False, True])
def test_wrong_ca_is_refused(env: EnforceEnv, slapd: Slapd, starttls: bool) -> None:
    env.write(coa=False, directory=directory_section(slapd, starttls=starttls, ca_file=str(slapd.wrong_ca_file)))
    with pytest.raises(DirectoryTlsError, match="certificate"):
        sync(env)
    assert env.store.list_devices() == []


def test_unreachable_directory_keeps_the_last_data_in_force_and_shows_the_outage(
        env: EnforceEnv, slapd: Slapd, caplog: pytest.LogCaptureFixture) -> None:
    env.write(coa=False, directory=directory_section(slapd))
    sync(env)
    before = env.store.list_devices()
    slapd.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="trustport.directory"), \
                pytest.raises(DirectoryUnreachable, match="no connection or no answer"):
            sync(env)
        assert env.store.list_devices() == before  # nothing was removed or disabled
        assert any("stays in force" in r.getMessage() for r in caplog.records)
        runner = CliRunner()
        shown = runner.invoke(cli, ["directory", "status", "--config", str(env.config_path)])
        assert shown.exit_code == 1 and "DOWN" in shown.output and "2 entries" in shown.output, shown.output
        metrics = runner.invoke(cli, ["directory", "status", "--prometheus", "--config", str(env.config_path)])
        assert 'trustport_directory_up{directory="directory"} 0' in metrics.output
        assert 'trustport_directory_sync_failures_total{directory="directory"} 1' in metrics.output
        # the auth path reads only the registry: the operational camera is still placed in its segment
        decided = runner.invoke(cli, ["decide", "--cert", str(env.pki.cert_path("idevid-ok")), "--json",
                                      "--config", str(env.config_path)])
        assert decided.exit_code == 0, decided.output
        assert json.loads(decided.output)["decision"]["segment"] == "cameras"
    finally:
        slapd.start()
    sync(env)
    assert status(env).up


def test_disabled_then_removed_entry_is_enforced_through_the_queue(env: EnforceEnv, slapd: Slapd,
                                                                  switch: Any, pki: DevicePki) -> None:
    issuer, serial = issuer_of(pki, "ldevid-ok")
    env.write(coa=False, directory=directory_section(slapd))
    env.connected_device("ldevid-ok", "3", MAC)  # operational, connected on Gi1/0/3 in VLAN 30
    dn = f"cn=door-3,{slapd.devices_dn}"
    with slapd.admin() as admin:
        admin.add(dn, ["device", "trustportDevice"], {"serialNumber": serial, "trustportIssuer": issuer,
                                                      "trustportApproved": "TRUE"})
    assert sync(env).counts()["link"] == 1
    with slapd.admin() as admin:
        admin.modify(dn, {"trustportApproved": [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
    report = sync(env)
    assert (report.counts()["quarantined"], report.jobs) == (1, 1), report.summary()
    door = device(env, serial)
    assert door.state is S.QUARANTINED
    event = SqlLifecycleStore(env.store).events(door.id)[0]
    assert (event.actor, event.action) == ("directory", "quarantine") and dn in (event.reason or "")
    jobs = run_worker(env)
    assert [j.state for j in jobs] == ["done"], [j.log for j in jobs]
    assert switch.states["cisco_ios"].ports["GigabitEthernet1/0/3"].vlan == 999
    with slapd.admin() as admin:
        admin.delete(dn)
    report = sync(env)
    assert (report.counts()["decommissioned"], report.jobs) == (1, 1), report.summary()
    (job,) = run_worker(env)  # the decommissioned device's port: kept in quarantine, bounced so it re-authenticates
    assert job.state == "done" and "bounced, up in VLAN 999 (read back)" in job.log[-1]["message"], job.log
    assert switch.states["cisco_ios"].ports["GigabitEthernet1/0/3"].bounces == 2
    assert device(env, serial).state is S.DECOMMISSIONED
    assert SqlLifecycleStore(env.store).events(door.id)[0].actor == "directory"
    assert all(link.dn != dn for link in SqlDirectoryStore(env.store, "directory").links())


def run_worker(env: EnforceEnv) -> list[Any]:
    with App(env.config) as app:
        return app.worker(concurrency=1, worker_id="test").drain()


def test_reenabled_entry_releases_only_what_the_directory_quarantined(env: EnforceEnv, slapd: Slapd) -> None:
    env.write(coa=False, directory=directory_section(slapd))
    sync(env)
    sensor = device(env, "SN-7007")  # pending (disabled in the directory)
    dn = f"cn=sensor-7,{slapd.devices_dn}"
    with slapd.admin() as admin:
        admin.modify(dn, {"trustportApproved": [(ldap3.MODIFY_REPLACE, ["TRUE"])]})
    assert sync(env).counts()["approved"] == 1 and device(env, "SN-7007").state is S.OPERATIONAL
    with slapd.admin() as admin:
        admin.modify(dn, {"trustportApproved": [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
    sync(env)
    assert device(env, "SN-7007").state is S.QUARANTINED
    with slapd.admin() as admin:
        admin.modify(dn, {"trustportApproved": [(ldap3.MODIFY_REPLACE, ["TRUE"])]})
    assert sync(env).counts()["released"] == 1 and device(env, "SN-7007").state is S.OPERATIONAL
    # an operator's quarantine is never loosened by the directory
    with App(env.config) as app:
        app.lifecycle.act(device(env, "SN-7007"), "quarantine", actor="alice", reason="odd traffic",
                          now=datetime.now(UTC))
    report = sync(env)
    assert device(env, "SN-7007").state is S.QUARANTINED and report.counts().get("released", 0) == 0
    assert sensor.id == device(env, "SN-7007").id


HOSTILE: list[dict[str, str | list[str]]] = [
    {"cn": "star", "serialNumber": "*)(objectClass=*", "trustportIssuer": "/C=US/O=Acme/CN=Acme IDevID CA",
     "trustportApproved": "TRUE"},
    {"cn": "ctrl", "serialNumber": "SN-CTRL", "trustportIssuer": "/C=US/O=Acme/CN=Acme IDevID CA",
     "trustportApproved": "TRUE", "trustportOwner": "ops\x1b[2J\nroot"},
    {"cn": "long", "serialNumber": "SN-LONG", "trustportIssuer": "/C=US/O=Acme/CN=Acme IDevID CA",
     "trustportApproved": "TRUE", "trustportDeviceClass": "x" * 5000},
    {"cn": "segment", "serialNumber": "SN-SEG", "trustportIssuer": "/C=US/O=Acme/CN=Acme IDevID CA",
     "trustportApproved": "TRUE", "trustportSegment": "production"},
    {"cn": "undefined", "serialNumber": "SN-UNDEF", "trustportIssuer": "/C=US/O=Acme/CN=Acme IDevID CA",
     "trustportApproved": "TRUE", "trustportSegment": "admin-vlan"},
    {"cn": "two-serials", "serialNumber": ["SN-A", "SN-B"], "trustportIssuer": "/C=US/O=Acme/CN=Acme IDevID CA",
     "trustportApproved": "TRUE"},
    {"cn": "forged-issuer", "serialNumber": "SN-FORGE",  # a second attribute hidden in a multi-valued RDN
     "trustportIssuer": "/C=US/O=Acme/CN=Acme IDevID CA+serialNumber=1", "trustportApproved": "TRUE"},
    {"cn": "dup-1", "serialNumber": "SN-DUP", "trustportIssuer": "/C=US/O=Acme/CN=Acme IDevID CA",
     "trustportApproved": "TRUE", "trustportSegment": "cameras"},
    {"cn": "dup-2", "serialNumber": "SN-DUP", "trustportIssuer": "CN=Acme IDevID CA,O=Acme,C=US",
     "trustportApproved": "TRUE"},
    {"cn": "ok", "serialNumber": "SN-OK", "trustportIssuer": "CN=Acme IDevID CA,O=Acme,C=US",
     "trustportApproved": "TRUE", "trustportSegment": "cameras"},
]


def test_hostile_values_are_data_refused_or_escaped_never_widening(tmp_path: Path, pki: DevicePki, switch: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with running_slapd(ldif=device_ldif(HOSTILE, "ou=devices,dc=example,dc=org")) as server:
        monkeypatch.setenv("TP_TEST_LDAP_PASSWORD", server.bind_password)
        env = EnforceEnv(tmp_path, pki, switch.ports["cisco_ios"], 9, host_key_lines=switch.known_hosts_lines())
        env.write(coa=False, directory=directory_section(server, allowed_segments=["cameras"]))
        report = sync(env)
        refused = {c.dn.split(",")[0]: c.detail for c in report.plan.changes if c.kind.value == "refused"}
        assert set(refused) == {"cn=ctrl", "cn=long", "cn=segment", "cn=undefined", "cn=two-serials",
                                "cn=forged-issuer", "cn=dup-1", "cn=dup-2"}, refused
        assert "control or invisible character U+001B" in refused["cn=ctrl"]
        assert "5000 characters long" in refused["cn=long"]
        assert "'production' is not a segment the directory may assign" in refused["cn=segment"]
        assert "2 values" in refused["cn=two-serials"]
        assert "2 entries" in refused["cn=dup-1"]
        added = {d.key.serial_number: d for d in env.store.list_devices()}
        assert set(added) == {"*)(objectClass=*", "SN-OK"}  # a serial with filter metacharacters is just a serial
        assert added["SN-OK"].key == DeviceKey("/C=US/O=Acme/CN=Acme IDevID CA", "SN-OK")  # RFC 4514 issuer read
        with App(env.config) as app:
            lookup = app.directory.client.lookup("*)(objectClass=*")
            assert [dn for dn, _ in lookup] == [f"cn=star,{server.devices_dn}"]  # escaped: exactly that entry
            assert app.directory.client.lookup("*") == []  # a wildcard is a character, not "every device"
        env.store.close()


def test_a_listing_that_would_remove_most_devices_is_refused(env: EnforceEnv, slapd: Slapd) -> None:
    env.write(coa=False, directory=directory_section(slapd))
    sync(env)
    env.write(coa=False, directory=directory_section(slapd, filter="(cn=no-such-device)"))  # a filter typo
    with pytest.raises(MassRemoval, match="would take out 2 of 2 linked devices"):
        sync(env)
    assert {d.state for d in env.store.list_devices()} == {S.OPERATIONAL, S.PENDING}
    assert not status(env).up
    report = sync(env, allow_mass_removal=True)
    assert report.counts()["decommissioned"] == 2


def test_active_directory_computers(tmp_path: Path, pki: DevicePki, switch: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    issuer, serial = issuer_of(pki, "idevid-ok")
    computers = [
        {"cn": "CAM-01", "serialNumber": serial, "userAccountControl": "4096", "description": "camera",
         "managedBy": "cn=facilities,ou=services,dc=example,dc=org", "location": "hq/building 2"},
        {"cn": "CAM-02", "serialNumber": "AD-0002", "userAccountControl": "4098", "description": "camera"},
        {"cn": "CAM-03", "serialNumber": "AD-0003", "userAccountControl": "not-a-number"},
    ]
    with running_slapd(ldif=ad_computer_ldif(computers, "ou=devices,dc=example,dc=org"), ad_schema=True) as server:
        monkeypatch.setenv("TP_TEST_LDAP_PASSWORD", server.bind_password)
        env = EnforceEnv(tmp_path, pki, switch.ports["cisco_ios"], 9, host_key_lines=switch.known_hosts_lines())
        env.write(coa=False, directory=directory_section(server, mapping="active-directory", default_issuer=issuer))
        report = sync(env)
        assert report.counts()["refused"] == 1, report.summary()
        cam1, cam2 = device(env, serial), device(env, "AD-0002")
        assert (cam1.state, cam1.device_class, cam1.owner, cam1.location) == (
            S.OPERATIONAL, "camera", "cn=facilities,ou=services,dc=example,dc=org", "hq/building 2")
        assert cam2.state is S.PENDING  # ACCOUNTDISABLE: not approved
        env.store.close()


def test_cli_sync_dry_run_writes_nothing_then_sync_and_status(env: EnforceEnv, slapd: Slapd) -> None:
    env.write(coa=False, directory=directory_section(slapd))
    runner = CliRunner()
    dry = runner.invoke(cli, ["directory", "sync", "--dry-run", "--config", str(env.config_path)])
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing written: 2 entries, 2 added" in dry.output
    assert env.store.list_devices() == [] and status(env) is None
    done = runner.invoke(cli, ["directory", "sync", "--json", "--config", str(env.config_path)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["counts"]["added"] == 2
    shown = runner.invoke(cli, ["directory", "status", "--config", str(env.config_path)])
    assert shown.exit_code == 0 and "up; data from" in shown.output, shown.output


def test_the_worker_schedule_syncs_in_its_own_thread(env: EnforceEnv, slapd: Slapd) -> None:
    env.write(coa=False, directory=directory_section(slapd))
    with App(env.config) as app:
        scheduler = DirectoryScheduler(lambda: app.directory, 0.2, lambda: datetime.now(UTC))
        scheduler.start()
        deadline = time.monotonic() + 20
        while scheduler.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        scheduler.stop()
    assert scheduler.runs >= 2
    assert len(env.store.list_devices()) == 2 and status(env).up


def test_worker_command_runs_the_directory_sync(env: EnforceEnv, slapd: Slapd) -> None:
    env.write(coa=False, directory=directory_section(slapd, interval_seconds=10))
    result = CliRunner().invoke(cli, ["worker", "--max-seconds", "2", "--config", str(env.config_path)])
    assert result.exit_code == 0, result.output
    assert len(env.store.list_devices()) == 2 and status(env).up



def test_ten_thousand_entries_are_paged_and_a_one_percent_resync_writes_only_the_changes(
        tmp_path: Path, pki: DevicePki, switch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    devices = generated_devices(10_000)  # more than the server's size limit of 1,000: only paging reads them all
    with running_slapd(ldif=device_ldif(devices, "ou=devices,dc=example,dc=org")) as server:
        monkeypatch.setenv("TP_TEST_LDAP_PASSWORD", server.bind_password)
        env = EnforceEnv(tmp_path, pki, switch.ports["cisco_ios"], 9, host_key_lines=switch.known_hosts_lines())
        env.write(coa=False, directory=directory_section(server, page_size=500))
        first = sync(env)
        assert (first.counts()["entries"], first.counts()["added"]) == (10_000, 10_000), first.summary()
        assert len(env.store.list_devices()) == 10_000
        with server.admin() as admin:
            for i in range(1, 10_001, 100):  # 1 %: a new owner for 100 devices
                admin.modify(f"cn=dev-{i:05d},{server.devices_dn}",
                             {"trustportOwner": [(ldap3.MODIFY_REPLACE, ["security"])]})
        second = sync(env)
        counts = second.counts()
        assert (counts["changed"], counts["added"], counts["unchanged"]) == (100, 0, 9_900), second.summary()
        assert sum(d.owner == "security" for d in env.store.list_devices()) == 100
        print(f"\n10,000 entries: first sync {first.seconds:.1f} s (read {first.read_seconds:.1f} s); "
              f"1 % changed: {second.seconds:.1f} s (read {second.read_seconds:.1f} s)")
        env.store.close()
