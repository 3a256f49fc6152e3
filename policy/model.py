"""Frozen value types shared by validation, policy and persistence.

Everything here is plain data: no I/O, no clock. Times are timezone-aware UTC datetimes passed in by callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plain data only: these modules import this one
    from policy.attestation import AttestationStanding
    from policy.mud import MudHint


class LifecycleState(StrEnum):
    """Where a device is in its life; the registry stores one of these per device."""

    PENDING = "pending"
    ONBOARDING = "onboarding"
    OPERATIONAL = "operational"
    QUARANTINED = "quarantined"
    DECOMMISSIONED = "decommissioned"


class CertKind(StrEnum):
    """Which trust anchor role issued the device certificate (802.1AR)."""

    IDEVID = "idevid"  # manufacturer-installed identity
    LDEVID = "ldevid"  # locally significant identity issued by our CA after onboarding


class Outcome(StrEnum):
    ACCEPT = "accept"
    QUARANTINE = "quarantine"
    REJECT = "reject"


@dataclass(frozen=True)
class KeyInfo:
    """Public key algorithm and strength; ``curve`` only for EC keys."""

    algorithm: str  # "rsa", "ec", "ed25519", "ed448", "dsa", ...
    bits: int
    curve: str | None = None


@dataclass(frozen=True)
class IssuerCertificate:
    """The certificate that signed the device certificate, as verified in the chain (FreeRADIUS: depth 1,
    ``TLS-Cert-*``). Its identity decides the anchor role: the leaf's own issuer fields are chosen by its signer."""

    subject: str  # canonical DN text (policy.dn)
    issuer: str
    serial: str  # lower-case hex, no separators, no leading zeros
    not_after: datetime | None = None


@dataclass(frozen=True)
class CertificateFacts:
    """What is known about a presented device certificate.

    Built either from FreeRADIUS ``TLS-Client-Cert-*`` attributes (after OpenSSL verified the chain) or from a
    PEM file. Fields a source cannot provide are ``None`` (FreeRADIUS 3.2 does not export the public key or the
    signature algorithm; those are enforced by OpenSSL's security level on that path).
    """

    source: str  # "radius" or "pem"
    subject: str  # canonical DN text (policy.dn): /C=DE/O=Acme/CN=x/serialNumber=SN-1, escapes decoded
    issuer: str
    cert_serial: str  # lower-case hex, no separators, no leading zeros
    device_serial: str | None  # subject serialNumber (2.5.4.5)
    common_name: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    is_ca: bool | None = None
    key_usage: tuple[str, ...] | None = None  # OpenSSL names: "Digital Signature", ...
    eku_oids: tuple[str, ...] | None = None  # None = no EKU extension
    subject_alt_name: str | None = None
    authority_key_id: str | None = None  # upper-case hex with colons, like OpenSSL prints
    mud_url: str | None = None
    mud_url_error: str | None = None  # the extension was present but could not be decoded
    public_key: KeyInfo | None = None
    signature_hash: str | None = None  # "sha256", "sha1", "md5", ... or None when not known
    fingerprint_sha256: str | None = None  # hex of SHA-256 over the DER certificate
    spki_sha256: str | None = None  # hex of SHA-256 over the DER SubjectPublicKeyInfo (attestation binding)
    issuer_certificate: IssuerCertificate | None = None  # None: the chain was not verified / not reported


@dataclass(frozen=True)
class Check:
    """One validation step and its result; ``ok=None`` means not applicable / not checkable here."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class CertificateVerdict:
    valid: bool
    kind: CertKind | None
    anchor: str | None  # name of the configured trust anchor that issued the certificate
    checks: tuple[Check, ...]

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is False)

    @property
    def revoked(self) -> bool:
        return any(c.name == "revocation" and c.ok is False for c in self.checks)

    def reasons(self) -> tuple[str, ...]:
        if self.valid:
            return (f"certificate valid ({self.kind}, anchor {self.anchor})",)
        return tuple(f"{c.name}: {c.detail}" for c in self.failures)


@dataclass(frozen=True)
class DeviceKey:
    """A device is identified by its issuer and its device serial number (subject serialNumber)."""

    issuer: str
    serial_number: str

    def __str__(self) -> str:
        return f"{self.serial_number} @ {self.issuer}"


@dataclass(frozen=True)
class DeviceRecord:
    id: int
    key: DeviceKey
    state: LifecycleState
    segment: str | None
    owner: str | None
    notes: str | None
    cert_kind: CertKind | None
    cert_serial: str | None
    fingerprint_sha256: str | None
    mud_url: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    spki_sha256: str | None = None
    device_class: str | None = None
    location: str | None = None  # where the device belongs (from the directory); placement uses the NAS's site


@dataclass(frozen=True)
class NetworkContext:
    """Where the request came from (as the NAS reported it)."""

    nas_ip: str | None = None
    nas_identifier: str | None = None
    nas_port: str | None = None  # NAS-Port or NAS-Port-Id, whichever the NAS sent
    calling_station_id: str | None = None  # device MAC as sent by the NAS
    user_name: str | None = None


@dataclass(frozen=True)
class Decision:
    """The answer for one authentication. Quarantine and reject are values, not exceptions."""

    outcome: Outcome
    vlan: int | None
    segment: str | None
    reasons: tuple[str, ...]
    register_pending: bool = False  # the caller should record this genuine-but-unknown device as pending
    rule: str | None = None  # the policy rule that matched, if any
    filter_id: str | None = None  # ACL name for the NAS (Filter-Id)

    def __post_init__(self) -> None:
        if self.outcome is Outcome.REJECT and self.vlan is not None:
            raise ValueError("a reject carries no VLAN")
        if self.outcome is not Outcome.REJECT and self.vlan is None:
            raise ValueError(f"outcome {self.outcome} needs a VLAN")


@dataclass(frozen=True)
class DecisionLogEntry:
    time: datetime
    device_id: int | None
    device: str  # human-readable device key, kept even when the device is not in the registry
    context: NetworkContext
    outcome: Outcome
    vlan: int | None
    segment: str | None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    policy_revision: str | None = None  # the revision of the policy that decided (None: logged before revisions)


@dataclass(frozen=True)
class VerifiedCertificate:
    """The certificate a device last authenticated with, after it was verified (persisted at accept time), so that
    the enforcement planner matches ``subject.*``/``mud_url`` rules exactly as the hook did."""

    device_id: int
    subject: str  # canonical DN text (policy.dn)
    issuer: str
    cert_kind: CertKind | None
    mud_url: str | None
    not_after: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class PlacementInput:
    """Everything the one placement function (``policy.decide.place``) reads. The hook, ``trustport decide`` and the
    enforcement planner each build one of these and nothing else, so they cannot disagree.

    ``certificate`` is the certificate presented now (hook, ``decide``) or the device's last verified one (planner);
    ``mud`` the device's MUD hint looked up from its MUD URL the same way on every path."""

    verdict: CertificateVerdict
    device: DeviceRecord | None
    certificate: CertificateFacts | None = None
    context: NetworkContext | None = None
    attestation: AttestationStanding | None = None
    mud: MudHint | None = None


@dataclass(frozen=True)
class RadiusServerRecord:
    """One running FreeRADIUS (its hook) and the policy revision it holds (``trustport radius status``)."""

    server_id: str  # hostname + the hook.json path
    pid: int
    policy_revision: str | None
    loaded_at: datetime
    last_auth_at: datetime | None = None
    settings_file: str | None = None
    config_file: str | None = None


@dataclass(frozen=True)
class AuditNote:
    """A lifecycle audit entry written with a decision (same transaction): who, what, and why."""

    actor: str
    action: str  # e.g. "certificate-mismatch", "certificate-bound"
    state: str  # the device's state (unchanged by the event)
    reason: str
