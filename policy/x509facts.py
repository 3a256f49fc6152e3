"""Certificate facts from a parsed X.509 certificate, spelled the way FreeRADIUS/OpenSSL print them.

Both paths (RADIUS attributes and PEM files) must produce identical strings for issuer/subject so that trust
anchors, CRLs and the registry match either way; ``oneline_dn`` reproduces OpenSSL's ``X509_NAME_oneline``.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from policy.errors import CertificateError
from policy.model import CertificateFacts, KeyInfo

MUD_URL_OID = "1.3.6.1.5.5.7.1.25"
MAX_MUD_URL_LENGTH = 2048

# OpenSSL short names (OBJ_nid2sn) for the attributes that appear in device and CA names.
_SHORT_NAMES: dict[x509.ObjectIdentifier, str] = {
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
}

_KEY_USAGE_NAMES = (
    ("digital_signature", "Digital Signature"),
    ("content_commitment", "Non Repudiation"),
    ("key_encipherment", "Key Encipherment"),
    ("data_encipherment", "Data Encipherment"),
    ("key_agreement", "Key Agreement"),
    ("key_cert_sign", "Certificate Sign"),
    ("crl_sign", "CRL Sign"),
)


def oneline_dn(name: x509.Name) -> str:
    """``/C=DE/O=Acme/CN=x`` in certificate order, like OpenSSL's X509_NAME_oneline."""
    parts = []
    for attribute in name:
        key = _SHORT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        escaped = "".join(ch if 0x20 <= ord(ch) < 0x7F else f"\\x{ord(ch):02X}" for ch in value)
        parts.append(f"/{key}={escaped}")
    return "".join(parts)


def parse_oneline_dn(dn: str) -> dict[str, str]:
    """'/C=DE/O=x/serialNumber=SN-1' -> {'C': 'DE', ...}; first value per key wins."""
    out: dict[str, str] = {}
    for part in dn.split("/")[1:]:
        key, sep, value = part.partition("=")
        if sep and key and key not in out:
            out[key] = value
    return out


def format_serial(serial: int) -> str:
    """Certificate serial as FreeRADIUS exports it: lower-case hex without separators."""
    return format(serial, "x")


def key_id_hex(raw: bytes) -> str:
    """Key identifier as OpenSSL prints it: ``4C:90:BA:...``."""
    return ":".join(f"{b:02X}" for b in raw)


def key_info(public_key: object) -> KeyInfo:
    if isinstance(public_key, rsa.RSAPublicKey):
        return KeyInfo("rsa", public_key.key_size)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return KeyInfo("ec", public_key.curve.key_size, public_key.curve.name)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyInfo("ed25519", 256)
    if isinstance(public_key, ed448.Ed448PublicKey):
        return KeyInfo("ed448", 456)
    if isinstance(public_key, dsa.DSAPublicKey):
        return KeyInfo("dsa", public_key.key_size)
    return KeyInfo(type(public_key).__name__.lower(), 0)


def decode_ia5_der(der: bytes) -> str:
    """Decode a DER IA5String (the MUD URL extension value). Raises ValueError with a specific reason."""
    if len(der) < 2 or der[0] != 0x16:
        raise ValueError("extension value is not a DER IA5String")
    length = der[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or len(der) < 2 + count:
            raise ValueError("bad DER length")
        length = int.from_bytes(der[2 : 2 + count], "big")
        offset = 2 + count
    body = der[offset:]
    if len(body) != length:
        raise ValueError(f"DER length {length} does not match {len(body)} content bytes")
    if any(b > 0x7F for b in body):
        raise ValueError("IA5String contains non-ASCII bytes")
    return body.decode("ascii")


def parse_mud_url(der: bytes) -> str:
    """The MUD URL (RFC 8520 id-pe-mud-url) from the extension's DER; must be an https URL."""
    url = decode_ia5_der(der)
    if len(url) > MAX_MUD_URL_LENGTH:
        raise ValueError(f"MUD URL longer than {MAX_MUD_URL_LENGTH} characters")
    if not url.startswith("https://") or any(ch.isspace() or ord(ch) < 0x21 for ch in url):
        raise ValueError(f"MUD URL must be an https:// URL without spaces, got {url[:80]!r}")
    return url


def facts_from_certificate(cert: x509.Certificate) -> CertificateFacts:
    serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    exts = cert.extensions

    def ext(oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType] | None:
        try:
            return exts.get_extension_for_oid(oid)
        except x509.ExtensionNotFound:
            return None

    bc = ext(ExtensionOID.BASIC_CONSTRAINTS)
    ku = ext(ExtensionOID.KEY_USAGE)
    eku = ext(ExtensionOID.EXTENDED_KEY_USAGE)
    aki = ext(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    san = ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    mud = ext(x509.ObjectIdentifier(MUD_URL_OID))

    key_usage: tuple[str, ...] | None = None
    if ku is not None and isinstance(ku.value, x509.KeyUsage):
        key_usage = tuple(label for attr, label in _KEY_USAGE_NAMES if getattr(ku.value, attr))
    mud_url = mud_error = None
    if mud is not None and isinstance(mud.value, x509.UnrecognizedExtension):
        try:
            mud_url = parse_mud_url(mud.value.value)
        except ValueError as exc:
            mud_error = str(exc)
    aki_hex = None
    if aki is not None and isinstance(aki.value, x509.AuthorityKeyIdentifier) and aki.value.key_identifier:
        aki_hex = key_id_hex(aki.value.key_identifier)
    hash_alg = cert.signature_hash_algorithm
    return CertificateFacts(
        source="pem",
        subject=oneline_dn(cert.subject),
        issuer=oneline_dn(cert.issuer),
        cert_serial=format_serial(cert.serial_number),
        device_serial=str(serials[0].value) if serials else None,
        common_name=str(cns[0].value) if cns else None,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=bc.value.ca if bc is not None and isinstance(bc.value, x509.BasicConstraints) else False,
        key_usage=key_usage,
        eku_oids=tuple(o.dotted_string for o in eku.value) if eku is not None
        and isinstance(eku.value, x509.ExtendedKeyUsage) else None,
        subject_alt_name=", ".join(str(g.value) for g in san.value) if san is not None
        and isinstance(san.value, x509.SubjectAlternativeName) else None,
        authority_key_id=aki_hex,
        mud_url=mud_url,
        mud_url_error=mud_error,
        public_key=key_info(cert.public_key()),
        signature_hash=hash_alg.name if hash_alg is not None else None,
        fingerprint_sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        spki_sha256=hashlib.sha256(spki_der(cert)).hexdigest(),
    )


def spki_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def load_pem_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """All certificates in a PEM blob; a clear CertificateError naming ``source`` otherwise."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateError(
            f"{source}: not a PEM certificate ({exc}); expected '-----BEGIN CERTIFICATE-----' blocks"
        ) from exc
    if not certs:
        raise CertificateError(f"{source}: no certificate found")
    return certs

