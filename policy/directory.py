"""What a directory entry says about a device, and what a sync changes in the registry (pure).

``read_entry`` turns one LDAP entry (its DN and raw attribute values, as the server sent them) into a
``DirectoryDevice`` or a ``RefusedEntry`` naming why: every value is data, never markup. A value that is not UTF-8,
carries control or invisible characters, is longer than the limit, is given twice where one is expected, or names a
segment the directory may not assign refuses the whole entry (the registry keeps what it had) -- nothing is
truncated or guessed.

``reconcile`` compares the entries of one complete listing with the registry and says what to change:

* an approved entry adds an unknown device as operational, or approves a pending one;
* a disabled entry (``approved: FALSE``, or AD's ACCOUNTDISABLE bit) moves the device by ``on_disabled``
  (quarantine unless configured otherwise), and its device is "held" by the directory;
* re-enabling releases only what the directory itself quarantined: the directory can always make a device's
  standing stricter, never looser than an operator's action (an operator's quarantine, a decommissioned device);
* a linked entry that is gone moves its device by ``on_removed`` (decommission unless configured otherwise);
* mapped attributes (owner, class, location, segment) follow the directory; they never change the state.

Entries are matched to devices by the entry's DN once linked (so a device keeps its link when its registry key moves
to its LDevID), else by issuer + serial number, else by certificate fingerprint. Two entries that claim one device
are both refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from policy.dn import DnError, canonical_dn, canonical_serial
from policy.model import DeviceKey, DeviceRecord, LifecycleState
from policy.text import needs_escape

S = LifecycleState
ATTRIBUTE = r"^(?:[A-Za-z][A-Za-z0-9-]{0,63}|[0-9]+(?:\.[0-9]+){1,31})$"  # an LDAP attribute name or OID
ACCOUNTDISABLE = 0x2  # AD userAccountControl: the account (computer) is disabled
MAX_DN = 1024
DIRECTORY_ACTOR = "directory"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RFC4514_KEYS = {"C", "ST", "L", "O", "OU", "CN", "DC", "SERIALNUMBER", "EMAILADDRESS", "UID"}


class AttributeMap(BaseModel):
    """Which LDAP attribute holds each device fact (``None``: the directory does not manage that fact)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    serial_number: str = Field(pattern=ATTRIBUTE)
    issuer: str | None = Field(default=None, pattern=ATTRIBUTE)
    fingerprint: str | None = Field(default=None, pattern=ATTRIBUTE)
    device_class: str | None = Field(default=None, pattern=ATTRIBUTE)
    owner: str | None = Field(default=None, pattern=ATTRIBUTE)
    site: str | None = Field(default=None, pattern=ATTRIBUTE)
    segment: str | None = Field(default=None, pattern=ATTRIBUTE)
    approved: str | None = Field(default=None, pattern=ATTRIBUTE)  # LDAP Boolean: TRUE / FALSE
    user_account_control: str | None = Field(default=None, pattern=ATTRIBUTE)  # AD: disabled by bit 0x2

    def names(self) -> list[str]:
        """The attributes a search asks for."""
        return [v for v in self.model_dump().values() if v is not None]


PRESETS: Mapping[str, AttributeMap] = {
    # trustport's own schema (trustport/directory/schema/trustport.schema) on STRUCTURAL 'device' entries
    "openldap": AttributeMap(serial_number="serialNumber", issuer="trustportIssuer",
                             fingerprint="trustportCertFingerprint", device_class="trustportDeviceClass",
                             owner="trustportOwner", site="trustportSite", segment="trustportSegment",
                             approved="trustportApproved"),
    # Active Directory computer objects: no issuer attribute (directory.default_issuer), disabled accounts by bit
    "active-directory": AttributeMap(serial_number="serialNumber", device_class="description", owner="managedBy",
                                     site="location", user_account_control="userAccountControl"),
}
DEFAULT_FILTERS: Mapping[str, str] = {
    "openldap": "(objectClass=trustportDevice)",
    "active-directory": "(&(objectClass=computer)(serialNumber=*))",
}


@dataclass(frozen=True)
class EntryRules:
    """How entries are read: the mapping, limits, and what the directory may assign."""

    mapping: AttributeMap
    segments: frozenset[str]  # segments the directory may put a device in (within the policy's segments)
    default_issuer: str | None = None  # for entries without an issuer (canonical one-line DN)
    max_value_length: int = 256


@dataclass(frozen=True)
class DirectoryDevice:
    dn: str
    serial_number: str | None
    issuer: str | None
    fingerprint: str | None
    approved: bool
    device_class: str | None = None
    owner: str | None = None
    site: str | None = None
    segment: str | None = None

    @property
    def key(self) -> DeviceKey | None:
        return DeviceKey(self.issuer, self.serial_number) if self.issuer and self.serial_number else None


@dataclass(frozen=True)
class RefusedEntry:
    dn: str
    reason: str


class EntryError(ValueError):
    """One value of an entry cannot be used; the message names the attribute and why."""


def _text(raw: bytes, attribute: str, limit: int) -> str:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EntryError(f"{attribute} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if len(value) > limit:
        raise EntryError(f"{attribute} is {len(value)} characters long (limit {limit})")
    bad = next((ch for ch in value if needs_escape(ch)), None)
    if bad is not None:
        raise EntryError(f"{attribute} contains the control or invisible character U+{ord(bad):04X}")
    if value != value.strip() or not value:
        raise EntryError(f"{attribute} is empty or has leading/trailing white space")
    return unicodedata.normalize("NFC", value)


def _single(attributes: Mapping[str, Sequence[bytes]], name: str | None, limit: int) -> str | None:
    """The one value of ``name`` (attribute names are case-insensitive), None when absent or not mapped."""
    if name is None:
        return None
    values = attributes.get(name.lower(), ())
    if len(values) > 1:
        raise EntryError(f"{name} has {len(values)} values; one is expected (refusing an ambiguous entry)")
    return _text(values[0], name, limit) if values else None


def issuer_dn(value: str) -> str:
    """An issuer DN in one-line form (``/C=US/O=Acme/CN=CA``) or RFC 4514 (``CN=CA,O=Acme,C=US``), canonical."""
    if value.startswith("/"):
        return canonical_dn(value, "issuer")
    parts = []
    for rdn in value.split(","):
        key, sep, text = rdn.strip().partition("=")
        if not sep or key.upper() not in _RFC4514_KEYS or not text or any(c in text for c in '\\+"/<>;#'):
            raise DnError(f"issuer {value[:80]!r} is neither a one-line DN ('/C=../CN=..') nor a plain RFC 4514 "
                          "DN ('CN=..,O=..,C=..' without escapes)")
        parts.append(f"{'serialNumber' if key.upper() == 'SERIALNUMBER' else key.upper()}={text.strip()}")
    return canonical_dn("/" + "/".join(reversed(parts)), "issuer")


def _approved(attributes: Mapping[str, Sequence[bytes]], mapping: AttributeMap, limit: int) -> bool:
    approved = True
    if mapping.approved is not None:
        flag = _single(attributes, mapping.approved, limit)
        if flag not in (None, "TRUE", "FALSE"):
            raise EntryError(f"{mapping.approved} is {flag!r}; an LDAP Boolean is TRUE or FALSE")
        approved = flag == "TRUE"  # absent: not approved (an entry approves a device only by saying so)
    if mapping.user_account_control is not None:
        flags = _single(attributes, mapping.user_account_control, limit)
        if flags is None or not re.fullmatch(r"-?[0-9]{1,11}", flags):
            raise EntryError(f"{mapping.user_account_control} is {flags!r}; an integer is expected")
        approved = approved and not int(flags) & ACCOUNTDISABLE
    return approved


def read_entry(dn: str, attributes: Mapping[str, Sequence[bytes]], rules: EntryRules) -> DirectoryDevice | RefusedEntry:
    """One entry (raw values; attribute names in any case) as a device, or why it is refused."""
    if len(dn) > MAX_DN or any(needs_escape(ch) for ch in dn):
        return RefusedEntry(dn[:MAX_DN], "the DN is over-long or contains control characters")
    values = {name.lower(): list(v) for name, v in attributes.items()}
    m, limit = rules.mapping, rules.max_value_length
    try:
        raw_serial = _single(values, m.serial_number, limit)
        serial = canonical_serial(raw_serial, m.serial_number) if raw_serial is not None else None
        raw_issuer = _single(values, m.issuer, limit)
        issuer = issuer_dn(raw_issuer) if raw_issuer is not None else rules.default_issuer
        fingerprint = _single(values, m.fingerprint, limit)
        if fingerprint is not None:
            fingerprint = re.sub(r"[\s:]", "", fingerprint).lower()
            if not _HEX64.match(fingerprint):
                raise EntryError(f"{m.fingerprint} is not a SHA-256 fingerprint (64 hex digits)")
        segment = _single(values, m.segment, limit)
        if segment is not None and segment not in rules.segments:
            raise EntryError(f"{m.segment} {segment!r} is not a segment the directory may assign "
                             f"(allowed: {', '.join(sorted(rules.segments)) or 'none'})")
        device = DirectoryDevice(
            dn=dn, serial_number=serial, issuer=issuer, fingerprint=fingerprint,
            approved=_approved(values, m, limit), device_class=_single(values, m.device_class, limit),
            owner=_single(values, m.owner, limit), site=_single(values, m.site, limit), segment=segment)
    except (EntryError, DnError) as exc:
        return RefusedEntry(dn, str(exc))
    if device.key is None and device.fingerprint is None:
        missing = m.serial_number if serial is None else (m.issuer or "directory.default_issuer")
        return RefusedEntry(dn, f"no {missing}: an entry names a device by issuer + serial number or by "
                                "certificate fingerprint")
    return device


class Kind(StrEnum):
    ADD = "add"  # a new device from an entry
    ACTION = "action"  # a lifecycle action (approve, quarantine, release, decommission) on a known device
    UPDATE = "update"  # mapped attributes changed; the state stays
    LINK = "link"  # an existing device is now linked to its entry
    UNLINK = "unlink"  # the entry is gone and the device is already where on_removed would put it
    KEPT = "kept"  # the directory would loosen an operator's decision: left as it is (reported)
    WAITING = "waiting"  # an entry naming only a fingerprint no registered device has yet
    REFUSED = "refused"  # the entry cannot be used (reported; the registry keeps what it had)


@dataclass(frozen=True)
class Link:
    """A registry device's link to a directory entry, and whether the directory holds it out of service."""

    device_id: int
    dn: str
    held: bool = False  # the directory's on_disabled action put the device where it is


@dataclass(frozen=True)
class Change:
    kind: Kind
    dn: str
    detail: str
    device: DeviceRecord | None = None
    entry: DirectoryDevice | None = None
    action: str | None = None  # Kind.ACTION: the lifecycle action
    fields: Mapping[str, str | None] = field(default_factory=dict)  # attributes to set (ADD, ACTION, UPDATE)
    held: bool | None = None  # the link's new 'held' (None: unchanged)

    @property
    def removed(self) -> bool:
        """The device's entry is gone from the directory."""
        return self.kind is Kind.UNLINK or (self.kind is Kind.ACTION and self.entry is None)


@dataclass(frozen=True)
class SyncRules:
    on_disabled: Literal["quarantine", "decommission"] = "quarantine"
    on_removed: Literal["quarantine", "decommission"] = "decommission"
    manages: frozenset[str] = frozenset()  # the device fields the mapping provides (owner, device_class, ...)


@dataclass(frozen=True)
class SyncPlan:
    changes: tuple[Change, ...]
    entries: int
    unchanged: int

    def of(self, *kinds: Kind) -> list[Change]:
        return [c for c in self.changes if c.kind in kinds]

    def counts(self) -> dict[str, int]:
        out = {"entries": self.entries, "added": len(self.of(Kind.ADD)), "unchanged": self.unchanged}
        for change in self.changes:
            if change.kind is Kind.ACTION and change.action:
                label = {"approve": "approved", "release": "released", "quarantine": "quarantined",
                         "decommission": "decommissioned"}.get(change.action, change.action)
                out[label] = out.get(label, 0) + 1
        out["changed"] = len(self.of(Kind.UPDATE)) + sum(1 for c in self.of(Kind.ACTION) if c.fields)
        out["removed"] = sum(1 for c in self.changes if c.removed)
        for kind in (Kind.LINK, Kind.KEPT, Kind.WAITING, Kind.REFUSED):
            out[kind.value] = len(self.of(kind))
        return out


FIELDS = ("owner", "device_class", "site", "segment")
_RECORD_FIELD = {"site": "location"}  # DirectoryDevice field -> DeviceRecord field


def _field_changes(device: DeviceRecord, entry: DirectoryDevice, manages: frozenset[str]) -> dict[str, str | None]:
    return {name: getattr(entry, name) for name in FIELDS if name in manages
            and getattr(entry, name) != getattr(device, _RECORD_FIELD.get(name, name))}


def _for_entry(entry: DirectoryDevice, device: DeviceRecord, link: Link | None, rules: SyncRules) -> Change | None:
    """What one entry changes on its device (None: nothing)."""
    fields = _field_changes(device, entry, rules.manages)
    held = link is not None and link.held
    state, name = device.state, f"device #{device.id} {device.key.serial_number}"

    def act(action: str, why: str, now_held: bool) -> Change:
        return Change(Kind.ACTION, entry.dn, f"{name}: {why}", device, entry, action, fields, held=now_held)

    if not entry.approved:
        if state in (S.ONBOARDING, S.OPERATIONAL) or (  # a pending device is in quarantine already
                state is S.QUARANTINED and rules.on_disabled == "decommission"):
            return act(rules.on_disabled, "disabled in the directory", True)
    elif state is S.PENDING:
        return act("approve", "approved in the directory", False)
    elif state is S.QUARANTINED and held:
        return act("release", "enabled again in the directory", False)
    elif state in (S.QUARANTINED, S.DECOMMISSIONED) and (link is None or fields):
        return Change(Kind.KEPT, entry.dn, f"{name}: approved in the directory but {state.value}"
                      + (" by the directory; an operator re-onboards it" if held else
                         " by an operator; the directory never loosens an operator's decision"),
                      device, entry, fields=fields, held=held)
    if link is None:
        return Change(Kind.LINK, entry.dn, f"{name}: linked to its directory entry", device, entry, fields=fields,
                      held=False)
    if fields or (held and entry.approved and state not in (S.QUARANTINED, S.DECOMMISSIONED)):
        what = ", ".join(sorted(fields)) + " changed" if fields else "no longer held by the directory"
        return Change(Kind.UPDATE, entry.dn, f"{name}: {what}", device, entry, fields=fields,
                      held=False if entry.approved else None)
    return None


def _claims(entries: Sequence[DirectoryDevice], by_dn: Mapping[str, Link], devices: Mapping[int, DeviceRecord],
            by_key: Mapping[DeviceKey, int], by_fingerprint: Mapping[str, int]
            ) -> tuple[dict[str, int], list[RefusedEntry]]:
    """Entry DN -> the device it names; entries that claim a device another entry claims too are refused."""
    claimed: dict[int, list[str]] = {}
    for entry in entries:
        link = by_dn.get(entry.dn)
        device_id = link.device_id if link is not None and link.device_id in devices else None
        if device_id is None and entry.key is not None:
            device_id = by_key.get(entry.key)
        if device_id is None and entry.fingerprint is not None:
            device_id = by_fingerprint.get(entry.fingerprint)
        if device_id is not None:
            claimed.setdefault(device_id, []).append(entry.dn)
    linked_to = {link.device_id: dn for dn, link in by_dn.items()}
    out: dict[str, int] = {}
    refused: list[RefusedEntry] = []
    for device_id, dns in claimed.items():
        owner = linked_to.get(device_id)
        if len(dns) > 1 or (owner is not None and owner not in dns and owner in by_dn):
            others = sorted(set(dns) | ({owner} if owner else set()))
            for dn in dns:
                refused.append(RefusedEntry(dn, f"device #{device_id} is claimed by {len(others)} entries "
                                                f"({'; '.join(others)}); refusing all of them as ambiguous"))
        else:
            out[dns[0]] = device_id
    return out, refused


def reconcile(entries: Iterable[DirectoryDevice | RefusedEntry], devices: Sequence[DeviceRecord],
              links: Sequence[Link], rules: SyncRules) -> SyncPlan:
    """What one complete listing changes in the registry (nothing is written here)."""
    listed = list(entries)
    good = [e for e in listed if isinstance(e, DirectoryDevice)]
    refused = [e for e in listed if isinstance(e, RefusedEntry)]
    by_id = {d.id: d for d in devices}
    by_key = {d.key: d.id for d in devices}
    by_fingerprint = {d.fingerprint_sha256: d.id for d in devices if d.fingerprint_sha256}
    by_dn = {link.dn: link for link in links}
    keys: dict[DeviceKey, list[str]] = {}
    for entry in good:
        if entry.key is not None:
            keys.setdefault(entry.key, []).append(entry.dn)
    twice = {dn for dns in keys.values() if len(dns) > 1 for dn in dns}
    refused += [RefusedEntry(e.dn, f"{e.key} is named by {len(keys[e.key])} entries; refusing all of them as "
                                   "ambiguous") for e in good if e.dn in twice and e.key is not None]
    good = [e for e in good if e.dn not in twice]
    claims, ambiguous = _claims(good, by_dn, by_id, by_key, by_fingerprint)
    refused += ambiguous
    skip = {r.dn for r in ambiguous}
    changes: list[Change] = []
    unchanged = 0
    for entry in good:
        if entry.dn in skip:
            continue
        device_id = claims.get(entry.dn)
        if device_id is None:
            if entry.key is None:
                changes.append(Change(Kind.WAITING, entry.dn, f"no registered device has certificate fingerprint "
                                      f"{entry.fingerprint}; linked when it has authenticated", entry=entry))
                continue
            state = S.OPERATIONAL if entry.approved else S.PENDING
            changes.append(Change(Kind.ADD, entry.dn, f"{entry.key}: new, {state.value}", entry=entry,
                                  fields={name: getattr(entry, name) for name in FIELDS if name in rules.manages},
                                  held=not entry.approved))
            continue
        link = by_dn.get(entry.dn)
        link = link if link is not None and link.device_id == device_id else None
        change = _for_entry(entry, by_id[device_id], link, rules)
        if change is None:
            unchanged += 1
        else:
            changes.append(change)
    seen = {e.dn for e in listed}
    for dn, link in sorted(by_dn.items()):
        device = by_id.get(link.device_id)
        if dn in seen or device is None:
            continue
        name = f"device #{device.id} {device.key.serial_number}"
        target = S.QUARANTINED if rules.on_removed == "quarantine" else S.DECOMMISSIONED
        if device.state is target or device.state is S.DECOMMISSIONED:
            changes.append(Change(Kind.UNLINK, dn, f"removed from the directory; {name} stays {device.state.value}",
                                  device))
        else:
            changes.append(Change(Kind.ACTION, dn, f"removed from the directory: {name}", device,
                                  action=rules.on_removed))
    changes += [Change(Kind.REFUSED, r.dn, r.reason) for r in refused]
    return SyncPlan(tuple(changes), len(listed), unchanged)


def removed_share(plan: SyncPlan, linked: int) -> float:
    """The share of linked devices a plan takes out because their entries are gone."""
    return plan.counts()["removed"] / linked if linked else 0.0
