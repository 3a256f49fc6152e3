"""A lifecycle action is one unit of work: state, audit, deny list and enforcement jobs commit together or not at all.

Faults are injected between the parts (the audit insert, the deny-list insert, the job enqueue); afterwards every
table an action touches must be exactly as before. The same checks run on PostgreSQL in
``tests/integration/test_lifecycle_atomic_postgres.py`` (they import the helpers from here).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from policy.errors import TrustportError
from policy.model import DeviceKey, DeviceRecord, LifecycleState, NetworkContext
from policy.x509facts import facts_from_certificate
from tests.attest_env import AttestEnv, make_env
from tests.enforce_env import EnforceEnv
from tests.pki_fixtures import DevicePki
from trustport.cli.main import cli
from trustport.services.lifecycle import ENFORCEMENT_OFF, LifecycleService
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.queue import SqlJobQueue
from trustport.store.schema import denied_certificates, devices, enforcement_jobs, lifecycle_events, sessions
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore

NOW = datetime.now(UTC).replace(microsecond=0)
MAC = "02-00-00-00-20-01"
S = LifecycleState
TABLES = (devices, lifecycle_events, denied_certificates, enforcement_jobs, sessions)


class Injected(RuntimeError):
    """The fault a test injects; deliberately not a TrustportError, like a crash or a driver failure."""


# (action, state the device starts in, VLAN its session is in): every case plans a job.
CASES = [
    ("approve", S.PENDING, 999),
    ("quarantine", S.OPERATIONAL, 30),
    ("release", S.QUARANTINED, 999),
    ("decommission", S.OPERATIONAL, 30),
    ("revoke", S.OPERATIONAL, 30),
    ("onboard", S.PENDING, 30),
    ("reonboard", S.OPERATIONAL, 30),
]
# The part to break, by where it lives; the deny list only for the action that writes it.
FAULTS = {"audit": (SqlLifecycleStore, "record_in"), "deny": (SqlLifecycleStore, "deny_in"),
          "enqueue": (SqlJobQueue, "enqueue_in")}
FAULT_CASES = [pytest.param(action, state, vlan, fault, id=f"{action}-{fault}")
               for action, state, vlan in CASES for fault in FAULTS if fault != "deny" or action == "revoke"]


def snapshot(store: SqlDeviceStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table a lifecycle action can touch."""
    with store.transaction("snapshot") as conn:
        return {t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(t.c.id))] for t in TABLES}


def connect(store: SqlDeviceStore, pki: DevicePki, name: str, *, state: S, vlan: int, port: str = "3",
            mac: str = MAC) -> DeviceRecord:
    """A registered device in ``state`` with an active session in ``vlan`` on NAS 127.0.0.1."""
    facts = facts_from_certificate(pki.devices[name].cert)
    assert facts.device_serial
    device = store.add_device(DeviceKey(facts.issuer, facts.device_serial), state=state, now=NOW, facts=facts,
                              segment="production")
    SqlSessionStore(store).authenticated(device.id, NetworkContext(nas_ip="127.0.0.1", nas_port=port,
                                                                   calling_station_id=mac), vlan, "production", NOW)
    return device


def inject(monkeypatch: pytest.MonkeyPatch, fault: str) -> list[int]:
    """Make one part raise; returns a list that counts how often it was reached."""
    owner, name = FAULTS[fault]
    reached: list[int] = []

    def broken(*_args: object, **_kwargs: object) -> Any:
        reached.append(1)
        raise Injected(f"injected fault in {name}")

    monkeypatch.setattr(owner, name, staticmethod(broken))
    return reached


def check_fault_changes_nothing(monkeypatch: pytest.MonkeyPatch, service: LifecycleService, store: SqlDeviceStore,
                                device: DeviceRecord, action: str, fault: str) -> None:
    before = snapshot(store)
    reached = inject(monkeypatch, fault)
    with pytest.raises(Injected):
        service.act(device, action, actor="op", reason="test", now=NOW)
    assert reached == [1]  # the fault really sat between parts of this action
    assert snapshot(store) == before
    monkeypatch.undo()
    result = service.act(device, action, actor="op", reason="test", now=NOW)  # and the action still works after
    assert result.after.state is not device.state or action == "reonboard"
    assert len([q for q in result.queued if q.job is not None]) == 1


def check_happy_path(service: LifecycleService, store: SqlDeviceStore, device: DeviceRecord) -> None:
    result = service.act(device, "revoke", actor="op", reason="stolen", now=NOW)
    assert (result.after.state, result.denied, result.enforcement_note) == (S.DECOMMISSIONED, True, None)
    (queued,) = result.queued
    assert queued.job is not None and queued.created
    after = snapshot(store)
    assert [r[1:4] for r in after["denied_certificates"]] == [
        (device.key.issuer, (device.cert_serial or "").lower(), device.id)]
    (event,) = SqlLifecycleStore(store).events(device.id)
    assert (event.action, event.from_state, event.to_state, event.actor, event.reason) == (
        "revoke", "operational", "decommissioned", "op", "stolen")
    (job,) = SqlJobQueue(store).list()
    assert (job.id, job.device_id, job.session_id, job.reason) == (queued.job.id, device.id, queued.session.id,
                                                                   "revoke by op: stolen")
    fresh = store.get_device(device.id)
    assert fresh is not None and fresh.state is S.DECOMMISSIONED and fresh.notes == "revoke by op: stolen"


def check_revoke_without_serial(service: LifecycleService, store: SqlDeviceStore, issuer: str) -> None:
    bare = store.add_device(DeviceKey(issuer, "SN-BARE"), state=S.OPERATIONAL, now=NOW)
    assert bare.cert_serial is None
    before = snapshot(store)
    with pytest.raises(TrustportError, match=r"SN-BARE: no certificate serial is known.*nothing was changed"):
        service.act(bare, "revoke", actor="op", reason="stolen", now=NOW)
    assert snapshot(store) == before


@pytest.fixture
def enforce(tmp_path: Path, pki: DevicePki) -> Iterator[EnforceEnv]:
    """Enforcement configured (the switch and NAS are never contacted: these tests only queue)."""
    environment = EnforceEnv(tmp_path, pki, switch_port=1, coa_port=2)
    environment.write(coa=False)
    yield environment
    environment.store.close()


@pytest.fixture
def plain(pki: DevicePki, tmp_path: Path) -> Iterator[AttestEnv]:
    """No enforcement section."""
    environment = make_env(pki, tmp_path)
    yield environment
    environment.store.close()


@pytest.mark.parametrize(("action", "state", "vlan", "fault"), FAULT_CASES)
def test_fault_between_parts_changes_nothing(monkeypatch: pytest.MonkeyPatch, enforce: EnforceEnv, pki: DevicePki,
                                             action: str, state: S, vlan: int, fault: str) -> None:
    device = connect(enforce.store, pki, "ldevid-ok", state=state, vlan=vlan)
    service = LifecycleService(enforce.config, enforce.store)
    check_fault_changes_nothing(monkeypatch, service, enforce.store, device, action, fault)


@pytest.mark.parametrize("fault", ["audit", "deny"])
def test_fault_without_enforcement_changes_nothing(monkeypatch: pytest.MonkeyPatch, plain: AttestEnv,
                                                   fault: str) -> None:
    device = plain.register("ldevid-ok", NOW)
    before = snapshot(plain.store)
    reached = inject(monkeypatch, fault)
    with pytest.raises(Injected):
        LifecycleService(plain.config, plain.store).act(device, "revoke", actor="op", reason=None, now=NOW)
    assert (reached, snapshot(plain.store)) == ([1], before)


def test_happy_path_writes_every_part(enforce: EnforceEnv, pki: DevicePki) -> None:
    device = connect(enforce.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    check_happy_path(LifecycleService(enforce.config, enforce.store), enforce.store, device)


def test_revoke_without_certificate_serial_changes_nothing(enforce: EnforceEnv, pki: DevicePki) -> None:
    device = connect(enforce.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    check_revoke_without_serial(LifecycleService(enforce.config, enforce.store), enforce.store, device.key.issuer)


def test_revoke_without_certificate_serial_on_the_cli(plain: AttestEnv) -> None:
    issuer = facts_from_certificate(plain.pki.devices["ldevid-ok"].cert).issuer
    plain.store.add_device(DeviceKey(issuer, "SN-BARE"), state=S.OPERATIONAL, now=NOW)
    before = snapshot(plain.store)
    result = CliRunner().invoke(cli, ["devices", "revoke", "SN-BARE", "--config", str(plain.config_path)])
    assert result.exit_code == 2
    assert "no certificate serial is known" in result.output and "nothing was changed" in result.output
    assert snapshot(plain.store) == before


def test_refused_transition_and_unknown_segment_change_nothing(enforce: EnforceEnv, pki: DevicePki) -> None:
    device = connect(enforce.store, pki, "ldevid-ok", state=S.QUARANTINED, vlan=999)
    service = LifecycleService(enforce.config, enforce.store)
    before = snapshot(enforce.store)
    with pytest.raises(TrustportError, match="'approve' applies to"):
        service.act(device, "approve", actor="op", reason=None, now=NOW)
    with pytest.raises(TrustportError, match="segment 'nowhere' is not defined"):
        service.act(device, "release", actor="op", reason=None, now=NOW, segment="nowhere")
    assert snapshot(enforce.store) == before


def test_already_denied_certificate_still_revokes(enforce: EnforceEnv, pki: DevicePki) -> None:
    device = connect(enforce.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    assert device.cert_serial
    SqlLifecycleStore(enforce.store).deny(device.key.issuer, device.cert_serial, device_id=None, time=NOW,
                                          actor="earlier", reason="known bad")
    result = LifecycleService(enforce.config, enforce.store).act(device, "revoke", actor="op", reason=None, now=NOW)
    assert (result.after.state, result.denied) == (S.DECOMMISSIONED, False)
    assert [r[5] for r in snapshot(enforce.store)["denied_certificates"]] == ["earlier"]  # the first entry stays
    assert len(SqlLifecycleStore(enforce.store).events(device.id)) == 1


def test_device_changed_after_planning_is_planned_again(enforce: EnforceEnv, pki: DevicePki) -> None:
    device = connect(enforce.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    service = LifecycleService(enforce.config, enforce.store)
    prepared = service.prepare(device, "decommission", actor="op", reason=None, now=NOW)
    enforce.store.update_device(device.id, state=S.QUARANTINED)  # another operator, meanwhile
    before = snapshot(enforce.store)
    with pytest.raises(Exception, match="changed"):
        service.commit(prepared)
    assert snapshot(enforce.store) == before
    result = service.act(device, "decommission", actor="op", reason=None, now=NOW)  # the stale record is re-read
    assert result.before.state is S.QUARANTINED
    (event,) = SqlLifecycleStore(enforce.store).events(device.id)
    assert event.from_state == "quarantined"


def test_session_opened_after_planning_is_planned_again(enforce: EnforceEnv, pki: DevicePki) -> None:
    device = connect(enforce.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    service = LifecycleService(enforce.config, enforce.store)
    prepared = service.prepare(device, "quarantine", actor="op", reason=None, now=NOW)
    SqlSessionStore(enforce.store).authenticated(device.id, NetworkContext(
        nas_ip="127.0.0.1", nas_port="4", calling_station_id="02-00-00-00-20-02"), 30, "production", NOW)
    with pytest.raises(Exception, match="sessions"):
        service.commit(prepared)
    result = service.act(device, "quarantine", actor="op", reason=None, now=NOW)
    assert len([q for q in result.queued if q.job is not None]) == 2  # both ports are moved


def _cli(env: EnforceEnv | AttestEnv, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["devices", *args, "--json", "--config", str(env.config_path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _refs(device: DeviceRecord) -> dict[str, Callable[[], list[str]]]:
    serial = device.key.serial_number
    return {"id and serial": lambda: [serial, str(device.id)], "serial twice": lambda: [serial, serial],
            "id twice": lambda: [str(device.id), str(device.id)]}


@pytest.mark.parametrize("naming", ["id and serial", "serial twice", "id twice"])
def test_device_named_twice_is_acted_on_once(enforce: EnforceEnv, pki: DevicePki, naming: str) -> None:
    device = connect(enforce.store, pki, "ldevid-ok", state=S.OPERATIONAL, vlan=30)
    out = _cli(enforce, "quarantine", *_refs(device)[naming]())
    assert (len(out["changed"]), out["errors"]) == (1, [])
    assert len(out["changed"][0]["jobs"]) == 1
    assert len(SqlLifecycleStore(enforce.store).events(device.id)) == 1
    assert len(SqlJobQueue(enforce.store).list()) == 1


def test_serial_spelt_two_ways_is_acted_on_once(plain: AttestEnv) -> None:
    issuer = facts_from_certificate(plain.pki.devices["ldevid-ok"].cert).issuer
    composed = unicodedata.normalize("NFC", "SN-CAFÉ-1")
    device = plain.store.add_device(DeviceKey(issuer, composed), state=S.OPERATIONAL, now=NOW)
    other = plain.register("idevid-ok", NOW, state=S.PENDING)
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    out = _cli(plain, "quarantine", decomposed, other.key.serial_number, composed, str(device.id))
    assert [c["device"]["id"] for c in out["changed"]] == [device.id, other.id]  # order of first appearance
    assert out["errors"] == []
    assert len(SqlLifecycleStore(plain.store).events(device.id)) == 1


def test_unknown_reference_acts_on_nothing(plain: AttestEnv) -> None:
    device = plain.register("ldevid-ok", NOW)
    before = snapshot(plain.store)
    result = CliRunner().invoke(cli, ["devices", "quarantine", device.key.serial_number, "SN-NOPE", "999999",
                                      "--config", str(plain.config_path)])
    assert result.exit_code != 0
    assert "SN-NOPE" in result.output and "999999" in result.output and "nothing was changed" in result.output
    assert snapshot(plain.store) == before


def test_without_enforcement_the_action_commits_and_says_ports_are_not_moved(plain: AttestEnv) -> None:
    device = plain.register("ldevid-ok", NOW)
    result = LifecycleService(plain.config, plain.store).act(device, "quarantine", actor="op", reason=None, now=NOW)
    assert (result.after.state, result.queued, result.enforcement_note) == (S.QUARANTINED, [], ENFORCEMENT_OFF)
    assert len(SqlLifecycleStore(plain.store).events(device.id)) == 1
    text = CliRunner().invoke(cli, ["devices", "release", str(device.id), "--config", str(plain.config_path)])
    assert text.exit_code == 0, text.output
    assert "connected ports are not moved" in text.output
    assert _cli(plain, "quarantine", str(device.id))["enforcement"] == ENFORCEMENT_OFF


@pytest.mark.parametrize(("action", "state", "vlan"), CASES)
def test_planned_jobs_agree_with_enforcement_device_changed(enforce: EnforceEnv, pki: DevicePki, action: str,
                                                            state: S, vlan: int) -> None:
    """The service plans on its own (to write inside its transaction): it must plan what Enforcement would."""
    device = connect(enforce.store, pki, "ldevid-ok", state=state, vlan=vlan)
    service = LifecycleService(enforce.config, enforce.store)
    assert service.enforcement is not None
    prepared = service.prepare(device, action, actor="op", reason=None, now=NOW)
    assert prepared.jobs is not None
    ours = [(p.session.id, p.decision, p.plan.to_json() if p.plan else None, p.lock_key) for p in prepared.jobs]
    theirs = [(q.session.id, q.decision, q.job.plan.to_json() if q.job else None, q.job.lock_key if q.job else None)
              for q in service.enforcement.device_changed(prepared.after, "compare", NOW)]
    assert ours == theirs
