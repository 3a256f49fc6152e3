"""Segment policy rules at run time: ordered, first match wins, each matching on what is known about a device.

The rules are written and validated as ``policy.document.RuleSpec`` (the fields a rule can match, their allowed
values and pattern checks are there) and compiled into the ``Rule``/``Condition`` values here, which only match.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from policy.model import LifecycleState

SUBJECT_PREFIX = "subject."


class RuleState(StrEnum):
    """The states a rule can name: quarantined and decommissioned devices never reach the rules (``place`` handles
    them first), so a rule naming them would never fire and is refused."""

    UNKNOWN = "unknown"  # not in the registry
    PENDING = LifecycleState.PENDING.value
    ONBOARDING = LifecycleState.ONBOARDING.value
    OPERATIONAL = LifecycleState.OPERATIONAL.value


class AttestationLabel(StrEnum):
    """A device's attestation as a rule sees it: its tier, or ``missing`` without a usable result."""

    AFFIRMING = "affirming"
    WARNING = "warning"
    CONTRAINDICATED = "contraindicated"
    NONE = "none"
    MISSING = "missing"


RULE_STATES = tuple(s.value for s in RuleState)
UNREGISTERED_STATES = frozenset({RuleState.UNKNOWN.value, RuleState.PENDING.value})


class RuleError(ValueError):
    """A rule or site definition is invalid (the message names the rule and field; ``path`` locates it)."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Condition:
    field: str
    patterns: tuple[str, ...]

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
