"""MUD (RFC 8520) profiles: strict parsing, and a policy hint for segment rules.

Pure: bytes in; frozen values or a ``MudError`` out. The detached CMS signature and the local file naming are in
``policy.mud_signature``; files are fetched out of band by ``trustport.services.mud_fetch`` and read on the
RADIUS path by ``trustport.services.mud_lookup``. Parsing is strict because a MUD file comes from outside:
unknown match fields, wrong types and oversize files are refused (the device then gets no MUD-derived policy,
which the rules treat as "no MUD"), and every message names the file and the JSON path of the problem.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from policy.errors import TrustportError

MAX_MUD_BYTES = 256 * 1024
MAX_ACLS = 64
MAX_ACES = 256
MAX_URL_LENGTH = 2048
DEFAULT_CACHE_VALIDITY_HOURS = 48
ACLS_KEY = "ietf-access-control-list:acls"
ACCESS_LISTS_KEY = "ietf-access-control-list:access-lists"  # written by MUDgee and other generators


class MudError(TrustportError):
    """A MUD file, its signature or its retrieval was refused; the message names the file and what is wrong."""


class MudSignatureError(MudError):
    """The MUD file's detached CMS signature is missing, malformed, forged or from a signer we do not trust."""


class MudFetchError(MudError):
    """A MUD file or signature could not be retrieved (out of band: never on the RADIUS path)."""


class Forwarding(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"


class Direction(StrEnum):
    FROM_DEVICE = "from-device"
    TO_DEVICE = "to-device"


class Peer(StrEnum):
    """Whom an accepting ACE lets the device talk to."""

    INTERNET = "internet"  # a DNS name or a global address
    LOCAL = "local"  # local-networks, or a non-global address
    SAME_MANUFACTURER = "same-manufacturer"
    MANUFACTURER = "manufacturer"  # devices of another named manufacturer
    MODEL = "model"  # devices with a given MUD URL
    CONTROLLER = "controller"
    MY_CONTROLLER = "my-controller"
    ANY = "any"  # no peer restriction at all


class MudClass(StrEnum):
    """A coarse label a segment rule can match on."""

    INTERNET_ONLY = "internet-only"
    LOCAL_ONLY = "local-only"
    SAME_MANUFACTURER = "same-manufacturer"
    CONTROLLER = "controller"
    MIXED = "mixed"
    ISOLATED = "isolated"  # nothing is accepted


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PortMatch:
    operator: str  # "eq", "neq", "lte", "gte" or "range"
    port: int  # the lower port for a range
    upper_port: int | None = None


@dataclass(frozen=True)
class IpMatch:
    version: int  # 4 or 6
    protocol: int | None = None
    destination_network: IpNetwork | None = None
    source_network: IpNetwork | None = None
    dst_dnsname: str | None = None
    src_dnsname: str | None = None


@dataclass(frozen=True)
class TransportMatch:
    protocol: str  # "tcp" or "udp"
    source_port: PortMatch | None = None
    destination_port: PortMatch | None = None
    direction_initiated: Direction | None = None


@dataclass(frozen=True)
class IcmpMatch:
    type: int | None = None
    code: int | None = None


@dataclass(frozen=True)
class EthMatch:
    ethertype: str | None = None
    destination_mac: str | None = None
    source_mac: str | None = None


@dataclass(frozen=True)
class MudMatch:
    """The ``ietf-mud:mud`` match container: abstractions the MUD manager resolves to addresses."""

    manufacturer: str | None = None
    same_manufacturer: bool = False
    model: str | None = None
    local_networks: bool = False
    controller: str | None = None
    my_controller: bool = False


@dataclass(frozen=True)
class Matches:
    ip: IpMatch | None = None
    transport: TransportMatch | None = None
    icmp: IcmpMatch | None = None
    eth: EthMatch | None = None
    mud: MudMatch | None = None


@dataclass(frozen=True)
class Ace:
    name: str
    matches: Matches
    forwarding: Forwarding


@dataclass(frozen=True)
class Acl:
    name: str
    type: str | None  # "ipv4-acl-type", "ipv6-acl-type", ... (module prefix stripped)
    aces: tuple[Ace, ...]


@dataclass(frozen=True)
class MudProfile:
    source: str
    mud_url: str
    mud_version: int
    last_update: datetime
    cache_validity_hours: int
    is_supported: bool
    from_device_acls: tuple[str, ...]
    to_device_acls: tuple[str, ...]
    acls: tuple[Acl, ...]
    acl_container: str  # ACLS_KEY or ACCESS_LISTS_KEY, as written in the file
    systeminfo: str | None = None
    mfg_name: str | None = None
    model_name: str | None = None
    firmware_rev: str | None = None
    software_rev: str | None = None
    documentation: str | None = None
    mud_signature: str | None = None
    extensions: tuple[str, ...] = ()  # the declared ``extensions`` leaf-list
    extension_nodes: tuple[str, ...] = ()  # module-prefixed nodes present in ietf-mud:mud, not interpreted

    @property
    def acl_names(self) -> tuple[str, ...]:
        return tuple(acl.name for acl in self.acls)

    @property
    def manufacturer(self) -> str:
        """The MUD URL's authority (what RFC 8520 ``manufacturer`` matches compare), lower case."""
        return (urlsplit(self.mud_url).hostname or "").lower()

    @property
    def model(self) -> str:
        """``model-name`` when given, else the MUD URL (the identity RFC 8520 ``model`` matches use)."""
        return self.model_name or self.mud_url

    def acl(self, name: str) -> Acl:
        return next(acl for acl in self.acls if acl.name == name)

    def expires_at(self, fetched_at: datetime) -> datetime:
        """When a copy fetched at ``fetched_at`` must be fetched again (``cache-validity`` hours)."""
        return fetched_at + timedelta(hours=self.cache_validity_hours)


@dataclass(frozen=True)
class MudHint:
    """What the policy engine needs from a profile, without walking ACLs."""

    mud_url: str
    manufacturer: str
    model: str
    classification: MudClass
    peers: frozenset[Peer]
    filter_id: str | None  # the ACL a NAS with pre-provisioned MUD ACLs should apply (RADIUS Filter-Id)
    from_device_acls: tuple[str, ...]
    to_device_acls: tuple[str, ...]
    dns_names: tuple[str, ...]
    is_supported: bool


# --- strict JSON walking --------------------------------------------------------------------------------------

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
_NAME_RE = re.compile(r"^[\x21-\x7e]{1,64}$")
_DNS_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


def _type_name(value: object) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class _At:
    """A JSON value and where it is, so every refusal can name its path."""

    source: str
    path: str
    value: object

    def fail(self, problem: str) -> MudError:
        return MudError(f"{self.source}: {self.path or '(document)'}: {problem}")

    def _expect(self, kind: type, label: str) -> None:
        if not isinstance(self.value, kind) or (kind is int and isinstance(self.value, bool)):
            raise self.fail(f"wrong type: expected {label}, got {_type_name(self.value)}")

    def fields(self, allowed: frozenset[str] | set[str]) -> dict[str, _At]:
        self._expect(dict, "object")
        assert isinstance(self.value, dict)
        for key in self.value:
            if key not in allowed:
                raise self.fail(f"unsupported field {key!r} (allowed: {', '.join(sorted(allowed))})")
        prefix = f"{self.path}." if self.path else ""
        return {key: _At(self.source, prefix + key, value) for key, value in self.value.items()}

    def items(self, limit: int, what: str) -> list[_At]:
        self._expect(list, "array")
        assert isinstance(self.value, list)
        if len(self.value) > limit:
            raise self.fail(f"too many {what}: {len(self.value)} > {limit}")
        return [_At(self.source, f"{self.path}[{i}]", value) for i, value in enumerate(self.value)]

    def text(self, max_length: int = 255, pattern: re.Pattern[str] | None = None) -> str:
        self._expect(str, "string")
        assert isinstance(self.value, str)
        if not self.value or len(self.value) > max_length:
            raise self.fail(f"length must be 1..{max_length}, got {len(self.value)}")
        if pattern is not None and not pattern.match(self.value):
            raise self.fail(f"invalid value {self.value[:80]!r}")
        return self.value

    def integer(self, low: int, high: int) -> int:
        self._expect(int, "integer")
        assert isinstance(self.value, int)
        if not low <= self.value <= high:
            raise self.fail(f"out of range {low}..{high}: {self.value}")
        return self.value

    def boolean(self) -> bool:
        self._expect(bool, "boolean")
        return bool(self.value)

    def empty(self) -> bool:
        """A YANG ``empty`` leaf, which JSON spells ``[null]``."""
        if self.value != [None]:
            raise self.fail(f"expected [null] (YANG empty leaf), got {json.dumps(self.value)[:40]}")
        return True

    def url(self) -> str:
        text = self.text(MAX_URL_LENGTH)
        parts = urlsplit(text)
        if parts.scheme != "https" or not parts.hostname or any(ch.isspace() for ch in text):
            raise self.fail(f"must be an https:// URL, got {text[:80]!r}")
        return text


def _required(fields: dict[str, _At], key: str, parent: _At) -> _At:
    if key not in fields:
        where = f"{parent.path}.{key}" if parent.path else key
        raise MudError(f"{parent.source}: {where}: missing")
    return fields[key]


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


# --- parsing --------------------------------------------------------------------------------------------------

_MUD_FIELDS = frozenset({"mud-version", "mud-url", "last-update", "cache-validity", "is-supported", "systeminfo",
                         "mfg-name", "model-name", "firmware-rev", "software-rev", "documentation", "extensions",
                         "mud-signature", "from-device-policy", "to-device-policy"})
_IP_FIELDS = {4: frozenset({"protocol", "destination-ipv4-network", "source-ipv4-network",
                            "ietf-acldns:dst-dnsname", "ietf-acldns:src-dnsname"}),
              6: frozenset({"protocol", "destination-ipv6-network", "source-ipv6-network",
                            "ietf-acldns:dst-dnsname", "ietf-acldns:src-dnsname"})}
_L4_PROTOCOL = {"tcp": 6, "udp": 17}
_ICMP_PROTOCOL = {4: 1, 6: 58}


def parse_mud(data: bytes, source: str, *, expected_url: str | None = None) -> MudProfile:
    """Parse an ``application/mud+json`` file; ``expected_url`` (the URL it was looked up by) must match mud-url."""
    if len(data) > MAX_MUD_BYTES:
        raise MudError(f"{source}: (document): file too large: {len(data)} bytes > {MAX_MUD_BYTES}")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_reject_duplicates,
                              parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise MudError(f"{source}: (document): not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise MudError(f"{source}: (document): invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                       ) from exc
    except (ValueError, RecursionError) as exc:
        raise MudError(f"{source}: (document): invalid JSON: {exc}") from exc
    root = _At(source, "", document)
    top = root.fields({"ietf-mud:mud", ACLS_KEY, ACCESS_LISTS_KEY})
    if ACLS_KEY in top and ACCESS_LISTS_KEY in top:
        raise root.fail(f"both {ACLS_KEY} and {ACCESS_LISTS_KEY} present; a MUD file has one ACL container")
    container = ACLS_KEY if ACLS_KEY in top else ACCESS_LISTS_KEY
    mud = _required(top, "ietf-mud:mud", root)
    # RFC 8520 extensions augment this container from their own modules, so their nodes carry a module prefix
    # ("ietf-mud-transparency:transparency"); they are kept by name and otherwise ignored, as RFC 8520 asks.
    # Unprefixed unknown fields are typos of standard ones and are refused.
    extension_nodes = tuple(key for key in mud.value if ":" in key) if isinstance(mud.value, dict) else ()
    fields = mud.fields(_MUD_FIELDS | set(extension_nodes))
    acl_node = top.get(container)
    acls = _parse_acls(acl_node) if acl_node is not None else ()
    defined = {acl.name for acl in acls}
    policies: dict[str, tuple[str, ...]] = {}
    for key in ("from-device-policy", "to-device-policy"):
        policies[key] = _parse_policy(fields[key], defined, container) if key in fields else ()
    version = _required(fields, "mud-version", mud).integer(0, 255)
    if version != 1:
        raise fields["mud-version"].fail(f"unsupported MUD version {version} (only 1 is defined)")
    url = _required(fields, "mud-url", mud).url()
    if expected_url is not None and url != expected_url:
        raise fields["mud-url"].fail(f"{url!r} is not the URL this file was retrieved for ({expected_url!r})")

    def optional(key: str, max_length: int = 255) -> str | None:
        return fields[key].text(max_length) if key in fields else None

    cache = fields["cache-validity"].integer(1, 168) if "cache-validity" in fields else DEFAULT_CACHE_VALIDITY_HOURS
    extensions = tuple(item.text(63) for item in fields["extensions"].items(64, "extensions")) \
        if "extensions" in fields else ()
    return MudProfile(
        source=source, mud_url=url, mud_version=version,
        last_update=_parse_time(_required(fields, "last-update", mud)),
        cache_validity_hours=cache,
        is_supported=_required(fields, "is-supported", mud).boolean(),
        from_device_acls=policies["from-device-policy"], to_device_acls=policies["to-device-policy"],
        acls=acls, acl_container=container,
        systeminfo=optional("systeminfo", 60), mfg_name=optional("mfg-name"), model_name=optional("model-name"),
        firmware_rev=optional("firmware-rev"), software_rev=optional("software-rev"),
        documentation=fields["documentation"].url() if "documentation" in fields else None,
        mud_signature=fields["mud-signature"].url() if "mud-signature" in fields else None,
        extensions=extensions, extension_nodes=extension_nodes,
    )


def _parse_time(node: _At) -> datetime:
    text = node.text(64)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise node.fail(f"not an RFC 3339 date-and-time: {text!r}") from None
    if value.tzinfo is None:
        raise node.fail(f"date-and-time without a UTC offset: {text!r}")
    return value.astimezone(UTC)


def _parse_policy(node: _At, defined: set[str], container: str) -> tuple[str, ...]:
    lists = _required(node.fields({"access-lists"}), "access-lists", node)
    entries = _required(lists.fields({"access-list"}), "access-list", lists).items(MAX_ACLS, "access lists")
    names = []
    for entry in entries:
        name_node = _required(entry.fields({"name"}), "name", entry)
        name = name_node.text(64, _NAME_RE)
        if name not in defined:
            raise name_node.fail(f"ACL {name!r} is not defined in {container}")
        names.append(name)
    return tuple(names)


def _parse_acls(node: _At) -> tuple[Acl, ...]:
    acl_list = _required(node.fields({"acl"}), "acl", node).items(MAX_ACLS, "ACLs")
    acls: list[Acl] = []
    for item in acl_list:
        fields = item.fields({"name", "type", "aces"})
        name = _required(fields, "name", item).text(64, _NAME_RE)
        if any(acl.name == name for acl in acls):
            raise fields["name"].fail(f"duplicate ACL name {name!r}")
        acl_type = fields["type"].text(128).split(":")[-1] if "type" in fields else None
        aces: list[Ace] = []
        if "aces" in fields:
            for ace_node in _required(fields["aces"].fields({"ace"}), "ace", fields["aces"]).items(MAX_ACES, "aces"):
                ace = _parse_ace(ace_node, acl_type)
                if any(other.name == ace.name for other in aces):
                    raise ace_node.fail(f"duplicate ace name {ace.name!r}")
                aces.append(ace)
        acls.append(Acl(name, acl_type, tuple(aces)))
    return tuple(acls)


def _parse_ace(node: _At, acl_type: str | None) -> Ace:
    fields = node.fields({"name", "matches", "actions"})
    name = _required(fields, "name", node).text(64, _NAME_RE)
    actions = _required(fields, "actions", node)
    action_fields = actions.fields({"forwarding", "logging"})
    forwarding_node = _required(action_fields, "forwarding", actions)
    action = forwarding_node.text(64).split(":")[-1]
    if action not in Forwarding.__members__.values():
        raise forwarding_node.fail(f"unknown forwarding action {action!r} (accept, drop or reject)")
    matches = _parse_matches(fields["matches"], acl_type) if "matches" in fields else Matches()
    return Ace(name, matches, Forwarding(action))


def _parse_matches(node: _At, acl_type: str | None) -> Matches:
    fields = node.fields({"ipv4", "ipv6", "tcp", "udp", "icmp", "eth", "ietf-mud:mud"})
    if "ipv4" in fields and "ipv6" in fields:
        raise node.fail("ipv4 and ipv6 are alternatives; an ace has at most one")
    if sum(key in fields for key in ("tcp", "udp", "icmp")) > 1:
        raise node.fail("tcp, udp and icmp are alternatives; an ace has at most one")
    ip = None
    for version in (4, 6):
        key = f"ipv{version}"
        if key in fields:
            if acl_type in (f"ipv{10 - version}-acl-type", "eth-acl-type"):
                raise fields[key].fail(f"{key} match in an ACL of type {acl_type}")
            ip = _parse_ip(fields[key], version)
    transport = None
    for protocol in ("tcp", "udp"):
        if protocol in fields:
            transport = _parse_transport(fields[protocol], protocol)
            _check_protocol(node, ip, _L4_PROTOCOL[protocol], protocol)
    icmp = None
    if "icmp" in fields:
        icmp_fields = fields["icmp"].fields({"type", "code"})
        icmp = IcmpMatch(icmp_fields["type"].integer(0, 255) if "type" in icmp_fields else None,
                         icmp_fields["code"].integer(0, 255) if "code" in icmp_fields else None)
        _check_protocol(node, ip, _ICMP_PROTOCOL[ip.version if ip else 4], "icmp")
    return Matches(ip=ip, transport=transport, icmp=icmp,
                   eth=_parse_eth(fields["eth"]) if "eth" in fields else None,
                   mud=_parse_mud_match(fields["ietf-mud:mud"]) if "ietf-mud:mud" in fields else None)


def _check_protocol(node: _At, ip: IpMatch | None, expected: int, name: str) -> None:
    if ip is not None and ip.protocol is not None and ip.protocol != expected:
        raise node.fail(f"{name} match with ipv{ip.version} protocol {ip.protocol} (expected {expected})")


def _parse_ip(node: _At, version: int) -> IpMatch:
    fields = node.fields(_IP_FIELDS[version])
    networks: dict[str, IpNetwork | None] = {}
    for side in ("destination", "source"):
        key = f"{side}-ipv{version}-network"
        dns_key = "ietf-acldns:dst-dnsname" if side == "destination" else "ietf-acldns:src-dnsname"
        if key in fields and dns_key in fields:
            raise node.fail(f"{key} and {dns_key} are alternatives; give one")
        networks[side] = None
        if key in fields:
            text = fields[key].text(64)
            try:
                network = ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                raise fields[key].fail(f"not an IPv{version} prefix: {exc}") from None
            if network.version != version:
                raise fields[key].fail(f"not an IPv{version} prefix: {text!r}")
            networks[side] = network
    return IpMatch(
        version=version,
        protocol=fields["protocol"].integer(0, 255) if "protocol" in fields else None,
        destination_network=networks["destination"], source_network=networks["source"],
        dst_dnsname=fields["ietf-acldns:dst-dnsname"].text(253, _DNS_RE) if "ietf-acldns:dst-dnsname" in fields
        else None,
        src_dnsname=fields["ietf-acldns:src-dnsname"].text(253, _DNS_RE) if "ietf-acldns:src-dnsname" in fields
        else None,
    )


def _parse_transport(node: _At, protocol: str) -> TransportMatch:
    allowed = {"source-port", "destination-port"} | ({"ietf-mud:direction-initiated"} if protocol == "tcp" else set())
    fields = node.fields(allowed)
    direction = None
    if "ietf-mud:direction-initiated" in fields:
        value = fields["ietf-mud:direction-initiated"].text(16)
        if value not in Direction.__members__.values():
            raise fields["ietf-mud:direction-initiated"].fail(f"must be from-device or to-device, got {value!r}")
        direction = Direction(value)
    return TransportMatch(protocol,
                          _parse_port(fields["source-port"]) if "source-port" in fields else None,
                          _parse_port(fields["destination-port"]) if "destination-port" in fields else None,
                          direction)


def _parse_port(node: _At) -> PortMatch:
    fields = node.fields({"operator", "port", "lower-port", "upper-port"})
    if "lower-port" in fields or "upper-port" in fields:
        if "port" in fields or "operator" in fields:
            raise node.fail("a port range (lower-port/upper-port) cannot also have operator/port")
        lower = _required(fields, "lower-port", node).integer(0, 65535)
        upper = _required(fields, "upper-port", node).integer(0, 65535)
        if lower > upper:
            raise node.fail(f"lower-port {lower} is above upper-port {upper}")
        return PortMatch("range", lower, upper)
    operator = fields["operator"].text(8) if "operator" in fields else "eq"
    if operator not in ("eq", "neq", "lte", "gte"):
        raise fields["operator"].fail(f"unknown operator {operator!r} (eq, neq, lte or gte)")
    return PortMatch(operator, _required(fields, "port", node).integer(0, 65535))


def _parse_eth(node: _At) -> EthMatch:
    fields = node.fields({"ethertype", "destination-mac-address", "source-mac-address"})
    ethertype = None
    if "ethertype" in fields:
        value = fields["ethertype"].value
        ethertype = str(fields["ethertype"].integer(0, 65535)) if isinstance(value, int) \
            else fields["ethertype"].text(32)
    mac = {key: fields[key].text(17, _MAC_RE).lower() if key in fields else None
           for key in ("destination-mac-address", "source-mac-address")}
    return EthMatch(ethertype, mac["destination-mac-address"], mac["source-mac-address"])


def _parse_mud_match(node: _At) -> MudMatch:
    fields = node.fields({"manufacturer", "same-manufacturer", "model", "local-networks", "controller",
                          "my-controller"})
    if not fields:
        raise node.fail("empty ietf-mud:mud match")
    return MudMatch(
        manufacturer=fields["manufacturer"].text(253, _DNS_RE).lower() if "manufacturer" in fields else None,
        same_manufacturer=fields["same-manufacturer"].empty() if "same-manufacturer" in fields else False,
        model=fields["model"].url() if "model" in fields else None,
        local_networks=fields["local-networks"].empty() if "local-networks" in fields else False,
        controller=fields["controller"].text(MAX_URL_LENGTH) if "controller" in fields else None,
        my_controller=fields["my-controller"].empty() if "my-controller" in fields else False,
    )


# --- policy hint ----------------------------------------------------------------------------------------------

def _peers(ace: Ace, direction: Direction) -> set[Peer]:
    """Whom an ace lets the device talk to: the destination for from-device ACLs, the source for to-device."""
    mud = ace.matches.mud
    if mud is not None:
        return {peer for peer, present in (
            (Peer.SAME_MANUFACTURER, mud.same_manufacturer), (Peer.MANUFACTURER, mud.manufacturer is not None),
            (Peer.MODEL, mud.model is not None), (Peer.LOCAL, mud.local_networks),
            (Peer.CONTROLLER, mud.controller is not None), (Peer.MY_CONTROLLER, mud.my_controller)) if present}
    ip = ace.matches.ip
    if ip is not None:
        outbound = direction is Direction.FROM_DEVICE
        if ip.dst_dnsname if outbound else ip.src_dnsname:
            return {Peer.INTERNET}
        network = ip.destination_network if outbound else ip.source_network
        if network is not None and network.prefixlen > 0:
            return {Peer.INTERNET if network.is_global else Peer.LOCAL}
    return {Peer.ANY}


def policy_hint(profile: MudProfile) -> MudHint:
    """Classify what the profile's accepting aces allow, for segment rules and the Filter-Id."""
    peers: set[Peer] = set()
    dns_names: list[str] = []
    for names, direction in ((profile.from_device_acls, Direction.FROM_DEVICE),
                             (profile.to_device_acls, Direction.TO_DEVICE)):
        for ace in (ace for name in names for ace in profile.acl(name).aces):
            if ace.forwarding is Forwarding.ACCEPT:
                peers |= _peers(ace, direction)
            ip = ace.matches.ip
            for dns in (ip.dst_dnsname, ip.src_dnsname) if ip else ():
                if dns and dns not in dns_names:
                    dns_names.append(dns)
    if not peers:
        classification = MudClass.ISOLATED
    elif Peer.ANY in peers:
        classification = MudClass.MIXED
    elif peers == {Peer.INTERNET}:
        classification = MudClass.INTERNET_ONLY
    elif peers == {Peer.LOCAL}:
        classification = MudClass.LOCAL_ONLY
    elif peers == {Peer.SAME_MANUFACTURER}:
        classification = MudClass.SAME_MANUFACTURER
    elif peers <= {Peer.CONTROLLER, Peer.MY_CONTROLLER}:
        classification = MudClass.CONTROLLER
    else:
        classification = MudClass.MIXED
    filters = profile.from_device_acls or profile.to_device_acls
    return MudHint(
        mud_url=profile.mud_url, manufacturer=profile.manufacturer, model=profile.model,
        classification=classification, peers=frozenset(peers), filter_id=filters[0] if filters else None,
        from_device_acls=profile.from_device_acls, to_device_acls=profile.to_device_acls,
        dns_names=tuple(dns_names), is_supported=profile.is_supported,
    )

