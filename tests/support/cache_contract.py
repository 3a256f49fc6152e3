"""The registry cache and its change feed, written once for every backend (``tests/unit/test_registry_cache.py`` on
SQLite, ``tests/integration/test_registry_cache_postgres.py`` on PostgreSQL).

The property under attack: once an operator's change has returned, no cache answers with what was there before it.
Each test tries one way around it: a cache that is not refreshing, a lookup racing a change, a feed pruned under a
cache, a change made by raw SQL, a registry whose triggers are gone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from policy.errors import StoreError
from policy.model import CertKind, DeviceKey, LifecycleState
from tests.support.store_contract import NOW, facts_for
from trustport.services.registry_cache import RegistryCache
from trustport.store import changes
from trustport.store.schema import attestation_results, denied_certificates, devices, registry_changes
from trustport.store.sql import SqlDeviceStore

ISSUER = "/C=DE/O=Acme Devices/CN=Acme IDevID CA"
KEY = DeviceKey(ISSUER, "SN-CACHE-1")


def _generation(store: SqlDeviceStore) -> int:
    with store.transaction("test") as conn:
        return changes.generation(conn)


def _feed(store: SqlDeviceStore, after: int) -> list[tuple[int | None, str]]:
    with store.transaction("test") as conn:
        rows = conn.execute(sa.select(registry_changes.c.device_id, registry_changes.c.what)
                            .where(registry_changes.c.generation > after).order_by(registry_changes.c.id))
        return [(r.device_id, r.what) for r in rows]


def _raw(store: SqlDeviceStore, sql: str, **params: Any) -> None:
    with store.transaction("test") as conn:
        conn.execute(sa.text(sql), params)


def _attestation_row(device_id: int, issued: datetime) -> dict[str, Any]:
    return {"device_id": device_id, "received_at": issued, "token": "t", "token_sha256": "0" * 64, "accepted": True,
            "status": 2, "issued_at": issued, "expires_at": issued + timedelta(hours=1), "binding": "akpub",
            "bound_cert_serial": None, "vector": json.dumps({}), "reasons": json.dumps([])}


class CacheContract:
    backend: Any  # the fixture of the concrete module

    @pytest.fixture
    def url(self, backend: Any) -> str:
        url: str = backend.fresh_url()
        with SqlDeviceStore(url, create=True) as store:
            store.initialise(integrity=False)
        return url

    @pytest.fixture
    def operator(self, url: str) -> Iterator[SqlDeviceStore]:
        """The store the CLI, API and worker use: it waits for the caches after a change."""
        with SqlDeviceStore(url) as store:
            yield store

    @pytest.fixture
    def hook_store(self, url: str) -> Iterator[SqlDeviceStore]:
        with SqlDeviceStore(url, wait_for_caches=False) as store:
            yield store

    @pytest.fixture
    def make_cache(self, hook_store: SqlDeviceStore) -> Iterator[Callable[..., RegistryCache]]:
        made: list[RegistryCache] = []

        def make(*, start: bool = True, refresh: float = 0.05, lease: float = 0.6, name: str = "c1") -> RegistryCache:
            cache = RegistryCache(hook_store, cache_id=f"test:{name}", refresh_seconds=refresh, lease_seconds=lease)
            assert not cache.usable()  # no lease before the first lookup asked for one
            assert cache.refresh(), "the first refresh must succeed on a healthy registry"
            assert cache.usable()
            if start:
                cache.start()
            made.append(cache)
            return cache

        yield make
        for cache in made:
            cache.close()

    @pytest.fixture
    def device(self, operator: SqlDeviceStore) -> int:
        return operator.add_device(KEY, state=LifecycleState.OPERATIONAL, now=NOW, segment="production",
                                   cert_kind=CertKind.IDEVID).id

    # -- the feed ----------------------------------------------------------------------------------------------

    CHANGES: ClassVar[list[tuple[str, str, str]]] = [
        ("state", "UPDATE devices SET state = 'quarantined' WHERE id = :d", "device"),
        ("segment", "UPDATE devices SET segment = 'cameras' WHERE id = :d", "device"),
        ("owner", "UPDATE devices SET owner = 'eve' WHERE id = :d", "device"),
        ("class", "UPDATE devices SET device_class = 'camera' WHERE id = :d", "device"),
        ("location", "UPDATE devices SET location = 'B1' WHERE id = :d", "device"),
        ("notes", "UPDATE devices SET notes = 'x' WHERE id = :d", "device"),
        ("binding", "UPDATE devices SET cert_serial = 'abc' WHERE id = :d", "device"),
        ("fingerprint", "UPDATE devices SET fingerprint_sha256 = 'ff' WHERE id = :d", "device"),
        ("mud", "UPDATE devices SET mud_url = 'https://m/x.json' WHERE id = :d", "device"),
        ("kind", "UPDATE devices SET cert_kind = 'ldevid' WHERE id = :d", "device"),
        ("key", "UPDATE devices SET serial_number = 'SN-OTHER' WHERE id = :d", "device"),
        ("set to null", "UPDATE devices SET segment = NULL WHERE id = :d", "device"),
        ("delete", "DELETE FROM devices WHERE id = :d", "device"),
    ]

    @pytest.mark.parametrize(("what", "sql", "kind"), CHANGES, ids=[c[0] for c in CHANGES])
    def test_every_change_a_decision_reads_is_in_the_feed(self, operator: SqlDeviceStore, device: int, what: str,
                                                           sql: str, kind: str) -> None:
        before = _generation(operator)
        _raw(operator, sql, d=device)  # raw SQL, as a DBA would: the triggers see it, not the store's code
        assert _generation(operator) == before + 1
        assert _feed(operator, before) == [(device, kind)]

    def test_attestation_results_and_the_deny_list_are_in_the_feed(self, operator: SqlDeviceStore,
                                                                    device: int) -> None:
        before = _generation(operator)
        with operator.transaction("test") as conn:
            conn.execute(attestation_results.insert().values(**_attestation_row(device, NOW)))
            conn.execute(denied_certificates.insert().values(issuer=ISSUER, cert_serial="01", device_id=device,
                                                             time=NOW, actor="t", reason="lost"))
        _raw(operator, "DELETE FROM attestation_results WHERE device_id = :d", d=device)
        _raw(operator, "DELETE FROM denied_certificates")
        assert _feed(operator, before) == [(device, "attestation"), (None, "deny"), (device, "attestation"),
                                           (None, "deny")]
        assert _generation(operator) == before + 4

    def test_last_seen_alone_is_not_a_change(self, operator: SqlDeviceStore, device: int) -> None:
        operator.record_seen(device, facts_for(KEY), NOW)  # binds the certificate: a change
        before = _generation(operator)
        for minute in range(3):  # the same certificate again: only last_seen moves
            operator.record_seen(device, facts_for(KEY), NOW + timedelta(minutes=minute + 1))
        assert _generation(operator) == before
        assert _feed(operator, before) == []

    def test_a_rolled_back_change_leaves_no_trace(self, operator: SqlDeviceStore, device: int) -> None:
        before = _generation(operator)
        def abort() -> None:
            with operator.transaction("test") as conn:
                conn.execute(devices.update().where(devices.c.id == device).values(state="decommissioned"))
                raise RuntimeError("abort")

        with pytest.raises(RuntimeError):
            abort()
        assert _generation(operator) == before
        assert operator.get_device(device).state is LifecycleState.OPERATIONAL  # type: ignore[union-attr]

    def test_a_registry_without_its_triggers_is_refused_until_db_init(self, url: str, operator: SqlDeviceStore,
                                                                      device: int) -> None:
        name = sorted(changes.trigger_names())[0]
        drop = f"DROP TRIGGER {name}" + (f" ON {name.split('_', 1)[1].rsplit('_', 1)[0]}"
                                         if url.startswith("postgresql") else "")
        _raw(operator, drop)
        with SqlDeviceStore(url, wait_for_caches=False) as fresh, pytest.raises(StoreError) as caught:
            fresh.find_device(KEY)
        assert name in str(caught.value)
        assert "db init" in str(caught.value)
        with SqlDeviceStore(url, create=True) as admin:
            done, health = admin.initialise(integrity=False)
        assert health.healthy
        assert done.startswith("upgraded")

    # -- the cache ---------------------------------------------------------------------------------------------

    def test_reads_come_from_memory_once_cached(self, make_cache: Callable[..., RegistryCache], device: int) -> None:
        cache = make_cache()
        first = cache.find_device(KEY)
        assert first is not None
        assert first.id == device
        hits = cache.stats.hits
        for _ in range(5):
            assert cache.find_device(KEY) == first
        assert cache.stats.hits == hits + 5

    def test_an_action_returns_only_once_every_cache_has_it(self, make_cache: Callable[..., RegistryCache],
                                                            operator: SqlDeviceStore, device: int) -> None:
        caches = [make_cache(name="a", refresh=0.2), make_cache(name="b", refresh=0.2)]
        states = [LifecycleState.QUARANTINED, LifecycleState.OPERATIONAL, LifecycleState.DECOMMISSIONED,
                  LifecycleState.OPERATIONAL] * 3
        for state in states:
            for cache in caches:
                assert cache.find_device(KEY) is not None  # cached (a hit from the second round on)
            operator.update_device(device, state=state)
            assert operator.last_barrier is not None
            assert operator.last_barrier.lapsed == ()
            for cache in caches:  # at once: not one stale answer
                found = cache.find_device(KEY)
                assert found is not None
                assert found.state is state
        assert all(cache.stats.hits > 0 for cache in caches)

    def test_without_the_barrier_the_same_reads_would_be_stale(self, url: str,
                                                               make_cache: Callable[..., RegistryCache],
                                                               device: int) -> None:
        """The control of the test above: it can fail. A store that does not wait returns before the caches have
        the change, and an immediate read is stale."""
        cache = make_cache(refresh=0.3)
        stale = 0
        with SqlDeviceStore(url, wait_for_caches=False) as careless:
            for state in [LifecycleState.QUARANTINED, LifecycleState.OPERATIONAL] * 4:
                assert cache.find_device(KEY) is not None
                careless.update_device(device, state=state)
                found = cache.find_device(KEY)
                assert found is not None
                stale += found.state is not state
        assert stale > 0

    def test_a_cache_that_stopped_refreshing_is_waited_out_then_bypassed(
            self, make_cache: Callable[..., RegistryCache], operator: SqlDeviceStore, device: int) -> None:
        cache = make_cache(start=False, lease=0.6)  # refreshed once, never again (a hung radiusd, or one cut off)
        assert cache.find_device(KEY) is not None
        assert cache.usable()
        operator.update_device(device, state=LifecycleState.QUARANTINED)
        barrier = operator.last_barrier
        assert barrier is not None
        assert barrier.lapsed == (cache.cache_id,)
        assert 0.2 < barrier.waited_s < 2.0  # its lease, not forever
        assert not cache.usable()  # its own clock ran out first
        bypassed = cache.stats.bypassed
        found = cache.find_device(KEY)
        assert found is not None
        assert found.state is LifecycleState.QUARANTINED
        assert cache.stats.bypassed == bypassed + 1

    @pytest.mark.parametrize("held", [0.12, 0.5])
    def test_a_refresh_held_up_past_its_lease_does_not_renew_it(
            self, make_cache: Callable[..., RegistryCache], operator: SqlDeviceStore, device: int,
            held: float) -> None:
        """The refresher reads the feed, then is held up (GIL, a slow disk) until its lease has run out; an action
        commits meanwhile and its barrier goes past the lapsed cache. The held-up cycle must not renew the lease
        with what it read before: the cache stays unused until it has registered again and read the feed. Held
        0.12 s: the cycle began just before the lease ran out (what a renewal after the fact would get wrong);
        0.5 s: longer than the lease."""
        cache = make_cache(start=False, lease=0.4)
        assert cache.find_device(KEY) is not None
        time.sleep(max(0.0, 0.4 - held + 0.05))  # the held-up cycle starts inside the lease and ends after it
        real_apply = cache._apply
        armed = [True]

        def held_up(*args: Any) -> None:
            real_apply(*args)  # applied what was read before the action ...
            if armed[0]:
                armed[0] = False
                time.sleep(held)  # ... held up past the lease ...
                operator.update_device(device, state=LifecycleState.QUARANTINED)  # ... the barrier goes past it

        operator.wait_for_caches = False
        operator.update_device(device, owner="mallory")  # a change for the held-up cycle to acknowledge
        operator.wait_for_caches = True
        cache._apply = held_up  # type: ignore[method-assign]
        cache.refresh()  # the held-up cycle tries to renew: the lease has run out, so it must not
        assert not cache.usable()
        found = cache.find_device(KEY)
        assert found is not None and found.state is LifecycleState.QUARANTINED  # read directly
        assert cache.refresh()  # registers again, then reads the feed
        assert cache.stats.lapses >= 1
        found = cache.find_device(KEY)
        assert cache.usable() and found is not None and found.state is LifecycleState.QUARANTINED

    def test_a_lookup_racing_a_change_does_not_keep_what_it_read(
            self, make_cache: Callable[..., RegistryCache], operator: SqlDeviceStore, device: int) -> None:
        cache = make_cache(start=False)
        real = cache.store.find_device

        def slow_read(key: DeviceKey) -> Any:
            old = real(key)  # read before the change ...
            operator.wait_for_caches = False
            operator.update_device(device, state=LifecycleState.QUARANTINED)
            assert cache.refresh()  # ... and the cache applied the change before this read returned
            return old

        cache.store.find_device = slow_read  # type: ignore[method-assign]
        found = cache.find_device(KEY)
        assert found is not None
        assert found.state is LifecycleState.OPERATIONAL  # this lookup used what it read (it started first)
        cache.store.find_device = real  # type: ignore[method-assign]
        again = cache.find_device(KEY)
        assert again is not None
        assert again.state is LifecycleState.QUARANTINED  # but did not keep it

    def test_a_feed_pruned_under_the_cache_drops_everything(
            self, make_cache: Callable[..., RegistryCache], operator: SqlDeviceStore, device: int) -> None:
        cache = make_cache(start=False)
        assert cache.find_device(KEY) is not None
        operator.wait_for_caches = False
        operator.update_device(device, state=LifecycleState.QUARANTINED)
        operator.update_device(device, owner="mallory")
        with operator.transaction("test") as conn:
            changes.prune(conn, changes.generation(conn), keep=0)
        assert cache.refresh()
        assert cache.stats.resets == 1
        found = cache.find_device(KEY)
        assert found is not None
        assert found.state is LifecycleState.QUARANTINED

    def test_deny_list_and_attestation_follow_the_feed(self, make_cache: Callable[..., RegistryCache],
                                                       operator: SqlDeviceStore, device: int) -> None:
        cache = make_cache()
        assert cache.denied(ISSUER, "0A") is None
        assert cache.latest_accepted(device) is None
        with operator.transaction("deny") as conn:
            conn.execute(denied_certificates.insert().values(issuer=ISSUER, cert_serial="0a", device_id=device,
                                                             time=NOW, actor="t", reason="stolen"))
        reason = cache.denied(ISSUER, "0A")
        assert reason is not None
        assert "stolen" in reason
        with operator.transaction("attest") as conn:
            conn.execute(attestation_results.insert().values(**_attestation_row(device, NOW)))
        result = cache.latest_accepted(device)
        assert result is not None
        assert result.device_id == device

    def test_concurrent_lookups_during_a_stream_of_changes(self, make_cache: Callable[..., RegistryCache],
                                                           operator: SqlDeviceStore, device: int) -> None:
        """Readers in threads while an operator changes the owner 20 times: a read that starts after change n has
        returned never sees an owner older than n (a later one, committed but not yet returned, is fine)."""
        cache = make_cache(refresh=0.02)
        done = threading.Event()
        returned = [-1]  # the newest change that had returned
        reads = [0]
        stale: list[str] = []

        def reader() -> None:
            while not done.is_set():
                expected = returned[0]
                found = cache.find_device(KEY)
                seen = int(found.owner[1:]) if found is not None and found.owner else -1
                reads[0] += 1
                if seen < expected:
                    stale.append(f"owner o{seen} after o{expected} had returned")

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            for n in range(20):
                operator.update_device(device, owner=f"o{n}")
                returned[0] = n
        finally:
            done.set()
            for thread in threads:
                thread.join()
        assert stale == [], (stale[:5], cache.stats, operator.last_barrier)
        assert reads[0] > 100
        assert cache.stats.hits > 0
