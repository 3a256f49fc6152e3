"""The lab's verifier: signs an EAR token per attested scenario and POSTs it to trustport's real REST API."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from policy.x509facts import spki_der
from trustport.api import create_app, server_config
from trustport_lab.fake_verifier import mint

if TYPE_CHECKING:
    from trustport_lab.lab import Lab


class ApiServer:
    """uvicorn in a thread on the lab's loopback port; stopped on exit."""

    def __init__(self, lab: Lab) -> None:
        assert lab.config.api is not None
        self.url = f"http://127.0.0.1:{lab.config.api.port}"
        app = create_app(lab.config)
        config = server_config(app, "127.0.0.1", lab.config.api.port, log_level="warning")  # what `api serve` runs
        config.lifespan = "off"
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the REST API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class LabVerifier:
    """The lab's stand-in verifier: signs an EAR for a device and posts it with the lab's API token."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        key = serialization.load_pem_private_key((lab.work / "verifier.key").read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.key = key
        self.api_token = (lab.work / "api-token").read_text().strip()

    def post(self, client: httpx.Client, serial: str, status: str, *, key_of: str | None = None,
             now: datetime | None = None, with_certificate: bool = False) -> httpx.Response:
        """Post a result for ``serial`` attesting the key of ``key_of`` (default: its own); ``with_certificate``
        sends the device's certificate along (the binding for a device whose key the registry does not know)."""
        akpub = spki_der(self.lab.certificate(key_of or serial))
        ear = mint(self.key, status=status, now=now or datetime.now(UTC), akpub=akpub)
        body = {"token": ear, "device": serial}
        if with_certificate:
            body["certificate"] = self.lab.devices[serial][0].read_text()
        return client.post("/v1/attestation-results", json=body, headers={"Authorization": f"Bearer {self.api_token}"})


def post_attestations(lab: Lab) -> list[str]:
    from trustport_lab.lab import SCENARIOS

    verifier = LabVerifier(lab)
    lines = []
    with ApiServer(lab) as api, httpx.Client(base_url=api.url, timeout=10) as client:
        for scenario in SCENARIOS:
            if scenario.attestation is None:
                continue
            foreign = scenario.attestation == "foreign"  # a genuine token, but for SN-1001's key
            reply = verifier.post(client, scenario.serial, "affirming" if foreign else scenario.attestation,
                                  key_of="SN-1001" if foreign else None, now=lab.now)
            body = reply.json()
            if reply.status_code != 201:
                lines.append(f"{scenario.serial}: HTTP {reply.status_code} {body}")
                continue
            verdict = "accepted" if body["accepted"] else "REFUSED"
            lines.append(f"{scenario.serial}: {verdict} — {'; '.join(body['reasons'])}")
        unauthenticated = client.post("/v1/attestation-results", json={"token": "x"})
        lines.append(f"(a POST without the API token gets HTTP {unauthenticated.status_code})")
    return lines


def post_token(lab: Lab, serial: str, status: str) -> dict[str, object]:
    """The lab's verifier posts a fresh result for ``serial`` to the REST API; returns the API's answer."""
    with ApiServer(lab) as api, httpx.Client(base_url=api.url, timeout=10) as client:
        body: dict[str, object] = LabVerifier(lab).post(client, serial, status).json()
    return body
