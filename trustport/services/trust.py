"""Trust anchors and CRLs, loaded from local files (CRLs are fetched out of band, never on the auth path).

``TrustMaterial.refresh`` re-reads the CRL directory when a file changed, at most every ``refresh_seconds``;
a CRL whose signature does not verify against its issuer's anchor is ignored and reported, never trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from policy.certificates import CrlInfo, TrustAnchor
from policy.errors import CertificateError, ConfigError
from policy.model import CertKind
from policy.x509facts import format_serial, load_pem_certificates, oneline_dn
from trustport.settings.hook import AnchorFile

log = logging.getLogger(__name__)
CRL_SUFFIXES = (".crl", ".pem", ".der")


DEFAULT_MAX_LIFETIME = {CertKind.LDEVID: timedelta(days=825), CertKind.IDEVID: None}


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _anchor_entry(spec: AnchorFile, cert: x509.Certificate, root: bool) -> TrustAnchor:
    lifetime = (timedelta(days=spec.max_certificate_days) if spec.max_certificate_days is not None
                else DEFAULT_MAX_LIFETIME[spec.role])
    return TrustAnchor(spec.name, spec.role, oneline_dn(cert.subject), oneline_dn(cert.issuer),
                       format_serial(cert.serial_number), cert.not_valid_after_utc, root, lifetime)


def _file_entries(spec: AnchorFile) -> list[tuple[TrustAnchor, x509.Certificate]]:
    """One anchor file: its self-signed root CA(s) and, optionally, CAs directly issued by them."""
    try:
        data = spec.file.read_bytes()
    except OSError as exc:
        raise CertificateError(f"trust anchor {spec.name!r}: cannot read {spec.file}: {exc}") from exc
    where = f"trust anchor {spec.name!r} ({spec.file})"
    certs = load_pem_certificates(data, where)
    for cert in certs:
        if not _is_ca(cert):
            raise CertificateError(f"{where}: {oneline_dn(cert.subject)} is not a CA certificate "
                                   "(basicConstraints CA:TRUE); configure the CA that issues device certificates")
    roots = [c for c in certs if c.subject == c.issuer and _issued_by(c, c)]
    if not roots:
        raise CertificateError(f"{where}: no self-signed root CA in the file; the root must be configured")
    entries = []
    for cert in certs:
        if any(cert is r for r in roots):
            entries.append((_anchor_entry(spec, cert, True), cert))
        elif any(_issued_by(cert, r) for r in roots):
            entries.append((_anchor_entry(spec, cert, False), cert))
        else:
            raise CertificateError(
                f"{where}: {oneline_dn(cert.subject)} is not issued by a root CA in the same file; at most one "
                "intermediate CA between a device certificate and its anchor is supported (FreeRADIUS "
                "verify_depth = 1)")
    return entries


def load_anchors(files: tuple[AnchorFile, ...]) -> tuple[dict[tuple[str, str, str], TrustAnchor],
                                                         dict[str, x509.Certificate]]:
    """Configured CA certificates keyed by (subject, issuer, serial), and the certificates by subject (for CRL
    signatures and chain building). A CA name can belong to one configured certificate only."""
    anchors: dict[tuple[str, str, str], TrustAnchor] = {}
    certs: dict[str, x509.Certificate] = {}
    owner: dict[str, TrustAnchor] = {}
    for spec in files:
        for entry, cert in _file_entries(spec):
            other = owner.get(entry.subject)
            if other is not None and other.ref != entry.ref:
                raise CertificateError(
                    f"trust anchor {spec.name!r}: CA {entry.subject} is also configured as another certificate "
                    f"(anchor {other.name!r}); each CA name may be configured once")
            if other is not None and other.role is not entry.role:
                raise CertificateError(
                    f"trust anchor {spec.name!r}: CA {entry.subject} is also anchor {other.name!r} with another "
                    "role; a CA can issue only one kind of device identity")
            owner[entry.subject] = entry
            anchors[entry.ref] = entry
            certs[entry.subject] = cert
    return anchors, certs


def _signature_valid(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | ed448.Ed448PublicKey):
        return False
    return crl.is_signature_valid(key)


@dataclass(frozen=True)
class CrlFile:
    """One file of the CRL directory as the hook would take it: its CRL, or why the hook refuses it."""

    path: Path
    crl: CrlInfo | None
    problem: str | None = None


def crl_files(directory: Path, anchors: tuple[AnchorFile, ...]) -> list[CrlFile]:
    """Every CRL file in ``directory``, each loaded and signature-checked as the hook loads it (the console's CRL
    table and the CRL metrics). An unreadable directory or unloadable anchors make every file refused, with why."""
    try:
        paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in CRL_SUFFIXES)
    except OSError:
        return []
    try:
        _, issuers = load_anchors(anchors)
    except (CertificateError, ConfigError, OSError, ValueError) as exc:
        return [CrlFile(p, None, f"the trust anchors cannot be loaded to check it: {exc}") for p in paths]
    out = []
    for path in paths:
        try:
            out.append(CrlFile(path, load_crl(path, issuers)))
        except (CertificateError, ValueError) as exc:
            out.append(CrlFile(path, None, str(exc)[:300]))
    return out


def load_crl(path: Path, issuers: Mapping[str, x509.Certificate]) -> CrlInfo:
    """One CRL file (PEM or DER), signature-checked against its issuing anchor."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"CRL {path}: cannot read: {exc}") from exc
    try:
        crl = (x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data))
    except ValueError as exc:
        raise CertificateError(f"CRL {path}: not a PEM or DER CRL ({exc})") from exc
    issuer = oneline_dn(crl.issuer)
    ca = issuers.get(issuer)
    if ca is None:
        raise CertificateError(f"CRL {path}: issuer {issuer} is not a configured trust anchor")
    if not _signature_valid(crl, ca):
        raise CertificateError(f"CRL {path}: signature does not verify against {issuer}; refusing it")
    return CrlInfo(
        issuer=issuer,
        revoked=frozenset(format_serial(r.serial_number) for r in crl),
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        source=path.name,
    )


@dataclass
class TrustMaterial:
    """Anchors (fixed for the process) and CRLs (reloaded when the directory changes)."""

    anchors: dict[tuple[str, str, str], TrustAnchor]
    ca_certs: dict[str, x509.Certificate]  # configured CA certificates by subject (roots and issuing CAs)
    crl_dir: Path | None
    refresh_seconds: float
    crls: dict[str, CrlInfo] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _signature: tuple[tuple[str, int, int], ...] = ()
    _checked_at: float | None = None

    @classmethod
    def load(cls, files: tuple[AnchorFile, ...], crl_dir: Path | None, refresh_seconds: float,
             clock: Callable[[], float]) -> TrustMaterial:
        anchors, certs = load_anchors(files)
        material = cls(anchors, certs, crl_dir, refresh_seconds)
        material.refresh(clock())
        return material

    def roots(self) -> list[x509.Certificate]:
        return [self.ca_certs[a.subject] for a in self.anchors.values() if a.root]

    def intermediates(self) -> list[x509.Certificate]:
        return [self.ca_certs[a.subject] for a in self.anchors.values() if not a.root]

    def _dir_signature(self) -> tuple[tuple[str, int, int], ...]:
        if self.crl_dir is None:
            return ()
        try:
            entries = sorted(p for p in self.crl_dir.iterdir() if p.suffix.lower() in CRL_SUFFIXES)
            return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in entries)
        except OSError as exc:
            return (("<error>", 0, hash(str(exc))),)

    def refresh(self, monotonic_now: float) -> None:
        """Reload CRLs if the directory changed; cheap when called on every auth (one stat per interval)."""
        if self._checked_at is not None and monotonic_now - self._checked_at < self.refresh_seconds:
            return
        self._checked_at = monotonic_now
        signature = self._dir_signature()
        if signature == self._signature and self._signature:
            return
        self._signature = signature
        crls: dict[str, CrlInfo] = {}
        errors: list[str] = []
        if self.crl_dir is not None:
            if not self.crl_dir.is_dir():
                errors.append(f"CRL directory {self.crl_dir} does not exist")
            else:
                for path in sorted(self.crl_dir.iterdir()):
                    if path.suffix.lower() not in CRL_SUFFIXES:
                        continue
                    try:
                        info = load_crl(path, self.ca_certs)
                    except CertificateError as exc:
                        errors.append(str(exc))
                        continue
                    current = crls.get(info.issuer)
                    if current is None or info.this_update > current.this_update:
                        crls[info.issuer] = info
        for message in errors:
            log.warning("%s", message)
        self.crls, self.errors = crls, errors
