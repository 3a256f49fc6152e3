"""The journal's line format: one JSON object per record, holding only what the apply step reads.

``encode_*`` run on the authentication path (one pre-built encoder, no validation beyond the types mypy checks);
``decode`` runs in the drainer and refuses anything that is not exactly what ``encode_*`` write (``ValueError``):
a torn or corrupted line, a bool where an id belongs, a naive time, an unknown outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from policy.model import AuditNote, CertificateFacts, CertKind, DecisionLogEntry, NetworkContext, Outcome

_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, check_circular=False, separators=(",", ":"))


@dataclass(frozen=True)
class DecisionRecord:
    """The arguments of ``SqlDeviceStore.append_decision``."""

    entry: DecisionLogEntry
    seen: CertificateFacts | None
    audit: AuditNote | None
    kind: CertKind | None


@dataclass(frozen=True)
class SessionRecord:
    """The arguments of ``SqlSessionStore.authenticated``."""

    device_id: int | None
    context: NetworkContext
    vlan: int | None
    segment: str | None
    now: datetime
    acct_session_id: str | None
    # the registry generation the hook's cache had applied when it decided (-1: unknown, read directly)
    decided_at: int = -1


Record = DecisionRecord | SessionRecord


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def encode_decision(entry: DecisionLogEntry, seen: CertificateFacts | None, audit: AuditNote | None,
                    kind: CertKind | None) -> bytes:
    """One complete journal line; only what ``append_decision_in`` reads."""
    ctx = entry.context
    record: dict[str, Any] = {
        "r": "decision", "time": entry.time.isoformat(), "device_id": entry.device_id, "device": entry.device,
        "nas_ip": ctx.nas_ip, "nas_identifier": ctx.nas_identifier, "nas_port": ctx.nas_port,
        "calling_station_id": ctx.calling_station_id, "user_name": ctx.user_name, "outcome": entry.outcome.value,
        "vlan": entry.vlan, "segment": entry.segment, "reasons": list(entry.reasons),
        "policy_revision": entry.policy_revision, "kind": None if kind is None else kind.value,
    }
    if seen is not None:
        record["seen"] = {"source": seen.source, "subject": seen.subject, "issuer": seen.issuer,
                          "cert_serial": seen.cert_serial, "fingerprint_sha256": seen.fingerprint_sha256,
                          "spki_sha256": seen.spki_sha256, "mud_url": seen.mud_url, "not_after": _time(seen.not_after)}
    if audit is not None:
        record["audit"] = [audit.actor, audit.action, audit.state, audit.reason]
    return (_ENCODER.encode(record) + "\n").encode("ascii")


def encode_session(device_id: int | None, context: NetworkContext, vlan: int | None, segment: str | None,
                   now: datetime, acct_session_id: str | None, decided_at: int = -1) -> bytes:
    record = {"r": "session", "device_id": device_id, "nas_ip": context.nas_ip,
              "nas_identifier": context.nas_identifier, "nas_port": context.nas_port,
              "calling_station_id": context.calling_station_id, "user_name": context.user_name, "vlan": vlan,
              "segment": segment, "now": now.isoformat(), "acct_session_id": acct_session_id,
              "decided_at": decided_at}
    return (_ENCODER.encode(record) + "\n").encode("ascii")


def _get(obj: dict[str, Any], key: str, kind: type, optional: bool = True) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"field {key!r} is {value!r}, not {kind.__name__}")
    return value


def _aware(text: Any, key: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"field {key!r} is {text!r}, not a time")
    value = datetime.fromisoformat(text)
    if value.utcoffset() is None:
        raise ValueError(f"field {key!r} is a naive time ({text})")
    return value


def _context(obj: dict[str, Any]) -> NetworkContext:
    return NetworkContext(*(_get(obj, key, str) for key in ("nas_ip", "nas_identifier", "nas_port",
                                                            "calling_station_id", "user_name")))


def decode(line: bytes) -> Record:
    """A journal line back into the arguments it was written with; ValueError when it is not one."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if obj.get("r") == "session":
        return SessionRecord(_get(obj, "device_id", int), _context(obj), _get(obj, "vlan", int),
                             _get(obj, "segment", str), _aware(obj.get("now"), "now"),
                             _get(obj, "acct_session_id", str), _get(obj, "decided_at", int) or -1)
    if obj.get("r") != "decision":
        raise ValueError(f"unknown record type {obj.get('r')!r}")
    reasons = _get(obj, "reasons", list, optional=False)
    if not all(isinstance(r, str) for r in reasons):
        raise ValueError("field 'reasons' holds a non-string")
    entry = DecisionLogEntry(_aware(obj.get("time"), "time"), _get(obj, "device_id", int),
                             _get(obj, "device", str, optional=False), _context(obj),
                             Outcome(_get(obj, "outcome", str, optional=False)), _get(obj, "vlan", int),
                             _get(obj, "segment", str), tuple(reasons), _get(obj, "policy_revision", str))
    seen = None
    if (facts := _get(obj, "seen", dict)) is not None:
        not_after = facts.get("not_after")
        seen = CertificateFacts(
            source=_get(facts, "source", str, optional=False), subject=_get(facts, "subject", str, optional=False),
            issuer=_get(facts, "issuer", str, optional=False),
            cert_serial=_get(facts, "cert_serial", str, optional=False), device_serial=None,
            not_after=None if not_after is None else _aware(not_after, "not_after"),
            mud_url=_get(facts, "mud_url", str), fingerprint_sha256=_get(facts, "fingerprint_sha256", str),
            spki_sha256=_get(facts, "spki_sha256", str))
    audit = None
    if (note := _get(obj, "audit", list)) is not None:
        if len(note) != 4 or not all(isinstance(part, str) for part in note):
            raise ValueError("field 'audit' is not [actor, action, state, reason]")
        audit = AuditNote(*note)
    kind = _get(obj, "kind", str)
    return DecisionRecord(entry, seen, audit, None if kind is None else CertKind(kind))
