"""``trustport mud fetch`` and ``show`` against an HTTPS server on 127.0.0.1, and the ``mud:`` config model."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from pydantic import ValidationError

from policy.errors import ConfigError
from policy.mud_signature import local_file_names, local_signature_name
from tests.pki_fixtures import DevicePki
from tests.support.https_site import Site, serve_https
from tests.unit.test_mud import lightbulb, sign
from trustport.cli.mud import mud
from trustport.settings.mud import MudConfig
from trustport_lab.pki import Issued, issue_device, make_ca

NOW = datetime.now(UTC)  # the CLI reads the real clock
MUD_PATH = "/lighting/lightbulb2000.json"


@pytest.fixture(scope="module")
def signing() -> dict[str, Issued]:
    ca = make_ca("Example Lighting MUD CA", "Example Lighting", now=NOW)
    other_ca = make_ca("Mallory MUD CA", "Mallory", now=NOW)
    return {"ca": ca,
            "signer": issue_device(ca, cn="mud-signer.lighting.example.com", serial_number=None, now=NOW, eku=None),
            "untrusted": issue_device(other_ca, cn="mud-signer.lighting.example.com", serial_number=None, now=NOW,
                                      eku=None)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Site, Path]]:
    """An HTTPS MUD server on 127.0.0.1; yields its base URL, its routes and the PEM file of its CA."""
    root = tmp_path_factory.mktemp("https")
    with serve_https(root) as (base, site, web_ca):
        ca_file = root / "web-ca.pem"
        ca_file.write_bytes(web_ca.cert_pem())
        yield base, site, ca_file


@pytest.fixture
def url(server: tuple[str, Site, Path], monkeypatch: pytest.MonkeyPatch) -> str:
    """The MUD URL; the CLI trusts the test web CA through SSL_CERT_FILE, as it would a private CA bundle."""
    base, _, ca_file = server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return base + MUD_PATH


def publish(server: tuple[str, Site, Path], url: str, signer: Issued, *, tamper: bool = False) -> bytes:
    doc = lightbulb()
    doc["ietf-mud:mud"]["mud-url"] = url
    body = json.dumps(doc).encode()
    signature = sign(body, signer)
    _, site, _ = server
    site.routes[MUD_PATH] = (200, {"Content-Type": "application/mud+json"},
                             body.replace(b"test.example.com", b"evil.example.com") if tamper else body, 0.0)
    site.routes[MUD_PATH.replace(".json", ".p7s")] = (200, {"Content-Type": "application/pkcs7-signature"},
                                                      signature, 0.0)
    return body


def write_config(tmp_path: Path, pki: DevicePki, signing: dict[str, Issued], mud_section: dict[str, Any] | None,
                 ) -> Path:
    """The smallest valid trustport config, with a ``mud:`` section whose paths are relative to the file."""
    (tmp_path / "mud-signers.pem").write_bytes(signing["ca"].cert_pem())
    data: dict[str, Any] = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "run_as_user": None, "reject_delay": 0,
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": "cli-mud-test-secret"}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))}],
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
    }
    if mud_section is not None:
        data["mud"] = mud_section
    path = tmp_path / "trustport.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


MUD_SECTION = {"directory": "mud", "signers": ["mud-signers.pem"], "fetch": True, "fetch_timeout_seconds": 5}


@pytest.fixture
def config_file(tmp_path: Path, pki: DevicePki, signing: dict[str, Issued]) -> Path:
    return write_config(tmp_path, pki, signing, MUD_SECTION)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(mud, list(args))


def test_fetch_then_show(server: tuple[str, Site, Path], url: str, config_file: Path,
                         signing: dict[str, Issued]) -> None:
    body = publish(server, url, signing["signer"])
    fetched = invoke("fetch", url, "--config", str(config_file))
    assert fetched.exit_code == 0, fetched.output
    name = local_file_names(url)[0]
    mud_file = config_file.parent / "mud" / name
    signature_file = config_file.parent / "mud" / local_signature_name(name)
    assert mud_file.read_bytes() == body and signature_file.read_bytes().startswith(b"\x30")
    for path in (mud_file, signature_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in mud_file.parent.iterdir()) == sorted([name, signature_file.name])  # no temp files
    assert f"file:           {mud_file}" in fetched.output
    assert "signed by:      CN=mud-signer.lighting.example.com" in fetched.output
    assert "classification: internet-only" in fetched.output

    shown = invoke("show", url, "--config", str(config_file))
    assert shown.exit_code == 0, shown.output
    assert "classification:   internet-only" in shown.output
    assert "filter-id:        mud-76100-v6fr" in shown.output
    assert "from-device ACLs: mud-76100-v6fr" in shown.output
    assert "signer:           CN=mud-signer.lighting.example.com" in shown.output
    data = json.loads(invoke("show", url, "--config", str(config_file), "--json").output)
    assert data["ok"] is True and data["status"] == "ok"
    assert data["file"] == str(mud_file)
    assert data["filter_id"] == "mud-76100-v6fr" and data["to_device_acls"] == ["mud-76100-v6to"]
    assert data["peers"] == ["internet"] and data["dns_names"] == ["test.example.com"]
    assert datetime.fromisoformat(data["expires_at"]) > datetime.now(UTC)


def test_refetch_replaces_the_files(server: tuple[str, Site, Path], url: str, config_file: Path,
                                    signing: dict[str, Issued]) -> None:
    publish(server, url, signing["signer"])
    assert invoke("fetch", url, "--config", str(config_file)).exit_code == 0
    assert invoke("fetch", url, "--config", str(config_file)).exit_code == 0
    assert len(list((config_file.parent / "mud").iterdir())) == 2


@pytest.mark.parametrize(("signer", "tamper", "message"), [
    ("signer", True, "does not match its signature (message digest differs)"),
    ("untrusted", False, "does not chain to a trusted MUD signer"),
])
def test_fetch_refuses_what_does_not_verify(server: tuple[str, Site, Path], url: str, config_file: Path,
                                            signing: dict[str, Issued], signer: str, tamper: bool,
                                            message: str) -> None:
    publish(server, url, signing[signer], tamper=tamper)
    result = invoke("fetch", url, "--config", str(config_file))
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (config_file.parent / "mud").exists()  # nothing written


def test_fetch_http_error(server: tuple[str, Site, Path], url: str, config_file: Path) -> None:
    result = invoke("fetch", url.replace("lightbulb2000", "nowhere"), "--config", str(config_file))
    assert result.exit_code == 2 and "HTTP 404" in result.output


def test_fetch_is_off_unless_configured(tmp_path: Path, pki: DevicePki, signing: dict[str, Issued]) -> None:
    config_file = write_config(tmp_path, pki, signing, {**MUD_SECTION, "fetch": False})
    result = invoke("fetch", "https://127.0.0.1:9/x.json", "--config", str(config_file))
    assert result.exit_code == 2
    assert "mud.fetch is false, so trustport does not download MUD files" in result.output


def test_show_reports_the_specific_problem(config_file: Path) -> None:
    url = "https://lighting.example.com/lightbulb2000.json"
    result = invoke("show", url, "--config", str(config_file))
    assert result.exit_code == 1
    assert "status:           missing" in result.output
    assert f"problem:          {url}: MUD directory" in result.output
    data = json.loads(invoke("show", url, "--config", str(config_file), "--json").output)
    assert data["ok"] is False and data["status"] == "missing" and data["classification"] is None


def test_show_tampered_local_file(config_file: Path, signing: dict[str, Issued]) -> None:
    url = "https://lighting.example.com/lightbulb2000.json"
    directory = config_file.parent / "mud"
    directory.mkdir()
    body = json.dumps(lightbulb()).encode()
    (directory / "lightbulb2000.p7s").write_bytes(sign(body, signing["signer"]))
    (directory / "lightbulb2000.json").write_bytes(body.replace(b"test.example.com", b"evil.example.com"))
    result = invoke("show", url, "--config", str(config_file), "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["status"] == "bad-signature" and "does not match its signature" in data["detail"]
    assert data["file"] == str(directory / "lightbulb2000.json")


def test_missing_mud_section_and_bad_signer_file(tmp_path: Path, pki: DevicePki, signing: dict[str, Issued]) -> None:
    no_section = write_config(tmp_path, pki, signing, None)
    result = invoke("show", "https://x.example/y.json", "--config", str(no_section))
    assert result.exit_code == 2 and "no 'mud:' section" in result.output
    bad_signers = write_config(tmp_path, pki, signing, {**MUD_SECTION, "signers": ["absent.pem"]})
    result = invoke("show", "https://x.example/y.json", "--config", str(bad_signers))
    assert result.exit_code == 2
    assert f"MUD signer file {tmp_path}/absent.pem: cannot read" in result.output


# --- the config model -------------------------------------------------------------------------------------------

def test_mud_config_defaults_and_paths(tmp_path: Path, signing: dict[str, Issued]) -> None:
    config = MudConfig.model_validate({"directory": "mud", "signers": ["signers.pem"]})
    assert (config.require_signature, config.refresh_seconds, config.fetch, config.fetch_timeout_seconds) == (
        True, 60, False, 10)
    assert config.directory_path(tmp_path) == tmp_path / "mud"
    assert MudConfig(directory=Path("/srv/mud"), signers=[], require_signature=False).directory_path(tmp_path) \
        == Path("/srv/mud")
    (tmp_path / "signers.pem").write_bytes(signing["ca"].cert_pem())
    assert config.load_signers(tmp_path) == (signing["ca"].cert,)
    lookup = config.lookup(tmp_path)
    assert lookup.directory == tmp_path / "mud" and lookup.signers == (signing["ca"].cert,)


@pytest.mark.parametrize(("data", "message"), [
    ({"directory": "mud", "signers": ["s.pem"], "colour": "red"}, "Extra inputs are not permitted"),
    ({"directory": "mud", "signers": []}, "require_signature is true but no signers are listed"),
    ({"directory": "mud", "signers": ["s.pem"], "refresh_seconds": -1}, "greater than or equal to 0"),
    ({"directory": "mud", "signers": ["s.pem"], "fetch_timeout_seconds": 0}, "greater than 0"),
    ({"signers": ["s.pem"]}, "directory"),
])
def test_mud_config_refusals(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MudConfig.model_validate(data)


def test_mud_config_is_frozen_and_names_a_bad_signer_file(tmp_path: Path) -> None:
    config = MudConfig(directory=Path("mud"), signers=[Path("signers.pem")])
    with pytest.raises(ValidationError):
        config.fetch = True
    (tmp_path / "signers.pem").write_text("not pem")
    with pytest.raises(ConfigError, match=f"MUD signer file {tmp_path}/signers.pem: not a PEM certificate"):
        config.load_signers(tmp_path)
