"""The one-line DN: our renderer against OpenSSL's own ``X509_NAME_oneline`` (libcrypto through ctypes, with
FreeRADIUS's 1024-byte buffer), and the strict parser's verdict on every tricky name."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from policy.dn import DnError, canonical_dn, canonical_serial, parse_dn, render_oneline

A = x509.NameAttribute
UTF8 = _ASN1Type.UTF8String
_lib = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")
_lib.d2i_X509_NAME.restype = ctypes.c_void_p
_lib.d2i_X509_NAME.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
_lib.X509_NAME_oneline.restype = ctypes.c_char_p
_lib.X509_NAME_oneline.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
_lib.X509_NAME_free.argtypes = [ctypes.c_void_p]


def openssl_oneline(name: x509.Name, size: int = 1024) -> str:
    der = name.public_bytes()
    pointer = ctypes.c_char_p(der)
    handle = _lib.d2i_X509_NAME(None, ctypes.byref(pointer), len(der))
    assert handle, "libcrypto could not parse the name"
    try:
        buffer = ctypes.create_string_buffer(size)
        out = _lib.X509_NAME_oneline(handle, buffer, size)
        assert out is not None
        return out.decode("latin-1")
    finally:
        _lib.X509_NAME_free(handle)


def name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([A(oid, value, _type=UTF8) for oid, value in attrs])


CN, SN = NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER
ORG, OU = NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME
# (name, canonical text, or the start of the DnError message)
TRICKY: list[tuple[str, x509.Name, str]] = [
    ("plain", name((ORG, "Acme"), (CN, "dev"), (SN, "SN-1")), "/O=Acme/CN=dev/serialNumber=SN-1"),
    ("utf8", name((CN, "HLD-ü-0205"), (SN, "HLD-ü-0205")), "/CN=HLD-ü-0205/serialNumber=HLD-ü-0205"),
    ("cjk", name((CN, "温度计"), (SN, "X")), "/CN=温度计/serialNumber=X"),
    ("slash-injection", name((CN, "evil/serialNumber=VICTIM"), (SN, "SN-2")), "!escaped '/'"),
    ("trailing-backslash", name((CN, "x\\"), (SN, "VICTIM")), "!escaped '/'"),
    ("backslash-inside", name((CN, "back\\slash"), (SN, "S")), "!value of CN contains a backslash"),
    ("fake-escape", name((SN, "SN-\\x41")), "!value of serialNumber contains \\x41"),
    # A literal "\xC3\xBC" prints exactly like the UTF-8 bytes of "ü": no reader of FreeRADIUS's string can tell
    # them apart, so both paths read it as "ü" (the certificate binding keeps it from posing as a registered one).
    ("fake-utf8-escape", name((SN, "HLD-\\xC3\\xBC")), "/serialNumber=HLD-ü"),
    ("plus-injection", name((CN, "x+serialNumber=VICTIM"), (SN, "S")), "!value of CN contains '+KEY='"),
    ("plus-literal", name((CN, "a+b.example"), (SN, "S")), "/CN=a+b.example/serialNumber=S"),
    ("equals-literal", name((CN, "k=v"), (SN, "S")), "/CN=k=v/serialNumber=S"),
    ("multi-valued", x509.Name([x509.RelativeDistinguishedName([A(CN, "c"), A(SN, "VICTIM")])]),
     "!value of CN contains '+KEY='"),
    ("newline", name((SN, "SN-1\nSN-2")), "!value of serialNumber contains the control"),
    ("ansi", name((SN, "SN-1\x1b[2J")), "!value of serialNumber contains the control"),
    ("nul", name((SN, "SN\x00")), "!value of serialNumber contains the control"),
    ("bidi", name((SN, "SN-\u202e1001")), "!value of serialNumber contains the control or invisible"),
    ("zero-width", name((SN, "SN-\u200b1001")), "!value of serialNumber contains the control or invisible"),
    ("c1", name((SN, "SN-\x9b1")), "!value of serialNumber contains the control"),
    ("bmpstring", x509.Name([A(CN, "ü", _type=_ASN1Type.BMPString)]), "!value of CN"),
    ("universal", x509.Name([A(CN, "ü", _type=_ASN1Type.UniversalString)]), "!value of CN"),
    ("unknown-oid", x509.Name([A(x509.ObjectIdentifier("1.2.3.4"), "zz")]), "/1.2.3.4=zz"),
    ("two-serials", name((SN, "A"), (SN, "B")), "/serialNumber=A/serialNumber=B"),
    ("empty", x509.Name([]), ""),
    # OpenSSL leaves out every attribute from the first one that does not fit the 1024-byte buffer
    ("serial-dropped", name((CN, "x"), (SN, "S" * 2000)), "/CN=x"),
    ("second-serial-dropped", name((SN, "VICTIM"), (OU, "u" * 1100), (SN, "OTHER")), "/serialNumber=VICTIM"),
    ("fills-buffer", name(*[(OU, f"{i:02d}" + "u" * 58) for i in range(15)], (SN, "S" * 49)), "!name is 1023"),
]


@pytest.mark.parametrize(("label", "dn", "expected"), TRICKY, ids=[t[0] for t in TRICKY])
def test_render_matches_openssl_and_parse_is_strict(label: str, dn: x509.Name, expected: str) -> None:
    rendered = render_oneline(dn)
    assert rendered == openssl_oneline(dn), label
    if expected.startswith("!"):
        with pytest.raises(DnError) as caught:
            parse_dn(rendered, "name")
        assert expected[1:] in str(caught.value), str(caught.value)
    else:
        assert parse_dn(rendered, "name").text == expected


def test_every_printable_ascii_character_round_trips() -> None:
    chars = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "/\\")
    dn = name((CN, chars[:60]), (OU, chars[60:]))
    assert render_oneline(dn) == openssl_oneline(dn)
    assert parse_dn(render_oneline(dn)).values("CN") == (chars[:60],)


def test_canonical_text_is_a_fixed_point() -> None:
    """What the registry stores parses back to itself: typed by an operator or sent by FreeRADIUS, one form."""
    for _label, _name, expected in TRICKY:
        if not expected.startswith("!"):
            assert canonical_dn(expected) == expected
    assert canonical_dn("/CN=HLD-\\xC3\\xBC-0205") == canonical_dn("/CN=HLD-ü-0205") == "/CN=HLD-ü-0205"
    assert canonical_dn("/CN=a\\+b") == "/CN=a+b"


@pytest.mark.parametrize("text", ["CN=x", "/CN", "/=x", "//CN=x", "/C N=x", "/CN=x/", "/CN=x\\", "/CN=\\x4",
                                  "/CN=\\xc3\\xbc", "/CN=" + "a" * 1023])
def test_malformed_one_line_names_are_refused(text: str) -> None:
    with pytest.raises(DnError):
        parse_dn(text)


@pytest.mark.parametrize(("typed", "ok"), [
    ("SN-1", True), ("HLD-ü-0205", True), ("HLD-u\u0308-0205", True), ("", False), (" SN-1", False),
    ("SN\n1", False), ("SN\x1b[2J", False), ("a/b", False), ("a\\b", False), ("x+serialNumber=y", False),
    ("SN-\u202e1", False),
])
def test_operator_typed_serials(typed: str, ok: bool) -> None:
    if ok:
        assert canonical_serial(typed) == canonical_serial(canonical_serial(typed))
    else:
        with pytest.raises(DnError):
            canonical_serial(typed)


def test_decomposed_and_composed_serials_are_one_device() -> None:
    assert canonical_serial("HLD-u\u0308-0205") == canonical_serial("HLD-ü-0205")
    assert parse_dn("/serialNumber=HLD-u\\xCC\\x88-0205").values("serialNumber") == ("HLD-ü-0205",)
