"""The enforcement planner plans only steps the drivers behind a NAS can run (their capabilities, from the driver
registry through the composition root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.enforcement import NasBinding, PlanningError, SessionView, plan_for
from policy.model import Decision, Outcome
from tests.pki_fixtures import DevicePki

SESSION = SessionView(id=1, device_id=7, nas_ip="10.0.0.1", nas_identifier=None, nas_port="5",
                      calling_station_id="02-00-00-00-00-01", acct_session_id="s1", vlan=30)
QUARANTINE = Decision(Outcome.QUARANTINE, 999, "quarantine", ("quarantined",))
REJECT = Decision(Outcome.REJECT, None, None, ("decommissioned",))
SWITCH = frozenset({"get_vlan", "set_vlan", "bounce_port"})
COA = frozenset({"reauthenticate", "disconnect"})


def binding(**kw: object) -> NasBinding:
    base: dict[str, object] = {"nas_ip": "10.0.0.1", "coa": "nas", "switch": "sw", "ports": {"5": "Gi1/0/5"}}
    return NasBinding(**{**base, **kw})  # type: ignore[arg-type]


def kinds(steps: tuple[object, ...]) -> list[str]:
    return [s.kind.value for s in steps]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kw", "decision", "steps", "fallback"), [
    # everything known and capable: CoA first, the switch as fallback
    ({"coa_can": COA, "switch_can": SWITCH}, QUARANTINE, ["coa-reauth"], ["set-vlan", "bounce"]),
    # unknown capabilities plan as configured (the driver then says Unsupported)
    ({}, REJECT, ["coa-disconnect"], ["set-vlan", "bounce"]),
    # a NAS that cannot disconnect: a rejected re-authentication ends the session too
    ({"coa_can": frozenset({"reauthenticate"}), "switch_can": SWITCH}, REJECT, ["coa-reauth"], ["set-vlan", "bounce"]),
    # a NAS that can do neither: switch only
    ({"coa_can": frozenset(), "switch_can": SWITCH}, QUARANTINE, ["set-vlan", "bounce"], []),
    # a switch that cannot bounce: set the VLAN, no bounce step that would fail as Unsupported
    ({"coa_can": COA, "switch_can": frozenset({"set_vlan"})}, QUARANTINE, ["coa-reauth"], ["set-vlan"]),
])
def test_steps_follow_capabilities(kw: dict[str, object], decision: Decision, steps: list[str],
                                   fallback: list[str]) -> None:
    plan = plan_for(SESSION, decision, [binding(**kw)], park_vlan=999)
    assert kinds(plan.steps) == steps and kinds(plan.fallback) == fallback


def test_a_switch_that_cannot_set_vlans_is_a_planning_error_naming_it() -> None:
    with pytest.raises(PlanningError, match="switch sw's driver cannot set a port's VLAN"):
        plan_for(SESSION, QUARANTINE, [binding(coa=None, switch_can=frozenset({"bounce_port"}))])


def test_nothing_capable_is_a_planning_error() -> None:
    with pytest.raises(PlanningError, match="names neither"):
        plan_for(SESSION, QUARANTINE, [binding(switch=None, coa_can=frozenset())])


def test_the_composition_root_gives_the_planner_each_drivers_capabilities(pki: DevicePki, tmp_path: Path) -> None:
    from tests.enforce_env import EnforceEnv
    from trustport.app import App

    env = EnforceEnv(tmp_path, pki, switch_port=1, coa_port=2)
    env.write(coa=True)
    app = App(env.config)
    try:
        assert "set_vlan" in app.capabilities["access-1"] and "disconnect" in app.capabilities["nas-coa"]
        assert "set_vlan" not in app.capabilities["nas-coa"]
        (bound,) = app.enforcement.bindings
        assert bound.switch_can == app.capabilities["access-1"] and bound.coa_can == app.capabilities["nas-coa"]
    finally:
        app.close()
        env.store.close()
