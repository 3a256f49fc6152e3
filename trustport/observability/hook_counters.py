"""The RADIUS hook's counters: kept in memory inside radiusd, left in a snapshot file for the process serving
``/metrics``.

rlm_python3 runs every hook call behind one mutex, so counting is plain ints and one fixed bucket list (no locks,
no thread, no prometheus_client inside radiusd). At most every ``flush_seconds`` -- checked against a monotonic
clock on calls the hook already makes -- the counters are written as one JSON snapshot, atomically (temp file in
the same directory + ``os.replace``, mode 0o644), to ``<dir>/hook-<server id>-<pid>.json``. A snapshot that
cannot be written (directory missing or not writable) never fails or slows an authentication: it is reported
once, counting goes on, and the write is tried again ``flush_seconds`` later.

Counters are cumulative since the process started. The snapshot carries pid, hostname, start and write time so
the reader (``read_snapshots``) can tell live processes from dead ones: it sums every file whose process is alive
on this host OR that was written in the last ``STALE_SECONDS`` (10 minutes). A dead radiusd's counts are thus
kept for 10 minutes (a scrape during a restart does not lose them), then dropped: Prometheus sees the sum fall,
which ``rate()``/``increase()`` treat as a counter reset. Removing old files is left to the operator (they are
small and ignored).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1
PREFIX = "hook-"
STALE_SECONDS = 600.0  # a dead process's snapshot still counts this long after it was written
# whole hook call (check_eap_tls or post_auth), seconds: an in-process SQLite decision is ~0.5-2 ms
BUCKETS: tuple[float, ...] = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CALLS = ("check_eap_tls", "post_auth")
NO_SEGMENT = "none"  # the segment label of a reject


def snapshot_name(server_id: str, pid: int) -> str:
    """``hook-<server id, only [A-Za-z0-9_.-], at most 80 characters + a short hash>-<pid>.json``."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", server_id).strip("_.")[:80] or "hook"
    digest = hashlib.sha256(server_id.encode()).hexdigest()[:8]
    return f"{PREFIX}{clean}-{digest}-{pid}.json"


class Latency:
    """One fixed-bucket histogram: ``counts[i]`` calls took at most ``BUCKETS[i]`` (and more than the bucket
    below); the last slot is +Inf. Not cumulative in memory (one increment per observation)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        self.counts[bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds; len(BUCKETS): +Inf

    def to_json(self) -> dict[str, Any]:
        return {"buckets": list(BUCKETS), "counts": list(self.counts), "sum": self.sum}


class HookCounters:
    """What one hook process counted. ``directory`` None: metrics off (``observe`` and ``tick`` still work, nothing
    is ever written). ``report`` gets one line when a snapshot cannot be written (then not again until one was
    written successfully)."""

    def __init__(self, directory: Path | None, flush_seconds: float, server_id: str, *,
                 report: Callable[[str], None] = lambda _m: None,
                 clock: Callable[[], float] = time.perf_counter, wall: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.flush_seconds = flush_seconds
        self.server_id = server_id
        self.report = report
        self.clock = clock
        self.wall = wall
        self.pid = os.getpid()
        self.hostname = socket.gethostname()
        self.started_at = wall()
        self.authentications: dict[tuple[str, str], int] = {}  # (outcome, segment) -> count
        self.latency = {call: Latency() for call in CALLS}
        self.registry_errors = 0
        self.failed_closed = 0
        self.writes_failed = 0
        self._next_flush = 0.0  # the first tick writes
        self._failing = False
        self.path = directory / snapshot_name(server_id, self.pid) if directory is not None else None

    # -- the auth path: cheap ----------------------------------------------------------------------------------

    def authentication(self, outcome: str, segment: str | None) -> None:
        key = (outcome, segment or NO_SEGMENT)
        self.authentications[key] = self.authentications.get(key, 0) + 1

    def done(self, call: str, started: float) -> None:
        """End of one hook call begun at ``clock()`` == ``started``: its latency, then a snapshot if one is due."""
        now = self.clock()
        self.latency[call].observe(now - started)
        if now >= self._next_flush:
            self.flush(now)

    def tick(self) -> None:
        """A snapshot if one is due (for calls that do not time themselves, e.g. accounting)."""
        now = self.clock()
        if now >= self._next_flush:
            self.flush(now)

    # -- the snapshot --------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "kind": "hook", "server_id": self.server_id, "hostname": self.hostname,
            "pid": self.pid, "started_at": self.started_at, "written_at": self.wall(),
            "authentications": [{"outcome": o, "segment": s, "count": n}
                                for (o, s), n in sorted(self.authentications.items())],
            "latency": {call: h.to_json() for call, h in self.latency.items()},
            "registry_errors": self.registry_errors, "failed_closed": self.failed_closed,
        }

    def flush(self, now: float | None = None) -> bool:
        """Write the snapshot now (atomically); never raises. False when it could not be written."""
        self._next_flush = (self.clock() if now is None else now) + self.flush_seconds
        if self.path is None:
            return False
        try:
            self._write(self.path, json.dumps(self.snapshot(), separators=(",", ":")).encode())
        except Exception as exc:
            self.writes_failed += 1
            if not self._failing:
                self._failing = True
                with contextlib.suppress(Exception):
                    self.report(f"metrics: cannot write {self.path} ({type(exc).__name__}: {exc}); counting "
                                f"goes on, retrying every {self.flush_seconds:g} s")
            return False
        if self._failing:
            self._failing = False
            with contextlib.suppress(Exception):
                self.report(f"metrics: writing {self.path} again")
        return True

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)  # once, when the directory is missing; may fail too
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            os.fchmod(fd, 0o644)  # the umask must not hide it from the reader (another user, same group or not)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)


# -- the reader (the process serving /metrics) -----------------------------------------------------------------

@dataclass
class HookTotals:
    """Every counted snapshot summed."""

    processes: int = 0
    authentications: dict[tuple[str, str], int] = field(default_factory=dict)
    latency: dict[str, tuple[list[int], float]] = field(default_factory=dict)  # call -> (per-bucket counts, sum)
    registry_errors: int = 0
    failed_closed: int = 0
    unreadable: int = 0  # files that were not a snapshot this reader understands


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's (radiusd)
    except (OSError, OverflowError):
        return False
    return True


def _snapshots(directory: Path) -> Iterator[dict[str, Any] | None]:
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.startswith(PREFIX) and p.suffix == ".json")
    except OSError:
        return
    for path in paths:
        try:
            data = json.loads(path.read_bytes()[:1_000_000])
        except (OSError, ValueError):
            yield None
            continue
        yield data if isinstance(data, dict) and data.get("format") == FORMAT else None


def counted(data: dict[str, Any], now: float, hostname: str | None = None) -> bool:
    """Whether a snapshot counts: its process is alive (on this host), or it was written in the last 10 minutes."""
    written = float(data["written_at"])
    if now - written <= STALE_SECONDS:
        return True
    return data.get("hostname") == (hostname or socket.gethostname()) and pid_alive(int(data["pid"]))


def read_snapshots(directory: Path, now: float | None = None) -> HookTotals:
    """Sum the snapshots in ``directory`` that count (see ``counted``); a missing directory is all zeros."""
    totals = HookTotals()
    now = time.time() if now is None else now
    hostname = socket.gethostname()
    for data in _snapshots(directory):
        try:
            if data is None:
                raise ValueError("not a snapshot")
            if not counted(data, now, hostname):
                continue
            auths = [(str(a["outcome"]), str(a["segment"]), int(a["count"])) for a in data["authentications"]]
            latency: dict[str, tuple[list[int], float]] = {}
            for call, hist in dict(data["latency"]).items():
                if [float(b) for b in hist["buckets"]] != list(BUCKETS):
                    raise ValueError("other buckets")
                counts = [int(c) for c in hist["counts"]]
                if len(counts) != len(BUCKETS) + 1:
                    raise ValueError("bucket counts")
                latency[str(call)] = (counts, float(hist["sum"]))
            registry_errors, failed_closed = int(data["registry_errors"]), int(data["failed_closed"])
        except (KeyError, TypeError, ValueError):
            totals.unreadable += 1
            continue
        totals.processes += 1
        for outcome, segment, count in auths:
            totals.authentications[(outcome, segment)] = totals.authentications.get((outcome, segment), 0) + count
        for call, (counts, total) in latency.items():
            old_counts, old_sum = totals.latency.get(call, ([0] * len(counts), 0.0))
            totals.latency[call] = ([a + b for a, b in zip(old_counts, counts, strict=True)], old_sum + total)
        totals.registry_errors += registry_errors
        totals.failed_closed += failed_closed
    return totals
