"""Segment policy rules at run time: ordered, first match wins, each matching on what is known about a device.

The rules are written and validated as ``policy.document.RuleSpec`` (the fields a rule can match, their allowed
values and pattern checks are there) and compiled into the ``Rule``/``Condition`` values here, which only match.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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
    # each pattern compiled once: a CIDR (nas_ip) as its network (None: not one, matches nothing), any other as the
    # case-insensitive glob (fnmatch's translation, what fnmatchcase runs on the lowered value)
    _compiled: tuple[tuple[bool, Any], ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(
            (True, _network(p)) if self.field == "nas_ip" and "/" in p else
            (False, re.compile(fnmatch.translate(p.lower())).match) for p in self.patterns))

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        lowered = value.lower()
        for is_network, matcher in self._compiled:
            if is_network:
                address = _address(value)
                if address is not None and matcher is not None and address in matcher:
                    return True
            elif matcher(lowered) is not None:
                return True
        return False


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    segment: str | None = None
    reject: bool = False
    filter_id: str | None = None

    _fields: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.reject == (self.segment is not None):
            raise RuleError(f"rule {self.name!r}: give exactly one of 'segment' or 'reject: true'")
        if not self.conditions:
            raise RuleError(f"rule {self.name!r}: an empty match would match every device; say so with "
                            "default_segment instead")
        object.__setattr__(self, "_fields", frozenset(c.field for c in self.conditions))

    def uses(self, field_name: str) -> bool:
        return field_name in self._fields

    def condition(self, field_name: str) -> Condition | None:
        return next((c for c in self.conditions if c.field == field_name), None)

    def admits_unregistered(self) -> bool:
        """Whether this rule can place an unknown or pending device: its ``state`` names one explicitly."""
        state = self.condition("state")
        return state is not None and any(known_values(p, RULE_STATES) & UNREGISTERED_STATES for p in state.patterns)

    def matches(self, view: DeviceView) -> bool:
        # a plain loop, not all(genexpr): this runs for every rule of every decision (measured: 42,825 -> 75,763
        # decisions/s with 50 rules, together with the same in decide._first_rule)
        for condition in self.conditions:  # noqa: SIM110
            if not condition.matches(view.get(condition.field)):
                return False
        return True


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
            address, network = _address(nas_ip), _network(member)
            if address is not None and network is not None and address in network:
                return site
    return None


# Parsed once, not once per rule and authentication (what made a 50-rule policy slow); None: not an address/network.
@functools.lru_cache(maxsize=4096)
def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _network(pattern: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return None
