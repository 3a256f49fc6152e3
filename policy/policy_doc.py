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

Everything is checked, and every problem is reported (``policy_problems``), each with its path: VLANs are
integers 1-4094 (never booleans or strings) and unique per site (the quarantine VLAN is nobody else's), every
segment and site a rule or a setting names is defined, enum-valued match fields name known values.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from policy.decide import AttestationRules, SegmentRules
from policy.rules import Rule, RuleError, check_rule

POLICY_KEYS = frozenset({"quarantine_segment", "default_segment", "onboarding_segment", "rules"})
MAX_RULES = 1000
_Path = tuple[str | int, ...]


def _is_vlan(value: object) -> bool:
    return type(value) is int and 1 <= value <= 4094


def _segment(name: str, raw: object, problems: list[RuleError]) -> tuple[int, str | None, dict[str, int]] | None:
    path: _Path = ("segments", name)
    if isinstance(raw, Mapping):
        unknown = sorted(set(map(str, raw)) - {"vlan", "filter_id", "sites"})
        for key in unknown:
            problems.append(RuleError(f"segments.{name}: unknown key {key!r}; known: vlan, filter_id, sites",
                                      (*path, key)))
        vlan, filter_id, sites = raw.get("vlan"), raw.get("filter_id"), raw.get("sites", {})
        vlan_path: _Path = (*path, "vlan") if "vlan" in raw else path
    else:
        vlan, filter_id, sites, unknown, vlan_path = raw, None, {}, [], path
    before = len(problems)
    if type(vlan) is int and not _is_vlan(vlan):
        problems.append(RuleError(f"segments.{name}: VLAN {vlan} is outside 1-4094", vlan_path))
    elif not _is_vlan(vlan):
        what = "a VLAN id" if isinstance(raw, Mapping) else "a VLAN id, or {vlan, filter_id, sites}"
        problems.append(RuleError(f"segments.{name}: {what} is required: an integer 1-4094, not "
                                  f"{_describe(vlan)}", vlan_path))
    if filter_id is not None and (not isinstance(filter_id, str) or not filter_id.isprintable() or not filter_id):
        problems.append(RuleError(f"segments.{name}.filter_id: must be a printable ACL name", (*path, "filter_id")))
    per_site: dict[str, int] = {}
    if not isinstance(sites, Mapping):
        problems.append(RuleError(f"segments.{name}.sites: a mapping of site: VLAN id", (*path, "sites")))
    else:
        for site, site_vlan in sites.items():
            if not _is_vlan(site_vlan):
                problems.append(RuleError(f"segments.{name}: VLAN at site {site}: an integer 1-4094, not "
                                          f"{_describe(site_vlan)}", (*path, "sites", str(site))))
            else:
                per_site[str(site)] = site_vlan
    if len(problems) > before or unknown:
        return None
    assert isinstance(vlan, int)
    return vlan, filter_id, per_site


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"{value} (outside 1-4094)"
    return f"{type(value).__name__} {str(value)[:40]!r}"


def check_segments(segments: Mapping[str, Any]) -> None:
    """Each segment on its own (VLAN range, shape); raises the first problem."""
    problems: list[RuleError] = []
    for name, raw in segments.items():
        _segment(str(name), raw, problems)
    if problems:
        raise problems[0]


def _names_defined(rule_field: str, patterns: tuple[str, ...], defined: Mapping[str, Any]) -> list[str]:
    """Patterns of a ``site``-like field that name nothing defined (a glob must match at least one name)."""
    names = [n.lower() for n in defined]
    return [p for p in patterns if not any(fnmatch.fnmatchcase(n, p.lower()) for n in names)]


def _segments_and_sites(segments: Mapping[str, Any], sites: Mapping[str, Any], problems: list[RuleError]) -> tuple[
        dict[str, int], dict[str, str], dict[str, dict[str, int]], dict[str, tuple[str, ...]]]:
    vlans: dict[str, int] = {}
    filters: dict[str, str] = {}
    site_vlans: dict[str, dict[str, int]] = {}
    for name, raw in segments.items():
        built = _segment(str(name), raw, problems)
        if built is None:
            continue
        vlan, filter_id, per_site = built
        vlans[str(name)] = vlan
        if filter_id:
            filters[str(name)] = filter_id
        if per_site:
            site_vlans[str(name)] = per_site
        for site in per_site:
            if site not in sites:
                problems.append(RuleError(f"segments.{name}.sites.{site}: site {site!r} is not defined in sites",
                                          ("segments", str(name), "sites", site)))
    site_members: dict[str, tuple[str, ...]] = {}
    for site, members in sites.items():
        if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
            problems.append(RuleError(f"sites.{site}: a non-empty list of NAS IPs, networks or NAS-Identifiers",
                                      ("sites", str(site))))
            continue
        site_members[str(site)] = tuple(members)
    return vlans, filters, site_vlans, site_members


def policy_problems(segments: object, sites: object, policy: object,
                    attestation: AttestationRules | None = None,
                    attestation_path: _Path = ("attestation",)) -> tuple[SegmentRules | None, list[RuleError]]:
    """Validate and build; returns the rules, or every problem found (each names its place)."""
    problems: list[RuleError] = []
    if not isinstance(segments, Mapping) or not segments:
        problems.append(RuleError("segments: a non-empty mapping of segment name: VLAN", ("segments",)))
        segments = {}
    if sites is None:
        sites = {}
    if not isinstance(sites, Mapping):
        problems.append(RuleError("sites: a mapping of site name: [NAS IPs, networks or NAS-Identifiers]",
                                  ("sites",)))
        sites = {}
    if policy is None:
        policy = {}
    if not isinstance(policy, Mapping):
        problems.append(RuleError("policy: a mapping (quarantine_segment, default_segment, onboarding_segment, "
                                  "rules)", ("policy",)))
        policy = {}
    assert isinstance(segments, Mapping)
    assert isinstance(sites, Mapping)
    assert isinstance(policy, Mapping)
    vlans, filters, site_vlans, site_members = _segments_and_sites(segments, sites, problems)
    for key in sorted(set(map(str, policy)) - POLICY_KEYS):
        problems.append(RuleError(f"policy: unknown key {key!r}; known: {', '.join(sorted(POLICY_KEYS))}",
                                  ("policy", key)))
    quarantine = policy.get("quarantine_segment", "quarantine")
    _vlan_clashes(vlans, site_vlans, list(sites), quarantine, problems)
    for key in ("quarantine_segment", "default_segment", "onboarding_segment"):
        value = policy.get(key, "quarantine" if key == "quarantine_segment" else None)
        if value is None:
            continue
        if not isinstance(value, str) or (value not in segments):
            known = ", ".join(map(str, segments)) or "none"
            problems.append(RuleError(f"policy.{key}: segment {value!r} is not defined in segments (known: {known})",
                                      ("policy", key) if key in policy else ("policy",)))
    if attestation is not None:
        for key in ("warning_segment", "missing_ldevid_segment", "missing_idevid_segment"):
            value = getattr(attestation, key)
            if value not in segments:
                problems.append(RuleError(f"attestation: {key} {value!r} is not defined in segments",
                                          (*attestation_path, key)))
    rules = _rules(policy.get("rules"), segments, sites, problems)
    if problems:
        return None, problems
    try:
        return SegmentRules(
            segments=vlans, quarantine_segment=str(quarantine),
            default_segment=policy.get("default_segment"), onboarding_segment=policy.get("onboarding_segment"),
            attestation=attestation, rules=rules, filters=filters, site_vlans=site_vlans, sites=site_members,
        ), []
    except ValueError as exc:
        return None, [RuleError(str(exc), ("policy",))]


def _vlan_clashes(vlans: Mapping[str, int], site_vlans: Mapping[str, Mapping[str, int]], sites: list[Any],
                  quarantine: object, problems: list[RuleError]) -> None:
    """Two segments on one VLAN (anywhere: by default, or at a site) would be one segment with two names."""
    for site in [None, *map(str, sites)]:
        seen: dict[int, str] = {}
        for name, default in vlans.items():
            override = site_vlans.get(name, {})
            vlan = default if site is None else override.get(site, default)
            other = seen.setdefault(vlan, name)
            if other == name:
                continue
            where = f" at site {site}" if site is not None else ""
            path: _Path = ("segments", name, "sites", site) if site is not None and site in override \
                else ("segments", name)
            if quarantine in (name, other):
                message = (f"segments.{name}: VLAN {vlan}{where} is also segment {other!r}'s; the quarantine "
                           "VLAN must be used by no other segment")
            else:
                message = f"segments.{name}: VLAN {vlan}{where} is already segment {other!r}'s; give each its own"
            if not any(str(p) == message for p in problems):
                problems.append(RuleError(message, path))


def _rules(raw_rules: object, segments: Mapping[str, Any], sites: Mapping[str, Any],
           problems: list[RuleError]) -> tuple[Rule, ...]:
    if raw_rules is None:
        return ()
    if not isinstance(raw_rules, list):
        problems.append(RuleError("policy.rules: a list of rules", ("policy", "rules")))
        return ()
    if len(raw_rules) > MAX_RULES:
        problems.append(RuleError(f"policy.rules: {len(raw_rules)} rules, more than {MAX_RULES}",
                                  ("policy", "rules")))
        return ()
    rules: list[Rule] = []
    first_index: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        rule, found = check_rule(raw, i)
        problems += found
        if isinstance(raw, Mapping):
            name = raw.get("name")
            if isinstance(name, str) and name.strip():
                if name in first_index:
                    problems.append(RuleError(f"policy.rules.{i}: rule name {name!r} is already used by rule "
                                              f"#{first_index[name] + 1}; rule names must be unique",
                                              ("policy", "rules", i, "name")))
                first_index.setdefault(name, i)
        if rule is None:
            continue
        if rule.segment is not None and rule.segment not in segments:
            problems.append(RuleError(f"rule {rule.name!r}: segment {rule.segment!r} is not defined in segments "
                                      f"(known: {', '.join(map(str, segments)) or 'none'})",
                                      ("policy", "rules", i, "segment")))
        site = rule.condition("site")
        if site is not None:
            for pattern in _names_defined("site", site.patterns, sites):
                problems.append(RuleError(f"rule {rule.name!r}: site {pattern!r} is not defined in sites "
                                          f"(known: {', '.join(map(str, sites)) or 'none'})",
                                          ("policy", "rules", i, "match", "site")))
        rules.append(rule)
    return tuple(rules)


def build_segment_rules(segments: Mapping[str, Any], sites: Mapping[str, Any], policy: Mapping[str, Any],
                        attestation: AttestationRules | None = None) -> SegmentRules:
    """Validate and build; raises the first problem (``policy_problems`` gives them all)."""
    rules, problems = policy_problems(segments, sites, policy, attestation)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RuleError(f"{first}{more}", first.path)
    assert rules is not None
    return rules


def document_from_rules(rules: SegmentRules) -> dict[str, Any]:
    """The policy document that builds these rules (for settings made in code rather than from a config)."""
    segments: dict[str, Any] = {}
    for name, vlan in rules.segments.items():
        filter_id, per_site = rules.filters.get(name), rules.site_vlans.get(name)
        if filter_id is None and not per_site:
            segments[name] = vlan
        else:
            segments[name] = {"vlan": vlan, **({"filter_id": filter_id} if filter_id else {}),
                              **({"sites": dict(per_site)} if per_site else {})}
    policy: dict[str, Any] = {"quarantine_segment": rules.quarantine_segment}
    for key in ("default_segment", "onboarding_segment"):
        if getattr(rules, key) is not None:
            policy[key] = getattr(rules, key)
    policy["rules"] = [
        {"name": r.name, "match": {c.field: list(c.patterns) for c in r.conditions},
         **({"reject": True} if r.reject else {"segment": r.segment}),
         **({"filter_id": r.filter_id} if r.filter_id else {})}
        for r in rules.rules]
    att = rules.attestation
    return {"segments": segments, "sites": {k: list(v) for k, v in rules.sites.items()}, "policy": policy,
            "attestation": None if att is None else {"warning_segment": att.warning_segment,
                                                     "missing_ldevid_segment": att.missing_ldevid_segment,
                                                     "missing_idevid_segment": att.missing_idevid_segment}}
