"""The policy document (segments, sites, rules) -> ``SegmentRules``; shared by the YAML config and the hook.

Shape::

    segments:
      production: 30                                   # name: VLAN
      cameras: {vlan: 40, filter_id: CAMERAS-ACL, sites: {branch-1: 140}}
    sites:
      hq: [10.1.0.0/16]                                # NAS IPs, networks or NAS-Identifiers
      branch-1: [10.2.0.0/16, branch1-wlc]
    policy:
      quarantine_segment: quarantine
      default_segment: production
      onboarding_segment: onboarding
      rules:
        - {name: axis-cameras, match: {manufacturer: "Axis*"}, segment: cameras}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.decide import AttestationRules, SegmentRules
from policy.rules import RuleError, parse_rule

POLICY_KEYS = frozenset({"quarantine_segment", "default_segment", "onboarding_segment", "rules"})
MAX_RULES = 1000


def _segment(name: str, raw: object) -> tuple[int, str | None, dict[str, int]]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw, None, {}
    if not isinstance(raw, Mapping):
        raise RuleError(f"segments.{name}: a VLAN id, or {{vlan, filter_id, sites}}")
    unknown = set(raw) - {"vlan", "filter_id", "sites"}
    if unknown:
        raise RuleError(f"segments.{name}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    vlan, filter_id, sites = raw.get("vlan"), raw.get("filter_id"), raw.get("sites", {})
    if not isinstance(vlan, int) or isinstance(vlan, bool):
        raise RuleError(f"segments.{name}.vlan: a VLAN id (1-4094) is required")
    if filter_id is not None and (not isinstance(filter_id, str) or not filter_id.isprintable() or not filter_id):
        raise RuleError(f"segments.{name}.filter_id: must be a printable ACL name")
    if not isinstance(sites, Mapping) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                 for v in sites.values()):
        raise RuleError(f"segments.{name}.sites: a mapping of site: VLAN id")
    return vlan, filter_id, {str(k): int(v) for k, v in sites.items()}


def check_segments(segments: Mapping[str, Any]) -> None:
    """Each segment on its own (VLAN range, shape); cross-references are checked by build_segment_rules."""
    for name, raw in segments.items():
        try:
            vlan, _filter, per_site = _segment(str(name), raw)
        except RuleError as exc:
            raise RuleError(str(exc), ("segments", str(name))) from exc
        for where, value in [("", vlan), *((f" at site {k}", v) for k, v in per_site.items())]:
            if not 1 <= value <= 4094:
                raise RuleError(f"segments.{name}: VLAN {value}{where} is outside 1-4094", ("segments", str(name)))


def build_segment_rules(segments: Mapping[str, Any], sites: Mapping[str, Any], policy: Mapping[str, Any],
                        attestation: AttestationRules | None = None) -> SegmentRules:
    """Validate and build; every error names its place (``segments.x``, ``policy.rules #3``, ...)."""
    vlans: dict[str, int] = {}
    filters: dict[str, str] = {}
    site_vlans: dict[str, dict[str, int]] = {}
    check_segments(segments)
    for name, raw in segments.items():
        vlan, filter_id, per_site = _segment(str(name), raw)
        vlans[str(name)] = vlan
        if filter_id:
            filters[str(name)] = filter_id
        if per_site:
            site_vlans[str(name)] = per_site
    site_members: dict[str, tuple[str, ...]] = {}
    for site, members in sites.items():
        if not isinstance(members, list) or not all(isinstance(m, str) and m for m in members):
            raise RuleError(f"sites.{site}: a list of NAS IPs, networks or NAS-Identifiers", ("sites", str(site)))
        site_members[str(site)] = tuple(members)
    unknown = set(policy) - POLICY_KEYS
    if unknown:
        raise RuleError(f"policy: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    raw_rules = policy.get("rules") or []
    if not isinstance(raw_rules, list):
        raise RuleError("policy.rules: a list of rules")
    if len(raw_rules) > MAX_RULES:
        raise RuleError(f"policy.rules: {len(raw_rules)} rules, more than {MAX_RULES}")
    rules = tuple(parse_rule(raw, i) for i, raw in enumerate(raw_rules))
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuleError(f"policy.rules: rule names must be unique ({', '.join(duplicates)})")
    try:
        return SegmentRules(
            segments=vlans, quarantine_segment=str(policy.get("quarantine_segment", "quarantine")),
            default_segment=policy.get("default_segment"), onboarding_segment=policy.get("onboarding_segment"),
            attestation=attestation, rules=rules, filters=filters, site_vlans=site_vlans, sites=site_members,
        )
    except ValueError as exc:
        raise RuleError(str(exc), ("policy",)) from exc
