"""Every benchmark in one command: runs them (subprocesses), collects their JSON, prints ONE table, writes summary.

Each bench writes its raw results to ``bench/results/<name>.json``; this script then reads them all and prints
``figure | value | same-run baseline | target | met?`` and writes ``bench/results/summary.json``. A figure whose
bench did not run or does not exist (yet) is a "not measured" row, never a number from somewhere else. A JSON
left from an earlier run is used only with ``--collect-only`` (its own time is shown in the summary).

    .venv/bin/python bench/run_all.py            # full profile (what ``make bench`` runs); then the README table
    .venv/bin/python bench/run_all.py --quick    # a few minutes: smaller counts everywhere (``make bench-quick``)
    .venv/bin/python bench/run_all.py --only decisions,registry_scale [--quick]
    .venv/bin/python bench/run_all.py --collect-only   # no runs: the table from the JSON already there
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SUMMARY = RESULTS / "summary.json"
RUNS = RESULTS / "runs.json"  # per bench: the profile and arguments of its last run (kept across invocations)
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Bench:
    name: str  # bench/results/<name>.json
    script: str
    json_flag: str  # how the script is told where to write its JSON
    quick: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    optional: bool = False  # another engineer's bench: run it if it is there


BENCHES = (
    Bench("decisions", "bench_decisions.py", "--json", ("-n", "50000", "--auth-n", "1000")),
    Bench("registry_scale", "bench_registry_scale.py", "--json",
          ("--sizes", "10k,100k", "--lookups", "5000", "--cache-memory-devices", "5000"),
          ("--sizes", "10k,100k,1M", "--lookups", "5000", "--cache-memory-devices", "20000")),
    Bench("journal", "bench_journal.py", "--json", ("-n", "300"), ("-n", "2000")),
    Bench("store", "bench_store.py", "--json", ("-n", "300")),
    Bench("hook_metrics", "bench_hook_metrics.py", "--json", ("--calls", "1000", "--block", "100")),
    Bench("eap_tls", "bench_eap_tls.py", "--json", ("--runs", "50")),
    Bench("rss", "bench_rss.py", "--json", ("--auths", "2000", "--checkpoints", "4")),
    Bench("auth_path", "bench_auth_path.py", "--out", ("--runs", "50", "--calls", "200", "--strace-runs", "10"),
          optional=True),
    Bench("enforcement", "bench_enforcement.py", "--json",
          ("--runs", "3", "--switches", "20", "--ports", "50", "--processes", "2", "--baseline-ports", "100")),
    Bench("drivers", "bench_drivers.py", "--output", ("-n", "3")),
    Bench("directory", "bench_directory.py", "--output", ("--entries", "2000")),
    Bench("two_servers", "bench_two_servers.py", "--json", ("--repeats", "3", "--before", "2", "--after", "2")),
)


def supported(script: Path, args: tuple[str, ...]) -> list[str]:
    """``args`` without the options the script's ``--help`` does not know (for a bench still being written)."""
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                               timeout=120, check=False).stdout
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            has_value = i + 1 < len(args) and not args[i + 1].startswith("-")
            if arg not in help_text:
                skip = has_value
                continue
        out.append(arg)
    return out


def run(bench: Bench, quick: bool, log_dir: Path) -> dict[str, Any]:
    script = BENCH / bench.script
    if not script.exists():
        return {"name": bench.name, "status": "absent", "script": bench.script}
    args = supported(script, bench.quick if quick else bench.full)
    cmd = [sys.executable, str(script), *args, bench.json_flag, str(RESULTS / f"{bench.name}.json")]
    print(f"\n=== {bench.name}: {' '.join(cmd[1:])}", flush=True)
    log = log_dir / f"{bench.name}.log"
    started = time.perf_counter()
    with log.open("w") as out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                cwd=BENCH.parent) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            out.write(line)
        rc = proc.wait()
    seconds = time.perf_counter() - started
    print(f"=== {bench.name}: exit {rc} after {seconds:.0f} s (log {log})", flush=True)
    return {"name": bench.name, "status": "ok" if rc == 0 else f"failed (exit {rc})", "seconds": round(seconds, 1),
            "args": args, "log": str(log)}


# -- the table -------------------------------------------------------------------------------------------------

@dataclass
class Row:
    figure: str
    value: str
    baseline: str
    target: str = "—"
    met: str = "—"
    source: str = ""
    when: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _met(ok: bool | None) -> str:
    return "—" if ok is None else "yes" if ok else "NO"


def _us(v: float) -> str:
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"


def missing(figure: str, why: str, target: str = "—", source: str = "") -> Row:
    return Row(figure, NOT_MEASURED, why, target, "—", source)


def rows_auth_path(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_auth_path.py (auth_path.json)"
    target_ratio = _get(d, "target_rate_ratio") or 0.97
    out = []
    for clients in (1, 2):
        summary = _get(d, "throughput", f"clients_{clients}")
        ratio = _get(summary, "hook_over_baseline_rate")
        figure = (f"EAP-TLS authentications/s through FreeRADIUS with the hook (cache + journal) / without it, "
                  f"{clients} eapol_test client(s)")
        if ratio is None:
            out.append(missing(figure, "auth_path.json not there or without this figure", f"≥ {target_ratio}", src))
            continue
        direct = _get(summary, "hook_direct_over_baseline_rate")
        base = f"{_get(summary, 'baseline', 'auth_per_s')} auth/s without the hook"
        if direct is not None:
            base += (f"; the hook with cache and journal off {_get(summary, 'hook_direct', 'auth_per_s')} auth/s = "
                     f"{direct:.3f}×")
        empty = _get(summary, "empty_over_baseline_rate")
        if empty is not None:
            base += f"; empty python3 module {empty:.3f}×"
        out.append(Row(figure, f"{_get(summary, 'hook', 'auth_per_s')} auth/s = {ratio:.3f}×", base,
                       f"≥ {target_ratio}", _met(ratio >= target_ratio), src))
    inside = _get(d, "inside")
    target_us = _get(inside, "target_us") or 300.0
    figure = "all rlm_python3 work per EAP-TLS authentication, inside radiusd (the hook's entry points), median"
    median = _get(inside, "python_us_per_auth", "median")
    if median is None:
        out.append(missing(figure, "auth_path.json not there or without `inside`", f"≤ {_us(target_us)}", src))
    else:
        p90 = _get(inside, "python_us_per_auth", "p90")
        use = _get(inside, "cache_use", "find_device") or {}
        if not use.get("calls"):  # the entry-points-only probe times no steps: the fully timed one next to it
            use = _get(inside, "with_step_timers", "cache_use", "find_device") or {}
        value = f"{_us(median)} (p90 {_us(p90)}; {inside['authentications']} auths"
        if use:
            value += f"; device from the cache {use['from_cache']}/{use['calls']}"
        value += ")"
        parts: list[str] = []
        direct = _get(inside, "hook_direct", "python_us_per_auth")
        if direct:
            parts.append(f"the hook with cache and journal off {_us(direct['median'])} (p90 {_us(direct['p90'])})")
        empty = _get(inside, "empty_module", "python_us_per_auth")
        if empty:
            parts.append(f"empty python3 module {_us(empty['median'])}")
        out.append(Row(figure, value, "; ".join(parts) or "—", f"≤ {_us(target_us)}", _met(median <= target_us), src))
    hook_cpu = _get(d, "throughput", "clients_1", "hook", "radiusd_cpu_ms_per_auth")
    base_cpu = _get(d, "throughput", "clients_1", "baseline", "radiusd_cpu_ms_per_auth")
    direct_cpu = _get(d, "throughput", "clients_1", "hook_direct", "radiusd_cpu_ms_per_auth")
    if hook_cpu is None or base_cpu is None:
        out.append(missing("radiusd CPU per authentication with the hook", "auth_path.json not there or without it",
                           source=src))
    else:
        base = f"{base_cpu:.2f} ms without the hook"
        if direct_cpu is not None:
            base += f"; {direct_cpu:.2f} ms with cache and journal off"
        out.append(Row("radiusd CPU per authentication with the hook (1 client; /proc, coarse ticks)",
                       f"{hook_cpu:.2f} ms (+{hook_cpu - base_cpu:.2f} ms)", base, source=src))
    for backend in ("sqlite", "postgres"):
        part = _get(d, f"in_process_{backend}")
        cached, direct_ = _get(part, "cached", "untimed_us_median"), _get(part, "direct", "untimed_us_median")
        if cached is None or direct_ is None:
            continue
        out.append(Row(f"`check_eap_tls` + `post_auth` in process, {backend} registry, cache + journal (median)",
                       _us(cached), f"cache and journal off {_us(direct_)} (same run: {cached / direct_:.3f}×)",
                       source=src))
    return out


def rows_journal(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_journal.py"
    limit = _get(d, "target_us_per_record") or 15
    target = f"≤ {limit} µs per record"
    if d is None:
        return [missing("the hook's writes: journal append per record vs the direct store calls", "did not run",
                        target, src)]
    out = []
    for key, label in (("sqlite", "SQLite"), ("sqlite_with_drainer", "SQLite, drainer thread running"),
                       ("sqlite_sync_each", "SQLite, journal_sync (fdatasync each record)"),
                       ("postgres", "PostgreSQL")):
        r = d.get(key)
        if not isinstance(r, dict) or "journal_per_record" not in r:
            continue
        per, both = r["journal_per_record"], r["journal_decision+session"]
        direct = r["direct_append_decision+authenticated"]
        sync = bool(r.get("sync_each"))
        out.append(Row(f"the hook's writes of one authentication, {label}: journal append per record, median / p99 "
                       f"(decision + session)",
                       f"{_us(per['median_us'])} / {_us(per['p99_us'])} ({_us(both['median_us'])})",
                       f"direct `append_decision` + `authenticated` {_us(direct['median_us'])} / "
                       f"{_us(direct['p99_us'])}; drained {r.get('drain_records_per_s', '?')} records/s",
                       "—" if sync else target, "—" if sync else _met(per["median_us"] <= limit), src))
    return out


def rows_eap_tls(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_eap_tls.py"
    if d is None:
        return [missing("one EAP-TLS authentication with the hook (eapol_test → FreeRADIUS, median)", "did not run",
                        source=src)]
    base = d["baseline_median_ms"]
    return [
        Row(f"one EAP-TLS authentication with the hook (eapol_test → FreeRADIUS, {d['runs']} runs, median)",
            f"{d['hook_median_ms']:.1f} ms", f"{base:.1f} ms without the hook: {d['ratio_median']:.2f}× "
            f"(+{d['hook_median_ms'] - base:.1f} ms)", source=src),
        Row("`check_eap_tls` in process (validation, CRL, deny list, registry, attestation, decision log)",
            _us(d["hook_call_us"]), f"{d['hook_call_us'] / 10 / base:.1f} % of one authentication", source=src),
        Row("EAR token verification, cold / cached by token hash",
            f"{d['token_cold_us']:.0f} µs / {d['token_cached_us']:.1f} µs",
            f"{d['token_cold_us'] / 10 / base:.1f} % / {d['token_cached_us'] / 10 / base:.3f} % of one "
            "authentication", source=src),
    ]


def rows_decisions(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_decisions.py"
    target = f"≥ {50_000:,}/s"
    if d is None:
        return [missing("policy decisions per second in process (`place()`)", "did not run", target, src)]
    out = []
    for name, p in d["policies"].items():
        label = name.replace("_", " ").replace("50 rule", "50-rule")
        rps = p["decisions_per_s"]
        out.append(Row(f"policy decisions/s in process, one thread, `place()`, {label} ({p['rules']} rules)",
                       f"{rps:,}/s ({1e6 / rps:.1f} µs each)",
                       f"trivial call loop {p['baseline_call_per_s']:,}/s; dict lookup {p['baseline_dict_per_s']:,}/s",
                       target, _met(rps >= d.get("target_decisions_per_s", 50_000)), src))
        mem, sql, auth = p["evaluate_memory"], p["evaluate_sqlite"], p["authorize_sqlite"]
        out.append(Row(f"`Authorizer.evaluate` in process, {label}: registry reads from memory / SQLite; "
                       "`authorize` (+ decision log, SQLite)",
                       f"{_us(mem['median_us'])} / {_us(sql['median_us'])}; {_us(auth['median_us'])} (medians)",
                       f"`place()` alone {1e6 / rps:.1f} µs", source=src))
    return out


def rows_registry(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_registry_scale.py"
    target = "p99 < 1 ms"
    if d is None:
        return [missing("registry lookup on the auth path at 10k / 100k / 1M devices", "did not run", target, src)]
    out = []
    limit = d.get("target_p99_us", 1000.0)
    for backend, sizes in d["backends"].items():
        if "skipped" in sizes:
            out.append(missing(f"registry lookup, {backend}", str(sizes["skipped"]).splitlines()[0], target, src))
            continue
        for size in ("10k", "100k", "1M"):
            r = sizes.get(size)
            if r is None:
                out.append(missing(f"registry lookup on the auth path, {backend}, {size} devices",
                                   "size not in this run (--sizes)", target, src))
                continue
            one, pk = r["baseline_select_1"], r["baseline_pk_1row"]
            base = (f"`SELECT 1` {_us(one['p50_us'])} / {_us(one['p99_us'])}; 1-row PK lookup "
                    f"{_us(pk['p50_us'])} / {_us(pk['p99_us'])}")
            cached = r.get("cache_find_device+latest_accepted")
            direct = r["find_device+latest_accepted"]
            if cached is None:
                out.append(missing(f"the hook's lookup (`RegistryCache`, warm), {backend}, {size} devices",
                                   "registry_scale.json without the cache figures", target, src))
            else:
                unknown = r.get("cache_unknown_device")
                extra = f"; an unknown serial (never cached) {_us(unknown['p50_us'])} / {_us(unknown['p99_us'])}" \
                    if unknown else ""
                out.append(Row(f"the hook's lookup: `RegistryCache` `find_device` + `latest_accepted` (warm), "
                               f"{backend}, {size} devices, p50 / p99 (max)",
                               f"{_us(cached['p50_us'])} / {_us(cached['p99_us'])} ({_us(cached['max_us'])})",
                               f"from the registry (a miss, or the cache off): {_us(direct['p50_us'])} / "
                               f"{_us(direct['p99_us'])}{extra}", target, _met(cached["p99_us"] < limit), src))
            for op, label in (("find_device", "`find_device`"),
                              ("find_device+latest_accepted", "`find_device` + attestation `latest_accepted`")):
                x = r[op]
                out.append(Row(f"registry {label} (the miss / cache-off path), {backend}, {size} devices, p50 / p99 "
                               "(max)", f"{_us(x['p50_us'])} / {_us(x['p99_us'])} ({_us(x['max_us'])})", base,
                               "— (fallback)", "—", src))
            memory = r.get("cache_memory")
            if memory:
                out.append(Row(f"`RegistryCache` memory per 100k cached devices (with their attestation result), "
                               f"{backend}", f"{memory['mib_per_100k_devices']} MiB ({memory['bytes_per_device']} B "
                               f"per device)", f"tracemalloc over {memory['devices']:,} devices filled at {size}, "
                               "linear", source=src))
    return out


def rows_rss(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_rss.py"
    target = "no growth beyond noise (≤ baseline + 1 MiB)"
    if d is None:
        return [missing("radiusd RSS growth, after 100 → after 10,000 authentications", "did not run", target, src)]
    n, warm = d["auths"], d["warm"]
    h, b = d["variants"]["hook"], d["variants"]["baseline"]
    return [Row(f"radiusd RSS growth with the hook, after {warm} → after {n:,} authentications",
                f"{h['growth_kib']:+,} KiB ({h[f'rss_after_{warm}_kib']:,} → {h[f'rss_after_{n}_kib']:,} KiB)",
                f"{b['growth_kib']:+,} KiB without the hook ({b[f'rss_after_{warm}_kib']:,} → "
                f"{b[f'rss_after_{n}_kib']:,} KiB)", f"no growth beyond noise (≤ baseline + {d['noise_kib']} KiB)",
                _met(bool(d["met"])), src)]


def rows_store(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_store.py"
    if d is None:
        return [missing("registry lookup + decision-log append", "did not run", source=src)]
    out = []
    for backend in ("sqlite", "postgres"):
        r = d.get(backend)
        if r is None:
            continue
        out.append(Row(f"registry `find_device` + decision-log append, {backend} (median)",
                       _us(r["find_device+append_decision"]["median_us"]),
                       f"bare `SELECT 1` {_us(r['select_1']['median_us'])}", source=src))
    return out


def rows_hook_metrics(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_hook_metrics.py"
    if d is None:
        return [missing("hook cost of metrics per authentication", "did not run", "≤ +20 µs", src)]
    growth = d["wrapper_on_us"] - d["wrapper_off_us"]
    return [Row("hook cost of metrics per authentication (the hook's entry points around a free decision, in "
                "process; whole check_eap_tls + post_auth medians for context)",
                f"{growth:+.2f} µs ({d['wrapper_on_us']:.2f} µs on); whole call {d['on_median_us']:.1f} µs",
                f"{d['wrapper_off_us']:.2f} µs off; whole call {d['off_median_us']:.1f} µs off",
                f"≤ +{d['target_us']:.0f} µs", _met(growth <= d["target_us"]), src)]


def rows_enforcement(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_enforcement.py"
    if d is None:
        return [missing("quarantine command → VLAN read back; bulk quarantine", "did not run", source=src)]
    out = []
    s = d.get("single")
    if s:
        out.append(Row(f"quarantine command → VLAN read back on the fake switch (median of {s['runs']})",
                       f"{s['trustport_ms']:.0f} ms", f"{s['driver_alone_ms']:.0f} ms for the driver alone: "
                       f"{s['ratio']:.2f}×", source=src))
    b = d.get("bulk")
    if b:
        value = (f"{b['total_s']:.1f} s: `devices quarantine` {b['queue_s']:.1f} s + worker {b['worker_s']:.1f} s "
                 f"({b['ports'] / b['worker_s']:.0f} ports/s)")
        base = (f"one port per job on {b.get('baseline_ports', '?')}: {b.get('baseline_ports_per_s', '?')} ports/s, "
                f"{b.get('baseline_extrapolated_s', '?')} s extrapolated ({b.get('speedup_worker', '?')}×)")
        out.append(Row(f"{b['ports']:,} connected ports on {b['switches']} fake switches quarantined in bulk, "
                       "every port read back", value, base,
                       f"< {b['target_total_s']} s" + (" (for 10,000 ports)" if b["ports"] != 10_000 else ""),
                       _met(b["total_s"] < b["target_total_s"]) if b["ports"] == 10_000 else "—", src))
    return out


def rows_drivers(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_drivers.py"
    if d is None:
        return [missing("per driver connect / set + read-back", "did not run", source=src)]
    base = d.get("baselines", {})
    base_text = ", ".join(f"{k} {v} ms" for k, v in base.items())
    parts = [f"{name} {r['connect_ms']} / {r['set_ms']} ms" for name, r in d.get("drivers", {}).items()]
    return [Row(f"per driver connect / set + read-back (median of {d.get('n')})", "; ".join(parts), base_text,
                source=src)]


def rows_directory(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_directory.py"
    if d is None:
        return [missing("directory sync", "did not run", source=src)]
    samples = d.get("samples", [])
    entries = _get(d, "parameters", "entries")

    def med(step: str, backend: str) -> float | None:
        values = sorted(s["seconds"] for s in samples if s["step"] == step and s["backend"] == backend)
        return values[len(values) // 2] if values else None

    steps = list(dict.fromkeys((s["step"], s["backend"]) for s in samples))
    base_b = next((med(st, be) for st, be in steps if st.startswith("B:")), None)
    base_a = next((med(st, be) for st, be in steps if st.startswith("A:")), None)
    out = []
    for step, backend in steps:
        if backend == "-":
            continue
        seconds = med(step, backend)
        assert seconds is not None
        percent = _get(d, "parameters", "changed_percent")
        name = step.replace("P %", f"{percent:g} %") if isinstance(percent, (int, float)) else step
        out.append(Row(f"directory sync of {entries:,} entries, {name}, {backend}", f"{seconds:.2f} s",
                       f"ldapsearch {base_a:.2f} s; ldap3 paged read {base_b:.2f} s" if base_a and base_b else "—",
                       source=src))
    return out


def rows_two_servers(d: dict[str, Any] | None) -> list[Row]:
    src = "bench_two_servers.py"
    if d is None:
        return [missing("two RADIUS servers on one PostgreSQL registry", "did not run", source=src)]
    same, seen, restart = d["same_decisions"], d["visibility"], d["restart"]
    target = d.get("target_visibility_s", 1.0)
    first = seen.get("seen_by_first_authentication")
    value = f"median {seen['quarantine_visible_median_s']:.3f} s, max {seen['quarantine_visible_max_s']:.3f} s"
    if first is not None:
        value += f"; the first authentication after it saw it {first}/{seen['repeats']}"
    base = "one eapol_test run ≈ 0.02 s"
    if "action_return_median_s" in seen:
        base += f"; the action itself took {seen['action_return_median_s']:.3f} s (median, commit + barrier)"
    journals = restart.get("journals_applied_before_counting")
    logged = f"{restart['logged']} answered and logged"
    if journals:
        logged += (f"; counted after every journal was applied ({journals['waited_s']:.2f} s)" if journals["applied"]
                   else "; journals NOT fully applied when counted")
    return [
        Row("two RADIUS servers on one PostgreSQL: the same decision on both", f"{same['agree']}/{same['devices']} "
            "devices", "the lab's expected outcomes", "all", _met(same["agree"] == same["devices"]), src),
        Row(f"an operator's quarantine on one server, seen by the other's next authentication ({seen['repeats']} "
            "rounds; from the action returning)", value, base, f"≤ {target:g} s",
            _met(seen["quarantine_visible_max_s"] <= target), src),
        Row("PostgreSQL restart under load on both servers: answered decisions without a decision-log row",
            f"{restart['lost']} of {restart['answered']} ({restart['lost_accepts']} accepts, "
            f"{restart['lost_rejects']} fail-closed rejects while the registry was down)",
            logged, "0", _met(restart["lost"] == 0 and (not journals or journals["applied"])), src),
    ]


COLLECTORS: tuple[tuple[str, Callable[[dict[str, Any] | None], list[Row]]], ...] = (
    ("auth_path", rows_auth_path), ("eap_tls", rows_eap_tls), ("decisions", rows_decisions),
    ("registry_scale", rows_registry), ("rss", rows_rss), ("store", rows_store), ("hook_metrics", rows_hook_metrics),
    ("journal", rows_journal), ("enforcement", rows_enforcement), ("drivers", rows_drivers),
    ("directory", rows_directory), ("two_servers", rows_two_servers),
)


def load(name: str, since: float | None) -> tuple[dict[str, Any] | None, str, float]:
    """The bench's JSON (None: absent, unreadable, or older than ``since``), its time, its file's mtime."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None, "", 0.0
    mtime = path.stat().st_mtime
    if since is not None and mtime < since:
        return None, "", mtime  # left from an earlier run: not this run's figure
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None, "", mtime
    when = str(data.get("time") or data.get("finished") or datetime.fromtimestamp(mtime, UTC).isoformat())
    try:  # the time the bench itself recorded, when it did (a copied or restored file keeps it)
        measured = datetime.fromisoformat(when).timestamp()
    except ValueError:
        measured = mtime
    return data, when[:16].replace("T", " "), measured


def collect(since: float | None, started_at: float) -> list[Row]:
    rows: list[Row] = []
    try:
        profiles = {name: r.get("profile", "") for name, r in json.loads(RUNS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        profiles = {}
    for name, fn in COLLECTORS:
        data, when, mtime = load(name, since)
        try:
            produced = fn(data)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:  # a JSON of another shape
            produced = [missing(f"figures of {name}.json", f"unreadable: {type(exc).__name__}: {exc}")]
        for row in produced:
            row.source = row.source or name
            if row.value != NOT_MEASURED:
                row.when = when
                if mtime < started_at:  # not from this invocation: say when it was measured
                    profile = f"{profiles[name]} " if profiles.get(name) else ""
                    row.value += f" *({profile}run of {when} UTC)*"
        rows += produced
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| figure | value | same-run baseline | target | met? |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.figure} | {r.value} | {r.baseline} | {r.target} | {r.met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the few-minute profile")
    parser.add_argument("--only", help="comma-separated bench names (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated bench names not to run")
    parser.add_argument("--collect-only", action="store_true", help="run nothing; tabulate the JSON already there")
    parser.add_argument("--readme", action=argparse.BooleanOptionalAction, default=None,
                        help="regenerate README's Measured table (default: after a full run of everything)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS / "logs"
    log_dir.mkdir(exist_ok=True)
    only = {n.strip() for n in args.only.split(",")} if args.only else None
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    started_at = time.time()
    runs: list[dict[str, Any]] = []
    if not args.collect_only:
        for bench in BENCHES:
            if (only is not None and bench.name not in only) or bench.name in skip:
                continue
            runs.append(run(bench, args.quick, log_dir))
    profile = "collect-only" if args.collect_only else "quick" if args.quick else "full"
    if runs:
        try:
            known = json.loads(RUNS.read_text())
        except (OSError, ValueError):
            known = {}
        for r in runs:
            known[r["name"]] = {**r, "profile": profile, "time": datetime.now(UTC).isoformat(timespec="seconds")}
        RUNS.write_text(json.dumps(known, indent=2) + "\n")
    # with --only, figures of the benches not run come from their last JSON (its time is in the summary)
    since = None if args.collect_only or only is not None or skip else started_at - 1
    rows = collect(since, started_at - 1)
    print(f"\n# trustport benchmarks ({profile} profile, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()})\n")
    print(table(rows))
    summary = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "profile": profile, "host": platform.node(),
               "python": platform.python_version(), "runs": runs,
               "rows": [{k: v for k, v in r.__dict__.items() if k != "raw"} for r in rows]}
    SUMMARY.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"\nsummary: {SUMMARY}")
    failed = [r["name"] for r in runs if r["status"] not in ("ok", "absent")]
    if failed:
        print(f"benches that failed: {', '.join(failed)} (their figures are 'not measured'; logs in {log_dir})")
    readme = args.readme if args.readme is not None else (profile == "full" and only is None and not skip)
    if readme:
        subprocess.run([sys.executable, str(BENCH / "readme_table.py")], check=False)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
