"""Registry reads on the authentication path at 10k, 100k and 1M devices, SQLite and PostgreSQL.

What the hook reads from the registry per authentication (``trustport/services/authorize.py``):
``find_device(DeviceKey)`` always, and ``latest_accepted(device_id)`` for a registered device with a valid
certificate when attestation is configured (the lab's config has it). The hook answers both from its
``RegistryCache`` (``cache_*``: warm, registered devices; the refresher thread running as in radiusd; the target is
about these); a miss, an unknown serial (``cache_unknown_device``: never cached) or the cache off reads
``SqlDeviceStore.find_device`` / ``SqlAttestationStore.latest_accepted`` (the direct figures, the fallback). The
deny list is held by the cache (reloaded on a deny-list change); its reload is timed separately. At the largest size
the cache's memory per cached device is measured (tracemalloc, ``--cache-memory-devices`` devices). Writes
(decision log, session) are not lookups: ``bench/bench_journal.py`` and ``bench/bench_store.py`` time them.

Devices are bulk-loaded in one set-based ``INSERT ... SELECT`` over a generated series per table (4 issuers,
LDevID/IDevID, mostly operational; half of them with an accepted attestation result; 1,000 deny-list entries),
then ``ANALYZE``. Lookups: ``--lookups`` random keys, 80 % hits and 20 % misses (an unknown serial of a known
issuer), the same ones for every operation; each iteration runs every operation once, in rotating order, so drift
hits all alike. Baselines in the same run and on the same database: ``SELECT 1`` on a held connection, and a
primary-key lookup of a 1-row table through the store's transaction path (what ``find_device`` pays besides its
index lookup and row mapping). PostgreSQL: a throw-away durable cluster (fsync on) on 127.0.0.1, unless
``--postgres-url``. The database is in the page cache (as on a running server).

    .venv/bin/python bench/bench_registry_scale.py [--sizes 10k,100k,1M] [--lookups 5000]
        [--backends sqlite,postgres] [--json bench/results/registry_scale.json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.postgres

import sqlalchemy as sa

from policy.model import DeviceKey
from trustport.services.registry_cache import RegistryCache
from trustport.store import changes
from trustport.store.attestation import SqlAttestationStore
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.sql import SqlDeviceStore

RESULTS = Path(__file__).resolve().parent / "results" / "registry_scale.json"
TARGET_P99_US = 1000.0
ISSUERS = (
    "/C=DE/O=Acme Devices/CN=Acme Manufacturer IDevID CA",
    "/C=DE/O=Example Site/CN=trustport LDevID CA",
    "/C=DE/O=Example Site/CN=trustport owner CA",
    "/C=US/O=VitalSigns Inc/CN=VitalSigns Device CA",
)
DENIED = 1000


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if factor != 1 else text) * factor)


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size % 1_000_000 == 0 else f"{size // 1000}k" if size % 1000 == 0 else str(size)


def _issuer_case(column: str) -> str:
    return "CASE " + " ".join(f"WHEN {column} % 4 = {n} THEN '{issuer}'" for n, issuer in enumerate(ISSUERS)) + " END"


def load(store: SqlDeviceStore, size: int) -> float:
    """Bulk-load ``size`` devices, an accepted attestation result for every 2nd and the deny list; seconds."""
    started = time.perf_counter()
    sqlite = store._engine.dialect.name == "sqlite"
    if sqlite:
        series = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
        src, ts = "FROM s", "'2026-11-27 00:00:00.000000'"
        serial, hexs = "printf('SN-%08d', i)", "printf('%x', i * 7919)"
        fp, spki = "printf('%064x', i)", "printf('%064x', i + 1000000000)"
        true = "1"
    else:
        series = ""
        src, ts = "FROM generate_series(1, {n}) AS s(i)", "TIMESTAMPTZ '2026-11-27 00:00:00+00'"
        serial, hexs = "'SN-' || lpad(i::text, 8, '0')", "to_hex(i::bigint * 7919)"
        fp, spki = "lpad(to_hex(i), 64, '0')", "lpad(to_hex(i + 1000000000), 64, '0')"
        true = "TRUE"
    devices = (
        f"{series}INSERT INTO devices (id, issuer, serial_number, state, segment, owner, cert_kind, cert_serial, "
        f"fingerprint_sha256, spki_sha256, created_at, updated_at) "
        f"SELECT i, {_issuer_case('i')}, {serial}, "
        f"CASE WHEN i % 50 = 0 THEN 'quarantined' WHEN i % 97 = 0 THEN 'pending' ELSE 'operational' END, "
        f"'production', 'bench', CASE WHEN i % 4 = 0 THEN 'idevid' ELSE 'ldevid' END, {hexs}, {fp}, {spki}, "
        f"{ts}, {ts} {src}")
    results = (
        f"{series}INSERT INTO attestation_results (device_id, received_at, token, token_sha256, accepted, status, "
        f"issued_at, expires_at, binding, vector, reasons) "
        f"SELECT i, {ts}, 'eyJ.bench.token', {fp}, {true}, 2, {ts}, {ts}, 'akpub', '{{{{}}}}', '[]' {src} "
        f"WHERE i % 2 = 0")
    denied = (
        f"{series}INSERT INTO denied_certificates (issuer, cert_serial, device_id, time, actor, reason) "
        f"SELECT {_issuer_case('i')}, {hexs}, i, {ts}, 'bench', 'lost' {src}")
    with store._engine.begin() as conn:
        if not sqlite:
            # The change-feed triggers bump one generation row per inserted row: in one transaction PostgreSQL walks
            # that row's ever longer version chain (quadratic; minutes at 100k). A bulk load before any cache runs
            # needs no feed: load without them (superuser; the throw-away cluster is), else with them.
            with contextlib.suppress(sa.exc.DBAPIError), conn.begin_nested():
                conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text(devices.format(n=size)))
        conn.execute(sa.text(results.format(n=size)))
        conn.execute(sa.text(denied.format(n=min(DENIED, size))))
        conn.execute(sa.text("CREATE TABLE bench_one (id INTEGER PRIMARY KEY, v TEXT)"))
        conn.execute(sa.text("INSERT INTO bench_one VALUES (1, 'x')"))
        if not sqlite:  # keep the sequence ahead of the explicit ids, as a normal load would
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('devices', 'id'), :n)"), {"n": size})
        # the triggers fed one change per row into the feed: drop them now, not in a cache's first refresh
        changes.prune(conn, changes.generation(conn), keep=0)
    if sqlite:
        with store._engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    else:
        with store._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
            conn.execute(sa.text("CHECKPOINT"))  # the load's dirty pages written now, not during the lookups
    return time.perf_counter() - started


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    return {"n": n, "p50_us": round(ordered[n // 2], 1), "p99_us": round(ordered[min(n - 1, int(n * 0.99))], 1),
            "max_us": round(ordered[-1], 1), "mean_us": round(sum(ordered) / n, 1)}


def new_cache(store: SqlDeviceStore, name: str, max_devices: int) -> RegistryCache:
    """A cache as the hook runs it (its defaults: feed read every 0.1 s, 2 s lease; the refresher thread running)."""
    cache = RegistryCache(store, cache_id=f"bench-registry-scale-{name}", max_devices=max_devices)
    if not cache.refresh():
        raise SystemExit(f"{store.display_url}: the registry cache cannot read the change feed")
    cache.start()
    return cache


def measure(store: SqlDeviceStore, size: int, lookups: int, rng: random.Random) -> dict[str, Any]:
    attest = SqlAttestationStore(store)
    keys: list[tuple[DeviceKey, int]] = []
    for _ in range(lookups):
        i = rng.randint(1, size)
        if rng.random() < 0.8:
            keys.append((DeviceKey(ISSUERS[i % 4], f"SN-{i:08d}"), i))
        else:  # a miss: a serial the registry does not hold, of a known issuer
            keys.append((DeviceKey(ISSUERS[i % 4], f"SN-{size + i:08d}"), size + i))
    one = sa.text("SELECT 1")
    pk = sa.text("SELECT id, v FROM bench_one WHERE id = 1")
    found = 0
    cache = new_cache(store, "lookups", max_devices=max(100_000, lookups))
    try:
        with store._engine.connect() as held:
            def select_one(_k: DeviceKey, _i: int) -> object:
                return held.execute(one).scalar_one()

            def pk_lookup(_k: DeviceKey, _i: int) -> object:
                with store.transaction("bench: primary-key lookup of a 1-row table") as conn:
                    return conn.execute(pk).first()

            def find(k: DeviceKey, _i: int) -> object:
                nonlocal found
                device = store.find_device(k)
                found += device is not None
                return device

            def latest(_k: DeviceKey, i: int) -> object:
                return attest.latest_accepted(i)

            def auth_path(k: DeviceKey, _i: int) -> object:
                device = store.find_device(k)
                return attest.latest_accepted(device.id) if device is not None else None

            def cached_find(k: DeviceKey, _i: int) -> object:
                return cache.find_device(k)

            def cached_latest(_k: DeviceKey, i: int) -> object:
                return cache.latest_accepted(i)

            def cached_auth_path(k: DeviceKey, _i: int) -> object:
                device = cache.find_device(k)
                return cache.latest_accepted(device.id) if device is not None else None

            ops: dict[str, Callable[[DeviceKey, int], object]] = {
                "baseline_select_1": select_one, "baseline_pk_1row": pk_lookup, "find_device": find,
                "latest_accepted": latest, "find_device+latest_accepted": auth_path,
                # the hook's lookup (RegistryCache, warm): registered devices only; an unknown serial is never
                # cached, it is read from the registry each time (cache_unknown_device)
                "cache_find_device": cached_find, "cache_latest_accepted": cached_latest,
                "cache_find_device+latest_accepted": cached_auth_path, "cache_unknown_device": cached_find}
            known_only = {"cache_find_device", "cache_latest_accepted", "cache_find_device+latest_accepted"}
            names = list(ops)
            for key, i in keys[:200]:  # warm up pools and statement caches
                for name in names:
                    ops[name](key, i)
            for key, i in keys:  # the cache warm: every registered device of the run once, as its first auth would
                if i <= size:
                    cached_auth_path(key, i)
            before = dict(vars(cache.stats))
            found = 0
            samples: dict[str, list[float]] = {name: [] for name in names}
            for n, (key, i) in enumerate(keys):
                for name in names[n % len(names):] + names[:n % len(names)]:
                    if (name in known_only and i > size) or (name == "cache_unknown_device" and i <= size):
                        continue
                    start = time.perf_counter()
                    ops[name](key, i)
                    samples[name].append((time.perf_counter() - start) * 1e6)
            used = {k: v - before[k] for k, v in vars(cache.stats).items()}
    finally:
        cache.close()
    deny = SqlLifecycleStore(store)
    reload = []
    for _ in range(20):
        start = time.perf_counter()
        deny.denied_index()
        reload.append((time.perf_counter() - start) * 1e6)
    result: dict[str, Any] = {name: stats(values) for name, values in samples.items() if values}
    result["hit_ratio"] = round(found / len(keys), 3)
    result["cache_stats_during_lookups"] = used  # bypassed > 0: the lease lapsed (a slow refresh), registry read
    result["deny_list_reload"] = {**stats(reload), "entries": min(DENIED, size), "every_s": 5}
    return result


def cache_memory(store: SqlDeviceStore, devices: int) -> dict[str, Any]:
    """Python memory the cache holds for ``devices`` cached devices (each with its attestation result; tracemalloc,
    after a collection), extrapolated linearly to 100k."""
    cache = new_cache(store, "memory", max_devices=max(devices, 1))
    try:
        keys = [DeviceKey(ISSUERS[i % 4], f"SN-{i:08d}") for i in range(1, devices + 1)]
        for key in keys[:100]:  # statement caches, pools: not the cache's memory
            device = cache.find_device(key)
            if device is not None:
                cache.latest_accepted(device.id)
        gc.collect()
        tracemalloc.start()
        try:
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            for key in keys[100:]:
                device = cache.find_device(key)
                if device is not None:
                    cache.latest_accepted(device.id)
            fill_s = time.perf_counter() - started
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        counted = len(keys) - 100
        per_device = held / counted if counted else float("nan")
        return {"devices": counted, "bytes_per_device": round(per_device), "fill_s": round(fill_s, 1),
                "mib_per_100k_devices": round(per_device * 100_000 / 2**20, 1),
                "cache_stats": dict(vars(cache.stats)),
                "note": "tracemalloc while filling (find_device + latest_accepted each), after gc; linear to 100k"}
    finally:
        cache.close()


@contextmanager
def postgres_server(given: str | None) -> Iterator[Callable[[str], str]]:
    if given:
        yield lambda _name: given
        return
    from tests.support.postgres import running_postgres

    with running_postgres(durable=True) as server:
        yield server.create_database


def run_backend(backend: str, sizes: list[int], lookups: int, seed: int, pg_url: str | None,
                memory_devices: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="trustport-scale-") as tmp, ExitStack() as stack:
        new_db: Callable[[str], str]
        if backend == "sqlite":
            def new_db(name: str) -> str:
                return f"sqlite:///{tmp}/{name}.db"
        else:
            new_db = stack.enter_context(postgres_server(pg_url))
        for size in sizes:
            url = new_db(f"scale_{label(size).lower()}")
            with SqlDeviceStore(url, create=True, statement_timeout_s=3600) as loader:  # no 2 s limit for the load
                loader.ensure_schema()
                if pg_url and backend == "postgres":
                    with loader._engine.begin() as conn:
                        conn.execute(sa.text("DROP TABLE IF EXISTS bench_one"))
                        for table in ("attestation_results", "denied_certificates", "devices"):
                            conn.execute(sa.text(f"DELETE FROM {table}"))
                load_s = load(loader, size)
            with SqlDeviceStore(url) as store:  # the hook's settings: default timeouts
                print(f"  {backend} {label(size)}: loaded in {load_s:.1f} s; {lookups} lookups ...", flush=True)
                result = measure(store, size, lookups, random.Random(seed))
                result["load_s"] = round(load_s, 1)
                if memory_devices and size == max(sizes):
                    print(f"  {backend} {label(size)}: cache memory for {min(memory_devices, size)} devices ...",
                          flush=True)
                    result["cache_memory"] = cache_memory(store, min(memory_devices, size))
                out[label(size)] = result
                show(backend, size, result)
            if backend == "sqlite":
                Path(f"{tmp}/scale_{label(size).lower()}.db").unlink(missing_ok=True)
    return out


def show(backend: str, size: int, result: dict[str, Any]) -> None:
    print(f"  {backend} {label(size)} devices (hit ratio {result['hit_ratio']:.2f}):")
    for name in ("baseline_select_1", "baseline_pk_1row", "find_device", "latest_accepted",
                 "find_device+latest_accepted", "cache_find_device", "cache_latest_accepted",
                 "cache_find_device+latest_accepted", "cache_unknown_device", "deny_list_reload"):
        r = result.get(name)
        if r is not None:
            print(f"    {name:<34} p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us  max {r['max_us']:9.1f} us")
    print(f"    cache during the lookups: {result['cache_stats_during_lookups']}")
    memory = result.get("cache_memory")
    if memory:
        print(f"    cache memory: {memory['bytes_per_device']} B per cached device ({memory['devices']} filled): "
              f"{memory['mib_per_100k_devices']} MiB per 100k devices")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k,1M", help="device counts, comma-separated (10k,100k,1M)")
    parser.add_argument("--lookups", type=int, default=5000, help="random lookups per operation and size (5000)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres-url", help="an existing, empty PostgreSQL database instead of a throw-away one")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-memory-devices", type=int, default=20_000,
                        help="devices filled into a cache to measure its memory, at the largest size (0: skip)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"raw results ({RESULTS})")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    started = time.perf_counter()
    backends: dict[str, Any] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        try:
            backends[backend] = run_backend(backend, sizes, args.lookups, args.seed, args.postgres_url,
                                            args.cache_memory_devices)
        except Exception as exc:  # PostgreSQL not available: say so, keep SQLite's figures
            if backend != "postgres":
                raise
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"  (PostgreSQL skipped: {reason})")
            backends[backend] = {"skipped": reason}
    for op, what in (("cache_find_device+latest_accepted", "the hook's lookup (cache, warm)"),
                     ("find_device+latest_accepted", "the registry lookup (a miss, or the cache off)")):
        worst = [(b, s, r[op]["p99_us"]) for b, per in backends.items()
                 for s, r in per.items() if isinstance(r, dict) and op in r]
        if worst:
            b, s, p99 = max(worst, key=lambda w: w[2])
            print(f"{what}: p99 < {TARGET_P99_US:.0f} us: {'met' if p99 < TARGET_P99_US else 'NOT met'} "
                  f"(worst {b} {s}: {p99:.0f} us)" + ("  <- the target" if op.startswith("cache") else ""))
    seconds = time.perf_counter() - started
    out = {"bench": "registry_scale", "time": datetime.now(UTC).isoformat(), "host": platform.node(),
           "seconds": round(seconds, 1), "lookups": args.lookups, "target_p99_us": TARGET_P99_US,
           "target_applies_to": "cache_find_device+latest_accepted",
           "sizes": [label(s) for s in sizes], "backends": backends}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"took {seconds:.0f} s; raw results: {args.json}")


if __name__ == "__main__":
    main()
