"""The hook with its cache and journal (the rendered default): an answered decision is on disk before the answer,
a decision that cannot be written is not given, and the cache never lets a second certificate take a first use."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from policy.model import CertKind, DeviceKey, DeviceRecord, LifecycleState, Outcome
from policy.x509facts import facts_from_certificate
from radius_hooks.hook import Hook
from tests.pki_fixtures import NOW, DevicePki
from tests.radius_pairs import freeradius_pairs
from tests.support.hook_env import REJECT, UPDATED, FakeRadiusd, valid_request, write_settings
from tests.unit.test_identity_binding import ISSUER, _copy_of_sn_0002
from trustport.store.sql import SqlDeviceStore


def _start(settings: Path) -> tuple[Hook, FakeRadiusd]:
    radiusd = FakeRadiusd()
    hook = Hook(radiusd, clock=lambda: NOW)
    assert hook.instantiate({"settings": str(settings)}) == 0
    return hook, radiusd


def _operational(operator: SqlDeviceStore, pki: DevicePki) -> DeviceRecord:
    """The test PKI's LDevID device, registered operational in production (bound to its certificate)."""
    facts = facts_from_certificate(pki.devices["ldevid-ok"].cert)
    assert facts.device_serial
    return operator.add_device(DeviceKey(facts.issuer, facts.device_serial), state=LifecycleState.OPERATIONAL,
                               now=NOW, segment="production", facts=facts)


def _journal_lines(directory: Path) -> list[dict[str, object]]:
    return [json.loads(line) for path in sorted(directory.glob("journal-*.jsonl"))
            for line in path.read_bytes().splitlines() if line]


def test_the_decision_is_on_disk_before_the_answer_and_applied_once(pki: DevicePki, tmp_path: Path) -> None:
    hook, _ = _start(write_settings(pki, tmp_path))
    registry = tmp_path / "registry.sqlite"
    with SqlDeviceStore(f"sqlite:///{registry}") as operator:
        device = _operational(operator, pki)
        blocker = sqlite3.connect(registry, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # nothing can be written to the registry now
        try:
            answers = [hook.check_eap_tls(valid_request(pki, "ldevid-ok", "ldevid")) for _ in range(3)]
            assert all(isinstance(a, tuple) and a[0] == UPDATED for a in answers)
            journaled = [r for r in _journal_lines(tmp_path / "journal") if r.get("device_id") == device.id]
            assert len(journaled) == 3  # written before each answer went out, with the registry locked
            assert operator.decisions(device.id) == []
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        hook.settle()
        hook.settle()  # a second drain applies nothing twice
        entries = operator.decisions(device.id, limit=10)
        assert [e.outcome for e in entries] == [Outcome.ACCEPT] * 3
    hook.detach(None)


def test_a_decision_that_cannot_be_journaled_is_not_given(pki: DevicePki, tmp_path: Path) -> None:
    hook, radiusd = _start(write_settings(pki, tmp_path))
    assert hook.runtime is not None and hook.runtime.journal is not None
    assert hook.check_eap_tls(valid_request(pki))[0] == UPDATED  # type: ignore[index]  # unknown: quarantine
    journal = hook.runtime.journal
    current = journal._files[-1]
    broken = os.open("/dev/null", os.O_RDONLY)
    os.dup2(broken, current.write_fd)  # the disk goes away under the open file: every write fails
    os.close(broken)
    radiusd.lines.clear()
    assert hook.check_eap_tls(valid_request(pki)) == REJECT
    assert any("failing closed" in line and "cannot write journal file" in line for _, line in radiusd.lines)


def test_a_second_certificate_cannot_take_a_first_use_on_another_server(pki: DevicePki, tmp_path: Path) -> None:
    """Two FreeRADIUS (two hooks, two caches) over one registry, a device registered without a certificate: the
    genuine certificate binds it on server A; a copy with the same serial on server B right after is refused,
    though B had the unbound record in its cache a moment before."""
    settings_a = write_settings(pki, tmp_path)
    settings_b = tmp_path / "b" / "hook.json"
    settings_b.parent.mkdir()
    shutil.copy(settings_a, settings_b)
    a, _ = _start(settings_a)
    b, radiusd_b = _start(settings_b)
    with SqlDeviceStore(f"sqlite:///{tmp_path / 'registry.sqlite'}") as operator:
        device = operator.add_device(DeviceKey(ISSUER, "SN-0002"), state=LifecycleState.OPERATIONAL, now=NOW,
                                     cert_kind=CertKind.LDEVID)
    genuine, copy = pki.devices["ldevid-ok"], _copy_of_sn_0002(pki)

    def request(issued: object) -> dict[str, object]:
        return {"request": freeradius_pairs(issued.cert, pki.cas["ldevid"].cert),  # type: ignore[attr-defined]
                "config": (("Auth-Type", "Accept"),), "reply": None}

    assert b.runtime is not None and b.runtime.cache is not None
    assert b.runtime.cache.find_device(DeviceKey(ISSUER, "SN-0002")) is not None  # B holds the unbound record
    assert a.check_eap_tls(request(genuine))[0] == UPDATED  # type: ignore[index]
    assert b.check_eap_tls(request(copy)) == REJECT
    assert any("does not match the registered one" in line for _, line in radiusd_b.lines)
    with SqlDeviceStore(f"sqlite:///{tmp_path / 'registry.sqlite'}") as reader:
        bound = reader.get_device(device.id)
    assert bound is not None and bound.cert_serial == format(genuine.cert.serial_number, "x")
    for hook in (a, b):
        hook.detach(None)


def _pending_reevaluations(registry: Path) -> list[str]:
    from trustport.store.attestation import SqlAttestationStore

    with SqlDeviceStore(f"sqlite:///{registry}") as reader:
        return [r.reason for r in SqlAttestationStore(reader).pending_reevaluations()]


def test_a_session_opened_on_a_decision_older_than_an_action_is_reevaluated(pki: DevicePki, tmp_path: Path) -> None:
    """The operator quarantines the device while its authentication is between the decision (check_eap_tls, an
    accept) and the Access-Accept (post_auth): the action planned its jobs without this session. Applying the session
    queues a re-evaluation, so the worker moves it too; an authentication with no action in between queues none."""
    hook, _ = _start(write_settings(pki, tmp_path))
    registry = tmp_path / "registry.sqlite"
    request = valid_request(pki, "ldevid-ok", "ldevid")
    with SqlDeviceStore(f"sqlite:///{registry}") as operator:
        device = _operational(operator, pki)
        assert hook.check_eap_tls(request)[0] == UPDATED  # type: ignore[index]
        hook.post_auth(request)
        hook.settle()
        assert _pending_reevaluations(registry) == []  # nothing changed in between
        assert hook.check_eap_tls(request)[0] == UPDATED  # type: ignore[index]  # decided ...
        operator.update_device(device.id, state=LifecycleState.QUARANTINED)  # ... the action commits ...
        hook.post_auth(request)  # ... and the Access-Accept goes out on the old decision
        hook.settle()
        (reason,) = _pending_reevaluations(registry)
        assert "before the device changed" in reason
    hook.detach(None)


def test_an_accounting_stop_finds_the_session_its_accept_journaled(pki: DevicePki, tmp_path: Path) -> None:
    """The Accept's session is still in the journal (its drainer has not run yet) when the NAS's Stop arrives: the
    Stop applies the journal first, so it closes that session instead of finding none (and the session staying
    open for good once the journal is applied)."""
    from trustport.store.sessions import SqlSessionStore

    hook, _ = _start(write_settings(pki, tmp_path))
    assert hook.runtime is not None and hook.runtime.journal is not None
    journal = hook.runtime.journal
    journal._stop.set()  # no drainer thread: only what the hook itself applies
    journal._wake.set()
    assert journal._thread is not None
    journal._thread.join()
    request = valid_request(pki, "ldevid-ok", "ldevid")
    with SqlDeviceStore(f"sqlite:///{tmp_path / 'registry.sqlite'}") as operator:
        device = _operational(operator, pki)
        assert hook.check_eap_tls(request)[0] == UPDATED  # type: ignore[index]
        hook.post_auth(request)
        sessions = SqlSessionStore(operator)
        assert sessions.active_for_device(device.id) == []  # journaled, not applied yet
        pairs = dict(request["request"])  # type: ignore[arg-type]
        stop = {"request": (("Acct-Status-Type", "Stop"), ("NAS-IP-Address", pairs["NAS-IP-Address"]),
                            ("Calling-Station-Id", pairs["Calling-Station-Id"]))}
        assert hook.accounting(stop) == 2  # OK
        assert sessions.active_for_device(device.id) == []
        with operator.transaction("test") as conn:
            from trustport.store.schema import sessions as table

            rows = conn.execute(table.select().where(table.c.device_id == device.id)).all()
        assert [(r.active, r.stopped_at is not None) for r in rows] == [(False, True)]  # opened, then closed
