"""The Prometheus exposition of ``/metrics``: ``exposition(app)`` builds it from what is on disk and in the
registry at the time of the scrape, with prometheus_client's custom collectors on a fresh ``CollectorRegistry``
(no global state: every scrape reads its sources again).

Sources:

* the RADIUS hook's snapshot files (``metrics.directory``; see ``trustport.observability.hook_counters`` for
  which files count): ``trustport_authentications_total{outcome,segment}``, ``trustport_hook_seconds{call}``
  (histogram of whole ``check_eap_tls`` / ``post_auth`` calls), ``trustport_registry_errors_total``,
  ``trustport_hook_failed_closed_total``, ``trustport_hook_processes``;
* the registry (read-only; when it is down: ``trustport_registry_up 0`` and none of these):
  ``trustport_enforcement_jobs{state}``, ``trustport_enforcement_failures_total`` (``SqlJobQueue.stats``),
  ``trustport_job_seconds{state}`` (histogram of created_at -> updated_at over ALL done and failed jobs, so it
  only grows like a counter should; one two-column read per scrape), ``trustport_coa_results_total{result}``
  (ack / nak / no_answer / error, read from the log of every job with a CoA step: see ``coa_result``),
  ``trustport_decision_log_entries_total{outcome}`` (the decision log: a second source, counted by the
  database, next to the hook's own counters), and the directory sync (``trustport_directory_*``, the names
  and meaning of ``trustport.directory.metrics``);
* the CRL files of ``revocation.crl_dir``, checked as the hook checks them (signature against a configured
  anchor): ``trustport_crl_age_seconds{issuer}`` (now - thisUpdate), ``trustport_crl_next_update_seconds{issuer}``
  (nextUpdate - now: negative once overdue), ``trustport_crl_refused_files`` (files the hook would refuse).

    python -m trustport.observability.metrics --config trustport.yaml   # prints what /metrics serves
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client import exposition as prom
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from trustport.observability.hook_counters import BUCKETS, read_snapshots

if TYPE_CHECKING:
    from trustport.app import App

log = logging.getLogger("trustport.metrics")
CONTENT_TYPE: str = getattr(prom, "CONTENT_TYPE_PLAIN_0_0_4", prom.CONTENT_TYPE_LATEST)
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
COA_RESULTS = ("ack", "nak", "no_answer", "error")
_COA_KINDS = ("coa-reauth", "coa-disconnect")


def _histogram(name: str, doc: str, label: str, series: dict[str, tuple[list[int], float]],
               bounds: Sequence[float]) -> HistogramMetricFamily:
    """``series``: label value -> (non-cumulative counts per bucket, +Inf last; sum)."""
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value, (counts, total) in sorted(series.items()):
        cumulative, running = [], 0
        for bound, count in zip([*(repr(float(b)) for b in bounds), "+Inf"], counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        family.add_metric([value], cumulative, sum_value=total)
    return family


class HookCollector(Collector):
    def __init__(self, directory: Path | None, now: float) -> None:
        self.directory = directory
        self.now = now

    def collect(self) -> Iterable[Metric]:
        if self.directory is None:  # metrics off: the hook writes nothing
            return
        totals = read_snapshots(self.directory, self.now)
        auths = CounterMetricFamily("trustport_authentications", "Authentications decided by the RADIUS hook, by "
                                    "outcome and segment (segment 'none' for rejects).", labels=["outcome", "segment"])
        for (outcome, segment), count in sorted(totals.authentications.items()):
            auths.add_metric([outcome, segment], count)
        yield auths
        yield _histogram("trustport_hook_seconds", "Seconds one RADIUS hook call took (check_eap_tls: the whole "
                         "decision; post_auth: session record or TLS-failure log).", "call", totals.latency, BUCKETS)
        yield CounterMetricFamily("trustport_registry_errors", "Hook calls that failed because the registry was "
                                  "unusable (the authentication was rejected: fail closed).",
                                  value=totals.registry_errors)
        yield CounterMetricFamily("trustport_hook_failed_closed", "Authentications the hook rejected because it "
                                  "could not decide (registry unusable, internal error, not initialised).",
                                  value=totals.failed_closed)
        yield GaugeMetricFamily("trustport_hook_processes", "RADIUS hook processes whose counters are summed here "
                                "(alive, or written in the last 10 minutes).", value=totals.processes)
        yield GaugeMetricFamily("trustport_hook_snapshots_unreadable", "Files in the metrics directory that look "
                                "like hook snapshots but could not be read.", value=totals.unreadable)


def coa_result(message: str) -> str | None:
    """What one job-log message says about a CoA/Disconnect request, from the worker's and executor's wording
    (``trustport.worker.executor._nas``, ``_failure``; ``trustport.worker.loop``): ``<port>: CoA-ACK
    (re-authenticate)`` / ``<port>: Disconnect-ACK`` (maybe after ``done: ``) is an ACK; a failure entry starts
    with the step (``coa-reauth: ...``, maybe after ``FAILED: ``) and is a NAK (``rejected by the NAS``), no
    answer (``the NAS did not answer``) or another error. A later entry that only repeats a CoA failure as a note
    before a switch step's failure (``coa-reauth: ...; set-vlan: ...``) is not counted again."""
    text = message.removeprefix("done: ")
    if text.endswith((": CoA-ACK (re-authenticate)", ": Disconnect-ACK")):
        return "ack"
    text = text.removeprefix("FAILED: ")
    if not text.startswith(tuple(f"{k}: " for k in _COA_KINDS)):
        return None
    from policy.enforcement import StepKind

    if any(f"; {k.value}: " in text for k in StepKind if k.value not in _COA_KINDS):
        return None  # a switch step failed after the CoA fallback; the CoA result was counted when it happened
    first = text.split("; falling back to ")[0].split("; retry ")[0].split("; giving up after ")[0]
    if "the NAS did not answer" in first:
        return "no_answer"
    if "rejected by the NAS" in first:
        return "nak"
    return "error"


class RegistryCollector(Collector):
    """Everything read from the registry database; ``trustport_registry_up`` says whether it could be."""

    def __init__(self, app: App, now: datetime) -> None:
        self.app = app
        self.now = now

    def collect(self) -> Iterable[Metric]:
        try:
            store = self.app.store
            store.ping()
        except Exception as exc:
            log.warning("metrics: registry unavailable: %s: %s", type(exc).__name__, exc)
            yield GaugeMetricFamily("trustport_registry_up", "Whether the registry database answered.", value=0)
            return
        yield GaugeMetricFamily("trustport_registry_up", "Whether the registry database answered.", value=1)
        for part in (self._jobs, self._job_latency, self._coa, self._decisions, self._directory):
            try:
                yield from list(part())  # all of one part or none of it
            except Exception as exc:  # one failing read must not take the others (or the scrape) down
                log.warning("metrics: %s failed: %s: %s", part.__name__.strip("_"), type(exc).__name__, exc)

    def _jobs(self) -> Iterator[Metric]:
        from trustport.store.queue import STATES, SqlJobQueue

        stats = SqlJobQueue(self.app.store).stats()
        jobs = GaugeMetricFamily("trustport_enforcement_jobs", "Enforcement jobs in the queue, by state.",
                                 labels=["state"])
        for state in [*STATES, *sorted(set(stats.by_state) - set(STATES))]:
            jobs.add_metric([state], stats.by_state.get(state, 0))
        yield jobs
        yield CounterMetricFamily("trustport_enforcement_failures", "Enforcement jobs that failed on every path "
                                  "(each time one did).", value=stats.failures_total)

    def _job_latency(self) -> Iterator[Metric]:
        from bisect import bisect_left

        from trustport.store.queue import DONE, FAILED, SqlJobQueue

        series: dict[str, tuple[list[int], float]] = {s: ([0] * (len(JOB_BUCKETS) + 1), 0.0) for s in (DONE, FAILED)}
        for state, seconds in SqlJobQueue(self.app.store).finished_durations():
            counts, total = series[state]
            counts[bisect_left(JOB_BUCKETS, seconds)] += 1
            series[state] = (counts, total + seconds)
        yield _histogram("trustport_job_seconds", "Seconds from enqueue to the end of enforcement jobs that ended "
                         "(done or failed), all jobs in the registry.", "state", series, JOB_BUCKETS)

    def _coa(self) -> Iterator[Metric]:
        from trustport.store.queue import SqlJobQueue

        counts = dict.fromkeys(COA_RESULTS, 0)
        for text in SqlJobQueue(self.app.store).logs_of_coa_jobs():
            try:
                entries = json.loads(text)
            except ValueError:
                continue
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, dict) and "event" not in entry and isinstance(entry.get("message"), str):
                    result = coa_result(entry["message"])
                    if result is not None:
                        counts[result] += 1
        family = CounterMetricFamily("trustport_coa_results", "CoA / Disconnect requests sent by the enforcement "
                                     "worker, by result (from the job logs).", labels=["result"])
        for result, count in counts.items():
            family.add_metric([result], count)
        yield family

    def _decisions(self) -> Iterator[Metric]:
        from policy.model import Outcome
        from trustport.store.console import SqlConsoleReads

        counts = {o.value: 0 for o in Outcome} | SqlConsoleReads(self.app.store).decision_counts()
        family = CounterMetricFamily("trustport_decision_log_entries", "Entries in the registry's decision log, by "
                                     "outcome (the database's count; the hook's own is "
                                     "trustport_authentications_total).", labels=["outcome"])
        for outcome, count in sorted(counts.items()):
            family.add_metric([outcome], count)
        yield family

    def _directory(self) -> Iterator[Metric]:
        settings = self.app.config.directory
        if settings is None:
            return
        from trustport.directory.metrics import families
        from trustport.store.directory import SqlDirectoryStore

        yield from families(settings.name, SqlDirectoryStore(self.app.store, settings.name).status(), self.now)


class CrlCollector(Collector):
    """The CRLs in force, as the hook loads them (newest thisUpdate per issuer, signature checked)."""

    def __init__(self, app: App, now: datetime) -> None:
        self.app = app
        self.now = now

    def collect(self) -> Iterable[Metric]:
        crl_dir = self.app.config.revocation.crl_dir
        if crl_dir is None:
            return
        from policy.certificates import CrlInfo
        from trustport.services.trust import crl_files

        newest: dict[str, CrlInfo] = {}
        refused = 0
        for entry in crl_files(self.app.config.path(crl_dir), self.app.settings.anchors):
            if entry.crl is None:
                refused += 1
                continue
            current = newest.get(entry.crl.issuer)
            if current is None or entry.crl.this_update > current.this_update:
                newest[entry.crl.issuer] = entry.crl
        age = GaugeMetricFamily("trustport_crl_age_seconds", "Seconds since the thisUpdate of the newest CRL of "
                                "each issuer.", labels=["issuer"])
        nxt = GaugeMetricFamily("trustport_crl_next_update_seconds", "Seconds until the nextUpdate of the newest CRL "
                                "of each issuer (negative: overdue).", labels=["issuer"])
        for issuer, info in sorted(newest.items()):
            age.add_metric([issuer], (self.now - info.this_update).total_seconds())
            if info.next_update is not None:
                nxt.add_metric([issuer], (info.next_update - self.now).total_seconds())
        yield age
        yield nxt
        yield GaugeMetricFamily("trustport_crl_refused_files", "CRL files the hook refuses (unreadable, unknown "
                                "issuer, bad signature).", value=refused)


def exposition(app: App, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``/metrics`` and its content type. Never raises because a source is
    unavailable (registry down: ``trustport_registry_up 0``; a missing metrics or CRL directory: no series)."""
    at = now()
    metrics = app.config.metrics
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HookCollector(app.config.path(metrics.directory) if metrics.enabled else None, at.timestamp()))
    registry.register(RegistryCollector(app, at))
    registry.register(CrlCollector(app, at))
    return prom.generate_latest(registry), CONTENT_TYPE


def main(argv: Sequence[str] | None = None) -> int:
    from trustport.app import App

    parser = argparse.ArgumentParser(description="print what /metrics serves")
    parser.add_argument("--config", type=Path, required=True, help="the trustport YAML config")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with App.from_file(args.config) as app:
        body, _ = exposition(app)
    sys.stdout.write(body.decode())
    print(f"# rendered in {(time.perf_counter() - started) * 1000:.1f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
