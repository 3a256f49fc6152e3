"""A real authenticator: hostapd (driver=wired) + wpa_supplicant in a network namespace, accounting to trustport's
FreeRADIUS, an operator quarantine that the worker enforces with an RFC 5176 Disconnect-Request to hostapd (which
NAKs CoA), and the device's next authentication landing in quarantine."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from policy.model import Outcome
from tests.support.netns import EAP_FAILURE, EAP_SUCCESS, Supplicant, WiredNas
from trustport.freeradius.run import free_port
from trustport.services.enforcement import Enforcement
from trustport.services.lifecycle import LifecycleService
from trustport.store.sessions import SqlSessionStore
from trustport.worker.executor import DriverExecutor
from trustport.worker.loop import Worker
from trustport_lab.lab import Lab

NAS_ID = "tp-hostapd-enforce"
DAS_SECRET = "das-enforce-secret"


@pytest.fixture(scope="module")
def das_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, das_port: int) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("lab")
    os.environ["TP_TEST_DAS_SECRET"] = DAS_SECRET
    (work / "inventory.yaml").write_text(yaml.safe_dump({"switches": {"hostapd-das": {
        "driver": "coa", "address": "127.0.0.1", "port": das_port,
        "options": {"secret_env": "TP_TEST_DAS_SECRET", "vendor": "ietf", "timeout": 1.0, "retries": 2}}}}))
    extra: dict[str, object] = {"enforcement": {"inventory": "inventory.yaml", "nas": [
        {"nas_identifier": NAS_ID, "coa": "hostapd-das", "coa_mode": "disconnect"}]}}
    with Lab(work, datetime.now(UTC), echo=lambda _m: None, extra_config=extra) as running:
        yield running


def test_quarantine_through_a_real_nas(lab: Lab, das_port: int, tmp_path: Path) -> None:
    radius = lab.config.radius
    with WiredNas(radius.auth_port, radius.clients[0].secret.get_secret_value(), acct_port=radius.acct_port,
                  das_port=das_port, das_secret=DAS_SECRET, nas_identifier=NAS_ID, workdir=tmp_path / "nas") as nas:
        cert, key = lab.devices["SN-1001"]
        with Supplicant(nas, cert, key, lab.work / "pki" / "server-ca.pem", "sn-1001.devices.example",
                        tmp_path / "dev") as sup:
            sup.wait_event(EAP_SUCCESS, 15, fail_on=[EAP_FAILURE])
            nas.wait_sta_authorized(sup.mac, 5)
            device = next(d for d in lab.store.list_devices() if d.key.serial_number == "SN-1001")
            acct_id = nas.acct_session_id(sup.mac)
            deadline = time.monotonic() + 10
            sessions: list = []  # type: ignore[type-arg]
            while time.monotonic() < deadline:  # accounting Start arrives just after the authentication
                sessions = [s for s in SqlSessionStore(lab.store).active_for_device(device.id)
                            if s.acct_session_id == acct_id]
                if sessions:
                    break
                time.sleep(0.1)
            (session,) = sessions
            assert (session.nas_identifier, session.calling_station_id, session.vlan) == (NAS_ID, sup.mac, 30)

            start = time.monotonic()
            result = LifecycleService(lab.config, lab.store).act(device, "quarantine", actor="test",
                                                                 reason="real NAS", now=datetime.now(UTC))
            (queued,) = result.queued
            assert queued.job is not None and [s.kind.value for s in queued.job.plan.steps] == ["coa-disconnect"]
            enforcement = Enforcement(lab.config, lab.store)
            assert lab.config.enforcement is not None
            executor = DriverExecutor.from_file(lab.config.path(lab.config.enforcement.inventory))
            (job,) = Worker(enforcement.queue, executor, enforcement.worker_settings, worker_id="test").drain()
            assert job.state == "done" and "Disconnect-ACK" in job.log[-1]["message"], job.log
            after = sup.log_offset()
            nas.wait_log(r"RADIUS DAS: Found a matching session", 5)
            sup.kick_reauth()  # waits out hostapd's 5 s STA window, then an EAPOL-Start
            sup.wait_event(EAP_SUCCESS, 20, after=after, fail_on=[EAP_FAILURE])
            print(f"\nquarantine -> Disconnect-ACK -> re-authenticated: {time.monotonic() - start:.2f} s")
            accepts = [m for m in nas.radius_messages() if m.name == "Access-Accept"]
            assert accepts[-1].text("Tunnel-Private-Group-Id") == "999"
            lab.settle()  # what radiusd journaled is in the registry before the test reads it
            entry = lab.store.decisions(device.id, limit=1)[0]
            assert (entry.outcome, entry.vlan) == (Outcome.QUARANTINE, 999)
            assert entry.context.nas_identifier == NAS_ID
            assert datetime.now(UTC) - entry.time < timedelta(minutes=1)
