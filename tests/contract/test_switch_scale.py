"""Scale: the fake serves many switches with many ports from one process (the worker's 10,000-port benchmark runs
it out of process), and one 100-port batch takes a fraction of what 100 single-port changes take."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from switch_drivers import PortMove, SwitchDriver, Target, default_registry, run_each
from trustport_lab.fakes.fake_cli import PORT_NAME, FakeCliServer
from trustport_lab.fakes.harness import CLI_DRIVERS

OPTIONS: dict[str, Any] = {"username": "admin", "password": "fake-pass-123", "enable_secret": "fake-enable-456",
                           "conn_timeout": 5, "read_timeout": 20}
FLEET = [sys.executable, "-m", "trustport_lab.fakes.fake_cli"]


def test_fleet_help_documents_the_command_line() -> None:
    result = subprocess.run([*FLEET, "--help"], capture_output=True, text=True, timeout=60, check=True)
    for flag in ("--vendor", "--switches", "--ports", "--base-port", "--ready-file", "--known-hosts"):
        assert flag in result.stdout
    assert "GigabitEthernet1/0/N" in result.stdout


def test_fleet_process_serves_independent_switches(tmp_path: Path) -> None:
    ready, known = tmp_path / "ready.json", tmp_path / "known_hosts"
    proc = subprocess.Popen([*FLEET, "--vendor", "cisco_ios", "--switches", "3", "--ports", "100", "--base-port",
                             "0", "--ready-file", str(ready), "--known-hosts", str(known)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.stderr else ""
        ports: dict[str, int] = json.loads(ready.read_text())
        assert list(ports) == ["cisco_ios-01", "cisco_ios-02", "cisco_ios-03"]
        assert len(set(ports.values())) == 3
        assert known.read_text().count("ssh-ed25519") == 3

        def build(name: str) -> SwitchDriver:
            target = Target(name, "127.0.0.1", ports[name])
            return default_registry().create("cisco_ios", target, {**OPTIONS, "known_hosts": known})

        def batch(driver: SwitchDriver) -> tuple[int, float]:
            vlan = (10, 20, 30)[list(ports).index(driver.target.name)]
            start = time.monotonic()
            outcomes = driver.move_ports([PortMove(f"Gi1/0/{i}", vlan) for i in range(1, 101)])
            return sum(o.ok for o in outcomes), time.monotonic() - start

        results = run_each({n: (lambda n=n: build(n)) for n in ports}, batch, max_workers=3)
        assert [r.error for r in results] == [None, None, None]
        assert [r.value[0] for r in results if r.value] == [100, 100, 100]
        with build("cisco_ios-02") as driver:  # independent state: each switch kept its own VLAN
            assert {driver.port_status(f"Gi1/0/{i}").vlan for i in (1, 50, 100)} == {20}
            assert {1, 10, 20, 30, 99, 999} <= driver.vlans()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    out = proc.stdout.read() if proc.stdout else ""
    assert "host key SHA256:" in out and f"[127.0.0.1]:{ports['cisco_ios-01']} ssh-ed25519" in out


@pytest.mark.parametrize("vendor", CLI_DRIVERS)
def test_a_100_port_batch_takes_seconds_not_minutes(vendor: str, tmp_path: Path) -> None:
    server = FakeCliServer.fleet(vendor, 1, 100).start()
    try:
        (name, port), = server.ports.items()
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_lines())
        names = [PORT_NAME[vendor].format(i=i).replace("GigabitEthernet", "Gi") for i in range(1, 101)]
        driver = default_registry().create(vendor, Target(name, "127.0.0.1", port), {**OPTIONS, "known_hosts": known})
        with driver:
            driver.vlans()
            start = time.monotonic()
            outcomes = driver.move_ports([PortMove(p, 999, bounce=True) for p in names])
            batch = time.monotonic() - start
            start = time.monotonic()
            for p in names[:5]:
                driver.set_port_vlan(p, 20)
            single = (time.monotonic() - start) / 5
    finally:
        server.stop()
    assert all(o.ok and o.bounced for o in outcomes), [str(o.error) for o in outcomes if not o.ok][:3]
    assert all(p.vlan in (999, 20) and not p.shutdown and p.bounces == 1 for p in server.states[name].ports.values())
    assert batch < 5, f"100-port batch took {batch:.2f}s"
    assert batch < 100 * single / 5, f"batch {batch:.2f}s vs {single:.3f}s per single port"
