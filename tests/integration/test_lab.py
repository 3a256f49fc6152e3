"""`trustport lab` end to end: the scenarios, the enforcement story and the onboarding story (EST with curl and
openssl req, the owner CA, eapol_test against the lab's FreeRADIUS), and the exit status the CI relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trustport.cli.main import cli

LAST_LINE = ("all 12 scenarios got the expected outcome; all 3 connected devices were moved to quarantine and "
             "re-authenticated into it")


def test_lab_runs_the_whole_story(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["lab", "--workdir", str(tmp_path / "lab")])
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").splitlines()
    assert lines[-1] == LAST_LINE  # .ci/wheel-check greps it
    assert lines[-2] == "onboarding: all 6 steps as expected (unknown IDevID -> LDevID -> production -> revoked)"
    assert "enrolment latency (curl request with the CSR -> LDevID received): " in result.output
    for step in ("unknown IDevID authenticates", "EST simpleenroll (pending)", "operator: devices onboard",
                 "EST simpleenroll (onboarding)", "operator: devices approve --segment production",
                 "operator: ca revoke"):
        assert step in result.output
    # the owner CA's CRL now lists the revoked LDevID; curl and openssl left their files in the lab directory
    assert (tmp_path / "lab" / "crl" / "owner.crl").stat().st_size > 0
    assert (tmp_path / "lab" / "onboarding" / "SN-6006-ldevid.pem").exists()


def test_lab_names_a_missing_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "curl" else real(name, *a, **k))
    result = CliRunner().invoke(cli, ["lab", "--workdir", str(tmp_path / "lab")])
    assert result.exit_code == 1, result.output
    assert "cannot run the onboarding story: curl not found on PATH" in result.output
    assert "onboarding: not run, curl not found on PATH" in result.output
    assert result.output.rstrip("\n").splitlines()[-1] == LAST_LINE
