"""Operator actions on devices (approve, quarantine, release, decommission, revoke, re-onboard), with audit.

One action on one device is one unit of work, in two phases:

1. ``prepare`` validates everything that can refuse the action (known segment, allowed transition, a
   certificate serial for ``revoke``) and plans the enforcement jobs. Planning reads (the device's active
   sessions, its new placement from ``Enforcement.target``, which uses the same ``decide()`` as the hook) but
   writes nothing.
2. ``commit`` writes in ONE registry transaction: the state change, the audit record (``lifecycle_events``),
   the deny-list entry (``denied_certificates``) and the enforcement jobs. It first takes the write lock (SQLite
   ``BEGIN IMMEDIATE``, PostgreSQL the queue's advisory lock plus ``SELECT ... FOR UPDATE`` on the device) and
   re-reads what the plan was made on; if the device or its sessions changed meanwhile, nothing is written and
   the action is prepared again. A crash or error anywhere in between rolls everything back.

Without an ``enforcement:`` section the action still commits, with no job, and says that connected ports are
not moved (the device gets its new placement when it next authenticates) -- naming every session that stays where
it is, as it does for a session on a NAS no ``enforcement.nas`` entry covers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from policy.errors import DeviceNotFound, TrustportError
from policy.lifecycle import ACTIONS, Action, TransitionRefused, apply_action
from policy.model import DeviceRecord
from trustport.services.devices import resolve_device
from trustport.services.enforcement import Enforcement, PlannedJob, Queued, stays_message
from trustport.settings.config import TrustportConfig
from trustport.store.lifecycle import DeviceStanding, LifecycleEvent, SqlLifecycleStore
from trustport.store.protocols import LifecycleRepository
from trustport.store.queue import SqlJobQueue
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore

ENFORCEMENT_OFF = ("enforcement is not configured (no 'enforcement:' section): connected ports are not moved; "
                   "the device gets its new placement when it next authenticates")
_ATTEMPTS = 3  # prepare + commit, when the device changes between the two


class _Stale(Exception):
    """The device or its sessions changed after the action was prepared; nothing was written."""


@dataclass(frozen=True)
class PreparedAction:
    """A validated action, ready to commit; nothing has been written yet."""

    before: DeviceRecord
    after: DeviceRecord
    spec: Action
    event: LifecycleEvent
    job_reason: str
    jobs: tuple[PlannedJob, ...] | None  # None: enforcement is not configured
    unenforced: tuple[str, ...] = ()  # enforcement not configured: each connected session that stays where it is


@dataclass(frozen=True)
class ActionResult:
    before: DeviceRecord
    after: DeviceRecord
    denied: bool
    queued: list[Queued]
    enforcement_note: str | None = None  # set when enforcement is not configured: ports are not moved
    unenforced: tuple[str, ...] = ()  # enforcement not configured: each connected session that stays where it is

    @property
    def warnings(self) -> tuple[str, ...]:
        """Every connected session of the device that is not moved, and why (said plainly)."""
        return self.unenforced + tuple(q.problem for q in self.queued if q.stays and q.problem)


def resolve_devices(store: SqlDeviceStore, refs: Sequence[str]) -> list[DeviceRecord]:
    """Every reference (id or serial in any spelling) resolved before anything is done, each device once, in the
    order it was first named; raises ``DeviceNotFound`` naming every reference that does not resolve."""
    found: dict[int, DeviceRecord] = {}
    problems: list[str] = []
    for ref in refs:
        try:
            record = resolve_device(store, ref)
        except DeviceNotFound as exc:
            problems.append(str(exc))
            continue
        found.setdefault(record.id, record)
    if problems:
        raise DeviceNotFound("; ".join(problems) + "; nothing was changed")
    return list(found.values())


class LifecycleService:
    def __init__(self, config: TrustportConfig, store: SqlDeviceStore,
                 enforcement: Enforcement | None = None) -> None:
        """``enforcement``: the composition root's planner (shared with the worker's); built here when not given."""
        self.config = config
        self.store = store
        self.audit: LifecycleRepository = SqlLifecycleStore(store)
        if enforcement is None and config.enforcement is not None:
            enforcement = Enforcement(config, store)
        self.enforcement = enforcement

    def check_segment(self, segment: str | None) -> None:
        if segment is not None and segment not in self.config.segments:
            raise TrustportError(f"segment {segment!r} is not defined; known: {', '.join(self.config.segments)}; "
                                 "nothing was changed")

    def prepare(self, device: DeviceRecord, action: str, *, actor: str, reason: str | None, now: datetime,
                segment: str | None = None) -> PreparedAction:
        """Validate and plan ``action`` on ``device``; raises (``TrustportError``) before anything is written."""
        self.check_segment(segment)
        name = f"device #{device.id} {device.key.serial_number}"
        try:
            target = apply_action(action, device.state)
        except TransitionRefused as exc:
            raise TransitionRefused(f"{name}: {exc}") from exc
        spec = ACTIONS[action]
        if spec.deny_certificate and not device.cert_serial:
            raise TrustportError(
                f"{name}: no certificate serial is known, so '{action}' cannot put its certificate on the deny "
                "list; nothing was changed. Bind the certificate first ('trustport devices rebind'), or "
                "'decommission' the device and add its certificate to the CRL of its CA")
        line = f"{action} by {actor}: {reason}" if reason else None
        notes = f"{device.notes}\n{line}" if line and device.notes else line
        after = dataclasses.replace(device, state=target, segment=segment or device.segment,
                                    notes=notes if notes is not None else device.notes)
        event = LifecycleEvent(device.id, now, actor, action, device.state.value, target.value, reason)
        job_reason = f"{action} by {actor}" + (f": {reason}" if reason else "")
        jobs = self.enforcement.plan(after, now) if self.enforcement is not None else None
        unenforced: tuple[str, ...] = ()
        if jobs is None:
            unenforced = tuple(stays_message(device, session, "no 'enforcement:' section in the config")
                               for session in SqlSessionStore(self.store).active_for_device(device.id))
        return PreparedAction(device, after, spec, event, job_reason, jobs, unenforced)

    def commit(self, prepared: PreparedAction) -> ActionResult:
        """Write the prepared action in one transaction; raises ``_Stale`` (nothing written) if the device or its
        sessions changed since it was prepared."""
        with self.store.transaction(f"{prepared.event.action} of device #{prepared.before.id}") as conn:
            SqlJobQueue.lock(conn)  # first statement: the write lock, so the re-read below stays true
            if not self._fresh_in(conn, prepared):
                raise _Stale(f"device #{prepared.before.id} or its sessions changed")
            return self._write_in(conn, prepared)

    @staticmethod
    def _fresh_in(conn: Connection, prepared: PreparedAction) -> bool:
        """The device and its sessions are still what the action was planned on."""
        before = prepared.before
        planned_on = DeviceStanding(before.state.value, before.segment, before.notes, before.cert_serial)
        if SqlLifecycleStore.standing_for_update(conn, before.id) != planned_on:
            return False
        return prepared.jobs is None or (SqlLifecycleStore.active_session_ids_in(conn, before.id)
                                         == [p.session.id for p in prepared.jobs])

    def _write_in(self, conn: Connection, prepared: PreparedAction) -> ActionResult:
        before, after, event = prepared.before, prepared.after, prepared.event
        queued: list[Queued] = []
        denied = False
        SqlLifecycleStore.set_state_in(conn, before.id, state=after.state, segment=after.segment,
                                       notes=after.notes, now=event.time)
        SqlLifecycleStore.record_in(conn, event)
        if prepared.spec.deny_certificate:
            assert before.cert_serial  # checked by prepare
            denied = SqlLifecycleStore.deny_in(conn, before.key.issuer, before.cert_serial, device_id=before.id,
                                               time=event.time, actor=event.actor, reason=event.reason)
        for p in prepared.jobs or ():
            if p.plan is None or p.lock_key is None:
                queued.append(Queued(p.session, p.decision, None, problem=p.problem, stays=p.stays))
                continue
            assert self.enforcement is not None
            job, created = SqlJobQueue.enqueue_in(conn, p.plan, lock_key=p.lock_key, reason=prepared.job_reason,
                                                  now=event.time, device_id=before.id, session_id=p.session.id,
                                                  max_attempts=self.enforcement.max_attempts)
            queued.append(Queued(p.session, p.decision, job, created))
        return ActionResult(before, after, denied, queued, ENFORCEMENT_OFF if prepared.jobs is None else None,
                            prepared.unenforced)

    def act_many(self, devices: Sequence[DeviceRecord], action: str, *, actor: str, reason: str | None,
                 now: datetime, segment: str | None = None, chunk: int = 100,
                 progress: Callable[[int], object] | None = None) -> list[ActionResult | TrustportError]:
        """``act`` on many devices, per device the result or the error that refused it, in order. Each device's
        action is still all-or-nothing; up to ``chunk`` of them are written in one transaction (a bulk quarantine
        of a campus is one command). A device that changed since it was planned, or a chunk whose transaction
        failed, is done again device by device with ``act``."""
        out: list[ActionResult | TrustportError] = []
        for start in range(0, len(devices), max(1, chunk)):
            part = devices[start:start + max(1, chunk)]
            prepared: list[PreparedAction | TrustportError] = []
            for device in part:
                try:
                    prepared.append(self.prepare(device, action, actor=actor, reason=reason, now=now,
                                                 segment=segment))
                except TrustportError as exc:
                    prepared.append(exc)
            written: dict[int, ActionResult] = {}
            ready = [p for p in prepared if isinstance(p, PreparedAction)]
            if ready:
                try:
                    with self.store.transaction(f"{action} of {len(ready)} devices") as conn:
                        SqlJobQueue.lock(conn)
                        for p in ready:  # checked one after the other: a device named twice is written once
                            if p.before.id not in written and self._fresh_in(conn, p):
                                written[p.before.id] = self._write_in(conn, p)
                except TrustportError:
                    written = {}  # nothing of this chunk was written: each device on its own below says why
            for device, item in zip(part, prepared, strict=True):
                if isinstance(item, TrustportError):
                    out.append(item)
                elif device.id in written:
                    out.append(written[device.id])
                else:
                    try:
                        out.append(self.act(device, action, actor=actor, reason=reason, now=now, segment=segment))
                    except TrustportError as exc:
                        out.append(exc)
            if progress is not None:
                progress(len(part))
        return out

    def act(self, device: DeviceRecord, action: str, *, actor: str, reason: str | None, now: datetime,
            segment: str | None = None) -> ActionResult:
        """Do ``action`` on ``device`` completely or not at all."""
        current = device
        for _ in range(_ATTEMPTS):
            prepared = self.prepare(current, action, actor=actor, reason=reason, now=now, segment=segment)
            try:
                return self.commit(prepared)
            except _Stale:
                fresh = self.store.get_device(device.id)
                if fresh is None:
                    raise DeviceNotFound(f"device #{device.id} is no longer in the registry; nothing was changed"
                                         ) from None
                current = fresh
        raise TrustportError(f"device #{device.id} {device.key.serial_number} kept changing while '{action}' was "
                             "being written (authentications or another operator); nothing was changed; run the "
                             "command again")
