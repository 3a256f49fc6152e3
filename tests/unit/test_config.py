"""Config loading: every problem reported with its location; secrets never printed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from policy.errors import ConfigError
from tests.pki_fixtures import DevicePki
from trustport.settings.config import check_config, load_config

SECRET = "s3cr3t-shared-secret-value"


def good_config(pki: DevicePki) -> dict[str, object]:
    return {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "clients": [{"name": "sw", "address": "10.0.0.0/8", "secret": SECRET}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))}],
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
    }


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "trustport.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_good_config_loads(pki: DevicePki, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, good_config(pki)))
    assert config.radius.clients[0].secret.get_secret_value() == SECRET
    settings = config.hook_settings()
    assert settings.rules.segments["quarantine"] == 999
    assert settings.database_url == f"sqlite:///{tmp_path / 'trustport.sqlite'}"


def test_secret_never_prints(pki: DevicePki, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, good_config(pki)))
    for text in (repr(config), str(config), config.model_dump_json(), repr(config.radius.clients[0])):
        assert SECRET not in text
    assert isinstance(config.radius.clients[0].secret, SecretStr)
    assert str(config.radius.clients[0].secret) == "**********"


def test_every_problem_has_a_location(pki: DevicePki, tmp_path: Path) -> None:
    data = good_config(pki)
    data["segments"] = {"production": 5000, "quarantine": 999}
    data["radius"]["clients"][0]["secret"] = "short"  # type: ignore[index]
    data["radius"]["clients"][0]["address"] = "not-an-ip"  # type: ignore[index]
    data["trust_anchors"][0]["role"] = "vendor"  # type: ignore[index]
    data["bogus"] = 1
    config, problems = check_config(write(tmp_path, data))
    assert config is None
    text = "\n".join(str(p) for p in problems)
    for where in ("segments", "radius.clients.0.secret", "radius.clients.0.address", "trust_anchors.0.role", "bogus"):
        assert where in text, text
    assert all(":" in p.location and "trustport.yaml:" in p.location for p in problems)
    assert "short" not in text  # the bad secret itself is not echoed


@pytest.mark.parametrize(("content", "message"), [
    ("radius: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("", "top level must be a mapping"),
])
def test_unparseable_files(tmp_path: Path, content: str, message: str) -> None:
    _, problems = check_config(write(tmp_path, content))
    assert message in problems[0].message


def test_yaml_error_has_line_and_column(tmp_path: Path) -> None:
    _, problems = check_config(write(tmp_path, "site: lab\nradius:\n  clients: [\n"))
    assert problems[0].location.startswith(str(tmp_path / "trustport.yaml") + ":")


def test_missing_files_and_bad_anchor(pki: DevicePki, tmp_path: Path) -> None:
    data = good_config(pki)
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    data["trust_anchors"] = [{"name": "a", "role": "idevid", "file": str(bad)},
                             {"name": "b", "role": "ldevid", "file": "missing.pem"}]
    data["radius"]["server_key"] = "nokey.pem"  # type: ignore[index]
    _, problems = check_config(write(tmp_path, data))
    text = "\n".join(str(p) for p in problems)
    assert "trust_anchors.0.file" in text and "not a PEM certificate" in text
    assert "trust_anchors.1.file" in text and "cannot read" in text
    assert "radius.server_key" in text


def test_secret_from_env_and_file(pki: DevicePki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = good_config(pki)
    (tmp_path / "secret").write_text(SECRET + "\n")
    monkeypatch.setenv("TP_SECRET", SECRET + "-env")
    data["radius"]["clients"] = [  # type: ignore[index]
        {"name": "a", "address": "10.0.0.1", "secret": {"file": "secret"}},
        {"name": "b", "address": "10.0.0.2", "secret": {"env": "TP_SECRET"}},
    ]
    config = load_config(write(tmp_path, data))
    assert [c.secret.get_secret_value() for c in config.radius.clients] == [SECRET, SECRET + "-env"]
    data["radius"]["clients"][1]["secret"] = {"env": "TP_UNSET_VARIABLE"}  # type: ignore[index]
    _, problems = check_config(write(tmp_path, data))
    assert "TP_UNSET_VARIABLE is not set" in problems[0].message


def test_undefined_policy_segment(pki: DevicePki, tmp_path: Path) -> None:
    data = good_config(pki)
    data["policy"] = {"quarantine_segment": "jail"}
    _, problems = check_config(write(tmp_path, data))
    assert "jail" in problems[0].message


def test_database_password_is_hidden(pki: DevicePki, tmp_path: Path) -> None:
    data = good_config(pki)
    data["database"] = {"url": "postgresql://tp@db.example/tp", "password": "pg-secret-123"}
    config = load_config(write(tmp_path, data))
    assert "pg-secret-123" in config.database_url()
    assert "pg-secret-123" not in repr(config)


@pytest.mark.parametrize(("enforcement", "where", "message"), [
    ({"inventory": "missing.yaml", "nas": [{"nas_ip": "10.0.0.1", "switch": "sw"}]}, "enforcement.inventory",
     "cannot read inventory"),
    ({"inventory": "inv.yaml", "nas": [{"nas_ip": "10.0.0.1", "switch": "nope"}]}, "enforcement.nas.0.switch",
     "not in the inventory"),
    ({"inventory": "inv.yaml", "nas": [{"nas_ip": "10.0.0.1"}]}, "enforcement.nas.0", "coa and/or switch"),
    ({"inventory": "inv.yaml", "nas": [{"switch": "sw"}]}, "enforcement.nas.0", "nas_ip or nas_identifier"),
    ({"inventory": "inv.yaml", "nas": [{"nas_ip": "not-an-ip", "switch": "sw"}]}, "enforcement.nas.0", "IPv4"),
    ({"inventory": "inv.yaml", "nas": [{"nas_ip": "10.0.0.1", "switch": "sw", "coa_mode": "yell"}]},
     "enforcement.nas.0.coa_mode", "reauth"),
    ({"inventory": "inv.yaml", "nas": []}, "enforcement.nas", "at least 1"),
    # each entry's driver is consulted for what the planner will ask of it
    ({"inventory": "inv.yaml", "nas": [{"nas_ip": "10.0.0.1", "coa": "sw", "coa_mode": "disconnect"}]},
     "enforcement.nas.0.coa", "'sw' (driver cisco_ios) cannot disconnect"),
    ({"inventory": "inv.yaml", "nas": [{"nas_ip": "10.0.0.1", "switch": "nas"}]},
     "enforcement.nas.0.switch", "'nas' (driver coa) cannot set_vlan"),
])
def test_enforcement_section_problems(pki: DevicePki, tmp_path: Path, enforcement: dict[str, object], where: str,
                                      message: str) -> None:
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump({"switches": {
        "sw": {"driver": "cisco_ios", "address": "10.0.0.2", "options": {"username": "u", "password_env": "X"}},
        "nas": {"driver": "coa", "address": "10.0.0.3", "options": {"secret_env": "Y"}}}}))
    data = good_config(pki)
    data["enforcement"] = enforcement
    _, problems = check_config(write(tmp_path, data))
    assert any(where in p.location and message in p.message for p in problems), problems


def test_anchor_files_must_hold_a_root_and_only_cas_it_issued(pki: DevicePki, tmp_path: Path) -> None:
    from tests.pki_fixtures import NOW
    from trustport_lab.pki import make_ca

    sub = make_ca("Acme Issuing CA", "Acme Devices", now=NOW, issuer=pki.cas["idevid"], path_length=0)
    deeper = make_ca("Acme Deeper CA", "Acme Devices", now=NOW, issuer=sub, path_length=None)
    root_pem, sub_pem = pki.cas["idevid"].cert_pem(), sub.cert_pem()
    files = {
        "leaf.pem": (pki.cert_path("idevid-ok").read_bytes(), "is not a CA certificate"),
        "sub-only.pem": (sub_pem, "no self-signed root CA"),
        "too-deep.pem": (root_pem + sub_pem + deeper.cert_pem(), "at most one intermediate"),
        "good.pem": (root_pem + sub_pem, None),
    }
    for index, (name, (content, message)) in enumerate(files.items()):
        (tmp_path / name).write_bytes(content)
        data = good_config(pki)
        data["trust_anchors"] = [{"name": "acme", "role": "idevid", "file": str(tmp_path / name)}]
        _, problems = check_config(write(tmp_path, data))
        text = "\n".join(str(p) for p in problems)
        if message is None:
            assert "trust_anchors" not in text, (index, text)
        else:
            assert "trust_anchors.0.file" in text and message in text, (index, text)


def test_ldevid_lifetime_is_configurable_per_anchor(pki: DevicePki, tmp_path: Path) -> None:
    data = good_config(pki)
    data["trust_anchors"] = [{"name": "site", "role": "ldevid", "file": str(pki.cert_path("ldevid-ca")),
                              "max_certificate_days": 0}]
    _, problems = check_config(write(tmp_path, data))
    assert any("max_certificate_days" in str(p) for p in problems)


VERIFIER = {"verifier_keys": [{"name": "v", "file": "v.pem"}]}


def _attestation_config(pki: DevicePki, tmp_path: Path, extra: dict[str, object]) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "v.pem").write_bytes(key.public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    data = good_config(pki)
    data["segments"] = {"production": 30, "restricted": 35, "quarantine": 999}
    data["attestation"] = {**VERIFIER, **extra}
    return write(tmp_path, data)


@pytest.mark.parametrize(("extra", "placed"), [
    ({}, None),  # verifier keys only (what the REST API needs): attestation never changes placement
    ({"max_age_seconds": 60}, None),
    ({"placement": {"warning_segment": "restricted", "missing_ldevid_segment": "restricted"}},
     ("restricted", "restricted", "quarantine")),
    ({"warning_segment": "restricted", "missing_ldevid_segment": "production",  # the older spelling: explicit too
      "missing_idevid_segment": "restricted"}, ("restricted", "production", "restricted")),
])
def test_attestation_changes_placement_only_when_configured(pki: DevicePki, tmp_path: Path,
                                                           extra: dict[str, object],
                                                           placed: tuple[str, str, str] | None) -> None:
    config = load_config(_attestation_config(pki, tmp_path, extra))
    rules = config.attestation_rules()
    got = None if rules is None else (rules.warning_segment, rules.missing_ldevid_segment,
                                      rules.missing_idevid_segment)
    assert got == placed
    settings = config.hook_settings()
    assert settings.attestation is not None  # the verifier keys are there either way
    assert (settings.rules.attestation is None) == (placed is None)


@pytest.mark.parametrize(("extra", "message"), [
    ({"missing_idevid_segment": "quarantine"}, "also needs warning_segment, missing_ldevid_segment"),
    ({"warning_segment": "restricted", "placement": {"warning_segment": "restricted",
                                                     "missing_ldevid_segment": "restricted"}}, "not both"),
    ({"placement": {"warning_segment": "restricted"}}, "Field required"),
])
def test_attestation_placement_mistakes(pki: DevicePki, tmp_path: Path, extra: dict[str, object],
                                        message: str) -> None:
    _, problems = check_config(_attestation_config(pki, tmp_path, extra))
    assert any(message in p.message and "attestation" in p.location for p in problems), problems


def test_hook_settings_round_trip_through_pydantic(pki: DevicePki, tmp_path: Path) -> None:
    import json

    from trustport.settings.hook import HookSettings

    data = good_config(pki)
    data["database"] = {"url": "postgresql://tp@db.example/tp", "password": "pg-secret-123"}
    data["sites"] = {"hq": ["10.0.0.0/8"]}
    data["segments"] = {"production": {"vlan": 30, "filter_id": "PROD", "sites": {"hq": 130}}, "quarantine": 999}
    data["policy"] = {"default_segment": "production", "rules": [
        {"name": "hq-axis", "match": {"site": "hq", "manufacturer": "Axis*"}, "segment": "production"}]}
    config = load_config(write(tmp_path, data))
    settings = config.hook_settings()
    assert "pg-secret-123" not in repr(settings) and "pg-secret-123" not in str(settings)
    assert "pg-secret-123" in settings.database_url
    text = json.dumps(settings.to_json())
    loaded = HookSettings.from_json(json.loads(text), "hook.json")
    assert loaded.database_url == settings.database_url
    assert loaded.rules == settings.rules
    assert loaded.policy_revision == settings.policy_revision == config.policy_revision()
    assert len(settings.policy_revision) == 12
    edited = json.loads(text)
    edited["policy_revision"] = "0" * 12
    with pytest.raises(ConfigError, match="does not match the policy document"):
        HookSettings.from_json(edited, "hook.json")
    # hook.json is the same typed policy model: a hand edit gets the checks 'config check' runs
    typo = json.loads(text)
    typo["policy_revision"] = ""
    typo["policy"]["policy"]["rules"] = [{"name": "r", "match": {"state": "operationl"}, "segment": "production"}]
    with pytest.raises(ConfigError, match="'operationl' is not a known value"):
        HookSettings.from_json(typo, "hook.json")
    dangling = json.loads(text)
    dangling["policy_revision"] = ""
    dangling["policy"]["policy"]["default_segment"] = "mars"
    with pytest.raises(ConfigError, match="segment 'mars' is not defined"):
        HookSettings.from_json(dangling, "hook.json")
    old = {**json.loads(text), "version": 2}
    with pytest.raises(ConfigError, match="re-run 'trustport radius render'"):
        HookSettings.from_json(old, "hook.json")


def test_policy_revision_follows_the_effective_policy(pki: DevicePki, tmp_path: Path) -> None:
    data = good_config(pki)
    first = load_config(write(tmp_path, data)).policy_revision()
    data["segments"] = {"production": {"vlan": 30}, "quarantine": 999}  # the same policy, spelled differently
    assert load_config(write(tmp_path, data)).policy_revision() == first
    data["segments"] = {"production": 31, "quarantine": 999}
    assert load_config(write(tmp_path, data)).policy_revision() != first
    data["segments"] = {"production": 30, "quarantine": 999}
    data["database"] = {"url": "sqlite:///other.sqlite"}  # not part of the policy
    assert load_config(write(tmp_path, data)).policy_revision() == first


def test_policy_check_explain_and_unregistered(pki: DevicePki, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trustport.cli.main import cli

    data = good_config(pki)
    data["sites"] = {"branch": ["10.2.0.0/16"]}
    data["segments"] = {"production": 30, "onboarding": {"vlan": 90, "filter_id": "EST-ONLY", "sites": {"branch": 190}},
                        "quarantine": 999}
    data["policy"] = {"default_segment": "production", "rules": [
        {"name": "onboard-axis", "match": {"manufacturer": "Axis*", "state": ["unknown", "pending"]},
         "segment": "onboarding"},
        {"name": "ldevid-only", "match": {"cert_kind": "ldevid", "state": "operational"}, "segment": "production"},
        {"name": "branch-reject", "match": {"site": "branch"}, "reject": True}]}
    path = write(tmp_path, data)
    out = CliRunner().invoke(cli, ["policy", "check", "--explain", "--config", str(path)])
    assert out.exit_code == 0, out.output
    assert re.search(r"1\s+onboard-axis .*segment onboarding\s+90; branch=190\s+EST-ONLY\s+yes", out.output), out.output
    assert "rules that admit unregistered devices (state: unknown/pending): onboard-axis\n" in out.output
    assert "attestation placement: not configured" in out.output
    result = CliRunner().invoke(cli, ["policy", "check", "--json", "--explain", "--config", str(path)])
    body = json.loads(result.output)
    assert body["admit_unregistered"] == ["onboard-axis"] and body["table"][0]["site_vlans"] == {"branch": 190}
    assert body["policy_revision"] == load_config(path).policy_revision()


def test_enrollment_section_is_part_of_the_config(pki: DevicePki, tmp_path: Path) -> None:
    data = good_config(pki)
    data["enrollment"] = {"port": 9443, "auto_approve": [{"name": "axis", "match": {"manufacturer": "Axis*"}}]}
    config = load_config(write(tmp_path, data))
    assert config.enrollment is not None and config.enrollment.port == 9443
    data["enrollment"] = {"auto_approve": [{"name": "axis", "match": {"state": "operationl"}}]}
    _, problems = check_config(write(tmp_path, data))
    assert any("enrollment.auto_approve.0.match.state" in p.location and "'operationl' is not a known value"
               in p.message for p in problems), problems
