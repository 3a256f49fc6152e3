"""Attestation at authentication time: expiry re-checked, signature cached by token hash, bound certificate."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from policy.attestation import Tier
from policy.model import CertificateFacts, Outcome
from policy.x509facts import facts_from_certificate
from tests.attest_env import AttestEnv
from trustport.app import build_authorizer
from trustport.cli.main import cli
from trustport.services.attestation import AttestationService
from trustport.services.authorize import Authorizer
from trustport.services.trust import TrustMaterial
from trustport_lab.fake_verifier import mint

NOW = datetime.now(UTC).replace(microsecond=0)


def device_facts(env: AttestEnv, name: str) -> CertificateFacts:
    """The facts as the RADIUS path reads them: the issuing CA comes with the certificate."""
    issuer = env.pki.cas["ldevid" if name.startswith("ldevid") else "idevid"].cert
    return facts_from_certificate(env.pki.devices[name].cert, issuer)


def services(env: AttestEnv) -> tuple[Authorizer, AttestationService]:
    settings = env.config.hook_settings()
    authorizer = build_authorizer(settings)
    trust = TrustMaterial.load(settings.anchors, settings.crl_dir, 30, time.monotonic)
    return authorizer, AttestationService(settings.attestation, env.store, trust)


def test_standing_at_auth_time(env: AttestEnv) -> None:
    env.register("ldevid-ok", NOW)
    authorizer, service = services(env)
    facts = device_facts(env, "ldevid-ok")
    assert authorizer.evaluate(facts, NOW).decision.vlan == 35  # no result yet: restricted (LDevID default)
    service.import_token(mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("ldevid-ok"),
                              lifetime=timedelta(minutes=10)), NOW)
    first = authorizer.evaluate(facts, NOW)
    assert first.decision.vlan == 30 and first.attestation is not None and first.attestation.tier is Tier.AFFIRMING
    gate = authorizer.attestation
    assert gate is not None
    authorizer.evaluate(facts, NOW + timedelta(minutes=1))
    assert gate.cache_hits == 1  # the signature was verified once, then served from the cache
    expired = authorizer.evaluate(facts, NOW + timedelta(minutes=11))  # exp re-checked with the auth's clock
    assert expired.decision.vlan == 35
    assert "expired" in expired.decision.reasons[-1]


def test_result_bound_to_another_certificate_of_the_device(env: AttestEnv) -> None:
    device = env.register("ldevid-ok", NOW)
    authorizer, service = services(env)
    service.import_token(mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("ldevid-ok")), NOW)
    facts = device_facts(env, "ldevid-ok")
    renewed = facts.__class__(**{**facts.__dict__, "cert_serial": "abc123"})  # same device, other certificate
    gate = authorizer.attestation
    assert gate is not None
    assert gate.standing(device, facts, NOW).tier is Tier.AFFIRMING
    standing = gate.standing(device, renewed, NOW)  # the gate alone: the registry may refuse the renewal earlier
    assert standing.tier is None and "bound to certificate serial" in standing.detail


def test_removed_verifier_key_invalidates_stored_results(env: AttestEnv, tmp_path: Path) -> None:
    env.register("ldevid-ok", NOW)
    _authorizer, service = services(env)
    service.import_token(mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("ldevid-ok")), NOW)
    from trustport_lab.fake_verifier import new_signing_key, write_public_jwk

    write_public_jwk(new_signing_key(), tmp_path / "verifier.jwk")  # key rotated: old results no longer verify
    fresh, _ = services(env)
    result = fresh.evaluate(device_facts(env, "ldevid-ok"), NOW)
    assert result.decision.vlan == 35 and "signature" in result.decision.reasons[-1]


def test_cli_import_show_nonce_and_decide(env: AttestEnv, tmp_path: Path) -> None:
    env.register("ldevid-ok", NOW)
    c = ("--config", str(env.config_path))
    runner = CliRunner()
    token_file = tmp_path / "ear.jwt"
    token_file.write_text(mint(env.verifier, status="warning", now=NOW, akpub=env.akpub("ldevid-ok")))
    out = runner.invoke(cli, ["attest", "import", str(token_file), *c])
    assert out.exit_code == 0 and "accepted — warning, bound by akpub" in out.output, out.output
    assert "warning" in runner.invoke(cli, ["attest", "show", "SN-0002", *c]).output
    nonce = runner.invoke(cli, ["attest", "nonce", "SN-0002", *c]).output.strip()
    assert len(nonce) >= 30
    decided = runner.invoke(cli, ["decide", "--cert", str(env.pki.cert_path("ldevid-ok")), *c])
    assert "decision: ACCEPT VLAN 35 (restricted)" in decided.output, decided.output
    affirming = tmp_path / "affirming.jwt"
    affirming.write_text(mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("ldevid-ok")))
    what_if = runner.invoke(cli, ["decide", "--cert", str(env.pki.cert_path("ldevid-ok")), "--attestation",
                                  str(affirming), *c])
    assert "decision: ACCEPT VLAN 30 (production)" in what_if.output, what_if.output
    foreign = tmp_path / "foreign.jwt"
    foreign.write_text(mint(env.verifier, status="affirming", now=NOW, akpub=env.akpub("idevid-ok")))
    refused = runner.invoke(cli, ["decide", "--cert", str(env.pki.cert_path("ldevid-ok")), "--attestation",
                                  str(foreign), *c])
    assert "another device" in refused.output and "VLAN 35" in refused.output


@pytest.mark.parametrize("content", ["", "garbage", "a.b.c", "x" * 300_000])
def test_cli_import_garbage(env: AttestEnv, tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.jwt"
    bad.write_text(content)
    result = CliRunner().invoke(cli, ["attest", "import", str(bad), "--config", str(env.config_path)])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and ("refused" in result.output or "larger than" in result.output)


def test_decision_reasons_are_logged_by_the_hook_path(env: AttestEnv) -> None:
    env.register("ldevid-ok", NOW)
    authorizer, service = services(env)
    service.import_token(mint(env.verifier, status="contraindicated", now=NOW, akpub=env.akpub("ldevid-ok")), NOW)
    from policy.model import NetworkContext

    result = authorizer.authorize(device_facts(env, "ldevid-ok"), NetworkContext(), NOW)
    assert result.decision.outcome is Outcome.QUARANTINE
    entry = env.store.decisions(result.device.id if result.device else None, limit=1)[0]
    assert "attestation contraindicated" in entry.reasons[-1]
