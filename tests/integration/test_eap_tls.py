"""Real FreeRADIUS 3.2 + rlm_python3 + eapol_test: the lab's five cases and what they change in the registry."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from policy.model import DeviceKey, LifecycleState, Outcome
from policy.x509facts import facts_from_certificate, oneline_dn
from trustport.cli.main import cli
from trustport_lab.lab import Lab
from trustport_lab.pki import issue_device

TUNNEL_TYPE_VLAN, MEDIUM_IEEE_802, EAP_FAILURE = "13", "6", 4


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("lab")
    with Lab(work, datetime.now(UTC), echo=lambda _m: None) as running:
        extra = issue_device(running.cas["idevid"], cn="sn-6006.devices.example", serial_number="SN-6006",
                             now=running.now, digital_signature=False)
        running.devices["SN-6006"] = extra.write(work / "pki", "SN-6006")
        agreement = issue_device(running.cas["idevid"], cn="sn-7007.devices.example", serial_number="SN-7007",
                                 now=running.now, digital_signature=False, key_agreement=True)
        running.devices["SN-7007"] = agreement.write(work / "pki", "SN-7007")
        yield running


def key(lab: Lab, serial: str) -> DeviceKey:
    return DeviceKey(facts_from_certificate(lab.certificate(serial)).issuer, serial)


def assert_vlan(result, vlan: int) -> None:  # type: ignore[no-untyped-def]
    assert result.code == "Access-Accept", result.output[-2000:]
    assert result.success
    assert result.attributes == {"Tunnel-Type": TUNNEL_TYPE_VLAN, "Tunnel-Medium-Type": MEDIUM_IEEE_802,
                                 "Tunnel-Private-Group-Id": str(vlan)}


def assert_eap_reject(result) -> None:  # type: ignore[no-untyped-def]
    assert result.code == "Access-Reject", result.output[-2000:]
    assert result.eap_code == EAP_FAILURE
    assert not result.success
    assert "Tunnel-Private-Group-Id" not in result.attributes


def test_known_operational_device_gets_its_segment(lab: Lab) -> None:
    before = lab.store.find_device(key(lab, "SN-1001"))
    assert before is not None and before.last_seen is None
    assert_vlan(lab.authenticate("SN-1001", nas_port=7), 30)
    after = lab.store.find_device(key(lab, "SN-1001"))
    assert after is not None and after.last_seen is not None
    entry = lab.store.decisions(after.id, limit=1)[0]
    assert (entry.outcome, entry.vlan, entry.segment) == (Outcome.ACCEPT, 30, "production")
    assert entry.context.nas_ip == "127.0.0.1" and entry.context.nas_port == "7"
    assert entry.context.calling_station_id and entry.context.calling_station_id.startswith("02-00-00-00")


def test_genuine_unknown_device_is_quarantined_and_pending(lab: Lab) -> None:
    assert lab.store.find_device(key(lab, "SN-2002")) is None
    assert_vlan(lab.authenticate("SN-2002"), 999)
    device = lab.store.find_device(key(lab, "SN-2002"))
    assert device is not None and device.state is LifecycleState.PENDING
    # the MUD URL reached the hook through the local dictionary entry and real FreeRADIUS
    assert device.mud_url == "https://mud.acme.example/thermostat.json"
    assert lab.store.decisions(device.id, limit=1)[0].outcome is Outcome.QUARANTINE


def test_quarantined_device_lands_in_quarantine(lab: Lab) -> None:
    assert_vlan(lab.authenticate("SN-3003"), 999)
    device = lab.store.find_device(key(lab, "SN-3003"))
    assert device is not None
    entry = lab.store.decisions(device.id, limit=1)[0]
    assert entry.outcome is Outcome.QUARANTINE and "quarantined" in entry.reasons[-1]


def test_revoked_device_gets_eap_failure(lab: Lab) -> None:
    assert_eap_reject(lab.authenticate("SN-4004"))
    device = lab.store.find_device(key(lab, "SN-4004"))
    assert device is not None
    entry = lab.store.decisions(device.id, limit=1)[0]
    assert entry.outcome is Outcome.REJECT and "revoked" in entry.reasons[0]


def test_untrusted_ca_gets_eap_failure_and_is_logged_unverified(lab: Lab) -> None:
    count = len(lab.store.decisions(None, limit=1000))
    assert_eap_reject(lab.authenticate("SN-5005"))
    assert lab.store.find_device(key(lab, "SN-5005")) is None
    entries = lab.store.decisions(None, limit=1000)
    assert len(entries) == count + 1
    assert entries[0].outcome is Outcome.REJECT and entries[0].device.startswith("unverified:")
    assert "unknown CA" in entries[0].reasons[0]


def test_key_encipherment_only_is_refused_by_openssl(lab: Lab) -> None:
    """Defence in depth: OpenSSL's purpose check already refuses a client key that cannot sign."""
    assert_eap_reject(lab.authenticate("SN-6006"))
    entry = lab.store.decisions(None, limit=1)[0]
    assert "unsuitable certificate purpose" in entry.reasons[0]


def test_key_usage_reaches_the_hook(lab: Lab) -> None:
    """SN-7007 has keyUsage keyAgreement only, which OpenSSL's SSL-client purpose allows; the 802.1AR profile
    (digitalSignature) is checked by the hook, so this reject proves the local dictionary exports Key-Usage."""
    assert_eap_reject(lab.authenticate("SN-7007"))
    entry = lab.store.decisions(None, limit=1)[0]
    assert "key-usage" in entry.reasons[0], entry.reasons


def test_decide_command_agrees_with_freeradius(lab: Lab) -> None:
    runner = CliRunner()
    expected = {"SN-1001": "ACCEPT VLAN 30", "SN-3003": "QUARANTINE VLAN 999", "SN-4004": "REJECT",
                "SN-5005": "REJECT", "SN-6006": "REJECT"}
    for serial, outcome in expected.items():
        result = runner.invoke(cli, ["decide", "--config", str(lab.config_path),
                                     "--cert", str(lab.devices[serial][0]), "--nas-ip", "10.1.1.1"])
        assert result.exit_code == 0, result.output
        assert f"decision: {outcome}" in result.output, result.output


def test_rendered_config_is_safe(lab: Lab) -> None:
    raddb = lab.work / "raddb"
    eap = (raddb / "mods-enabled" / "eap").read_text()
    assert "ca-certificates.crt" not in eap and "/etc/ssl" not in eap
    assert "verify_depth = 1" in eap  # the depth-1 certificate is what ties a chain to its anchor
    sigalgs = next(line for line in eap.splitlines() if "sigalgs_list" in line)
    assert "ecdsa_secp256r1_sha256" in sigalgs and "dsa" not in sigalgs.replace("ecdsa", "")
    assert "sha1" not in sigalgs and "sha224" not in sigalgs
    anchors = x509.load_pem_x509_certificates((raddb / "certs" / "trust-anchors.pem").read_bytes())
    assert {oneline_dn(c.subject) for c in anchors} == {
        oneline_dn(lab.cas[name].cert.subject) for name in ("idevid", "ldevid", "owner")}
    clients = (raddb / "clients.conf").read_text()
    assert "require_message_authenticator = yes" in clients
    for secret_file in ("clients.conf", "hook.json", "mods-enabled/eap"):
        mode = stat.S_IMODE(os.stat(raddb / secret_file).st_mode)
        assert mode == 0o600, f"{secret_file} is {oct(mode)}"
    assert "inner-tunnel" not in os.listdir(raddb / "sites-enabled")


def test_radius_secret_not_in_logs(lab: Lab) -> None:
    secret = lab.config.radius.clients[0].secret.get_secret_value()
    log = Path(lab.server.log_file).read_text(errors="replace")
    assert secret not in log


def test_attestation_results_arrived_through_the_rest_api(lab: Lab) -> None:
    text = "\n".join(lab.attestation_rows)
    assert "SN-1001: accepted — affirming, bound by akpub" in text
    assert "SN-1104: REFUSED" in text and "another device" in text
    assert "without the API token gets HTTP 401" in text


@pytest.mark.parametrize(("serial", "vlan", "tier"), [
    ("SN-1001", 30, "affirming"),
    ("SN-1102", 35, "warning"),
    ("SN-1103", 999, "contraindicated"),
    ("SN-1104", 35, "missing"),  # its token carried SN-1001's key: refused at import, so no result
])
def test_attested_devices_over_eap_tls(lab: Lab, serial: str, vlan: int, tier: str) -> None:
    assert_vlan(lab.authenticate(serial), vlan)
    device = lab.store.find_device(key(lab, serial))
    assert device is not None
    entry = lab.store.decisions(device.id, limit=1)[0]
    assert entry.vlan == vlan
    assert entry.reasons[-1].startswith(f"attestation {tier}")
