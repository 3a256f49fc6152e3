"""Measure connect / set (with read-back) / read-back times per driver against the local fakes.

Baselines measured in the same run so figures can be quoted as ratios:
  * ssh: bare paramiko connect + password auth + close to the same fake (no shell, no netmiko);
  * snmp: one raw pysnmp v3 authPriv GET on an already-open engine;
  * coa: one raw pyrad CoA-Request round trip on an already-open client.

Usage: python bench/bench_drivers.py [-n 5] [--json] [--output bench/results/drivers.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from switch_drivers.coa import dictionary_path  # noqa: E402
from trustport_lab.fakes.coa_nas import CoaNas  # noqa: E402
from trustport_lab.fakes.fake_cli import FakeCliServer  # noqa: E402
from trustport_lab.fakes.harness import (  # noqa: E402
    CLI_DRIVERS,
    SNMP_DRIVERS,
    Harness,
    cli_harness,
    coa_harness,
    snmp_harness,
)
from trustport_lab.fakes.snmp_agent import V3_AUTH, V3_PRIV, V3_USER, SnmpAgent, snmpd_available  # noqa: E402


def timed(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def bench_driver(h: Harness, n: int) -> dict[str, float]:
    connect, set_, read = [], [], []
    for i in range(n):
        driver = h.build()
        connect.append(timed(driver.__enter__))
        try:
            if h.name == "coa":
                set_.append(timed(lambda d=driver: d.reauthenticate(h.port)))
            else:
                vlan = 20 if i % 2 == 0 else 30
                set_.append(timed(lambda d=driver, v=vlan: d.set_port_vlan(h.port, v)))
                read.append(timed(lambda d=driver: d.get_port_vlan(h.port)))
        finally:
            driver.__exit__(None, None, None)
    out = {"connect_ms": median_ms(connect), "set_ms": median_ms(set_)}
    if read:
        out["read_ms"] = median_ms(read)
    return out


def baseline_ssh(port: int, n: int) -> float:
    import paramiko

    samples = []
    for _ in range(n):
        def once() -> None:
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            client.connect("127.0.0.1", port=port, username="admin", password="fake-pass-123",
                           look_for_keys=False, allow_agent=False)
            client.close()
        samples.append(timed(once))
    return median_ms(samples)


def baseline_snmp(port: int, n: int) -> float:
    from pysnmp.hlapi.v3arch.asyncio import (
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        get_cmd,
        usmAesCfb128Protocol,
        usmHMACSHAAuthProtocol,
    )

    async def run() -> list[float]:
        engine = SnmpEngine()
        user = UsmUserData(V3_USER, authKey=V3_AUTH, privKey=V3_PRIV, authProtocol=usmHMACSHAAuthProtocol,
                           privProtocol=usmAesCfb128Protocol)
        target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=1, retries=1)
        oid = ObjectType(ObjectIdentity("1.3.6.1.2.1.17.7.1.4.5.1.1.5"))
        await get_cmd(engine, user, target, ContextData(), oid)  # engine-id discovery outside the timing
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            await get_cmd(engine, user, target, ContextData(), oid)
            samples.append(time.perf_counter() - start)
        engine.close_dispatcher()
        return samples

    return median_ms(asyncio.run(run()))


def baseline_coa(port: int, n: int) -> float:
    from pyrad import client, dictionary, packet

    c = client.Client(server="127.0.0.1", coaport=port, secret=b"testing123",
                      dict=dictionary.Dictionary(dictionary_path()), retries=1, timeout=1)
    samples = []
    for _ in range(n):
        req = c.CreateCoAPacket(code=packet.CoARequest, message_authenticator=True,
                                Calling_Station_Id="AA-BB-CC-00-11-22")
        samples.append(timed(lambda r=req: c.SendPacket(r)))
    return median_ms(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5, help="repetitions per measurement (median reported)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "drivers.json",
                        help="raw results as JSON (bench/results/drivers.json)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-drivers-") as tmp:
        results = run_all(Path(tmp), args.n)
    report(results, args.n, args.json)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


def run_all(work: Path, n: int) -> dict[str, Any]:
    cli = FakeCliServer().start()
    known = work / "known_hosts"
    known.write_text(cli.known_hosts_lines())
    nas = CoaNas().start()
    agent = SnmpAgent(work / "snmpd").start() if snmpd_available() else None
    results: dict[str, Any] = {"n": n, "drivers": {}, "baselines": {}}
    try:
        results["baselines"]["ssh_connect_auth_ms"] = baseline_ssh(cli.ports["cisco_ios"], n)
        results["baselines"]["coa_roundtrip_ms"] = baseline_coa(nas.port, n)
        if agent is not None:
            results["baselines"]["snmp_v3_get_ms"] = baseline_snmp(agent.port, n)
        harnesses = [cli_harness(name, cli, known) for name in CLI_DRIVERS]
        if agent is not None:
            harnesses += [snmp_harness(name, agent) for name in SNMP_DRIVERS]
        harnesses.append(coa_harness(nas))
        for h in harnesses:
            results["drivers"][h.name] = bench_driver(h, n)
    finally:
        cli.stop()
        nas.stop()
        if agent is not None:
            agent.stop()
    return results


def report(results: dict[str, Any], n: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps(results, indent=2))
        return
    base = results["baselines"]
    print(f"median of {n}; baselines: " + ", ".join(f"{k}={v} ms" for k, v in base.items()))
    print(f"{'driver':<18} {'connect ms':>11} {'set+verify ms':>14} {'read ms':>8}   ratio vs baseline")
    for name, r in results["drivers"].items():
        ref_key = "ssh_connect_auth_ms" if name in CLI_DRIVERS else (
            "snmp_v3_get_ms" if name in SNMP_DRIVERS else "coa_roundtrip_ms")
        ref = base.get(ref_key) or float("nan")
        ratios = f"connect {r['connect_ms'] / ref:.1f}x, set {r['set_ms'] / ref:.1f}x of {ref_key}"
        print(f"{name:<18} {r['connect_ms']:>11} {r['set_ms']:>14} {r.get('read_ms', '-'):>8}   {ratios}")


if __name__ == "__main__":
    main()
