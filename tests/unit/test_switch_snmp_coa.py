"""Pure SNMP/CoA helpers: PortList bit maths, option validation, session selectors, CoA attributes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switch_drivers.base import Target
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
    InvalidArgument,
    Unsupported,
)
from switch_drivers.snmp import QBridgeOptions, _SnmpSession, portlist_has, portlist_with


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
