"""``trustport api serve`` over HTTPS in a subprocess, with a server certificate from ``trustport ca server-cert``
signed by the owner CA: httpx verifies it with the CA file; plain HTTP to the TLS port gets nothing; TLS 1.1 is
refused. Also the server certificate itself (serverAuth EKU, SAN, not a CA)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.pki_fixtures import DevicePki
from trustport.cli.main import cli

TOKEN = "tls-test-token-" + "z" * 24


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(pki: DevicePki, tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    port = free_port()
    data = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "run_as_user": None, "clients": [{"name": "sw", "address": "127.0.0.1",
                                                     "secret": "tls-test-shared-secret-0001"}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))},
                          {"name": "owner", "role": "ldevid", "file": "pki/owner.pem"}],
        "revocation": {"crl_dir": "crl"},
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "ca": {"name": "owner", "certificate": "pki/owner.pem", "key": "pki/owner.key"},
        "api": {"listen_address": "127.0.0.1", "port": port, "dashboard": False,
                "tokens": [{"name": "reader", "secret": TOKEN, "role": "viewer"}]},
    }
    (tmp_path / "crl").mkdir()
    config = tmp_path / "trustport.yaml"
    config.write_text(yaml.safe_dump(data))
    run("db", "init", "--config", str(config))
    run("ca", "init", "--org", "Example Site", "--config", str(config))
    cert, key = tmp_path / "api.pem", tmp_path / "api.key"
    out = run("ca", "server-cert", "--dns", "localhost", "--ip", "127.0.0.1", "--out-cert", str(cert),
              "--out-key", str(key), "--days", "30", "--config", str(config))
    assert "issued server certificate" in out
    assert (key.stat().st_mode & 0o777) == 0o600
    data["api"].update(tls_certificate=str(cert), tls_key=str(key))
    config.write_text(yaml.safe_dump(data))
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "trustport.cli.main", "api", "serve", "--config", str(config)],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError((tmp_path / "serve.log").read_text()) from None
                time.sleep(0.2)
        yield port, tmp_path / "pki" / "owner.pem", cert
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_https_verifies_with_the_owner_ca(served: tuple[int, Path, Path]) -> None:
    port, ca_file, _cert = served
    context = ssl.create_default_context(cafile=str(ca_file))
    for host in ("localhost", "127.0.0.1"):
        with httpx.Client(base_url=f"https://{host}:{port}", verify=context, timeout=10) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/v1/devices").status_code == 401
            page = client.get("/v1/devices", headers={"Authorization": f"Bearer {TOKEN}"})
            assert page.status_code == 200 and page.json()["total"] == 0
            assert client.get("/docs/static/swagger-ui.css").status_code == 200


def test_https_is_refused_without_the_ca(served: tuple[int, Path, Path]) -> None:
    port, _ca, _cert = served
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=10) as client:
        client.get(f"https://127.0.0.1:{port}/healthz")  # the system's CAs do not know the owner CA


def test_plain_http_to_the_tls_port_fails(served: tuple[int, Path, Path]) -> None:
    port, _ca, _cert = served
    with httpx.Client(timeout=5) as client:
        try:
            reply = client.get(f"http://127.0.0.1:{port}/healthz")
        except httpx.HTTPError:
            return
    assert reply.status_code != 200  # never served in the clear


def test_tls_older_than_1_2_is_refused(served: tuple[int, Path, Path]) -> None:
    port, ca_file, _cert = served
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)), socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost"):
        pass


def test_the_server_certificate(served: tuple[int, Path, Path]) -> None:
    _port, ca_file, cert_file = served
    certs = x509.load_pem_x509_certificates(cert_file.read_bytes())
    leaf, ca = certs[0], x509.load_pem_x509_certificate(ca_file.read_bytes())
    assert leaf.issuer == ca.subject and len(certs) >= 2
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    leaf.verify_directly_issued_by(ca)
