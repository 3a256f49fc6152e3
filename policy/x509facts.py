"""Certificate facts from a parsed X.509 certificate, read the way FreeRADIUS/OpenSSL export them.

Both paths (RADIUS attributes and PEM files) must produce identical identities so that trust anchors, CRLs
and the registry match either way: names are rendered exactly as OpenSSL's ``X509_NAME_oneline`` writes them and
then parsed by the same strict parser (``policy.dn``) that reads FreeRADIUS's attributes.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from policy.dn import ONELINE_LIMIT, DistinguishedName, DnError, parse_dn, render_oneline
from policy.errors import CertificateError, IdentityError
from policy.model import CertificateFacts, IssuerCertificate, KeyInfo

MUD_URL_OID = "1.3.6.1.5.5.7.1.25"
MAX_MUD_URL_LENGTH = 2048

_KEY_USAGE_NAMES = (
    ("digital_signature", "Digital Signature"),
    ("content_commitment", "Non Repudiation"),
    ("key_encipherment", "Key Encipherment"),
    ("data_encipherment", "Data Encipherment"),
    ("key_agreement", "Key Agreement"),
    ("key_cert_sign", "Certificate Sign"),
    ("crl_sign", "CRL Sign"),
)


def parsed_name(name: x509.Name, what: str) -> DistinguishedName:
    """A certificate name as the RADIUS path would read it; IdentityError where that reading is ambiguous."""
    try:
        return parse_dn(render_oneline(name), what)
    except DnError as exc:
        raise IdentityError(str(exc)) from exc


def oneline_dn(name: x509.Name) -> str:
    """The canonical DN text of a certificate name (``/C=DE/O=Acme/CN=x``, escapes decoded)."""
    return parsed_name(name, "name").text


def parse_oneline_dn(dn: str) -> dict[str, str]:
    """Canonical DN text (policy.dn: no '/' inside values) -> {'C': 'DE', ...}; first value per key wins."""
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


def issuer_reference(ca: x509.Certificate) -> IssuerCertificate:
    return IssuerCertificate(subject=oneline_dn(ca.subject), issuer=oneline_dn(ca.issuer),
                             serial=format_serial(ca.serial_number), not_after=ca.not_valid_after_utc)


def facts_from_certificate(cert: x509.Certificate, issuer: x509.Certificate | None = None) -> CertificateFacts:
    """Facts of a device certificate; ``issuer`` is the certificate that signed it in a verified chain.

    Raises IdentityError for a name the RADIUS path would refuse (ambiguous, too long, not UTF-8), so both
    paths give the same verdict."""
    subject = parsed_name(cert.subject, "certificate subject")
    try:
        device_serial = subject.single("serialNumber", "certificate subject")
    except DnError as exc:
        raise IdentityError(str(exc)) from exc
    if len(format_serial(cert.serial_number)) >= ONELINE_LIMIT:
        raise IdentityError("certificate serial is too long for FreeRADIUS to export")
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
        subject=subject.text,
        issuer=parsed_name(cert.issuer, "certificate issuer").text,
        cert_serial=format_serial(cert.serial_number),
        device_serial=device_serial or None,
        common_name=subject.first("CN"),
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
        issuer_certificate=issuer_reference(issuer) if issuer is not None else None,
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

