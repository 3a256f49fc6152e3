"""The policy document (segments, sites, rules, attestation placement) as one typed pydantic model.

Shape::

    segments:
      production: 30                                   # name: VLAN (short for {vlan: 30})
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

The YAML config, a standalone policy file and the hook's ``hook.json`` are all this model: the config embeds its
sections, ``hook.json`` holds its ``model_dump`` and the hook validates it back. ``extra="forbid"`` everywhere;
VLANs are integers 1-4094 (never booleans or strings); enum-valued match fields (``cert_kind``, ``state``,
``attestation``, ``mud_class``) take known values or globs matching at least one. What needs the whole document --
every segment and site a rule or a setting names is defined, no two segments share a VLAN at any site, rule names
are unique -- is ``reference_problems``. Every problem carries its path (``policy.rules.0.match.site``).

Adding a match field: one field on ``Match`` here, and its value in ``policy.decide.device_view``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from policy.decide import AttestationRules, SegmentRules
from policy.model import CertKind
from policy.mud import MudClass
from policy.revision import policy_revision
from policy.rules import SUBJECT_PREFIX, AttestationLabel, Condition, Rule, RuleError, RuleState, known_values

MAX_RULES = 1000
MAX_PATTERN = 256
MAX_NAME = 128
_Path = tuple[str | int, ...]


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("policy", message)  # the message as written: no "Value error, " prefix


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"{value} (outside 1-4094)"
    return f"{type(value).__name__} {str(value)[:40]!r}"


def _vlan(value: object) -> int:
    if type(value) is int and not 1 <= value <= 4094:
        raise _problem(f"VLAN {value} is outside 1-4094")
    if type(value) is not int:
        raise _problem(f"a VLAN id is required: an integer 1-4094, not {_describe(value)}")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _problem("'name' is required (a non-empty string)")
    if len(value) > MAX_NAME or not value.isprintable():
        raise _problem(f"a name is 1-{MAX_NAME} printable characters")
    return value


def _acl(value: object) -> str:
    if not isinstance(value, str) or not value or not value.isprintable() or len(value) > MAX_NAME:
        raise _problem("must be a printable ACL name")
    return value


def _patterns(value: object) -> tuple[str, ...]:
    patterns = value if isinstance(value, list | tuple) else [value]
    if not patterns or not all(isinstance(p, str | int) and not isinstance(p, bool) for p in patterns):
        raise _problem("takes a string or a non-empty list of strings")
    out = tuple(str(p) for p in patterns)
    if any(not p or len(p) > MAX_PATTERN for p in out):
        raise _problem(f"patterns must be 1-{MAX_PATTERN} characters")
    return out


def _known(values: tuple[str, ...]) -> AfterValidator:
    def check(patterns: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for pattern in patterns:
            if not known_values(pattern, values):
                raise _problem(f"field {info.field_name!r}: {pattern!r} is not a known value; known: "
                               f"{', '.join(values)}")
        return patterns
    return AfterValidator(check)


def _networks(patterns: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in patterns:
        if "/" in pattern:
            try:
                ipaddress.ip_network(pattern, strict=False)
            except ValueError as exc:
                raise _problem(f"field nas_ip: {pattern!r} is not a network ({exc})") from exc
    return patterns


def _members(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value or not all(isinstance(m, str) and m for m in value):
        raise _problem("a non-empty list of NAS IPs, networks or NAS-Identifiers")
    return tuple(value)


Vlan = Annotated[int, BeforeValidator(_vlan)]
Name = Annotated[str, BeforeValidator(_name)]
AclName = Annotated[str, BeforeValidator(_acl)]
Patterns = Annotated[tuple[str, ...], BeforeValidator(_patterns)]
SiteMembers = Annotated[tuple[str, ...], BeforeValidator(_members)]


def _enum(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Segment(_Model):
    vlan: Vlan
    filter_id: AclName | None = None
    sites: dict[str, Vlan] = Field(default_factory=dict)  # site -> VLAN there

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return data if isinstance(data, Mapping) else {"vlan": data}


class Match(_Model):
    """What a rule matches on; every given field must match (AND), any pattern of a field may (OR). Patterns are
    case-insensitive shell globs; ``nas_ip`` also takes networks; ``subject.<ATTR>`` any subject attribute."""

    issuer: Patterns | None = None
    manufacturer: Patterns | None = None  # the issuer's O=
    cert_kind: Annotated[Patterns, _known(_enum(CertKind))] | None = None
    mud_url: Patterns | None = None
    mud_class: Annotated[Patterns, _known(_enum(MudClass))] | None = None
    device_class: Patterns | None = None
    owner: Patterns | None = None
    attestation: Annotated[Patterns, _known(_enum(AttestationLabel))] | None = None
    state: Annotated[Patterns, _known(_enum(RuleState))] | None = None
    nas_ip: Annotated[Patterns, AfterValidator(_networks)] | None = None
    nas_identifier: Patterns | None = None
    site: Patterns | None = None
    subject: dict[Annotated[str, Field(min_length=1, max_length=64)], Patterns] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _subject_keys(cls, data: Any) -> Any:
        """``subject.CN: x`` is ``subject: {CN: x}``."""
        if not isinstance(data, Mapping):
            return data
        out: dict[Any, Any] = {}
        subject = dict(data["subject"]) if isinstance(data.get("subject"), Mapping) else {}
        for key, value in data.items():
            if isinstance(key, str) and key.startswith(SUBJECT_PREFIX):
                subject[key[len(SUBJECT_PREFIX):]] = value
            elif key != "subject" or not isinstance(value, Mapping):
                out[key] = value
        return {**out, **({"subject": subject} if subject else {})}

    @model_validator(mode="after")
    def _not_empty(self) -> Match:
        if not self.conditions():
            raise _problem("'match' must be a non-empty mapping of field: pattern")
        return self

    def conditions(self) -> tuple[Condition, ...]:
        fields = [(name, value) for name in type(self).model_fields if name != "subject"
                  if (value := getattr(self, name)) is not None]
        fields += [(SUBJECT_PREFIX + attr, value) for attr, value in self.subject.items()]
        return tuple(Condition(name, value) for name, value in fields)


class RuleSpec(_Model):
    name: Name
    match: Match
    segment: Name | None = None
    reject: bool = Field(default=False, strict=True)
    filter_id: AclName | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> RuleSpec:
        if self.reject == (self.segment is not None):
            raise _problem(f"rule {self.name!r}: give exactly one of 'segment' or 'reject: true'")
        return self

    def compile(self) -> Rule:
        return Rule(self.name, self.match.conditions(), self.segment, self.reject, self.filter_id)


class PolicySection(_Model):
    quarantine_segment: Name = "quarantine"
    default_segment: Name | None = None  # for operational devices without a segment of their own
    onboarding_segment: Name | None = None  # for onboarding devices; quarantine if unset
    rules: tuple[RuleSpec, ...] = Field(default=(), max_length=MAX_RULES)

    @field_validator("rules", mode="before")
    @classmethod
    def _no_rules(cls, value: Any) -> Any:
        return () if value is None else value


class PolicyDocument(_Model):
    segments: dict[str, Segment] = Field(min_length=1)
    sites: dict[str, SiteMembers] = Field(default_factory=dict)
    policy: PolicySection = PolicySection()
    attestation: AttestationRules | None = None  # given only when attestation is to change placement

    @field_validator("sites", "policy", mode="before")
    @classmethod
    def _empty(cls, value: Any, info: ValidationInfo) -> Any:
        return ({} if info.field_name == "sites" else PolicySection()) if value is None else value

    def reference_problems(self, attestation_path: _Path = ("attestation",)) -> list[RuleError]:
        """What only the whole document can tell: names defined, VLANs unique, rule names unique."""
        return [*self._segment_problems(), *self._setting_problems(attestation_path), *self._rule_problems()]

    def _segment_problems(self) -> Iterator[RuleError]:
        for name, segment in self.segments.items():
            for site_name in segment.sites:
                if site_name not in self.sites:
                    yield RuleError(f"site {site_name!r} is not defined in sites",
                                    ("segments", name, "sites", site_name))
        quarantine = self.policy.quarantine_segment
        reported: set[str] = set()
        for site in [None, *self.sites]:
            seen: dict[int, str] = {}
            for name, segment in self.segments.items():
                vlan = segment.vlan if site is None else segment.sites.get(site, segment.vlan)
                if vlan == _BROKEN_VLAN:
                    continue
                other = seen.setdefault(vlan, name)
                if other == name:
                    continue
                where = f" at site {site}" if site is not None else ""
                path: _Path = ("segments", name, "sites", site) if site is not None and site in segment.sites \
                    else ("segments", name)
                if quarantine in (name, other):
                    message = (f"VLAN {vlan}{where} is also segment {other!r}'s; the quarantine VLAN must be used "
                               "by no other segment")
                else:
                    message = f"VLAN {vlan}{where} is already segment {other!r}'s; give each its own"
                if message not in reported:
                    reported.add(message)
                    yield RuleError(message, path)

    def _undefined(self, name: str) -> str:
        return f"segment {name!r} is not defined in segments (known: {', '.join(self.segments) or 'none'})"

    def _setting_problems(self, attestation_path: _Path) -> Iterator[RuleError]:
        given = self.policy.model_fields_set
        for key in ("quarantine_segment", "default_segment", "onboarding_segment"):
            value = getattr(self.policy, key)
            if value is not None and value not in self.segments:
                yield RuleError(self._undefined(value), ("policy", key) if key in given else ("policy",))
        if self.attestation is not None:
            for key in ("warning_segment", "missing_ldevid_segment", "missing_idevid_segment"):
                segment = getattr(self.attestation, key)
                if segment not in self.segments:
                    yield RuleError(f"{key} {segment!r} is not defined in segments", (*attestation_path, key))

    def _rule_problems(self) -> Iterator[RuleError]:
        first: dict[str, int] = {}
        sites = [s.lower() for s in self.sites]
        for i, rule in enumerate(self.policy.rules):
            path: _Path = ("policy", "rules", i)
            if rule.name in first:
                yield RuleError(f"rule name {rule.name!r} is already used by rule #{first[rule.name] + 1}; rule "
                                "names must be unique", (*path, "name"))
            first.setdefault(rule.name, i)
            if rule.segment is not None and rule.segment not in self.segments:
                yield RuleError(f"rule {rule.name!r}: {self._undefined(rule.segment)}", (*path, "segment"))
            for pattern in rule.match.site or ():
                if not any(fnmatch.fnmatchcase(s, pattern.lower()) for s in sites):
                    yield RuleError(f"rule {rule.name!r}: site {pattern!r} is not defined in sites (known: "
                                    f"{', '.join(self.sites) or 'none'})", (*path, "match", "site"))

    def segment_rules(self) -> SegmentRules:
        """The compiled rules ``decide`` runs; raises the first reference problem (``RuleError``)."""
        problems = self.reference_problems()
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise RuleError(f"{'.'.join(map(str, problems[0].path))}: {problems[0]}{more}", problems[0].path)
        return SegmentRules(
            segments={n: s.vlan for n, s in self.segments.items()},
            quarantine_segment=self.policy.quarantine_segment, default_segment=self.policy.default_segment,
            onboarding_segment=self.policy.onboarding_segment, attestation=self.attestation,
            rules=tuple(r.compile() for r in self.policy.rules),
            filters={n: s.filter_id for n, s in self.segments.items() if s.filter_id},
            site_vlans={n: dict(s.sites) for n, s in self.segments.items() if s.sites},
            sites=dict(self.sites))

    def revision(self) -> str:
        """The revision of the effective policy: the normalised document, so ``30`` and ``{vlan: 30}`` agree."""
        return policy_revision(self.model_dump(mode="json"))


def error_message(error: Mapping[str, Any]) -> str:
    """One pydantic error as an operator reads it."""
    if error["type"] == "extra_forbidden":
        loc = error["loc"]
        if len(loc) >= 2 and loc[-2] == "match":
            known = [f for f in Match.model_fields if f != "subject"]
            return f"unknown match field {str(loc[-1])!r}; known: {', '.join(known)}, subject.<ATTR>"
        return f"unknown key {str(loc[-1])!r}: not a setting here (check its spelling and indentation)"
    return str(error["msg"])


def validation_problems(exc: ValidationError, base: _Path = ()) -> list[RuleError]:
    return [RuleError(error_message(e), (*base, *e["loc"])) for e in exc.errors()]


def policy_problems(data: object, attestation_path: _Path = ("attestation",)) -> tuple[PolicyDocument | None,
                                                                                      list[RuleError]]:
    """Validate a document (segments, sites, policy, attestation); returns it, or every problem (each with its
    path). Shape problems come first; reference problems only once the shape is right."""
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        salvaged = _salvage(data)
        found = [] if salvaged is None else salvaged.reference_problems(attestation_path)
        return None, validation_problems(exc) + found
    problems = document.reference_problems(attestation_path)
    return (None if problems else document), problems


_BROKEN_VLAN = 0  # a segment whose own definition failed: its name is known, its VLAN is not


def _valid(model: Any, raw: object) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _salvage(data: object) -> PolicyDocument | None:
    """The parts of a document that validate on their own, so that one bad VLAN does not hide a rule's undefined
    site in the same run. A segment that failed keeps its name (it is defined, just wrong)."""
    if not isinstance(data, Mapping):
        return None
    raw_segments, raw_sites, raw_policy = data.get("segments"), data.get("sites"), data.get("policy")
    segments = {str(name): _valid(Segment, raw) or Segment.model_construct(vlan=_BROKEN_VLAN, filter_id=None,
                                                                           sites={})
                for name, raw in (raw_segments.items() if isinstance(raw_segments, Mapping) else ())}
    sites = {str(name): tuple(raw) if isinstance(raw, list | tuple) else ()
             for name, raw in (raw_sites.items() if isinstance(raw_sites, Mapping) else ())}
    policy = raw_policy if isinstance(raw_policy, Mapping) else {}
    names = {k: v for k, v in policy.items()
             if k in ("quarantine_segment", "default_segment", "onboarding_segment") and isinstance(v, str)}
    rules = policy.get("rules")
    specs = tuple(_valid(RuleSpec, r) for r in (rules if isinstance(rules, list) else ()))
    section = PolicySection.model_construct(set(names), **names, rules=tuple(r for r in specs if r is not None))
    return PolicyDocument.model_construct(segments=segments, sites=sites, policy=section,
                                          attestation=_valid(AttestationRules, data.get("attestation")))


def build_segment_rules(data: object) -> SegmentRules:
    """Validate and compile; raises the first problem (``policy_problems`` gives them all)."""
    document, problems = policy_problems(data)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RuleError(f"{'.'.join(map(str, first.path))}: {first}{more}", first.path)
    assert document is not None
    return document.segment_rules()


def parse_rule(raw: object) -> Rule:
    """One rule from its YAML form (table tests); raises pydantic's ``ValidationError``."""
    return RuleSpec.model_validate(raw).compile()
