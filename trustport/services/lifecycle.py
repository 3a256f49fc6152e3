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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from policy.errors import DeviceNotFound, TrustportError
from policy.lifecycle import ACTIONS, Action, TransitionRefused, apply_action
from policy.model import DeviceRecord, LifecycleState
from trustport.services.devices import resolve_device
from trustport.services.enforcement import Enforcement, PlannedJob, Queued, stays_message
from trustport.settings.config import TrustportConfig
from trustport.store.lifecycle import SETTABLE_COLUMNS, DeviceStanding, LifecycleEvent, SqlLifecycleStore
from trustport.store.protocols import LifecycleRepository
from trustport.store.queue import SqlJobQueue
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore

ENFORCEMENT_OFF = ("enforcement is not configured (no 'enforcement:' section): connected ports are not moved; "
                   "the device gets its new placement when it next authenticates")
_ATTEMPTS = 3  # prepare + commit, when the device changes between the two
UPDATE = "update"  # not an operator action: attributes (owner, class, location, segment) change, the state stays


class _Stale(Exception):
    """The device or its sessions changed after the action was prepared; nothing was written."""


@dataclass(frozen=True)
class ActionRequest:
    """One action on one device, as a batch (``act_batch``) takes it: ``columns`` are device columns set exactly
    (owner, device_class, location, segment), and ``also`` writes more inside the action's transaction (the
    directory's link), so all of it commits together or not at all."""

    device: DeviceRecord
    action: str
    actor: str
    reason: str | None
    now: datetime
    segment: str | None = None
    columns: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    also: Callable[[Connection], None] | None = None


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
    columns: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    also: Callable[[Connection], None] | None = None


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
                segment: str | None = None, columns: Mapping[str, str | None] | None = None,
                also: Callable[[Connection], None] | None = None) -> PreparedAction:
        """Validate and plan ``action`` on ``device``; raises (``TrustportError``) before anything is written.
        ``action`` is one of ``ACTIONS`` or ``"update"`` (only ``columns`` change)."""
        columns = dict(columns or {})
        unknown = set(columns) - SETTABLE_COLUMNS
        if unknown:
            raise TrustportError(f"not a device attribute that can be set: {', '.join(sorted(unknown))}")
        self.check_segment(segment)
        self.check_segment(columns.get("segment"))
        name = f"device #{device.id} {device.key.serial_number}"
        if action == UPDATE:
            target = device.state
            spec = Action(UPDATE, target, frozenset(LifecycleState), "attributes changed; the state stays")
        else:
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
        line = f"{action} by {actor}: {reason}" if reason and action != UPDATE else None
        notes = f"{device.notes}\n{line}" if line and device.notes else line
        after = dataclasses.replace(device, state=target, segment=columns.get("segment", segment or device.segment),
                                    notes=notes if notes is not None else device.notes,
                                    owner=columns.get("owner", device.owner),
                                    device_class=columns.get("device_class", device.device_class),
                                    location=columns.get("location", device.location))
        event = LifecycleEvent(device.id, now, actor, action, device.state.value, target.value, reason)
        job_reason = f"{action} by {actor}" + (f": {reason}" if reason else "")
        jobs = self.enforcement.plan(after, now) if self.enforcement is not None else None
        unenforced: tuple[str, ...] = ()
        if jobs is None:
            unenforced = tuple(stays_message(device, session, "no 'enforcement:' section in the config")
                               for session in SqlSessionStore(self.store).active_for_device(device.id))
        return PreparedAction(device, after, spec, event, job_reason, jobs, unenforced, columns, also)

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
                                       notes=after.notes, now=event.time, columns=prepared.columns)
        SqlLifecycleStore.record_in(conn, event)
        if prepared.also is not None:
            prepared.also(conn)
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
        """``act`` on many devices (``act_batch`` with one action for all)."""
        return self.act_batch([ActionRequest(d, action, actor, reason, now, segment) for d in devices],
                              chunk=chunk, progress=progress)

    def _prepare(self, request: ActionRequest, device: DeviceRecord | None = None) -> PreparedAction:
        return self.prepare(device or request.device, request.action, actor=request.actor, reason=request.reason,
                            now=request.now, segment=request.segment, columns=request.columns, also=request.also)

    def act_batch(self, requests: Sequence[ActionRequest], *, chunk: int = 100,
                  progress: Callable[[int], object] | None = None) -> list[ActionResult | TrustportError]:
        """Per request the result or the error that refused it, in order. Each device's action is still
        all-or-nothing; up to ``chunk`` of them are written in one transaction (a bulk quarantine of a campus is
        one command). A device that changed since it was planned, or a chunk whose transaction failed, is done
        again device by device with ``act``."""
        out: list[ActionResult | TrustportError] = []
        for start in range(0, len(requests), max(1, chunk)):
            part = requests[start:start + max(1, chunk)]
            prepared: list[PreparedAction | TrustportError] = []
            for request in part:
                try:
                    prepared.append(self._prepare(request))
                except TrustportError as exc:
                    prepared.append(exc)
            written: dict[int, ActionResult] = {}
            ready = [p for p in prepared if isinstance(p, PreparedAction)]
            if ready:
                try:
                    with self.store.transaction(f"{part[0].action} of {len(ready)} devices") as conn:
                        SqlJobQueue.lock(conn)
                        for p in ready:  # checked one after the other: a device named twice is written once
                            if p.before.id not in written and self._fresh_in(conn, p):
                                written[p.before.id] = self._write_in(conn, p)
                except TrustportError:
                    written = {}  # nothing of this chunk was written: each device on its own below says why
            for request, item in zip(part, prepared, strict=True):
                if isinstance(item, TrustportError):
                    out.append(item)
                elif request.device.id in written:
                    out.append(written[request.device.id])
                else:
                    try:
                        out.append(self._act(request))
                    except TrustportError as exc:
                        out.append(exc)
            if progress is not None:
                progress(len(part))
        return out

    def act(self, device: DeviceRecord, action: str, *, actor: str, reason: str | None, now: datetime,
            segment: str | None = None) -> ActionResult:
        """Do ``action`` on ``device`` completely or not at all."""
        return self._act(ActionRequest(device, action, actor, reason, now, segment))

    def _act(self, request: ActionRequest) -> ActionResult:
        device, action = request.device, request.action
        current = device
        for _ in range(_ATTEMPTS):
            prepared = self._prepare(request, current)
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
