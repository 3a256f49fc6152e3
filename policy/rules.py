"""Segment policy rules: ordered, first match wins, each matching on what is known about a device.

A rule's ``match`` is a mapping of field -> pattern(s); every field must match (AND), any pattern of a field may
match (OR). Patterns are shell globs, case-insensitive; ``nas_ip`` also takes CIDR networks. Fields:

    issuer, manufacturer (issuer O=), cert_kind (idevid|ldevid), subject.<ATTR> (e.g. subject.CN), mud_url,
    mud_class (internet-only|local-only|same-manufacturer|controller|mixed|isolated, from the MUD profile),
    device_class, owner, attestation (affirming|warning|contraindicated|none|missing), state (unknown|pending|
    onboarding|operational), nas_ip, nas_identifier, site

Pure: no I/O, no clock.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from policy.model import CertKind, LifecycleState
from policy.mud import MudClass

FIELDS = frozenset({"issuer", "manufacturer", "cert_kind", "mud_url", "mud_class", "device_class", "owner",
                    "attestation", "state", "nas_ip", "nas_identifier", "site"})
SUBJECT_PREFIX = "subject."
MAX_PATTERN = 256
# Fields whose value is one of a closed set: a pattern must name a known value (or be a glob matching at least one),
# so that a typo (``state: operationl``) is refused instead of silently never matching. Quarantined and
# decommissioned devices never reach the rules (decide() handles them first), so ``state`` offers only these.
RULE_STATES = ("unknown", LifecycleState.PENDING.value, LifecycleState.ONBOARDING.value,
               LifecycleState.OPERATIONAL.value)
ENUM_FIELDS: Mapping[str, tuple[str, ...]] = {
    "cert_kind": tuple(k.value for k in CertKind),
    "state": RULE_STATES,
    "attestation": ("affirming", "warning", "contraindicated", "none", "missing"),
    "mud_class": tuple(c.value for c in MudClass),
}
UNREGISTERED_STATES = frozenset({"unknown", LifecycleState.PENDING.value})


class RuleError(ValueError):
    """A rule or site definition is invalid (the message names the rule and field; ``path`` locates it)."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Condition:
    field: str
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.field not in FIELDS and not (self.field.startswith(SUBJECT_PREFIX) and len(self.field) > 8):
            raise RuleError(f"unknown match field {self.field!r}; known: {', '.join(sorted(FIELDS))}, subject.<ATTR>")
        if not self.patterns or any(not p or len(p) > MAX_PATTERN for p in self.patterns):
            raise RuleError(f"field {self.field!r}: patterns must be 1-{MAX_PATTERN} characters")
        known = ENUM_FIELDS.get(self.field)
        if known is not None:
            for pattern in self.patterns:
                if not known_values(pattern, known):
                    raise RuleError(f"field {self.field!r}: {pattern!r} is not a known value; known: "
                                    f"{', '.join(known)}")
        if self.field == "nas_ip":
            for pattern in self.patterns:
                if "/" in pattern:
                    try:
                        ipaddress.ip_network(pattern, strict=False)
                    except ValueError as exc:
                        raise RuleError(f"field nas_ip: {pattern!r} is not a network ({exc})") from exc

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        lowered = value.lower()
        for pattern in self.patterns:
            if self.field == "nas_ip" and "/" in pattern:
                try:
                    if ipaddress.ip_address(value) in ipaddress.ip_network(pattern, strict=False):
                        return True
                except ValueError:
                    continue
            elif fnmatch.fnmatchcase(lowered, pattern.lower()):
                return True
        return False


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    segment: str | None = None
    reject: bool = False
    filter_id: str | None = None

    def __post_init__(self) -> None:
        if self.reject == (self.segment is not None):
            raise RuleError(f"rule {self.name!r}: give exactly one of 'segment' or 'reject: true'")
        if not self.conditions:
            raise RuleError(f"rule {self.name!r}: an empty match would match every device; say so with "
                            "default_segment instead")

    def uses(self, field_name: str) -> bool:
        return any(c.field == field_name for c in self.conditions)

    def condition(self, field_name: str) -> Condition | None:
        return next((c for c in self.conditions if c.field == field_name), None)

    def admits_unregistered(self) -> bool:
        """Whether this rule can place an unknown or pending device: its ``state`` names one explicitly."""
        state = self.condition("state")
        return state is not None and any(known_values(p, RULE_STATES) & UNREGISTERED_STATES for p in state.patterns)

    def matches(self, view: DeviceView) -> bool:
        return all(c.matches(view.get(c.field)) for c in self.conditions)


def known_values(pattern: str, known: tuple[str, ...]) -> frozenset[str]:
    """The known values a pattern matches (exactly, case-insensitively, or as a glob)."""
    lowered = pattern.lower()
    return frozenset(v for v in known if fnmatch.fnmatchcase(v, lowered))


@dataclass(frozen=True)
class DeviceView:
    """The facts a rule can see about one authentication (strings, or None when unknown)."""

    values: Mapping[str, str | None] = field(default_factory=dict)
    subject: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        if name.startswith(SUBJECT_PREFIX):
            return self.subject.get(name[len(SUBJECT_PREFIX):])
        return self.values.get(name)


def parse_rule(raw: object, index: int) -> Rule:
    """A rule from its YAML form: {name, match: {field: pattern | [patterns]}, segment | reject, filter_id}."""
    rule, problems = check_rule(raw, index)
    if problems:
        raise problems[0]
    assert rule is not None
    return rule


def check_rule(raw: object, index: int) -> tuple[Rule | None, list[RuleError]]:
    """The rule, or every problem in it, each with its path (``policy.rules.<i>.match.<field>``, ...)."""
    base: tuple[str | int, ...] = ("policy", "rules", index)
    where = f"rule #{index + 1}"
    if not isinstance(raw, Mapping):
        return None, [RuleError(f"{where}: must be a mapping with name, match and segment or reject", base)]
    problems: list[RuleError] = []

    def problem(message: str, *sub: str | int) -> None:
        problems.append(RuleError(message, (*base, *sub)))

    for key in sorted(set(map(str, raw)) - {"name", "match", "segment", "reject", "filter_id"}):
        problem(f"{where}: unknown key {key!r}; known: name, match, segment, reject, filter_id", key)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problem(f"{where}: 'name' is required (a non-empty string)", *(("name",) if "name" in raw else ()))
        name = where
    else:
        where = f"rule {name!r}"
    match = raw.get("match")
    conditions = []
    if not isinstance(match, Mapping) or not match:
        problem(f"{where}: 'match' must be a non-empty mapping of field: pattern",
                *(("match",) if "match" in raw else ()))
    else:
        for key, value in match.items():
            patterns = value if isinstance(value, list) else [value]
            if not patterns or not all(isinstance(p, str | int) and not isinstance(p, bool) for p in patterns):
                problem(f"{where}: field {key!r} takes a string or a non-empty list of strings", "match", str(key))
                continue
            try:
                conditions.append(Condition(str(key), tuple(str(p) for p in patterns)))
            except RuleError as exc:
                problem(f"{where}: {exc}", "match", str(key))
    segment, reject, filter_id = raw.get("segment"), raw.get("reject", False), raw.get("filter_id")
    if segment is not None and (not isinstance(segment, str) or not segment):
        problem(f"{where}: 'segment' must be a segment name", "segment")
        segment = None
    if not isinstance(reject, bool):
        problem(f"{where}: 'reject' must be true or false", "reject")
        reject = False
    if filter_id is not None and (not isinstance(filter_id, str) or not filter_id or not filter_id.isprintable()):
        problem(f"{where}: 'filter_id' must be a printable string", "filter_id")
        filter_id = None
    if problems:
        if reject == (segment is not None) and not any(p.path[3:4] in (("segment",), ("reject",)) for p in problems):
            problem(f"{where}: give exactly one of 'segment' or 'reject: true'")
        return None, problems
    try:
        return Rule(str(name), tuple(conditions), segment, reject, filter_id), []
    except RuleError as exc:
        return None, [RuleError(str(exc), base)]


def first_match(rules: tuple[Rule, ...], view: DeviceView) -> Rule | None:
    return next((rule for rule in rules if rule.matches(view)), None)


def resolve_site(sites: Mapping[str, tuple[str, ...]], nas_ip: str | None, nas_identifier: str | None) -> str | None:
    """The first site whose NAS list (IPs, CIDRs or NAS-Identifiers) contains this NAS."""
    for site, members in sites.items():
        for member in members:
            if nas_identifier is not None and member == nas_identifier:
                return site
            if nas_ip is None:
                continue
            try:
                if ipaddress.ip_address(nas_ip) in ipaddress.ip_network(member, strict=False):
                    return site
            except ValueError:
                continue
    return None
