"""The CLI against a real SQLite registry and the test PKI: devices, decide, config check, render."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.pki_fixtures import DevicePki
from trustport.cli.main import cli

SECRET = "cli-test-shared-secret-0123"


@pytest.fixture
def config_file(pki: DevicePki, tmp_path: Path) -> Path:
    data = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "run_as_user": None, "reject_delay": 0,
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": SECRET}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))},
                          {"name": "site", "role": "ldevid", "file": str(pki.cert_path("ldevid-ca"))}],
        "revocation": {"crl_dir": str(pki.root / "crl")},
        "segments": {"production": 30, "cameras": 40, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
    }
    path = tmp_path / "trustport.yaml"
    path.write_text(yaml.safe_dump(data))
    assert CliRunner().invoke(cli, ["db", "init", "--config", str(path)]).exit_code == 0
    return path


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    return result.output


def test_device_lifecycle_through_the_cli(pki: DevicePki, config_file: Path) -> None:
    c = ("--config", str(config_file))
    out = run("devices", "add", "--cert", str(pki.cert_path("idevid-ok")), "--state", "pending", "--owner", "ops", *c)
    assert "added device #1 SN-0001 (pending)" in out
    listed = json.loads(run("devices", "list", "--json", *c))
    assert listed[0]["state"] == "pending" and listed[0]["cert_kind"] == "idevid"
    approved = run("devices", "approve", "SN-0001", "--segment", "cameras", *c)
    assert "pending -> operational (segment cameras)" in approved
    assert "operational -> quarantined" in run("devices", "quarantine", "1", "--reason", "odd traffic", *c)
    refused = CliRunner().invoke(cli, ["devices", "approve", "1", *c])
    assert refused.exit_code == 2 and "not to a quarantined one" in refused.output
    assert "quarantined -> operational" in run("devices", "release", "1", *c)
    assert "operational -> decommissioned" in run("devices", "decommission", "1", *c)
    shown = run("devices", "show", "1", *c)
    assert "decommissioned" in shown and "odd traffic" in shown
    assert re.search(r"quarantine\s+operational\s+quarantined\s+\S+\s+odd traffic", shown), shown
    assert re.search(r"decommission\s+operational\s+decommissioned", shown), shown
    assert json.loads(run("devices", "list", "--state", "pending", "--json", *c)) == []


@pytest.mark.parametrize(("args", "message"), [
    (("devices", "show", "99"), "no device with id or serial '99'"),
    (("devices", "approve", "SN-NOPE"), "no device with id or serial"),
    (("devices", "add", "--serial", "X"), "give --cert FILE"),
    (("devices", "add", "--issuer", "/CN=x", "--serial", "X", "--segment", "mars"), "segment 'mars' is not defined"),
])
def test_device_errors_are_clear(config_file: Path, args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(cli, [*args, "--config", str(config_file)])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_duplicate_add(pki: DevicePki, config_file: Path) -> None:
    c = ("--config", str(config_file))
    run("devices", "add", "--cert", str(pki.cert_path("ldevid-ok")), *c)
    result = CliRunner().invoke(cli, ["devices", "add", "--cert", str(pki.cert_path("ldevid-ok")), *c])
    assert result.exit_code == 2 and "already" in result.output.lower()


@pytest.mark.parametrize(("cert", "expected"), [
    ("idevid-ok", "decision: QUARANTINE VLAN 999"),
    ("ldevid-revoked", "decision: REJECT"),
    ("rogue", "decision: REJECT"),
    ("lookalike", "decision: REJECT"),
    ("rsa1024", "decision: REJECT"),
])
def test_decide(pki: DevicePki, config_file: Path, cert: str, expected: str) -> None:
    out = run("decide", "--cert", str(pki.cert_path(cert)), "--config", str(config_file), "--nas-ip", "10.0.0.9",
              "--nas-port", "Gi1/0/3")
    assert expected in out
    assert "NAS 10.0.0.9 port Gi1/0/3" in out


def test_decide_json_and_chain(pki: DevicePki, config_file: Path) -> None:
    data = json.loads(run("decide", "--cert", str(pki.cert_path("rogue")), "--config", str(config_file), "--json"))
    assert data["decision"]["outcome"] == "reject"
    chain = next(c for c in data["checks"] if c["name"] == "chain")
    assert chain["ok"] is False
    assert data["device"]["serial_number"] == "SN-0014"


@pytest.mark.parametrize("content", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                                     b"\x00" * 300_000])
def test_decide_bad_certificate_file(config_file: Path, tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    result = CliRunner().invoke(cli, ["decide", "--cert", str(bad), "--config", str(config_file)])
    assert result.exit_code == 2
    assert str(bad) in result.output and "Traceback" not in result.output


def test_config_check(config_file: Path, tmp_path: Path) -> None:
    assert "OK (2 trust anchor(s), 3 segment(s), 1 RADIUS client(s))" in run("config", "check", str(config_file))
    broken = tmp_path / "broken.yaml"
    broken.write_text(config_file.read_text().replace("quarantine: 999", "quarantine: 0"))
    result = CliRunner().invoke(cli, ["config", "check", str(broken), "--json"])
    assert result.exit_code == 1
    problems = json.loads(result.output)["problems"]
    assert problems[0]["location"].startswith(f"{broken}:") and "segments" in problems[0]["location"]


def test_render_writes_owner_only_secret_files(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "raddb"
    run("radius", "render", "--config", str(config_file), "--out", str(out), "--no-check")
    clients = out / "clients.conf"
    assert SECRET in clients.read_text()
    assert stat.S_IMODE(os.stat(clients).st_mode) == 0o600
    assert "@@" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file() and p.suffix != ".pem")


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["devices", "list", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output


def _write(issued: object, directory: Path, stem: str) -> Path:
    from trustport_lab.pki import Issued

    assert isinstance(issued, Issued)
    return issued.write(directory, stem)[0]


@pytest.mark.parametrize(("key_kind", "not_after_days", "failing"), [
    ("p192", 365, "key-strength"), ("dsa2048", 365, "key-strength"), ("secp256k1", 365, "key-strength"),
    ("rsa1024", 365, "key-strength"), ("p256", None, "validity"), ("p256", 3650, "validity"),
])
def test_add_refuses_what_radius_rejects_unless_forced(pki: DevicePki, config_file: Path, tmp_path: Path,
                                                        key_kind: str, not_after_days: int | None,
                                                        failing: str) -> None:
    from datetime import timedelta

    from tests.pki_fixtures import NOW
    from trustport_lab.pki import NO_EXPIRY, issue_device

    not_after = NO_EXPIRY if not_after_days is None else NOW + timedelta(days=not_after_days)
    cert = _write(issue_device(pki.cas["ldevid"], cn="weak.example", serial_number="SN-W1", now=NOW,
                               key_kind=key_kind, not_after=not_after), tmp_path, "weak")
    c = ("--config", str(config_file))
    refused = CliRunner().invoke(cli, ["devices", "add", "--cert", str(cert), *c])
    assert refused.exit_code == 2 and failing in refused.output and "--force" in refused.output, refused.output
    assert json.loads(run("devices", "list", "--json", *c)) == []
    forced = CliRunner().invoke(cli, ["devices", "add", "--cert", str(cert), "--force", *c])
    assert forced.exit_code == 0 and "warning: registering a certificate the RADIUS path rejects" in forced.output


@pytest.mark.parametrize("stem", ["rogue", "lookalike"])
def test_add_refuses_a_certificate_that_does_not_chain(pki: DevicePki, config_file: Path, stem: str) -> None:
    refused = CliRunner().invoke(cli, ["devices", "add", "--cert", str(pki.cert_path(stem)),
                                       "--config", str(config_file)])
    assert refused.exit_code == 2 and "trust-anchor" in refused.output, refused.output


@pytest.mark.parametrize(("serial", "message"), [
    ("SN-1\nSN-2", "control"), ("SN\x1b[2J", "control"), ("a/serialNumber=b", "'/'"), ("", "--serial SN"),
    (" SN-1", "white space"), ("SN-\u202e1", "invisible"),
])
def test_add_by_serial_refuses_what_no_certificate_can_carry(config_file: Path, serial: str, message: str) -> None:
    refused = CliRunner().invoke(cli, ["devices", "add", "--issuer", "/C=DE/O=Acme/CN=Acme CA", "--serial", serial,
                                       "--config", str(config_file)])
    assert refused.exit_code == 2 and message in refused.output, refused.output
    assert "\x1b" not in refused.output


def test_a_typed_utf8_serial_is_the_one_radius_sees(config_file: Path) -> None:
    c = ("--config", str(config_file))
    run("devices", "add", "--issuer", "/C=DE/O=Acme/CN=Acme \\xC3\\x9Cber CA", "--serial", "HLD-u\u0308-0205", *c)
    (device,) = json.loads(run("devices", "list", "--json", *c))
    assert (device["key"]["issuer"], device["key"]["serial_number"]) == ("/C=DE/O=Acme/CN=Acme Über CA", "HLD-ü-0205")


def test_rebind_moves_the_certificate_binding(pki: DevicePki, config_file: Path, tmp_path: Path) -> None:
    from datetime import timedelta

    from tests.pki_fixtures import NOW
    from trustport_lab.pki import issue_device

    c = ("--config", str(config_file))
    run("devices", "add", "--cert", str(pki.cert_path("ldevid-ok")), *c)
    renewed = issue_device(pki.cas["ldevid"], cn="ldev.example", serial_number="SN-0002", now=NOW,
                           not_after=NOW + timedelta(days=365))
    new = _write(renewed, tmp_path, "renewed")
    decided = json.loads(run("decide", "--cert", str(new), "--json", *c))
    assert decided["decision"]["outcome"] == "reject"
    assert any(x["name"] == "certificate-binding" and x["ok"] is False for x in decided["checks"])
    out = run("devices", "rebind", "SN-0002", "--cert", str(new), "--reason", "board swap", *c)
    assert f"bound to certificate serial {format(renewed.cert.serial_number, 'x')}" in out
    assert json.loads(run("decide", "--cert", str(new), "--json", *c))["decision"]["outcome"] == "accept"
    old = json.loads(run("decide", "--cert", str(pki.cert_path("ldevid-ok")), "--json", *c))
    assert old["decision"]["outcome"] == "reject"
    other = CliRunner().invoke(cli, ["devices", "rebind", "SN-0002", "--cert", str(pki.cert_path("idevid-ok")), *c])
    assert other.exit_code == 2 and "not device #1" in other.output
