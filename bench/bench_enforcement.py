"""Enforcement timings against the fake switches (SSH Cisco IOS CLI) and the fake CoA NAS.

1. quarantine command -> port VLAN read back on the switch: LifecycleService.act + worker, N runs; baseline in
   the same run: the driver alone doing the same set-VLAN + read-back on the same fake.
2. 1,000 connected devices on 20 fake switches (50 ports each) quarantined in bulk, then worked off by W worker
   threads sharing the database queue (one job at a time per switch); baseline: 1,000 x the single-job time.

    .venv/bin/python bench/bench_enforcement.py [--runs 10] [--switches 20] [--ports 50] [--workers 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pki_fixtures

from policy.model import DeviceKey, LifecycleState, NetworkContext
from switch_drivers import Target, default_registry
from tests.pki_fixtures import build_test_pki
from trustport.services.enforcement import Enforcement
from trustport.services.lifecycle import LifecycleService
from trustport.settings.config import load_config
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore
from trustport.worker.executor import DriverExecutor
from trustport.worker.loop import Worker
from trustport_lab.fakes.fake_cli import FakeCliServer, PortState

os.environ.update({"TP_BENCH_PASSWORD": "fake-pass-123", "TP_BENCH_ENABLE": "fake-enable-456"})


def start_switch(ports: int) -> FakeCliServer:
    server = FakeCliServer(vendors=("cisco_ios",))
    state = server.states["cisco_ios"]
    state.ports = {f"GigabitEthernet1/0/{i}": PortState(vlan=30) for i in range(1, ports + 1)}
    state.vlans |= {30, 999}
    return server.start()


def write_config(work: Path, pki: Any, switches: list[FakeCliServer], ports: int) -> Path:
    (work / "known_hosts").write_text("".join(s.known_hosts_lines() for s in switches))
    inventory = {"switches": {f"sw{n}": {
        "driver": "cisco_ios", "address": "127.0.0.1", "port": s.ports["cisco_ios"],
        "options": {"username": "admin", "password_env": "TP_BENCH_PASSWORD", "enable_secret_env": "TP_BENCH_ENABLE",
                    "known_hosts": str(work / "known_hosts"), "conn_timeout": 10, "read_timeout": 30}}
        for n, s in enumerate(switches)}}
    (work / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    config = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "clients": [{"name": "nas", "address": "127.0.0.0/8", "secret": "bench-secret-0123456789"}]},
        "trust_anchors": [{"name": "site", "role": "ldevid", "file": str(pki.cert_path("ldevid-ca"))}],
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "enforcement": {"inventory": "inventory.yaml", "lease_seconds": 120, "nas": [
            {"nas_ip": f"127.0.1.{n}", "switch": f"sw{n}", "bounce": True,
             "ports": {str(p): f"Gi1/0/{p}" for p in range(1, ports + 1)}} for n in range(len(switches))]},
    }
    path = work / "trustport.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def add_devices(store: SqlDeviceStore, switches: int, ports: int) -> list[Any]:
    now = datetime.now(UTC)
    sessions = SqlSessionStore(store)
    devices = []
    for n in range(switches):
        for p in range(1, ports + 1):
            device = store.add_device(DeviceKey("/CN=Site LDevID CA", f"SN-{n:02d}-{p:03d}"),
                                      state=LifecycleState.OPERATIONAL, now=now, segment="production")
            sessions.authenticated(device.id, NetworkContext(nas_ip=f"127.0.1.{n}", nas_port=str(p),
                                                             calling_station_id=f"02-00-00-00-{n:02x}-{p:02x}"),
                                   30, "production", now)
            devices.append(device)
    return devices


def single(work: Path, runs: int) -> tuple[float, float]:
    """Median seconds: driver alone (baseline), and quarantine command -> read-back through the product."""
    with ExitStack() as stack:
        server = start_switch(runs + 1)
        stack.callback(server.stop)
        pki = build_test_pki(work / "pki")
        config = load_config(write_config(work, pki, [server], runs + 1))
        store = SqlDeviceStore(config.database_url(), create=True)
        devices = add_devices(store, 1, runs)
        driver_times = []
        options = {"username": "admin", "password": "fake-pass-123", "enable_secret": "fake-enable-456",
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
        worker = Worker(enforcement.queue, executor, enforcement.worker_settings, worker_id="bench",
                        on_event=lambda job, msg: read_back.setdefault(job.id, time.perf_counter())
                        if "read back" in msg else None)
        service = LifecycleService(config, store)
        product_times = []
        for device in devices:
            start = time.perf_counter()
            result = service.act(device, "quarantine", actor="bench", reason=None, now=datetime.now(UTC))
            job = result.queued[0].job
            assert job is not None
            worker.drain()
            product_times.append(read_back[job.id] - start)
        store.close()
    return statistics.median(driver_times), statistics.median(product_times)


def bulk(work: Path, switches: int, ports: int, workers: int) -> tuple[float, int, dict[str, int]]:
    with ExitStack() as stack:
        servers = [start_switch(ports) for _ in range(switches)]
        for server in servers:
            stack.callback(server.stop)
        pki = build_test_pki(work / "pki")
        config = load_config(write_config(work, pki, servers, ports))
        store = SqlDeviceStore(config.database_url(), create=True)
        stack.callback(store.close)
        devices = add_devices(store, switches, ports)
        service = LifecycleService(config, store)
        start = time.perf_counter()
        for device in devices:
            service.act(device, "quarantine", actor="bench", reason="bulk", now=datetime.now(UTC))
        queued_at = time.perf_counter()
        assert config.enforcement is not None

        def run(n: int) -> None:
            own = SqlDeviceStore(config.database_url())
            enforcement = Enforcement(config, own)
            executor = DriverExecutor.from_file(config.path(config.enforcement.inventory))  # type: ignore[union-attr]
            Worker(enforcement.queue, executor, enforcement.worker_settings, worker_id=f"w{n}").drain()
            own.close()

        threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        counts = Enforcement(config, store).queue.counts()
        moved = sum(1 for s in servers for p in s.states["cisco_ios"].ports.values() if p.vlan == 999)
        print(f"  queued {len(devices)} jobs in {queued_at - start:.1f} s")
    return elapsed, moved, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--ports", type=int, default=50)
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base, product = single(Path(tmp), args.runs)
    print(f"quarantine command -> read-back on the fake switch (median of {args.runs}):")
    print(f"  driver alone (connect, set VLAN, read back) baseline: {base * 1000:.0f} ms")
    print(f"  trustport (lifecycle + queue + worker + driver):      {product * 1000:.0f} ms "
          f"= {product / base:.2f} x baseline")
    with tempfile.TemporaryDirectory() as tmp:
        elapsed, moved, counts = bulk(Path(tmp), args.switches, args.ports, args.workers)
    total = args.switches * args.ports
    print(f"{total} ports on {args.switches} fake switches, {args.workers} worker threads: {elapsed:.1f} s "
          f"({total / elapsed:.1f} ports/s); {moved} ports read back in VLAN 999; queue {counts}")
    print(f"  baseline {total} x single-job time = {total * product:.0f} s; speed-up {total * product / elapsed:.1f} x")


if __name__ == "__main__":
    main()
