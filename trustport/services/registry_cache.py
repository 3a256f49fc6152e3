"""The hook's registry reads from memory: devices by key, each device's current attestation result, the deny list.

Filled on first use (a miss reads the registry, as before) and kept right by the change feed
(``trustport.store.changes``): a thread reads the feed every ``refresh_seconds``, drops what changed and
acknowledges the generation it has applied, with a lease of ``lease_seconds`` in the database's clock.

**The guarantee.** An operator's action (quarantine, decommission, revoke, deny, a new attestation result ...)
returns only once every cache with a live lease has applied it (``SqlDeviceStore`` waits after the commit), and a
cache whose lease has run out is not used: the hook then reads the registry directly, on every authentication,
until the cache has caught up again. So no authentication that starts after the action returned is decided on
data older than it, on any server. The staleness bound is therefore zero for decisions after the action; what the
action waits for is bounded by ``refresh_seconds`` + one feed read while every cache is live, and by
``lease_seconds`` when one is stuck (database unreachable for it, radiusd hung or killed). A cache takes its lease
before it reads the feed and renews it only while it still holds (``changes.register``/``renew``), so a cycle held
up past its lease cannot renew it with what it read before. An authentication already deciding while the action
commits may still use what it read before; when its session is applied, the journal sees that the device changed
after the decision and queues a re-evaluation (``changes.reevaluate_if_changed_since``).

Entries record what the registry said when they were read: a cached device's ``last_seen`` is not kept current
(decisions do not read it; the registry has it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from policy.attestation import StoredAttestation
from policy.model import DeviceKey, DeviceRecord
from trustport.store import changes
from trustport.store.attestation import SqlAttestationStore
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.sql import SqlDeviceStore

PRUNE_SECONDS = 60.0
FILE_CHECK_SECONDS = 0.001
K = TypeVar("K")
V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0  # read from the registry (not cached yet, or dropped by a change)
    bypassed: int = 0  # lease ran out: read from the registry without using the cache
    refreshes: int = 0
    resets: int = 0  # the feed no longer reached back to the applied generation: everything dropped
    errors: int = 0
    lapses: int = 0  # the lease ran out before the refresher renewed it (held up): registered and read again


class RegistryCache:
    def __init__(self, store: SqlDeviceStore, *, cache_id: str, refresh_seconds: float = 0.1,
                 lease_seconds: float = 2.0, max_devices: int = 100_000,
                 report: Callable[[str], None] = lambda message: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not 0 < refresh_seconds < lease_seconds <= changes.MAX_LEASE_S:
            raise ValueError(f"need 0 < refresh_seconds < lease_seconds <= {changes.MAX_LEASE_S}")
        self.store = store
        self.attestations = SqlAttestationStore(store)
        self._lifecycle = SqlLifecycleStore(store)
        self.cache_id = cache_id[:600]
        self.refresh_seconds = refresh_seconds
        self.lease_seconds = lease_seconds
        self.max_devices = max_devices
        self._report = report
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._devices: OrderedDict[DeviceKey, DeviceRecord] = OrderedDict()
        self._key_of: dict[int, DeviceKey] = {}
        self._attestation: OrderedDict[int, StoredAttestation | None] = OrderedDict()
        self._denied: Mapping[tuple[str, str], str] = {}
        self.applied = -1  # the generation everything held reflects; -1: nothing yet
        self._valid_until = 0.0  # monotonic; the cache is used only before this
        self._file_checked_until = 0.0
        self._acked = -1
        self._registered = False  # holds a lease taken before the last feed read
        self._next_prune = 0.0
        self._last_problem: str | None = None
        # No lease is taken before the first lookup: a radiusd that never authenticates (``freeradius -C`` runs
        # instantiate too) must not make operators' actions wait for a cache nobody uses.
        self._wanted = threading.Event()
        self.stats = CacheStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the auth path -------------------------------------------------------------------------------------------

    def usable(self) -> bool:
        """The lease holds and the registry (its SQLite file) is exactly as last verified (one ``os.stat`` per
        millisecond at most: an authentication asks three times)."""
        now = self._monotonic()
        if now < self._valid_until:
            if now < self._file_checked_until:
                return True
            if self.store.file_unchanged():
                self._file_checked_until = now + FILE_CHECK_SECONDS
                return True
        if not self._wanted.is_set():
            self._wanted.set()  # the first lookup: from now on the refresher takes (and renews) a lease
        return False

    def find_device(self, key: DeviceKey) -> DeviceRecord | None:
        def kept(record: DeviceRecord) -> None:  # under the lock, with the entry: what a device change drops by id
            self._key_of[record.id] = key

        return self._read_through(self._devices, key, self.store.find_device, kept)

    def latest_accepted(self, device_id: int) -> StoredAttestation | None:
        # "none" is kept too: a result that arrives later is a change, and drops it
        return self._read_through(self._attestation, device_id, self.attestations.latest_accepted, keep_none=True)

    def _read_through(self, table: OrderedDict[K, V], key: K, load: Callable[[K], V | None],
                      kept: Callable[[V], None] | None = None, *, keep_none: bool = False) -> V | None:
        """From ``table`` while the cache is usable; else, or on a miss, ``load(key)`` from the registry, kept only
        if no change was applied while it was being read (it is at least as new as what was applied before)."""
        if not self.usable():
            self.stats.bypassed += 1
            return load(key)
        with self._lock:
            if key in table:
                table.move_to_end(key)
                self.stats.hits += 1
                return table[key]
            before = self.applied
        self.stats.misses += 1
        value = load(key)
        if value is not None or keep_none:
            with self._lock:
                if self.applied == before and self.usable():
                    table[key] = value  # type: ignore[assignment]  # None only where the table holds None
                    if kept is not None and value is not None:
                        kept(value)
                    while len(table) > self.max_devices:
                        _, old = table.popitem(last=False)
                        if isinstance(old, DeviceRecord):
                            self._key_of.pop(old.id, None)
        return value

    def denied(self, issuer: str, cert_serial: str) -> str | None:
        """Why this certificate is on the local deny list, or None."""
        if not self.usable():
            self.stats.bypassed += 1
            index: Mapping[tuple[str, str], str] = self._lifecycle.denied_index()
        else:
            index = self._denied
        return index.get((issuer, cert_serial.lower()))

    def forget(self, device_id: int) -> None:
        """Drop what is held of this device (its own write, before the feed brings it)."""
        with self._lock:
            key = self._key_of.pop(device_id, None)
            if key is not None:
                self._devices.pop(key, None)
            self._attestation.pop(device_id, None)

    # -- the refresher ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="trustport-registry-cache", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._wanted.is_set():
                self._wanted.wait(self.refresh_seconds)
            self.refresh()
            self._stop.wait(self.refresh_seconds)

    def refresh(self) -> bool:
        """One cycle: read the feed, drop what changed, acknowledge. False when the registry could not be read (the
        lease then runs out and the hook reads the registry directly)."""
        started = self._monotonic()
        wanted = self._wanted.is_set()
        try:
            # First, or after the lease ran out (this thread was held up, or the registry was away): a lease taken
            # before the feed is read, so nothing read is older than it (a barrier may have gone past meanwhile).
            if wanted and (not self._registered or started >= self._valid_until):
                if self._registered:
                    self.stats.lapses += 1
                with self.store.transaction("registering the registry cache") as conn:
                    changes.register(conn, self.cache_id, self.applied, self.lease_seconds)
                self._registered = True
            with self.store.transaction("reading the registry's change feed") as conn:
                newest = changes.generation(conn)
                feed, complete = changes.changes(conn, self.applied, newest) if self.applied >= 0 else ((), False)
                reload_deny = not complete or any(change.what == "deny" for change in feed)
                denied = self._lifecycle.denied_index_in(conn) if reload_deny else None
            self._apply(newest, feed, complete, denied)
            if not wanted:
                pass  # nothing asked yet: no lease (see __init__)
            elif self.applied != self._acked or started + self.lease_seconds / 2 > self._valid_until:
                with self.store.transaction("acknowledging the registry cache") as conn:
                    renewed = changes.renew(conn, self.cache_id, self.applied, self.lease_seconds)
                    if renewed and started >= self._next_prune:
                        changes.prune(conn, newest)
                        self._next_prune = started + PRUNE_SECONDS
                if renewed:  # the lease held from the feed read to here: what was read is good until it runs out
                    self._acked = self.applied
                    self._valid_until = started + self.lease_seconds
                else:  # it ran out meanwhile (this thread was held up): not used until registered and read again
                    self._registered = False
                    self._valid_until = 0.0
                    self.stats.lapses += 1
            self.stats.refreshes += 1
            if self._last_problem is not None:
                self._report(f"registry cache: the change feed is readable again (generation {self.applied})")
                self._last_problem = None
            return True
        except Exception as exc:
            # The lease is not renewed: the cache answers until it runs out (no action can have returned without
            # it meanwhile: the barrier waits the lease out), then the hook reads the registry directly, which fails
            # closed while the registry is down. A SQLite file that changed is not used at once (usable()).
            self.stats.errors += 1
            problem = f"{type(exc).__name__}: {exc}"
            if problem != self._last_problem:
                self._last_problem = problem
                self._report(f"registry cache: cannot read the change feed; the cache is used until its lease runs "
                             f"out ({self.lease_seconds:g} s), then the registry is read directly: {problem}")
            return False

    def _apply(self, newest: int, feed: Any, complete: bool, denied: Mapping[tuple[str, str], str] | None) -> None:
        with self._lock:
            if not complete:
                if self.applied >= 0:
                    self.stats.resets += 1
                self._devices.clear()
                self._key_of.clear()
                self._attestation.clear()
            else:
                for change in feed:
                    if change.device_id is None:
                        continue
                    if change.what == "device":
                        key = self._key_of.pop(change.device_id, None)
                        if key is not None:
                            self._devices.pop(key, None)
                    self._attestation.pop(change.device_id, None)  # a device change may move its results too
            if denied is not None:
                self._denied = denied
            self.applied = newest

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._valid_until = 0.0
        with contextlib.suppress(Exception), self.store.transaction("releasing the registry cache") as conn:
            changes.release(conn, self.cache_id)
