"""Validation + registry lookup + policy decision + recording: the one path shared by the RADIUS hook and
``trustport decide``. No network I/O except the registry database (short timeouts, fail closed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from policy.certificates import validate_certificate
from policy.decide import decide
from policy.model import (
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
from policy.store import DeviceStore
from radius_hooks.settings import HookSettings
from radius_hooks.trust import TrustMaterial


@dataclass(frozen=True)
class AuthResult:
    facts: CertificateFacts
    verdict: CertificateVerdict
    device: DeviceRecord | None
    decision: Decision


def device_key(facts: CertificateFacts) -> DeviceKey | None:
    return DeviceKey(facts.issuer, facts.device_serial) if facts.device_serial else None


def device_label(facts: CertificateFacts) -> str:
    key = device_key(facts)
    return str(key) if key else f"{facts.subject} @ {facts.issuer}"


class Authorizer:
    def __init__(self, settings: HookSettings, store: DeviceStore, trust: TrustMaterial,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.store = store
        self.trust = trust
        self._monotonic = monotonic

    @classmethod
    def from_settings(cls, settings: HookSettings) -> Authorizer:
        from policy.store_sql import SqlDeviceStore  # the SQL driver is only needed when a store is built here

        trust = TrustMaterial.load(settings.anchors, settings.crl_dir, settings.crl_refresh_seconds, time.monotonic)
        return cls(settings, SqlDeviceStore(settings.database_url), trust)

    def evaluate(self, facts: CertificateFacts, now: datetime, extra_checks: tuple[Check, ...] = ()) -> AuthResult:
        """Decide without writing anything (``trustport decide``)."""
        self.trust.refresh(self._monotonic())
        verdict = validate_certificate(facts, self.trust.anchors, self.trust.crls, now,
                                       self.settings.revocation, extra_checks)
        key = device_key(facts)
        # looked up even for an invalid certificate, so the decision log names the device it claims to be
        device = self.store.find_device(key) if key is not None else None
        return AuthResult(facts, verdict, device, decide(verdict, device, self.settings.rules))

    def authorize(self, facts: CertificateFacts, context: NetworkContext, now: datetime) -> AuthResult:
        """Decide and record: pending registration, last seen, and the decision log entry."""
        result = self.evaluate(facts, now)
        device = result.device
        key = device_key(facts)
        if result.decision.register_pending and key is not None and result.verdict.kind is not None:
            device = self.store.register_pending(key, facts, result.verdict.kind, now)
        elif device is not None and result.decision.outcome is not Outcome.REJECT:
            self.store.record_seen(device.id, facts, now)
        self.record(now, device.id if device else None, device_label(facts), context, result.decision)
        return AuthResult(result.facts, result.verdict, device, result.decision)

    def record(self, now: datetime, device_id: int | None, label: str, context: NetworkContext,
               decision: Decision) -> None:
        self.store.append_decision(DecisionLogEntry(
            time=now, device_id=device_id, device=label, context=context, outcome=decision.outcome,
            vlan=decision.vlan, segment=decision.segment, reasons=decision.reasons,
        ))
