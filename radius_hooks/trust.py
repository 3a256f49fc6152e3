"""Trust anchors and CRLs, loaded from local files (CRLs are fetched out of band, never on the auth path).

``TrustMaterial.refresh`` re-reads the CRL directory when a file changed, at most every ``refresh_seconds``;
a CRL whose signature does not verify against its issuer's anchor is ignored and reported, never trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from policy.certificates import CrlInfo, TrustAnchor
from policy.errors import CertificateError
from policy.x509facts import format_serial, key_id_hex, load_pem_certificates, oneline_dn
from radius_hooks.settings import AnchorFile

log = logging.getLogger(__name__)
CRL_SUFFIXES = (".crl", ".pem", ".der")


def _ski(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return key_id_hex(ext.value.digest)


def load_anchors(files: tuple[AnchorFile, ...]) -> tuple[dict[str, TrustAnchor], dict[str, x509.Certificate]]:
    """Anchors keyed by CA subject DN, and the CA certificates themselves (for chain and CRL checks)."""
    anchors: dict[str, TrustAnchor] = {}
    certs: dict[str, x509.Certificate] = {}
    for spec in files:
        try:
            data = spec.file.read_bytes()
        except OSError as exc:
            raise CertificateError(f"trust anchor {spec.name!r}: cannot read {spec.file}: {exc}") from exc
        for cert in load_pem_certificates(data, f"trust anchor {spec.name!r} ({spec.file})"):
            subject = oneline_dn(cert.subject)
            if subject in anchors and anchors[subject].role is not spec.role:
                raise CertificateError(
                    f"trust anchor {spec.name!r}: CA {subject} is also anchor {anchors[subject].name!r} "
                    "with another role; a CA can issue only one kind of device identity"
                )
            anchors[subject] = TrustAnchor(spec.name, spec.role, subject, _ski(cert))
            certs[subject] = cert
    return anchors, certs


def _signature_valid(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | ed448.Ed448PublicKey):
        return False
    return crl.is_signature_valid(key)


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

    anchors: dict[str, TrustAnchor]
    ca_certs: dict[str, x509.Certificate]
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
