"""MUD profiles: both ACL spellings, every refusal with its JSON path, the policy hint, and CMS signatures."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from policy.errors import TrustportError
from policy.mud import (
    ACCESS_LISTS_KEY,
    ACLS_KEY,
    Direction,
    Forwarding,
    MudClass,
    MudError,
    MudSignatureError,
    Peer,
    PortMatch,
    parse_mud,
    policy_hint,
)
from policy.mud_signature import MUD_SIGNER_OID, load_mud, mud_signer_name, signature_url, verify_mud_signature
from trustport_lab.pki import Issued, issue_device, make_ca

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
URL = "https://lighting.example.com/lightbulb2000.json"


def lightbulb(container: str = ACLS_KEY) -> dict[str, Any]:
    """Shaped like the RFC 8520 Appendix A light bulb: it only talks HTTPS to its manufacturer's cloud."""
    return {
        "ietf-mud:mud": {
            "mud-version": 1,
            "mud-url": URL,
            "last-update": "2026-01-28T11:20:51+01:00",
            "cache-validity": 48,
            "is-supported": True,
            "systeminfo": "The BMS Example Light Bulb",
            "mfg-name": "Example Lighting",
            "model-name": "lightbulb2000",
            "documentation": "https://lighting.example.com/lightbulb2000/documentation",
            "from-device-policy": {"access-lists": {"access-list": [{"name": "mud-76100-v6fr"}]}},
            "to-device-policy": {"access-lists": {"access-list": [{"name": "mud-76100-v6to"}]}},
        },
        container: {
            "acl": [
                {
                    "name": "mud-76100-v6to",
                    "type": "ipv6-acl-type",
                    "aces": {"ace": [{
                        "name": "cl0-todev",
                        "matches": {
                            "ipv6": {"ietf-acldns:src-dnsname": "test.example.com", "protocol": 6},
                            "tcp": {"ietf-mud:direction-initiated": "from-device",
                                    "source-port": {"operator": "eq", "port": 443}},
                        },
                        "actions": {"forwarding": "accept"},
                    }]},
                },
                {
                    "name": "mud-76100-v6fr",
                    "type": "ipv6-acl-type",
                    "aces": {"ace": [{
                        "name": "cl0-frdev",
                        "matches": {
                            "ipv6": {"ietf-acldns:dst-dnsname": "test.example.com", "protocol": 6},
                            "tcp": {"ietf-mud:direction-initiated": "from-device",
                                    "destination-port": {"operator": "eq", "port": 443}},
                        },
                        "actions": {"forwarding": "accept"},
                    }]},
                },
            ]
        },
    }


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def parse(doc: Any, **kw: Any) -> Any:
    return parse_mud(encode(doc), "mud.json", **kw)


# --- parsing ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("container", [ACLS_KEY, ACCESS_LISTS_KEY])
def test_lightbulb_parses_in_both_acl_spellings(container: str) -> None:
    profile = parse(lightbulb(container), expected_url=URL)
    assert profile.acl_container == container
    assert profile.mud_url == URL
    assert profile.acl_names == ("mud-76100-v6to", "mud-76100-v6fr")
    assert profile.from_device_acls == ("mud-76100-v6fr",)
    assert profile.to_device_acls == ("mud-76100-v6to",)
    assert profile.manufacturer == "lighting.example.com"
    assert profile.model == "lightbulb2000"
    assert profile.mfg_name == "Example Lighting"
    assert profile.is_supported is True
    assert profile.last_update == datetime(2026, 1, 28, 10, 20, 51, tzinfo=UTC)
    assert profile.expires_at(NOW) == NOW + timedelta(hours=48)
    ace = profile.acl("mud-76100-v6fr").aces[0]
    assert ace.forwarding is Forwarding.ACCEPT
    assert ace.matches.ip is not None and ace.matches.ip.dst_dnsname == "test.example.com"
    assert ace.matches.ip.version == 6 and ace.matches.ip.protocol == 6
    assert ace.matches.transport is not None
    assert ace.matches.transport.destination_port == PortMatch("eq", 443)
    assert ace.matches.transport.direction_initiated is Direction.FROM_DEVICE


def test_both_spellings_give_the_same_model() -> None:
    a, b = parse(lightbulb(ACLS_KEY)), parse(lightbulb(ACCESS_LISTS_KEY))
    assert a.acls == b.acls
    assert (a.from_device_acls, a.to_device_acls) == (b.from_device_acls, b.to_device_acls)


def test_defaults_and_optional_fields() -> None:
    doc = lightbulb()
    for key in ("cache-validity", "systeminfo", "mfg-name", "model-name", "documentation"):
        del doc["ietf-mud:mud"][key]
    profile = parse(doc)
    assert profile.cache_validity_hours == 48
    assert profile.model == URL  # no model-name: the MUD URL identifies the model
    assert profile.systeminfo is None


def test_prefixed_extension_nodes_are_kept_by_name_not_interpreted() -> None:
    doc = lightbulb()
    doc[MUD]["extensions"] = ["transparency"]
    doc[MUD]["ietf-mud-transparency:transparency"] = {"sbom-local-well-known": "https"}
    profile = parse(doc)
    assert profile.extensions == ("transparency",)
    assert profile.extension_nodes == ("ietf-mud-transparency:transparency",)


def test_mudgee_style_file_with_ranges_eth_icmp_and_mud_matches() -> None:
    acl = {"name": "from-ipv4-plug", "type": "ipv4-acl-type", "aces": {"ace": [
        {"name": "ntp", "matches": {"ipv4": {"protocol": 17, "ietf-acldns:dst-dnsname": "pool.ntp.org"},
                                    "udp": {"destination-port": {"operator": "eq", "port": 123}}},
         "actions": {"forwarding": "accept"}},
        {"name": "lan", "matches": {"ipv4": {"protocol": 6},
                                    "tcp": {"destination-port": {"lower-port": 8000, "upper-port": 8100}},
                                    "ietf-mud:mud": {"local-networks": [None]}},
         "actions": {"forwarding": "accept"}},
        {"name": "ping", "matches": {"ipv4": {"protocol": 1, "destination-ipv4-network": "192.168.1.0/24"},
                                     "icmp": {"type": 8, "code": 0}},
         "actions": {"forwarding": "accept"}},
        {"name": "arp", "matches": {"eth": {"ethertype": "0x0806", "destination-mac-address": "FF:FF:FF:FF:FF:FF"}},
         "actions": {"forwarding": "ietf-access-control-list:accept"}},
        {"name": "rest", "actions": {"forwarding": "drop"}},
    ]}}
    doc = {"ietf-mud:mud": {"mud-version": 1, "mud-url": "https://plug.example.net/p115", "last-update":
                            "2024-06-16T13:05:54.244Z", "cache-validity": 100, "is-supported": True,
                            "systeminfo": "plug", "from-device-policy": {"access-lists": {"access-list": [
                                {"name": "from-ipv4-plug"}]}}},
           ACCESS_LISTS_KEY: {"acl": [acl]}}
    profile = parse(doc)
    aces = profile.acl("from-ipv4-plug").aces
    assert aces[1].matches.transport is not None
    assert aces[1].matches.transport.destination_port == PortMatch("range", 8000, 8100)
    assert aces[1].matches.mud is not None and aces[1].matches.mud.local_networks
    assert aces[2].matches.icmp is not None and aces[2].matches.icmp.type == 8
    assert aces[3].matches.eth is not None and aces[3].matches.eth.destination_mac == "ff:ff:ff:ff:ff:ff"
    assert aces[4].forwarding is Forwarding.DROP
    assert profile.to_device_acls == ()
    hint = policy_hint(profile)
    assert hint.classification is MudClass.MIXED  # internet + local + an unrestricted eth ace
    assert hint.peers == {Peer.INTERNET, Peer.LOCAL, Peer.ANY}
    assert hint.dns_names == ("pool.ntp.org",)


Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return mutate


def _del(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[int(last) if last.isdigit() else last]
    return mutate


MUD = "ietf-mud:mud"
ACE0 = f"{ACLS_KEY}/acl/1/aces/ace/0"
ACE0_PATH = f"{ACLS_KEY}.acl[1].aces.ace[0]"
ACE_TEMPLATE = lightbulb()[ACLS_KEY]["acl"][1]["aces"]["ace"][0]

ERRORS: list[tuple[str, bytes | Mutation, str]] = [
    ("bad json", b'{"ietf-mud:mud": ', "mud.json: (document): invalid JSON: Expecting value at line 1"),
    ("not utf-8", b'{"\xff": 1}', "mud.json: (document): not UTF-8"),
    ("NaN", b'{"ietf-mud:mud": NaN}', "mud.json: (document): invalid JSON: NaN is not valid JSON"),
    ("duplicate key", b'{"ietf-mud:mud": {}, "ietf-mud:mud": {}}', "duplicate key 'ietf-mud:mud'"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "mud.json: (document): invalid JSON"),
    ("top not object", b"[]", "mud.json: (document): wrong type: expected object, got array"),
    ("oversize", b" " * (256 * 1024 + 1), "mud.json: (document): file too large: 262145 bytes > 262144"),
    ("unknown top key", _set("extra", 1), "mud.json: (document): unsupported field 'extra'"),
    ("both containers", _set(ACCESS_LISTS_KEY, {"acl": []}), "both ietf-access-control-list:acls and"),
    ("missing mud", _del(MUD), "mud.json: ietf-mud:mud: missing"),
    ("mud not object", _set(MUD, []), "mud.json: ietf-mud:mud: wrong type: expected object, got array"),
    ("missing mud-url", _del(f"{MUD}/mud-url"), "mud.json: ietf-mud:mud.mud-url: missing"),
    ("http mud-url", _set(f"{MUD}/mud-url", "http://lighting.example.com/x"),
     "mud.json: ietf-mud:mud.mud-url: must be an https:// URL"),
    ("mud-url type", _set(f"{MUD}/mud-url", 5), "ietf-mud:mud.mud-url: wrong type: expected string, got number"),
    ("missing version", _del(f"{MUD}/mud-version"), "mud.json: ietf-mud:mud.mud-version: missing"),
    ("version 2", _set(f"{MUD}/mud-version", 2), "ietf-mud:mud.mud-version: unsupported MUD version 2"),
    ("missing last-update", _del(f"{MUD}/last-update"), "ietf-mud:mud.last-update: missing"),
    ("bad last-update", _set(f"{MUD}/last-update", "yesterday"), "ietf-mud:mud.last-update: not an RFC 3339"),
    ("naive last-update", _set(f"{MUD}/last-update", "2026-01-28T11:20:51"),
     "ietf-mud:mud.last-update: date-and-time without a UTC offset"),
    ("missing is-supported", _del(f"{MUD}/is-supported"), "ietf-mud:mud.is-supported: missing"),
    ("is-supported string", _set(f"{MUD}/is-supported", "yes"),
     "ietf-mud:mud.is-supported: wrong type: expected boolean, got string"),
    ("cache-validity 0", _set(f"{MUD}/cache-validity", 0), "ietf-mud:mud.cache-validity: out of range 1..168: 0"),
    ("cache-validity 169", _set(f"{MUD}/cache-validity", 169), "out of range 1..168: 169"),
    ("cache-validity bool", _set(f"{MUD}/cache-validity", True),
     "ietf-mud:mud.cache-validity: wrong type: expected integer, got boolean"),
    ("systeminfo too long", _set(f"{MUD}/systeminfo", "x" * 61), "ietf-mud:mud.systeminfo: length must be 1..60"),
    ("unknown mud field", _set(f"{MUD}/colour", "red"), "ietf-mud:mud: unsupported field 'colour'"),
    ("policy name missing", _set(f"{MUD}/from-device-policy/access-lists/access-list/0", {}),
     "mud.json: ietf-mud:mud.from-device-policy.access-lists.access-list[0].name: missing"),
    ("policy undefined acl", _set(f"{MUD}/to-device-policy/access-lists/access-list/0/name", "nope"),
     "ietf-mud:mud.to-device-policy.access-lists.access-list[0].name: ACL 'nope' is not defined in "
     "ietf-access-control-list:acls"),
    ("policy missing access-lists", _set(f"{MUD}/to-device-policy", {}),
     "ietf-mud:mud.to-device-policy.access-lists: missing"),
    ("acl not array", _set(f"{ACLS_KEY}/acl", {}), f"{ACLS_KEY}.acl: wrong type: expected array, got object"),
    ("too many acls", _set(f"{ACLS_KEY}/acl", [{"name": f"a{i}"} for i in range(65)]),
     f"mud.json: {ACLS_KEY}.acl: too many ACLs: 65 > 64"),
    ("too many aces", _set(f"{ACLS_KEY}/acl/1/aces/ace",
                           [dict(ACE_TEMPLATE, name=f"a{i}") for i in range(257)]),
     f"mud.json: {ACLS_KEY}.acl[1].aces.ace: too many aces: 257 > 256"),
    ("acl name missing", _del(f"{ACLS_KEY}/acl/0/name"), f"{ACLS_KEY}.acl[0].name: missing"),
    ("duplicate acl", _set(f"{ACLS_KEY}/acl/1/name", "mud-76100-v6to"), "duplicate ACL name 'mud-76100-v6to'"),
    ("duplicate ace", _set(f"{ACLS_KEY}/acl/1/aces/ace", [ACE_TEMPLATE, ACE_TEMPLATE]),
     f"{ACLS_KEY}.acl[1].aces.ace[1]: duplicate ace name 'cl0-frdev'"),
    ("ace name type", _set(f"{ACE0}/name", 7), f"{ACE0_PATH}.name: wrong type: expected string, got number"),
    ("missing actions", _del(f"{ACE0}/actions"), f"mud.json: {ACE0_PATH}.actions: missing"),
    ("missing forwarding", _set(f"{ACE0}/actions", {}), f"{ACE0_PATH}.actions.forwarding: missing"),
    ("unknown forwarding", _set(f"{ACE0}/actions/forwarding", "permit"),
     f"mud.json: {ACE0_PATH}.actions.forwarding: unknown forwarding action 'permit'"),
    ("protocol string", _set(f"{ACE0}/matches/ipv6/protocol", "6"),
     f"{ACE0_PATH}.matches.ipv6.protocol: wrong type: expected integer, got string"),
    ("protocol range", _set(f"{ACE0}/matches/ipv6/protocol", 256), "matches.ipv6.protocol: out of range 0..255"),
    ("tcp with udp protocol", _set(f"{ACE0}/matches/ipv6/protocol", 17),
     f"{ACE0_PATH}.matches: tcp match with ipv6 protocol 17 (expected 6)"),
    ("port range", _set(f"{ACE0}/matches/tcp/destination-port/port", 70000),
     f"{ACE0_PATH}.matches.tcp.destination-port.port: out of range 0..65535: 70000"),
    ("port operator", _set(f"{ACE0}/matches/tcp/destination-port/operator", "lt"),
     "matches.tcp.destination-port.operator: unknown operator 'lt'"),
    ("port missing", _set(f"{ACE0}/matches/tcp/destination-port", {"operator": "eq"}),
     "matches.tcp.destination-port.port: missing"),
    ("range inverted", _set(f"{ACE0}/matches/tcp/destination-port", {"lower-port": 9, "upper-port": 1}),
     "matches.tcp.destination-port: lower-port 9 is above upper-port 1"),
    ("direction", _set(f"{ACE0}/matches/tcp/ietf-mud:direction-initiated", "both"),
     "matches.tcp.ietf-mud:direction-initiated: must be from-device or to-device"),
    ("unsupported ip field", _set(f"{ACE0}/matches/ipv6/flow-label", 1),
     f"{ACE0_PATH}.matches.ipv6: unsupported field 'flow-label'"),
    ("unsupported match", _set(f"{ACE0}/matches/ingress-interface", "eth0"),
     f"{ACE0_PATH}.matches: unsupported field 'ingress-interface'"),
    ("bad dnsname", _set(f"{ACE0}/matches/ipv6/ietf-acldns:dst-dnsname", "bad name!"),
     "matches.ipv6.ietf-acldns:dst-dnsname: invalid value 'bad name!'"),
    ("dns and network", _set(f"{ACE0}/matches/ipv6/destination-ipv6-network", "2001:db8::/32"),
     "destination-ipv6-network and ietf-acldns:dst-dnsname are alternatives"),
    ("bad network", _set(f"{ACE0}/matches/ipv6/source-ipv6-network", "2001:db8::1/32"),
     "matches.ipv6.source-ipv6-network: not an IPv6 prefix"),
    ("v4 network in v6", _set(f"{ACE0}/matches/ipv6/source-ipv6-network", "10.0.0.0/8"),
     "matches.ipv6.source-ipv6-network: not an IPv6 prefix"),
    ("ipv4 in ipv6 acl", _set(f"{ACE0}/matches/ipv4", {"protocol": 6}), "ipv4 and ipv6 are alternatives"),
    ("tcp and udp", _set(f"{ACE0}/matches/udp", {}), "tcp, udp and icmp are alternatives"),
    ("same-manufacturer true", _set(f"{ACE0}/matches/ietf-mud:mud", {"same-manufacturer": True}),
     "matches.ietf-mud:mud.same-manufacturer: expected [null] (YANG empty leaf)"),
    ("empty mud match", _set(f"{ACE0}/matches/ietf-mud:mud", {}), "matches.ietf-mud:mud: empty ietf-mud:mud match"),
    ("mac", _set(f"{ACE0}/matches/eth", {"source-mac-address": "zz"}), "matches.eth.source-mac-address: invalid"),
]


@pytest.mark.parametrize(("data", "message"), [(d, m) for _, d, m in ERRORS], ids=[n for n, _, _ in ERRORS])
def test_refusals_name_the_file_and_json_path(data: bytes | Mutation, message: str) -> None:
    if not isinstance(data, bytes):
        doc = copy.deepcopy(lightbulb())
        data(doc)
        data = encode(doc)
    with pytest.raises(MudError) as info:
        parse_mud(data, "mud.json")
    assert message in str(info.value)
    assert str(info.value).startswith("mud.json: ")
    assert isinstance(info.value, TrustportError)


def test_ipv6_match_in_ipv4_acl_is_refused() -> None:
    doc = lightbulb()
    doc[ACLS_KEY]["acl"][1]["type"] = "ietf-access-control-list:ipv4-acl-type"
    with pytest.raises(MudError, match=r"acl\[1\]\.aces\.ace\[0\]\.matches\.ipv6: ipv6 match in an ACL of type ipv4"):
        parse(doc)


def test_mud_url_must_be_the_url_looked_up() -> None:
    with pytest.raises(MudError, match=r"ietf-mud:mud\.mud-url: .* is not the URL this file was retrieved for"):
        parse(lightbulb(), expected_url="https://other.example.com/lightbulb2000.json")


# --- policy hint ------------------------------------------------------------------------------------------------

def _one_ace(matches: dict[str, Any], forwarding: str = "accept", direction: str = "from") -> dict[str, Any]:
    doc = lightbulb()
    acl = doc[ACLS_KEY]["acl"][1 if direction == "from" else 0]
    acl["type"] = "ipv4-acl-type"
    acl["aces"]["ace"] = [{"name": "only", "matches": matches, "actions": {"forwarding": forwarding}}]
    other = doc[ACLS_KEY]["acl"][0 if direction == "from" else 1]
    other["aces"]["ace"] = []
    return doc


HINTS: list[tuple[str, dict[str, Any], MudClass]] = [
    ("lightbulb", lightbulb(), MudClass.INTERNET_ONLY),
    ("dst dns", _one_ace({"ipv4": {"ietf-acldns:dst-dnsname": "cloud.example.com"}}), MudClass.INTERNET_ONLY),
    ("global network", _one_ace({"ipv4": {"destination-ipv4-network": "8.8.8.8/32"}}), MudClass.INTERNET_ONLY),
    ("private network", _one_ace({"ipv4": {"destination-ipv4-network": "192.168.0.0/16"}}), MudClass.LOCAL_ONLY),
    ("local-networks", _one_ace({"ietf-mud:mud": {"local-networks": [None]}}), MudClass.LOCAL_ONLY),
    ("same-manufacturer", _one_ace({"ietf-mud:mud": {"same-manufacturer": [None]}}), MudClass.SAME_MANUFACTURER),
    ("controller", _one_ace({"ietf-mud:mud": {"controller": "urn:ietf:params:mud:dns"}}), MudClass.CONTROLLER),
    ("my-controller", _one_ace({"ietf-mud:mud": {"my-controller": [None]}}), MudClass.CONTROLLER),
    ("manufacturer", _one_ace({"ietf-mud:mud": {"manufacturer": "other.example"}}), MudClass.MIXED),
    ("any", _one_ace({"ipv4": {"protocol": 6}, "tcp": {"destination-port": {"port": 22}}}), MudClass.MIXED),
    ("default route", _one_ace({"ipv4": {"destination-ipv4-network": "0.0.0.0/0"}}), MudClass.MIXED),
    ("all dropped", _one_ace({"ipv4": {"destination-ipv4-network": "8.8.8.8/32"}}, "drop"), MudClass.ISOLATED),
    ("to-device src dns", _one_ace({"ipv4": {"ietf-acldns:src-dnsname": "cloud.example.com"}}, direction="to"),
     MudClass.INTERNET_ONLY),
    ("to-device dst dns is not the peer", _one_ace({"ipv4": {"ietf-acldns:dst-dnsname": "x.example"}},
                                                   direction="to"), MudClass.MIXED),
]


@pytest.mark.parametrize(("doc", "expected"), [(d, c) for _, d, c in HINTS], ids=[n for n, _, _ in HINTS])
def test_policy_hint_classification(doc: dict[str, Any], expected: MudClass) -> None:
    assert policy_hint(parse(doc)).classification is expected


def test_policy_hint_summary() -> None:
    hint = policy_hint(parse(lightbulb()))
    assert hint.filter_id == "mud-76100-v6fr"
    assert hint.manufacturer == "lighting.example.com"
    assert hint.model == "lightbulb2000"
    assert hint.peers == {Peer.INTERNET}
    assert hint.dns_names == ("test.example.com",)
    assert hint.is_supported


def test_signature_url() -> None:
    assert signature_url(parse(lightbulb())) == "https://lighting.example.com/lightbulb2000.p7s"
    doc = lightbulb()
    doc[MUD]["mud-signature"] = "https://sig.example.com/x.p7s"
    assert signature_url(parse(doc)) == "https://sig.example.com/x.p7s"


# --- signatures -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signing() -> dict[str, Issued]:
    ca = make_ca("Example Lighting MUD CA", "Example Lighting", now=NOW)
    other_ca = make_ca("Mallory MUD CA", "Mallory", now=NOW)
    return {
        "ca": ca,
        "other_ca": other_ca,
        "signer": issue_device(ca, cn="mud-signer.lighting.example.com", serial_number=None, now=NOW, eku=None),
        "second": issue_device(ca, cn="mud-signer.other-brand.example", serial_number=None, now=NOW, eku=None),
        "untrusted": issue_device(other_ca, cn="mud-signer.lighting.example.com", serial_number=None, now=NOW,
                                  eku=None),
        "expired": issue_device(ca, cn="old-signer.lighting.example.com", serial_number=None, now=NOW, eku=None,
                                not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1)),
    }


def sign(data: bytes, who: Issued, *options: pkcs7.PKCS7Options, detached: bool = True) -> bytes:
    flags = [pkcs7.PKCS7Options.Binary, *options] + ([pkcs7.PKCS7Options.DetachedSignature] if detached else [])
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(who.cert, who.key, hashes.SHA256())
    return builder.sign(serialization.Encoding.DER, flags)


MUD_BYTES = encode(lightbulb())


def test_valid_signature_returns_signer(signing: dict[str, Issued]) -> None:
    signer = verify_mud_signature(MUD_BYTES, sign(MUD_BYTES, signing["signer"]), [signing["ca"].cert], NOW)
    assert signer == signing["signer"].cert


def test_valid_signature_without_signed_attributes(signing: dict[str, Issued]) -> None:
    signature = sign(MUD_BYTES, signing["signer"], pkcs7.PKCS7Options.NoAttributes)
    assert verify_mud_signature(MUD_BYTES, signature, [signing["ca"].cert], NOW) == signing["signer"].cert


def test_pinned_signer_certificate_is_a_trust_anchor(signing: dict[str, Issued]) -> None:
    signature = sign(MUD_BYTES, signing["signer"])
    assert verify_mud_signature(MUD_BYTES, signature, [signing["signer"].cert], NOW) == signing["signer"].cert


def test_expected_signer_from_the_device_certificate(signing: dict[str, Issued]) -> None:
    expected = mud_signer_name(device_with_mudsigner(signing, signing["signer"].cert.subject))
    assert expected == signing["signer"].cert.subject
    signature = sign(MUD_BYTES, signing["signer"])
    assert verify_mud_signature(MUD_BYTES, signature, [signing["ca"].cert], NOW, expected) == signing["signer"].cert


def device_with_mudsigner(signing: dict[str, Issued], name: x509.Name | None, der: bytes | None = None
                          ) -> x509.Certificate:
    device = issue_device(signing["ca"], cn="bulb-1", serial_number="SN-1", now=NOW, mud_url=URL)
    builder = (x509.CertificateBuilder().subject_name(device.cert.subject).issuer_name(device.cert.issuer)
               .public_key(device.key.public_key()).serial_number(1)
               .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1)))
    if name is not None or der is not None:
        value = der if der is not None else name.public_bytes()  # type: ignore[union-attr]
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(MUD_SIGNER_OID), value), critical=False)
    return builder.sign(signing["ca"].key, hashes.SHA256())


def test_mud_signer_name_absent_and_malformed(signing: dict[str, Issued]) -> None:
    assert mud_signer_name(device_with_mudsigner(signing, None)) is None
    with pytest.raises(MudSignatureError, match="id-pe-mudsigner extension is not a DER Name"):
        mud_signer_name(device_with_mudsigner(signing, None, der=b"\x04\x01x"))


def _tampered() -> bytes:
    return MUD_BYTES.replace(b"test.example.com", b"evil.example.com")


SIGNATURE_CASES: list[tuple[str, Callable[[dict[str, Issued]], tuple[bytes, bytes, x509.Name | None]], str]] = [
    ("unsigned", lambda s: (MUD_BYTES, b"", None), "mud.json: unsigned: no signature (.p7s) was provided"),
    ("garbage", lambda s: (MUD_BYTES, b"\x30\x03abc", None), "mud.json: signature is not a DER CMS SignedData"),
    ("truncated", lambda s: (MUD_BYTES, sign(MUD_BYTES, s["signer"])[:-10], None),
     "signature is not a DER CMS SignedData"),
    ("json instead of p7s", lambda s: (MUD_BYTES, MUD_BYTES, None), "signature is not a DER CMS SignedData"),
    ("tampered body", lambda s: (_tampered(), sign(MUD_BYTES, s["signer"]), None),
     "mud.json: the MUD file does not match its signature (message digest differs)"),
    ("forged (no attributes)", lambda s: (_tampered(), sign(MUD_BYTES, s["signer"], pkcs7.PKCS7Options.NoAttributes),
                                          None),
     "mud.json: signature does not verify with the key of signer CN=mud-signer.lighting.example.com"),
    ("untrusted signer", lambda s: (MUD_BYTES, sign(MUD_BYTES, s["untrusted"]), None),
     "mud.json: signer certificate CN=mud-signer.lighting.example.com,O=Acme Devices,C=DE does not chain to a "
     "trusted MUD signer"),
    ("wrong signer (mudsigner)", lambda s: (MUD_BYTES, sign(MUD_BYTES, s["second"]), s["signer"].cert.subject),
     "mud.json: signer CN=mud-signer.other-brand.example,O=Acme Devices,C=DE is not the MUD signer "
     "CN=mud-signer.lighting.example.com,O=Acme Devices,C=DE named by the device certificate (id-pe-mudsigner)"),
    ("expired signer", lambda s: (MUD_BYTES, sign(MUD_BYTES, s["expired"]), None),
     "mud.json: signer certificate CN=old-signer.lighting.example.com,O=Acme Devices,C=DE expired at"),
    ("attached content", lambda s: (MUD_BYTES, sign(MUD_BYTES, s["signer"], detached=False), None),
     "the signature embeds content; RFC 8520 uses a detached signature"),
]


@pytest.mark.parametrize(("case", "message"), [(c, m) for _, c, m in SIGNATURE_CASES],
                         ids=[n for n, _, _ in SIGNATURE_CASES])
def test_signature_refusals(signing: dict[str, Issued], case: Any, message: str) -> None:
    mud, signature, expected = case(signing)
    with pytest.raises(MudSignatureError) as info:
        verify_mud_signature(mud, signature, [signing["ca"].cert], NOW, expected, source="mud.json")
    assert message in str(info.value)
    assert isinstance(info.value, MudError)


def test_no_trusted_signers_configured(signing: dict[str, Issued]) -> None:
    with pytest.raises(MudSignatureError, match="no trusted MUD signers configured"):
        verify_mud_signature(MUD_BYTES, sign(MUD_BYTES, signing["signer"]), [], NOW)


def test_signer_not_yet_valid(signing: dict[str, Issued]) -> None:
    with pytest.raises(MudSignatureError, match="is not valid before"):
        verify_mud_signature(MUD_BYTES, sign(MUD_BYTES, signing["signer"]), [signing["ca"].cert],
                             NOW - timedelta(days=30))


def test_load_mud_verifies_then_parses(signing: dict[str, Issued]) -> None:
    verified = load_mud(MUD_BYTES, sign(MUD_BYTES, signing["signer"]), source="mud.json", url=URL,
                        trusted_signers=[signing["ca"].cert], now=NOW)
    assert verified.signer == signing["signer"].cert
    assert verified.profile.mud_url == URL
    with pytest.raises(MudSignatureError, match="unsigned"):
        load_mud(MUD_BYTES, None, source="mud.json", url=URL, trusted_signers=[signing["ca"].cert], now=NOW)
    unsigned = load_mud(MUD_BYTES, None, source="mud.json", url=URL, trusted_signers=[], now=NOW,
                        require_signature=False)
    assert unsigned.signer is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
@pytest.mark.parametrize("extra", [[], ["-noattr"], ["-md", "sha384"]], ids=["default", "noattr", "sha384"])
def test_signature_made_by_openssl_cms(signing: dict[str, Issued], tmp_path: Path, extra: list[str]) -> None:
    """RFC 8520 section 13.2's own recipe: openssl cms -sign ... -binary -outform DER."""
    cert, key = signing["signer"].write(tmp_path, "signer")
    (tmp_path / "mud.json").write_bytes(MUD_BYTES)
    subprocess.run(["openssl", "cms", "-sign", "-signer", str(cert), "-inkey", str(key), "-in",
                    str(tmp_path / "mud.json"), "-binary", "-outform", "DER", "-out", str(tmp_path / "mud.p7s"),
                    *extra], check=True, capture_output=True)
    signature = (tmp_path / "mud.p7s").read_bytes()
    assert verify_mud_signature(MUD_BYTES, signature, [signing["ca"].cert], NOW) == signing["signer"].cert
    with pytest.raises(MudSignatureError):
        verify_mud_signature(_tampered(), signature, [signing["ca"].cert], NOW)


def test_signer_certificate_found_among_trusted_when_not_embedded(signing: dict[str, Issued], tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI not installed (Debian package openssl; make test installs it)")
    cert, key = signing["signer"].write(tmp_path, "signer")
    (tmp_path / "mud.json").write_bytes(MUD_BYTES)
    subprocess.run(["openssl", "cms", "-sign", "-signer", str(cert), "-inkey", str(key), "-in",
                    str(tmp_path / "mud.json"), "-binary", "-nocerts", "-outform", "DER", "-out",
                    str(tmp_path / "mud.p7s")], check=True, capture_output=True)
    signature = (tmp_path / "mud.p7s").read_bytes()
    with pytest.raises(MudSignatureError, match="neither in the signature nor among the trusted MUD signers"):
        verify_mud_signature(MUD_BYTES, signature, [signing["ca"].cert], NOW)
    pinned = [signing["signer"].cert]
    assert verify_mud_signature(MUD_BYTES, signature, pinned, NOW) == signing["signer"].cert


def test_signature_through_an_intermediate(signing: dict[str, Issued]) -> None:
    intermediate = issue_device(signing["ca"], cn="Example Lighting MUD Issuing CA", serial_number=None, now=NOW,
                                eku=None, is_ca=True)
    ski = x509.SubjectKeyIdentifier.from_public_key(intermediate.key.public_key())
    # issue_device omits the CA's subjectKeyIdentifier; re-issue the intermediate with one (RFC 5280 requires it).
    inter_cert = (x509.CertificateBuilder().subject_name(intermediate.cert.subject)
                  .issuer_name(signing["ca"].cert.subject).public_key(intermediate.key.public_key())
                  .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=1))
                  .not_valid_after(NOW + timedelta(days=365))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                  .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                               key_encipherment=False, data_encipherment=False, key_agreement=False,
                                               key_cert_sign=True, crl_sign=True, encipher_only=False,
                                               decipher_only=False), critical=True)
                  .add_extension(ski, critical=False)
                  .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing["ca"].key.public_key()),
                                 critical=False)
                  .sign(signing["ca"].key, hashes.SHA256()))
    issuing = Issued(inter_cert, intermediate.key)
    leaf = issue_device(issuing, cn="mud-signer-2.lighting.example.com", serial_number=None, now=NOW, eku=None)
    builder = (pkcs7.PKCS7SignatureBuilder().set_data(MUD_BYTES).add_signer(leaf.cert, leaf.key, hashes.SHA256())
               .add_certificate(inter_cert))
    signature = builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary,
                                                           pkcs7.PKCS7Options.DetachedSignature])
    assert verify_mud_signature(MUD_BYTES, signature, [signing["ca"].cert], NOW) == leaf.cert
    without_intermediate = sign(MUD_BYTES, leaf)
    with pytest.raises(MudSignatureError, match="does not chain to a trusted MUD signer"):
        verify_mud_signature(MUD_BYTES, without_intermediate, [signing["ca"].cert], NOW)
    assert leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_every_corrupted_byte_or_truncation_is_refused_cleanly(signing: dict[str, Issued]) -> None:
    """A damaged .p7s must end in MudSignatureError (or, for bytes nothing relies on, still verify): never crash."""
    good = sign(MUD_BYTES, signing["signer"])
    damaged = [good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:] for i in range(len(good))]
    damaged += [good[:i] for i in range(0, len(good), 7)]
    verified = 0
    for signature in damaged:
        try:
            signer = verify_mud_signature(MUD_BYTES, signature, [signing["ca"].cert], NOW)
        except MudSignatureError:
            continue
        assert signer == signing["signer"].cert
        verified += 1
    assert verified <= 4  # only the unused NULL parameters of digest AlgorithmIdentifiers can change harmlessly


def _indefinite(der: bytes) -> bytes:
    """The same outer SEQUENCE with a BER indefinite length (what `openssl cms -stream` writes)."""
    assert der[0] == 0x30 and der[1] & 0x80
    header = 2 + (der[1] & 0x7F)
    return b"\x30\x80" + der[header:] + b"\x00\x00"


def _non_minimal(der: bytes) -> bytes:
    """The same value with its outer length in one more byte than needed (valid BER, not DER)."""
    count = der[1] & 0x7F
    return bytes([0x30, 0x80 | (count + 1), 0]) + der[2:]


@pytest.mark.parametrize("reencode", [_indefinite, _non_minimal, lambda der: der + b"\x00"])
def test_only_der_signatures_are_read(signing: dict[str, Issued], reencode: Any) -> None:
    """The CMS structure is decoded with pyasn1-modules (RFC 5652) and must re-encode to the very same bytes."""
    good = sign(MUD_BYTES, signing["signer"])
    assert verify_mud_signature(MUD_BYTES, good, [signing["ca"].cert], NOW) == signing["signer"].cert
    with pytest.raises(MudSignatureError, match="not a DER CMS SignedData"):
        verify_mud_signature(MUD_BYTES, reencode(good), [signing["ca"].cert], NOW)
