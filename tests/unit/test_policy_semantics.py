"""Who a rule may place: registered devices (operational, onboarding) unless its match names ``state:``; a reject
rule anyone; quarantined, decommissioned, revoked and invalid never. The defect this guards against: a rule
``{manufacturer: "MedPump*"}`` put never-registered pumps into the clinical VLAN while they showed as pending."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policy.decide import SegmentRules, decide
from policy.document import parse_rule
from policy.model import (
    CertificateFacts,
    CertificateVerdict,
    CertKind,
    Check,
    DeviceKey,
    DeviceRecord,
    LifecycleState,
    Outcome,
)
from tests.support.placement_env import NAS_IPS, PlacementEnv

T = datetime(2026, 1, 1, tzinfo=UTC)
ISSUER = "/C=US/O=MedPump Medical/CN=MedPump IDevID CA"
FACTS_VALID = CertificateVerdict(True, CertKind.IDEVID, "medpump", (Check("trust-anchor", True, "ok"),))
REVOKED = CertificateVerdict(False, CertKind.IDEVID, "medpump", (Check("revocation", False, "serial 1f revoked"),))


def rules(*raw: dict[str, object]) -> SegmentRules:
    return SegmentRules({"medical": 120, "onboarding": 90, "quarantine": 999, "production": 30},
                        default_segment="production", onboarding_segment="onboarding",
                        rules=tuple(parse_rule(r) for r in raw))


PUMPS = {"name": "pumps", "match": {"manufacturer": "MedPump*"}, "segment": "medical"}
PUMPS_UNKNOWN = {"name": "new-pumps", "match": {"manufacturer": "MedPump*", "state": "unknown"},
                 "segment": "onboarding"}
PUMPS_PENDING = {"name": "pending-pumps", "match": {"manufacturer": "MedPump*", "state": ["unknown", "pending"]},
                 "segment": "onboarding"}
NO_PUMPS = {"name": "no-pumps", "match": {"manufacturer": "MedPump*"}, "reject": True}


def device(state: LifecycleState | None) -> DeviceRecord | None:
    if state is None:
        return None
    return DeviceRecord(7, DeviceKey(ISSUER, "SN-1"), state, None, None, None, CertKind.IDEVID, "1f", None, None,
                        T, T)


def facts() -> CertificateFacts:
    return CertificateFacts("pem", "/O=MedPump Medical/CN=pump/serialNumber=SN-1", ISSUER, "1f", "SN-1")


U, P, OP, ON, Q, D = (None, LifecycleState.PENDING, LifecycleState.OPERATIONAL, LifecycleState.ONBOARDING,
                     LifecycleState.QUARANTINED, LifecycleState.DECOMMISSIONED)


@pytest.mark.parametrize(("policy", "state", "verdict", "outcome", "vlan", "rule"), [
    # a rule without state: places registered devices only
    ((PUMPS,), U, FACTS_VALID, Outcome.QUARANTINE, 999, None),
    ((PUMPS,), P, FACTS_VALID, Outcome.QUARANTINE, 999, None),
    ((PUMPS,), OP, FACTS_VALID, Outcome.ACCEPT, 120, "pumps"),
    ((PUMPS,), ON, FACTS_VALID, Outcome.ACCEPT, 120, "pumps"),
    # state: names exactly whom it places
    ((PUMPS_UNKNOWN,), U, FACTS_VALID, Outcome.ACCEPT, 90, "new-pumps"),
    ((PUMPS_UNKNOWN,), P, FACTS_VALID, Outcome.QUARANTINE, 999, None),
    ((PUMPS_UNKNOWN,), OP, FACTS_VALID, Outcome.ACCEPT, 30, None),
    ((PUMPS_PENDING,), P, FACTS_VALID, Outcome.ACCEPT, 90, "pending-pumps"),
    # the unknown-only rule is skipped for a pending device, the next one (without state) too
    ((PUMPS_UNKNOWN, PUMPS), P, FACTS_VALID, Outcome.QUARANTINE, 999, None),
    # a reject rule applies to anyone: rejecting is never an escalation
    ((NO_PUMPS,), U, FACTS_VALID, Outcome.REJECT, None, "no-pumps"),
    ((NO_PUMPS,), P, FACTS_VALID, Outcome.REJECT, None, "no-pumps"),
    ((NO_PUMPS,), OP, FACTS_VALID, Outcome.REJECT, None, "no-pumps"),
    # non-overridable: quarantined, decommissioned, revoked/invalid
    ((PUMPS, PUMPS_PENDING), Q, FACTS_VALID, Outcome.QUARANTINE, 999, None),
    ((PUMPS,), D, FACTS_VALID, Outcome.REJECT, None, None),
    ((PUMPS, PUMPS_UNKNOWN), U, REVOKED, Outcome.REJECT, None, None),
    ((PUMPS,), OP, REVOKED, Outcome.REJECT, None, None),
])
def test_who_a_rule_may_place(policy: tuple[dict[str, object], ...], state: LifecycleState | None,
                              verdict: CertificateVerdict, outcome: Outcome, vlan: int | None,
                              rule: str | None) -> None:
    decision = decide(verdict, device(state), rules(*policy), facts=facts())
    assert (decision.outcome, decision.vlan, decision.rule) == (outcome, vlan, rule)
    if state is None and outcome is not Outcome.REJECT:
        assert decision.register_pending


DEFECT_POLICY = {
    "segments": {"medical": {"vlan": 120, "filter_id": "CLINICAL-IOT"}, "production": 30, "quarantine": 999},
    "policy": {"quarantine_segment": "quarantine", "default_segment": "production",
               "rules": [{"name": "pumps", "match": {"manufacturer": "MedPump*"}, "segment": "medical"}]},
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[PlacementEnv]:
    environment = PlacementEnv(tmp_path, datetime.now(UTC).replace(microsecond=0), DEFECT_POLICY)
    yield environment
    environment.close()


def test_a_rule_without_state_never_places_an_unknown_device(env: PlacementEnv) -> None:
    """The reported case, end to end: decide and the hook both quarantine the unknown pump, and again once it is
    pending; once approved, the rule places it."""
    env.device("pump", "medpump-idevid")
    nas = NAS_IPS[0]
    assert env.via_decide("pump", nas).vlan == 999
    first = env.via_hook("pump", nas)
    assert (first.outcome, first.vlan, first.rule) == ("quarantine", 999, None)
    record = env.record("pump")
    assert record is not None and record.state is LifecycleState.PENDING
    assert env.via_decide("pump", nas).vlan == 999
    assert env.via_hook("pump", nas).vlan == 999
    env.store.update_device(record.id, state=LifecycleState.OPERATIONAL)
    for seen in (env.via_decide("pump", nas), env.via_hook("pump", nas), env.via_planner("pump", nas)):
        assert (seen.vlan, seen.rule, seen.filter_id) == (120, "pumps", "CLINICAL-IOT")
