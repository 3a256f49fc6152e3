"""The decision for one authentication, from a certificate verdict and the registry's record of the device.

Pure and table-testable. Grows into the full rule engine (issue "Policy engine ..."); for now the rules are the
lifecycle defaults: operational -> its segment, unknown/pending/quarantined -> quarantine, decommissioned or
invalid -> reject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from policy.attestation import AttestationStanding, Tier
from policy.model import CertificateVerdict, CertKind, Decision, DeviceRecord, LifecycleState, Outcome


@dataclass(frozen=True)
class AttestationRules:
    """Where a device goes by its attestation (it can only lower a placement, never raise it)."""

    warning_segment: str
    missing_ldevid_segment: str  # no/expired/unbound result for a device with an LDevID
    missing_idevid_segment: str  # ... for a device known only by its manufacturer IDevID


@dataclass(frozen=True)
class SegmentRules:
    segments: Mapping[str, int] = field(default_factory=dict)  # segment name -> VLAN id
    quarantine_segment: str = "quarantine"
    default_segment: str | None = None  # for operational devices without a segment of their own
    onboarding_segment: str | None = None  # for devices in the onboarding state; quarantine if unset
    attestation: AttestationRules | None = None  # None: attestation results are not used

    def __post_init__(self) -> None:
        names = [self.quarantine_segment, self.default_segment, self.onboarding_segment]
        if self.attestation is not None:
            a = self.attestation
            names += [a.warning_segment, a.missing_ldevid_segment, a.missing_idevid_segment]
        for name in names:
            if name is not None and name not in self.segments:
                raise ValueError(f"segment {name!r} is used by the rules but not defined in segments")
        for name, vlan in self.segments.items():
            if not 1 <= vlan <= 4094:
                raise ValueError(f"segment {name!r}: VLAN {vlan} is outside 1-4094")


def _quarantine(rules: SegmentRules, reasons: tuple[str, ...], register_pending: bool = False) -> Decision:
    name = rules.quarantine_segment
    return Decision(Outcome.QUARANTINE, rules.segments[name], name, reasons, register_pending)


def _place(rules: SegmentRules, segment: str, reasons: tuple[str, ...]) -> Decision:
    if segment == rules.quarantine_segment:
        return _quarantine(rules, reasons)
    return Decision(Outcome.ACCEPT, rules.segments[segment], segment, reasons)


def apply_attestation(decision: Decision, device: DeviceRecord, verdict: CertificateVerdict,
                      standing: AttestationStanding | None, rules: SegmentRules) -> Decision:
    """Lower an accept by the device's attestation tier; quarantine and reject are left as they are."""
    policy = rules.attestation
    if policy is None or decision.outcome is not Outcome.ACCEPT:
        return decision
    standing = standing or AttestationStanding(None, "no attestation result")
    why = f"attestation {standing.label}: {standing.detail}"
    if standing.tier is Tier.AFFIRMING:
        return Decision(decision.outcome, decision.vlan, decision.segment, (*decision.reasons, why))
    if standing.tier is Tier.CONTRAINDICATED:
        return _quarantine(rules, (*decision.reasons, why))
    if standing.tier is Tier.WARNING:
        return _place(rules, policy.warning_segment, (*decision.reasons, why))
    kind = device.cert_kind or verdict.kind
    segment = policy.missing_ldevid_segment if kind is CertKind.LDEVID else policy.missing_idevid_segment
    return _place(rules, segment, (*decision.reasons, why))


def decide(verdict: CertificateVerdict, device: DeviceRecord | None, rules: SegmentRules,
           attestation: AttestationStanding | None = None) -> Decision:
    base = _decide_lifecycle(verdict, device, rules)
    return base if device is None else apply_attestation(base, device, verdict, attestation, rules)


def _decide_lifecycle(verdict: CertificateVerdict, device: DeviceRecord | None, rules: SegmentRules) -> Decision:
    cert = verdict.reasons()
    if not verdict.valid:
        return Decision(Outcome.REJECT, None, None, cert)
    if device is None:
        kind = "IDevID" if verdict.kind is CertKind.IDEVID else "LDevID"
        return _quarantine(rules, (*cert, f"genuine {kind} of an unknown device: quarantined, recorded as pending"),
                           register_pending=True)
    state = device.state
    if state is LifecycleState.DECOMMISSIONED:
        return Decision(Outcome.REJECT, None, None, (*cert, f"device {device.id} is decommissioned"))
    if state is LifecycleState.QUARANTINED:
        return _quarantine(rules, (*cert, f"device {device.id} is quarantined"))
    if state is LifecycleState.PENDING:
        return _quarantine(rules, (*cert, f"device {device.id} is pending approval"))
    if state is LifecycleState.ONBOARDING:
        name = rules.onboarding_segment
        if name is None:
            return _quarantine(rules, (*cert, f"device {device.id} is onboarding; no onboarding segment configured"))
        return Decision(Outcome.ACCEPT, rules.segments[name], name, (*cert, f"device {device.id} is onboarding"))
    segment = device.segment or rules.default_segment
    if segment is None:
        return _quarantine(rules, (*cert, f"operational device {device.id} has no segment and no default is set"))
    if segment not in rules.segments:
        return _quarantine(rules, (*cert, f"segment {segment!r} of device {device.id} is not configured"))
    return Decision(Outcome.ACCEPT, rules.segments[segment], segment,
                    (*cert, f"operational device {device.id} in segment {segment}"))
