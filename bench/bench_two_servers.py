"""Two FreeRADIUS servers (both with the trustport hook) on one durable PostgreSQL registry.

Figures: (a) both servers decide the same for the lab's devices; (b) an operator quarantine done through the
App on one side is seen by server B's next authentication (time from the action *returning* to the first answer
on B carrying the quarantine VLAN, and how many authentications that took: with the caches' barrier it is the
first one, no polling; 10 repetitions); (c) a PostgreSQL restart while both servers authenticate continuously:
every answered authentication (Access-Accept or Access-Reject) must have its decision_log row (each eapol_test
run uses its own MAC, matched on Calling-Station-Id), counted once every journal the servers write is applied
(``wait_for_journal``, ``--journal-timeout``). Runs that got no answer during the restart are counted, not
failures (the hook fails closed or the client times out).

    .venv/bin/python bench/bench_two_servers.py [--repeats 10] [--json bench/results/two_servers.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pwd
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for bench_eap_tls

from bench_eap_tls import moved_raddb

from policy.model import DeviceKey
from policy.x509facts import oneline_dn
from tests.support.postgres import PostgresServer, find_bin_dir, running_postgres
from trustport.app import App
from trustport.freeradius.run import EapolResult, RadiusServer, free_port, run_eapol, write_eapol_conf
from trustport.store.journal import JournalError, wait_for_journal
from trustport.store.sql import SqlDeviceStore
from trustport_lab.lab import SCENARIOS, SEGMENTS, Lab, vlan_outcome

QUARANTINE_VLAN = SEGMENTS["quarantine"]
TARGET_VISIBILITY_S = 1.0
_MAC_COUNTER = itertools.count(1)
_MAC_LOCK = threading.Lock()


def next_mac() -> str:
    with _MAC_LOCK:
        n = next(_MAC_COUNTER)
    return "02:b0:" + ":".join(f"{(n >> shift) & 0xFF:02x}" for shift in (24, 16, 8, 0))


def norm_mac(mac: str | None) -> str:
    return "".join(c for c in (mac or "").lower() if c in "0123456789abcdef")


def second_raddb(hooked: Path, target: Path, port: int) -> Path:
    """The same rendered config, python3 hook kept, listening on ``port``/``port + 1``, own run/log paths."""
    return moved_raddb(hooked, target, port)


def restart_postgres(server: PostgresServer, timeout_s: int = 60) -> float:
    """``pg_ctl restart -m fast`` on the support module's cluster (same data dir, same options); seconds taken."""
    data = server.base_dir / "data"
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:
        user = pwd.getpwnam(os.environ.get("TRUSTPORT_PG_USER", "postgres"))
        kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
           "HOME": str(server.base_dir)}
    start = time.perf_counter()
    proc = subprocess.run([str(find_bin_dir() / "pg_ctl"), "restart", "-D", str(data), "-m", "fast", "-w",
                           "-t", str(timeout_s), "-l", str(server.base_dir / "server.log")],
                          cwd=server.base_dir, env=env, capture_output=True, text=True, timeout=timeout_s + 10,
                          check=False, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"pg_ctl restart failed: {proc.stdout}{proc.stderr}")
    return time.perf_counter() - start


@dataclass
class Client:
    lab: Lab
    secret: str

    def conf(self, serial: str, tag: str) -> Path:
        cert, key = self.lab.devices[serial]
        return write_eapol_conf(self.lab.work / f"eapol-two-{tag}-{serial}.conf",
                                identity=f"{serial.lower()}.devices.example",
                                ca_cert=self.lab.work / "pki" / "server-ca.pem", client_cert=cert, private_key=key)

    def auth(self, serial: str, port: int, tag: str, mac: str | None = None, timeout_s: int = 10) -> EapolResult:
        return run_eapol(self.conf(serial, tag), port=port, secret=self.secret, mac=mac or next_mac(),
                         timeout_s=timeout_s)


def same_decisions(client: Client, ports: dict[str, int]) -> tuple[list[dict[str, str]], int]:
    rows = []
    for scenario in SCENARIOS:
        got = {name: vlan_outcome(client.auth(scenario.serial, port, name)) for name, port in ports.items()}
        rows.append({"device": scenario.serial, "expected": scenario.expected, **got})
    return rows, sum(1 for r in rows if r["A"] == r["B"])


def visibility(client: Client, app: App, port_b: int, serial: str, repeats: int) -> dict[str, Any]:
    lab = client.lab
    key = DeviceKey(oneline_dn(lab.cas["ldevid"].cert.subject), serial)
    seconds: list[float] = []
    attempts: list[int] = []
    release_seconds: list[float] = []
    release_attempts: list[int] = []
    action_seconds: list[float] = []
    for i in range(repeats):
        device = lab.store.find_device(key)
        assert device is not None
        called = time.perf_counter()
        app.lifecycle.act(device, "quarantine", actor="bench", reason=f"two-server bench {i}",
                          now=datetime.now(UTC))
        t0 = time.perf_counter()  # the action returned: every live cache has applied it (the barrier)
        action_seconds.append(t0 - called)
        n = 0
        while True:
            n += 1
            result = client.auth(serial, port_b, "vis")
            if result.vlan == QUARANTINE_VLAN:
                seconds.append(time.perf_counter() - t0)
                attempts.append(n)
                break
            if time.perf_counter() - t0 > 30:
                raise SystemExit(f"server B never answered with VLAN {QUARANTINE_VLAN} after quarantine "
                                 f"(last: {vlan_outcome(result)})")
        device = lab.store.find_device(key)
        assert device is not None
        app.lifecycle.act(device, "release", actor="bench", reason=f"two-server bench {i}", now=datetime.now(UTC))
        t0 = time.perf_counter()
        n = 0
        while True:
            n += 1
            result = client.auth(serial, port_b, "vis")
            if result.code == "Access-Accept" and result.vlan != QUARANTINE_VLAN:
                release_seconds.append(time.perf_counter() - t0)
                release_attempts.append(n)
                break
            if time.perf_counter() - t0 > 30:
                raise SystemExit(f"server B still quarantines {serial} 30 s after release")
    return {
        "device": serial, "repeats": repeats,
        "quarantine_visible_s": [round(s, 4) for s in seconds],
        "quarantine_visible_median_s": round(statistics.median(seconds), 4),
        "quarantine_visible_max_s": round(max(seconds), 4),
        # 1 each time: the first authentication on B after the action returned already had it (no polling)
        "authentications_until_visible": attempts,
        "seen_by_first_authentication": sum(1 for a in attempts if a == 1),
        "release_authentications_until_visible": release_attempts,
        # what the operator waits for: commit + the barrier (every live cache applied it)
        "action_return_median_s": round(statistics.median(action_seconds), 4),
        "action_return_max_s": round(max(action_seconds), 4),
        "release_visible_median_s": round(statistics.median(release_seconds), 4),
        "release_visible_max_s": round(max(release_seconds), 4),
    }


@dataclass(frozen=True)
class Run:
    server: str
    mac: str
    start: datetime
    end: datetime
    code: str
    vlan: int | None

    @property
    def answered(self) -> bool:
        return self.code in ("Access-Accept", "Access-Reject")


FAIL_CLOSED = "registry unusable, failing closed"


def fail_closed_count(log: Path) -> int:
    """The hook's own fail-closed rejects (registry unusable), as it writes them to radiusd's log."""
    return log.read_text(errors="replace").count(FAIL_CLOSED) if log.exists() else 0


def wait_for_journals(directories: list[Path], url: str, timeout_s: float) -> dict[str, Any]:
    """Wait until every journal directory is fully applied; how long that took, or what was still pending."""
    started = time.perf_counter()
    out: dict[str, Any] = {"directories": [str(d) for d in directories], "applied": True}
    with SqlDeviceStore(url) as store:
        for directory in dict.fromkeys(directories):
            try:
                wait_for_journal(directory, store, timeout_s)
            except JournalError as exc:
                out["applied"] = False
                out.setdefault("problems", []).append(str(exc))
    out["waited_s"] = round(time.perf_counter() - started, 3)
    return out


def restart_figure(client: Client, pg: PostgresServer, database: str, ports: dict[str, int],
                   before_s: float, after_s: float, logs: dict[str, Path], journals: list[Path], url: str,
                   journal_timeout_s: float) -> dict[str, Any]:
    closed_before = {name: fail_closed_count(log) for name, log in logs.items()}
    runs: list[Run] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(name: str, port: int) -> None:
        while not stop.is_set():
            mac = next_mac()
            start = datetime.now(UTC)
            result = client.auth("SN-1001", port, f"pg-{name}", mac=mac, timeout_s=5)
            with lock:
                runs.append(Run(name, mac, start, datetime.now(UTC), result.code, result.vlan))

    threads = [threading.Thread(target=worker, args=item, daemon=True) for item in ports.items()]
    for t in threads:
        t.start()
    time.sleep(before_s)
    restart_at = datetime.now(UTC)
    restart_s = restart_postgres(pg)
    time.sleep(after_s)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    time.sleep(1.0)  # anything still in flight inside radiusd
    # both hooks journal their decisions: count only once every journal is in the registry (after the restart their
    # drainers retry with backoff; generous)
    journal_wait = wait_for_journals(journals, url, journal_timeout_s)
    with pg.connect(database) as conn:
        rows = conn.execute("SELECT calling_station_id, outcome, time FROM decision_log").fetchall()
    logged: dict[str, list[tuple[str, datetime]]] = {}
    for csid, outcome, when in rows:
        logged.setdefault(norm_mac(csid), []).append((outcome, when))
    slack = timedelta(seconds=2)

    def has_row(run: Run) -> bool:
        return any(run.start - slack <= when <= run.end + slack for _o, when in logged.get(norm_mac(run.mac), []))

    answered = [r for r in runs if r.answered]
    lost = [r for r in answered if not has_row(r)]
    unanswered = [r for r in runs if not r.answered]
    window_end = restart_at + timedelta(seconds=restart_s)
    closed = {name: fail_closed_count(log) - closed_before[name] for name, log in logs.items()}
    lost_rejects = sum(1 for r in lost if r.code == "Access-Reject")
    return {
        "runs": len(runs),
        "answered": len(answered),
        "accepted": sum(1 for r in answered if r.code == "Access-Accept"),
        "rejected": sum(1 for r in answered if r.code == "Access-Reject"),
        "logged": len(answered) - len(lost),
        "lost": len(lost),
        "lost_accepts": sum(1 for r in lost if r.code == "Access-Accept"),
        "lost_rejects": lost_rejects,
        # rejects the hook gave while the registry was unreachable: no decision_log row can be written then;
        # the hook logs them to radiusd's log only (counted there, both servers)
        "fail_closed_rejects_in_radiusd_logs": sum(closed.values()),
        "lost_rejects_not_explained_by_fail_closed": max(0, lost_rejects - sum(closed.values())),
        "lost_macs": [f"{r.server} {r.mac} {r.code} {r.start.isoformat()}" for r in lost][:20],
        "no_answer": len(unanswered),
        "no_answer_logged": sum(1 for r in unanswered if has_row(r)),
        "answered_during_restart": sum(1 for r in answered if r.end >= restart_at and r.start <= window_end),
        "quarantine_answers": sum(1 for r in answered if r.vlan == QUARANTINE_VLAN),
        "per_server": {name: {"runs": sum(1 for r in runs if r.server == name),
                              "answered": sum(1 for r in answered if r.server == name),
                              "lost": sum(1 for r in lost if r.server == name)} for name in ports},
        "restart_s": round(restart_s, 3),
        "journals_applied_before_counting": journal_wait,
        "longest_gap_without_answer_from_restart_s": _gap(answered, restart_at),
    }


def _gap(answered: list[Run], restart_at: datetime) -> float | None:
    """Longest stretch without any answered authentication, from the restart on (seconds)."""
    ends = sorted(r.end for r in answered)
    before = [e for e in ends if e <= restart_at]
    after = [e for e in ends if e > restart_at]
    if not before or not after:
        return None
    points = [before[-1], *after]
    return round(max((b - a).total_seconds() for a, b in itertools.pairwise(points)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="quarantine/release rounds for the visibility figure")
    parser.add_argument("--before", type=float, default=4.0, help="seconds of load before the restart")
    parser.add_argument("--after", type=float, default=6.0, help="seconds of load after the restart")
    parser.add_argument("--journal-timeout", type=float, default=60.0,
                        help="seconds to wait for every journal to be applied after the restart")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "two_servers.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trustport-bench-2srv-") as tmp, running_postgres(durable=True) as pg:
        work = Path(tmp)
        url = pg.create_database("registry")
        with Lab(work, datetime.now(UTC), echo=lambda _m: None, extra_config={"database": {"url": url}}) as lab:
            if not lab.config.database_url().startswith("postgresql"):
                raise SystemExit(f"lab is not on PostgreSQL: {lab.config.database.url}")
            port_b = free_port(count=2)
            raddb_b = second_raddb(work / "raddb", work / "raddb-b", port_b)
            with RadiusServer(raddb_b, work / "radiusd-b.log"), App(lab.config) as app:
                client = Client(lab, lab.config.radius.clients[0].secret.get_secret_value())
                ports = {"A": lab.config.radius.auth_port, "B": port_b}
                decisions, agree = same_decisions(client, ports)
                vis = visibility(client, app, port_b, "SN-1102", args.repeats)
                # both servers read the same hook.json: one journal directory (a file per process)
                journals = [d for d in (lab.config.journal_dir(),) if d is not None]
                restart = restart_figure(client, pg, "registry", ports, args.before, args.after,
                                         {"A": work / "radiusd.log", "B": work / "radiusd-b.log"}, journals, url,
                                         args.journal_timeout)
    print("two FreeRADIUS servers (python3 hook) on one durable PostgreSQL 15 registry")
    print(f"{'figure':<44} {'value':>16}  target")
    print(f"{'(a) same decision on A and B':<44} {f'{agree}/{len(decisions)}':>16}  all")
    for row in decisions:
        if row["A"] != row["B"]:
            print(f"      differs: {row['device']}: A {row['A']}, B {row['B']}")
    print(f"{'(b) quarantine seen on B, median s':<44} {vis['quarantine_visible_median_s']:>16.3f}  <= 1.0")
    print(f"{'(b) quarantine seen on B, max s':<44} {vis['quarantine_visible_max_s']:>16.3f}  <= 1.0")
    first = f"{vis['seen_by_first_authentication']}/{vis['repeats']}"
    print(f"{'(b) seen by the first authentication on B':<44} {first:>16}  all")
    print(f"{'(b) the action itself returned in, median s':<44} {vis['action_return_median_s']:>16.3f}")
    print(f"{'(b) release seen on B, median / max s':<44} "
          f"{vis['release_visible_median_s']:>7.3f} / {vis['release_visible_max_s']:<6.3f}")
    runs_answered = f"{restart['runs']} / {restart['answered']}"
    print(f"{'(c) pg restart: runs / answered':<44} {runs_answered:>16}")
    print(f"{'(c) answered and logged':<44} {restart['logged']:>16}")
    print(f"{'(c) answered but NOT logged (lost)':<44} {restart['lost']:>16}  0")
    lost_split = f"{restart['lost_accepts']} / {restart['lost_rejects']}"
    print(f"{'      of which Access-Accept / Access-Reject':<44} {lost_split:>16}")
    print(f"{'      fail-closed rejects in radiusd logs':<44} {restart['fail_closed_rejects_in_radiusd_logs']:>16}")
    print(f"{'(c) no answer (allowed during restart)':<44} {restart['no_answer']:>16}")
    print(f"{'(c) pg_ctl restart took s':<44} {restart['restart_s']:>16.3f}")
    waited = restart["journals_applied_before_counting"]
    print(f"{'(c) journals applied before counting, s':<44} {waited['waited_s']:>16.3f}  "
          f"{'applied' if waited['applied'] else 'NOT applied: ' + '; '.join(waited.get('problems', []))}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "bench": "two_servers", "time": datetime.now(UTC).isoformat(),
        "same_decisions": {"agree": agree, "devices": len(decisions), "rows": decisions},
        "visibility": vis, "restart": restart,
        "target_visibility_s": TARGET_VISIBILITY_S,
        "visibility_ok": vis["quarantine_visible_max_s"] <= TARGET_VISIBILITY_S,
        "lost": restart["lost"],
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
