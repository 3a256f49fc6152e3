"""The pure directory rules (policy.directory): reading an entry, and what a sync changes. Every check has the entry
that tries to get around it: values that smuggle markup, widen a placement, or loosen an operator's decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from policy.directory import (
    PRESETS,
    DirectoryDevice,
    EntryRules,
    Kind,
    Link,
    RefusedEntry,
    SyncRules,
    issuer_dn,
    read_entry,
    reconcile,
)
from policy.dn import DnError
from policy.model import DeviceKey, DeviceRecord, LifecycleState
from trustport.settings.directory import DirectoryConfig

S = LifecycleState
ISSUER = "/C=US/O=Acme/CN=Acme IDevID CA"
RULES = EntryRules(PRESETS["openldap"], frozenset({"cameras", "production"}))
MANAGES = frozenset({"owner", "device_class", "site", "segment"})


def raw(**values: str | list[str] | bytes) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        out[name] = [v if isinstance(v, bytes) else v.encode() for v in items]
    return out


def good(**extra: str | list[str] | bytes) -> dict[str, list[bytes]]:
    return raw(serialNumber="SN-1", trustportIssuer=ISSUER, trustportApproved="TRUE", **extra)


def test_an_entry_is_read_with_its_mapped_facts() -> None:
    got = read_entry("cn=a,ou=d", good(trustportSegment="cameras", trustportOwner="facilities",
                                       trustportDeviceClass="camera", trustportSite="hq"), RULES)
    assert got == DirectoryDevice("cn=a,ou=d", "SN-1", ISSUER, None, True, "camera", "facilities", "hq", "cameras")


def test_attribute_names_are_case_insensitive() -> None:
    got = read_entry("cn=a", {"SERIALNUMBER": [b"SN-1"], "trustportissuer": [ISSUER.encode()],
                              "TrustportApproved": [b"TRUE"]}, RULES)
    assert isinstance(got, DirectoryDevice) and got.key == DeviceKey(ISSUER, "SN-1")


@pytest.mark.parametrize(("values", "reason"), [
    (good(trustportOwner="ops\x1b[2Jroot"), "control or invisible character U+001B"),
    (good(trustportOwner="ops\u202eroot"), "U+202E"),
    (good(trustportOwner="a\nb"), "U+000A"),
    (good(trustportDeviceClass="x" * 257), "257 characters long (limit 256)"),
    (good(trustportOwner=b"\xff\xfe"), "not UTF-8"),
    (good(trustportOwner=" padded"), "leading/trailing white space"),
    (good(trustportSegment="quarantine-bypass"), "not a segment the directory may assign"),
    (raw(serialNumber=["SN-1", "SN-2"], trustportIssuer=ISSUER, trustportApproved="TRUE"), "2 values"),
    (good(trustportOwner=["a", "b"]), "trustportOwner has 2 values"),
    (raw(serialNumber="SN-1", trustportIssuer=ISSUER, trustportApproved="yes"), "TRUE or FALSE"),
    (raw(serialNumber="SN-1", trustportIssuer=ISSUER, trustportApproved="true"), "TRUE or FALSE"),
    (raw(serialNumber="SN/1", trustportIssuer=ISSUER, trustportApproved="TRUE"), "contains '/'"),
    (raw(serialNumber="SN-1", trustportIssuer="/C=US/CN=CA+serialNumber=2", trustportApproved="TRUE"),
     "multi-valued RDN"),
    (raw(serialNumber="SN-1", trustportIssuer="CN=CA\\,O=evil", trustportApproved="TRUE"), "without escapes"),
    (raw(serialNumber="SN-1", trustportApproved="TRUE"), "no trustportIssuer"),
    (raw(trustportIssuer=ISSUER, trustportApproved="TRUE"), "no serialNumber"),
    (good(trustportCertFingerprint="zz" * 32), "not a SHA-256 fingerprint"),
])
def test_hostile_or_broken_values_refuse_the_whole_entry(values: dict[str, list[bytes]], reason: str) -> None:
    got = read_entry("cn=x,ou=devices", values, RULES)
    assert isinstance(got, RefusedEntry), got
    assert reason in got.reason


def test_a_dn_with_control_characters_is_refused() -> None:
    assert isinstance(read_entry("cn=a\x00b", good(), RULES), RefusedEntry)


def test_filter_metacharacters_in_a_serial_are_just_characters() -> None:
    got = read_entry("cn=x", raw(serialNumber="*)(objectClass=*", trustportIssuer=ISSUER, trustportApproved="TRUE"),
                     RULES)
    assert isinstance(got, DirectoryDevice) and got.serial_number == "*)(objectClass=*"


def test_missing_approved_flag_is_not_an_approval() -> None:
    got = read_entry("cn=x", raw(serialNumber="SN-1", trustportIssuer=ISSUER), RULES)
    assert isinstance(got, DirectoryDevice) and got.approved is False


@pytest.mark.parametrize(("flags", "approved"), [("4096", True), ("4098", False), ("514", False), ("66048", True)])
def test_active_directory_disabled_bit(flags: str, approved: bool) -> None:
    rules = EntryRules(PRESETS["active-directory"], frozenset(), default_issuer=ISSUER)
    got = read_entry("cn=PC", raw(serialNumber="SN-1", userAccountControl=flags), rules)
    assert isinstance(got, DirectoryDevice) and got.approved is approved and got.issuer == ISSUER


def test_rfc4514_issuer_is_the_one_line_dn() -> None:
    assert issuer_dn("CN=Acme IDevID CA,O=Acme,C=US") == ISSUER
    with pytest.raises(DnError):
        issuer_dn("CN=Acme+O=Evil,C=US")


def record(device_id: int, serial: str, state: LifecycleState, **kw: Any) -> DeviceRecord:
    return DeviceRecord(id=device_id, key=DeviceKey(ISSUER, serial), state=state, segment=kw.pop("segment", None),
                        owner=kw.pop("owner", None), notes=None, cert_kind=None, cert_serial=None,
                        fingerprint_sha256=kw.pop("fingerprint", None), mud_url=None, first_seen=None,
                        last_seen=None, **kw)


def listed(serial: str, *, approved: bool = True, dn: str | None = None, **kw: Any) -> DirectoryDevice:
    return DirectoryDevice(dn or f"cn={serial}", serial, ISSUER, kw.pop("fingerprint", None), approved, **kw)


SYNC = SyncRules(manages=MANAGES)

# (device state, linked, held, entry approved) -> (kind, action)
TRANSITIONS = [
    (S.PENDING, False, False, True, Kind.ACTION, "approve"),
    (S.PENDING, True, True, True, Kind.ACTION, "approve"),
    (S.PENDING, True, True, False, None, None),  # already in quarantine, awaiting approval
    (S.OPERATIONAL, False, False, True, Kind.LINK, None),
    (S.OPERATIONAL, True, False, True, None, None),
    (S.OPERATIONAL, True, False, False, Kind.ACTION, "quarantine"),
    (S.ONBOARDING, True, False, False, Kind.ACTION, "quarantine"),
    (S.QUARANTINED, True, True, True, Kind.ACTION, "release"),  # the directory quarantined it: it may release
    (S.QUARANTINED, True, False, True, None, None),  # an operator quarantined it: never released by the directory
    (S.QUARANTINED, False, False, True, Kind.KEPT, None),
    (S.DECOMMISSIONED, True, True, True, None, None),
    (S.DECOMMISSIONED, False, False, True, Kind.KEPT, None),
    (S.QUARANTINED, True, False, False, None, None),
]


@pytest.mark.parametrize(("state", "linked", "held", "approved", "kind", "action"), TRANSITIONS)
def test_state_transitions(state: LifecycleState, linked: bool, held: bool, approved: bool,
                           kind: Kind | None, action: str | None) -> None:
    device = record(1, "SN-1", state)
    links = [Link(1, "cn=SN-1", held)] if linked else []
    plan = reconcile([listed("SN-1", approved=approved)], [device], links, SYNC)
    got = [(c.kind, c.action) for c in plan.changes]
    assert got == ([] if kind is None else [(kind, action)])
    assert plan.unchanged == (1 if kind is None else 0)


def test_on_disabled_decommission_also_takes_out_a_quarantined_device() -> None:
    rules = SyncRules(on_disabled="decommission", manages=MANAGES)
    plan = reconcile([listed("SN-1", approved=False)], [record(1, "SN-1", S.QUARANTINED)], [Link(1, "cn=SN-1")],
                     rules)
    assert [(c.kind, c.action) for c in plan.changes] == [(Kind.ACTION, "decommission")]


def test_new_entries_are_added_operational_or_pending() -> None:
    plan = reconcile([listed("SN-1", segment="cameras"), listed("SN-2", approved=False)], [], [], SYNC)
    adds = plan.of(Kind.ADD)
    assert [(c.entry.serial_number if c.entry else None, c.held) for c in adds] == [("SN-1", False), ("SN-2", True)]
    assert adds[0].fields["segment"] == "cameras"


def test_a_removed_entry_takes_its_device_out_and_an_unlinked_device_is_never_touched() -> None:
    devices = [record(1, "SN-1", S.OPERATIONAL), record(2, "SN-2", S.OPERATIONAL), record(3, "SN-3", S.DECOMMISSIONED)]
    links = [Link(1, "cn=SN-1"), Link(3, "cn=SN-3")]
    plan = reconcile([], devices, links, SYNC)
    assert sorted((c.kind, c.action, c.device.id if c.device else None) for c in plan.changes) == [
        (Kind.ACTION, "decommission", 1), (Kind.UNLINK, None, 3)]
    assert plan.counts()["removed"] == 2


def test_a_linked_device_keeps_its_entry_when_its_key_moved_to_its_ldevid() -> None:
    moved = DeviceRecord(id=1, key=DeviceKey("/CN=Owner CA", "SN-1"), state=S.OPERATIONAL, segment=None, owner="a",
                         notes=None, cert_kind=None, cert_serial=None, fingerprint_sha256=None, mud_url=None,
                         first_seen=None, last_seen=None)
    plan = reconcile([listed("SN-1", owner="b")], [moved], [Link(1, "cn=SN-1")], SYNC)
    assert [(c.kind, c.device.id if c.device else None, dict(c.fields)) for c in plan.changes] == [
        (Kind.UPDATE, 1, {"owner": "b"})]


def test_two_entries_claiming_one_device_are_both_refused() -> None:
    device = record(1, "SN-1", S.PENDING, fingerprint="ab" * 32)
    entries = [listed("SN-1", dn="cn=one"),
               DirectoryDevice("cn=two", None, None, "ab" * 32, True)]  # the same device by fingerprint
    plan = reconcile(entries, [device], [], SYNC)
    assert sorted(c.dn for c in plan.of(Kind.REFUSED)) == ["cn=one", "cn=two"]
    assert not plan.of(Kind.ACTION)


def test_an_entry_claiming_a_device_linked_to_another_entry_is_refused() -> None:
    device = record(1, "SN-1", S.OPERATIONAL)
    plan = reconcile([listed("SN-1", dn="cn=SN-1"), listed("SN-1", dn="cn=impostor", segment="cameras")],
                     [device], [Link(1, "cn=SN-1")], SYNC)
    assert {c.dn for c in plan.of(Kind.REFUSED)} == {"cn=SN-1", "cn=impostor"}


def test_a_fingerprint_only_entry_waits_for_its_device() -> None:
    plan = reconcile([DirectoryDevice("cn=fp", None, None, "cd" * 32, True)], [], [], SYNC)
    assert [c.kind for c in plan.changes] == [Kind.WAITING]


def test_attributes_the_mapping_does_not_provide_are_left_alone() -> None:
    device = record(1, "SN-1", S.OPERATIONAL, owner="set by an operator", segment="production")
    plan = reconcile([listed("SN-1")], [device], [Link(1, "cn=SN-1")], SyncRules(manages=frozenset()))
    assert plan.changes == () and plan.unchanged == 1


def settings(**over: Any) -> dict[str, Any]:
    base = {"url": "ldaps://ldap.example:636", "ca_file": "ca.pem", "bind_dn": "cn=trustport,dc=example,dc=org",
            "bind_password": "pw", "base_dn": "ou=devices,dc=example,dc=org"}
    return base | over


@pytest.mark.parametrize(("over", "message"), [
    ({"url": "ldap://ldap.example"}, "would send the bind password in clear"),
    ({"url": "ldaps://ldap.example", "start_tls": True}, "ldaps:// is TLS already"),
    ({"url": "http://ldap.example"}, "is not ldaps://"),
    ({"url": "ldaps://ldap.example/ou=devices"}, "give the server only"),
    ({"url": "ldaps://ldap.example:99999"}, "Port"),
    ({"filter": "(&(objectClass=device)(cn=a)"}, "not an LDAP filter"),
    ({"filter": "(objectClass=device"}, "enclosed in parentheses"),
    ({"filter": "objectClass=x"}, "enclosed in parentheses"),
    ({"base_dn": "not a dn"}, "is not an LDAP DN"),
    ({"attributes": {"colour": "x"}}, "unknown attribute mapping key"),
    ({"attributes": {"owner": "bad name!"}}, "String should match pattern"),
    ({"default_issuer": "garbage"}, "neither a one-line DN"),
    ({"verify": False}, "Extra inputs are not permitted"),
])
def test_directory_settings_refuse_mistakes(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DirectoryConfig(**settings(**over))


def test_directory_settings_defaults_and_overrides() -> None:
    config = DirectoryConfig(**settings(attributes={"owner": "manager"}, mapping="openldap"))
    assert config.attribute_map().owner == "manager"
    assert config.search_filter() == "(objectClass=trustportDevice)"
    assert config.sync_rules().manages == MANAGES
    assert "'pw'" not in repr(config) and config.resolved_ca(Path("/etc/trustport")) == Path("/etc/trustport/ca.pem")
