"""Pure SNMP/CoA helpers: PortList bit maths, option validation, session selectors, CoA attributes, and how a
batch splits its SET PDUs when the agent refuses one (against a stub session: no network)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from switch_drivers.base import Capability, DriverBase, PortMove, SwitchDriver, Target
from switch_drivers.coa import (
    VENDOR_COMMANDS,
    CoaDriver,
    CoaOptions,
    dictionary_path,
    normalize_mac,
    parse_session,
)
from switch_drivers.errors import (
    AuthenticationError,
    CommandFailed,
    ConnectError,
    DriverTimeout,
    InterfaceMissing,
    InvalidArgument,
    NoAnswer,
    Unsupported,
)
from switch_drivers.snmp import (
    OIDS,
    CiscoVmVlanDriver,
    QBridgeDriver,
    QBridgeOptions,
    _Item,
    _oid_text,
    _SnmpSession,
    _Unit,
    portlist_has,
    portlist_with,
)


@pytest.mark.parametrize(
    ("data", "port", "member", "expected"),
    [
        (b"\x00", 1, True, b"\x80"),
        (b"\x80", 1, False, b"\x00"),
        (b"\x00\x00", 9, True, b"\x00\x80"),
        (b"\xff", 8, False, b"\xfe"),
        (b"", 17, True, b"\x00\x00\x80"),  # grows
        (b"\x08\x00\x00\x00", 5, True, b"\x08\x00\x00\x00"),  # idempotent
    ],
)
def test_portlist_with(data: bytes, port: int, member: bool, expected: bytes) -> None:
    assert portlist_with(data, port, member) == expected


@pytest.mark.parametrize(
    ("data", "port", "expected"), [(b"\x80", 1, True), (b"\x80", 2, False), (b"\x00\x01", 16, True), (b"", 1, False)]
)
def test_portlist_has(data: bytes, port: int, expected: bool) -> None:
    assert portlist_has(data, port) is expected


def test_portlist_rejects_port_zero() -> None:
    with pytest.raises(InvalidArgument):
        portlist_with(b"\x00", 0, True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"version": "2c"},
        {"version": "3", "username": "u", "auth_key": "a" * 8},
        {"version": "3", "username": "u", "auth_key": "a" * 8, "priv_key": "p" * 8, "auth_protocol": "MD5"},
        {"version": "1", "community": "c"},
        {"version": "3", "username": "u", "auth_key": "a" * 8, "priv_key": "p" * 8, "bogus": 1},
    ],
)
def test_snmp_options_reject_incomplete_or_weak(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        QBridgeOptions(**kwargs)  # type: ignore[arg-type]


def test_snmp_options_hide_keys() -> None:
    opts = QBridgeOptions(version="3", username="nac", auth_key="auth-XYZ-123", priv_key="priv-XYZ-456")
    assert "auth-XYZ-123" not in repr(opts)
    assert "priv-XYZ-456" not in str(opts)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("aa:bb:cc:00:11:22", [("Calling-Station-Id", "AA-BB-CC-00-11-22")]),
        ("AA-BB-CC-00-11-22", [("Calling-Station-Id", "AA-BB-CC-00-11-22")]),
        ("aabb.cc00.1122", [("Calling-Station-Id", "AA-BB-CC-00-11-22")]),
        ("acct-session-id=0000002A", [("Acct-Session-Id", "0000002A")]),
        ("user-name=cam-12,nas-port-id=Gi1/0/5",
         [("User-Name", "cam-12"), ("NAS-Port-Id", "Gi1/0/5")]),
        ("audit-session-id=0A0000010000000F", [("Cisco-AVPair", "audit-session-id=0A0000010000000F")]),
        ("calling-station-id=aa:bb:cc:00:11:22", [("Calling-Station-Id", "AA-BB-CC-00-11-22")]),
    ],
)
def test_parse_session(selector: str, expected: list[tuple[str, str]]) -> None:
    assert parse_session(selector) == expected


@pytest.mark.parametrize(
    "selector", ["", "   ", "foo=bar", "user-name", "user-name=", "user-name=a\nb", "user-name= x", "zz:zz:zz:zz:zz:zz",
                 "user-name=" + "x" * 300]
)
def test_parse_session_rejects(selector: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_session(selector)


def test_normalize_mac() -> None:
    assert normalize_mac("aabbccddeeff") == "AA-BB-CC-DD-EE-FF"


@pytest.mark.parametrize(
    ("vendor", "action", "attr"),
    [
        ("cisco", "reauth", ("Cisco-AVPair", "subscriber:command=reauthenticate")),
        ("cisco", "bounce", ("Cisco-AVPair", "subscriber:command=bounce-host-port")),
        ("hp", "bounce", ("HP-Port-Bounce-Host", 12)),
        ("aruba", "bounce", ("Aruba-Port-Bounce-Host", 12)),
        ("arista", "bounce", ("Arista-PortFlap", 12)),
        ("juniper", "bounce", ("Juniper-AV-Pair", "Port-Bounce")),
    ],
)
def test_coa_vendor_attributes(vendor: str, action: str, attr: tuple[str, object]) -> None:
    driver = CoaDriver(Target("nas", "192.0.2.1"),
                       CoaOptions(secret="s", vendor=vendor, nas_ip_address="192.0.2.1"))  # type: ignore[arg-type]
    attrs = driver.build_attributes("aa:bb:cc:00:11:22", VENDOR_COMMANDS[vendor][action])
    assert attrs[0] == ("NAS-IP-Address", "192.0.2.1")
    assert ("Calling-Station-Id", "AA-BB-CC-00-11-22") in attrs
    assert attr in attrs


def test_coa_dictionary_loads_with_pyrad() -> None:
    from pyrad import dictionary

    d = dictionary.Dictionary(dictionary_path())
    for name in ("Error-Cause", "Message-Authenticator", "Cisco-AVPair", "HP-Port-Bounce-Host",
                 "Aruba-Port-Bounce-Host", "Arista-PortFlap", "Juniper-AV-Pair", "Acct-Session-Id"):
        assert name in d.attributes


def test_coa_options_secret_hidden_and_required() -> None:
    assert "topsecret" not in repr(CoaOptions(secret="topsecret"))
    with pytest.raises(ValidationError):
        CoaOptions()  # type: ignore[call-arg]


def _session() -> _SnmpSession:
    return _SnmpSession(Target("sw", "192.0.2.1"), QBridgeOptions(version="2c", community="c"))


@pytest.mark.parametrize(
    ("indication", "error"),
    [
        ("No SNMP response received before timeout", DriverTimeout),
        ("Wrong SNMP PDU digest", AuthenticationError),
        ("Unknown USM user", AuthenticationError),
        ("Ciphering services not available or ciphertext is broken", AuthenticationError),
        ("Message too big", ConnectError),
    ],
)
def test_snmp_error_indications_are_translated(indication: str, error: type[Exception]) -> None:
    session = _session()
    try:
        with pytest.raises(error, match="sw"):
            session._check("read x", "Gi1/0/5", indication, 0, 0, [])
    finally:
        session.close()


@pytest.mark.parametrize(
    ("status", "error"),
    [("noAccess", AuthenticationError), ("authorizationError", AuthenticationError),
     ("wrongValue", CommandFailed), ("inconsistentValue", CommandFailed), ("commitFailed", CommandFailed),
     ("notWritable", CommandFailed), ("genErr", CommandFailed)],
)
def test_snmp_error_status_is_translated(status: str, error: type[Exception]) -> None:
    from pysnmp.proto.rfc1902 import Integer32, ObjectName
    from pysnmp.proto.rfc1905 import PDU

    session = _session()
    pdu = PDU()
    error_status = pdu.getComponentByName("error-status").clone(status)
    binds = [(ObjectName("1.3.6.1.2.1.17.7.1.4.5.1.1.5"), Integer32(20))]
    try:
        with pytest.raises(error, match=rf"{status} at dot1qPvid\.5"):
            session._check("set x", "Gi1/0/5", None, error_status, 1, binds)
    finally:
        session.close()


@pytest.mark.parametrize(("value_name", "error"), [("noSuchInstance", CommandFailed), ("noSuchObject", Unsupported),
                                                   ("endOfMibView", CommandFailed)])
def test_snmp_exception_varbinds_raise_without_error_status(value_name: str, error: type[Exception]) -> None:
    from pysnmp.proto import rfc1905
    from pysnmp.proto.rfc1902 import ObjectName

    session = _session()
    binds = [(ObjectName("1.3.6.1.4.1.9.9.68.1.2.2.1.2.10105"), getattr(rfc1905, value_name))]
    try:
        with pytest.raises(error, match=r"vmVlan\.10105"):
            session._check("set vmVlan", "Gi1/0/5", None, 0, 0, binds)
    finally:
        session.close()


@pytest.mark.parametrize(("column", "error"), [("vmVlan", InterfaceMissing), ("ifAdminStatus", InterfaceMissing),
                                               ("dot1qVlanStaticEgressPorts", CommandFailed)])
def test_missing_instance_of_a_port_column_is_a_missing_interface(column: str, error: type[Exception]) -> None:
    from pysnmp.proto import rfc1905
    from pysnmp.proto.rfc1902 import ObjectName

    session = _session()
    binds = [(ObjectName(".".join(map(str, (*OIDS[column], 77)))), rfc1905.noSuchInstance)]
    try:
        with pytest.raises(CommandFailed) as info:
            session._check("read x", "Gi1/0/5", None, 0, 0, binds)
    finally:
        session.close()
    assert type(info.value) is error


def test_oid_text_names_two_part_indexes() -> None:
    assert _oid_text((*OIDS["vtpVlanState"], 1, 20)) == "vtpVlanState.1.20"
    assert _oid_text((*OIDS["dot1qPvid"], 5)) == "dot1qPvid.5"


@pytest.mark.parametrize("cls", [QBridgeDriver, CiscoVmVlanDriver])
def test_snmp_drivers_share_the_base_and_declare_what_they_read_back(cls: type[QBridgeDriver]) -> None:
    driver = cls(Target("sw", "192.0.2.1"), cls.options_type(version="2c", community="c"))
    assert isinstance(driver, DriverBase)
    assert isinstance(driver, SwitchDriver)
    assert {Capability.VLAN_TABLE, Capability.PORT_STATUS, Capability.BATCH} <= set(cls.capabilities)
    assert repr(driver) == f"{cls.__name__}('sw', '192.0.2.1')"
    with pytest.raises(Unsupported, match=r"cannot end an 802\.1X session"):
        driver.disconnect("Gi1/0/5")
    driver.save_config()  # running configuration: nothing to save


def test_coa_driver_shares_the_base_and_disconnects() -> None:
    driver = CoaDriver(Target("nas", "192.0.2.1"), CoaOptions(secret="s"))  # type: ignore[arg-type]
    assert isinstance(driver, DriverBase)
    assert isinstance(driver, SwitchDriver)
    assert Capability.DISCONNECT in driver.capabilities
    with pytest.raises(ConnectError, match="not open"):
        driver.disconnect("AA-BB-CC-00-11-22")
    assert issubclass(NoAnswer, DriverTimeout)


class _AtomicAgent:
    """A stub session: refuses any SET PDU holding a "bad" OID and names the first one in error-index."""

    def __init__(self, bad: set[int], *, says_where: bool = True) -> None:
        self.bad, self.says_where = bad, says_where
        self.pdus: list[int] = []  # varbinds per SET PDU

    def try_set(self, pairs: list[tuple[tuple[int, ...], Any]], action: str,
                port: str | None = None) -> tuple[CommandFailed, int] | None:
        self.pdus.append(len(pairs))
        for n, (oid, _) in enumerate(pairs, 1):
            if oid[-1] in self.bad:
                return CommandFailed(f"{action}: notWritable", port=port), n if self.says_where else 0
        return None


def _units(count: int) -> list[_Unit]:
    return [_Unit([((1, 3, n), 0)], [_Item(PortMove(f"p{n}", 20))], f"p{n}") for n in range(count)]


@pytest.mark.parametrize(
    ("count", "bad", "says_where", "max_varbinds", "pdus"),
    [
        (50, set(), True, 24, 3),  # 24 + 24 + 2
        (50, {7, 33}, True, 24, 3 + 2 * 2),  # each refusal: the named one alone, then the rest again
        (24, {0, 1, 2}, True, 24, 1 + 3 * 2),
        (10, {4}, False, 24, 1 + 10),  # no error-index: every unit on its own
        (5, set(), True, 1, 5),
    ],
)
def test_refused_pdu_is_split_so_only_the_bad_port_fails(count: int, bad: set[int], says_where: bool,
                                                         max_varbinds: int, pdus: int) -> None:
    driver = QBridgeDriver(Target("sw", "192.0.2.1"),
                           QBridgeOptions(version="2c", community="c", max_varbinds=max_varbinds))
    agent = _AtomicAgent(bad, says_where=says_where)
    driver._session = agent  # type: ignore[assignment]
    refused = driver._set_units(_units(count), "set dot1qPvid")
    assert sorted(unit.port or "" for unit, _ in refused) == sorted(f"p{n}" for n in bad)
    assert len(agent.pdus) == pdus
    assert max(agent.pdus) <= max_varbinds


def test_pdus_are_bounded_in_bytes_too() -> None:
    from pysnmp.proto.rfc1902 import OctetString

    driver = QBridgeDriver(Target("sw", "192.0.2.1"), QBridgeOptions(version="2c", community="c"))
    def portlists(vlan: int) -> _Unit:  # egress + untagged of a 4096-port switch: 2 x 512 octets
        return _Unit([((*OIDS[column], vlan), OctetString(b"\xff" * 512))
                      for column in ("dot1qVlanStaticEgressPorts", "dot1qVlanStaticUntaggedPorts")])

    assert [len(c) for c in driver._chunks([portlists(v) for v in range(1, 7)])] == [1] * 6  # one VLAN per PDU
    assert [len(c) for c in driver._chunks(_units(30))] == [24, 6]
