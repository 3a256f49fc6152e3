"""A real authenticator in front of trustport's FreeRADIUS: hostapd (driver=wired) and wpa_supplicant.

Exercises the harness in tests/support/netns.py against the lab's rendered FreeRADIUS + hook + registry:
authentication through hostapd, an RFC 5176 Disconnect-Request to hostapd's DAS (radclient as an oracle
client, not the product's CoA driver), and the device's next authentication. See docs/testing-hostapd.md.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from policy.model import DeviceKey, Outcome
from policy.x509facts import facts_from_certificate
from tests.support.netns import EAP_FAILURE, EAP_SUCCESS, HarnessError, Supplicant, WiredNas, mac_colon, require_tool
from trustport.freeradius.run import free_port
from trustport_lab.lab import Lab

NAS_IDENTIFIER = "tp-hostapd-test"
DAS_SECRET = "das-test-secret"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), datetime.now(UTC), echo=lambda _m: None) as running:
        yield running


@pytest.fixture
def nas(lab: Lab, tmp_path: Path) -> Iterator[WiredNas]:
    radius = lab.config.radius
    with WiredNas(radius.auth_port, radius.clients[0].secret.get_secret_value(), acct_port=radius.acct_port,
                  das_port=free_port(), das_secret=DAS_SECRET, nas_identifier=NAS_IDENTIFIER,
                  workdir=tmp_path / "nas") as running:
        yield running


def device(lab: Lab, nas: WiredNas, serial: str, workdir: Path) -> Supplicant:
    cert, key = lab.devices[serial]
    return Supplicant(nas, cert, key, lab.work / "pki" / "server-ca.pem", f"{serial.lower()}.devices.example",
                      workdir)


def device_id(lab: Lab, serial: str) -> int:
    found = lab.store.find_device(DeviceKey(facts_from_certificate(lab.certificate(serial)).issuer, serial))
    assert found is not None, f"{serial} is not in the lab registry"
    return found.id


def radclient_disconnect(port: int, secret: str, **attributes: str) -> subprocess.CompletedProcess[str]:
    """Oracle DAS client: one Disconnect-Request, no retries (rc 0 = Disconnect-ACK)."""
    pairs = "".join(f'{name.replace("_", "-")} = "{value}"\n' for name, value in attributes.items())
    return subprocess.run([require_tool("radclient"), "-x", "-r", "1", "-t", "3", f"127.0.0.1:{port}", "disconnect",
                           secret], input=pairs, capture_output=True, text=True, timeout=15, check=False)


def test_device_authenticates_through_hostapd_is_disconnected_and_comes_back(
        lab: Lab, nas: WiredNas, tmp_path: Path) -> None:
    dev_id = device_id(lab, "SN-1001")
    lab.settle()  # what radiusd journaled is in the registry before the test reads it
    seen = len(lab.store.decisions(dev_id, limit=1000))
    with device(lab, nas, "SN-1001", tmp_path / "dev") as sup:
        start = time.monotonic()
        sup.wait_event(EAP_SUCCESS, 15, fail_on=[EAP_FAILURE])
        print(f"\nfirst auth through hostapd: {time.monotonic() - start:.2f} s after wpa_supplicant started "
              "(it sends its first EAPOL-Start after 2 s)")
        nas.wait_sta_authorized(sup.mac, 5)
        accepts = [m for m in nas.radius_messages() if m.name == "Access-Accept"]
        assert [m.text("Tunnel-Private-Group-Id") for m in accepts] == ["30"]
        assert accepts[0].text("User-Name") == "sn-1001.devices.example"
        lab.settle()  # what radiusd journaled is in the registry before the test reads it
        entries = lab.store.decisions(dev_id, limit=1000)
        assert len(entries) == seen + 1
        assert (entries[0].outcome, entries[0].vlan) == (Outcome.ACCEPT, 30)
        assert entries[0].context.calling_station_id == sup.mac
        assert entries[0].context.nas_identifier == NAS_IDENTIFIER
        assert entries[0].context.nas_ip == "127.0.0.1"

        kicks: tuple[Literal["eapol", "dhcp"], ...] = ("eapol", "dhcp")
        for round_, method in enumerate(kicks, start=2):
            nas_mark, sup_mark = nas.log_offset(), sup.log_offset()
            sent = time.monotonic()
            # hostapd matches a session by Calling-Station-Id or Acct-Session-Id (among others): try both
            session = nas.acct_session_id(sup.mac)
            assert session is not None and len(session) == 16
            answer = radclient_disconnect(nas.das_port, DAS_SECRET,
                                          **({"Calling_Station_Id": sup.mac} if method == "eapol"
                                             else {"Acct_Session_Id": session}))
            assert answer.returncode == 0 and "Received Disconnect-ACK" in answer.stdout, answer.stdout + answer.stderr
            nas.wait_log(f"AP-STA-DISCONNECTED {mac_colon(sup.mac)}", 2, after=nas_mark)
            stop = [m for m in nas.radius_messages(nas_mark) if m.name == "Accounting-Request"]
            assert [m.text("Acct-Status-Type") for m in stop] == ["2"]  # Stop
            # hostapd does not tell a wired supplicant: it still believes it is authorized
            assert sup.status()["Supplicant PAE state"] == "AUTHENTICATED"
            waited = sup.kick_reauth(method)  # waits until hostapd freed the STA (5 s), then EAPOL-Start / DHCP
            success = sup.wait_event(EAP_SUCCESS, 10, after=sup_mark, fail_on=[EAP_FAILURE])
            trigger = nas.wait_log("received EAPOL-Start from STA" if method == "eapol" else "Got DHCP broadcast",
                                   2, after=nas_mark)
            disconnect = next(m for m in nas.radius_messages(nas_mark) if m.name == "Disconnect-Request")
            assert success.time is not None and trigger.time is not None
            print(f"round {round_} ({method}): kick_reauth waited {waited:.2f} s for hostapd to free the STA; "
                  f"trigger -> EAP-SUCCESS {1000 * (success.time - trigger.time):.1f} ms; "
                  f"Disconnect-Request -> EAP-SUCCESS {success.time - disconnect.time:.3f} s "
                  f"(wall {time.monotonic() - sent:.2f} s)")
            nas.wait_sta_authorized(sup.mac, 5)
            new = [m for m in nas.radius_messages(nas_mark) if m.name == "Access-Accept"]
            assert [m.text("Tunnel-Private-Group-Id") for m in new] == ["30"]
            lab.settle()  # what radiusd journaled is in the registry before the test reads it
            entries = lab.store.decisions(dev_id, limit=1000)
            assert len(entries) == seen + round_
            assert entries[0].outcome is Outcome.ACCEPT and entries[0].context.calling_station_id == sup.mac


def test_revoked_device_is_rejected_at_hostapd(lab: Lab, nas: WiredNas, tmp_path: Path) -> None:
    dev_id = device_id(lab, "SN-4004")
    lab.settle()  # what radiusd journaled is in the registry before the test reads it
    seen = len(lab.store.decisions(dev_id, limit=1000))
    with device(lab, nas, "SN-4004", tmp_path / "dev") as sup:
        nas.wait_log("AUTH_PAE entering state HELD", 15)
        assert [m.name for m in nas.radius_messages() if m.name.startswith("Access-")][-1] == "Access-Reject"
        assert "[AUTHORIZED]" not in nas.sta_list().get(mac_colon(sup.mac), {}).get("flags", "")
        # the policy rejects after the TLS handshake, so wpa_supplicant discards the EAP-Failure (reference §9.6)
        assert EAP_SUCCESS not in sup.log_text()
        lab.settle()  # what radiusd journaled is in the registry before the test reads it
        entries = lab.store.decisions(dev_id, limit=1000)
        assert len(entries) == seen + 1
        assert entries[0].outcome is Outcome.REJECT and "revoked" in entries[0].reasons[0]
        assert entries[0].context.calling_station_id == sup.mac
        assert entries[0].context.nas_identifier == NAS_IDENTIFIER


def test_everything_is_cleaned_up_when_a_test_fails(lab: Lab, tmp_path: Path) -> None:
    radius = lab.config.radius
    pids: list[int | None] = []
    names: list[str] = []
    def failing_test() -> None:
        with WiredNas(radius.auth_port, "wrong-secret", acct_port=radius.acct_port, das_port=free_port(),
                      das_secret=DAS_SECRET, nas_identifier=NAS_IDENTIFIER, workdir=tmp_path / "nas") as nas, \
                device(lab, nas, "SN-1001", tmp_path / "dev") as sup:
            pids.extend([nas.pid, sup.pid])
            names.extend([nas.namespace, nas.interface])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_test()
    assert all(pid is not None and not Path(f"/proc/{pid}").exists() for pid in pids), pids
    assert names[0] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert subprocess.run(["ip", "link", "show", names[1]], capture_output=True, check=False).returncode != 0


def test_missing_tool_fails_naming_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_which = shutil.which
    monkeypatch.setattr("tests.support.netns.shutil.which",
                        lambda name, *a, **k: None if name == "hostapd" else real_which(name, *a, **k))
    with pytest.raises(HarnessError, match="Debian package 'hostapd'"):
        WiredNas(1812, "s", acct_port=1813, das_port=3799, das_secret="d", nas_identifier="x",
                 workdir=tmp_path).__enter__()
