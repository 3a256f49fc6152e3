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

FIELDS = frozenset({"issuer", "manufacturer", "cert_kind", "mud_url", "mud_class", "device_class", "owner",
                    "attestation", "state", "nas_ip", "nas_identifier", "site"})
SUBJECT_PREFIX = "subject."
MAX_PATTERN = 256


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

    def matches(self, view: DeviceView) -> bool:
        return all(c.matches(view.get(c.field)) for c in self.conditions)


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
    try:
        return _parse_rule(raw, index)
    except RuleError as exc:
        raise RuleError(str(exc), ("policy", "rules", index)) from exc


def _parse_rule(raw: object, index: int) -> Rule:
    where = f"rule #{index + 1}"
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: must be a mapping with name, match and segment or reject")
    unknown = set(raw) - {"name", "match", "segment", "reject", "filter_id"}
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"{where}: 'name' is required")
    match = raw.get("match")
    if not isinstance(match, Mapping) or not match:
        raise RuleError(f"rule {name!r}: 'match' must be a non-empty mapping of field: pattern")
    conditions = []
    for key, value in match.items():
        patterns = value if isinstance(value, list) else [value]
        if not all(isinstance(p, str | int) and not isinstance(p, bool) for p in patterns):
            raise RuleError(f"rule {name!r}: field {key!r} takes a string or a list of strings")
        try:
            conditions.append(Condition(str(key), tuple(str(p) for p in patterns)))
        except RuleError as exc:
            raise RuleError(f"rule {name!r}: {exc}") from exc
    segment, reject, filter_id = raw.get("segment"), raw.get("reject", False), raw.get("filter_id")
    if segment is not None and not isinstance(segment, str):
        raise RuleError(f"rule {name!r}: 'segment' must be a segment name")
    if not isinstance(reject, bool):
        raise RuleError(f"rule {name!r}: 'reject' must be true or false")
    if filter_id is not None and (not isinstance(filter_id, str) or not filter_id.isprintable()):
        raise RuleError(f"rule {name!r}: 'filter_id' must be a printable string")
    return Rule(name, tuple(conditions), segment, reject, filter_id)


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
