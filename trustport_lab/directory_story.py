"""The lab's directory story, inside the running lab (its FreeRADIUS, registry, fake switch and config), against a
real OpenLDAP ``slapd`` (``trustport_lab.slapd``) that ``run_lab`` starts in the lab directory and the lab's config
reads over LDAPS (its ``directory:`` section, the bind password in a private file):

1. an entry for a device the registry has never seen (approved, segment ``cameras``) is synced in: the device is
   operational in ``cameras`` before it ever authenticates, not pending like an unknown IDevID. The lab's placement
   still quarantines an IDevID device without an attestation result, and the REST API binds a result only to the
   certificate the device is registered with (bound on its first authentication), so the first authentication is
   quarantined for the missing attestation; the verifier then vouches and it re-authenticates into VLAN 40;
2. the entry is disabled (``trustportApproved: FALSE``): the sync quarantines the device with actor ``directory``,
   the worker moves its port on the fake switch (read back) and it re-authenticates into quarantine;
3. slapd is stopped: ``trustport directory sync`` fails with a clear message, ``trustport directory status`` says
   DOWN, and the device's authentication is unchanged (the RADIUS path reads only the registry);
4. slapd is back and the entry is deleted: the sync decommissions the device and its next authentication is
   rejected.

``run_directory`` returns one row per step (five: step 1 is two rows; what was expected, what happened) and the
measured sync times.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from policy.model import DeviceKey, DeviceRecord
from policy.text import safe_text
from policy.x509facts import oneline_dn
from trustport.cli.base import table
from trustport.files import write_private
from trustport_lab.onboard import StepRow
from trustport_lab.slapd import Slapd, SlapdUnavailable, device_ldif, find_binaries, generated_devices, running_slapd

if TYPE_CHECKING:
    from trustport.app import App
    from trustport.services.directory import SyncReport
    from trustport.worker.loop import Worker
    from trustport_lab.enforce import LabNetwork
    from trustport_lab.lab import Lab

SERIAL = "SN-8008"  # the new device: a genuine IDevID, known to the directory, unknown to the registry
CN = "camera-8"
SEGMENT = "cameras"
OTHER_DEVICES = 100  # the site's other directory entries, so that the measured sync reads a real listing
PASSWORD_FILE = "ldap-password"  # noqa: S105 -- the file's name; slapd makes the password
MISSING = "slapd not found (apt-get install slapd ldap-utils)"

STEPS = ("directory-approved, first authentication", "verifier attests, re-authentication",
         "entry disabled -> directory sync",
         "directory down -> directory sync", "entry removed -> directory sync")


@dataclass(frozen=True)
class DirectoryStory:
    rows: list[StepRow]
    sync_ms: list[float]  # the successful syncs, read + reconcile + write
    read_ms: list[float]  # of which reading the directory (LDAPS, paged search)
    entries: int  # entries the last successful sync read

    @property
    def ok(self) -> bool:
        return len(self.rows) == len(STEPS) and all(r.as_expected for r in self.rows)


def unavailable() -> str | None:
    """Why the story cannot run (slapd, slapadd or the mdb backend missing), or None."""
    try:
        find_binaries()
    except SlapdUnavailable:
        return MISSING
    return None


@contextlib.contextmanager
def lab_slapd(work: Path) -> Iterator[Slapd]:
    """The lab's slapd in ``work/slapd`` (made afresh), with the site's other devices in ``ou=devices``."""
    directory = work / "slapd"
    shutil.rmtree(directory, ignore_errors=True)  # slapadd loads a fresh database: a rerun starts over
    others = generated_devices(OTHER_DEVICES, start=1)
    with running_slapd(directory, ldif=device_ldif(others, "ou=devices,dc=example,dc=org")) as server:
        yield server


def directory_section(slapd: Slapd, work: Path) -> dict[str, object]:
    """The lab config's ``directory:`` section: LDAPS checked against the slapd's CA, the service account's
    password in a private file in the lab directory."""
    write_private(work / PASSWORD_FILE, slapd.bind_password.encode())
    return {"url": slapd.ldaps_url, "ca_file": str(slapd.ca_file.relative_to(work.resolve())), "bind_dn": slapd.bind_dn,
            "bind_password": {"file": PASSWORD_FILE}, "base_dn": slapd.devices_dn, "mapping": "openldap",
            "allowed_segments": [SEGMENT], "timeout_seconds": 3}


def run_directory(lab: Lab, network: LabNetwork, slapd: Slapd, echo: Callable[[str], None] = print
                  ) -> DirectoryStory:
    """The four steps against the running lab; stops at the first step that cannot go on. slapd is running
    again when this returns."""
    from trustport.app import App

    assert lab.config.directory is not None, "the lab config has no directory: section"
    echo(f"  slapd (OpenLDAP) on {slapd.ldaps_url}, base {slapd.devices_dn} with {OTHER_DEVICES} other devices; "
         f"LDAPS checked against {slapd.ca_file.relative_to(lab.work.resolve())}, bind as {slapd.bind_dn} with the "
         f"password in {PASSWORD_FILE}")
    records = _Records()
    directory_log = logging.getLogger("trustport.directory")
    directory_log.addHandler(records)  # the sync's warnings go in the rows (and not to stderr)
    try:
        with App(lab.config) as app:
            story = _Story(lab, network, slapd, app, records, echo)
            try:
                story.run()
            finally:
                slapd.start()
    finally:
        directory_log.removeHandler(records)
    return DirectoryStory(story.rows, story.sync_ms, story.read_ms, story.entries)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class _Story:
    lab: Lab
    network: LabNetwork
    slapd: Slapd
    app: App
    records: _Records
    echo: Callable[[str], None]
    rows: list[StepRow] = field(default_factory=list)
    sync_ms: list[float] = field(default_factory=list)
    read_ms: list[float] = field(default_factory=list)
    entries: int = 0
    device_id: int | None = None
    worker: Worker | None = None

    @property
    def dn(self) -> str:
        return f"cn={CN},{self.slapd.devices_dn}"

    def current(self) -> DeviceRecord | None:
        if self.device_id is not None:
            return self.lab.store.get_device(self.device_id)
        return self.lab.store.find_device(DeviceKey(oneline_dn(self.lab.cas["idevid"].cert.subject), SERIAL))

    def row(self, step: str, expected: str, got: str, ms: float, detail: str) -> bool:
        self.rows.append(StepRow(step, expected, got, ms, safe_text(detail)))
        return got == expected

    def sync(self) -> SyncReport:
        report = self.app.directory.sync(datetime.now(UTC))
        self.sync_ms.append(report.seconds * 1000)
        self.read_ms.append(report.read_seconds * 1000)
        self.entries = report.plan.entries
        return report

    def drain(self) -> str:
        """The worker runs the jobs the sync queued (CoA is NAKed by the fake NAS: the switch CLI fallback)."""
        if self.worker is None:
            self.worker = self.app.worker(concurrency=1, worker_id="lab-worker",
                                          on_event=lambda job, message: self.echo(
                                              f"    job #{job.id}: {safe_text(message)}"))
        jobs = self.worker.drain()
        return ", ".join(f"#{j.id} {j.state}" for j in jobs) or "no job"

    def authenticate(self) -> tuple[str, str]:
        """eapol_test as the device; the switch port follows the answer. Returns (outcome, the decision's why)."""
        from trustport_lab.enforce import apply_radius_vlan
        from trustport_lab.lab import vlan_outcome

        result = self.lab.authenticate(SERIAL)
        apply_radius_vlan(self.network, self.lab.ports[SERIAL], result.vlan)
        mac = self.lab.macs[SERIAL].replace(":", "-").lower()
        entries = [e for e in self.lab.store.decisions(None, limit=20)
                   if (e.context.calling_station_id or "").lower() == mac]
        return vlan_outcome(result), ("; ".join(entries[0].reasons) if entries else "(no decision logged)")

    def standing(self) -> str:
        """The device's state and the actor of its last lifecycle event."""
        from trustport.store.lifecycle import SqlLifecycleStore

        device = self.current()
        if device is None:
            return "not registered"
        events = SqlLifecycleStore(self.lab.store).events(device.id)
        return f"{device.state.value} by {events[0].actor}" if events else device.state.value

    def run(self) -> None:
        from trustport.store.queue import SqlJobQueue

        if SqlJobQueue(self.lab.store).counts().get("queued"):
            self.echo("  worker: the jobs still queued by the stories before")
            self.drain()
        if self.approved() and self.disabled() and self.outage():
            self.removed()

    def approved(self) -> bool:
        from trustport_lab.lab import SEGMENTS, issue_lab_idevid
        from trustport_lab.onboard import attest_device, attestation_verdict

        issue_lab_idevid(self.lab, SERIAL)
        unseen = self.current() is None
        issuer = oneline_dn(self.lab.cas["idevid"].cert.subject)
        self.echo(f"  directory admin: ldapadd {self.dn} (serialNumber {SERIAL}, trustportApproved TRUE, "
                  f"trustportSegment {SEGMENT}); the registry has {'never seen' if unseen else 'ALREADY SEEN'} it")
        with self.slapd.admin() as admin:
            admin.add(self.dn, ["device", "trustportDevice"], {
                "serialNumber": SERIAL, "trustportIssuer": issuer, "trustportApproved": "TRUE",
                "trustportSegment": SEGMENT, "trustportOwner": "facilities", "trustportDeviceClass": "camera",
                "trustportSite": "lab"})
        self.echo("  trustport directory sync")
        report = self.sync()
        device = self.current()
        if device is not None:
            self.device_id = device.id
        start = time.perf_counter()
        got, why = self.authenticate()
        ms = (time.perf_counter() - start) * 1000
        device = self.current()
        state = device.state.value if device is not None else "not registered"
        added = self.added_by()
        if not self.row(STEPS[0], "operational (added by directory), quarantine VLAN 999",
                        f"{state} (added by {added}), {got}" if unseen else f"{state}, {got}, not new", ms,
                        f"sync: {report.summary()}; segment {device.segment if device else None}; {why}; no result "
                        "yet: the verifier can vouch only for the certificate bound on first use"):
            return False
        token = attest_device(self.lab, SERIAL)  # the verifier vouches for the IDevID's key, as for any camera
        start = time.perf_counter()
        got, why = self.authenticate()
        ms = (time.perf_counter() - start) * 1000
        return self.row(STEPS[1], f"accept VLAN {SEGMENTS[SEGMENT]}", got, ms,
                        f"attestation {attestation_verdict(token)}; registry: {self.standing()}; {why}")

    def added_by(self) -> str:
        """The actor of the device's first lifecycle event (the directory's add)."""
        from trustport.store.lifecycle import SqlLifecycleStore

        device = self.current()
        events = SqlLifecycleStore(self.lab.store).events(device.id) if device is not None else []
        return events[-1].actor if events else "nobody"

    def disabled(self) -> bool:
        import ldap3

        from trustport_lab.lab import SEGMENTS

        quarantine = SEGMENTS["quarantine"]
        port = self.lab.ports[SERIAL]
        self.echo(f"  directory admin: ldapmodify {self.dn} trustportApproved: FALSE; trustport directory sync")
        with self.slapd.admin() as admin:
            admin.modify(self.dn, {"trustportApproved": [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
        before = self.network.port(port).vlan
        start = time.perf_counter()
        report = self.sync()
        jobs = self.drain()
        ms = (time.perf_counter() - start) * 1000
        after = self.network.port(port).vlan
        got, why = self.authenticate()
        return self.row(STEPS[2], f"quarantined by directory, Gi1/0/{port} VLAN {quarantine}, "
                        f"quarantine VLAN {quarantine}",
                        f"{self.standing()}, Gi1/0/{port} VLAN {after}, {got}", ms,
                        f"sync: {report.summary()}; port VLAN {before} -> {after} (read back); jobs: {jobs}; {why}")

    def outage(self) -> bool:
        from trustport_lab.lab import SEGMENTS

        self.echo("  slapd stopped; trustport directory sync; trustport directory status")
        self.slapd.stop()
        standing = self.standing()
        start = time.perf_counter()
        synced = self.cli("directory", "sync")
        ms = (time.perf_counter() - start) * 1000
        error = _last_line(synced.stderr) or _last_line(synced.stdout)
        failed = f"sync exit {synced.returncode}"
        status = self.cli("directory", "status")
        state = "DOWN" if "DOWN" in status.stdout else "up" if ": up;" in status.stdout else "?"
        got, why = self.authenticate()
        unchanged = self.standing() == standing
        in_force = [line.strip().rsplit("; ", 1)[-1] for line in synced.stderr.splitlines()
                    if "stays in force" in line]
        quarantine = SEGMENTS["quarantine"]
        return self.row(STEPS[3], f"sync exit 2, status DOWN (exit 1), registry unchanged, quarantine VLAN "
                        f"{quarantine}",
                        f"{failed}, status {state} (exit {status.returncode}), registry "
                        f"{'unchanged' if unchanged else 'CHANGED'}, {got}", ms,
                        f"{error}; status: {_first_line(status.stdout)}; "
                        f"{in_force[-1] if in_force else 'no stays-in-force warning'}; {why}")

    def removed(self) -> bool:
        self.slapd.start()
        self.echo(f"  slapd started again; directory admin: ldapdelete {self.dn}; trustport directory sync")
        with self.slapd.admin() as admin:
            admin.delete(self.dn)
        start = time.perf_counter()
        report = self.sync()
        jobs = self.drain()
        ms = (time.perf_counter() - start) * 1000
        got, why = self.authenticate()
        return self.row(STEPS[4], "decommissioned by directory, reject", f"{self.standing()}, {got}", ms,
                        f"sync: {report.summary()}; jobs: {jobs}; {why}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``trustport ARGS --config <the lab's config>`` in its own process, as an operator runs it."""
        return subprocess.run([sys.executable, "-m", "trustport.cli.main", *args, "--config",
                               str(self.lab.config_path)], capture_output=True, text=True, timeout=60, check=False)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "(nothing)")


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def format_directory(story: DirectoryStory) -> str:
    return table(("step", "expected", "got", "ms", "detail"),
                 [(r.step, r.expected, r.got + ("" if r.as_expected else "  <-- UNEXPECTED"), f"{r.ms:.0f}",
                   r.detail) for r in story.rows])


def format_sync_time(story: DirectoryStory) -> str | None:
    if not story.sync_ms:
        return None
    return (f"directory sync time ({story.entries} entries over LDAPS, read + reconcile + write): median "
            f"{statistics.median(story.sync_ms):.0f} ms over {len(story.sync_ms)} syncs (max "
            f"{max(story.sync_ms):.0f} ms; reading the directory {statistics.median(story.read_ms):.0f} ms)")
