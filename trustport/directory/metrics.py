"""The directory sync's metrics: the families ``/metrics`` serves (``trustport.observability.metrics``) and the text
``trustport directory status --prometheus`` prints, from one definition."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trustport.store.directory import DirectoryStatus


def families(name: str, status: DirectoryStatus | None, now: datetime) -> Iterator[Metric]:
    labels = [name]

    def one(family: type[GaugeMetricFamily | CounterMetricFamily], metric: str, doc: str, value: float) -> Metric:
        out = family(metric, doc, labels=["directory"])
        out.add_metric(labels, value)
        return out

    yield one(GaugeMetricFamily, "trustport_directory_up", "Whether the last directory sync attempt succeeded.",
              1 if status is not None and status.up else 0)
    yield one(CounterMetricFamily, "trustport_directory_sync_failures", "Directory sync attempts that failed.",
              status.failures_total if status else 0)
    if status is not None and status.last_success_at is not None:
        yield one(GaugeMetricFamily, "trustport_directory_last_success_timestamp_seconds",
                  "When the last directory sync succeeded.", status.last_success_at.timestamp())
        yield one(GaugeMetricFamily, "trustport_directory_sync_age_seconds",
                  "Seconds since the data in force was synced.", (now - status.last_success_at).total_seconds())
        yield one(GaugeMetricFamily, "trustport_directory_entries", "Entries in the last successful listing.",
                  status.entries or 0)
    if status is not None:
        yield one(GaugeMetricFamily, "trustport_directory_linked_devices",
                  "Registry devices linked to a directory entry.", status.linked)


class _Fixed(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def render(name: str, status: DirectoryStatus | None, now: datetime) -> str:
    """The Prometheus text exposition of ``families``."""
    registry = CollectorRegistry()
    registry.register(_Fixed(families(name, status, now)))
    return generate_latest(registry).decode()
