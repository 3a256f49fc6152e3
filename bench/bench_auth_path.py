"""Where the time of one EAP-TLS authentication goes: FreeRADIUS with the trustport hook vs without, same run.

(a) Throughput: authentications per second through FreeRADIUS 3.2 for three configs rendered from the same lab
    config, each on its own port: ``baseline`` (check-eap-tls sets the VLAN in unlang, no python3 anywhere),
    ``empty`` (the same sections call python3, but every entry point is an empty function; what rlm_python3
    itself costs) and ``hook`` (the real trustport hook), with 1 and 2 concurrent eapol_test clients, blocks
    alternating (order rotated per block). Per block also radiusd's CPU time (/proc/PID/stat) and log bytes.
(b) Inside radiusd: a fourth server loads ``bench/hookprobe/probe.py`` instead of ``radius_hooks.freeradius``
    (the real entry points, each wrapped with perf_counter_ns, plus timers on the steps inside). Its events are
    assigned to the eapol_test run they fall in: Python calls per authentication, their time, per entry point
    and per step; SQLite BEGIN/COMMIT per authentication (SQLite's trace callback) and commit time. strace
    counts syscalls (fsync/fdatasync, writes) per authentication on the hook and the baseline server.
(c) In process (fake ``radiusd``, the attribute tuple FreeRADIUS passes): check_eap_tls + post_auth untimed,
    the same steps timed, a cProfile top list, next to an empty call, a bare SQLite commit (same pragmas) and,
    when PostgreSQL binaries are there, the same on a PostgreSQL registry and a bare PostgreSQL commit.

    .venv/bin/python bench/bench_auth_path.py [--runs 300] [--block 25] [--no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # for tests.radius_pairs, tests.support.postgres
sys.path.insert(0, str(BENCH))  # for hookprobe

from bench_eap_tls import moved_raddb  # noqa: E402
from hookprobe.timing import Event, Recorder  # noqa: E402

from radius_hooks.hook import Hook  # noqa: E402
from trustport.freeradius.run import EapolResult, RadiusServer, free_port, run_eapol, write_eapol_conf  # noqa: E402
from trustport_lab.lab import Lab  # noqa: E402

RESULTS = BENCH / "results" / "auth_path.json"
VARIANTS = ("baseline", "empty", "hook")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- configs ---------------------------------------------------------------------------------------------------

def variant_raddb(hooked: Path, target: Path, port: int, module: str | None, probe_out: Path | None) -> Path:
    """The lab's rendered config on another port; ``module`` None: no python3 at all (VLAN set in unlang);
    else that module instead of radius_hooks.freeradius (found on bench/)."""
    moved_raddb(hooked, target, port, python3=module is not None)
    if module is not None:
        mod = target / "mods-enabled" / "python3"
        conf = mod.read_text()
        conf = conf.replace("module = radius_hooks.freeradius", f"module = {module}")
        conf = re.sub(r'python_path = "([^"]*)"', lambda m: f'python_path = "{m.group(1)}:{BENCH}"', conf)
        conf = conf.replace("\tconfig {\n", f'\tconfig {{\n\t\tprobe_out = "{probe_out}"\n')
        mod.write_text(conf)
    return target


# -- one server's counters -------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole radiusd process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Target:
    name: str
    port: int
    pid: int
    log: Path


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    log_bytes: int = 0
    count: int = 0

    def summary(self) -> dict[str, float]:
        return {
            "authentications": self.count,
            "wall_s": round(self.wall_s, 4),
            "auth_per_s": round(self.count / self.wall_s, 2) if self.wall_s else float("nan"),
            "latency_median_ms": round(med(self.latencies_ms), 3),
            "latency_p90_ms": round(percentile(self.latencies_ms, 0.9), 3),
            "radiusd_cpu_ms_per_auth": round(self.cpu_s * 1000 / self.count, 3) if self.count else float("nan"),
            "radiusd_log_bytes_per_auth": round(self.log_bytes / self.count) if self.count else 0,
        }


class Clients:
    """eapol_test runs of SN-1001, one config and MAC per client."""

    def __init__(self, lab: Lab, count: int) -> None:
        cert, key = lab.devices["SN-1001"]
        self.secret = lab.config.radius.clients[0].secret.get_secret_value()
        self.confs = [write_eapol_conf(lab.work / f"auth-path-{i}.conf", identity="sn-1001.devices.example",
                                       ca_cert=lab.work / "pki" / "server-ca.pem", client_cert=cert,
                                       private_key=key) for i in range(count)]

    def one(self, client: int, port: int) -> EapolResult:
        result = run_eapol(self.confs[client], port=port, secret=self.secret, mac=f"02:00:00:00:bb:{client + 1:02x}")
        if result.vlan != 30:
            raise SystemExit(f"port {port}: unexpected result {result.code} {result.attributes}")
        return result

    def block(self, target: Target, clients: int, per_client: int, into: Samples,
              windows: list[tuple[int, int]] | None = None) -> None:
        errors: list[BaseException] = []
        lock = threading.Lock()

        def work(client: int) -> None:
            try:
                for _ in range(per_client):
                    start = time.perf_counter_ns()
                    result = self.one(client, target.port)
                    end = time.perf_counter_ns()
                    with lock:
                        into.latencies_ms.append(result.seconds * 1000)
                        if windows is not None:
                            windows.append((start, end))
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        log_before = target.log.stat().st_size
        cpu_before = cpu_seconds(target.pid)
        start = time.perf_counter()
        threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        into.wall_s += time.perf_counter() - start
        into.cpu_s += cpu_seconds(target.pid) - cpu_before
        into.log_bytes += target.log.stat().st_size - log_before
        into.count += clients * per_client
        if errors:
            raise errors[0]


def throughput(clients: Clients, targets: dict[str, Target], concurrency: int, runs: int,
               block: int) -> dict[str, Samples]:
    """``runs`` authentications per variant, ``concurrency`` clients at once, in alternating blocks."""
    samples = {name: Samples() for name in targets}
    per_client = max(1, block // concurrency)
    done, rotation = 0, 0
    names = list(targets)
    while done < runs:
        n = min(per_client, max(1, (runs - done) // concurrency))
        order = names[rotation % len(names):] + names[:rotation % len(names)]
        for name in order:
            clients.block(targets[name], concurrency, n, samples[name])
        done += n * concurrency
        rotation += 1
    return samples


# -- strace ----------------------------------------------------------------------------------------------------

_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+([\d.]+)\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def strace_counts(clients: Clients, target: Target, runs: int, out: Path) -> dict[str, Any]:
    """Syscall counts per authentication in radiusd (all threads) while ``runs`` authentications go through."""
    if shutil.which("strace") is None:
        return {"skipped": "strace not installed"}
    proc = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(target.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    samples = Samples()
    clients.block(target, 1, runs, samples)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    counts: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for line in out.read_text().splitlines():
        match = _STRACE_ROW.match(line)
        if match and match.group(3) != "total":
            counts[match.group(3)] = int(match.group(2)) / runs
            seconds[match.group(3)] = float(match.group(1))
    keep = ("fsync", "fdatasync", "pwrite64", "write", "writev", "pread64", "read", "futex", "openat", "newfstatat",
            "stat", "fstat", "lseek", "fcntl", "sendto", "recvfrom", "sendmsg", "recvmsg")
    return {"runs": runs, "calls_per_auth": {k: round(v, 2) for k, v in sorted(counts.items()) if k in keep},
            "all_calls_per_auth": round(sum(counts.values()), 1),
            "note": "strace -f -c -p (slows radiusd; counts only, its times are not used)"}


# -- radiusd probe events --------------------------------------------------------------------------------------

def per_auth(events: list[Event], windows: list[tuple[int, int]]) -> list[dict[str, tuple[int, int]]]:
    """For each eapol_test window: name -> (calls, total ns) of the events that started in it."""
    windows = sorted(windows)
    starts = [w[0] for w in windows]
    out: list[dict[str, list[int]]] = [defaultdict(lambda: [0, 0]) for _ in windows]
    import bisect

    for name, start, duration, _thread in events:
        index = bisect.bisect_right(starts, start) - 1
        if index >= 0 and start <= windows[index][1]:
            slot = out[index][name]
            slot[0] += 1
            slot[1] += duration
    return [{k: (v[0], v[1]) for k, v in auth.items()} for auth in out]


def summarise(auths: list[dict[str, tuple[int, int]]]) -> dict[str, Any]:
    """Per name: calls per authentication (median) and time per authentication (median, p90, mean) in us."""
    names = sorted({n for auth in auths for n in auth})
    table: dict[str, Any] = {}
    for name in names:
        calls = [float(auth.get(name, (0, 0))[0]) for auth in auths]
        us = [auth.get(name, (0, 0))[1] / 1000 for auth in auths]
        table[name] = {"calls_median": med(calls), "calls_mean": round(statistics.mean(calls), 3),
                       "us_median": round(med(us), 1), "us_p90": round(percentile(us, 0.9), 1),
                       "us_mean": round(statistics.mean(us), 1), "us_max": round(max(us), 1)}
    entries_calls = [float(sum(v[0] for k, v in auth.items() if k.startswith("entry:"))) for auth in auths]
    entries_us = [sum(v[1] for k, v in auth.items() if k.startswith("entry:")) / 1000 for auth in auths]
    return {"authentications": len(auths),
            "python_calls_per_auth_median": med(entries_calls),
            "python_us_per_auth_median": round(med(entries_us), 1),
            "python_us_per_auth_p90": round(percentile(entries_us, 0.9), 1),
            "by_name": table}


def in_windows(events: list[Event], windows: list[tuple[int, int]]) -> list[Event]:
    import bisect

    ordered = sorted(windows)
    starts = [w[0] for w in ordered]
    out = []
    for event in events:
        index = bisect.bisect_right(starts, event[1]) - 1
        if index >= 0 and event[1] <= ordered[index][1]:
            out.append(event)
    return out


PARENTS = ("step:find_device", "step:attestation_read", "step:append_decision", "step:session_write",
           "step:touch_radius_server")


def sql_inside(events: list[Event], auths: int) -> dict[str, dict[str, float]]:
    """Mean us per authentication of the sql:* / ensure_schema events nested in each registry step (same
    thread, inside its time span), and the step's remainder (SQLAlchemy: statement building, compiling, rows)."""
    parents = sorted((start, start + duration, name, thread) for name, start, duration, thread in events
                     if name in PARENTS)
    totals: dict[str, dict[str, float]] = {name: defaultdict(float) for name in PARENTS}
    for start, end, name, _thread in parents:
        totals[name]["total"] += (end - start) / 1000
    import bisect

    starts = [p[0] for p in parents]
    for name, start, duration, thread in events:
        if not name.startswith(("sql:", "step:ensure_schema")):
            continue
        index = bisect.bisect_right(starts, start) - 1
        while index >= 0:
            p_start, p_end, p_name, p_thread = parents[index]
            if p_thread == thread and p_start <= start <= p_end:
                totals[p_name][name] += duration / 1000
                break
            index -= 1
            if index >= 0 and start - parents[index][0] > 50_000_000:
                break
    out: dict[str, dict[str, float]] = {}
    for parent, row in totals.items():
        if not row:
            continue
        inner = sum(v for k, v in row.items() if k != "total" and k != "step:ensure_schema")
        inner += row.get("step:ensure_schema", 0.0)
        out[parent] = {k: round(v / auths, 1) for k, v in row.items()}
        out[parent]["python_remainder"] = round((row["total"] - inner) / auths, 1)
    return out


def probe_pass(clients: Clients, target: Target, runs: int) -> list[tuple[int, int]]:
    windows: list[tuple[int, int]] = []
    samples = Samples()
    clients.block(target, 1, runs, samples, windows)
    return windows


def read_events(path: Path) -> list[Event]:
    for _ in range(100):
        if path.exists():
            return [tuple(e) for e in json.loads(path.read_text())]
        time.sleep(0.1)
    raise SystemExit(f"the probe module wrote no events to {path} (did radiusd call detach?)")


# -- in process ------------------------------------------------------------------------------------------------

FAKE_RADIUSD = SimpleNamespace(RLM_MODULE_REJECT=0, RLM_MODULE_OK=2, RLM_MODULE_UPDATED=8, RLM_MODULE_NOOP=7,
                               RLM_MODULE_FAIL=1, L_INFO=3, L_ERR=4, L_AUTH=2, L_WARN=5,
                               radlog=lambda _level, _msg: None)


def _requests(lab: Lab) -> tuple[dict[str, Any], dict[str, Any]]:
    from cryptography import x509

    from tests.radius_pairs import freeradius_pairs

    ca = x509.load_pem_x509_certificate((lab.work / "pki" / "ldevid-ca.pem").read_bytes())
    request = freeradius_pairs(lab.certificate("SN-1001"), ca)
    check = {"request": request}
    post = {"request": (*request, ("Acct-Session-Id", "bench")), "reply": (("EAP-Message", "0x03050004"),),
            "config": (("Auth-Type", "Accept"),)}
    return check, post


def _hook(settings: Path) -> Hook:
    hook = Hook(FAKE_RADIUSD)
    if hook.instantiate({"settings": str(settings)}) != 0:
        raise SystemExit(hook.startup_error)
    return hook


def _one_auth(hook: Hook, check: dict[str, Any], post: dict[str, Any]) -> None:
    if not isinstance(hook.check_eap_tls(check), tuple):
        raise SystemExit("hook did not accept the benchmark device")
    hook.post_auth(post)


def in_process(lab: Lab, settings: Path, calls: int, recorder: Recorder) -> dict[str, Any]:
    """check_eap_tls + post_auth of an accept: untimed, then with the step timers (recorder installed)."""
    check, post = _requests(lab)
    hook = _hook(settings)
    for _ in range(20):
        _one_auth(hook, check, post)
    plain: list[float] = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        _one_auth(hook, check, post)
        plain.append((time.perf_counter_ns() - start) / 1000)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(min(calls, 300)):
        _one_auth(hook, check, post)
    profile.disable()
    hook.detach(None)
    recorder.install_steps()
    hook = _hook(settings)
    wrapped_check = recorder.wrap("entry:check_eap_tls", hook.check_eap_tls)
    wrapped_post = recorder.wrap("entry:post_auth", hook.post_auth)
    for _ in range(20):
        wrapped_check(check)
        wrapped_post(post)
    recorder.events.clear()
    windows = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        wrapped_check(check)
        wrapped_post(post)
        windows.append((start, time.perf_counter_ns()))
    timed = summarise(per_auth(recorder.events, windows))
    timed["registry_steps_us_mean"] = sql_inside(in_windows(recorder.events, windows), len(windows))
    recorder.events.clear()
    hook.detach(None)
    stream = io.StringIO()
    pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(18)
    return {"untimed_us_median": round(med(plain), 1), "untimed_us_p90": round(percentile(plain, 0.9), 1),
            "timed": timed, "cprofile_tottime_top": _profile_rows(stream.getvalue())}


def _profile_rows(text: str) -> list[str]:
    rows = [line.rstrip() for line in text.splitlines() if re.match(r"^\s+\d", line)]
    return [re.sub(r"/\S*/(site-packages|main)/", "", row) for row in rows]


def _median_us(fn: Callable[[], object], calls: int) -> float:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return round(med(samples), 1)


def device_read_costs(lab: Lab, calls: int) -> dict[str, float]:
    """The one registry read every authentication needs (SN-1001 by issuer + serial), three ways, in process:
    through SqlDeviceStore.find_device (statement built per call), a statement built once (bindparams) through
    the same engine transaction, and raw sqlite3 on the same file."""
    import sqlalchemy as sa

    from policy.model import DeviceKey
    from policy.x509facts import facts_from_certificate
    from trustport.store.schema import devices
    from trustport.store.sql import SqlDeviceStore

    key = DeviceKey(facts_from_certificate(lab.certificate("SN-1001")).issuer, "SN-1001")
    store = SqlDeviceStore(lab.config.database_url())
    engine = store._engine
    prebuilt = (sa.select(devices).where(devices.c.issuer == sa.bindparam("i"),
                                         devices.c.serial_number == sa.bindparam("s"))
                .order_by(devices.c.id).limit(1))

    def built_once() -> object:
        with engine.begin() as conn:
            return conn.execute(prebuilt, {"i": key.issuer, "s": key.serial_number}).first()

    raw = sqlite3.connect(str(lab.work / "registry.sqlite"))
    sql = "SELECT * FROM devices WHERE issuer = ? AND serial_number = ? ORDER BY id LIMIT 1"
    out = {"find_device_store_us": _median_us(lambda: store.find_device(key), calls),
           "find_device_prebuilt_statement_us": _median_us(built_once, calls),
           "find_device_raw_sqlite3_us": _median_us(
               lambda: raw.execute(sql, (key.issuer, key.serial_number)).fetchone(), calls)}
    raw.close()
    store.close()
    return out


def bare_baselines(work: Path, calls: int) -> dict[str, float]:
    """In-process baselines: an empty Python call with the same argument, a bare SQLite INSERT + COMMIT on a
    WAL file (synchronous NORMAL, as the registry; and FULL), json.dumps of three reasons."""
    out: dict[str, float] = {}

    def empty(p: Any) -> Any:
        return 8, {"reply": ()}

    arg = {"request": tuple((f"Attr-{i}", "x" * 40) for i in range(25))}
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        empty(arg)
        samples.append((time.perf_counter_ns() - start) / 1000)
    out["empty_python_call_us"] = round(med(samples), 3)
    for sync in ("NORMAL", "FULL"):
        path = work / f"bare-{sync}.sqlite"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        samples = []
        for i in range(calls):
            start = time.perf_counter_ns()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}",))
            conn.execute("COMMIT")
            samples.append((time.perf_counter_ns() - start) / 1000)
        conn.close()
        out[f"bare_sqlite_insert_commit_{sync.lower()}_us"] = round(med(samples), 1)
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        json.dumps(["certificate valid", "registered operational device", "segment production"])
        samples.append((time.perf_counter_ns() - start) / 1000)
    out["json_dumps_reasons_us"] = round(med(samples), 2)
    return out


@contextlib.contextmanager
def postgres_settings(lab: Lab) -> Iterator[tuple[Path, Callable[[int], float]] | None]:
    """hook.json pointing at a fresh PostgreSQL registry (durable commits), and a bare-commit timer."""
    try:
        from tests.support.postgres import PostgresUnavailable, running_postgres
    except ImportError:
        yield None
        return
    from policy.model import DeviceKey, LifecycleState
    from policy.x509facts import facts_from_certificate
    from trustport.store.sql import SqlDeviceStore

    try:
        server_cm = running_postgres(durable=True)
        server = server_cm.__enter__()
    except PostgresUnavailable:
        yield None
        return
    try:
        url = server.url()
        store = SqlDeviceStore(url, create=True)
        store.ensure_schema()
        facts = facts_from_certificate(lab.certificate("SN-1001"))
        store.add_device(DeviceKey(facts.issuer, "SN-1001"), state=LifecycleState.OPERATIONAL, now=lab.now,
                         segment="production", owner="lab", facts=facts)
        store.close()
        data = json.loads((lab.work / "raddb" / "hook.json").read_text())
        data["database_url"] = url
        data["config_file"] = None  # else the hook reloads the YAML (SQLite) policy
        data["metrics_dir"] = None
        path = lab.work / "hook-pg.json"
        path.write_text(json.dumps(data))

        def bare_commit(calls: int) -> float:
            with server.connect() as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS bench_t (id serial PRIMARY KEY, v text)")
                conn.commit()
                samples = []
                for i in range(calls):
                    start = time.perf_counter_ns()
                    conn.execute("INSERT INTO bench_t (v) VALUES (%s)", (f"row {i}",))
                    conn.commit()
                    samples.append((time.perf_counter_ns() - start) / 1000)
            return med(samples)

        yield path, bare_commit
    finally:
        server_cm.__exit__(None, None, None)


# -- main ------------------------------------------------------------------------------------------------------

def _fmt_rate(s: dict[str, float]) -> str:
    return (f"{s['auth_per_s']:7.1f}/s  latency median {s['latency_median_ms']:6.2f} ms p90 {s['latency_p90_ms']:6.2f}"
            f"  radiusd CPU {s['radiusd_cpu_ms_per_auth']:5.2f} ms/auth  log {s['radiusd_log_bytes_per_auth']} B/auth")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="authentications per variant and concurrency")
    parser.add_argument("--block", type=int, default=25, help="authentications per variant before switching")
    parser.add_argument("--calls", type=int, default=1000, help="in-process authentications")
    parser.add_argument("--strace-runs", type=int, default=40)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "runs": args.runs,
                               "block": args.block, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="trustport-auth-path-") as tmp:
        work = Path(tmp)
        with Lab(work, datetime.now(UTC), echo=lambda _m: None) as lab, contextlib.ExitStack() as stack:
            assert lab.server.process is not None
            targets = {"hook": Target("hook", lab.config.radius.auth_port, lab.server.process.pid,
                                      work / "radiusd.log")}
            probe_out = {"empty": work / "empty-events.json", "probe": work / "probe-events.json"}
            servers: dict[str, RadiusServer] = {}
            for name, module in (("baseline", None), ("empty", "hookprobe.empty"), ("probe", "hookprobe.probe")):
                port = free_port(count=2)
                raddb = variant_raddb(work / "raddb", work / f"raddb-{name}", port, module, probe_out.get(name))
                server = stack.enter_context(RadiusServer(raddb, work / f"{name}.log"))
                assert server.process is not None
                servers[name] = server
                targets[name] = Target(name, port, server.process.pid, work / f"{name}.log")
            clients = Clients(lab, 2)
            for target in targets.values():  # warm-up
                for _ in range(3):
                    clients.one(0, target.port)
            compared = {name: targets[name] for name in VARIANTS}
            results["throughput"] = {}
            for concurrency in (1, 2):
                samples = throughput(clients, compared, concurrency, args.runs, args.block)
                summary: dict[str, Any] = {name: s.summary() for name, s in samples.items()}
                base_rate = summary["baseline"]["auth_per_s"]
                summary["hook_over_baseline_rate"] = round(summary["hook"]["auth_per_s"] / base_rate, 4)
                summary["empty_over_baseline_rate"] = round(summary["empty"]["auth_per_s"] / base_rate, 4)
                results["throughput"][f"clients_{concurrency}"] = summary
            results["strace"] = {name: strace_counts(clients, targets[name], args.strace_runs,
                                                     work / f"strace-{name}.txt") for name in ("baseline", "hook")}
            windows = probe_pass(clients, targets["probe"], args.runs)
            empty_windows = probe_pass(clients, targets["empty"], min(args.runs, 100))
            for name in ("probe", "empty"):
                servers[name].stop()
            probe_events = read_events(probe_out["probe"])
            results["radiusd_probe"] = summarise(per_auth(probe_events, windows))
            meta = probe_out["probe"].with_suffix(".meta.json")
            results["radiusd_python"] = json.loads(meta.read_text()) if meta.exists() else None
            results["radiusd_probe"]["registry_steps_us_mean"] = sql_inside(in_windows(probe_events, windows),
                                                                            len(windows))
            results["radiusd_empty_module"] = summarise(per_auth(read_events(probe_out["empty"]), empty_windows))
            stack.close()
            recorder = Recorder()
            results["in_process_sqlite"] = in_process(lab, work / "raddb" / "hook.json", args.calls, recorder)
            results["in_process_baselines"] = bare_baselines(work, args.calls)
            results["in_process_baselines"].update(device_read_costs(lab, args.calls))
            if not args.no_postgres:
                with postgres_settings(lab) as pg:
                    if pg is None:
                        results["in_process_postgres"] = {"skipped": "PostgreSQL binaries not found"}
                    else:
                        recorder.events.clear()
                        results["in_process_postgres"] = in_process(lab, pg[0], args.calls, recorder)
                        results["in_process_baselines"]["bare_postgres_insert_commit_us"] = round(pg[1](args.calls), 1)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    report(results)


def report(results: dict[str, Any]) -> None:
    print(f"EAP-TLS through FreeRADIUS 3.2 (eapol_test, loopback), {results['runs']} authentications per variant "
          "and concurrency, blocks alternating:")
    for key, summary in results["throughput"].items():
        print(f"  {key.replace('_', ' ')}:")
        for name in VARIANTS:
            print(f"    {name:<9}{_fmt_rate(summary[name])}")
        print(f"    hook / baseline rate {summary['hook_over_baseline_rate']:.3f}   "
              f"empty python3 / baseline rate {summary['empty_over_baseline_rate']:.3f}")
    for name, part in (("trustport hook (probe)", results["radiusd_probe"]),
                       ("empty python3 module", results["radiusd_empty_module"])):
        print(f"  inside radiusd, {name}: {part['python_calls_per_auth_median']:.0f} Python calls per "
              f"authentication, {part['python_us_per_auth_median']:.0f} us median (p90 "
              f"{part['python_us_per_auth_p90']:.0f}) over {part['authentications']} authentications")
        for entry, row in part["by_name"].items():
            if entry.startswith(("entry:", "sql:", "sqlite:")) or name.startswith("trustport"):
                print(f"    {entry:<28} calls {row['calls_median']:4.0f}  median {row['us_median']:8.1f} us  "
                      f"p90 {row['us_p90']:8.1f} us")
    for name, trace in results["strace"].items():
        print(f"  strace {name}: {trace.get('calls_per_auth', trace)}")
    for key in ("in_process_sqlite", "in_process_postgres"):
        part = results.get(key)
        if part and "untimed_us_median" in part:
            print(f"  {key}: check_eap_tls + post_auth untimed median {part['untimed_us_median']} us "
                  f"(p90 {part['untimed_us_p90']}); timed {part['timed']['python_us_per_auth_median']} us")
    print(f"  in-process baselines: {results['in_process_baselines']}")


if __name__ == "__main__":
    main()
