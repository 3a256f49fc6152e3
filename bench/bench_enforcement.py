"""Enforcement timings against the fake switches (SSH Cisco IOS CLI). Not a test: it prints figures with their
baseline, measured in the same run.

1. quarantine command -> port VLAN read back on one fake switch: LifecycleService.act + worker, median of N runs;
   baseline: the driver alone doing the same set-VLAN + read-back on the same fake.
2. bulk: S fake switches x P ports (default 100 x 100 = 10,000 connected ports), served by F separate processes
   (``python -m trustport_lab.fakes.fake_cli --vendor cisco_ios --switches ...``, not the worker's), quarantined in
   bulk, then worked off by one worker (``--concurrency`` switches at once, every port of a switch in one session,
   one push, one read-back). Every port is read back by the worker, and once more independently afterwards.
   Baseline in the same run: the same worker one port per job (``batch_limit=1``: one push and one read-back per
   port, sessions kept open per switch, as before), on a sample (default 500 ports, 5 on each switch), reported
   as ports/s and extrapolated to all ports.
   Where the time goes is summed over the worker threads (thread-seconds): SSH connect + login, VLAN table
   pre-flight, configuration push, port reads (before and read-back), and DB bookkeeping (claims, per-batch
   updates, session read-backs).

    .venv/bin/python bench/bench_enforcement.py [--runs 10] [--switches 100] [--ports 100] [--processes 4]
        [--concurrency 8] [--baseline-ports 500] [--json bench/results/enforcement.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pki_fixtures

from switch_drivers import Target, default_registry
from switch_drivers.cli import CliDriver
from tests.pki_fixtures import build_test_pki
from trustport.services.enforcement import Enforcement
from trustport.services.lifecycle import LifecycleService
from trustport.settings.config import load_config
from trustport.store.queue import SqlJobQueue
from trustport.store.schema import devices as devices_table
from trustport.store.schema import sessions as sessions_table
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore
from trustport.worker.executor import DriverExecutor
from trustport.worker.loop import Worker, WorkerSettings
from trustport_lab.fakes.fake_cli import FakeCliServer, PortState

PASSWORD, ENABLE = "fake-pass-123", "fake-enable-456"
RESULTS: dict[str, Any] = {}  # the figures printed, written as JSON at the end (--json)
os.environ.update({"TP_BENCH_PASSWORD": PASSWORD, "TP_BENCH_ENABLE": ENABLE})


# -- where the time goes ---------------------------------------------------------------------------------------

class Timings:
    """Thread-seconds per phase, summed over every thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def add(self, phase: str, seconds: float) -> None:
        with self.lock:
            self.seconds[phase] += seconds
            self.calls[phase] += 1

    def reset(self) -> None:
        with self.lock:
            self.seconds.clear()
            self.calls.clear()


TIMINGS = Timings()
PHASES = {  # (class, method) -> phase
    (CliDriver, "_open"): "SSH connect + login",
    (CliDriver, "_read_vlans"): "VLAN table pre-flight",
    (CliDriver, "push_lines"): "configuration push",
    (CliDriver, "read_all_ports"): "port reads (before + read-back)",
    (SqlJobQueue, "claim_batch"): "DB: claim batches",
    (SqlJobQueue, "apply"): "DB: job bookkeeping",
    (SqlSessionStore, "record_read_back"): "DB: session read-backs",
}


def instrument() -> None:
    for (cls, name), phase in PHASES.items():
        original = getattr(cls, name, None)
        if original is None:  # a driver without that method: the phase is simply not reported
            continue

        def timed(*args: Any, _original: Callable[..., Any] = original, _phase: str = phase, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                TIMINGS.add(_phase, time.perf_counter() - start)

        setattr(cls, name, timed)


def report_timings(wall: float, threads: int) -> None:
    total = sum(TIMINGS.seconds.values())
    print(f"  where the time goes (thread-seconds summed over {threads} worker threads; wall {wall:.1f} s):")
    for phase in dict.fromkeys(PHASES.values()):
        if phase in TIMINGS.seconds:
            print(f"    {phase:34} {TIMINGS.seconds[phase]:7.1f} s  ({TIMINGS.calls[phase]} calls)")
    print(f"    {'(everything else: threads waiting, worker logic)':34} "
          f"{max(0.0, wall * threads - total):7.1f} s")


# -- one switch, one port at a time (the latency) ---------------------------------------------------------------

def start_switch(ports: int) -> FakeCliServer:
    server = FakeCliServer(vendors=("cisco_ios",))
    state = server.states["cisco_ios"]
    state.ports = {f"GigabitEthernet1/0/{i}": PortState(vlan=30) for i in range(1, ports + 1)}
    state.vlans |= {30, 999}
    return server.start()


def write_config(work: Path, pki: Any, switch_ports: list[int], known_hosts: str, ports: int) -> Path:
    (work / "known_hosts").write_text(known_hosts)
    inventory = {"switches": {f"sw{n}": {
        "driver": "cisco_ios", "address": "127.0.0.1", "port": port,
        "options": {"username": "admin", "password_env": "TP_BENCH_PASSWORD", "enable_secret_env": "TP_BENCH_ENABLE",
                    "known_hosts": str(work / "known_hosts"), "conn_timeout": 30, "read_timeout": 120}}
        for n, port in enumerate(switch_ports)}}
    (work / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    config = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "clients": [{"name": "nas", "address": "127.0.0.0/8", "secret": "bench-secret-0123456789"}]},
        "trust_anchors": [{"name": "site", "role": "ldevid", "file": str(pki.cert_path("ldevid-ca"))}],
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "enforcement": {"inventory": "inventory.yaml", "max_attempts": 3, "nas": [
            {"nas_ip": nas_ip(n), "switch": f"sw{n}", "bounce": True,
             "ports": {str(p): f"Gi1/0/{p}" for p in range(1, ports + 1)}} for n in range(len(switch_ports))]},
    }
    path = work / "trustport.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def nas_ip(n: int) -> str:
    return f"127.1.{n // 250}.{n % 250 + 1}"


def add_devices(store: SqlDeviceStore, switches: int, ports: int) -> None:
    """Registered operational devices with an active session each (RADIUS said VLAN 30), written in bulk."""
    now = datetime.now(UTC)
    rows = [{"issuer": "/CN=Site LDevID CA", "serial_number": f"SN-{n:03d}-{p:03d}", "state": "operational",
             "segment": "production", "created_at": now, "updated_at": now}
            for n in range(switches) for p in range(1, ports + 1)]
    with store.transaction("bench: devices") as conn:
        conn.execute(devices_table.insert(), rows)
        ids = dict(conn.execute(sa.select(devices_table.c.serial_number, devices_table.c.id)).all())
        conn.execute(sessions_table.insert(), [
            {"device_id": ids[f"SN-{n:03d}-{p:03d}"], "nas_ip": nas_ip(n), "nas_port": str(p),
             "calling_station_id": f"02-00-00-{n // 256:02X}-{n % 256:02X}-{p:02X}", "vlan": 30,
             "segment": "production", "active": True, "started_at": now, "updated_at": now}
            for n in range(switches) for p in range(1, ports + 1)])


def single(work: Path, runs: int) -> tuple[float, float]:
    """Median seconds: driver alone (baseline), and quarantine command -> read-back through the product."""
    with ExitStack() as stack:
        server = start_switch(runs + 1)
        stack.callback(server.stop)
        pki = build_test_pki(work / "pki")
        config = load_config(write_config(work, pki, [server.ports["cisco_ios"]], server.known_hosts_lines(),
                                          runs + 1))
        store = SqlDeviceStore(config.database_url(), create=True)
        stack.callback(store.close)
        add_devices(store, 1, runs)
        driver_times = []
        options = {"username": "admin", "password": PASSWORD, "enable_secret": ENABLE,
                   "known_hosts": work / "known_hosts"}
        for p in range(1, runs + 1):
            start = time.perf_counter()
            with default_registry().create("cisco_ios", Target("sw0", "127.0.0.1", server.ports["cisco_ios"]),
                                           options) as driver:
                driver.set_port_vlan(f"Gi1/0/{p}", 999)
            driver_times.append(time.perf_counter() - start)
            server.states["cisco_ios"].ports[f"GigabitEthernet1/0/{p}"].vlan = 30
        assert config.enforcement is not None
        enforcement = Enforcement(config, store)
        executor = DriverExecutor.from_file(config.path(config.enforcement.inventory))
        read_back: dict[int, float] = {}
        worker = Worker(enforcement.queue, executor, WorkerSettings(concurrency=1), worker_id="bench",
                        on_event=lambda job, msg: read_back.setdefault(job.id, time.perf_counter())
                        if "read back" in msg else None)
        service = LifecycleService(config, store)
        product_times = []
        for device in store.list_devices():
            start = time.perf_counter()
            result = service.act(device, "quarantine", actor="bench", reason=None, now=datetime.now(UTC))
            job = result.queued[0].job
            assert job is not None
            worker.drain()
            product_times.append(read_back[job.id] - start)
    return statistics.median(driver_times), statistics.median(product_times)


# -- many switches in other processes ---------------------------------------------------------------------------

@contextmanager
def fleet(work: Path, switches: int, ports: int, processes: int) -> Iterator[tuple[list[int], str]]:
    """``processes`` fake-switch processes serving ``switches`` switches in all; (TCP ports, known_hosts)."""
    per = [switches // processes + (1 if i < switches % processes else 0) for i in range(processes)]
    procs, files = [], []
    try:
        for i, count in enumerate(c for c in per if c):
            ready, known = work / f"fleet-{i}.json", work / f"fleet-{i}.known_hosts"
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "trustport_lab.fakes.fake_cli", "--vendor", "cisco_ios", "--switches",
                 str(count), "--ports", str(ports), "--ready-file", str(ready), "--known-hosts", str(known)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            files.append((ready, known))
        deadline = time.monotonic() + 120
        while not all(r.exists() and k.exists() for r, k in files):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the fake switch processes did not start")
            time.sleep(0.1)
        tcp_ports = [port for ready, _ in files for port in json.loads(ready.read_text()).values()]
        yield tcp_ports, "".join(k.read_text() for _, k in files)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def work_off(config: Any, concurrency: int, batch_limit: int) -> tuple[float, list[Any]]:
    store = SqlDeviceStore(config.database_url())
    try:
        enforcement = Enforcement(config, store)
        executor = DriverExecutor.from_file(config.path(config.enforcement.inventory))
        settings = WorkerSettings(concurrency=concurrency, batch_limit=batch_limit)
        worker = Worker(enforcement.queue, executor, settings, worker_id="bench", sessions=enforcement.sessions)
        start = time.perf_counter()
        jobs = worker.drain()
        return time.perf_counter() - start, jobs
    finally:
        store.close()


def act_all(config: Any, store: SqlDeviceStore, action: str, devices: list[Any]) -> float:
    """What ``trustport devices ACTION D1 D2 ...`` does: ``act_many`` (chunks of devices per transaction)."""
    service = LifecycleService(config, store)
    start = time.perf_counter()
    results = service.act_many(devices, action, actor="bench", reason="bulk", now=datetime.now(UTC))
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise RuntimeError(f"{len(errors)} devices refused: {errors[0]}")
    return time.perf_counter() - start


def reread(config: Any, switches: int, concurrency: int) -> dict[int, int]:
    """Every port of every switch read again, independently of the worker: VLAN -> number of ports."""
    assert config.enforcement is not None
    executor = DriverExecutor.from_file(config.path(config.enforcement.inventory))

    def one(n: int) -> list[int | None]:
        with executor.inventory.driver(f"sw{n}", executor.registry, executor.environ) as driver:
            return [row.vlan for row in driver.read_all_ports().values()]  # type: ignore[attr-defined]

    counts: dict[int, int] = defaultdict(int)
    with ThreadPoolExecutor(concurrency) as pool:
        for vlans in pool.map(one, range(switches)):
            for vlan in vlans:
                counts[vlan if vlan is not None else -1] += 1
    return dict(counts)


def bulk(work: Path, switches: int, ports: int, processes: int, concurrency: int, sample: int) -> None:
    total = switches * ports
    with fleet(work, switches, ports, processes) as (tcp_ports, known_hosts):
        pki = build_test_pki(work / "pki")
        config = load_config(write_config(work, pki, tcp_ports, known_hosts, ports))
        store = SqlDeviceStore(config.database_url(), create=True)
        try:
            add_devices(store, switches, ports)
            everyone = store.list_devices()
            print(f"{total:,} connected ports on {switches} fake switches in {processes} other processes, "
                  f"quarantined in bulk, one worker with --concurrency {concurrency}:")
            queue_s = act_all(config, store, "quarantine", everyone)
            print(f"  devices quarantine (lifecycle + plan + queue, 100 devices per transaction): {queue_s:.1f} s "
                  f"({total / queue_s:.0f} devices/s)")
            TIMINGS.reset()
            wall, jobs = work_off(config, concurrency, batch_limit=256)
            states = defaultdict(int)
            for job in jobs:
                states[job.state] += 1
            read_back = sum(any("(read back)" in e["message"] for e in j.log) for j in jobs if j.state == "done")
            print(f"  worker: {wall:.1f} s = {total / wall:.0f} ports/s; jobs {dict(states)}; {read_back:,} ports "
                  "read back by the worker")
            print(f"  quarantine command -> every port read back: {queue_s + wall:.1f} s in all "
                  f"(target: under 30 s)")
            report_timings(wall, concurrency)
            counts = reread(config, switches, concurrency)
            print(f"  independent re-read of every port afterwards: {counts.get(999, 0):,} of {total:,} in VLAN 999")
            RESULTS["bulk"] = {"ports": total, "switches": switches, "processes": processes,
                               "concurrency": concurrency, "queue_s": round(queue_s, 2), "worker_s": round(wall, 2),
                               "total_s": round(queue_s + wall, 2), "target_total_s": 30,
                               "read_back_by_worker": read_back, "reread_in_quarantine": counts.get(999, 0),
                               "jobs": dict(states)}

            per_switch = max(1, sample // switches)
            chosen = [d for d in store.list_devices() if int(d.key.serial_number.rsplit("-", 1)[1]) <= per_switch]
            act_all(config, store, "release", chosen)
            TIMINGS.reset()
            base_wall, base_jobs = work_off(config, concurrency, batch_limit=1)
            done = sum(j.state == "done" for j in base_jobs)
            rate = len(chosen) / base_wall
            print(f"  baseline, one port per job (batch_limit=1, same worker and concurrency), on a sample of "
                  f"{len(chosen)} ports ({per_switch} per switch; {done} done): {base_wall:.1f} s = {rate:.1f} "
                  f"ports/s")
            print(f"    extrapolated to {total:,} ports: {total / rate:.0f} s; batched is {total / rate / wall:.1f} x "
                  "faster on the worker's part")
            report_timings(base_wall, concurrency)
            RESULTS["bulk"].update({"baseline_ports": len(chosen), "baseline_s": round(base_wall, 2),
                                    "baseline_ports_per_s": round(rate, 2),
                                    "baseline_extrapolated_s": round(total / rate, 1),
                                    "speedup_worker": round(total / rate / wall, 2)})
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--switches", type=int, default=100)
    parser.add_argument("--ports", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4, help="fake switch processes")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-ports", type=int, default=500)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "enforcement.json",
                        help="raw results (bench/results/enforcement.json)")
    args = parser.parse_args()
    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        base, product = single(Path(tmp), args.runs)
    print(f"quarantine command -> read-back on the fake switch (median of {args.runs}):")
    print(f"  driver alone (connect, set VLAN, read back) baseline: {base * 1000:.0f} ms")
    print(f"  trustport (lifecycle + queue + worker + driver):      {product * 1000:.0f} ms "
          f"= {product / base:.2f} x baseline")
    RESULTS["single"] = {"runs": args.runs, "driver_alone_ms": round(base * 1000, 1),
                         "trustport_ms": round(product * 1000, 1), "ratio": round(product / base, 3)}
    with tempfile.TemporaryDirectory() as tmp:
        bulk(Path(tmp), args.switches, args.ports, args.processes, args.concurrency, args.baseline_ports)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"bench": "enforcement", "time": datetime.now(UTC).isoformat(), **RESULTS},
                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
