"""Operator actions on devices (approve, quarantine, release, decommission, revoke, re-onboard), with audit.

Each action: the transition is checked by ``policy.lifecycle``, the registry is updated, an audit event is
written (who, when, why), ``revoke`` adds the certificate to the local deny list, and — when enforcement is
configured — jobs are queued that move the device's active sessions to its new placement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from policy.errors import TrustportError
from policy.lifecycle import ACTIONS, TransitionRefused, apply_action
from policy.lifecycle_sql import LifecycleEvent, SqlLifecycleStore
from policy.model import DeviceRecord
from policy.store_sql import SqlDeviceStore
from trustport.config import TrustportConfig
from trustport.enforcement import Enforcement, Queued


@dataclass(frozen=True)
class ActionResult:
    before: DeviceRecord
    after: DeviceRecord
    denied: bool
    queued: list[Queued]


class LifecycleService:
    def __init__(self, config: TrustportConfig, store: SqlDeviceStore) -> None:
        self.config = config
        self.store = store
        self.audit = SqlLifecycleStore(store)
        self.enforcement = Enforcement(config, store) if config.enforcement is not None else None

    def act(self, device: DeviceRecord, action: str, *, actor: str, reason: str | None, now: datetime,
            segment: str | None = None) -> ActionResult:
        if segment is not None and segment not in self.config.segments:
            raise TrustportError(f"segment {segment!r} is not defined; known: {', '.join(self.config.segments)}")
        try:
            target = apply_action(action, device.state)
        except TransitionRefused as exc:
            raise TransitionRefused(f"device #{device.id} {device.key.serial_number}: {exc}") from exc
        line = f"{action} by {actor}: {reason}" if reason else None
        notes = f"{device.notes}\n{line}" if line and device.notes else line
        after = self.store.update_device(device.id, state=target, segment=segment, notes=notes)
        self.audit.record(LifecycleEvent(device.id, now, actor, action, device.state.value, target.value, reason))
        denied = False
        if ACTIONS[action].deny_certificate:
            if not device.cert_serial:
                raise TrustportError(f"device #{device.id} has no known certificate serial to deny; it is "
                                     "decommissioned, but add the certificate to the CRL of its CA as well")
            denied = self.audit.deny(device.key.issuer, device.cert_serial, device_id=device.id, time=now,
                                     actor=actor, reason=reason)
        queued = []
        if self.enforcement is not None:
            queued = self.enforcement.device_changed(after, f"{action} by {actor}" + (f": {reason}" if reason else ""),
                                                     now)
        return ActionResult(device, after, denied, queued)
