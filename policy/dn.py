"""Distinguished names as OpenSSL's one-line form writes them, parsed strictly into one canonical text.

FreeRADIUS hands the hook ``TLS-Client-Cert-Subject`` and friends as ``X509_NAME_oneline`` output: ``/K=V/K=V``,
bytes outside printable ASCII as ``\\xNN``, a ``/`` inside a value as ``\\/``, a multi-valued RDN joined with ``+``.
That form is ambiguous: a backslash is not escaped, so ``CN=a\\`` followed by ``serialNumber=X`` prints exactly like
``CN=a/serialNumber=X``; ``CN=c+serialNumber=S`` prints like a multi-valued RDN. ``parse_dn`` therefore refuses
every name whose reading is not unique (an escaped separator, a stray backslash, an escape of a printable
character, ``+KEY=`` inside a value, control characters, bytes that are not UTF-8) instead of guessing.

The canonical text (``DistinguishedName.text``) is the same ``/K=V`` form with escapes decoded (UTF-8, NFC): for
ASCII names it is exactly OpenSSL's string, and it is what the registry, the trust anchors and the CLI use, so a
serial typed as ``HLD-ü-0205`` and one FreeRADIUS sends as ``HLD-\\xC3\\xBC-0205`` are the same device.
``render_oneline`` reproduces ``X509_NAME_oneline`` from a parsed certificate name (including how it drops the
attributes that do not fit FreeRADIUS's buffer), so a PEM file goes through the same parser as a RADIUS request.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

# FreeRADIUS prints each value into char[1024]: a one-line DN of 1023+ characters may have been cut.
ONELINE_LIMIT = 1023

# OpenSSL short names (OBJ_nid2sn) for the attributes that appear in device and CA names.
SHORT_NAMES: dict[x509.ObjectIdentifier, str] = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.STREET_ADDRESS: "street",
    NameOID.TITLE: "title",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.INITIALS: "initials",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: "jurisdictionST",
    NameOID.JURISDICTION_LOCALITY_NAME: "jurisdictionL",
    NameOID.X500_UNIQUE_IDENTIFIER: "x500UniqueIdentifier",
    NameOID.UNSTRUCTURED_NAME: "unstructuredName",
}

_KEY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)$")
_PLUS_KEY = re.compile(r"\+(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)=")
_ESCAPE = re.compile(r"\\x([0-9A-F]{2})")
# Characters that hide or reorder text: never part of a device identity.
_INVISIBLE = frozenset((0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0x2060, 0xFEFF,
                        *range(0x202A, 0x202F), *range(0x2066, 0x206A)))


class DnError(ValueError):
    """A one-line DN that cannot be read in exactly one way; the message says why."""


@dataclass(frozen=True)
class DistinguishedName:
    attributes: tuple[tuple[str, str], ...]  # (short name or dotted OID, decoded value), in certificate order

    @property
    def text(self) -> str:
        return "".join(f"/{key}={value}" for key, value in self.attributes)

    def values(self, key: str) -> tuple[str, ...]:
        return tuple(v for k, v in self.attributes if k == key)

    def first(self, key: str) -> str | None:
        found = self.values(key)
        return found[0] if found else None

    def single(self, key: str, what: str) -> str | None:
        """The one value of ``key``; several are ambiguous (which one is the device?) and refused."""
        found = self.values(key)
        if len(found) > 1:
            raise DnError(f"{what} has {len(found)} {key} attributes; refusing an ambiguous identity")
        return found[0] if found else None


def _unsafe_character(value: str) -> str | None:
    for ch in value:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F or code in _INVISIBLE or 0xD800 <= code <= 0xDFFF:
            return f"U+{code:04X}"
    return None


def _decode_value(raw: str, key: str, what: str) -> str:
    if _PLUS_KEY.search(raw.replace("\\+", "+")):
        raise DnError(f"{what}: value of {key} contains '+KEY=': a multi-valued RDN, or text posing as one; "
                      "refused as ambiguous")
    data = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and raw.startswith("\\+", i):  # OpenSSL escapes a literal '+' (not followed by KEY=)
            data.append(0x2B)
            i += 2
            continue
        if ch == "\\":
            match = _ESCAPE.match(raw, i)
            if match is None:
                raise DnError(f"{what}: value of {key} contains a backslash that is not a \\xNN escape "
                              "(an escaped '/' or a literal backslash); refused as ambiguous")
            byte = int(match.group(1), 16)
            if 0x20 <= byte <= 0x7E:
                raise DnError(f"{what}: value of {key} contains \\x{byte:02X}, which OpenSSL never writes for a "
                              "printable character: a literal backslash in the certificate; refused")
            data.append(byte)
            i = match.end()
            continue
        data += ch.encode("utf-8", "surrogatepass")
        i += 1
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DnError(f"{what}: value of {key} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                      "BMPString/T61String names are not accepted") from exc
    bad = _unsafe_character(value)
    if bad is not None:
        raise DnError(f"{what}: value of {key} contains the control or invisible character {bad}; refused")
    return unicodedata.normalize("NFC", value)


def parse_dn(text: str, what: str = "name") -> DistinguishedName:
    """OpenSSL one-line DN (escaped) or canonical text -> attributes. Raises DnError with the reason."""
    if len(text) >= ONELINE_LIMIT:
        raise DnError(f"{what} is {len(text)} characters; FreeRADIUS cuts names at {ONELINE_LIMIT}, so it may "
                      "have been truncated")
    if text == "":
        return DistinguishedName(())
    if not text.startswith("/"):
        raise DnError(f"{what} {text[:60]!r} is not in one-line form ('/C=../O=..')")
    if "\\/" in text:
        raise DnError(f"{what} contains an escaped '/' inside a value (another attribute hidden in text?); "
                      "refused as ambiguous")
    attributes = []
    for part in text[1:].split("/"):
        key, sep, raw = part.partition("=")
        if not sep or not _KEY.match(key):
            raise DnError(f"{what}: {part[:60]!r} is not KEY=VALUE")
        attributes.append((key, _decode_value(raw, key, what)))
    return DistinguishedName(tuple(attributes))


def canonical_dn(text: str, what: str = "name") -> str:
    return parse_dn(text, what).text


def canonical_serial(value: str, what: str = "serial number") -> str:
    """A device serial as typed by an operator or sent by an API client, in the registry's form."""
    if value != value.strip() or not value:
        raise DnError(f"{what} {value[:60]!r} is empty or has leading/trailing white space")
    bad = _unsafe_character(value)
    if bad is not None:
        raise DnError(f"{what} contains the control or invisible character {bad}; refused")
    if "/" in value or "\\" in value or _PLUS_KEY.search(value):
        raise DnError(f"{what} {value[:60]!r} contains '/', a backslash or '+KEY=', which no certificate can "
                      "carry unambiguously")
    return unicodedata.normalize("NFC", value)


def _value_bytes(attribute: x509.NameAttribute[str | bytes]) -> bytes:
    """The ASN.1 string's content octets, which X509_NAME_oneline prints byte by byte."""
    value = attribute.value
    if isinstance(value, bytes):
        return value
    kind = attribute._type
    if kind is _ASN1Type.BMPString:
        return value.encode("utf-16-be")
    if kind is _ASN1Type.UniversalString:
        return value.encode("utf-32-be")
    if kind in (_ASN1Type.T61String, _ASN1Type.VisibleString):
        return value.encode("latin-1", "replace")
    return value.encode("utf-8", "surrogatepass")


def render_oneline(name: x509.Name, size: int = ONELINE_LIMIT + 1) -> str:
    """``X509_NAME_oneline(name, buf, size)`` of a parsed name, escapes included, for the PEM path.

    Like OpenSSL, an attribute that no longer fits in ``size - 1`` characters is left out together with every
    attribute after it (FreeRADIUS passes a 1024-byte buffer): the PEM path then sees what the hook sees."""
    out = ""
    for rdn in name.rdns:
        for i, attribute in enumerate(rdn):
            key = SHORT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
            escaped = "".join(
                f"\\{chr(b)}" if b in (0x2B, 0x2F) else chr(b) if 0x20 <= b <= 0x7E else f"\\x{b:02X}"
                for b in _value_bytes(attribute))
            entry = f"{'+' if i else '/'}{key}={escaped}"
            if len(out) + len(entry) > size - 1:
                return out
            out += entry
    return out
