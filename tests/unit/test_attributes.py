"""FreeRADIUS attribute tuples -> certificate facts, and agreement with the PEM path."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from policy.x509facts import facts_from_certificate
from radius_hooks.attributes import (
    RequestError,
    facts_from_pairs,
    network_context,
    parse_asn1_time,
    request_pairs,
)
from tests.pki_fixtures import DevicePki
from tests.radius_pairs import freeradius_pairs

COMPARED = ("subject", "issuer", "cert_serial", "device_serial", "not_before", "not_after", "is_ca", "key_usage",
            "eku_oids", "authority_key_id", "mud_url", "mud_url_error", "issuer_certificate", "common_name")


@pytest.mark.parametrize("name", ["idevid-ok", "ldevid-ok", "no-serial", "leaf-is-ca", "no-eku", "mud-http",
                                  "mud-garbage", "no-digital-signature"])
def test_radius_facts_match_pem_facts(pki: DevicePki, name: str) -> None:
    issued = pki.devices[name]
    issuer = pki.cas["ldevid" if name.startswith("ldevid") else "idevid"].cert
    from_radius = facts_from_pairs(request_pairs({"request": freeradius_pairs(issued.cert, issuer)}))
    from_pem = facts_from_certificate(issued.cert, issuer)
    for field_name in COMPARED:
        assert getattr(from_radius, field_name) == getattr(from_pem, field_name), field_name
    assert from_radius.public_key is None and from_radius.signature_hash is None  # not exported by FreeRADIUS


@pytest.mark.parametrize(("value", "expected"), [
    ("270224190121Z", datetime(2027, 2, 24, 19, 1, 21, tzinfo=UTC)),
    ("491231235959Z", datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("500101000000Z", datetime(1950, 1, 1, tzinfo=UTC)),
    ("99991231235959Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
])
def test_asn1_times(value: str, expected: datetime) -> None:
    assert parse_asn1_time(value) == expected


@pytest.mark.parametrize("value", ["", "2702241901Z", "270224190121", "27022419012aZ", "271324190121Z", "x" * 2000])
def test_bad_asn1_times(value: str) -> None:
    with pytest.raises(RequestError):
        parse_asn1_time(value)


def _base(pki: DevicePki) -> list[tuple[str, str]]:
    return list(freeradius_pairs(pki.devices["idevid-ok"].cert, pki.cas["idevid"].cert))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: [x for x in p if x[0] != "TLS-Client-Cert-Subject"], "TLS-Client-Cert-Subject is missing"),
    (lambda p: [x for x in p if x[0] != "TLS-Client-Cert-Serial"], "TLS-Client-Cert-Serial is missing"),
    (lambda p: [("TLS-Client-Cert-Subject", "/CN=" + "a" * 1019)] + p, "appears 2 times"),
    (lambda p: [(n, "/CN=" + "a" * 1019) if n == "TLS-Client-Cert-Subject" else (n, v) for n, v in p],
     "cut by FreeRADIUS"),
    (lambda p: [(n, "CN=no-slash") if n == "TLS-Client-Cert-Issuer" else (n, v) for n, v in p], "one-line form"),
    (lambda p: [(n, "zz:zz") if n == "TLS-Client-Cert-Serial" else (n, v) for n, v in p], "not hex"),
    (lambda p: [(n, "garbage") if n == "TLS-Client-Cert-Expiration" else (n, v) for n, v in p], "neither UTCTime"),
    (lambda p: [("TLS-Client-Cert-X509v3-Subject-Alternative-Name", "DNS:" + "x" * 1100)] + p, "cut by FreeRADIUS"),
])
def test_request_errors_are_specific(pki: DevicePki, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RequestError, match=message):
        facts_from_pairs(request_pairs({"request": tuple(mutate(_base(pki)))}))


def test_malformed_pairs_are_dropped_and_counted() -> None:
    pairs = request_pairs({"request": (("A", "1"), ("B",), (1, 2), ("C", None), "x", ("D", b"\xff"), ("E\x00", "v"))})
    assert pairs.values == {"A": ("1",), "D": ("\ufffd",)}
    assert pairs.dropped == 5


@pytest.mark.parametrize("p", [None, 42, "string", {"request": "x"}, {"request": None}, {}, (), [], {"reply": ()}])
def test_request_pairs_never_raise(p: object) -> None:
    assert request_pairs(p).values == {}


def test_bare_tuple_is_the_request_list() -> None:
    assert request_pairs((("User-Name", "x"),)).first("User-Name") == "x"


def test_network_context() -> None:
    ctx = network_context(request_pairs((("NAS-IP-Address", "10.0.0.2"), ("NAS-Port-Id", "Gi1/0/5"),
                                         ("NAS-Port", "5"), ("Calling-Station-Id", "AA-BB"))))
    assert (ctx.nas_ip, ctx.nas_port, ctx.calling_station_id) == ("10.0.0.2", "Gi1/0/5", "AA-BB")


FILLER = [("Class", f"0x{n:04x}") for n in range(1000)]
CONFLICTS = ["TLS-Client-Cert-Issuer", "TLS-Cert-Issuer", "TLS-Cert-Subject", "TLS-Cert-Serial",
             "TLS-Client-Cert-Subject", "TLS-Client-Cert-Serial"]


@pytest.mark.parametrize("name", CONFLICTS)
@pytest.mark.parametrize("where", ["adjacent", "after-filler"])
def test_a_conflicting_repeat_is_found_wherever_it_is(pki: DevicePki, name: str, where: str) -> None:
    base = _base(pki)
    forged = (name, "/C=DE/O=Acme Devices/CN=other" if "Serial" not in name else "01")
    pairs = base + [forged] if where == "adjacent" else base + FILLER + [forged]
    with pytest.raises(RequestError):
        facts_from_pairs(request_pairs({"request": tuple(pairs)}))


def test_reading_is_bounded_and_a_cut_list_is_refused(pki: DevicePki) -> None:
    huge = tuple(_base(pki) + [("Class", "0x00")] * 100_000)
    pairs = request_pairs({"request": huge})
    assert pairs.overflow and sum(len(v) for v in pairs.values.values()) <= 1000
    with pytest.raises(RequestError, match="more than 1000 attributes"):
        facts_from_pairs(pairs)


def test_a_malformed_pair_refuses_the_request(pki: DevicePki) -> None:
    with pytest.raises(RequestError, match="malformed attribute pair"):
        facts_from_pairs(request_pairs({"request": (*_base(pki), ("TLS-Client-Cert-Issuer",))}))


def test_the_issuer_certificate_is_read_from_depth_one(pki: DevicePki) -> None:
    facts = facts_from_pairs(request_pairs({"request": _base(pki)}))
    ca = pki.cas["idevid"].cert
    assert facts.issuer_certificate is not None
    assert facts.issuer_certificate.subject == facts.issuer
    assert facts.issuer_certificate.serial == format(ca.serial_number, "x")
    without = [p for p in _base(pki) if not p[0].startswith("TLS-Cert-")]
    assert facts_from_pairs(request_pairs({"request": tuple(without)})).issuer_certificate is None


@pytest.mark.parametrize(("subject", "reason"), [
    ("/C=DE/CN=evil\\/serialNumber=SN-0002/serialNumber=SN-9", "escaped '/'"),
    ("/CN=x+serialNumber=SN-0002", "'+KEY='"),
    ("/CN=x\\+serialNumber=SN-0002/serialNumber=SN-9", "'+KEY='"),
    ("/serialNumber=SN-1/serialNumber=SN-0002", "2 serialNumber attributes"),
    ("/serialNumber=SN-\\x0A1", "control"),
    ("/serialNumber=SN-\\x41", "\\x41"),
])
def test_ambiguous_subjects_are_refused(pki: DevicePki, subject: str, reason: str) -> None:
    pairs = [(n, subject) if n == "TLS-Client-Cert-Subject" else (n, v) for n, v in _base(pki)]
    with pytest.raises(RequestError, match=re.escape(reason)):
        facts_from_pairs(request_pairs({"request": tuple(pairs)}))


def test_freeradius_escapes_become_the_registry_spelling(pki: DevicePki) -> None:
    pairs = [(n, "/C=DE/CN=hld/serialNumber=HLD-\\xC3\\xBC-0205") if n == "TLS-Client-Cert-Subject" else (n, v)
             for n, v in _base(pki)]
    facts = facts_from_pairs(request_pairs({"request": tuple(pairs)}))
    assert facts.device_serial == "HLD-ü-0205"


def _reference_request_pairs(p: object, section: str = "request") -> object:
    """What request_pairs must give, written plainly (each pair judged on its own, then grouped by name)."""
    from radius_hooks.attributes import MAX_PAIRS, Pairs

    raw = p.get(section, ()) if isinstance(p, dict) else (p if section == "request" else ())
    items = list(raw) if isinstance(raw, tuple | list) else []

    def judged(pair: object) -> tuple[str, str] | None:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            return None
        name, value = pair[0], pair[1].decode("utf-8", "replace") if isinstance(pair[1], bytes) else pair[1]
        ok = isinstance(name, str) and bool(name) and "\x00" not in name and isinstance(value, str)
        return (name, value) if ok else None

    read = items[:MAX_PAIRS]
    good = [j for j in map(judged, read) if j is not None]
    grouped = {name: tuple(v for n, v in good if n == name) for name, _ in good}
    return Pairs(grouped, len(read) - len(good), len(items) > MAX_PAIRS)


class _Str(str):
    pass


@pytest.mark.parametrize("raw", [
    (("User-Name", "a"), ("User-Name", "b"), ("NAS-Port", "1")),
    (["User-Name", "a"], ("X", b"\xff\xfe"), ("Y", 3), (None, "v"), ("", "v"), ("N\x00ul", "v"), ("A", "1", "2")),
    ((_Str("User-Name"), _Str("x")), ("Z",), "not a pair", 7, ("Q", "q")),
    tuple(("A", str(i)) for i in range(1001)),
    tuple(("A", str(i)) for i in range(1000)),
    [("A", "1")] * 3,
    (),
    "a string",
    {"request": "nope"},
])
def test_fast_request_pairs_equals_the_reference(raw: object) -> None:
    from radius_hooks.attributes import request_pairs

    for p, section in ((raw, "request"), ({"request": raw, "config": raw}, "config"), ({"x": raw}, "request")):
        expected = _reference_request_pairs(p, section)
        assert request_pairs(p, section) == expected
        only = frozenset({"User-Name", "A", "Y"})  # a subset: exactly those names' values, as the full parse has them
        subset = request_pairs(p, section, only=only)
        assert dict(subset.values) == {k: v for k, v in expected.values.items() if k in only}  # type: ignore[attr-defined]
        assert subset.overflow == expected.overflow  # type: ignore[attr-defined]
