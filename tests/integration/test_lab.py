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
    assert_metrics_match_the_decision_log(tmp_path / "lab" / "trustport.yaml")
    config = yaml.safe_load((tmp_path / "lab" / "trustport.yaml").read_text())
    assert config["directory"]["url"].startswith("ldaps://")
    assert config["directory"]["bind_password"] == {"file": "ldap-password"}
    assert (tmp_path / "lab" / "ldap-password").stat().st_mode & 0o077 == 0


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def assert_metrics_match_the_decision_log(config_file: Path) -> None:
    """The scrape after the lab: the hook counted every authentication the decision log holds, by outcome, and the
    enforcement and CRL metrics are there."""
    from trustport.app import App
    from trustport.observability.metrics import exposition
    from trustport.settings.config import load_config

    with App(load_config(config_file)) as app:
        body, content_type = exposition(app)
    assert content_type.startswith("text/plain")
    samples = _samples(body.decode())
    hook: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "trustport_authentications_total":
            outcome = dict(labels)["outcome"]
            hook[outcome] = hook.get(outcome, 0) + value
    logged = {dict(labels)["outcome"]: value for (name, labels), value in samples.items()
              if name == "trustport_decision_log_entries_total"}
    assert hook and hook == logged, (hook, logged)
    assert {"accept", "quarantine", "reject"} <= set(hook)
    assert samples[("trustport_registry_up", ())] == 1
    assert samples[("trustport_enforcement_jobs", (("state", "done"),))] >= 3  # the stories' port moves
    assert any(name == "trustport_crl_age_seconds" for name, _ in samples)
    assert any(name == "trustport_coa_results_total" and dict(labels).get("result") == "nak" and value >= 1
               for (name, labels), value in samples.items())  # the fake NAS NAKs: the switch fallback ran


def test_lab_dashboard_stays_up_until_stopped(tmp_path: Path) -> None:
    """``trustport lab --dashboard``: after the stories the dashboard answers on its loopback URL with the lab's
    authentications, /metrics answers the lab's token, and the lab goes down when the hold ends."""
    import re
    import threading

    import httpx

    from trustport_lab.console import PASSWORD_FILE, USER, hold
    from trustport_lab.lab import run_lab

    seen: dict[str, object] = {}

    def probe(stop: threading.Event) -> None:
        lab_dir = tmp_path / "lab"
        config = yaml.safe_load((lab_dir / "trustport.yaml").read_text())
        base = f"http://127.0.0.1:{config['api']['port']}"
        password = (lab_dir / f"{PASSWORD_FILE}-{USER}").read_text()
        with httpx.Client(base_url=base, timeout=10) as client:
            form = client.get("/ui/login")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert token, form.text
            client.post("/ui/login", data={"name": USER, "password": password, "csrf": token.group(1)})
            seen["live"] = client.get("/ui/live").text
            api_token = (lab_dir / "api-token").read_text().strip()
            seen["metrics"] = client.get("/metrics", headers={"Authorization": f"Bearer {api_token}"})
        stop.set()

    lines: list[str] = []
    run = run_lab(tmp_path / "lab", echo=lines.append, hold=hold(lines.append, wait=probe))
    assert run.rows and all(r.as_expected for r in run.rows)
    assert any(line.startswith("dashboard: http://127.0.0.1:") and "/ui/" in line for line in lines), lines[-5:]
    assert "SN-1001" in str(seen["live"])  # the scenarios' authentications, live
    metrics = seen["metrics"]
    assert isinstance(metrics, httpx.Response) and metrics.status_code == 200, metrics
    assert "trustport_authentications_total" in metrics.text


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
