"""Operator actions through the lifecycle service: audit, deny list, and what the hook decides afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from policy.lifecycle import TransitionRefused
from policy.model import LifecycleState, Outcome
from policy.x509facts import facts_from_certificate
from tests.attest_env import AttestEnv, make_env
from tests.pki_fixtures import DevicePki
from trustport.app import build_authorizer
from trustport.cli.main import cli
from trustport.services.lifecycle import LifecycleService
from trustport.store.lifecycle import SqlLifecycleStore

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def env(pki: DevicePki, tmp_path: Path) -> Iterator[AttestEnv]:
    environment = make_env(pki, tmp_path)
    yield environment
    environment.store.close()


def test_revoke_denies_the_certificate_and_the_hook_rejects_it(env: AttestEnv) -> None:
    device = env.register("ldevid-ok", NOW)
    service = LifecycleService(env.config, env.store)
    result = service.act(device, "revoke", actor="bob", reason="stolen", now=NOW)
    assert (result.after.state, result.denied, result.queued) == (LifecycleState.DECOMMISSIONED, True, [])
    (event,) = SqlLifecycleStore(env.store).events(device.id)
    assert (event.actor, event.action, event.from_state, event.to_state, event.reason) == (
        "bob", "revoke", "operational", "decommissioned", "stolen")
    facts = facts_from_certificate(env.pki.devices["ldevid-ok"].cert)
    reonboarded = service.act(result.after, "reonboard", actor="bob", reason="new owner", now=NOW)
    assert reonboarded.after.state is LifecycleState.ONBOARDING
    decision = build_authorizer(env.config.hook_settings()).evaluate(facts, NOW).decision
    assert decision.outcome is Outcome.REJECT  # a revoked certificate stays denied after re-onboarding
    assert any("deny list" in r and "stolen" in r for r in decision.reasons)


def test_refused_transition_names_device_and_states(env: AttestEnv) -> None:
    device = env.register("ldevid-ok", NOW, state=LifecycleState.QUARANTINED)
    with pytest.raises(TransitionRefused, match=r"device #\d+ SN-0002: 'approve' applies to"):
        LifecycleService(env.config, env.store).act(device, "approve", actor="x", reason=None, now=NOW)
    assert SqlLifecycleStore(env.store).events(device.id) == []


def test_cli_bulk_action_reports_each_device(env: AttestEnv) -> None:
    env.register("ldevid-ok", NOW)
    env.register("idevid-ok", NOW, state=LifecycleState.PENDING)
    result = CliRunner().invoke(cli, ["devices", "quarantine", "SN-0002", "SN-0001", "--reason", "sweep", "--json",
                                      "--config", str(env.config_path)])
    assert result.exit_code == 0, result.output
    changed = json.loads(result.output)["changed"]
    assert [c["from"] for c in changed] == ["operational", "pending"]
    revoke = CliRunner().invoke(cli, ["devices", "revoke", "SN-0002", "--json", "--config", str(env.config_path)])
    assert json.loads(revoke.output)["changed"][0]["denied"] is True
    again = CliRunner().invoke(cli, ["devices", "quarantine", "SN-0002", "--config", str(env.config_path)])
    assert again.exit_code == 2 and "decommissioned" in again.output


def test_deny_list_cache_rereads_after_its_ttl() -> None:
    from trustport.services.authorize import DenyList

    loads = []
    index: dict[tuple[str, str], str] = {}
    clock = [0.0]

    def load() -> dict[tuple[str, str], str]:
        loads.append(clock[0])
        return dict(index)

    deny = DenyList(load, ttl=5.0, clock=lambda: clock[0])
    assert deny.reason("/CN=CA", "1F") is None
    index[("/CN=CA", "1f")] = "stolen"
    clock[0] = 4.9
    assert deny.reason("/CN=CA", "1f") is None  # still the cached copy: one query per ttl, not per auth
    clock[0] = 5.0
    assert deny.reason("/CN=CA", "1F") == "stolen"
    assert loads == [0.0, 5.0]
