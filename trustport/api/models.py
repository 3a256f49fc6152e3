"""Request and response models of the REST API (pydantic), and their construction from trustport's records."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from policy.enforcement import SessionView
from policy.model import DeviceRecord, VerifiedCertificate
from trustport.store.console import AuditItem, Connected, LoggedDecision
from trustport.store.lifecycle import LifecycleEvent
from trustport.store.queue import Job

RoleName = Literal["viewer", "operator", "admin"]


def plain(value: Any) -> Any:
    """Dataclasses, enums, tuples and mappings as JSON-ready values (datetimes stay for pydantic)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


class StrictText(BaseModel):
    """Text fields must be real (encodable) text."""

    @field_validator("*", mode="after")
    @classmethod
    def _real_text(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("contains a lone surrogate (\\ud800-\\udfff); send UTF-8 text") from None
                if "\x00" in item:
                    raise ValueError("contains a NUL character")
        return value


# -- devices ---------------------------------------------------------------------------------------------------

class DeviceOut(BaseModel):
    id: int
    issuer: str
    serial_number: str
    state: str
    segment: str | None
    owner: str | None
    notes: str | None
    device_class: str | None
    location: str | None
    cert_kind: str | None
    cert_serial: str | None
    fingerprint_sha256: str | None
    spki_sha256: str | None
    mud_url: str | None
    first_seen: datetime | None
    last_seen: datetime | None

    @classmethod
    def of(cls, d: DeviceRecord) -> DeviceOut:
        return cls(id=d.id, issuer=d.key.issuer, serial_number=d.key.serial_number, state=d.state.value,
                   segment=d.segment, owner=d.owner, notes=d.notes, device_class=d.device_class, location=d.location,
                   cert_kind=d.cert_kind.value if d.cert_kind else None, cert_serial=d.cert_serial,
                   fingerprint_sha256=d.fingerprint_sha256, spki_sha256=d.spki_sha256, mud_url=d.mud_url,
                   first_seen=d.first_seen, last_seen=d.last_seen)


class ConnectedOut(BaseModel):
    session_id: int
    nas: str
    port: str | None
    mac: str
    vlan: int | None
    read_back: bool = Field(description="a switch read the VLAN back (not only RADIUS said so)")
    since: datetime

    @classmethod
    def of(cls, c: Connected) -> ConnectedOut:
        return cls(**plain(c))


class DeviceRowOut(BaseModel):
    device: DeviceOut
    connected: list[ConnectedOut]


class DevicePage(BaseModel):
    total: int = Field(description="devices matching the filters (all pages)")
    limit: int
    offset: int
    items: list[DeviceRowOut]


class CertificateOut(BaseModel):
    subject: str
    issuer: str
    cert_kind: str | None
    mud_url: str | None
    not_after: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, c: VerifiedCertificate) -> CertificateOut:
        return cls(subject=c.subject, issuer=c.issuer, cert_kind=c.cert_kind.value if c.cert_kind else None,
                   mud_url=c.mud_url, not_after=c.not_after, updated_at=c.updated_at)


class DecisionOut(BaseModel):
    id: int
    time: datetime
    device_id: int | None
    device: str
    nas_ip: str | None
    nas_identifier: str | None
    nas_port: str | None
    mac: str | None
    outcome: str
    vlan: int | None
    segment: str | None
    reasons: list[str]
    policy_revision: str | None

    @classmethod
    def of(cls, d: LoggedDecision) -> DecisionOut:
        e = d.entry
        return cls(id=d.id, time=e.time, device_id=e.device_id, device=e.device, nas_ip=e.context.nas_ip,
                   nas_identifier=e.context.nas_identifier, nas_port=e.context.nas_port,
                   mac=e.context.calling_station_id, outcome=e.outcome.value, vlan=e.vlan, segment=e.segment,
                   reasons=list(e.reasons), policy_revision=e.policy_revision)


class LifecycleOut(BaseModel):
    time: datetime
    actor: str
    action: str
    from_state: str
    to_state: str
    reason: str | None

    @classmethod
    def of(cls, e: LifecycleEvent) -> LifecycleOut:
        return cls(time=e.time, actor=e.actor, action=e.action, from_state=e.from_state, to_state=e.to_state,
                   reason=e.reason)


class JobOut(BaseModel):
    id: int
    device_id: int | None
    session_id: int | None
    target: str
    lock_key: str
    state: str
    reason: str
    attempts: int
    max_attempts: int
    not_before: datetime
    lease_until: datetime | None
    worker: str | None
    step: int
    failure: str | None
    failures: int
    steps: list[dict[str, Any]]
    fallback: list[dict[str, Any]]
    log: list[dict[str, Any]]
    bounce_in_progress: list[str] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, j: Job) -> JobOut:
        return cls(id=j.id, device_id=j.device_id, session_id=j.session_id, target=j.target, lock_key=j.lock_key,
                   state=j.state, reason=j.reason, attempts=j.attempts, max_attempts=j.max_attempts,
                   not_before=j.not_before, lease_until=j.lease_until, worker=j.worker, step=j.step,
                   failure=j.failure, failures=j.failures, steps=plain(j.plan.steps), fallback=plain(j.plan.fallback),
                   log=plain(j.log), bounce_in_progress=list(j.bounce_in_progress) if j.bounce_in_progress else None,
                   created_at=j.created_at, updated_at=j.updated_at)


class DeviceDetailOut(BaseModel):
    device: DeviceOut
    certificate: CertificateOut | None = Field(description="the certificate it last authenticated with")
    connected: list[ConnectedOut]
    sessions: list[dict[str, Any]]
    decisions: list[DecisionOut]
    lifecycle: list[LifecycleOut]
    jobs: list[JobOut]
    attestation: list[dict[str, Any]]


class DeviceAddIn(StrictText):
    certificate: str | None = Field(default=None, max_length=65536,
                                    description="the device certificate (PEM); validated as RADIUS would")
    chain: str | None = Field(default=None, max_length=65536, description="intermediate CA certificates (PEM)")
    issuer: str | None = Field(default=None, max_length=1024, description="issuer DN, one-line form /C=../CN=..")
    serial: str | None = Field(default=None, max_length=128, description="subject serialNumber")
    state: Literal["pending", "onboarding", "operational", "quarantined", "decommissioned"] = "operational"
    segment: str | None = Field(default=None, max_length=64)
    owner: str | None = Field(default=None, max_length=256)
    notes: str | None = Field(default=None, max_length=2000)
    force: bool = Field(default=False, description="register a certificate the RADIUS path would reject")


class ActionIn(StrictText):
    reason: str | None = Field(default=None, max_length=500, description="recorded in the audit log")
    segment: str | None = Field(default=None, max_length=64, description="segment to place the device(s) in")


class BulkActionIn(ActionIn):
    devices: list[str] = Field(min_length=1, max_length=1000, description="registry ids or serial numbers")

    @field_validator("devices")
    @classmethod
    def _refs(cls, value: list[str]) -> list[str]:
        if any(not 1 <= len(ref) <= 128 for ref in value):
            raise ValueError("each device is a registry id or serial number of 1 to 128 characters")
        return value


class ChangedOut(BaseModel):
    device: DeviceOut
    from_state: str
    denied: bool = Field(description="the certificate was added to the deny list")
    jobs: list[int] = Field(description="enforcement jobs queued for its connected sessions")


class ActionOut(BaseModel):
    changed: list[ChangedOut]
    errors: list[str] = Field(description="devices the action was refused for, and why")
    enforcement: str | None
    warnings: list[str] = Field(description="connected devices that stay where they are, and why")


# -- sessions, audit, overview ---------------------------------------------------------------------------------

class SessionOut(BaseModel):
    id: int
    device_id: int | None
    nas_ip: str | None
    nas_identifier: str | None
    nas_port: str | None
    calling_station_id: str
    acct_session_id: str | None
    vlan: int | None
    vlan_read_back_at: datetime | None
    source: str

    @classmethod
    def of(cls, s: SessionView) -> SessionOut:
        return cls(**plain(s))


class SessionIn(StrictText):
    device: str = Field(min_length=1, max_length=128, description="registry id or serial number")
    nas: str = Field(min_length=1, max_length=64, description="NAS-IP-Address or NAS-Identifier")
    port: str = Field(min_length=1, max_length=64, description="NAS-Port or NAS-Port-Id")
    mac: str = Field(min_length=1, max_length=64, description="the device's MAC (Calling-Station-Id)")
    vlan: int | None = Field(default=None, ge=1, le=4094, description="the VLAN it is in now, if known")


class ClearedOut(BaseModel):
    device_id: int
    ended: int


class AuditOut(BaseModel):
    time: datetime
    actor: str
    action: str
    target: str
    detail: str | None

    @classmethod
    def of(cls, a: AuditItem) -> AuditOut:
        return cls(**plain(a))


class OverviewOut(BaseModel):
    devices: dict[str, int] = Field(description="devices by state")
    decisions: dict[str, int] = Field(description="decisions by outcome, last 24 h")
    active_sessions: int
    jobs: dict[str, Any]
    failed_jobs: list[JobOut]
    crls: list[dict[str, Any]]
    directory: dict[str, Any] | None
    directory_name: str | None


class JobCancelIn(BaseModel):
    force: bool = Field(default=False, description="cancel even a running job")


# -- policy and decide -----------------------------------------------------------------------------------------

class ProblemItem(BaseModel):
    location: str
    message: str


class PolicyOut(BaseModel):
    policy_revision: str | None
    rules: list[dict[str, Any]] = Field(description="the effective rules in order (as 'policy check --explain')")
    fallbacks: dict[str, str | None] = Field(description="segments used when no rule matches")
    admit_unregistered: list[str]


class PolicyCheckIn(StrictText):
    document: str = Field(min_length=1, max_length=200_000,
                          description="a policy file (YAML: segments, sites, policy); checked, never applied")


class PolicyCheckOut(BaseModel):
    ok: bool
    problems: list[ProblemItem]
    rules: list[str]
    admit_unregistered: list[str]
    policy_revision: str | None


class DecideIn(StrictText):
    certificate: str = Field(min_length=1, max_length=65536, description="the device certificate (PEM)")
    chain: str | None = Field(default=None, max_length=65536, description="intermediate CA certificates (PEM)")
    nas_ip: str | None = Field(default=None, max_length=64, description="NAS-IP-Address of the request")
    nas_port: str | None = Field(default=None, max_length=64, description="NAS-Port / NAS-Port-Id")


class CheckOut(BaseModel):
    name: str
    ok: bool | None
    detail: str


class DecisionResult(BaseModel):
    outcome: str
    vlan: int | None
    segment: str | None
    rule: str | None
    filter_id: str | None
    reasons: list[str]


class DecideOut(BaseModel):
    device: dict[str, Any] | None
    checks: list[CheckOut]
    decision: DecisionResult
    policy_revision: str | None


# -- tokens and users ------------------------------------------------------------------------------------------

class TokenOut(BaseModel):
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenIn(StrictText):
    name: str = Field(min_length=1, max_length=64)
    role: RoleName = "viewer"


class TokenCreatedOut(BaseModel):
    token: TokenOut
    secret: str = Field(description="the bearer token: shown once, only its SHA-256 is kept")
    note: str


class UserOut(BaseModel):
    name: str
    role: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None


class UserIn(StrictText):
    name: str = Field(min_length=1, max_length=64)
    role: RoleName = "viewer"
    password: str = Field(min_length=12, max_length=1024)


class PasswordIn(StrictText):
    password: str = Field(min_length=12, max_length=1024)


class Done(BaseModel):
    ok: bool = True
    message: str
