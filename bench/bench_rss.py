"""radiusd's resident memory after 100 and after N EAP-TLS authentications, with and without the trustport hook.

The lab's FreeRADIUS with the hook (``trustport_lab.lab.Lab``: real registry on SQLite, decision log written on
every authentication) and, in the same run, the same rendered config without python3 anywhere
(``bench_eap_tls.baseline_raddb``: the VLAN set in unlang). Both are driven by eapol_test, ``--parallel``
processes at a time, in alternating blocks so drift hits both alike. VmRSS is read from ``/proc/<pid>/status``
after the first 100 authentications (warm: TLS session structures, Python modules, pools) and at every
checkpoint up to ``--auths``; growth = RSS at the end minus RSS after 100. Target: the hook's growth is no more
than the baseline's plus noise (``--noise-kib``, default 1024 KiB).

    .venv/bin/python bench/bench_rss.py [--auths 10000] [--parallel 2] [--checkpoints 10]
        [--json bench/results/rss.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_eap_tls

from bench_eap_tls import baseline_raddb

from trustport.freeradius.run import RadiusServer, free_port, run_eapol, write_eapol_conf
from trustport_lab.lab import Lab

RESULTS = Path(__file__).resolve().parent / "results" / "rss.json"
WARM = 100


def vm(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


class Driver:
    def __init__(self, lab: Lab, parallel: int) -> None:
        cert, key = lab.devices["SN-1001"]
        self.conf = write_eapol_conf(lab.work / "rss.conf", identity="sn-1001.devices.example",
                                     ca_cert=lab.work / "pki" / "server-ca.pem", client_cert=cert, private_key=key)
        self.secret = lab.config.radius.clients[0].secret.get_secret_value()
        self.pool = ThreadPoolExecutor(parallel)
        self.parallel = parallel

    def run(self, port: int, count: int, start: int) -> int:
        """``count`` authentications; returns how many did not end in Access-Accept with VLAN 30."""
        def one(n: int) -> bool:
            mac = f"02:00:00:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
            result = run_eapol(self.conf, port=port, secret=self.secret, mac=mac)
            return result.code == "Access-Accept" and result.vlan == 30
        return sum(not ok for ok in self.pool.map(one, range(start, start + count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--auths", type=int, default=10_000, help="authentications per variant (10000)")
    parser.add_argument("--parallel", type=int, default=2, help="eapol_test processes at a time (2)")
    parser.add_argument("--checkpoints", type=int, default=10, help="RSS readings between 100 and --auths (10)")
    parser.add_argument("--noise-kib", type=int, default=1024, help="growth beyond the baseline's counted as noise")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"raw results ({RESULTS})")
    args = parser.parse_args()
    if args.auths <= WARM:
        raise SystemExit(f"--auths must be more than {WARM}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trustport-rss-") as tmp:
        work = Path(tmp)
        with Lab(work, datetime.now(UTC), echo=lambda _m: None) as lab:
            base_port = free_port(count=2)
            raddb = baseline_raddb(work / "raddb", work / "raddb-baseline", base_port)
            with RadiusServer(raddb, work / "baseline.log") as baseline:
                assert baseline.process is not None
                assert lab.server.process is not None
                pids = {"baseline": baseline.process.pid, "hook": lab.server.process.pid}
                ports = {"baseline": base_port, "hook": lab.config.radius.auth_port}
                driver = Driver(lab, args.parallel)
                done = dict.fromkeys(pids, 0)
                failed = dict.fromkeys(pids, 0)
                series: dict[str, list[dict[str, int]]] = {name: [] for name in pids}
                rss_start = {name: vm(pid)["VmRSS"] for name, pid in pids.items()}
                step = max(1, (args.auths - WARM) // max(1, args.checkpoints))
                marks = [WARM, *range(WARM + step, args.auths, step), args.auths]
                block = 100
                for mark in sorted(set(marks)):
                    while min(done.values()) < mark:
                        for name, port in ports.items():  # alternate blocks between the two servers
                            n = min(block, mark - done[name])
                            failed[name] += driver.run(port, n, done[name])
                            done[name] += n
                    for name, pid in pids.items():
                        series[name].append({"auths": mark, **vm(pid)})
                    print(f"  {mark:>6} authentications: "
                          + ", ".join(f"{name} {series[name][-1]['VmRSS']:,} KiB" for name in pids), flush=True)
                driver.pool.shutdown()
    seconds = time.perf_counter() - started
    variants: dict[str, Any] = {}
    for name in ("baseline", "hook"):
        points = series[name]
        after_warm, end = points[0]["VmRSS"], points[-1]["VmRSS"]
        readings = [p["VmRSS"] for p in points]
        variants[name] = {"rss_start_kib": rss_start[name], f"rss_after_{WARM}_kib": after_warm,
                          f"rss_after_{args.auths}_kib": end, "growth_kib": end - after_warm,
                          "spread_kib": max(readings) - min(readings), "hwm_kib": points[-1]["VmHWM"],
                          "failed": failed[name], "series": points}
    excess = variants["hook"]["growth_kib"] - variants["baseline"]["growth_kib"]
    met = excess <= args.noise_kib
    print(f"radiusd VmRSS, {args.auths} EAP-TLS authentications per variant, {args.parallel} eapol_test at a time "
          f"({seconds:.0f} s):")
    for name, v in variants.items():
        print(f"  {name:<9} start {v['rss_start_kib']:>8,} KiB   after {WARM}: {v[f'rss_after_{WARM}_kib']:>8,} KiB   "
              f"after {args.auths}: {v[f'rss_after_{args.auths}_kib']:>8,} KiB   growth {v['growth_kib']:+,} KiB   "
              f"failed {v['failed']}")
    print(f"  hook growth beyond the baseline's: {excess:+,} KiB (target <= {args.noise_kib} KiB noise): "
          f"{'met' if met else 'NOT met'}")
    out = {"bench": "rss", "time": datetime.now(UTC).isoformat(), "host": platform.node(), "seconds": round(seconds),
           "auths": args.auths, "warm": WARM, "parallel": args.parallel, "noise_kib": args.noise_kib,
           "excess_growth_kib": excess, "met": met, "variants": variants}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
