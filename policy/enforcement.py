"""Enforcement planning (pure): when a connected device's placement changes, what to tell which switch or NAS.

A ``Plan`` is an ordered list of ``Step``s and, optionally, a fallback list used when a primary step fails
permanently (a CoA NAK, an unsupported operation). Preference, as a NAC does it: CoA re-authenticate (or
Disconnect for a reject) where the NAS supports RFC 5176; otherwise set the port's VLAN on the switch, read it
back, and bounce the port so the device re-authenticates into the new segment.

The worker executes steps through ``StepExecutor``, which the app implements with ``switch_drivers`` — this
module never imports them. It hands the executor ``Unit``s -- the next steps of many jobs, a set-VLAN and its
bounce on one port being one unit -- so the executor can apply every port of one switch in one session, and gets
one ``UnitResult`` per unit back: a port that fails fails its own job only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from policy.errors import EnforcementError
from policy.model import Decision, Outcome


class StepKind(StrEnum):
    COA_REAUTH = "coa-reauth"
    COA_DISCONNECT = "coa-disconnect"
    SET_VLAN = "set-vlan"
    BOUNCE = "bounce"
    ENSURE_UP = "ensure-up"  # never planned: the worker's first step when it resumes a job that was mid-bounce


@dataclass(frozen=True)
class Step:
    kind: StepKind
    target: str  # inventory name of the switch or NAS
    port: str  # interface name, or a CoA session selector
    vlan: int | None = None


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    fallback: tuple[Step, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"steps": [asdict(s) for s in self.steps], "fallback": [asdict(s) for s in self.fallback]})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)

        def steps(items: Sequence[Mapping[str, object]]) -> tuple[Step, ...]:
            return tuple(Step(StepKind(str(i["kind"])), str(i["target"]), str(i["port"]),
                              int(str(i["vlan"])) if i.get("vlan") is not None else None) for i in items)

        return cls(steps(data["steps"]), steps(data.get("fallback", [])))

    def all_steps(self) -> tuple[Step, ...]:
        return self.steps + self.fallback


@dataclass(frozen=True)
class NasBinding:
    """How to reach the equipment behind one NAS (matched by NAS-IP-Address or NAS-Identifier)."""

    nas_ip: str | None = None
    nas_identifier: str | None = None
    coa: str | None = None  # inventory name of a CoA-capable NAS entry
    switch: str | None = None  # inventory name of a CLI/SNMP switch entry
    ports: Mapping[str, str] = field(default_factory=dict)  # NAS-Port / NAS-Port-Id -> switch interface name
    bounce: bool = True
    coa_mode: str = "reauth"  # "reauth" (CoA-Request) or "disconnect" (NASes without CoA, e.g. hostapd)
    # what the drivers behind ``coa``/``switch`` can do (capability names: set_vlan, bounce_port, reauthenticate,
    # disconnect); None: not known here, the steps are planned as configured and the driver says Unsupported
    coa_can: frozenset[str] | None = None
    switch_can: frozenset[str] | None = None

    def matches(self, nas_ip: str | None, nas_identifier: str | None) -> bool:
        if self.nas_identifier is not None and nas_identifier == self.nas_identifier:
            return True
        return self.nas_ip is not None and nas_ip == self.nas_ip

    @property
    def lock_key(self) -> str:
        return self.switch or self.coa or f"nas:{self.nas_ip or self.nas_identifier}"


@dataclass(frozen=True)
class SessionView:
    """Where a device is connected (from RADIUS post-auth and accounting)."""

    id: int
    device_id: int | None
    nas_ip: str | None
    nas_identifier: str | None
    nas_port: str | None
    calling_station_id: str
    acct_session_id: str | None
    vlan: int | None
    vlan_read_back_at: datetime | None = None  # when a switch read ``vlan`` back; None: only RADIUS said so
    source: str = "radius"  # "radius" (post-auth, accounting) or "manual" (trustport sessions add)


class PlanningError(EnforcementError):
    """The session cannot be acted on with the configured equipment (the message says what is missing)."""


def find_binding(bindings: Sequence[NasBinding], session: SessionView) -> NasBinding:
    for binding in bindings:
        if binding.matches(session.nas_ip, session.nas_identifier):
            return binding
    raise PlanningError(f"no enforcement.nas entry for NAS {session.nas_ip or session.nas_identifier}; "
                        "add one naming its CoA and/or switch inventory entries")


def session_selector(session: SessionView) -> str:
    parts = [f"calling-station-id={session.calling_station_id}"]
    if session.acct_session_id:
        parts.append(f"acct-session-id={session.acct_session_id}")
    return ",".join(parts)


def plan_for(session: SessionView, decision: Decision, bindings: Sequence[NasBinding],
             park_vlan: int | None = None) -> Plan:
    """Steps that move the connected device to ``decision`` (CoA first, switch port as fallback).

    For a reject, the switch path parks the port in ``park_vlan`` (the quarantine VLAN) before bouncing it, so
    the port is isolated even if the switch does not run 802.1X on it.
    """
    binding = find_binding(bindings, session)
    switch_steps: tuple[Step, ...] = ()
    if binding.switch is not None:
        port = binding.ports.get(session.nas_port or "", session.nas_port) if session.nas_port else None
        if port is None:
            raise PlanningError(f"session {session.id} has no NAS port; cannot find the switch interface")
        if not _can(binding.switch_can, "set_vlan"):
            raise PlanningError(f"switch {binding.switch}'s driver cannot set a port's VLAN; give this NAS a switch "
                                "entry whose driver can (see 'trustport switch check')")
        vlan = decision.vlan if decision.outcome is not Outcome.REJECT else park_vlan
        if vlan is not None:
            switch_steps = (Step(StepKind.SET_VLAN, binding.switch, port, vlan),)
        if binding.bounce and _can(binding.switch_can, "bounce_port"):
            switch_steps += (Step(StepKind.BOUNCE, binding.switch, port),)
    coa_steps: tuple[Step, ...] = ()
    if binding.coa is not None:
        disconnect = decision.outcome is Outcome.REJECT or binding.coa_mode == "disconnect"
        if disconnect and not _can(binding.coa_can, "disconnect") and decision.outcome is Outcome.REJECT:
            disconnect = False  # a re-authentication that is rejected ends the session too
        kind = StepKind.COA_DISCONNECT if disconnect else StepKind.COA_REAUTH
        if _can(binding.coa_can, "disconnect" if disconnect else "reauthenticate"):
            coa_steps = (Step(kind, binding.coa, session_selector(session)),)
    if coa_steps:
        return Plan(coa_steps, switch_steps)
    if switch_steps:
        return Plan(switch_steps)
    raise PlanningError(f"enforcement.nas entry for {binding.nas_ip or binding.nas_identifier} names neither "
                        "a CoA NAS nor a switch whose driver can do this")


def _can(capabilities: frozenset[str] | None, what: str) -> bool:
    return capabilities is None or what in capabilities


class FailureKind(StrEnum):
    TRANSIENT = "transient"  # worth retrying later with backoff: unreachable, timed out, read-back disagreed
    PERMANENT = "permanent"  # retrying this path will not help (NAK, unsupported, no such port/VLAN): fallback
    NO_ANSWER = "no-answer"  # the NAS never answered within its retry budget: it cannot do it for this job, so the
    # fallback runs at once; without one, the job is retried like a transient failure


@dataclass(frozen=True)
class StepFailure:
    kind: FailureKind
    message: str  # names the step, the device and what happened


@dataclass(frozen=True)
class Unit:
    """The steps of one job applied together on one device: a single step, or a set-VLAN and the bounce of the
    same port (one ``PortMove``)."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps or any((s.target, s.port) != (self.steps[0].target, self.steps[0].port)
                                 for s in self.steps):
            raise ValueError("a unit is one or more steps on the same target and port")

    @property
    def target(self) -> str:
        return self.steps[0].target

    @property
    def port(self) -> str:
        return self.steps[0].port

    @property
    def bounces(self) -> bool:
        return any(s.kind is StepKind.BOUNCE for s in self.steps)


@dataclass(frozen=True)
class UnitResult:
    """What happened to one unit: its first ``done`` steps completed (one message each); ``failure`` says why the
    next one did not. ``vlan``: the VLAN the switch read back after the move (None: nothing was read)."""

    done: int
    messages: tuple[str, ...] = ()
    failure: StepFailure | None = None
    vlan: int | None = None


class StepExecutor(Protocol):
    """Runs units against real equipment; never raises for a unit's own failure (it is in its result)."""

    def run(self, units: Sequence[Unit]) -> list[UnitResult]:
        """Apply every unit (the executor batches per switch and runs NAS requests concurrently) and verify it;
        one result per unit, in order."""

    def release(self) -> None:
        """Close whatever connections the executor keeps open (for the calling thread)."""


def first_unit(steps: Sequence[Step], start: int, end: int) -> Unit:
    """The unit starting at ``steps[start]``, within the path ending before ``end``: a set-VLAN takes the bounce
    of the same port that follows it along."""
    step = steps[start]
    if (step.kind is StepKind.SET_VLAN and start + 1 < end and steps[start + 1].kind is StepKind.BOUNCE
            and (steps[start + 1].target, steps[start + 1].port) == (step.target, step.port)):
        return Unit((step, steps[start + 1]))
    return Unit((step,))


def backoff(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff after the ``attempts``-th failure: base, 2*base, 4*base, ... up to cap."""
    return min(cap, base * (1 << min(30, max(0, attempts - 1))))


def not_before(now: datetime, attempts: int, base: timedelta, cap: timedelta) -> datetime:
    return now + backoff(attempts, base, cap)
