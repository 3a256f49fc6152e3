"""Building owner-CA certificates (LDevIDs, the CA itself, test IDevIDs) and CRLs: pure, no I/O, no clock.

A certificate request proves possession of the new key and nothing else: the subject and every extension of an
LDevID come from the ``IssuanceIdentity`` (the authenticated IDevID, or the registry), never from the CSR. The
key is judged by ``policy.certificates.check_public_key``, the same rule the authentication path applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, univ
from pyasn1_modules import rfc4108

from policy.certificates import check_public_key
from policy.errors import IssuanceError
from policy.x509facts import MUD_URL_OID, format_serial, key_info

HARDWARE_MODULE_NAME_OID = "1.3.6.1.5.5.7.8.4"  # id-on-hardwareModuleName (RFC 4108)
CLOCK_SKEW = timedelta(minutes=5)  # notBefore/thisUpdate are backdated by this much; lifetimes stay exact
MAX_CSR_BYTES = 64 * 1024

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


@dataclass(frozen=True)
class IssuanceIdentity:
    """Who an LDevID is for, taken from an authenticated IDevID or from the registry, never from the CSR."""

    serial_number: str  # the device serial (subject serialNumber of the IDevID)
    hardware_module_name: tuple[str, bytes] | None = None  # (hwType OID dotted, hwSerialNum), RFC 4108
    common_name: str | None = None
    mud_url: str | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    pem: bytes
    cert_serial: str  # lower-case hex (policy.x509facts.format_serial)
    not_after: datetime


# -- HardwareModuleName (RFC 4108) and IA5String, through pyasn1 (no hand-written DER) ---------------------------

def hardware_module_name_der(hw_type: str, hw_serial: bytes) -> bytes:
    try:
        value = rfc4108.HardwareModuleName()
        value["hwType"] = univ.ObjectIdentifier(hw_type)
        value["hwSerialNum"] = univ.OctetString(hw_serial)
        return bytes(der_encoder.encode(value))
    except (PyAsn1Error, ValueError) as exc:
        raise IssuanceError(f"hardwareModuleName type {hw_type!r} is not a valid dotted OID") from exc


def parse_hardware_module_name(der: bytes) -> tuple[str, bytes]:
    """(hwType, hwSerialNum) from DER; anything but exactly one strict-DER HardwareModuleName is a ValueError."""
    try:
        value, rest = der_decoder.decode(der, asn1Spec=rfc4108.HardwareModuleName())
    except PyAsn1Error as exc:
        raise ValueError(f"not a HardwareModuleName ({exc})") from exc
    if rest or bytes(der_encoder.encode(value)) != der:
        raise ValueError("HardwareModuleName is not one strict-DER SEQUENCE")
    return str(value["hwType"]), bytes(value["hwSerialNum"])


def hardware_module_name(cert: x509.Certificate) -> tuple[str, bytes] | None:
    """The RFC 4108 hardwareModuleName in the certificate's subjectAltName otherName, if there is one."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id.dotted_string == HARDWARE_MODULE_NAME_OID:
            try:
                return parse_hardware_module_name(other.value)
            except ValueError as exc:
                raise IssuanceError(f"subjectAltName hardwareModuleName is malformed: {exc}") from exc
    return None


def identity_from_certificate(cert: x509.Certificate) -> IssuanceIdentity:
    """The identity an authenticated IDevID (or a previous LDevID) vouches for: serialNumber, CN, hardwareModuleName
    and MUD URL. Call it only on a certificate that was verified (policy.certificates / the TLS handshake)."""
    from policy.x509facts import facts_from_certificate

    facts = facts_from_certificate(cert)
    if not facts.device_serial:
        raise IssuanceError("the certificate has no subject serialNumber: it names no device to issue an LDevID for")
    return IssuanceIdentity(facts.device_serial, hardware_module_name(cert), facts.common_name, facts.mud_url)


# -- requests and keys -------------------------------------------------------------------------------------

def load_csr(data: bytes, source: str = "CSR") -> x509.CertificateSigningRequest:
    """A PKCS#10 request from PEM or DER; IssuanceError naming ``source`` otherwise."""
    if len(data) > MAX_CSR_BYTES:
        raise IssuanceError(f"{source}: {len(data)} bytes is too large for a certificate request")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise IssuanceError(f"{source}: not a PEM or DER certificate request (PKCS#10): {exc}") from exc


def checked_public_key(csr: x509.CertificateSigningRequest, source: str = "CSR") -> PublicKey:
    """The CSR's public key, after its signature verified (proof of possession) and the key policy passed."""
    try:
        key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise IssuanceError(f"{source}: its public key cannot be read ({exc})") from exc
    check = check_public_key(key_info(key))
    if check.ok is not True:
        raise IssuanceError(f"{source}: key refused by the key policy: {check.detail}")
    if isinstance(key, dsa.DSAPublicKey) or not isinstance(key, PublicKey):
        raise IssuanceError(f"{source}: {type(key).__name__} keys are not accepted")
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise IssuanceError(f"{source}: its signature cannot be checked ({exc})") from exc
    if not valid:
        raise IssuanceError(f"{source}: the signature does not match its public key (no proof of possession of "
                            "the private key); refusing it")
    return key


def check_ca_key(key: object, source: str) -> SigningKey:
    """A CA signing key the key policy accepts."""
    if not isinstance(key, SigningKey):
        raise IssuanceError(f"{source}: {type(key).__name__} cannot sign certificates here (RSA, EC, Ed25519)")
    check = check_public_key(key_info(key.public_key()))
    if check.ok is not True:
        raise IssuanceError(f"{source}: CA key refused by the key policy: {check.detail}")
    return key


def _sign_hash(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _organization(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else None


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def device_name(identity: IssuanceIdentity, organization: str | None) -> x509.Name:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if identity.common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.common_name))
    attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, identity.serial_number))
    return x509.Name(attrs)


def _ia5_der(text: str) -> bytes:
    return bytes(der_encoder.encode(char.IA5String(text.encode("ascii"))))


def build_device_certificate(public_key: PublicKey, identity: IssuanceIdentity, *, ca_cert: x509.Certificate,
                             ca_key: SigningKey, serial: int, not_before: datetime, not_after: datetime,
                             organization: str | None = None) -> x509.Certificate:
    """An 802.1AR device certificate (LDevID from the owner CA; IDevID from a test manufacturer CA): subject and
    extensions from ``identity`` and the CA only."""
    if not identity.serial_number:
        raise IssuanceError("the device identity has no serial number")
    org = organization if organization is not None else _organization(ca_cert.subject)
    ec_key = isinstance(public_key, ec.EllipticCurvePublicKey)
    builder = (
        x509.CertificateBuilder().subject_name(device_name(identity, org)).issuer_name(ca_cert.subject)
        .public_key(public_key).serial_number(serial).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=ec_key, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(ca_cert)), critical=False)
    )
    if identity.hardware_module_name is not None:
        hw_type, hw_serial = identity.hardware_module_name
        other = x509.OtherName(x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID),
                               hardware_module_name_der(hw_type, hw_serial))
        builder = builder.add_extension(x509.SubjectAlternativeName([other]), critical=False)
    if identity.mud_url is not None:
        if not identity.mud_url.startswith("https://") or not identity.mud_url.isascii():
            raise IssuanceError(f"MUD URL {identity.mud_url[:80]!r} is not an https:// URL")
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(MUD_URL_OID), _ia5_der(identity.mud_url)),
            critical=False)
    return builder.sign(ca_key, _sign_hash(ca_key))


def build_ldevid(csr: x509.CertificateSigningRequest, identity: IssuanceIdentity, *, ca_cert: x509.Certificate,
                 ca_key: SigningKey, serial: int, now: datetime, validity: timedelta) -> IssuedCertificate:
    """Check the CSR (signature, key policy) and issue the LDevID for ``identity``; ``serial`` is the caller's
    random 128-bit number (no randomness here either). Lifetime is exactly ``validity`` (the anchor's maximum
    counts notBefore to notAfter)."""
    public_key = checked_public_key(csr)
    not_before = now - CLOCK_SKEW
    not_after = min(not_before + validity, ca_cert.not_valid_after_utc)
    cert = build_device_certificate(public_key, identity, ca_cert=ca_cert, ca_key=ca_key, serial=serial,
                                    not_before=not_before, not_after=not_after)
    return IssuedCertificate(cert, cert.public_bytes(serialization.Encoding.PEM), format_serial(serial), not_after)


def build_ca_certificate(key: SigningKey, subject: x509.Name, *, serial: int, now: datetime,
                         validity: timedelta) -> x509.Certificate:
    """A self-signed CA that issues device certificates (pathLen 0: no CA under it)."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(serial).not_valid_before(now - CLOCK_SKEW).not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, _sign_hash(key))
    )


@dataclass(frozen=True)
class RevokedEntry:
    cert_serial: str  # lower-case hex
    revoked_at: datetime


def build_crl(ca_cert: x509.Certificate, ca_key: SigningKey, revoked: Sequence[RevokedEntry], *, now: datetime,
              validity: timedelta, number: int) -> x509.CertificateRevocationList:
    """The owner CA's CRL: thisUpdate = now (minus the skew allowance), nextUpdate = now + validity."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - CLOCK_SKEW).next_update(now + validity)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(ca_cert)),
                              critical=False))
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(entry.cert_serial, 16))
            .revocation_date(min(entry.revoked_at, now)).build())
    return builder.sign(ca_key, _sign_hash(ca_key))


def is_ca_certificate(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def same_public_key(key: SigningKey, cert: x509.Certificate) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            == cert.public_key().public_bytes(serialization.Encoding.DER, spki))
