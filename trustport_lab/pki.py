"""A throw-away PKI for the lab and the tests: manufacturer (IDevID) CA, our LDevID CA, server and device
certificates, CRLs. Generated at run time with ``cryptography``; private keys are written owner-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from policy.x509facts import MUD_URL_OID
from trustport.files import write_private

NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
Key = (ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey | ed25519.Ed25519PrivateKey
       | ed448.Ed448PrivateKey)
_CURVES: dict[str, ec.EllipticCurve] = {
    "p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1(), "p224": ec.SECP224R1(),
    "p192": ec.SECP192R1(), "secp256k1": ec.SECP256K1(), "brainpool256": ec.BrainpoolP256R1(),
}


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: Key

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``stem.pem`` and ``stem.key`` (mode 0600); return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem())
        write_private(key_path, self.key_pem())
        return cert_path, key_path


def new_key(kind: str = "p256") -> Key:
    """A private key: p256/p384/p521/p224/p192/secp256k1/brainpool256, rsaNNNN, dsaNNNN, ed25519, ed448."""
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind])
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind.startswith("dsa"):
        return dsa.generate_private_key(key_size=int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def _name(cn: str, org: str, serial_number: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
             x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if serial_number is not None:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    return x509.Name(attrs)


def make_ca(cn: str, org: str, *, now: datetime, key_kind: str = "p256", days: int = 3650,
            issuer: Issued | None = None, name: x509.Name | None = None, serial: int | None = None,
            key_id: bytes | None = None, validity: tuple[datetime, datetime] | None = None,
            path_length: int | None = 1) -> Issued:
    """A CA certificate: self-signed (a root), or issued by ``issuer`` (an intermediate).

    ``name``, ``serial``, ``key_id`` and ``validity`` exist to build look-alikes of another CA in tests (the same
    subject, serial, key identifier and dates under a different anchor)."""
    key = new_key(key_kind)
    subject = name or _name(cn, org)
    ski = x509.SubjectKeyIdentifier(key_id) if key_id is not None else \
        x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    signer_key = issuer.key if issuer is not None else key
    signer_ski = (issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                  if issuer is not None else ski)
    not_before, not_after = validity or (now - timedelta(days=1), now + timedelta(days=days))
    builder = (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer is not None else subject).public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(signer_ski), critical=False)
    )
    if isinstance(signer_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return Issued(builder.sign(signer_key, None), key)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


def _sign(builder: x509.CertificateBuilder, ca: Issued, hash_name: str) -> x509.Certificate:
    if isinstance(ca.key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return builder.sign(ca.key, None)
    algorithm = hashes.SHA384() if hash_name == "sha384" else hashes.SHA256()
    return builder.sign(ca.key, algorithm)


def issue_device(
    ca: Issued,
    *,
    cn: str,
    serial_number: str | None,
    now: datetime,
    org: str = "Acme Devices",
    key_kind: str = "p256",
    not_before: datetime | None = None,
    not_after: datetime | None = NO_EXPIRY,
    mud_url: str | None = None,
    mud_der: bytes | None = None,
    eku: tuple[x509.ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    is_ca: bool = False,
    digital_signature: bool = True,
    key_agreement: bool = False,
    hash_name: str = "sha256",
    subject: x509.Name | None = None,
    aki: x509.AuthorityKeyIdentifier | None = None,
    omit_aki: bool = False,
) -> Issued:
    """An 802.1AR-style device certificate (IDevID or LDevID, depending on the issuing CA).

    ``subject`` replaces the name built from ``cn``/``org``/``serial_number`` and ``aki`` the authority key
    identifier taken from the CA, ``omit_aki`` leaves it out (all for hostile test certificates)."""
    key = new_key(key_kind)
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder().subject_name(subject or _name(cn, org, serial_number)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(hours=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                                     key_encipherment=not digital_signature and not key_agreement,
                                     data_encipherment=False, key_agreement=key_agreement, key_cert_sign=is_ca,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
    )
    if not omit_aki:
        builder = builder.add_extension(
            aki or x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if mud_url is not None or mud_der is not None:
        der = mud_der if mud_der is not None else ia5_der(mud_url or "")
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(MUD_URL_OID), der), critical=False)
    return Issued(_sign(builder, ca, hash_name), key)


def ia5_der(text: str) -> bytes:
    body = text.encode("ascii")
    if len(body) < 128:
        return bytes([0x16, len(body)]) + body
    length = len(body).to_bytes(2, "big")
    return bytes([0x16, 0x82]) + length + body


def issue_server(ca: Issued, cn: str, *, now: datetime) -> Issued:
    key = new_key("p256")
    cert = (
        x509.CertificateBuilder().subject_name(_name(cn, "trustport")).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_crl(ca: Issued, revoked_serials: list[int], *, now: datetime, next_update: timedelta = timedelta(days=7)
             ) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now - timedelta(minutes=5)).next_update(now + next_update))
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - timedelta(minutes=1)).build())
    return builder.sign(ca.key, hashes.SHA256())


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)
