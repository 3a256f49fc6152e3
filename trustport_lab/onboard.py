"""The lab's onboarding story, inside the running lab (its FreeRADIUS, registry and config): a new device with a
genuine IDevID is quarantined as pending, asks the real EST server for an LDevID with real clients (``openssl req``
for the key and CSR, ``curl`` with the IDevID as client certificate) and is told to wait; an operator onboards it
(onboarding VLAN), it gets its LDevID, is made operational (production VLAN), and after ``ca revoke`` the
LDevID is rejected.

``run_onboarding`` returns one row per step (what was expected, what happened) and the enrolment latency; the EST
server runs in a thread on a free loopback port and is stopped before it returns.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from policy.model import DeviceKey, DeviceRecord
from policy.x509facts import oneline_dn
from trustport.cli.base import table

if TYPE_CHECKING:
    from trustport.app import App
    from trustport_lab.enforce import LabNetwork
    from trustport_lab.lab import Lab

EST = "/.well-known/est"
SERIAL = "SN-6006"  # the new device: an IDevID from the manufacturer, unknown to the registry
TOOLS = ("curl", "openssl")


@dataclass(frozen=True)
class StepRow:
    """One step of a lab story: what was expected, what happened (the onboarding and directory stories)."""

    step: str
    expected: str
    got: str
    ms: float
    detail: str

    @property
    def as_expected(self) -> bool:
        return self.got == self.expected


@dataclass(frozen=True)
class OnboardStory:
    rows: list[StepRow]
    enrolment_ms: float | None  # the curl request that returned the LDevID, request -> certificate

    @property
    def ok(self) -> bool:
        return len(self.rows) == len(STEPS) and all(r.as_expected for r in self.rows)


STEPS = ("unknown IDevID authenticates", "EST simpleenroll (pending)", "operator: devices onboard",
         "EST simpleenroll (onboarding)", "operator: devices approve --segment production", "operator: ca revoke")


def missing_tools() -> list[str]:
    """The system programs the story needs that are not on PATH."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    retry_after: str | None
    seconds: float


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=30, check=False)


def _openssl_csr(work: Path, name: str) -> tuple[Path, Path]:
    """``openssl req``: a new EC P-256 key and a CSR for it (its subject is ignored by the CA); returns the key
    and the base64 DER body EST wants."""
    key, der = work / f"{name}.key", work / f"{name}.csr.der"
    done = _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(key), "-subj", "/CN=ignored", "-outform", "DER", "-out", str(der)])
    if done.returncode != 0:
        raise RuntimeError(f"openssl req failed: {done.stderr.decode(errors='replace').strip()}")
    key.chmod(0o600)
    b64 = work / f"{name}.csr.b64"
    b64.write_bytes(base64.encodebytes(der.read_bytes()))
    return key, b64


def _curl_enroll(work: Path, port: int, host: str, server_ca: Path, client: tuple[Path, Path], csr: Path
                 ) -> _Reply:
    """``curl`` POSTs the CSR to simpleenroll with the IDevID as TLS client certificate. ``--resolve`` sends the
    request to 127.0.0.1 under the server certificate's name, so curl verifies the server as a device would."""
    headers, body = work / "curl-headers.txt", work / "curl-body.b64"
    start = time.perf_counter()
    done = _run(["curl", "--silent", "--show-error", "--max-time", "20", "--resolve", f"{host}:{port}:127.0.0.1",
                 "--cacert", str(server_ca), "--cert", str(client[0]), "--key", str(client[1]),
                 "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{csr}",
                 "--dump-header", str(headers), "--output", str(body), "--write-out", "%{http_code}",
                 f"https://{host}:{port}{EST}/simpleenroll"])
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"curl failed (exit {done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    retry_after = None
    for line in headers.read_text(errors="replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "retry-after":
            retry_after = value.strip()
    return _Reply(int(done.stdout.decode().strip() or 0), body.read_bytes(), retry_after, seconds)


def _issued(reply: _Reply) -> x509.Certificate | None:
    if reply.status != 200:
        return None
    certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(b"".join(reply.body.split())))
    return certs[0] if certs else None


def run_onboarding(lab: Lab, network: LabNetwork, echo: Callable[[str], None] = print) -> OnboardStory:
    """The six steps against the running lab; stops at the first step that cannot go on."""
    from trustport.app import App
    from trustport.est.server import build_server, start_in_thread

    assert lab.config.ca is not None, "the lab config has no ca: section"
    with App(lab.config) as app:
        app.owner_ca.publish_crl(datetime.now(UTC))  # as 'trustport ca init' does: the CRL the RADIUS path reads
        server = build_server(app, listen="127.0.0.1", port=0)  # a free loopback port
        thread = start_in_thread(server)
        port = server.server_address[1]
        echo(f"  EST server (trustport/est) on https://127.0.0.1:{port}{EST}; the device uses curl and openssl")
        story = _Story(lab, network, app, port)
        try:
            story.run()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
    return OnboardStory(story.rows, story.latency_ms)


class _Story:
    def __init__(self, lab: Lab, network: LabNetwork, app: App, port: int) -> None:
        from trustport_lab.lab import issue_lab_idevid

        self.lab, self.network, self.app, self.port = lab, network, app, port
        self.work = lab.work / "onboarding"
        self.work.mkdir(exist_ok=True)
        self.idevid = issue_lab_idevid(lab, SERIAL)
        self.key = DeviceKey(oneline_dn(lab.cas["idevid"].cert.subject), SERIAL)
        self.device_id: int | None = None  # once RADIUS has recorded it (EST then moves it to the LDevID's issuer)
        self.rows: list[StepRow] = []
        self.latency_ms: float | None = None
        self.attested_at: datetime | None = None

    def current(self) -> DeviceRecord | None:
        if self.device_id is not None:
            return self.lab.store.get_device(self.device_id)
        return self.lab.store.find_device(self.key)

    def row(self, step: str, expected: str, got: str, ms: float, detail: str) -> bool:
        self.rows.append(StepRow(step, expected, got, ms, detail))
        return got == expected

    def authenticate(self, step: str, expected: str, note: str = "") -> bool:
        """eapol_test as the device with its current certificate; the switch port follows the answer."""
        from trustport_lab.enforce import apply_radius_vlan
        from trustport_lab.lab import vlan_outcome

        lab = self.lab
        result = lab.authenticate(SERIAL)
        apply_radius_vlan(self.network, lab.ports[SERIAL], result.vlan)
        mac = lab.macs[SERIAL].replace(":", "-").lower()
        entries = [e for e in lab.store.decisions(None, limit=20)
                   if (e.context.calling_station_id or "").lower() == mac]
        device = self.current()
        detail = [note] if note else []
        detail.append(f"registry: {device.state.value}" if device else "not registered")
        if entries:
            detail.append("; ".join(entries[0].reasons))
        return self.row(step, expected, vlan_outcome(result), result.seconds * 1000, "; ".join(detail))

    def act(self, action: str, reason: str, segment: str | None = None) -> None:
        device = self.current()
        assert device is not None, "the device left the registry"
        self.app.lifecycle.act(device, action, actor="lab-operator", reason=reason, now=datetime.now(UTC),
                               segment=segment)

    def enrol(self, csr: Path) -> _Reply:
        from trustport_lab.lab import SERVER_NAME

        return _curl_enroll(self.work, self.port, SERVER_NAME, self.lab.work / "pki" / "server-ca.pem", self.idevid,
                            csr)

    def run(self) -> None:
        from trustport_lab.lab import SEGMENTS

        if not self.authenticate(STEPS[0], f"quarantine VLAN {SEGMENTS['quarantine']}"):
            return
        device = self.current()
        if device is None or device.state.value != "pending":
            last = self.rows.pop()
            self.row(last.step, last.expected, f"{last.got}, not pending", last.ms, last.detail)
            return
        self.device_id = device.id
        ldevid_key, csr = _openssl_csr(self.work, f"{SERIAL}-ldevid")
        waiting = self.enrol(csr)
        if not self.row(STEPS[1], "HTTP 202", f"HTTP {waiting.status}", waiting.seconds * 1000,
                        f"Retry-After: {waiting.retry_after}; openssl req -newkey ec P-256, curl --cert IDevID"):
            return
        self.act("onboard", "expected delivery")
        token = attest_device(self.lab, SERIAL)  # the verifier vouches for the IDevID's key
        self.attested_at = datetime.now(UTC)
        if not self.authenticate(STEPS[2], f"accept VLAN {SEGMENTS['onboarding']}",
                                 f"attestation {attestation_verdict(token)}"):
            return
        cert = self.issue(csr, ldevid_key)
        if cert is None:
            return
        self.act("approve", "commissioned", segment="production")
        token = attest_device(self.lab, SERIAL, after=self.attested_at)  # and for the LDevID's new key
        if not self.authenticate(STEPS[4], f"accept VLAN {SEGMENTS['production']}",
                                 f"attestation {attestation_verdict(token)}"):
            return
        self.app.owner_ca.revoke(format(cert.serial_number, "x"), reason="key compromise", now=datetime.now(UTC),
                                 actor="lab-operator")
        config = self.lab.config
        time.sleep(config.revocation.refresh_seconds + 0.2)  # the hook re-reads crl_dir that often at most
        self.authenticate(STEPS[5], "reject", f"CRL {config.ca_crl_path()} republished")

    def issue(self, csr: Path, ldevid_key: Path) -> x509.Certificate | None:
        """curl again, now that the device is onboarding: the LDevID, which the device uses from now on."""
        reply = self.enrol(csr)
        cert = _issued(reply)
        got = f"HTTP {reply.status}" + (", LDevID" if cert is not None else "")
        detail = (f"PKCS#7 with {oneline_dn(cert.subject)}, serial {cert.serial_number:x}, issuer "
                  f"{oneline_dn(cert.issuer)}" if cert is not None else reply.body.decode(errors="replace")[:120])
        if not self.row(STEPS[3], "HTTP 200, LDevID", got, reply.seconds * 1000, detail) or cert is None:
            return None
        self.latency_ms = reply.seconds * 1000
        cert_path = self.work / f"{SERIAL}-ldevid.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.lab.devices[SERIAL] = (cert_path, ldevid_key)  # the same device (MAC, port), its new certificate
        return cert


def format_onboarding(story: OnboardStory) -> str:
    return table(("step", "expected", "got", "ms", "detail"),
                 [(r.step, r.expected, r.got + ("" if r.as_expected else "  <-- UNEXPECTED"), f"{r.ms:.0f}",
                   r.detail) for r in story.rows])


def attestation_verdict(body: dict[str, object]) -> str:
    """The REST API's answer to the verifier's post, in a few words."""
    reasons = body.get("reasons")
    text = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(body)
    return ("accepted: " if body.get("accepted") else "REFUSED: ") + text


def attest_device(lab: Lab, serial: str, after: datetime | None = None) -> dict[str, object]:
    """The lab's verifier posts an affirming result for the key of ``serial``'s current certificate, sending the
    certificate with it (the registry learnt the device from RADIUS and EST, not from a certificate upload).
    ``after``: the previous result's time; tokens carry whole seconds and a second one in the same second is
    refused as a rollback, so this waits for the next second."""
    if after is not None and datetime.now(UTC).replace(microsecond=0) <= after.replace(microsecond=0):
        time.sleep(1.05 - datetime.now(UTC).microsecond / 1e6)
    import httpx

    from policy.x509facts import spki_der
    from trustport_lab.attest import ApiServer, LabVerifier
    from trustport_lab.fake_verifier import mint

    verifier = LabVerifier(lab)
    cert = lab.certificate(serial)
    ear = mint(verifier.key, status="affirming", now=datetime.now(UTC), akpub=spki_der(cert))
    with ApiServer(lab) as api, httpx.Client(base_url=api.url, timeout=10) as client:
        reply = client.post("/v1/attestation-results",
                            json={"token": ear, "certificate": cert.public_bytes(serialization.Encoding.PEM).decode()},
                            headers={"Authorization": f"Bearer {verifier.api_token}"})
    body: dict[str, object] = reply.json()
    return body
