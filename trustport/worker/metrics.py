"""Enforcement metrics in the Prometheus text exposition format, for ``trustport jobs stats --prometheus`` and the
future ``/metrics`` endpoint (which only has to return ``prometheus_text(queue)`` as ``text/plain; version=0.0.4``).
"""

from __future__ import annotations

from trustport.store.protocols import JobQueue
from trustport.store.queue import STATES, JobStats


def render(stats: JobStats) -> str:
    lines = [
        "# HELP trustport_enforcement_jobs Enforcement jobs in the queue, by state.",
        "# TYPE trustport_enforcement_jobs gauge",
    ]
    states = [*STATES, *sorted(set(stats.by_state) - set(STATES))]
    lines += [f'trustport_enforcement_jobs{{state="{state}"}} {stats.by_state.get(state, 0)}' for state in states]
    lines += [
        "# HELP trustport_enforcement_failures_total Enforcement jobs that failed on every path (each time one did).",
        "# TYPE trustport_enforcement_failures_total counter",
        f"trustport_enforcement_failures_total {stats.failures_total}",
    ]
    return "\n".join(lines) + "\n"


def prometheus_text(queue: JobQueue) -> str:
    return render(queue.stats())
