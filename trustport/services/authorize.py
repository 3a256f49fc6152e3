"""Validation + registry lookup + policy decision + recording: the one path shared by the RADIUS hook and
``trustport decide``; ``PlacementService`` also serves the enforcement planner, so all three build the same
``PlacementInput`` and call the same ``policy.decide.place``. No network I/O except the registry database (short
timeouts, fail closed)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from policy.attestation import AttestationStanding
from policy.certificates import BINDING, check_binding, validate_certificate
from policy.decide import place
from policy.model import (
    AuditNote,
    CertificateFacts,
    CertificateVerdict,
    CertKind,
    Check,
    Decision,
    DecisionLogEntry,
    DeviceKey,
    DeviceRecord,
    NetworkContext,
    Outcome,
    PlacementInput,
)
from policy.mud import MudHint
from policy.store import DeviceStore
from trustport.services.attestation_gate import AttestationGate
from trustport.services.mud_lookup import MudLookup
from trustport.services.trust import TrustMaterial
from trustport.settings.hook import HookSettings
from trustport.store.protocols import SessionRepository

BOUND = "certificate-bound"  # the audit action of a binding on first use


@dataclass(frozen=True)
class AuthResult:
    facts: CertificateFacts
    verdict: CertificateVerdict
    device: DeviceRecord | None
    decision: Decision
    attestation: AttestationStanding | None = None


def device_key(facts: CertificateFacts) -> DeviceKey | None:
    return DeviceKey(facts.issuer, facts.device_serial) if facts.device_serial else None


def device_label(facts: CertificateFacts) -> str:
    key = device_key(facts)
    return str(key) if key else f"{facts.subject} @ {facts.issuer}"


class DenyList:
    """The local deny list, held in memory and re-read at most every ``ttl`` seconds (one query, not one per
    authentication). A revoked device is also decommissioned in the registry, which is read on every
    authentication, so the cache never lets it in."""

    def __init__(self, load: Callable[[], Mapping[tuple[str, str], str]], ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._index: Mapping[tuple[str, str], str] = {}
        self._loaded_at: float | None = None

    def reason(self, issuer: str, cert_serial: str) -> str | None:
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._ttl:
            self._index = self._load()
            self._loaded_at = now
        return self._index.get((issuer, cert_serial.lower()))


def attestation_gate(settings: HookSettings, store: Any) -> AttestationGate | None:
    """The attestation gate of these settings over ``store`` (a SqlDeviceStore), or None when not configured."""
    # also without attestation placement: a rule may still match on `attestation:`
    if settings.attestation is None:
        return None
    from trustport.store.attestation import SqlAttestationStore

    return AttestationGate(settings.attestation, SqlAttestationStore(store))


def mud_lookup(settings: HookSettings) -> MudLookup | None:
    if settings.mud is None:
        return None
    return settings.mud.lookup(Path("/"))  # its paths are absolute


def registry_facts(device: DeviceRecord) -> CertificateFacts:
    """What the registry alone knows of a device's certificate (no verified certificate recorded yet)."""
    return CertificateFacts(source="registry", subject="", issuer=device.key.issuer,
                            cert_serial=device.cert_serial or "", device_serial=device.key.serial_number,
                            mud_url=device.mud_url)


class PlacementService:
    """Builds the one ``PlacementInput`` from what a path knows and places it with the one ``place``.

    The hook and ``trustport decide`` know the certificate presented now; the enforcement planner knows the
    device's last verified certificate (``device_certificates``, written at accept time). Both look the MUD hint
    up from the certificate's MUD URL (else the registry's) and the attestation standing through the same gate."""

    def __init__(self, settings: HookSettings, store: DeviceStore, attestation: AttestationGate | None = None,
                 mud: MudLookup | None = None) -> None:
        self.settings = settings
        self.store = store
        self.attestation = attestation
        self.mud = mud
        self.revision = settings.policy_revision

    @classmethod
    def from_settings(cls, settings: HookSettings, store: Any) -> PlacementService:
        """With the attestation gate and MUD lookup these settings describe, over ``store`` (a SqlDeviceStore)."""
        return cls(settings, store, attestation_gate(settings, store), mud_lookup(settings))

    def mud_hint(self, facts: CertificateFacts | None, device: DeviceRecord | None, verdict: CertificateVerdict,
                 now: datetime) -> MudHint | None:
        mud_url = (facts.mud_url if facts is not None else None) or (device.mud_url if device is not None else None)
        if self.mud is None or not mud_url or not verdict.valid:
            return None
        return self.mud.hint(mud_url, now).hint

    def for_authentication(self, facts: CertificateFacts, verdict: CertificateVerdict, device: DeviceRecord | None,
                           context: NetworkContext | None, now: datetime,
                           attestation: AttestationStanding | None = None) -> PlacementInput:
        standing = attestation
        if standing is None and self.attestation is not None and device is not None and verdict.valid:
            standing = self.attestation.standing(device, facts, now)
        return PlacementInput(verdict, device, facts, context, standing, self.mud_hint(facts, device, verdict, now))

    def for_session(self, device: DeviceRecord, context: NetworkContext, now: datetime) -> PlacementInput:
        """A connected device, from its last verified certificate; the certificate itself is re-validated when it
        re-authenticates, but one that has expired since is treated as invalid here as it will be there."""
        last = self.store.last_certificate(device.id)
        facts = registry_facts(device)
        kind = device.cert_kind
        if last is not None:
            facts = CertificateFacts(source="registry", subject=last.subject, issuer=last.issuer,
                                     cert_serial=device.cert_serial or "", device_serial=device.key.serial_number,
                                     not_after=last.not_after, mud_url=last.mud_url or device.mud_url)
            kind = last.cert_kind or kind
        if facts.not_after is not None and facts.not_after <= now:
            verdict = CertificateVerdict(False, kind, None, (Check(
                "validity", False, f"the certificate last presented expired at {facts.not_after.isoformat()}"),))
        else:
            verdict = CertificateVerdict(True, kind, None, (Check(
                "certificate", None, "last verified at authentication; re-checked at the next one"),))
        standing = self.attestation.standing(device, facts, now) if self.attestation is not None else None
        return PlacementInput(verdict, device, facts, context, standing, self.mud_hint(facts, device, verdict, now))

    def place(self, inputs: PlacementInput) -> Decision:
        return place(inputs, self.settings.rules)


class Authorizer:
    """Built by the composition root (``trustport.app.build_authorizer``) for the hook, ``decide`` and the API."""

    def __init__(self, settings: HookSettings, store: DeviceStore, trust: TrustMaterial,
                 placement: PlacementService, *, monotonic: Callable[[], float] = time.monotonic,
                 deny_list: Callable[[str, str], str | None] | None = None,
                 sessions: SessionRepository | None = None) -> None:
        self.settings = settings
        self.store = store
        self.trust = trust
        self.placement = placement
        self.attestation = placement.attestation
        self.mud = placement.mud
        self._monotonic = monotonic
        self.deny_list = deny_list
        self.sessions = sessions

    @property
    def policy_revision(self) -> str:
        return self.placement.revision

    def evaluate(self, facts: CertificateFacts, now: datetime, extra_checks: tuple[Check, ...] = (),
                 attestation: AttestationStanding | None = None, context: NetworkContext | None = None) -> AuthResult:
        """Decide without writing anything (``trustport decide``); ``attestation`` overrides the stored one."""
        self.trust.refresh(self._monotonic())
        if self.deny_list is not None:
            denied = self.deny_list(facts.issuer, facts.cert_serial)
            extra_checks += (Check("deny-list", False, f"certificate {denied}") if denied
                             else Check("deny-list", True, "not on the local deny list"),)
        key = device_key(facts)
        # looked up even for an invalid certificate, so the decision log names the device it claims to be
        device = self.store.find_device(key) if key is not None else None
        binding = check_binding(facts, device, self.trust.anchors)
        verdict = validate_certificate(facts, self.trust.anchors, self.trust.crls, now,
                                       self.settings.revocation, (*extra_checks, binding))
        inputs = self.placement.for_authentication(facts, verdict, device, context, now, attestation)
        return AuthResult(facts, verdict, device, self.placement.place(inputs), inputs.attestation)

    def authorize(self, facts: CertificateFacts, context: NetworkContext, now: datetime) -> AuthResult:
        """Decide and record: pending registration, last seen (and first-use binding), the decision log entry
        and, for a certificate that is not the registered one, an audit entry for the device it claimed to be."""
        result = self.evaluate(facts, now, context=context)
        device = result.device
        key = device_key(facts)
        seen = audit = None
        binding = next((c for c in result.verdict.checks if c.name == BINDING), None)
        if result.decision.register_pending and key is not None and result.verdict.kind is not None:
            device = self.store.register_pending(key, facts, result.verdict.kind, now)
            seen = facts if result.decision.outcome is not Outcome.REJECT else None  # its verified certificate
        elif device is not None and result.decision.outcome is not Outcome.REJECT:
            seen = facts
            if device.cert_serial is None:
                audit = AuditNote("radius", BOUND, device.state.value,
                                  f"bound on first use to certificate serial {facts.cert_serial}")
        if device is not None and binding is not None and binding.ok is False:
            audit = AuditNote("radius", "certificate-mismatch", device.state.value,
                              f"{binding.detail}; from {context.calling_station_id} via NAS {context.nas_ip}")
        self.record(now, device.id if device else None, device_label(facts), context, result.decision, seen, audit,
                    kind=result.verdict.kind)
        return AuthResult(result.facts, result.verdict, device, result.decision, result.attestation)

    def record(self, now: datetime, device_id: int | None, label: str, context: NetworkContext,
               decision: Decision, seen: CertificateFacts | None = None, audit: AuditNote | None = None,
               *, kind: CertKind | None = None) -> None:
        """The decision log entry (with the policy revision that decided); with ``seen``, the device's last
        verified certificate too, in the same transaction."""
        self.store.append_decision(DecisionLogEntry(
            time=now, device_id=device_id, device=label, context=context, outcome=decision.outcome,
            vlan=decision.vlan, segment=decision.segment, reasons=decision.reasons,
            policy_revision=self.policy_revision,
        ), seen=seen, audit=audit, kind=kind)
