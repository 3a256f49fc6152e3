"""Where the time of one EAP-TLS authentication goes: FreeRADIUS with the trustport hook vs without, same run.

(a) Throughput: authentications per second through FreeRADIUS 3.2 for four configs rendered from the same lab
    config, each on its own port: ``baseline`` (check-eap-tls sets the VLAN in unlang, no python3 anywhere),
    ``empty`` (the same sections call python3, but every entry point is an empty function; what rlm_python3
    itself costs), ``hook`` (the real trustport hook as rendered: registry cache + journal) and ``hook_direct``
    (the same hook with ``auth_path: {cache: false, journal: false}``: every read and write to the registry
    before answering; the same-run "before"), with 1 and 2 concurrent eapol_test clients, blocks alternating
    (order rotated per block). Per block also radiusd's CPU time (/proc/PID/stat) and log bytes.
(b) Inside radiusd: servers load ``bench/hookprobe/probe.py`` instead of ``radius_hooks.freeradius`` (the real
    entry points, each wrapped with perf_counter_ns, plus timers on the steps inside), one with the rendered
    settings and one with the direct ones. Their events are assigned to the eapol_test run they fall in: all
    Python time per authentication (the entry:* events), per entry point and per step (a cache hit has no
    ``registry_*`` step under it), SQL under each step; the cache's counters are dumped with the events. strace
    counts syscalls (fsync/fdatasync, writes) per authentication on the baseline, hook and hook_direct servers.
(c) In process (fake ``radiusd``, the attribute tuple FreeRADIUS passes): check_eap_tls + post_auth untimed,
    cache + journal vs direct in alternating blocks (same run), then the steps timed, a cProfile top list, next
    to an empty call, a bare SQLite commit (same pragmas) and, when PostgreSQL binaries are there, the same on a
    PostgreSQL registry and a bare PostgreSQL commit.

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
VARIANTS = ("baseline", "empty", "hook", "hook_direct")
TARGET_RATE_RATIO = 0.97  # hook / baseline authentications per second
TARGET_INSIDE_US = 300.0  # all rlm_python3 work per authentication, median
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- configs ---------------------------------------------------------------------------------------------------

def variant_raddb(hooked: Path, target: Path, port: int, module: str | None, probe_out: Path | None,
                  settings: Path | None = None, *, steps: bool = True) -> Path:
    """The lab's rendered config on another port; ``module`` None: no python3 at all (VLAN set in unlang);
    else that module instead of radius_hooks.freeradius (found on bench/), reading ``settings`` (a hook.json)
    instead of the rendered one when given."""
    moved_raddb(hooked, target, port, python3=module is not None)
    if module is not None:
        mod = target / "mods-enabled" / "python3"
        conf = mod.read_text()
        conf = conf.replace("module = radius_hooks.freeradius", f"module = {module}")
        conf = re.sub(r'python_path = "([^"]*)"', lambda m: f'python_path = "{m.group(1)}:{BENCH}"', conf)
        if settings is not None:
            conf = re.sub(r'settings = "[^"]*"', f'settings = "{settings}"', conf)
        if probe_out is not None:
            conf = conf.replace("\tconfig {\n", f'\tconfig {{\n\t\tprobe_out = "{probe_out}"\n'
                                                  + ('' if steps else '\t\tprobe_steps = "no"\n'))
        mod.write_text(conf)
    return target


DIRECT = {"cache": False, "journal": False}  # the path before the cache and the journal: the same-run "before"


def direct_settings(lab: Lab) -> Path:
    """hook.json of the lab's config with ``auth_path: {cache: false, journal: false}``: every read and write goes
    to the registry before the answer. Rendered from a YAML copy next to the lab's (relative paths unchanged), which
    it names as its config file, so the hook's policy reload keeps these settings."""
    import yaml

    from trustport.files import write_private
    from trustport.settings.config import load_config

    data = yaml.safe_load(lab.config_path.read_text(encoding="utf-8"))
    data["auth_path"] = {**(data.get("auth_path") or {}), **DIRECT}
    path = lab.config_path.with_name("trustport-direct.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    settings = load_config(path).hook_settings()
    if settings.auth_path.cache or settings.auth_path.journal_dir is not None:
        raise SystemExit(f"{path}: auth_path {DIRECT} did not reach the hook settings: {settings.auth_path}")
    out = lab.work / "hook-direct.json"
    write_private(out, json.dumps(settings.to_json(), indent=2).encode())
    return out


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


# The hook's repositories (cache reads, journal writes) and the SQL store under them (a cache miss, the direct path)
HOOK_STEPS = ("step:find_device", "step:attestation_read", "step:append_decision", "step:session_write")
REGISTRY_STEPS = ("step:registry_find_device", "step:registry_attestation_read", "step:registry_append_decision",
                  "step:registry_session_write")
PARENTS = (*HOOK_STEPS, *REGISTRY_STEPS, "step:touch_radius_server")


def nested(events: list[Event], parents: tuple[str, ...],
           child: Callable[[str], bool]) -> dict[str, dict[str, list[float]]]:
    """parent name -> child name -> [calls, us] of the ``child`` events inside each parent (same thread, inside its
    span; the innermost parent), plus the parents' own ``total`` and ``calls``."""
    spans = sorted((start, start + duration, name, thread) for name, start, duration, thread in events
                   if name in parents)
    totals: dict[str, dict[str, list[float]]] = {name: defaultdict(lambda: [0, 0.0]) for name in parents}
    for start, end, name, _thread in spans:
        row = totals[name]["total"]
        row[0] += 1
        row[1] += (end - start) / 1000
    import bisect

    starts = [p[0] for p in spans]
    for name, start, duration, thread in events:
        if not child(name):
            continue
        index = bisect.bisect_right(starts, start) - 1
        while index >= 0:
            p_start, p_end, p_name, p_thread = spans[index]
            itself = p_name == name and p_start == start and p_end == start + duration
            if not itself and p_thread == thread and p_start <= start <= p_end:
                row = totals[p_name][name]
                row[0] += 1
                row[1] += duration / 1000
                break
            index -= 1
            if index >= 0 and start - spans[index][0] > 50_000_000:
                break
    return {name: dict(row) for name, row in totals.items() if row}


def sql_inside(events: list[Event], auths: int) -> dict[str, dict[str, float]]:
    """Mean us per authentication of the sql:* / ensure_schema / registry_* events nested in each step (same thread,
    inside its time span), and the step's remainder (cache lookup, journal append; SQLAlchemy statement building,
    compiling, rows)."""
    found = nested(events, PARENTS, lambda n: n.startswith(("sql:", "step:ensure_schema", "step:registry_")))
    out: dict[str, dict[str, float]] = {}
    for parent, row in found.items():
        inner = sum(v[1] for k, v in row.items() if k != "total")
        out[parent] = {k: round(v[1] / auths, 1) for k, v in row.items()}
        out[parent]["calls_per_auth"] = round(row["total"][0] / auths, 3)
        out[parent]["python_remainder"] = round((row["total"][1] - inner) / auths, 1)
    return out


def cache_use(events: list[Event]) -> dict[str, dict[str, int]]:
    """Per hook read (find_device, attestation_read): calls, and how many went to the registry underneath (a cache
    miss or bypass; on the direct path, all). A cache hit has no registry_* child."""
    pairs = (("step:find_device", "step:registry_find_device"),
             ("step:attestation_read", "step:registry_attestation_read"))
    found = nested(events, tuple(p for p, _ in pairs), lambda n: n in {c for _, c in pairs})
    out = {}
    for parent, registry in pairs:
        row = found.get(parent, {})
        calls = int(row.get("total", [0])[0])
        to_registry = int(row.get(registry, [0])[0])
        out[parent.removeprefix("step:")] = {"calls": calls, "from_registry": to_registry,
                                             "from_cache": calls - to_registry}
    return out


def inside(events: list[Event], windows: list[tuple[int, int]]) -> dict[str, Any]:
    """The probe server's figures per authentication: all Python time (the entry:* events of one EAP-TLS exchange),
    per entry point, per step, SQL under the steps, the cache's hits."""
    request_threads = {thread for name, _s, _d, thread in events if name.startswith("entry:")}
    background = [e for e in events if e[3] not in request_threads]  # journal drainer, cache refresher
    events = [e for e in events if e[3] in request_threads]
    part = summarise(per_auth(events, windows))
    mine = in_windows(events, windows)
    by_name = part.pop("by_name")
    # what radiusd's other threads did meanwhile (not in the Python time per authentication: off the path)
    part["background_threads"] = summarise(per_auth(background, windows))["by_name"]
    part["python_us_per_auth"] = {"median": part["python_us_per_auth_median"], "p90": part["python_us_per_auth_p90"]}
    part["by_entry"] = {k: v for k, v in by_name.items() if k.startswith("entry:")}
    part["by_step"] = {k: v for k, v in by_name.items() if k.startswith("step:")}
    part["sql"] = {k: v for k, v in by_name.items() if k.startswith(("sql:", "sqlite:"))}
    part["registry_steps_us_mean"] = sql_inside(mine, len(windows))
    part["cache_use"] = cache_use(mine)
    return part


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


def in_process_untimed(lab: Lab, settings: dict[str, Path], calls: int, block: int = 50) -> dict[str, Any]:
    """check_eap_tls + post_auth of an accept, no timers installed: each hook.json's hook, all open at once, in
    alternating blocks (drift hits all alike); then a cProfile of each. Call before ``Recorder.install_steps``."""
    check, post = _requests(lab)
    hooks = {name: _hook(path) for name, path in settings.items()}
    plain: dict[str, list[float]] = {name: [] for name in hooks}
    try:
        for hook in hooks.values():
            for _ in range(20):
                _one_auth(hook, check, post)
        done, rotation = 0, 0
        names = list(hooks)
        while done < calls:
            n = min(block, calls - done)
            for name in names[rotation % len(names):] + names[:rotation % len(names)]:
                hook = hooks[name]
                for _ in range(n):
                    start = time.perf_counter_ns()
                    _one_auth(hook, check, post)
                    plain[name].append((time.perf_counter_ns() - start) / 1000)
            done += n
            rotation += 1
        profiles = {}
        for name, hook in hooks.items():
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(min(calls, 300)):
                _one_auth(hook, check, post)
            profile.disable()
            stream = io.StringIO()
            pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(18)
            profiles[name] = _profile_rows(stream.getvalue())
        stats = {name: _cache_stats(hook) for name, hook in hooks.items()}
    finally:
        for hook in hooks.values():
            hook.detach(None)
    return {name: {"untimed_us_median": round(med(plain[name]), 1),
                   "untimed_us_p90": round(percentile(plain[name], 0.9), 1),
                   "cache_stats": stats[name], "cprofile_tottime_top": profiles[name]} for name in hooks}


def _cache_stats(hook: Hook) -> dict[str, int] | None:
    import dataclasses

    runtime = hook.runtime
    return dataclasses.asdict(runtime.cache.stats) if runtime is not None and runtime.cache is not None else None


def in_process_timed(lab: Lab, settings: Path, calls: int, recorder: Recorder) -> dict[str, Any]:
    """The same with the step timers (``recorder.install_steps()`` done): where the time goes."""
    check, post = _requests(lab)
    hook = _hook(settings)
    wrapped_check = recorder.wrap("entry:check_eap_tls", hook.check_eap_tls)
    wrapped_post = recorder.wrap("entry:post_auth", hook.post_auth)
    try:
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
        timed = inside(recorder.events, windows)
        recorder.events.clear()
    finally:
        hook.detach(None)
    return timed


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
def postgres_settings(lab: Lab) -> Iterator[tuple[dict[str, Path], Callable[[int], float]] | None]:
    """hook.json files pointing at a fresh PostgreSQL registry (durable commits), cache + journal (its own journal
    directory) and direct, and a bare-commit timer."""
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
        paths = {}
        for name, auth_path in (("cached", {**data["auth_path"], "journal_dir": str(lab.work / "journal-pg")}),
                                ("direct", {**data["auth_path"], "cache": False, "journal_dir": None})):
            paths[name] = lab.work / f"hook-pg-{name}.json"
            paths[name].write_text(json.dumps({**data, "auth_path": auth_path}))

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

        yield paths, bare_commit
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
                               "block": args.block, "cpus": os.cpu_count(),
                               "variants": {"baseline": "no python3 (unlang sets the VLAN)",
                                            "empty": "python3 with empty entry points",
                                            "hook": "the real hook as rendered (auth_path: cache + journal)",
                                            "hook_direct": f"the real hook with auth_path {DIRECT} (the old path)"}}
    with tempfile.TemporaryDirectory(prefix="trustport-auth-path-") as tmp:
        work = Path(tmp)
        with Lab(work, datetime.now(UTC), echo=lambda _m: None) as lab, contextlib.ExitStack() as stack:
            assert lab.server.process is not None
            hook_json = work / "raddb" / "hook.json"
            if not json.loads(hook_json.read_text()).get("auth_path", {}).get("cache"):
                raise SystemExit(f"{hook_json}: the lab's rendered hook has no cache: not the path to measure")
            direct_json = direct_settings(lab)
            targets = {"hook": Target("hook", lab.config.radius.auth_port, lab.server.process.pid,
                                      work / "radiusd.log")}
            probe_out = {"empty": work / "empty-events.json", "probe": work / "probe-events.json",
                         "probe_direct": work / "probe-direct-events.json",
                         "probe_entries": work / "probe-entries-events.json"}
            servers: dict[str, RadiusServer] = {}
            for name, module, settings in (("baseline", None, None), ("empty", "hookprobe.empty", None),
                                           ("hook_direct", "radius_hooks.freeradius", direct_json),
                                           ("probe", "hookprobe.probe", None),
                                           ("probe_direct", "hookprobe.probe", direct_json),
                                           ("probe_entries", "hookprobe.probe", None)):
                port = free_port(count=2)
                raddb = variant_raddb(work / "raddb", work / f"raddb-{name}", port, module, probe_out.get(name),
                                      settings, steps=name != "probe_entries")
                server = stack.enter_context(RadiusServer(raddb, work / f"{name}.log"))
                assert server.process is not None
                servers[name] = server
                targets[name] = Target(name, port, server.process.pid, work / f"{name}.log")
            clients = Clients(lab, 2)
            for target in targets.values():  # warm-up (the caches hold SN-1001 after it)
                for _ in range(3):
                    clients.one(0, target.port)
            compared = {name: targets[name] for name in VARIANTS}
            results["throughput"] = {}
            for concurrency in (1, 2):
                samples = throughput(clients, compared, concurrency, args.runs, args.block)
                summary: dict[str, Any] = {name: s.summary() for name, s in samples.items()}
                base_rate = summary["baseline"]["auth_per_s"]
                for name in ("hook", "hook_direct", "empty"):
                    summary[f"{name}_over_baseline_rate"] = round(summary[name]["auth_per_s"] / base_rate, 4)
                results["throughput"][f"clients_{concurrency}"] = summary
            results["target_rate_ratio"] = TARGET_RATE_RATIO
            results["strace"] = {name: strace_counts(clients, targets[name], args.strace_runs,
                                                     work / f"strace-{name}.txt")
                                 for name in ("baseline", "hook", "hook_direct")}
            windows = {name: probe_pass(clients, targets[name], args.runs)
                       for name in ("probe_entries", "probe", "probe_direct")}
            windows["empty"] = probe_pass(clients, targets["empty"], min(args.runs, 100))
            for name in ("probe_entries", "probe", "probe_direct", "empty"):
                servers[name].stop()
            parts = {name: inside(read_events(probe_out[name]), windows[name]) for name in windows}
            for name in ("probe", "probe_direct", "probe_entries"):
                stats = probe_out[name].with_suffix(".cache.json")
                parts[name]["cache_stats_since_start"] = json.loads(stats.read_text()) if stats.exists() else None
            meta = probe_out["probe"].with_suffix(".meta.json")
            results["radiusd_python"] = json.loads(meta.read_text()) if meta.exists() else None
            # the headline: every Python call of one EAP-TLS exchange, timed at the entry points only; the steps
            # (and their own timers' cost) come from the fully timed probe next to it
            results["inside"] = {**parts["probe_entries"], "target_us": TARGET_INSIDE_US,
                                 "with_step_timers": parts["probe"],
                                 "hook_direct": parts["probe_direct"], "empty_module": parts["empty"]}
            stack.close()
            recorder = Recorder()
            sqlite_settings = {"cached": hook_json, "direct": direct_json}
            with contextlib.ExitStack() as pg_stack:
                pg = None if args.no_postgres else pg_stack.enter_context(postgres_settings(lab))
                # untimed first, every backend, before any step timer is installed in this process (they stay)
                untimed = {"sqlite": in_process_untimed(lab, sqlite_settings, args.calls)}
                if pg is not None:
                    untimed["postgres"] = in_process_untimed(lab, pg[0], args.calls)
                recorder.install_steps()
                for backend, paths in (("sqlite", sqlite_settings), *((("postgres", pg[0]),) if pg else ())):
                    part = untimed[backend]
                    for name, path in paths.items():
                        part[name]["timed"] = in_process_timed(lab, path, args.calls, recorder)
                    part["cached_over_direct_untimed_median"] = round(
                        part["cached"]["untimed_us_median"] / part["direct"]["untimed_us_median"], 3)
                    results[f"in_process_{backend}"] = part
                if pg is None and not args.no_postgres:
                    results["in_process_postgres"] = {"skipped": "PostgreSQL binaries not found"}
                results["in_process_baselines"] = bare_baselines(work, args.calls)
                results["in_process_baselines"].update(device_read_costs(lab, args.calls))
                if pg is not None:
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
            print(f"    {name:<12}{_fmt_rate(summary[name])}")
        print(f"    hook / baseline rate {summary['hook_over_baseline_rate']:.3f} (target >= {TARGET_RATE_RATIO})   "
              f"hook_direct / baseline {summary['hook_direct_over_baseline_rate']:.3f}   "
              f"empty python3 / baseline {summary['empty_over_baseline_rate']:.3f}")
    inside_ = results["inside"]
    for name, part in (("trustport hook, cache + journal (entry points timed)", inside_),
                       ("trustport hook, cache + journal (every step timed)", inside_["with_step_timers"]),
                       ("trustport hook, direct (probe)", inside_["hook_direct"]),
                       ("empty python3 module", inside_["empty_module"])):
        print(f"  inside radiusd, {name}: {part['python_calls_per_auth_median']:.0f} Python calls per "
              f"authentication, {part['python_us_per_auth']['median']:.0f} us median (p90 "
              f"{part['python_us_per_auth']['p90']:.0f}) over {part['authentications']} authentications"
              + (f" (target <= {TARGET_INSIDE_US:.0f} us)" if part is inside_ else ""))
        rows = {**part["by_entry"], **part["sql"]} if name.startswith("empty") else \
            {**part["by_entry"], **part["by_step"], **part["sql"]}
        for entry, row in rows.items():
            print(f"    {entry:<34} calls {row['calls_median']:4.0f}  median {row['us_median']:8.1f} us  "
                  f"p90 {row['us_p90']:8.1f} us")
        if "cache_use" in part and not name.startswith("empty"):
            print(f"    cache use in these authentications: {part['cache_use']}; "
                  f"since start: {part.get('cache_stats_since_start')}")
    for name, trace in results["strace"].items():
        print(f"  strace {name}: {trace.get('calls_per_auth', trace)}")
    for key in ("in_process_sqlite", "in_process_postgres"):
        part = results.get(key)
        if not part or "cached" not in part:
            continue
        for name in ("cached", "direct"):
            row = part[name]
            print(f"  {key} {name}: check_eap_tls + post_auth untimed median {row.get('untimed_us_median')} us "
                  f"(p90 {row.get('untimed_us_p90')}); timed {row['timed']['python_us_per_auth']['median']} us; "
                  f"cache {row.get('cache_stats')}")
        print(f"  {key}: cached / direct untimed median {part['cached_over_direct_untimed_median']}")
    print(f"  in-process baselines: {results['in_process_baselines']}")


if __name__ == "__main__":
    main()
