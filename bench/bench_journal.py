"""What the hook's writes cost on the authentication path: ``Journal.decision`` + ``Journal.session`` (one JSON line
each, one ``os.write``) against the direct ``append_decision`` + ``SqlSessionStore.authenticated`` it replaces.

Usage: ``python bench/bench_journal.py [-n 2000] [--postgres-url URL | --skip-postgres] [--json PATH]``.
The baseline is the direct calls in the same run, on the same registry and records; the drain rate (records the
background drainer applies per second) is shown too. Without ``--postgres-url`` a throw-away PostgreSQL cluster is
started with durable settings (fsync on), like production.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_store import postgres_url, timed  # the same warm-up and timing as the store bench

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
from trustport.store.journal import Journal
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore

NOW = datetime(2026, 11, 27, tzinfo=UTC)
DEVICES = 200


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return {"median_us": round(statistics.median(ordered), 1), "p99_us": round(p99, 1)}


def bench(label: str, url: str, n: int, journal_dir: Path, sync_each: bool,
          drainer: bool = False) -> dict[str, object]:
    with SqlDeviceStore(url, create=True) as store:
        keys = [DeviceKey("/CN=Bench CA", f"SN-{i:05d}") for i in range(DEVICES)]
        facts = [CertificateFacts(source="radius", subject=f"/CN=d{i}/serialNumber={k.serial_number}",
                                  issuer=k.issuer, cert_serial=f"{i + 1:x}", device_serial=k.serial_number,
                                  fingerprint_sha256=f"{i:064x}", spki_sha256=f"{i + 7:064x}",
                                  not_after=NOW + timedelta(days=365))
                 for i, k in enumerate(keys)]
        ids = [store.add_device(k, state=LifecycleState.OPERATIONAL, now=NOW, segment="s",
                                cert_kind=CertKind.IDEVID).id for k in keys]
        sessions = SqlSessionStore(store)
        audit = AuditNote("radius", "certificate-bound", "operational", "bound on first use to certificate serial 1")

        def args(i: int) -> tuple[DecisionLogEntry, CertificateFacts, NetworkContext]:
            d = i % DEVICES
            context = NetworkContext(nas_ip="192.0.2.1", nas_port=f"Gi1/0/{d}",
                                     calling_station_id=f"02-00-00-00-{d // 256:02X}-{d % 256:02X}", user_name=f"d{d}")
            entry = DecisionLogEntry(time=NOW + timedelta(microseconds=i), device_id=ids[d], device=str(keys[d]),
                                     context=context, outcome=Outcome.ACCEPT, vlan=20, segment="s",
                                     reasons=("certificate valid", "device operational"), policy_revision="r1")
            return entry, facts[d], context

        def direct(i: int) -> None:
            entry, seen, context = args(i)
            store.append_decision(entry, seen, audit if i % 10 == 0 else None, kind=CertKind.IDEVID)
            sessions.authenticated(entry.device_id, context, 20, "s", entry.time, f"acct-{i}")

        journal = Journal(journal_dir, store, owner="bench", sync_each=sync_each)
        prepared = [args(i) for i in range(n + 50)]

        def journaled(i: int) -> None:
            entry, seen, context = prepared[i]
            journal.decision(entry, seen, audit if i % 10 == 0 else None, kind=CertKind.IDEVID)
            journal.session(entry.device_id, context, 20, "s", entry.time, f"acct-{i}")

        baseline = timed(direct, n)
        if drainer:  # the drainer thread applies while the hook appends: it competes for the GIL
            journal.start()
        hot = timed(journaled, n)
        if drainer:
            journal.close(timeout=60)
            journal = Journal(journal_dir, store, owner="bench", sync_each=sync_each)
        pending = journal.status().pending_records
        start = time.perf_counter()
        drained = journal.drain()
        drain_s = time.perf_counter() - start
        journal.close()
    result: dict[str, object] = {
        "direct_append_decision+authenticated": stats(baseline),
        "journal_decision+session": stats(hot),
        "journal_per_record": stats([s / 2 for s in hot]),
        "drain_records": drained, "pending_before_drain": pending,
        "drain_records_per_s": round(drained / drain_s) if drain_s else None,
        "sync_each": sync_each, "drainer_thread_running": drainer,
    }
    print(f"{label}  (n={n}, sync_each={sync_each}, drainer thread running: {drainer})")
    for name in ("direct_append_decision+authenticated", "journal_decision+session", "journal_per_record"):
        s = result[name]
        assert isinstance(s, dict)
        print(f"  {name:<40} median {s['median_us']:9.1f} us   p99 {s['p99_us']:9.1f} us")
    print(f"  {'drain (background)':<40} {drained} records in {drain_s:.2f} s "
          f"({result['drain_records_per_s']} records/s)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--postgres-url")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "journal.json",
                        help="raw results (bench/results/journal.json)")
    args = parser.parse_args()
    out: dict[str, object] = {"bench": "journal", "time": datetime.now(UTC).isoformat(), "n": args.n,
                              "target_us_per_record": 15}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = bench(f"SQLite (WAL, synchronous=NORMAL, in {tmp})", f"sqlite:///{tmp}/bench.db", args.n,
                              Path(tmp) / "journal", sync_each=False)
        out["sqlite_with_drainer"] = bench("SQLite, drainer thread running", f"sqlite:///{tmp}/bench3.db", args.n,
                                           Path(tmp) / "journal3", sync_each=False, drainer=True)
        out["sqlite_sync_each"] = bench("SQLite, journal with sync_each", f"sqlite:///{tmp}/bench2.db", args.n,
                                        Path(tmp) / "journal2", sync_each=True)
    if not args.skip_postgres:
        with postgres_url(args.postgres_url) as url, tempfile.TemporaryDirectory() as tmp:
            out["postgres"] = bench("PostgreSQL 127.0.0.1 (fsync on)", url, args.n, Path(tmp) / "journal",
                                    sync_each=False)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
