"""The hook, the enforcement planner and ``trustport decide`` place a device identically: same outcome, VLAN,
segment, Filter-Id and rule, for every rule of docs/policy.md's example (the policy is parsed out of the doc).

Each case: the device (registered or not) is asked about with ``decide --json`` (writes nothing), then
authenticates through ``Hook.check_eap_tls`` (which records its certificate and session), then the planner
computes where that session belongs. Registered devices first authenticate once on campus, so the planner has
their last verified certificate even when the case's own answer is a reject.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from policy.model import LifecycleState
from tests.support.placement_env import MUD_URL, NAS_IPS, PlacementEnv, Seen, doc_policy

CAMPUS, CLINIC = NAS_IPS


@dataclass(frozen=True)
class Case:
    name: str
    ca: str
    state: LifecycleState | None  # None: not in the registry
    nas_ip: str
    expected: Seen
    cn: str | None = None
    mud_url: str | None = None
    fields: tuple[tuple[str, Any], ...] = ()


CASES = [
    Case("legacy-pump-at-clinic", "medpump-ldevid", LifecycleState.OPERATIONAL, CLINIC,
         Seen("reject", None, None, None, "no-legacy-pumps-at-clinic"), cn="legacy-pump-7"),
    Case("legacy-pump-on-campus", "medpump-ldevid", LifecycleState.OPERATIONAL, CAMPUS,
         Seen("accept", 120, "clinical", "CLINICAL-IOT", "clinical-devices"), cn="legacy-pump-8"),
    Case("monitor-at-clinic", "vitalsigns-ldevid", LifecycleState.OPERATIONAL, CLINIC,
         Seen("accept", 220, "clinical", "CLINICAL-IOT", "clinical-devices")),
    Case("new-camera", "axis-idevid", None, CAMPUS,
         Seen("accept", 90, "onboarding", "ONBOARDING-EST-ONLY", "onboard-known-manufacturers")),
    Case("new-pump", "medpump-idevid", None, CLINIC,
         Seen("accept", 90, "onboarding", "ONBOARDING-EST-ONLY", "onboard-known-manufacturers")),
    Case("camera-at-clinic", "axis-ldevid", LifecycleState.OPERATIONAL, CLINIC,
         Seen("accept", 240, "cameras", "CAMERAS-TO-NVR", "cameras")),
    Case("lightbulb", "acme-idevid", LifecycleState.OPERATIONAL, CAMPUS,
         Seen("accept", 35, "restricted", "INTERNET-ONLY", "cloud-only-by-mud"), mud_url=MUD_URL),
    Case("printer", "printco-idevid", LifecycleState.OPERATIONAL, CAMPUS,
         Seen("accept", 50, "printers", None, "printers-by-mud"), mud_url="https://mud.printco.example/p1.json"),
    Case("hvac", "campus-ldevid", LifecycleState.OPERATIONAL, CAMPUS,
         Seen("accept", 60, "building", "BMS-CONTROLLERS", "building-management"),
         fields=(("device_class", "hvac"), ("owner", "facilities"))),
    Case("plain-operational", "campus-ldevid", LifecycleState.OPERATIONAL, CAMPUS,
         Seen("accept", 30, "production", None, None)),
    Case("unknown-printer", "printco-idevid", None, CAMPUS,  # printers-by-mud has no state: not for unknowns
         Seen("quarantine", 999, "quarantine", "QUARANTINE", None), mud_url="https://mud.printco.example/p2.json"),
    Case("quarantined-camera", "axis-ldevid", LifecycleState.QUARANTINED, CAMPUS,
         Seen("quarantine", 999, "quarantine", "QUARANTINE", None)),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlacementEnv]:
    environment = PlacementEnv(tmp_path_factory.mktemp("placement"), datetime.now(UTC).replace(microsecond=0),
                               doc_policy())
    for case in CASES:
        environment.device(case.name, case.ca, cn=case.cn, mud_url=case.mud_url)
        if case.state is not None:
            environment.register(case.name, case.state, **dict(case.fields))
    yield environment
    environment.close()


def test_every_rule_of_the_documented_example_is_covered() -> None:
    rules = {r["name"] for r in doc_policy()["policy"]["rules"]}
    assert rules <= {c.expected.rule for c in CASES}
    assert any("subject.CN" in r["match"] for r in doc_policy()["policy"]["rules"])
    assert any("mud_class" in r["match"] for r in doc_policy()["policy"]["rules"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hook_planner_and_decide_agree(env: PlacementEnv, case: Case, tmp_path: Path) -> None:
    if case.state not in (None, LifecycleState.QUARANTINED):
        env.via_hook(case.name, CAMPUS)  # connected once: its certificate is on record for the planner
    decided = env.via_decide(case.name, case.nas_ip)
    hooked = env.via_hook(case.name, case.nas_ip)
    planned = env.via_planner(case.name, case.nas_ip)
    assert {"decide": decided, "hook": hooked, "planner": planned} == {
        "decide": case.expected, "hook": case.expected, "planner": case.expected}


def test_the_planner_uses_the_persisted_certificate(env: PlacementEnv) -> None:
    """Without the last verified certificate the planner could not see subject.CN: prove it read it."""
    device = env.record("legacy-pump-on-campus")
    assert device is not None
    last = env.store.last_certificate(device.id)
    assert last is not None and "CN=legacy-pump-8" in last.subject and last.not_after is not None


def test_decide_and_the_hook_name_the_same_policy_revision(env: PlacementEnv) -> None:
    import json

    from click.testing import CliRunner

    from trustport.cli.main import cli

    result = CliRunner().invoke(cli, ["decide", "--cert", str(env.work / "pki" / "hvac.pem"), "--json",
                                      "--config", str(env.config_path)])
    assert result.exit_code == 0, result.output
    assert env.hook.authorizer is not None
    assert json.loads(result.output)["policy_revision"] == env.hook.authorizer.policy_revision
    assert env.store.decisions(limit=1)[0].policy_revision == env.hook.authorizer.policy_revision
