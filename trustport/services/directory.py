"""Directory sync: read every entry (paged), reconcile with the registry, apply the changes, record the outcome.

The RADIUS path never reads the directory: it reads the registry this sync writes, so an unreachable directory
changes nothing there -- the last synced data stays in force, and the outage shows in ``trustport directory status``,
on the ``trustport.directory`` logger and in the ``trustport_directory_up`` metric.

Applying a plan:

* new devices, their links and their audit records (actor ``directory``) are written in chunks, one transaction
  each (no session can exist for a device that was not registered, so there is nothing to enforce);
* every state change and every attribute change of a known device goes through ``LifecycleService.act_batch``,
  exactly like an operator's action: state, attributes, audit record, the link's ``held`` flag and the enforcement
  jobs for its connected ports commit together (a disabled device's port is moved by the worker, through the queue);
* a listing that would take out more than one device and more than ``max_removed_fraction`` of the linked ones (a
  wrong base DN, a filter typo, an emptied OU) is refused before anything is written, unless the operator passes
  ``--allow-mass-removal``; one retired device is always just removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Connection

from policy.directory import (
    DIRECTORY_ACTOR,
    Change,
    DirectoryDevice,
    Kind,
    RefusedEntry,
    SyncPlan,
    read_entry,
    reconcile,
    removed_share,
)
from policy.errors import DirectoryError, StoreError, TrustportError
from policy.model import LifecycleState
from trustport.directory.client import LdapDirectory
from trustport.services.lifecycle import UPDATE, ActionRequest, ActionResult, LifecycleService
from trustport.settings.config import TrustportConfig
from trustport.settings.directory import DirectoryConfig
from trustport.store.directory import SqlDirectoryStore, device_columns
from trustport.store.sql import SqlDeviceStore

log = logging.getLogger("trustport.directory")
ADD_CHUNK = 500
REPORTED_REFUSALS = 10  # refused entries named in the log per sync (all of them are in the report)


class MassRemoval(DirectoryError):
    """The listing would take out more linked devices than ``max_removed_fraction``; nothing was written."""


@dataclass
class SyncReport:
    plan: SyncPlan
    dry_run: bool
    read_seconds: float
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # changes the registry refused (the device changed meanwhile)
    jobs: int = 0  # enforcement jobs queued

    def counts(self) -> dict[str, int]:
        return {**self.plan.counts(), "errors": len(self.errors), "jobs": self.jobs}

    def summary(self) -> str:
        c = self.counts()
        order = ("entries", "added", "changed", "removed", "approved", "released", "quarantined", "decommissioned",
                 "unchanged", "link", "kept", "waiting", "refused", "errors", "jobs")
        names = {"link": "linked", "kept": "kept (operator's decision)", "jobs": "enforcement jobs"}
        text = ", ".join(f"{c[k]} {names.get(k, k)}" for k in order if c.get(k) or k in ("entries", "added",
                                                                                        "changed", "removed"))
        return ("dry run, nothing written: " if self.dry_run else "") + text


class DirectorySync:
    def __init__(self, config: TrustportConfig, store: SqlDeviceStore, lifecycle: LifecycleService,
                 client: LdapDirectory | None = None) -> None:
        if config.directory is None:
            raise TrustportError("no 'directory:' section in the config")
        self.config = config
        self.settings: DirectoryConfig = config.directory
        self.store = store
        self.lifecycle = lifecycle
        self.client = client or LdapDirectory(self.settings, self.settings.resolved_ca(config.base_dir))
        self.links = SqlDirectoryStore(store, self.settings.name)
        self.entry_rules = self.settings.entry_rules(list(config.segments))
        self.sync_rules = self.settings.sync_rules()

    def read(self, progress: Callable[[int], object] | None = None) -> list[DirectoryDevice | RefusedEntry]:
        return [read_entry(dn, attributes, self.entry_rules) for dn, attributes in self.client.entries(progress)]

    def plan(self, entries: list[DirectoryDevice | RefusedEntry]) -> SyncPlan:
        return reconcile(entries, self.store.list_devices(), self.links.links(), self.sync_rules)

    def sync(self, now: datetime, *, dry_run: bool = False, allow_mass_removal: bool = False,
             progress: Callable[[int], object] | None = None) -> SyncReport:
        """One complete sync. A ``DirectoryError`` (unreachable, TLS, bind, search, mass removal) is recorded
        as the attempt's outcome, logged, and raised; the registry keeps what it had."""
        started = time.monotonic()
        try:
            entries = self.read(progress)
            read_s = time.monotonic() - started
            plan = self.plan(entries)
            linked = len(self.links.links())
            share = removed_share(plan, linked)
            removed = plan.counts()["removed"]
            if removed > 1 and share > self.settings.max_removed_fraction and not allow_mass_removal:
                raise MassRemoval(
                    f"the directory listed {plan.entries} entries, which would take out {removed} "
                    f"of {linked} linked devices ({share:.0%}, limit {self.settings.max_removed_fraction:.0%}): a "
                    "wrong base DN or filter? Nothing was changed; if it is right, run 'trustport directory sync "
                    "--allow-mass-removal'")
        except DirectoryError as exc:
            if not dry_run:
                self._failed(now, str(exc))
            raise
        report = SyncReport(plan, dry_run, read_s)
        if not dry_run:
            self.apply(plan, now, report)
        report.seconds = time.monotonic() - started
        if not dry_run:
            self.links.record_attempt(url=self.settings.url, now=now, error=None, entries=plan.entries,
                                      summary=report.counts(), duration_s=report.seconds)
            refused = plan.of(Kind.REFUSED)
            for change in refused[:REPORTED_REFUSALS]:
                log.warning("directory entry %s refused: %s", change.dn, change.detail)
            if len(refused) > REPORTED_REFUSALS:
                log.warning("%d more directory entries refused ('trustport directory sync --dry-run' lists them)",
                            len(refused) - REPORTED_REFUSALS)
            log.info("directory %s synced in %.1f s: %s", self.settings.name, report.seconds, report.summary())
        return report

    def _failed(self, now: datetime, error: str) -> None:
        status = self.links.status()
        since = status.last_success_at.isoformat() if status and status.last_success_at else None
        log.warning("directory sync failed: %s; %s", error,
                    f"the data synced at {since} stays in force" if since else "nothing was ever synced from it")
        try:
            self.links.record_attempt(url=self.settings.url, now=now, error=error)
        except StoreError as exc:
            log.error("cannot record the failed directory sync: %s", exc)

    # -- applying a plan -------------------------------------------------------------------------------------

    def apply(self, plan: SyncPlan, now: datetime, report: SyncReport) -> None:
        self._add(plan.of(Kind.ADD), now, report)
        self._links(plan.of(Kind.LINK, Kind.KEPT, Kind.UNLINK), now)
        requests = [self._request(c, now) for c in plan.of(Kind.ACTION, Kind.UPDATE, Kind.LINK, Kind.KEPT)
                    if c.kind in (Kind.ACTION, Kind.UPDATE) or c.fields]
        for outcome in self.lifecycle.act_batch(requests):
            if isinstance(outcome, TrustportError):
                report.errors.append(str(outcome))
                log.warning("directory change not applied: %s", outcome)
            elif isinstance(outcome, ActionResult):
                report.jobs += sum(1 for q in outcome.queued if q.job is not None and q.created)

    def _add(self, adds: list[Change], now: datetime, report: SyncReport) -> None:
        for start in range(0, len(adds), ADD_CHUNK):
            part = adds[start:start + ADD_CHUNK]
            try:
                with self.store.transaction(f"adding {len(part)} devices from the directory") as conn:
                    for change in part:
                        self._add_in(conn, change, now)
            except StoreError:
                for change in part:  # one that appeared meanwhile (a RADIUS registration) must not stop the rest
                    try:
                        with self.store.transaction("adding a device from the directory") as conn:
                            self._add_in(conn, change, now)
                    except StoreError as exc:
                        report.errors.append(f"{change.dn}: not added: {exc}")

    def _add_in(self, conn: Connection, change: Change, now: datetime) -> None:
        entry = change.entry
        assert entry is not None  # reconcile adds only entries with a key
        assert entry.key is not None
        state = LifecycleState.OPERATIONAL if entry.approved else LifecycleState.PENDING
        self.links.add_in(conn, entry.key, change.dn, state=state, fields=change.fields,
                          held=bool(change.held), now=now)

    def _links(self, changes: list[Change], now: datetime) -> None:
        if not changes:
            return
        with self.store.transaction(f"linking {len(changes)} directory entries") as conn:
            for change in changes:
                if change.kind is Kind.UNLINK:
                    self.links.unlink_in(conn, change.dn)
                elif change.device is not None:
                    self.links.link_in(conn, change.device.id, change.dn, held=bool(change.held), now=now)

    def _request(self, change: Change, now: datetime) -> ActionRequest:
        assert change.device is not None
        device_id, dn, held, removed = change.device.id, change.dn, change.held, change.entry is None

        def write_link(conn: Connection) -> None:
            if removed:
                self.links.unlink_in(conn, dn)
            elif held is not None:
                self.links.link_in(conn, device_id, dn, held=held, now=now)

        action = change.action or UPDATE
        return ActionRequest(change.device, action, DIRECTORY_ACTOR, f"{change.detail} (entry {dn})", now,
                             columns=device_columns(change.fields), also=write_link)


class DirectoryScheduler:
    """``trustport worker``'s directory sync: every ``interval_seconds`` in its own thread (a slow directory never
    holds up enforcement jobs), sooner again after a failure; failures are logged and recorded, never raised."""

    def __init__(self, make_sync: Callable[[], DirectorySync], interval_s: float,
                 clock: Callable[[], datetime]) -> None:
        self.make_sync = make_sync
        self.interval_s = interval_s
        self.clock = clock
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="directory-sync", daemon=True)
        self.runs = 0

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        sync: DirectorySync | None = None
        while not self.stopping.is_set():
            wait = self.interval_s
            try:
                sync = sync or self.make_sync()
                sync.sync(self.clock())
            except DirectoryError:
                wait = min(self.interval_s, 60.0)  # already logged and recorded by sync()
            except TrustportError as exc:
                log.error("directory sync failed: %s", exc)
                wait = min(self.interval_s, 60.0)
            self.runs += 1
            self.stopping.wait(wait)
