"""What the RADIUS hook puts between the ``Authorizer`` and the registry so that an authentication costs almost
nothing: reads from the ``RegistryCache``, writes to the ``Journal`` (docs/performance.md).

The ``Authorizer`` is the same one ``trustport decide`` and the API run; only its repositories differ: ``HookReads``
answers ``find_device`` from the cache and appends the decision to the journal, ``CachedAttestations`` answers the
attestation gate's ``latest_accepted`` from the cache, ``JournalSessions`` journals the session an Access-Accept
opens. Everything else goes to the registry as before (a new device's pending registration, accounting).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from policy.attestation import StoredAttestation
from policy.model import (
    AuditNote,
    CertificateFacts,
    CertKind,
    DecisionLogEntry,
    DeviceKey,
    DeviceRecord,
    NetworkContext,
)
from trustport.services.authorize import BOUND
from trustport.services.registry_cache import RegistryCache
from trustport.settings.hook import HookSettings
from trustport.store.attestation import SqlAttestationStore
from trustport.store.journal import Journal
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore


class HookReads:
    """The hook's ``DeviceStore``: ``find_device`` from the cache, ``append_decision`` into the journal."""

    def __init__(self, store: SqlDeviceStore, cache: RegistryCache | None, journal: Journal | None) -> None:
        self.store = store
        self.cache = cache
        self.journal = journal

    def __getattr__(self, name: str) -> Any:  # ping, display_url, record_radius_server, list_devices ...
        return getattr(self.store, name)

    def find_device(self, key: DeviceKey) -> DeviceRecord | None:
        return self.cache.find_device(key) if self.cache is not None else self.store.find_device(key)

    def append_decision(self, entry: DecisionLogEntry, seen: CertificateFacts | None = None,
                        audit: AuditNote | None = None, *, kind: CertKind | None = None) -> None:
        if self.journal is not None and not (audit is not None and audit.action == BOUND and seen is not None):
            self.journal.decision(entry, seen, audit, kind=kind)
            return
        self.store.append_decision(entry, seen, audit, kind=kind)
        if audit is not None and audit.action == BOUND and entry.device_id is not None and self.cache is not None:
            # Bound on first use: in the registry, and in every hook's cache, before this answer goes out, so no
            # other certificate with the same serial is taken for a first use meanwhile (once per device).
            self.cache.forget(entry.device_id)
            self.store.barrier(f"binding device id {entry.device_id} to its certificate")



class CachedAttestations:
    """The attestation gate's repository: the current result from the cache."""

    def __init__(self, store: SqlAttestationStore, cache: RegistryCache) -> None:
        self.store = store
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def latest_accepted(self, device_id: int) -> StoredAttestation | None:
        return self.cache.latest_accepted(device_id)


class JournalSessions:
    """Sessions: an Access-Accept's into the journal; accounting to the registry, after the journal is applied (a
    Stop must find the session its Accept opened)."""

    def __init__(self, sessions: SqlSessionStore, journal: Journal) -> None:
        self.sessions = sessions
        self.journal = journal

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sessions, name)

    def authenticated(self, device_id: int | None, context: NetworkContext, vlan: int | None, segment: str | None,
                      now: datetime, acct_session_id: str | None = None, *, decided_at: int = -1) -> None:
        self.journal.session(device_id, context, vlan, segment, now, acct_session_id, decided_at=decided_at)

    def accounting(self, kind: str, context: NetworkContext, acct_session_id: str | None, now: datetime) -> Any:
        # A Start, a Stop or the NAS's Accounting-On/Off must find the session its Accept opened: the journal first
        # (once per session). An Interim-Update, the frequent one, does not wait: one that finds no session opens it,
        # and the journaled Accept then updates it.
        if kind != "Interim-Update":
            self.journal.drain()
        return self.sessions.accounting(kind, context, acct_session_id, now)


class HookRuntime:
    """The store, cache and journal of one hook (one radiusd), built from its settings; started and closed by it."""

    def __init__(self, settings: HookSettings, *, server_id: str, report: Callable[[str], None]) -> None:
        options = settings.auth_path
        self.settings = settings
        self.store = SqlDeviceStore(settings.database_url, wait_for_caches=False)
        cache_id = f"{server_id}:{os.getpid()}"
        self.cache = RegistryCache(self.store, cache_id=cache_id, refresh_seconds=options.refresh_seconds,
                                   lease_seconds=options.lease_seconds, max_devices=options.max_cached_devices,
                                   report=report) if options.cache else None
        self.journal = Journal(options.journal_dir, self.store, owner=cache_id, sync_each=options.journal_sync,
                               flush_seconds=options.journal_flush_seconds,
                               report=report) if options.journal_dir is not None else None
        self.reads = HookReads(self.store, self.cache, self.journal)
        sessions = SqlSessionStore(self.store)
        self.sessions: SqlSessionStore | JournalSessions = \
            JournalSessions(sessions, self.journal) if self.journal is not None else sessions
        self.attestations: SqlAttestationStore | CachedAttestations = SqlAttestationStore(self.store)
        if self.cache is not None:
            self.attestations = CachedAttestations(self.attestations, self.cache)

    def generation(self) -> int:
        """The registry generation the cache has applied (-1 without a cache): a decision taken now reads data at
        least this new."""
        return self.cache.applied if self.cache is not None else -1

    def session_opened(self, device_id: int | None, context: NetworkContext, vlan: int | None, segment: str | None,
                       now: datetime, acct_session_id: str | None, decided_at: int) -> None:
        """An Access-Accept went out: its session, journaled with the generation it was decided on (see
        ``Journal.session``), or written to the registry without a journal."""
        if isinstance(self.sessions, JournalSessions):
            self.sessions.authenticated(device_id, context, vlan, segment, now, acct_session_id, decided_at=decided_at)
        else:
            self.sessions.authenticated(device_id, context, vlan, segment, now, acct_session_id)

    def settle(self) -> None:
        """Apply the journal and read the change feed now (for tests and benches that read the registry right after
        an authentication)."""
        if self.journal is not None:
            self.journal.drain()
        if self.cache is not None:
            self.cache.refresh()

    def same_as(self, settings: HookSettings) -> bool:
        """Whether these settings would build the same runtime (a policy reload keeps it)."""
        return settings.database_url == self.settings.database_url and settings.auth_path == self.settings.auth_path

    def start(self) -> None:
        if self.cache is not None:
            self.cache.refresh()  # the first cycle before the first authentication, when the registry is up
            self.cache.start()
        if self.journal is not None:
            self.journal.start()

    def close(self) -> None:
        if self.journal is not None:
            with contextlib.suppress(Exception):
                self.journal.close()
        if self.cache is not None:
            with contextlib.suppress(Exception):
                self.cache.close()
        self.store.close()
