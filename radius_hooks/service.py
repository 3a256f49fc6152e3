"""Validation + registry lookup + policy decision + recording: the one path shared by the RADIUS hook and
``trustport decide``. No network I/O except the registry database (short timeouts, fail closed)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from policy.attestation import AttestationStanding
from policy.certificates import BINDING, check_binding, find_anchor, validate_certificate
from policy.decide import decide
from policy.model import (
    AuditNote,
    CertificateFacts,
    CertificateVerdict,
    Check,
    Decision,
    DecisionLogEntry,
    DeviceKey,
    DeviceRecord,
    NetworkContext,
    Outcome,
)
from policy.sessions_sql import SqlSessionStore
from policy.store import DeviceStore
from radius_hooks.attestation_gate import AttestationGate
from radius_hooks.mud_lookup import MudLookup, load_signers
from radius_hooks.settings import HookSettings
from radius_hooks.trust import TrustMaterial


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


class Authorizer:
    def __init__(self, settings: HookSettings, store: DeviceStore, trust: TrustMaterial,
                 attestation: AttestationGate | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 deny_list: Callable[[str, str], str | None] | None = None,
                 sessions: SqlSessionStore | None = None, mud: MudLookup | None = None) -> None:
        self.settings = settings
        self.store = store
        self.trust = trust
        self.attestation = attestation
        self._monotonic = monotonic
        self.deny_list = deny_list
        self.sessions = sessions
        self.mud = mud

    @classmethod
    def from_settings(cls, settings: HookSettings) -> Authorizer:
        from policy.attestation_sql import SqlAttestationStore
        from policy.lifecycle_sql import SqlLifecycleStore
        from policy.store_sql import SqlDeviceStore  # the SQL driver is only needed when a store is built here

        trust = TrustMaterial.load(settings.anchors, settings.crl_dir, settings.crl_refresh_seconds, time.monotonic)
        store = SqlDeviceStore(settings.database_url)
        gate = None
        if settings.attestation is not None and settings.rules.attestation is not None:
            gate = AttestationGate(settings.attestation, SqlAttestationStore(store))
        mud = None
        if settings.mud is not None:
            mud = MudLookup(settings.mud.directory, load_signers(settings.mud.signers), settings.mud.require_signature,
                            settings.mud.refresh_seconds)
        return cls(settings, store, trust, gate, deny_list=DenyList(SqlLifecycleStore(store).denied_index).reason,
                   sessions=SqlSessionStore(store), mud=mud)

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
        anchor, _ = find_anchor(facts, self.trust.anchors)
        binding = check_binding(facts, device, anchor.role if anchor is not None else None)
        verdict = validate_certificate(facts, self.trust.anchors, self.trust.crls, now,
                                       self.settings.revocation, (*extra_checks, binding))
        standing = attestation
        if standing is None and self.attestation is not None and device is not None and verdict.valid:
            standing = self.attestation.standing(device, facts, now)
        mud_url = facts.mud_url or (device.mud_url if device is not None else None)
        hint = self.mud.hint(mud_url, now).hint if self.mud is not None and mud_url and verdict.valid else None
        decision = decide(verdict, device, self.settings.rules, standing, facts=facts, context=context, mud=hint)
        return AuthResult(facts, verdict, device, decision, standing)

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
        elif device is not None and result.decision.outcome is not Outcome.REJECT:
            seen = facts
            if device.cert_serial is None:
                audit = AuditNote("radius", "certificate-bound", device.state.value,
                                  f"bound on first use to certificate serial {facts.cert_serial}")
        if device is not None and binding is not None and binding.ok is False:
            audit = AuditNote("radius", "certificate-mismatch", device.state.value,
                              f"{binding.detail}; from {context.calling_station_id} via NAS {context.nas_ip}")
        self.record(now, device.id if device else None, device_label(facts), context, result.decision, seen, audit)
        return AuthResult(result.facts, result.verdict, device, result.decision, result.attestation)

    def record(self, now: datetime, device_id: int | None, label: str, context: NetworkContext,
               decision: Decision, seen: CertificateFacts | None = None, audit: AuditNote | None = None) -> None:
        self.store.append_decision(DecisionLogEntry(
            time=now, device_id=device_id, device=label, context=context, outcome=decision.outcome,
            vlan=decision.vlan, segment=decision.segment, reasons=decision.reasons,
        ), seen=seen, audit=audit)
