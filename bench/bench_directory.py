"""Directory sync against a real OpenLDAP slapd (trustport_lab.slapd, LDAPS, paged): wall time per step.

Not a test: it prints figures with their baselines, measured in the same run against the same server.

Baselines (they read the directory only, no registry):
  A. ``ldapsearch`` (the OpenLDAP CLI, ``-E pr=500/noprompt`` over LDAPS, ``LDAPTLS_CACERT``) listing all N
     entries with the attributes the sync reads, process start included;
  B. ldap3's paged read alone: ``LdapDirectory.entries()`` (trustport/directory/client.py) consumed fully.
Steps, on SQLite (file, WAL) and -- with ``--postgres``, the default when the server binaries are found -- on a
throw-away PostgreSQL cluster (tests/support/postgres.py, fsync on), each into a fresh registry:
  1. first sync of N entries into an empty registry (every device added);
  2. re-sync with nothing changed;
  3. re-sync after P % of the entries got a new ``trustportOwner`` (every (100/P)-th entry, via the admin);
  4. re-sync after P % of the entries were disabled (``trustportApproved: FALSE``): quarantines through
     ``LifecycleService`` (no enforcement configured, so no jobs).
The directory is put back (owners, approvals) after each backend's run, untimed, so every run starts alike.
"seconds" is the median over ``--repeat`` runs; the raw samples go to bench/results/directory.json.

    .venv/bin/python bench/bench_directory.py [--entries 10000] [--changed-percent 1] [--repeat 1]
        [--postgres | --no-postgres] [--output bench/results/directory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap3
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pki_fixtures, tests.support.postgres

from policy.directory import Kind
from tests.pki_fixtures import DevicePki, build_test_pki
from trustport.app import App
from trustport.directory.client import LdapDirectory
from trustport.services.directory import SyncReport
from trustport.settings.config import TrustportConfig, load_config
from trustport.store.sql import SqlDeviceStore
from trustport_lab.slapd import Slapd, device_ldif, generated_devices, running_slapd

PASSWORD_ENV = "TP_BENCH_LDAP_PASSWORD"
PAGE_SIZE = 500
RESULTS = Path(__file__).resolve().parent / "results" / "directory.json"

BASELINE_A = "A: ldapsearch -E pr=500 (CLI)"
BASELINE_B = "B: ldap3 paged read alone"
STEPS = {
    "first": "1. first sync (all added)",
    "unchanged": "2. re-sync, nothing changed",
    "changed": "3. re-sync, P % owner changed",
    "disabled": "4. re-sync, P % disabled",
}


@dataclass
class Sample:
    step: str
    backend: str
    run: int
    seconds: float  # wall time around the call
    entries: int
    applied: int = 0  # registry writes: devices added + updated + lifecycle actions (minus refused ones)
    expected: int | None = None
    read_seconds: float | None = None  # the sync's own split: reading the directory
    sync_seconds: float | None = None  # the sync's own total (SyncReport.seconds)
    counts: dict[str, int] = field(default_factory=dict)


# -- the directory ---------------------------------------------------------------------------------------------

def dn_of(slapd: Slapd, i: int) -> str:
    return f"cn=dev-{i:05d},{slapd.devices_dn}"


def modify(slapd: Slapd, indices: list[int], attribute: str, value: str | None = None,
           original: dict[int, str] | None = None) -> None:
    """Replace ``attribute`` on the entries ``indices`` with ``value`` (or each one's ``original`` value)."""
    with slapd.admin() as admin:
        for i in indices:
            new = value if original is None else original[i]
            admin.modify(dn_of(slapd, i), {attribute: [(ldap3.MODIFY_REPLACE, [new])]})


def baseline_ldapsearch(slapd: Slapd, config: TrustportConfig, password_file: Path, entries: int) -> Sample:
    settings = config.directory
    assert settings is not None
    ldapsearch = shutil.which("ldapsearch")
    if ldapsearch is None:
        raise SystemExit("ldapsearch not found: apt-get install ldap-utils")
    command = [ldapsearch, "-x", "-H", slapd.ldaps_url, "-D", slapd.bind_dn, "-y", str(password_file),
               "-b", settings.base_dn, "-s", "sub", "-LLL", "-o", "ldif-wrap=no", "-E", f"pr={PAGE_SIZE}/noprompt",
               settings.search_filter(), *settings.attribute_map().names()]
    env = {**os.environ, "LDAPTLS_CACERT": str(slapd.ca_file), "LDAPTLS_REQCERT": "demand"}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"ldapsearch failed ({result.returncode}): {result.stderr.decode(errors='replace')}")
    listed = sum(1 for line in result.stdout.splitlines() if line.startswith(b"dn: "))
    return Sample(BASELINE_A, "-", 0, seconds, listed, expected=entries)


def baseline_ldap3(config: TrustportConfig, entries: int) -> Sample:
    settings = config.directory
    assert settings is not None
    client = LdapDirectory(settings, settings.resolved_ca(config.base_dir))
    start = time.perf_counter()
    listed = sum(1 for _ in client.entries())
    return Sample(BASELINE_B, "-", 0, time.perf_counter() - start, listed, expected=entries)


# -- the registry ----------------------------------------------------------------------------------------------

def write_config(work: Path, pki: DevicePki, slapd: Slapd, url: str) -> TrustportConfig:
    data: dict[str, Any] = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "clients": [{"name": "nas", "address": "127.0.0.1", "secret": "bench-secret-0123456789"}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))}],
        "segments": {"production": 30, "cameras": 40, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": url},
        "directory": {"url": slapd.ldaps_url, "ca_file": str(slapd.ca_file), "bind_dn": slapd.bind_dn,
                      "bind_password": {"env": PASSWORD_ENV}, "base_dn": slapd.devices_dn,
                      "page_size": PAGE_SIZE, "timeout_seconds": 30},
    }
    path = work / "trustport.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    config = load_config(path)
    with SqlDeviceStore(config.database_url(), create=True) as store:
        store.ensure_schema()
    return config


def applied(report: SyncReport) -> int:
    return len(report.plan.of(Kind.ADD, Kind.UPDATE, Kind.ACTION)) - len(report.errors)


def timed_sync(app: App, step: str, backend: str, run: int, expected: int) -> Sample:
    start = time.perf_counter()
    report = app.directory.sync(datetime.now(UTC))
    seconds = time.perf_counter() - start
    counts = report.counts()
    return Sample(STEPS[step], backend, run, seconds, counts["entries"], applied(report), expected,
                  report.read_seconds, report.seconds, counts)


def run_backend(slapd: Slapd, config: TrustportConfig, backend: str, run: int, entries: int,
                changed: list[int], disabled: list[int]) -> list[Sample]:
    samples: list[Sample] = []
    with App(config) as app:
        samples.append(timed_sync(app, "first", backend, run, entries))
        samples.append(timed_sync(app, "unchanged", backend, run, 0))
        modify(slapd, changed, "trustportOwner", f"security-{backend}-{run}")
        samples.append(timed_sync(app, "changed", backend, run, len(changed)))
        modify(slapd, disabled, "trustportApproved", "FALSE")
        samples.append(timed_sync(app, "disabled", backend, run, len(disabled)))
    # put the directory back for the next run (untimed)
    modify(slapd, changed, "trustportOwner", "facilities")
    modify(slapd, disabled, "trustportApproved", "TRUE")
    return samples


@contextmanager
def postgres_server(wanted: bool | None) -> Iterator[Any]:
    """A throw-away durable cluster (tests/support/postgres.py), or None when not wanted / not installed."""
    from tests.support.postgres import PostgresUnavailable, find_bin_dir, running_postgres

    if wanted is None:
        try:
            find_bin_dir()
            wanted = True
        except PostgresUnavailable as exc:
            print(f"(PostgreSQL skipped: {exc})")
            wanted = False
    if not wanted:
        yield None
        return
    with running_postgres(durable=True) as server:
        yield server


# -- the report ------------------------------------------------------------------------------------------------

def median(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)


def print_table(samples: list[Sample], entries: int, percent: float, repeat: int) -> None:
    base_a = median([s for s in samples if s.step == BASELINE_A])
    base_b = median([s for s in samples if s.step == BASELINE_B])
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.step, s.backend), []).append(s)
    print(f"directory sync, {entries} entries, {percent:g} % changed, page size {PAGE_SIZE}, LDAPS to slapd on "
          f"127.0.0.1; median of {repeat} run(s); baselines A and B measured in the same run")
    header = (f"  {'step':<31} {'backend':<10} {'seconds':>8} {'entries/s':>10} {'read s':>7} {'applied':>8} "
              f"{'expected':>8}  {'vs A':>8} {'vs B':>7}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for (step, backend), group in groups.items():
        seconds = median(group)
        last = group[-1]
        reads = [s.read_seconds for s in group if s.read_seconds is not None]
        read = f"{statistics.median(reads):7.2f}" if reads else f"{'-':>7}"
        is_baseline = step in (BASELINE_A, BASELINE_B)
        applied_text = f"{'-':>8}" if is_baseline else f"{last.applied:>8}"
        expected = last.expected if last.expected is not None else "-"
        mark = "" if (last.entries if is_baseline else last.applied) == last.expected else "  MISMATCH"
        label = step.replace("P %", f"{percent:g} %")
        print(f"  {label:<31} {backend:<10} {seconds:8.2f} {last.entries / seconds:10.0f} {read} {applied_text} "
              f"{expected!s:>8}  {seconds / base_a:7.2f}x {seconds / base_b:6.2f}x{mark}")
    print("  applied = devices added + devices updated + lifecycle actions written by that sync; for A and B "
          "'expected' is the number of entries listed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000, help="device entries in the directory (10000)")
    parser.add_argument("--changed-percent", type=float, default=1.0,
                        help="share of entries changed (step 3) and disabled (step 4), in %% (1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every step (1)")
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=None,
                        help="also on a throw-away PostgreSQL (default: when its server binaries are found)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"raw results as JSON ({RESULTS})")
    args = parser.parse_args()
    if args.entries < 1 or args.repeat < 1 or not 0 < args.changed_percent <= 100:
        parser.error("--entries and --repeat must be >= 1, --changed-percent in (0, 100]")
    n: int = args.entries
    step = max(1, round(100 / args.changed_percent))
    changed = list(range(1, n + 1, step))
    disabled = [i for i in range(2, n + 1, step) if i % 10]  # generated_devices: every 10th is not approved

    samples: list[Sample] = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-directory-")))
        started = time.perf_counter()
        slapd = stack.enter_context(running_slapd(ldif=device_ldif(generated_devices(n), "ou=devices,dc=example,"
                                                                                           "dc=org")))
        print(f"slapd with {n} entries ready in {time.perf_counter() - started:.1f} s")
        os.environ[PASSWORD_ENV] = slapd.bind_password
        password_file = work / "ldap-password"
        password_file.write_text(slapd.bind_password)  # ldapsearch -y: the whole file, no newline
        password_file.chmod(0o600)
        pki = build_test_pki(work / "pki")
        pg = stack.enter_context(postgres_server(args.postgres))
        for run in range(args.repeat):
            backends: list[tuple[str, str]] = [("SQLite", f"sqlite:///{work}/run{run}.sqlite")]
            if pg is not None:
                backends.append(("PostgreSQL", pg.create_database(f"bench_{run}")))
            first_config: TrustportConfig | None = None
            for backend, url in backends:
                backend_dir = work / f"{backend.lower()}-{run}"
                backend_dir.mkdir()
                config = write_config(backend_dir, pki, slapd, url)
                if first_config is None:
                    first_config = config
                    for baseline in (baseline_ldapsearch(slapd, config, password_file, n),
                                     baseline_ldap3(config, n)):
                        baseline.run = run
                        samples.append(baseline)
                samples.extend(run_backend(slapd, config, backend, run, n, changed, disabled))
                print(f"run {run + 1}/{args.repeat} {backend}: done", flush=True)

    print()
    print_table(samples, n, args.changed_percent, args.repeat)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "benchmark": "directory sync",
        "time": datetime.now(UTC).isoformat(),
        "parameters": {"entries": n, "changed_percent": args.changed_percent, "repeat": args.repeat,
                       "page_size": PAGE_SIZE, "changed_entries": len(changed), "disabled_entries": len(disabled),
                       "postgres": any(s.backend == "PostgreSQL" for s in samples)},
        "platform": {"python": platform.python_version(), "machine": platform.machine(),
                     "system": platform.platform()},
        "samples": [asdict(s) for s in samples],
    }, indent=2) + "\n")
    print(f"raw results: {args.output}")


if __name__ == "__main__":
    main()
