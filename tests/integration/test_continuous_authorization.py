"""End to end: eapol_test authenticates through real FreeRADIUS -> the session is recorded -> an operator
quarantines the device (CLI) -> the worker moves the fake switch port and reads it back -> the device
re-authenticates into quarantine. Also the same triggered by a failing attestation posted to the REST API."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from policy.model import Outcome
from trustport.cli.main import cli
from trustport.store.queue import SqlJobQueue
from trustport.store.sessions import SqlSessionStore
from trustport_lab.attest import post_token
from trustport_lab.enforce import LabNetwork, apply_radius_vlan, lab_network
from trustport_lab.lab import Lab


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, LabNetwork]]:
    work = tmp_path_factory.mktemp("ca")
    with lab_network(work) as network, \
            Lab(work, datetime.now(UTC), echo=lambda _m: None, extra_config=network.extra_config) as lab:
        yield lab, network


def connect(lab: Lab, network: LabNetwork, serial: str, port: int) -> int:
    result = lab.authenticate(serial, nas_port=port)
    assert result.code == "Access-Accept" and result.vlan is not None, result.output[-1500:]
    apply_radius_vlan(network, port, result.vlan)
    return result.vlan


def test_operator_quarantine_moves_the_port_and_the_device_reauthenticates_into_quarantine(world) -> None:  # type: ignore[no-untyped-def]
    lab, network = world
    assert connect(lab, network, "SN-1001", 3) == 30
    device = next(d for d in lab.store.list_devices() if d.key.serial_number == "SN-1001")
    (session,) = SqlSessionStore(lab.store).active_for_device(device.id)
    assert (session.nas_ip, session.nas_port, session.vlan) == ("127.0.0.1", "3", 30)
    assert session.calling_station_id == lab.macs["SN-1001"].replace(":", "-").upper()

    runner = CliRunner()
    c = ("--config", str(lab.config_path))
    out = runner.invoke(cli, ["devices", "quarantine", "SN-1001", "--reason", "odd DNS", "--actor", "alice", *c])
    assert out.exit_code == 0, out.output
    assert "operational -> quarantined" in out.output and "queued -> VLAN 999" in out.output
    worker = runner.invoke(cli, ["worker", "--drain", *c])
    assert worker.exit_code == 0, worker.output
    assert "Session-Context-Not-Found" in worker.output  # the fake NAS NAKs the CoA ...
    port = network.port(3)
    assert (port.vlan, port.bounces) == (999, 1)  # ... and the switch fallback moved and bounced the port
    (job,) = [j for j in SqlJobQueue(lab.store).list() if j.device_id == device.id]
    assert job.state == "done" and any("VLAN 30 -> 999 (read back)" in e["message"] for e in job.log)

    again = lab.authenticate("SN-1001")
    assert (again.code, again.vlan) == ("Access-Accept", 999)
    entry = lab.store.decisions(device.id, limit=1)[0]
    assert entry.outcome is Outcome.QUARANTINE and "quarantined" in entry.reasons[-1]
    shown = runner.invoke(cli, ["devices", "show", "SN-1001", *c]).output
    assert "alice" in shown and "odd DNS" in shown


def test_attestation_drop_moves_a_connected_device(world) -> None:  # type: ignore[no-untyped-def]
    lab, network = world
    assert connect(lab, network, "SN-1102", 4) == 35  # warning -> restricted
    body = post_token(lab, "SN-1102", "contraindicated")
    assert body["reevaluation"] == "attestation dropped from warning to contraindicated"
    worker = CliRunner().invoke(cli, ["worker", "--drain", "--config", str(lab.config_path)])
    assert worker.exit_code == 0, worker.output
    assert network.port(4).vlan == 999
    again = lab.authenticate("SN-1102")
    assert (again.code, again.vlan) == ("Access-Accept", 999)


def test_accounting_stop_closes_the_session(world) -> None:  # type: ignore[no-untyped-def]
    lab, network = world
    connect(lab, network, "SN-3003", 5)
    device = next(d for d in lab.store.list_devices() if d.key.serial_number == "SN-3003")
    (session,) = SqlSessionStore(lab.store).active_for_device(device.id)
    secret = lab.config.radius.clients[0].secret.get_secret_value()
    for status in ("Start", "Interim-Update", "Stop"):  # radclient (freeradius-utils) as an independent client
        attributes = (f'Acct-Status-Type = {status}\nAcct-Session-Id = "lab-0042"\n'
                      f'Calling-Station-Id = "{session.calling_station_id}"\nNAS-IP-Address = 127.0.0.1\n')
        sent = subprocess.run(["radclient", "-r", "1", "-t", "3", f"127.0.0.1:{lab.config.radius.acct_port}", "acct",
                               secret], input=attributes, capture_output=True, text=True, timeout=20, check=False)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        if status != "Stop":
            (live,) = SqlSessionStore(lab.store).active_for_device(device.id)
            assert live.id == session.id and live.acct_session_id == "lab-0042"
    assert SqlSessionStore(lab.store).active_for_device(device.id) == []
    closed = SqlSessionStore(lab.store).get(session.id)
    assert closed is not None and closed.acct_session_id == "lab-0042"
