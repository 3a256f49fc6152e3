"""A device's standing changed while it is connected: work out where it must go now and queue the jobs.

The target placement comes from the same ``policy.decide.place`` the RADIUS hook uses, with a ``PlacementInput``
built by the same ``PlacementService``: the device's registry record, its last verified certificate (subject, MUD
URL, persisted at accept time), its MUD hint looked up like the hook does, its current attestation standing and
the session's NAS/site -- so what the worker pushes and what the device gets when it re-authenticates agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from policy.enforcement import NasBinding, Plan, PlanningError, SessionView, find_binding, plan_for
from policy.model import Decision, DeviceRecord, NetworkContext, PlacementInput
from trustport.services.authorize import PlacementService
from trustport.settings.config import TrustportConfig
from trustport.store.attestation import SqlAttestationStore
from trustport.store.protocols import AttestationRepository, JobQueue, SessionRepository
from trustport.store.queue import FINISHED, Job, SqlJobQueue
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore
from trustport.worker.loop import WorkerSettings


@dataclass(frozen=True)
class PlannedJob:
    """One active session and what will be queued for it; ``plan`` None when nothing is (see ``problem``).
    ``stays``: the device stays where it is because no enforcement path exists for its NAS (a warning, unlike a
    session already verified in the target VLAN)."""

    session: SessionView
    decision: Decision
    plan: Plan | None = None
    lock_key: str | None = None
    problem: str | None = None
    stays: bool = False


@dataclass(frozen=True)
class Queued:
    session: SessionView
    decision: Decision
    job: Job | None  # None when planning failed (see ``problem``)
    created: bool = False
    problem: str | None = None
    stays: bool = False


def stays_message(device: DeviceRecord, session: SessionView, why: str) -> str:
    """Says plainly that a connected device is not moved, where it is, and why."""
    nas = session.nas_ip or session.nas_identifier or "?"
    vlan = f"VLAN {session.vlan}" if session.vlan is not None else "its current VLAN"
    return (f"device {device.key.serial_number} is connected on NAS {nas} port {session.nas_port or '?'} and stays "
            f"in {vlan} until it re-authenticates: {why}")


class Enforcement:
    def __init__(self, config: TrustportConfig, store: SqlDeviceStore,
                 placement: PlacementService | None = None,
                 capabilities: Mapping[str, frozenset[str]] | None = None) -> None:
        """``placement``: the composition root's (the authorizer's); built from the config when not given.
        ``capabilities``: inventory name -> what its driver can do, so the planner plans only steps the driver
        can run (the composition root reads them from the driver registry)."""
        if config.enforcement is None:
            raise PlanningError("enforcement is not configured: add an 'enforcement:' section (inventory, nas)")
        self.config = config
        self.settings = placement.settings if placement is not None else config.hook_settings()
        self.store = store
        self.sessions: SessionRepository = SqlSessionStore(store)
        self.queue: JobQueue = SqlJobQueue(store)
        enf = config.enforcement
        can = capabilities or {}
        self.bindings = tuple(NasBinding(n.nas_ip, n.nas_identifier, n.coa, n.switch, dict(n.ports), n.bounce,
                                         n.coa_mode, coa_can=can.get(n.coa) if n.coa else None,
                                         switch_can=can.get(n.switch) if n.switch else None) for n in enf.nas)
        self.max_attempts = enf.max_attempts
        # a lease the config does not set is short: the worker renews it while alive (settings' default is older)
        lease = enf.lease_seconds
        self.worker_settings = WorkerSettings(lease=timedelta(seconds=lease),
                                              backoff_base=timedelta(seconds=enf.backoff_seconds),
                                              backoff_cap=timedelta(seconds=enf.backoff_cap_seconds))
        self.placement = placement if placement is not None else PlacementService.from_settings(self.settings, store)
        self.gate = self.placement.attestation

    def target_input(self, device: DeviceRecord, session: SessionView, now: datetime) -> PlacementInput:
        context = NetworkContext(nas_ip=session.nas_ip, nas_identifier=session.nas_identifier,
                                 nas_port=session.nas_port, calling_station_id=session.calling_station_id)
        return self.placement.for_session(device, context, now)

    def target(self, device: DeviceRecord, session: SessionView, now: datetime) -> Decision:
        """Where the device belongs now; the certificate itself is re-validated when it re-authenticates."""
        return self.placement.place(self.target_input(device, session, now))

    def plan(self, device: DeviceRecord, now: datetime) -> tuple[PlannedJob, ...]:
        """What moving every active session of ``device`` to its placement takes; reads only (the lifecycle
        service writes these jobs in its own transaction, ``device_changed`` queues them at once)."""
        rules = self.settings.rules
        park = rules.segments[rules.quarantine_segment]
        planned = []
        active = self.sessions.active_for_device(device.id)
        verified = [s.id for s in active if s.vlan_read_back_at is not None]
        open_jobs = self.queue.sessions_with_open_jobs(verified) if verified else set()
        for session in active:
            decision = self.target(device, session, now)
            # only a switch's read-back proves where the port is (RADIUS's VLAN may never have been applied), and
            # only while no job that may still move it is waiting
            if (session.vlan is not None and decision.vlan == session.vlan and session.vlan_read_back_at is not None
                    and session.id not in open_jobs):
                planned.append(PlannedJob(session, decision, problem=f"already in VLAN {decision.vlan} (read back "
                                          f"from the switch at {session.vlan_read_back_at.isoformat()})"))
                continue
            try:
                plan = plan_for(session, decision, self.bindings, park_vlan=park)
                binding = find_binding(self.bindings, session)
            except PlanningError as exc:
                planned.append(PlannedJob(session, decision, problem=stays_message(device, session, str(exc)),
                                          stays=True))
                continue
            planned.append(PlannedJob(session, decision, plan, binding.lock_key))
        return tuple(planned)

    def device_changed(self, device: DeviceRecord, reason: str, now: datetime) -> list[Queued]:
        """Queue the jobs that move every active session of ``device`` to its new placement."""
        out = []
        for item in self.plan(device, now):
            if item.plan is None or item.lock_key is None:
                out.append(Queued(item.session, item.decision, None, problem=item.problem, stays=item.stays))
                continue
            job, created = self.queue.enqueue(item.plan, lock_key=item.lock_key, reason=reason, now=now,
                                              device_id=device.id, session_id=item.session.id,
                                              max_attempts=self.max_attempts)
            out.append(Queued(item.session, item.decision, job, created))
        return out

    def drain_reevaluations(self, now: datetime) -> list[Queued]:
        """Turn recorded re-evaluation requests (e.g. an attestation drop) into jobs."""
        results: AttestationRepository = SqlAttestationStore(self.store)
        queued: list[Queued] = []
        for request in results.pending_reevaluations():
            device = self.store.get_device(request.device_id)
            if device is not None:
                queued += self.device_changed(device, request.reason, now)
            results.mark_reevaluated(request.id, now)
        return queued


def wait_for_jobs(queue: JobQueue, job_ids: Sequence[int], timeout: float, *, poll_seconds: float = 0.25,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> dict[int, Job]:
    """Poll the queue (a worker runs elsewhere) until every job has finished -- done, failed or cancelled -- or
    ``timeout`` seconds passed; each job as last seen (a job still queued or running: the timeout passed)."""
    deadline = clock() + timeout
    seen: dict[int, Job] = {}
    while True:
        waiting = [i for i in job_ids if i not in seen or seen[i].state not in FINISHED]
        if waiting:
            seen.update(queue.get_many(waiting))
        if all(i in seen and seen[i].state in FINISHED for i in job_ids) or clock() >= deadline:
            return seen
        sleep(min(poll_seconds, max(0.0, deadline - clock())))
