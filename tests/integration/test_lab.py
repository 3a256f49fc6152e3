"""`trustport lab` end to end: the scenarios, the enforcement story, the onboarding story (EST with curl and
openssl req, the owner CA, eapol_test against the lab's FreeRADIUS) and the directory story (a real slapd over LDAPS),
and the exit status the CI relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from trustport.cli.main import cli

DIRECTORY_LINE = "directory: all 5 steps as expected (directory-approved -> disabled -> outage -> removed)"
LAST_LINE = ("all 12 scenarios got the expected outcome; all 3 connected devices were moved to quarantine and "
             "re-authenticated into it")


def test_lab_runs_the_whole_story(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["lab", "--workdir", str(tmp_path / "lab")])
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").splitlines()
    assert lines[-1] == LAST_LINE  # .ci/wheel-check greps it
    assert lines[-3] == "onboarding: all 6 steps as expected (unknown IDevID -> LDevID -> production -> revoked)"
    assert lines[-2] == DIRECTORY_LINE
    assert "enrolment latency (curl request with the CSR -> LDevID received): " in result.output
    for step in ("unknown IDevID authenticates", "EST simpleenroll (pending)", "operator: devices onboard",
                 "EST simpleenroll (onboarding)", "operator: devices approve --segment production",
                 "operator: ca revoke"):
        assert step in result.output
    # the owner CA's CRL now lists the revoked LDevID; curl and openssl left their files in the lab directory
    assert (tmp_path / "lab" / "crl" / "owner.crl").stat().st_size > 0
    assert (tmp_path / "lab" / "onboarding" / "SN-6006-ldevid.pem").exists()
    # the directory story: its rows, the outage as the CLI shows it, the measured sync time
    for step in ("directory-approved, first authentication", "verifier attests, re-authentication",
                 "entry disabled -> directory sync", "directory down -> directory sync",
                 "entry removed -> directory sync"):
        assert step in result.output
    assert "quarantined by directory, Gi1/0/14 VLAN 999, quarantine VLAN 999" in result.output
    assert "sync exit 2, status DOWN (exit 1), registry unchanged, quarantine VLAN 999" in result.output
    assert "no connection or no answer" in result.output and "stays in force" in result.output
    assert "decommissioned by directory, reject" in result.output
    assert "directory sync time (100 entries over LDAPS, read + reconcile + write): median " in result.output
    config = yaml.safe_load((tmp_path / "lab" / "trustport.yaml").read_text())
    assert config["directory"]["url"].startswith("ldaps://")
    assert config["directory"]["bind_password"] == {"file": "ldap-password"}
    assert (tmp_path / "lab" / "ldap-password").stat().st_mode & 0o077 == 0


def test_lab_names_a_missing_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "curl" else real(name, *a, **k))
    result = CliRunner().invoke(cli, ["lab", "--workdir", str(tmp_path / "lab")])
    assert result.exit_code == 1, result.output
    assert "cannot run the onboarding story: curl not found on PATH" in result.output
    assert "onboarding: not run, curl not found on PATH" in result.output
    assert result.output.rstrip("\n").splitlines()[-1] == LAST_LINE


def test_lab_names_a_missing_slapd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "slapd" else real(name, *a, **k))
    result = CliRunner().invoke(cli, ["lab", "--workdir", str(tmp_path / "lab")])
    assert result.exit_code == 1, result.output
    assert ("cannot run the directory story: slapd not found (apt-get install slapd ldap-utils)"
            in result.output)
    lines = result.output.rstrip("\n").splitlines()
    assert lines[-3] == "onboarding: all 6 steps as expected (unknown IDevID -> LDevID -> production -> revoked)"
    assert lines[-2] == "directory: not run, slapd not found (apt-get install slapd ldap-utils)"
    assert lines[-1] == LAST_LINE
    assert "directory" not in yaml.safe_load((tmp_path / "lab" / "trustport.yaml").read_text())
