"""Behaviour every ``SqlDeviceStore`` backend must show, written once.

A test module subclasses ``StoreContract`` (named ``Test...``) and provides a ``backend`` fixture that
returns a ``StoreBackend``: the SQLite one in ``tests/unit``, the PostgreSQL one in ``tests/integration``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import pytest
import sqlalchemy as sa

from policy.errors import DeviceExists, DeviceNotFound, StoreError
from policy.model import (
    AuditNote,
    CertificateFacts,
    CertKind,
    DecisionLogEntry,
    DeviceKey,
    LifecycleState,
    NetworkContext,
    Outcome,
)
from policy.store import DeviceStore
from trustport.store.sql import SCHEMA_VERSION, SqlDeviceStore

NOW = datetime(2026, 11, 27, 3, 30, 15, 123456, tzinfo=UTC)
ISSUER = "/C=DE/O=Acme Devices/CN=Acme IDevID CA"
KEY = DeviceKey(issuer=ISSUER, serial_number="SN-0001")
FP = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def facts_for(key: DeviceKey = KEY, **overrides: Any) -> CertificateFacts:
    base = CertificateFacts(
        source="radius",
        subject=f"/C=DE/O=Acme/CN=sensor/serialNumber={key.serial_number}",
        issuer=key.issuer,
        cert_serial="1a2b3c",
        device_serial=key.serial_number,
        mud_url="https://mud.example.com/sensor.json",
        fingerprint_sha256=FP,
    )
    return replace(base, **overrides)


def entry(device_id: int | None, at: datetime, outcome: Outcome = Outcome.ACCEPT, **kw: Any) -> DecisionLogEntry:
    values: dict[str, Any] = {
        "time": at,
        "device_id": device_id,
        "device": str(KEY),
        "context": NetworkContext(nas_ip="192.0.2.1", calling_station_id="00-11-22-33-44-55"),
        "outcome": outcome,
        "vlan": None if outcome is Outcome.REJECT else 20,
        "segment": None if outcome is Outcome.REJECT else "sensors",
        "reasons": ("certificate valid",),
    }
    values.update(kw)
    return DecisionLogEntry(**values)


class StoreBackend(Protocol):
    name: str

    def fresh_url(self) -> str:
        """URL of a new, empty database."""

    def hold_write_lock(self, url: str) -> AbstractContextManager[None]:
        """While entered, another session blocks writes to ``decision_log``."""


class StoreContract:
    """Shared behaviour tests; subclasses supply the ``backend`` fixture."""

    @pytest.fixture
    def store_url(self, backend: StoreBackend) -> str:
        return backend.fresh_url()

    @pytest.fixture
    def store(self, store_url: str) -> Iterator[SqlDeviceStore]:
        with SqlDeviceStore(store_url, create=True) as store:
            yield store

    def test_satisfies_the_protocol(self, store: SqlDeviceStore) -> None:
        as_protocol: DeviceStore = store
        assert as_protocol.find_device(KEY) is None

    # -- registry ------------------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("kwargs", "expected"),
        [
            ({}, {"segment": None, "owner": None, "notes": None, "cert_kind": None, "cert_serial": None}),
            (
                {"segment": "sensors", "owner": "facilities", "notes": "roof, north side ünïcode"},
                {"segment": "sensors", "owner": "facilities", "notes": "roof, north side ünïcode"},
            ),
            (
                {"cert_kind": CertKind.IDEVID, "facts": facts_for()},
                {
                    "cert_kind": CertKind.IDEVID,
                    "cert_serial": "1a2b3c",
                    "fingerprint_sha256": FP,
                    "mud_url": "https://mud.example.com/sensor.json",
                    "first_seen": None,
                    "last_seen": None,
                },
            ),
            (
                {
                    "cert_kind": CertKind.LDEVID,
                    "facts": facts_for(fingerprint_sha256=FP.upper(), mud_url=None),
                },
                {"cert_kind": CertKind.LDEVID, "fingerprint_sha256": FP, "mud_url": None},
            ),
        ],
        ids=["bare", "admin-fields", "idevid-facts", "ldevid-upper-fingerprint"],
    )
    def test_add_then_find(self, store: SqlDeviceStore, kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
        added = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW, **kwargs)
        assert added.key == KEY
        assert added.state is LifecycleState.OPERATIONAL
        for field, value in expected.items():
            assert getattr(added, field) == value, field
        assert store.find_device(KEY) == added
        assert store.get_device(added.id) == added

    def test_unknown_device_is_none(self, store: SqlDeviceStore) -> None:
        assert store.find_device(KEY) is None
        assert store.find_device(DeviceKey(issuer="other", serial_number=KEY.serial_number)) is None
        assert store.get_device(12345) is None
        assert store.find_by_fingerprint(FP) is None

    def test_same_serial_under_other_issuer_is_another_device(self, store: SqlDeviceStore) -> None:
        a = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW)
        b = store.add_device(replace(KEY, issuer="/CN=Other CA"), state=LifecycleState.PENDING, now=NOW)
        assert a.id != b.id

    def test_duplicate_add_raises_device_exists(self, store: SqlDeviceStore) -> None:
        first = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW, segment="sensors")
        with pytest.raises(DeviceExists) as info:
            store.add_device(KEY, state=LifecycleState.PENDING, now=NOW)
        assert str(KEY) in str(info.value)
        assert f"id {first.id}" in str(info.value)
        assert isinstance(info.value.__cause__, sa.exc.IntegrityError)
        assert store.find_device(KEY) == first  # unchanged

    def test_register_pending_is_idempotent(self, store: SqlDeviceStore) -> None:
        first = store.register_pending(KEY, facts_for(), CertKind.IDEVID, NOW)
        assert first.state is LifecycleState.PENDING
        assert first.first_seen == NOW
        assert first.last_seen == NOW
        assert first.cert_kind is CertKind.IDEVID
        again = store.register_pending(KEY, facts_for(cert_serial="ff"), CertKind.IDEVID, NOW + timedelta(1))
        assert again == first
        assert len(store.list_devices()) == 1

    def test_register_pending_keeps_an_existing_device(self, store: SqlDeviceStore) -> None:
        known = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW, segment="sensors")
        assert store.register_pending(KEY, facts_for(), CertKind.IDEVID, NOW) == known

    def test_register_pending_race_between_two_servers(self, store_url: str) -> None:
        keys = [DeviceKey(issuer=ISSUER, serial_number=f"SN-{i:04d}") for i in range(25)]
        barrier = threading.Barrier(2, timeout=30)
        results: dict[int, list[int]] = {0: [], 1: []}
        errors: list[BaseException] = []

        def server(index: int, store: SqlDeviceStore) -> None:
            try:
                for key in keys:
                    barrier.wait()
                    results[index].append(store.register_pending(key, facts_for(key), CertKind.IDEVID, NOW).id)
            except BaseException as e:
                errors.append(e)
                barrier.abort()

        with SqlDeviceStore(store_url, create=True) as a, SqlDeviceStore(store_url, create=True) as b:
            a.ensure_schema()
            b.ensure_schema()
            threads = [threading.Thread(target=server, args=(i, s)) for i, s in enumerate((a, b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert not errors, errors
            assert results[0] == results[1]
            assert len(set(results[0])) == len(keys)
            assert len(a.list_devices(LifecycleState.PENDING)) == len(keys)

    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            ({"state": LifecycleState.OPERATIONAL}, {"state": LifecycleState.OPERATIONAL, "segment": "old"}),
            ({"segment": "cameras"}, {"state": LifecycleState.PENDING, "segment": "cameras", "owner": "ops"}),
            ({"owner": "it", "notes": "moved"}, {"owner": "it", "notes": "moved", "segment": "old"}),
            ({}, {"state": LifecycleState.PENDING, "segment": "old", "owner": "ops", "notes": None}),
            (
                {"state": LifecycleState.QUARANTINED, "segment": "q", "owner": "sec", "notes": "n"},
                {"state": LifecycleState.QUARANTINED, "segment": "q", "owner": "sec", "notes": "n"},
            ),
        ],
        ids=["state", "segment", "owner-notes", "nothing", "everything"],
    )
    def test_update_device(self, store: SqlDeviceStore, changes: dict[str, Any], expected: dict[str, Any]) -> None:
        device = store.add_device(KEY, state=LifecycleState.PENDING, now=NOW, segment="old", owner="ops")
        updated = store.update_device(device.id, **changes)
        for field, value in expected.items():
            assert getattr(updated, field) == value, field
        assert store.get_device(device.id) == updated
        assert updated.key == KEY

    def test_update_unknown_device_raises_not_found(self, store: SqlDeviceStore) -> None:
        with pytest.raises(DeviceNotFound, match="no device with id 4242"):
            store.update_device(4242, state=LifecycleState.OPERATIONAL)
        with pytest.raises(DeviceNotFound, match="no device with id 4242"):
            store.record_seen(4242, facts_for(), NOW)

    def test_list_devices_by_state(self, store: SqlDeviceStore) -> None:
        states = [
            LifecycleState.PENDING,
            LifecycleState.OPERATIONAL,
            LifecycleState.PENDING,
            LifecycleState.DECOMMISSIONED,
        ]
        ids = [store.add_device(DeviceKey(ISSUER, f"SN-{i}"), state=s, now=NOW).id for i, s in enumerate(states)]
        assert [d.id for d in store.list_devices()] == ids
        assert [d.id for d in store.list_devices(LifecycleState.PENDING)] == [ids[0], ids[2]]
        assert [d.id for d in store.list_devices(LifecycleState.OPERATIONAL)] == [ids[1]]
        assert store.list_devices(LifecycleState.QUARANTINED) == []

    def test_record_seen(self, store: SqlDeviceStore) -> None:
        device = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW, facts=facts_for())
        assert device.first_seen is None
        later = NOW + timedelta(hours=1)
        store.record_seen(device.id, facts_for(fingerprint_sha256=None, mud_url=None), later)
        seen = store.get_device(device.id)
        assert seen is not None
        assert (seen.first_seen, seen.last_seen, seen.cert_serial) == (later, later, "1a2b3c")
        assert seen.fingerprint_sha256 == FP  # not erased by facts that lack it
        assert seen.mud_url == "https://mud.example.com/sensor.json"
        latest = later + timedelta(days=1)
        store.record_seen(device.id, facts_for(mud_url="https://mud.example.com/v2"), latest)
        seen = store.get_device(device.id)
        assert seen is not None
        assert (seen.first_seen, seen.last_seen) == (later, latest)
        assert seen.mud_url == "https://mud.example.com/v2"
        assert store.find_by_fingerprint(FP) == seen

    def test_seen_never_moves_the_certificate_binding(self, store: SqlDeviceStore) -> None:
        """Only bind_certificate (operator re-bind, enrolment) replaces the bound certificate."""
        device = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW, facts=facts_for())
        other_fp = "aa" + "bb" * 31
        store.record_seen(device.id, facts_for(cert_serial="beef", fingerprint_sha256=other_fp, spki_sha256="cc" * 32),
                          NOW)
        seen = store.get_device(device.id)
        assert seen is not None and (seen.cert_serial, seen.fingerprint_sha256) == ("1a2b3c", FP)
        note = AuditNote("alice", "certificate-rebound", "operational", "new board")
        rebound = store.bind_certificate(device.id, facts_for(cert_serial="beef", fingerprint_sha256=other_fp), NOW,
                                         note)
        assert (rebound.cert_serial, rebound.fingerprint_sha256) == ("beef", other_fp)
        assert store.find_by_fingerprint(FP) is None and store.find_by_fingerprint(other_fp) == rebound

    def test_first_use_binds_a_device_registered_without_certificate(self, store: SqlDeviceStore) -> None:
        device = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW)
        store.append_decision(entry(device.id, NOW), seen=facts_for(cert_serial="beef"),
                              audit=AuditNote("radius", "certificate-bound", "operational", "first use"))
        seen = store.get_device(device.id)
        assert seen is not None and seen.cert_serial == "beef" and seen.fingerprint_sha256 == FP
        with pytest.raises(DeviceNotFound):
            store.bind_certificate(4242, facts_for(), NOW, AuditNote("a", "certificate-rebound", "x", "y"))

    @pytest.mark.parametrize("spelling", [FP, FP.upper(), ":".join(FP[i : i + 2] for i in range(0, 64, 2)).upper()])
    def test_find_by_fingerprint_any_spelling(self, store: SqlDeviceStore, spelling: str) -> None:
        device = store.register_pending(KEY, facts_for(), CertKind.IDEVID, NOW)
        assert store.find_by_fingerprint(spelling) == device

    # -- times -----------------------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "given",
        [
            NOW,
            NOW.astimezone(timezone(timedelta(hours=5, minutes=30))),
            NOW.astimezone(timezone(timedelta(hours=-8))),
            datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        ],
        ids=["utc", "plus-0530", "minus-0800", "old"],
    )
    def test_datetimes_come_back_as_aware_utc(self, store: SqlDeviceStore, given: datetime) -> None:
        device = store.register_pending(KEY, facts_for(), CertKind.IDEVID, given)
        store.append_decision(entry(device.id, given))
        (logged,) = store.decisions()
        for value in (device.first_seen, device.last_seen, logged.time):
            assert value == given
            assert value is not None
            assert value.tzinfo is UTC

    def test_naive_datetimes_are_refused(self, store: SqlDeviceStore) -> None:
        naive = NOW.replace(tzinfo=None)
        with pytest.raises(ValueError, match="timezone-aware"):
            store.register_pending(KEY, facts_for(), CertKind.IDEVID, naive)
        with pytest.raises(ValueError, match="timezone-aware"):
            store.append_decision(entry(None, naive))

    # -- decision log ----------------------------------------------------------------------------------------

    def test_decision_round_trips_every_field(self, store: SqlDeviceStore) -> None:
        device = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW)
        full = DecisionLogEntry(
            time=NOW,
            device_id=device.id,
            device=str(KEY),
            context=NetworkContext(
                nas_ip="2001:db8::1",
                nas_identifier="sw-floor-2",
                nas_port="GigabitEthernet1/0/7",
                calling_station_id="AA-BB-CC-00-11-22",
                user_name="sensor-0001.acme.example",
            ),
            outcome=Outcome.QUARANTINE,
            vlan=999,
            segment="quarantine",
            reasons=("attestation: stale", 'quote "x", ünïcode ✓', ""),
        )
        bare = DecisionLogEntry(
            time=NOW - timedelta(seconds=1),
            device_id=None,
            device="unknown @ nowhere",
            context=NetworkContext(),
            outcome=Outcome.REJECT,
            vlan=None,
            segment=None,
            reasons=(),
        )
        store.append_decision(bare)
        store.append_decision(full)
        assert list(store.decisions()) == [full, bare]

    def test_decisions_newest_first_with_limit_and_device_filter(self, store: SqlDeviceStore) -> None:
        a = store.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW).id
        b = store.add_device(replace(KEY, serial_number="SN-2"), state=LifecycleState.OPERATIONAL, now=NOW).id
        # Appended out of time order; two share a timestamp (then the later append comes first).
        plan = [(a, 3), (b, 1), (a, 5), (None, 4), (a, 2), (b, 5)]
        for n, (device_id, minute) in enumerate(plan):
            store.append_decision(entry(device_id, NOW + timedelta(minutes=minute), reasons=(f"#{n}",)))
        order = [e.reasons[0] for e in store.decisions()]
        assert order == ["#5", "#2", "#3", "#0", "#4", "#1"]
        assert [e.reasons[0] for e in store.decisions(limit=2)] == ["#5", "#2"]
        assert [e.reasons[0] for e in store.decisions(device_id=a)] == ["#2", "#0", "#4"]
        assert [e.reasons[0] for e in store.decisions(device_id=b, limit=1)] == ["#5"]
        assert store.decisions(device_id=9999) == []
        assert store.decisions(limit=0) == []

    def test_decision_for_unknown_device_id_is_a_store_error(self, store: SqlDeviceStore) -> None:
        with pytest.raises(StoreError, match="decision log"):
            store.append_decision(entry(31337, NOW))

    # -- schema and failure ----------------------------------------------------------------------------------

    def test_schema_is_created_once_and_shared(self, store_url: str) -> None:
        with SqlDeviceStore(store_url, create=True) as first:
            device = first.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW)
        with SqlDeviceStore(store_url) as second:
            assert second.find_device(KEY) == device
            engine = sa.create_engine(store_url)
            try:
                with engine.connect() as conn:
                    versions = conn.execute(sa.text("SELECT version FROM schema_version")).scalars().all()
            finally:
                engine.dispose()
        assert versions == [SCHEMA_VERSION]

    def test_two_servers_creating_the_schema_at_once(self, backend: StoreBackend) -> None:
        for _ in range(3):
            url = backend.fresh_url()
            stores = [SqlDeviceStore(url, create=True), SqlDeviceStore(url, create=True)]
            barrier = threading.Barrier(2, timeout=30)
            errors: list[BaseException] = []

            def start(store: SqlDeviceStore, barrier: threading.Barrier, errors: list[BaseException]) -> None:
                try:
                    barrier.wait()
                    store.ensure_schema()
                except BaseException as e:
                    errors.append(e)

            threads = [threading.Thread(target=start, args=(s, barrier, errors)) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            try:
                assert not errors, errors
                assert stores[0].find_device(KEY) is None
                assert stores[1].find_device(KEY) is None
            finally:
                for s in stores:
                    s.close()

    def test_newer_schema_version_is_refused(self, store_url: str) -> None:
        with SqlDeviceStore(store_url, create=True) as first:
            first.ensure_schema()
        engine = sa.create_engine(store_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
        finally:
            engine.dispose()
        with SqlDeviceStore(store_url) as second, pytest.raises(StoreError, match="upgrade trustport"):
            second.find_device(KEY)

    def test_blocked_write_fails_closed_within_the_timeout(self, backend: StoreBackend, store_url: str) -> None:
        with SqlDeviceStore(store_url, statement_timeout_s=0.5, create=True) as store:
            store.ensure_schema()
            with backend.hold_write_lock(store_url):
                started = time.monotonic()
                with pytest.raises(StoreError) as info:
                    store.append_decision(entry(None, NOW))
                elapsed = time.monotonic() - started
            assert 0.3 < elapsed < 5, elapsed
            message = str(info.value)
            assert "appending to the decision log failed on database" in message
            assert "check that" in message
            store.append_decision(entry(None, NOW))  # works again once the lock is gone
            assert len(store.decisions()) == 1
