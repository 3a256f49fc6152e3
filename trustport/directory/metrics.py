"""Directory sync metrics in the Prometheus text format (``trustport directory status --prometheus``; the
future ``/metrics`` endpoint serves the same text)."""

from __future__ import annotations

from datetime import datetime

from trustport.store.directory import DirectoryStatus


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(name: str, status: DirectoryStatus | None, now: datetime) -> str:
    label = f'{{directory="{_label(name)}"}}'
    up = 1 if status is not None and status.up else 0
    lines = [
        "# HELP trustport_directory_up Whether the last directory sync attempt succeeded.",
        "# TYPE trustport_directory_up gauge",
        f"trustport_directory_up{label} {up}",
        "# HELP trustport_directory_sync_failures_total Directory sync attempts that failed.",
        "# TYPE trustport_directory_sync_failures_total counter",
        f"trustport_directory_sync_failures_total{label} {status.failures_total if status else 0}",
    ]
    if status is not None and status.last_success_at is not None:
        lines += [
            "# HELP trustport_directory_last_success_timestamp_seconds When the last directory sync succeeded.",
            "# TYPE trustport_directory_last_success_timestamp_seconds gauge",
            f"trustport_directory_last_success_timestamp_seconds{label} {status.last_success_at.timestamp():.3f}",
            "# HELP trustport_directory_sync_age_seconds Seconds since the data in force was synced.",
            "# TYPE trustport_directory_sync_age_seconds gauge",
            f"trustport_directory_sync_age_seconds{label} {(now - status.last_success_at).total_seconds():.3f}",
            "# HELP trustport_directory_entries Entries in the last successful listing.",
            "# TYPE trustport_directory_entries gauge",
            f"trustport_directory_entries{label} {status.entries or 0}",
        ]
    if status is not None:
        lines += [
            "# HELP trustport_directory_linked_devices Registry devices linked to a directory entry.",
            "# TYPE trustport_directory_linked_devices gauge",
            f"trustport_directory_linked_devices{label} {status.linked}",
        ]
    return "\n".join(lines) + "\n"
