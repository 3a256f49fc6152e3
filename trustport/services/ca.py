"""The owner (LDevID) CA that trustport runs: issue LDevIDs for authenticated devices, revoke them, publish the CRL.

The certificate building is ``policy.issuance`` (pure); this module holds the CA's files, the issued-certificate
records and the CRL file. The CRL is published into ``revocation.crl_dir`` (by default), which ``TrustMaterial``
re-reads when a file changes: a revocation is refused by the hook on the next authentication, and the local deny
list (written in the same transaction as the revocation) refuses it even before that.

Where the worker should call ``renew_crl_if_due``: once per loop pass (or at least every hour), so the CRL never
expires (``revocation.require_crl_for: [ldevid]`` rejects every LDevID under an expired CRL).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import Connection

from policy.dn import DnError, canonical_serial
from policy.errors import CertificateError, ConfigError, IdentityError, IssuanceError, TrustportError
from policy.issuance import (
    IssuanceIdentity,
    IssuedCertificate,
    RevokedEntry,
    SigningKey,
    build_crl,
    build_ldevid,
    check_ca_key,
    is_ca_certificate,
    same_public_key,
)
from policy.model import CertKind
from policy.x509facts import facts_from_certificate, format_serial, load_pem_certificates, oneline_dn
from trustport.settings.ca import CaSettings
from trustport.settings.config import TrustportConfig
from trustport.store.issued import IssuedRecord, SqlIssuedStore
from trustport.store.protocols import IssuedCertificateRepository
from trustport.store.sql import SqlDeviceStore

MAX_CA_FILE_BYTES = 1 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrlStatus:
    path: Path
    exists: bool
    this_update: datetime | None
    next_update: datetime | None
    expired: bool  # missing, unreadable, or past nextUpdate: the hook rejects every LDevID (fail closed)
    renewal_due: bool  # less than the renewal margin left (or expired): publish a new one
    revoked: int = 0
    problem: str | None = None


def normalize_cert_serial(value: str) -> str:
    """A certificate serial as an operator types it (``AB:CD``, ``0xabcd``, ``abcd``) -> format_serial's form."""
    text = value.strip().lower().replace(":", "")
    text = text.removeprefix("0x")
    try:
        return format_serial(int(text, 16))
    except ValueError:
        raise IssuanceError(f"{value[:60]!r} is not a certificate serial (hexadecimal)") from None


def random_serial() -> int:
    """128 random bits with the top bit cleared: a positive 16-byte DER INTEGER (127 bits of entropy)."""
    return secrets.randbits(128) >> 1 or 1


def read_ca_files(cert_path: Path, key_path: Path) -> tuple[list[x509.Certificate], SigningKey]:
    """The CA certificate (first in the file, any chain after it) and its key, checked: a CA certificate, a key
    readable by its owner only, accepted by the key policy and belonging to the certificate."""
    try:
        certs = load_pem_certificates(cert_path.read_bytes()[:MAX_CA_FILE_BYTES], f"CA certificate {cert_path}")
    except OSError as exc:
        raise IssuanceError(f"CA certificate {cert_path}: cannot read it: {exc.strerror or exc}") from exc
    except CertificateError as exc:
        raise IssuanceError(str(exc)) from exc
    if not is_ca_certificate(certs[0]):
        raise IssuanceError(f"CA certificate {cert_path}: {oneline_dn(certs[0].subject)} is not a CA certificate "
                            "(basicConstraints CA:TRUE)")
    try:
        mode = key_path.stat().st_mode
        data = key_path.read_bytes()[:MAX_CA_FILE_BYTES]
    except OSError as exc:
        raise IssuanceError(f"CA key {key_path}: cannot read it: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IssuanceError(f"CA key {key_path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
                            f"make it owner-only: chmod 600 {key_path}")
    try:
        key = serialization.load_pem_private_key(data, None)
    except TypeError as exc:
        raise IssuanceError(f"CA key {key_path} is encrypted; trustport needs an unencrypted owner-only key file "
                            "(protect it with file permissions)") from exc
    except (ValueError, Exception) as exc:  # cryptography: not a key, unsupported algorithm
        raise IssuanceError(f"CA key {key_path} is not a PEM private key ({type(exc).__name__})") from exc
    signing_key = check_ca_key(key, f"CA key {key_path}")
    if not same_public_key(signing_key, certs[0]):
        raise IssuanceError(f"CA key {key_path} does not belong to the CA certificate {cert_path} (their public "
                            "keys differ)")
    return certs, signing_key


def anchor_problem(config: TrustportConfig, ca_cert: x509.Certificate, ca: CaSettings) -> str | None:
    """Why LDevIDs of this CA would not be accepted by the RADIUS path, or None: it must be a configured
    ``trust_anchors`` certificate with role ldevid, and ``ca.ldevid_days`` within that anchor's maximum."""
    from trustport.services.trust import load_anchors

    specs = tuple(dataclasses.replace(a, file=config.path(a.file)) for a in config.trust_anchors)
    try:
        anchors, _certs = load_anchors(specs)
    except TrustportError as exc:
        return f"the trust anchors cannot be loaded: {exc}"
    ref = (oneline_dn(ca_cert.subject), oneline_dn(ca_cert.issuer), format_serial(ca_cert.serial_number))
    anchor = anchors.get(ref)
    if anchor is None:
        return (f"the owner CA {ref[0]} is not one of the configured trust_anchors; add it with role ldevid "
                f"(- {{name: {ca.name}, role: ldevid, file: {ca.certificate}}}), or the RADIUS path rejects every "
                "LDevID it issues")
    if anchor.role is not CertKind.LDEVID:
        return f"the owner CA is trust anchor {anchor.name!r} with role {anchor.role.value}; it must be ldevid"
    if anchor.max_lifetime is not None and timedelta(days=ca.ldevid_days) > anchor.max_lifetime:
        return (f"ca.ldevid_days ({ca.ldevid_days}) exceeds the {anchor.max_lifetime.days} days trust anchor "
                f"{anchor.name!r} accepts (max_certificate_days); the RADIUS path would reject the LDevIDs")
    return None


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a temporary file in the same directory and rename it over ``path``: a reader sees the old file or
    the new one, never half of one (the temporary name's suffix is not one TrustMaterial reads)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _crl_number(path: Path, now: datetime) -> int:
    """Monotonic: above the published CRL's number, and at least the time in milliseconds."""
    previous = 0
    with contextlib.suppress(OSError, ValueError, x509.ExtensionNotFound):
        crl = x509.load_pem_x509_crl(path.read_bytes())
        previous = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return max(previous + 1, int(now.timestamp() * 1000))


def publish_crl_file(path: Path, cert: x509.Certificate, key: SigningKey, revoked: list[RevokedEntry], *,
                     now: datetime, validity: timedelta) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        crl = build_crl(cert, key, revoked, now=now, validity=validity, number=_crl_number(path, now))
        write_atomically(path, crl.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise IssuanceError(f"cannot publish the CRL to {path}: {exc.strerror or exc}") from exc
    return path


def read_crl_status(path: Path, now: datetime, margin: timedelta) -> CrlStatus:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return CrlStatus(path, False, None, None, True, True, problem=f"no CRL at {path}")
    except OSError as exc:
        return CrlStatus(path, False, None, None, True, True, problem=f"{path}: {exc.strerror or exc}")
    try:
        crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError as exc:
        return CrlStatus(path, True, None, None, True, True, problem=f"{path} is not a CRL ({exc})")
    next_update = crl.next_update_utc
    expired = next_update is not None and now > next_update
    due = expired or (next_update is not None and next_update - now < margin)
    return CrlStatus(path, True, crl.last_update_utc, next_update, expired, due, len(crl))


class OwnerCA:
    """Built by ``load``; every method takes ``now`` (no clock here)."""

    def __init__(self, settings: CaSettings, certs: list[x509.Certificate], key: SigningKey, crl_path: Path,
                 issued: IssuedCertificateRepository) -> None:
        self.settings = settings
        self._certs = certs
        self._key = key
        self.crl_path = crl_path
        self.issued = issued
        self.issuer = oneline_dn(certs[0].subject)

    @classmethod
    def load(cls, config: TrustportConfig, store: SqlDeviceStore) -> OwnerCA:
        """The configured owner CA; ConfigError/IssuanceError saying what to fix when it cannot issue."""
        ca = config.ca
        if ca is None:
            raise ConfigError("no 'ca:' section in the config: the owner CA is not set up; 'trustport ca init' "
                              "creates one and prints the section to add")
        crl_path = config.ca_crl_path()
        if crl_path is None:
            raise ConfigError("the owner CA has nowhere to publish its CRL: set revocation.crl_dir (or ca.crl_file)")
        certs, key = read_ca_files(config.path(ca.certificate), config.path(ca.key))
        problem = anchor_problem(config, certs[0], ca)
        if problem is not None:
            raise ConfigError(f"ca: {problem}")
        return cls(ca, certs, key, crl_path, SqlIssuedStore(store))

    @property
    def certificate(self) -> x509.Certificate:
        return self._certs[0]

    def certificates(self) -> list[x509.Certificate]:
        """The CA chain (issuing CA first), for EST /cacerts."""
        return list(self._certs)

    def issue(self, csr: x509.CertificateSigningRequest, identity: IssuanceIdentity, *, now: datetime,
              replaces: str | None = None, actor: str,
              bind: Callable[[Connection, IssuedCertificate], None] | None = None) -> IssuedCertificate:
        """An LDevID for ``identity`` (never the CSR's names), recorded; with ``replaces`` the previous LDevID is
        revoked in the same transaction and the CRL republished. ``bind`` runs in that transaction too (EST moves
        the registry binding there): if it raises, nothing is recorded or revoked and the certificate, never
        handed out, is dropped."""
        try:
            serial_number = canonical_serial(identity.serial_number, "device serial")
        except DnError as exc:
            raise IssuanceError(str(exc)) from exc
        if serial_number != identity.serial_number:
            identity = IssuanceIdentity(serial_number, identity.hardware_module_name, identity.common_name,
                                        identity.mud_url)
        issued = build_ldevid(csr, identity, ca_cert=self.certificate, ca_key=self._key, serial=random_serial(),
                              now=now, validity=timedelta(days=self.settings.ldevid_days))
        try:
            facts = facts_from_certificate(issued.certificate)  # names the RADIUS path can read unambiguously
        except IdentityError as exc:
            raise IssuanceError(f"the LDevID for {identity.serial_number!r} would not be readable by the RADIUS "
                                f"path ({exc}); nothing was issued") from exc
        old = normalize_cert_serial(replaces) if replaces is not None else None
        self.issued.record_issued(IssuedRecord(
            issued.cert_serial, self.issuer, identity.serial_number, facts.subject,
            issued.certificate.not_valid_before_utc, issued.not_after, now, actor, pem=issued.pem.decode()),
            replaces=old, also=(lambda conn: bind(conn, issued)) if bind is not None else None)
        if old is not None:
            try:
                self.publish_crl(now)
            except IssuanceError as exc:  # issued and recorded; the old one is on the deny list already
                log.error("LDevID %s issued, replacing %s, but the CRL was not republished: %s; run "
                          "'trustport ca crl'", issued.cert_serial, old, exc)
        return issued

    def revoke(self, cert_serial: str, *, reason: str, now: datetime, actor: str) -> bool:
        """Revoke (and deny-list) one issued certificate and publish the CRL at once; False if it already was
        revoked (the CRL is republished anyway)."""
        fresh = self.issued.revoke(normalize_cert_serial(cert_serial), reason=reason, now=now, actor=actor)
        self.publish_crl(now)
        return fresh

    def publish_crl(self, now: datetime) -> Path:
        revoked = list(self.issued.revoked(self.issuer, now))
        return publish_crl_file(self.crl_path, self.certificate, self._key, revoked, now=now,
                                validity=timedelta(hours=self.settings.crl_validity_hours))

    def crl_status(self, now: datetime) -> CrlStatus:
        return read_crl_status(self.crl_path, now, timedelta(hours=self.settings.crl_renewal_margin_hours))

    def renew_crl_if_due(self, now: datetime) -> Path | None:
        """Publish a new CRL when less than the renewal margin remains (or none is readable); None otherwise."""
        if not self.crl_status(now).renewal_due:
            return None
        return self.publish_crl(now)


@dataclass(frozen=True)
class CaInit:
    """What ``trustport ca init`` did, and what the operator still has to put in the config."""

    certificate: Path
    key: Path
    created: bool  # False: existing files were checked and adopted
    subject: str
    crl: Path | None
    config_snippet: str | None  # the ca: / trust_anchors entries to add, when the config lacks them
    problems: tuple[str, ...] = ()


def _new_ca_key(kind: str) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}
    if kind in curves:
        return ec.generate_private_key(curves[kind])
    if kind in ("rsa2048", "rsa3072", "rsa4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise IssuanceError(f"CA key type {kind!r}: choose p256, p384, rsa2048, rsa3072 or rsa4096")


def init_ca(config: TrustportConfig, *, now: datetime, cert_file: Path | None = None, key_file: Path | None = None,
            common_name: str | None = None, organization: str | None = None, key_kind: str = "p256",
            days: int = 3650, store: SqlDeviceStore | None = None) -> CaInit:
    """Create the owner CA's key (owner-only) and self-signed certificate, or adopt existing files (both given, or
    both already at the configured paths), then publish its CRL where the config says."""
    from cryptography.x509.oid import NameOID

    from trustport.files import write_private

    ca = config.ca
    name = ca.name if ca is not None else "owner-ca"
    if (cert_file is None) != (key_file is None):
        raise IssuanceError("give both --cert and --key to adopt an existing CA, or neither to create one")
    if cert_file is not None and key_file is not None:
        cert_path, key_path = cert_file.resolve(), key_file.resolve()
    elif ca is not None:
        cert_path, key_path = config.path(ca.certificate), config.path(ca.key)
    else:
        cert_path, key_path = config.path(Path("pki") / f"{name}.pem"), config.path(Path("pki") / f"{name}.key")
    existing = [p for p in (cert_path, key_path) if p.exists()]
    adopt = cert_file is not None or len(existing) == 2
    if adopt:
        certs, key = read_ca_files(cert_path, key_path)
        cert = certs[0]
    else:
        if existing:
            raise IssuanceError(f"{existing[0]} exists but its counterpart does not; refusing to overwrite it (give "
                                "--cert and --key to adopt existing files)")
        key = _new_ca_key(key_kind)
        org = organization or config.site
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                             x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"{org} LDevID CA")])
        from policy.issuance import build_ca_certificate

        cert = build_ca_certificate(key, subject, serial=random_serial(), now=now, validity=timedelta(days=days))
        try:
            cert_path.parent.mkdir(parents=True, exist_ok=True)
            write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
            write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        except OSError as exc:
            raise IssuanceError(f"cannot write the CA files: {exc}") from exc
    settings = ca if ca is not None else CaSettings(name=name, certificate=cert_path, key=key_path)
    crl_path = config.ca_crl_path() if ca is not None else (
        config.path(config.revocation.crl_dir) / f"{name}.crl" if config.revocation.crl_dir is not None else None)
    problems: list[str] = []
    if crl_path is not None:
        revoked: list[RevokedEntry] = []
        if adopt and store is not None:
            revoked = list(SqlIssuedStore(store).revoked(oneline_dn(cert.subject), now))
        publish_crl_file(crl_path, cert, key, revoked, now=now,
                         validity=timedelta(hours=settings.crl_validity_hours))
    else:
        problems.append("no CRL was published: set revocation.crl_dir (or ca.crl_file), then run 'trustport ca crl'")
    snippet = None
    configured = ca is not None and config.path(ca.certificate) == cert_path and config.path(ca.key) == key_path
    if not configured:
        snippet = (f"ca:\n  name: {name}\n  certificate: {cert_path}\n  key: {key_path}\n  ldevid_days: 365\n"
                   f"  crl_validity_hours: 168\n  crl_renewal_margin_hours: 48\n"
                   f"trust_anchors:   # add this entry\n  - {{name: {name}, role: ldevid, file: {cert_path}}}")
    else:
        problem = anchor_problem(config, cert, settings)
        if problem is not None:
            problems.append(problem)
    return CaInit(cert_path, key_path, not adopt, oneline_dn(cert.subject), crl_path, snippet, tuple(problems))


@dataclass(frozen=True)
class ServerCertificate:
    """A TLS server certificate the owner CA signed (``trustport ca server-cert``), its new key (PEM, PKCS#8)."""

    certificate_pem: bytes  # the server certificate, then the CA chain
    key_pem: bytes
    cert_serial: str
    not_after: datetime


def issue_server_certificate(owner_ca: OwnerCA, *, dns_names: list[str], ip_addresses: list[str], now: datetime,
                             days: int = 397) -> ServerCertificate:
    """A server certificate for the REST API / dashboard: a new P-256 key, SAN with every name and address,
    extended key usage serverAuth only, not a CA; signed by the owner CA. Not recorded as an LDevID."""
    import ipaddress

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from policy.issuance import _sign_hash

    if not dns_names and not ip_addresses:
        raise IssuanceError("a server certificate needs at least one --dns name or --ip address")
    if not 1 <= days <= 825:
        raise IssuanceError(f"a server certificate is valid 1 to 825 days, not {days}")
    sans: list[x509.GeneralName] = []
    for name in dns_names:
        label = name.strip().lower().rstrip(".")
        if not label or len(label) > 253 or not all(
                part and len(part) <= 63 and all(c.isascii() and (c.isalnum() or c == "-") for c in part)
                for part in label.removeprefix("*.").split(".")):
            raise IssuanceError(f"--dns {name[:80]!r} is not a DNS name (letters, digits, '-', dots)")
        sans.append(x509.DNSName(label))
    for address in ip_addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError as exc:
            raise IssuanceError(f"--ip {address[:80]!r} is not an IP address") from exc
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = owner_ca.certificate
    common_name = dns_names[0] if dns_names else ip_addresses[0]
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(random_serial())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.SubjectAlternativeName(sans), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_cert.public_key()), critical=False))  # type: ignore[arg-type]
    cert = builder.sign(owner_ca._key, _sign_hash(owner_ca._key))
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *owner_ca.certificates()])
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ServerCertificate(chain, key_pem, format_serial(cert.serial_number), cert.not_valid_after_utc)
