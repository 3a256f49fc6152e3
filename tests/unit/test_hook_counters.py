"""The RADIUS hook's in-memory counters and their snapshot files (trustport.observability.hook_counters), alone
and inside the hook."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from radius_hooks.hook import Hook
from tests.pki_fixtures import DevicePki
from tests.support.hook_env import REJECT, UPDATED, FakeRadiusd, valid_request, write_settings
from trustport.observability import hook_counters as hc
from trustport.observability.hook_counters import BUCKETS, HookCounters, Latency, read_snapshots, snapshot_name
from trustport.settings.hook import HookSettings


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def counters(directory: Path | None, clock: Clock | None = None, flush: float = 5.0,
             lines: list[str] | None = None) -> HookCounters:
    return HookCounters(directory, flush, "host:/etc/raddb/hook.json", clock=clock or Clock(),
                        report=(lines.append if lines is not None else lambda _m: None))


def test_outcomes_are_counted_by_segment() -> None:
    c = counters(None)
    for outcome, segment in (("accept", "production"), ("accept", "production"), ("quarantine", "quarantine"),
                             ("reject", None)):
        c.authentication(outcome, segment)
    assert c.authentications == {("accept", "production"): 2, ("quarantine", "quarantine"): 1, ("reject", "none"): 1}


@pytest.mark.parametrize(("seconds", "slot"), [
    (0.0, 0), (BUCKETS[0], 0), (BUCKETS[0] * 1.01, 1), (0.001, 2), (0.0011, 3), (BUCKETS[-1], len(BUCKETS) - 1),
    (BUCKETS[-1] + 0.1, len(BUCKETS)), (60.0, len(BUCKETS)),
])
def test_latency_lands_in_the_first_bucket_that_holds_it(seconds: float, slot: int) -> None:
    h = Latency()
    h.observe(seconds)
    assert h.counts.index(1) == slot and sum(h.counts) == 1 and h.sum == pytest.approx(seconds)


def test_snapshot_is_written_at_most_every_flush_seconds(tmp_path: Path) -> None:
    clock = Clock()
    c = counters(tmp_path, clock)
    c.authentication("accept", "production")
    c.done("check_eap_tls", clock.t - 0.002)  # first call: due at once
    assert c.path is not None
    first = json.loads(c.path.read_text())
    assert first["authentications"] == [{"outcome": "accept", "segment": "production", "count": 1}]
    assert first["pid"] == os.getpid() and first["written_at"] >= first["started_at"]
    c.authentication("reject", None)
    clock.t += 4.9
    c.done("check_eap_tls", clock.t - 0.002)
    assert json.loads(c.path.read_text()) == first  # not due yet
    clock.t += 0.2
    c.tick()
    second = json.loads(c.path.read_text())
    assert {(a["outcome"], a["count"]) for a in second["authentications"]} == {("accept", 1), ("reject", 1)}
    assert second["latency"]["check_eap_tls"]["counts"][BUCKETS.index(0.0025)] == 2
    assert stat.S_IMODE(c.path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == [c.path.name]  # no temp file left behind


def test_snapshot_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader sees the old snapshot or the new one, never a partial file: the write goes to a temp file that
    os.replace puts in place, and a write that fails half-way leaves the old snapshot untouched."""
    c = counters(tmp_path)
    assert c.flush()
    assert c.path is not None
    before = c.path.read_bytes()
    c.authentication("accept", "production")
    real_write = os.write

    def torn(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hc.os, "write", torn)
    assert not c.flush()
    assert c.path.read_bytes() == before
    monkeypatch.setattr(hc.os, "write", real_write)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(hc.os, "replace", lambda a, b: (replaced.append((str(a), str(b))), real_replace(a, b)))
    assert c.flush()
    assert replaced == [(str(c.path.with_name(f".{c.path.name}.tmp")), str(c.path))]
    assert json.loads(c.path.read_text())["authentications"][0]["count"] == 1


@pytest.mark.parametrize("kind", ["missing-parent", "not-writable", "is-a-file"])
def test_unwritable_directory_never_raises_and_is_reported_once(tmp_path: Path, kind: str) -> None:
    if kind == "missing-parent":
        (tmp_path / "file").write_text("x")
        directory = tmp_path / "file" / "metrics"  # mkdir cannot make it
    elif kind == "not-writable":
        directory = tmp_path / "ro"
        directory.mkdir(mode=0o500)
        if os.geteuid() == 0:  # root writes anyway: make the target name a directory that cannot be replaced
            (directory / snapshot_name("host:/etc/raddb/hook.json", os.getpid())).mkdir()
            (directory / snapshot_name("host:/etc/raddb/hook.json", os.getpid()) / "x").write_text("x")
    else:
        directory = tmp_path / "afile"
        directory.write_text("not a directory")
    clock, lines = Clock(), []
    c = counters(directory, clock, lines=lines)
    for _ in range(3):
        c.authentication("accept", "production")
        c.done("check_eap_tls", clock.t)
        clock.t += 6
    assert c.authentications[("accept", "production")] == 3  # counting goes on
    assert c.writes_failed == 3 and len(lines) == 1 and "cannot write" in lines[0]


def test_missing_directory_is_created_and_writing_resumes_after_a_failure(tmp_path: Path) -> None:
    clock, lines = Clock(), []
    blocker = tmp_path / "metrics"
    blocker.write_text("in the way")
    c = counters(blocker, clock, lines=lines)
    c.tick()
    assert c.writes_failed == 1
    blocker.unlink()  # now missing: the next due write creates it
    clock.t += 5
    c.tick()
    assert c.path is not None and c.path.exists()
    assert lines[-1].endswith("again")


def snapshot(pid: int, written_at: float, hostname: str, accepts: int = 1) -> dict[str, Any]:
    c = counters(None)
    for _ in range(accepts):
        c.authentication("accept", "production")
    c.latency["check_eap_tls"].observe(0.0007)
    c.registry_errors = 2
    data = c.snapshot()
    data.update(pid=pid, written_at=written_at, hostname=hostname)
    return data


def dead_pid() -> int:
    pid = 4_000_000
    while hc.pid_alive(pid):
        pid += 1
    return pid


def test_reader_sums_live_and_recent_files_and_drops_old_files_of_dead_processes(tmp_path: Path) -> None:
    import socket

    now, host = 1_800_000_000.0, socket.gethostname()
    files = {
        "live-old": snapshot(os.getpid(), now - 3600, host, accepts=1),  # alive: counts however old
        "dead-recent": snapshot(dead_pid(), now - 60, host, accepts=10),  # dead but recent: counts
        "dead-old": snapshot(dead_pid(), now - hc.STALE_SECONDS - 1, host, accepts=100),  # dropped
        "other-host-old": snapshot(os.getpid(), now - hc.STALE_SECONDS - 1, host + "x", accepts=1000),  # dropped
    }
    for name, data in files.items():
        (tmp_path / f"hook-{name}.json").write_text(json.dumps(data))
    (tmp_path / "hook-garbage.json").write_text("{not json")
    (tmp_path / "unrelated.json").write_text("{}")
    totals = read_snapshots(tmp_path, now)
    assert totals.processes == 2 and totals.unreadable == 1
    assert totals.authentications == {("accept", "production"): 11}
    assert totals.registry_errors == 4
    counts, total = totals.latency["check_eap_tls"]
    assert counts[BUCKETS.index(0.001)] == 2 and total == pytest.approx(0.0014)
    assert read_snapshots(tmp_path / "missing", now).processes == 0


# -- inside the hook --------------------------------------------------------------------------------------------

def metrics_hook(pki: DevicePki, tmp_path: Path, metrics_dir: Path | None) -> tuple[Hook, FakeRadiusd]:
    path = write_settings(pki, tmp_path)
    data = json.loads(path.read_text())
    data["metrics_dir"] = str(metrics_dir) if metrics_dir else None
    data["metrics_flush_seconds"] = 0.001
    HookSettings.model_validate(data)
    path.write_text(json.dumps(data))
    radiusd = FakeRadiusd()
    hook = Hook(radiusd)
    assert hook.instantiate({"settings": str(path)}) == 0
    return hook, radiusd


def test_hook_counts_each_authentication_once_with_its_segment(pki: DevicePki, tmp_path: Path) -> None:
    hook, _ = metrics_hook(pki, tmp_path, tmp_path / "metrics")
    assert hook.counters is not None
    assert isinstance(hook.check_eap_tls(valid_request(pki)), tuple)  # unknown IDevID: quarantined
    assert hook.check_eap_tls(valid_request(pki, "rogue", "rogue")) == REJECT
    reject = {**valid_request(pki, "rogue", "rogue"), "config": (("Post-Auth-Type", "Reject"),)}
    hook.post_auth(reject)  # our own reject: already counted
    tls_failure = {"request": (("Calling-Station-Id", "02-00-00-00-00-09"),),
                   "config": (("Post-Auth-Type", "Reject"),), "reply": None}
    hook.post_auth(tls_failure)  # rejected by FreeRADIUS before policy: counted here
    hook.detach(None)
    totals = read_snapshots(tmp_path / "metrics")
    assert totals.authentications == {("quarantine", "quarantine"): 1, ("reject", "none"): 2}
    assert sum(totals.latency["check_eap_tls"][0]) == 2 and sum(totals.latency["post_auth"][0]) == 2
    assert totals.failed_closed == 0


def test_registry_failure_is_counted_and_still_fails_closed(pki: DevicePki, tmp_path: Path) -> None:
    from policy.errors import StoreError

    hook, _ = metrics_hook(pki, tmp_path, tmp_path / "metrics")
    assert hook.authorizer is not None

    def broken(*_a: object, **_k: object) -> object:
        raise StoreError("registry down")

    hook.authorizer.authorize = broken  # type: ignore[method-assign]
    assert hook.check_eap_tls(valid_request(pki)) == REJECT
    assert hook.counters is not None
    assert (hook.counters.registry_errors, hook.counters.failed_closed) == (1, 1)
    assert hook.counters.authentications == {("reject", "none"): 1}


def test_unwritable_metrics_directory_never_affects_the_hook(pki: DevicePki, tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file, not a directory")
    hook, radiusd = metrics_hook(pki, tmp_path, tmp_path / "blocked" / "metrics")
    for _ in range(3):
        assert hook.check_eap_tls(valid_request(pki, "ldevid-ok", "ldevid"))[0] == UPDATED  # type: ignore[index]
    assert hook.counters is not None and sum(hook.counters.authentications.values()) == 3
    assert sum("metrics: cannot write" in line for _, line in radiusd.lines) == 1


def test_metrics_off_counts_nothing(pki: DevicePki, tmp_path: Path) -> None:
    hook, _ = metrics_hook(pki, tmp_path, None)
    assert hook.counters is None
    assert isinstance(hook.check_eap_tls(valid_request(pki)), tuple)
    assert list(tmp_path.glob("**/hook-*.json")) == []
