"""Device lifecycle: which operator actions are allowed from which state (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from policy.errors import TrustportError
from policy.model import LifecycleState

S = LifecycleState


class TransitionRefused(TrustportError):
    """The action does not apply to a device in its current state."""


@dataclass(frozen=True)
class Action:
    name: str
    target: LifecycleState
    allowed_from: frozenset[LifecycleState]
    help: str
    deny_certificate: bool = False  # also put the device's certificate on the local deny list


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("approve", S.OPERATIONAL, frozenset({S.PENDING, S.ONBOARDING}),
               "Approve a pending or onboarding device: it becomes operational."),
        Action("quarantine", S.QUARANTINED, frozenset({S.PENDING, S.ONBOARDING, S.OPERATIONAL}),
               "Quarantine a device: its next authentication lands in the quarantine segment."),
        Action("release", S.OPERATIONAL, frozenset({S.QUARANTINED}),
               "Release a quarantined device back to operational."),
        Action("decommission", S.DECOMMISSIONED, frozenset({S.PENDING, S.ONBOARDING, S.OPERATIONAL, S.QUARANTINED}),
               "Decommission a device: it is rejected from now on."),
        Action("revoke", S.DECOMMISSIONED, frozenset({S.PENDING, S.ONBOARDING, S.OPERATIONAL, S.QUARANTINED}),
               "Revoke a device: decommissioned, and its certificate goes on the local deny list.",
               deny_certificate=True),
        Action("onboard", S.ONBOARDING, frozenset({S.PENDING}),
               "Start onboarding a pending device (it gets the onboarding segment, e.g. to enrol an LDevID)."),
        Action("reonboard", S.ONBOARDING, frozenset({S.OPERATIONAL, S.QUARANTINED, S.DECOMMISSIONED}),
               "Re-onboard a device (new credentials, new owner or network); a revoked certificate stays denied."),
    )
}


def apply_action(action: str, current: LifecycleState) -> LifecycleState:
    """The state after ``action``; raises TransitionRefused with a message naming both states."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise TransitionRefused(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    if current not in spec.allowed_from:
        allowed = ", ".join(sorted(s.value for s in spec.allowed_from))
        raise TransitionRefused(f"'{action}' applies to {allowed} devices, not to a {current.value} one")
    return spec.target
