"""What the RADIUS hook writes, as data: the same operations applied directly (``append_decision`` /
``authenticated``) and through ``trustport.store.journal`` must leave identical rows, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from policy.model import (
    AuditNote,
    CertificateFacts,
    CertKind,
    DecisionLogEntry,
    DeviceKey,
    LifecycleState,
    NetworkContext,
    Outcome,
)
from tests.support.store_contract import ISSUER, NOW, facts_for
from trustport.store.journal import Journal
from trustport.store.schema import decision_log, device_certificates, devices, lifecycle_events, sessions
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore

ROOT = Path(__file__).resolve().parents[2]
TABLES = (devices, decision_log, device_certificates, lifecycle_events, sessions)
MAC = "02:00:00:00:00:01"
CTX = NetworkContext(nas_ip="192.0.2.1", nas_port="Gi1/0/7", calling_station_id=MAC, user_name="dev-1")


@dataclass(frozen=True)
class Decision:
    device: int | None  # index into the seeded devices (None: not in the registry)
    seen: CertificateFacts | None = None
    audit: AuditNote | None = None
    kind: CertKind | None = None
    outcome: Outcome = Outcome.ACCEPT
    at: timedelta = timedelta(0)
    context: NetworkContext = CTX
    reasons: tuple[str, ...] = ("certificate valid",)
    revision: str | None = "rev-1"
    tz: timezone = UTC


@dataclass(frozen=True)
class Session:
    device: int | None
    vlan: int | None = 20
    segment: str | None = "sensors"
    at: timedelta = timedelta(0)
    context: NetworkContext = CTX
    acct_session_id: str | None = None


Op = Decision | Session


def seed(store: SqlDeviceStore) -> list[int]:
    """Three devices: never seen (no certificate yet), bound to a certificate, pending."""
    ids = []
    for n, (state, facts) in enumerate(((LifecycleState.OPERATIONAL, None),
                                        (LifecycleState.OPERATIONAL, facts_for(DeviceKey(ISSUER, "SN-0002"))),
                                        (LifecycleState.PENDING, None))):
        key = DeviceKey(ISSUER, f"SN-000{n + 1}")
        ids.append(store.add_device(key, state=state, now=NOW, cert_kind=CertKind.IDEVID, facts=facts).id)
    return ids


def decision_args(op: Decision, ids: Sequence[int]) -> tuple[DecisionLogEntry, dict[str, Any]]:
    device_id = None if op.device is None else ids[op.device]
    entry = DecisionLogEntry(
        time=(NOW + op.at).astimezone(op.tz), device_id=device_id, device=f"SN-{op.device} @ {ISSUER}",
        context=op.context, outcome=op.outcome, vlan=None if op.outcome is Outcome.REJECT else 20,
        segment=None if op.outcome is Outcome.REJECT else "sensors", reasons=op.reasons, policy_revision=op.revision)
    return entry, {"seen": op.seen, "audit": op.audit, "kind": op.kind}


def session_args(op: Session, ids: Sequence[int]) -> tuple[Any, ...]:
    return (None if op.device is None else ids[op.device], op.context, op.vlan, op.segment, NOW + op.at,
            op.acct_session_id)


def apply_direct(store: SqlDeviceStore, ids: Sequence[int], ops: Sequence[Op]) -> None:
    session_store = SqlSessionStore(store)
    for op in ops:
        if isinstance(op, Decision):
            entry, kw = decision_args(op, ids)
            store.append_decision(entry, **kw)
        else:
            session_store.authenticated(*session_args(op, ids))


def apply_journal(journal: Journal, ids: Sequence[int], ops: Sequence[Op]) -> None:
    for op in ops:
        if isinstance(op, Decision):
            entry, kw = decision_args(op, ids)
            journal.decision(entry, **kw)
        else:
            journal.session(*session_args(op, ids))


def dump(store: SqlDeviceStore) -> dict[str, list[tuple[Any, ...]]]:
    with store.transaction("reading the tables a journal writes") as conn:
        return {table.name: [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
                for table in TABLES}


def count(store: SqlDeviceStore, table: sa.Table = decision_log) -> int:
    with store.transaction("counting") as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def reasons_logged(store: SqlDeviceStore) -> list[str]:
    """The first reason of every decision_log row, in insertion order (tests tag each record with one)."""
    import json

    with store.transaction("reading reasons") as conn:
        rows = conn.execute(sa.select(decision_log.c.reasons).order_by(decision_log.c.id)).scalars()
        return [json.loads(r)[0] for r in rows]


PLUS2 = timezone(timedelta(hours=2))
SEEN_FIRST = facts_for(DeviceKey(ISSUER, "SN-0001"), cert_serial="1f", fingerprint_sha256="AB:CD:EF:01",
                       spki_sha256="5a" * 32, mud_url="https://mud.example/d1.json",
                       not_after=(NOW + timedelta(days=365, microseconds=7)).astimezone(PLUS2))
SEEN_OTHER = facts_for(DeviceKey(ISSUER, "SN-0001"), cert_serial="2e", fingerprint_sha256="99" * 32,
                       spki_sha256="6b" * 32, mud_url=None, subject="/CN=other\n/CN=x")
HOSTILE = ("line\nbreak", '"},{"r":"session","device_id":1}', "ü \u2028 \t tab", "\\", "")

CASES: dict[str, list[Op]] = {
    "reject, device unknown": [Decision(None, outcome=Outcome.REJECT, reasons=("unknown issuer",))],
    "first use binds serial, fingerprint, spki, mud": [Decision(0, seen=SEEN_FIRST, kind=CertKind.IDEVID)],
    "second certificate does not rebind": [Decision(0, seen=SEEN_FIRST, kind=CertKind.IDEVID),
                                           Decision(0, seen=SEEN_OTHER, kind=CertKind.LDEVID, at=timedelta(seconds=5))],
    "seen + audit": [Decision(1, seen=facts_for(DeviceKey(ISSUER, "SN-0002")), kind=CertKind.IDEVID,
                              audit=AuditNote("radius", "certificate-mismatch", "operational", "x" * 2500))],
    "audit without seen": [Decision(1, audit=AuditNote("radius", "certificate-bound", "operational", "why"),
                                    outcome=Outcome.QUARANTINE)],
    "hostile text, other time zone": [Decision(2, seen=SEEN_OTHER, reasons=HOSTILE, tz=PLUS2, revision=None,
                                               context=NetworkContext("2001:db8::1", "nas-ü", "port\n1", MAC, "u\"'")),
                                      Session(2, context=NetworkContext(None, "nas-ü", "port\n1", MAC, "u\"'"))],
    "sessions: open, refresh, VLAN change, acct id, MAC spelling, no MAC": [
        Session(0), Session(0, at=timedelta(seconds=1), acct_session_id="A-1"),
        Session(0, vlan=30, segment="iot", at=timedelta(seconds=2)),
        Session(1, context=NetworkContext(nas_ip="192.0.2.1", calling_station_id="02-00-00-00-00-02")),
        Session(1, context=NetworkContext(nas_ip="192.0.2.1", calling_station_id="0200.0000.0002"),
                at=timedelta(seconds=3)),
        Session(None, context=NetworkContext(nas_ip="192.0.2.9")),
    ],
    "decision then session, as the hook does": [Decision(0, seen=SEEN_FIRST, kind=CertKind.IDEVID), Session(0),
                                                Decision(0, seen=SEEN_FIRST, at=timedelta(minutes=1)),
                                                Session(0, at=timedelta(minutes=1), vlan=None, segment=None)],
}


def compare(make_store: Callable[[], SqlDeviceStore], directory: Path, ops: Sequence[Op]) -> None:
    """The table test itself: one fresh registry per path, same seed, same operations, identical rows."""
    with make_store() as direct, make_store() as journaled:
        ids = seed(direct)
        assert seed(journaled) == ids
        apply_direct(direct, ids, ops)
        journal = Journal(directory, journaled, owner="test", report=lambda _m: None)
        try:
            apply_journal(journal, ids, ops)
            assert count(journaled) == 0 and count(journaled, sessions) == 0  # nothing written before the drain
            journal.drain()
            assert journal.status().pending_bytes == 0
        finally:
            journal.close()
        expected, got = dump(direct), dump(journaled)
        assert expected["decision_log"] or expected["sessions"]  # the case wrote something
        for table in TABLES:
            assert got[table.name] == expected[table.name], table.name


# -- a writer in another process (crash tests) -----------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, sys, time
    from datetime import timedelta
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from policy.model import NetworkContext, Outcome
    from tests.support.journal_cases import tagged
    from trustport.store.journal import Journal
    from trustport.store.sql import SqlDeviceStore
    store = SqlDeviceStore({url!r})
    journal = Journal(Path({directory!r}), store, owner="child", batch={batch})
    for i in range({n}):
        journal.decision(tagged({device_id}, f"r-{{i}}"))
    mode = {mode!r}
    if mode == "drain":
        journal.drain()
        print("drained", flush=True)
        os._exit(0)  # committed, and died before anything else (no close, no unlink)
    if mode == "thread":
        journal.start()
    print("ready", flush=True)
    time.sleep(120)
""")


def tagged(device_id: int | None, tag: str, context: NetworkContext = CTX) -> DecisionLogEntry:
    """A decision whose first reason identifies it (``reasons_logged``)."""
    return DecisionLogEntry(time=NOW, device_id=device_id, device="SN-0001", context=context,
                            outcome=Outcome.ACCEPT, vlan=20, segment="s", reasons=(tag,))


def child(url: str, directory: Path, device_id: int, n: int, mode: str, batch: int = 500) -> subprocess.Popen[str]:
    """A process that journals ``n`` tagged decisions, then (mode) drains and exits, starts its drainer thread, or
    just sleeps; it prints one line when it got there."""
    code = CHILD.format(root=str(ROOT), url=url, directory=str(directory), batch=batch, n=n, device_id=device_id,
                        mode=mode)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(0.01)
