"""Per-call cost of the registry on the authentication path: ``find_device`` + ``append_decision``.

Usage: ``python bench/bench_store.py [-n 1000] [--postgres-url URL] [--json bench/results/store.json]``.
Without ``--postgres-url`` a throw-away PostgreSQL cluster is started (durable settings: fsync on, like
production). Baselines in the same run: a bare ``SELECT 1`` on a held connection, and ``ping()`` (``SELECT 1``
through the store's pooled transaction path).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from policy.model import (
    CertificateFacts,
    CertKind,
    DecisionLogEntry,
    DeviceKey,
    LifecycleState,
    NetworkContext,
    Outcome,
)
from trustport.store.sql import SqlDeviceStore

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def timed(fn: Callable[[int], object], n: int) -> list[float]:
    for i in range(min(50, n)):  # warm up pools, caches, statement cache
        fn(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def row(name: str, samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    return f"  {name:<34} median {statistics.median(samples):8.1f} us   p95 {p95:8.1f} us"


def bench(label: str, url: str, n: int) -> dict[str, dict[str, float]]:
    with SqlDeviceStore(url, create=True) as store:
        keys = [DeviceKey("/CN=Bench CA", f"SN-{i:05d}") for i in range(200)]
        for i, key in enumerate(keys):
            facts = CertificateFacts(
                source="radius",
                subject=f"/CN=d{i}",
                issuer=key.issuer,
                cert_serial=f"{i:x}",
                device_serial=key.serial_number,
            )
            store.add_device(
                key, state=LifecycleState.OPERATIONAL, now=NOW, segment="s", cert_kind=CertKind.IDEVID, facts=facts
            )
        ids = {d.key: d.id for d in store.list_devices()}

        def find(i: int) -> object:
            return store.find_device(keys[i % len(keys)])

        def append(i: int) -> None:
            key = keys[i % len(keys)]
            store.append_decision(
                DecisionLogEntry(
                    time=NOW + timedelta(microseconds=i),
                    device_id=ids[key],
                    device=str(key),
                    context=NetworkContext(nas_ip="192.0.2.1", nas_port="Gi1/0/7", calling_station_id="aa-bb"),
                    outcome=Outcome.ACCEPT,
                    vlan=20,
                    segment="s",
                    reasons=("certificate valid", "device operational"),
                )
            )

        def both(i: int) -> None:
            find(i)
            append(i)

        with store._engine.connect() as conn:
            select_one = sa.text("SELECT 1")
            raw = timed(lambda _i: conn.execute(select_one).scalar_one(), n)
        ping = timed(lambda _i: store.ping(), n)
        finds = timed(find, n)
        appends = timed(append, n)
        pairs = timed(both, n)
    print(f"{label}  (n={n})")
    print(row("SELECT 1 on a held connection", raw))
    print(row("ping(): SELECT 1 via store txn", ping))
    print(row("find_device", finds))
    print(row("append_decision", appends))
    print(row("find_device + append_decision", pairs))
    return {name: {"median_us": round(statistics.median(s), 1), "p95_us": round(sorted(s)[int(len(s) * 0.95) - 1], 1)}
            for name, s in (("select_1", raw), ("ping", ping), ("find_device", finds), ("append_decision", appends),
                            ("find_device+append_decision", pairs))}


@contextmanager
def postgres_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from tests.support.postgres import running_postgres

    with running_postgres(durable=True) as server:
        yield server.create_database("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--postgres-url")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "store.json",
                        help="raw results (bench/results/store.json)")
    args = parser.parse_args()
    out: dict[str, object] = {"bench": "store", "time": datetime.now(UTC).isoformat(), "n": args.n}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = bench(f"SQLite (WAL, synchronous=NORMAL, file in {tmp})", f"sqlite:///{tmp}/bench.db", args.n)
    if not args.skip_postgres:
        with postgres_url(args.postgres_url) as url:
            out["postgres"] = bench("PostgreSQL 127.0.0.1 (fsync on)", url, args.n)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
