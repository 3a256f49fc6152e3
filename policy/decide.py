"""The decision for one authentication: certificate verdict, registry record, attestation, policy rules.

Order (pure, table-testable):
1. an invalid certificate is rejected; a decommissioned device is rejected; a quarantined one is quarantined —
   no rule can override these;
2. otherwise the first matching policy rule places (or rejects) the device. A placing rule applies to registered
   devices (operational, onboarding) only, unless its match names ``state:`` -- then to exactly the states it
   names, so only a rule with ``state: unknown``/``pending`` can place a device nobody approved. A reject rule
   applies to anyone (rejecting is never an escalation);
3. without a matching rule, the lifecycle default: operational -> its segment (or the default segment),
   onboarding -> the onboarding segment, pending or unknown -> quarantine (unknown ones are recorded as pending);
4. attestation can then only lower an accept (unless the matching rule already matched on attestation);
5. the segment's VLAN for the NAS's site, and its Filter-Id (or the rule's), go into the reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict

from policy.attestation import AttestationStanding, Tier
from policy.model import (
    CertificateFacts,
    CertificateVerdict,
    CertKind,
    Decision,
    DeviceRecord,
    LifecycleState,
    NetworkContext,
    Outcome,
    PlacementInput,
)
from policy.mud import MudHint
from policy.rules import DeviceView, Rule, resolve_site
from policy.x509facts import parse_oneline_dn


class AttestationRules(BaseModel):
    """Where a device goes by its attestation (it can only lower a placement, never raise it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
    rules: tuple[Rule, ...] = ()
    filters: Mapping[str, str] = field(default_factory=dict)  # segment -> Filter-Id (ACL name)
    site_vlans: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # segment -> site -> VLAN
    sites: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # site -> NAS IPs/CIDRs/identifiers

    def __post_init__(self) -> None:
        names = [self.quarantine_segment, self.default_segment, self.onboarding_segment]
        if self.attestation is not None:
            a = self.attestation
            names += [a.warning_segment, a.missing_ldevid_segment, a.missing_idevid_segment]
        names += [r.segment for r in self.rules]
        for name in names:
            if name is not None and name not in self.segments:
                raise ValueError(f"segment {name!r} is used by the rules but not defined in segments")
        vlans = [(n, v) for n, v in self.segments.items()]
        vlans += [(f"{n}@{site}", v) for n, per_site in self.site_vlans.items() for site, v in per_site.items()]
        for name, vlan in vlans:
            if not 1 <= vlan <= 4094:
                raise ValueError(f"segment {name!r}: VLAN {vlan} is outside 1-4094")
        for name, per_site in self.site_vlans.items():
            unknown = set(per_site) - set(self.sites)
            if unknown:
                raise ValueError(f"segment {name!r} has VLANs for undefined site(s) {', '.join(sorted(unknown))}")

    def vlan(self, segment: str, site: str | None) -> int:
        per_site = self.site_vlans.get(segment, {})
        return per_site[site] if site is not None and site in per_site else self.segments[segment]


@dataclass(frozen=True)
class _Placement:
    """Where the device goes before the VLAN/Filter-Id is looked up: a segment name, or None for reject."""

    segment: str | None
    reasons: tuple[str, ...]
    register_pending: bool = False
    rule: Rule | None = None


def device_view(facts: CertificateFacts | None, verdict: CertificateVerdict, device: DeviceRecord | None,
                attestation: AttestationStanding | None, context: NetworkContext | None,
                site: str | None, mud: MudHint | None = None) -> DeviceView:
    """What the rules can match on, as strings."""
    issuer = facts.issuer if facts is not None else (device.key.issuer if device is not None else None)
    kind = verdict.kind or (device.cert_kind if device is not None else None)
    return DeviceView(
        values={
            "issuer": issuer,
            "manufacturer": parse_oneline_dn(issuer).get("O") if issuer else None,
            "cert_kind": kind.value if kind is not None else None,
            "mud_url": (facts.mud_url if facts is not None else None) or (device.mud_url if device else None),
            "mud_class": mud.classification.value if mud is not None else None,
            "device_class": device.device_class if device is not None else None,
            "owner": device.owner if device is not None else None,
            "attestation": attestation.label if attestation is not None else "missing",
            "state": device.state.value if device is not None else "unknown",
            "nas_ip": context.nas_ip if context is not None else None,
            "nas_identifier": context.nas_identifier if context is not None else None,
            "site": site,
        },
        subject=parse_oneline_dn(facts.subject) if facts is not None else {},
    )


def _lifecycle_default(device: DeviceRecord | None, verdict: CertificateVerdict, rules: SegmentRules,
                       cert: tuple[str, ...]) -> _Placement:
    if device is None:
        kind = "IDevID" if verdict.kind is CertKind.IDEVID else "LDevID"
        return _Placement(rules.quarantine_segment,
                          (*cert, f"genuine {kind} of an unknown device: quarantined, recorded as pending"),
                          register_pending=True)
    if device.state is LifecycleState.PENDING:
        return _Placement(rules.quarantine_segment, (*cert, f"device {device.id} is pending approval"))
    if device.state is LifecycleState.ONBOARDING:
        if rules.onboarding_segment is None:
            return _Placement(rules.quarantine_segment,
                              (*cert, f"device {device.id} is onboarding; no onboarding segment configured"))
        return _Placement(rules.onboarding_segment, (*cert, f"device {device.id} is onboarding"))
    segment = device.segment or rules.default_segment
    if segment is None:
        return _Placement(rules.quarantine_segment,
                          (*cert, f"operational device {device.id} has no segment and no default is set"))
    if segment not in rules.segments:
        return _Placement(rules.quarantine_segment,
                          (*cert, f"segment {segment!r} of device {device.id} is not configured"))
    return _Placement(segment, (*cert, f"operational device {device.id} in segment {segment}"))


def _attestation(placement: _Placement, device: DeviceRecord, verdict: CertificateVerdict,
                 standing: AttestationStanding | None, rules: SegmentRules) -> _Placement:
    """Lower an accepted placement by the device's attestation tier; quarantine and reject stay as they are."""
    policy = rules.attestation
    if policy is None or placement.segment in (None, rules.quarantine_segment):
        return placement
    if placement.rule is not None and placement.rule.uses("attestation"):
        return placement  # the matching rule already decided by attestation
    standing = standing or AttestationStanding(None, "no attestation result")
    why = f"attestation {standing.label}: {standing.detail}"
    if standing.tier is Tier.AFFIRMING:
        segment = placement.segment
    elif standing.tier is Tier.CONTRAINDICATED:
        segment = rules.quarantine_segment
    elif standing.tier is Tier.WARNING:
        segment = policy.warning_segment
    else:
        kind = device.cert_kind or verdict.kind
        segment = policy.missing_ldevid_segment if kind is CertKind.LDEVID else policy.missing_idevid_segment
    return replace(placement, segment=segment, reasons=(*placement.reasons, why))


# States a placing rule applies to when its match does not name ``state:`` (see the module docstring).
REGISTERED_STATES = frozenset({LifecycleState.OPERATIONAL.value, LifecycleState.ONBOARDING.value})


def _first_rule(rules: tuple[Rule, ...], view: DeviceView) -> Rule | None:
    state = view.get("state") or "unknown"
    registered = state in REGISTERED_STATES
    for rule in rules:  # a plain loop: this runs for every rule of every decision
        # a rule may place a device in this state at all: a reject always, a rule naming ``state:`` for the states
        # it names, any other one only a registered device (module docstring)
        if (registered or rule.reject or rule.uses("state")) and rule.matches(view):
            return rule
    return None


def place(inputs: PlacementInput, rules: SegmentRules) -> Decision:
    """The one placement function: the hook, ``trustport decide`` and the enforcement planner all call this."""
    verdict, device, context = inputs.verdict, inputs.device, inputs.context
    cert = verdict.reasons()
    if not verdict.valid:
        return Decision(Outcome.REJECT, None, None, cert)
    if device is not None and device.state is LifecycleState.DECOMMISSIONED:
        return Decision(Outcome.REJECT, None, None, (*cert, f"device {device.id} is decommissioned"))
    site = resolve_site(rules.sites, context.nas_ip, context.nas_identifier) if context is not None else None
    if device is not None and device.state is LifecycleState.QUARANTINED:
        placement = _Placement(rules.quarantine_segment, (*cert, f"device {device.id} is quarantined"))
    else:
        view = device_view(inputs.certificate, verdict, device, inputs.attestation, context, site, inputs.mud)
        rule = _first_rule(rules.rules, view)
        if rule is None:
            placement = _lifecycle_default(device, verdict, rules, cert)
        else:
            where = f"rule {rule.name!r} matched"
            placement = _Placement(rule.segment, (*cert, where + (": reject" if rule.reject else
                                                                   f": segment {rule.segment}")),
                                   register_pending=device is None, rule=rule)
        if device is not None:
            placement = _attestation(placement, device, verdict, inputs.attestation, rules)
    return _finish(placement, rules, site, inputs.mud)


def decide(verdict: CertificateVerdict, device: DeviceRecord | None, rules: SegmentRules,
           attestation: AttestationStanding | None = None, *, facts: CertificateFacts | None = None,
           context: NetworkContext | None = None, mud: MudHint | None = None) -> Decision:
    """``place`` with its input given field by field (kept for callers and table tests)."""
    return place(PlacementInput(verdict, device, facts, context, attestation, mud), rules)


def _finish(placement: _Placement, rules: SegmentRules, site: str | None, mud: MudHint | None = None) -> Decision:
    rule_name = placement.rule.name if placement.rule is not None else None
    if placement.segment is None:
        return Decision(Outcome.REJECT, None, None, placement.reasons, rule=rule_name)
    segment = placement.segment
    outcome = Outcome.QUARANTINE if segment == rules.quarantine_segment else Outcome.ACCEPT
    filter_id = rules.filters.get(segment)
    if placement.rule is not None and placement.rule.filter_id and placement.segment == placement.rule.segment:
        filter_id = placement.rule.filter_id
    reasons = placement.reasons
    if filter_id is None and mud is not None and mud.filter_id and outcome is Outcome.ACCEPT:
        filter_id = mud.filter_id  # the device's MUD ACL, when the segment names none of its own
        reasons = (*reasons, f"MUD {mud.classification.value}: ACL {mud.filter_id} from {mud.mud_url}")
    reasons = reasons + ((f"site {site}",) if site is not None and segment in rules.site_vlans else ())
    return Decision(outcome, rules.vlan(segment, site), segment, reasons, placement.register_pending,
                    rule=rule_name, filter_id=filter_id)


def rule_table(rules: SegmentRules) -> list[dict[str, Any]]:
    """The effective rules in order, each with what it does: segment, VLAN (per site) and Filter-Id (``policy check
    --explain`` and the API's ``GET /v1/policy``)."""
    rows = []
    for i, r in enumerate(rules.rules):
        segment = r.segment
        rows.append({
            "order": i + 1, "name": r.name, "match": {c.field: list(c.patterns) for c in r.conditions},
            "action": "reject" if r.reject else "segment", "segment": segment,
            "vlan": None if segment is None else rules.segments[segment],
            "site_vlans": {} if segment is None else dict(rules.site_vlans.get(segment, {})),
            "filter_id": None if segment is None else (r.filter_id or rules.filters.get(segment)),
            "admits_unregistered": r.admits_unregistered(),
        })
    return rows
