"""The decision for each lifecycle state and verdict (pure table)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policy.attestation import AttestationStanding, Tier
from policy.decide import AttestationRules, SegmentRules, decide
from policy.model import (
    CertificateVerdict,
    CertKind,
    Check,
    DeviceKey,
    DeviceRecord,
    LifecycleState,
    Outcome,
)

RULES = SegmentRules(segments={"production": 30, "cameras": 40, "quarantine": 999, "onboard": 50},
                     quarantine_segment="quarantine", default_segment="production")
VALID = CertificateVerdict(True, CertKind.LDEVID, "site", (Check("trust-anchor", True, "ok"),))
INVALID = CertificateVerdict(False, CertKind.LDEVID, "site", (Check("revocation", False, "serial 1f is revoked"),))
T = datetime(2026, 1, 1, tzinfo=UTC)


def device(state: LifecycleState, segment: str | None = None) -> DeviceRecord:
    return DeviceRecord(7, DeviceKey("/CN=CA", "SN-1"), state, segment, None, None, CertKind.LDEVID, "1f", None,
                        None, T, T)


@pytest.mark.parametrize(("verdict", "record", "rules", "outcome", "vlan", "pending"), [
    (VALID, device(LifecycleState.OPERATIONAL, "cameras"), RULES, Outcome.ACCEPT, 40, False),
    (VALID, device(LifecycleState.OPERATIONAL), RULES, Outcome.ACCEPT, 30, False),
    (VALID, device(LifecycleState.OPERATIONAL, "gone"), RULES, Outcome.QUARANTINE, 999, False),
    (VALID, device(LifecycleState.OPERATIONAL), SegmentRules({"quarantine": 999}), Outcome.QUARANTINE, 999, False),
    (VALID, None, RULES, Outcome.QUARANTINE, 999, True),
    (VALID, device(LifecycleState.PENDING), RULES, Outcome.QUARANTINE, 999, False),
    (VALID, device(LifecycleState.ONBOARDING), RULES, Outcome.QUARANTINE, 999, False),
    (VALID, device(LifecycleState.ONBOARDING),
     SegmentRules(RULES.segments, onboarding_segment="onboard"), Outcome.ACCEPT, 50, False),
    (VALID, device(LifecycleState.QUARANTINED, "cameras"), RULES, Outcome.QUARANTINE, 999, False),
    (VALID, device(LifecycleState.DECOMMISSIONED), RULES, Outcome.REJECT, None, False),
    (INVALID, device(LifecycleState.OPERATIONAL), RULES, Outcome.REJECT, None, False),
    (INVALID, None, RULES, Outcome.REJECT, None, False),
])
def test_decision_table(verdict: CertificateVerdict, record: DeviceRecord | None, rules: SegmentRules,
                        outcome: Outcome, vlan: int | None, pending: bool) -> None:
    decision = decide(verdict, record, rules)
    assert (decision.outcome, decision.vlan, decision.register_pending) == (outcome, vlan, pending)
    assert decision.reasons


def test_reject_carries_the_certificate_reason() -> None:
    assert "serial 1f is revoked" in " ".join(decide(INVALID, None, RULES).reasons)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"segments": {"q": 999}, "quarantine_segment": "quarantine"}, "not defined"),
    ({"segments": {"quarantine": 0}}, "outside 1-4094"),
    ({"segments": {"quarantine": 4095}}, "outside 1-4094"),
    ({"segments": {"quarantine": 999}, "default_segment": "nope"}, "not defined"),
])
def test_rules_refuse_inconsistent_segments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentRules(**kwargs)  # type: ignore[arg-type]


ATT_RULES = SegmentRules(
    segments={"production": 30, "restricted": 35, "quarantine": 999, "onboard": 50},
    default_segment="production",
    attestation=AttestationRules(warning_segment="restricted", missing_ldevid_segment="restricted",
                                 missing_idevid_segment="quarantine"),
)


def standing(tier: Tier | None) -> AttestationStanding:
    return AttestationStanding(tier, "test")


def idevid_device(state: LifecycleState) -> DeviceRecord:
    return DeviceRecord(8, DeviceKey("/CN=M", "SN-2"), state, None, None, None, CertKind.IDEVID, "2f", None,
                        None, T, T)


@pytest.mark.parametrize(("record", "att", "outcome", "vlan"), [
    (device(LifecycleState.OPERATIONAL), standing(Tier.AFFIRMING), Outcome.ACCEPT, 30),
    (device(LifecycleState.OPERATIONAL), standing(Tier.WARNING), Outcome.ACCEPT, 35),
    (device(LifecycleState.OPERATIONAL), standing(Tier.CONTRAINDICATED), Outcome.QUARANTINE, 999),
    (device(LifecycleState.OPERATIONAL), standing(Tier.NONE), Outcome.ACCEPT, 35),
    (device(LifecycleState.OPERATIONAL), standing(None), Outcome.ACCEPT, 35),
    (device(LifecycleState.OPERATIONAL), None, Outcome.ACCEPT, 35),
    (idevid_device(LifecycleState.OPERATIONAL), None, Outcome.QUARANTINE, 999),
    (idevid_device(LifecycleState.OPERATIONAL), standing(Tier.AFFIRMING), Outcome.ACCEPT, 30),
    # attestation never raises a placement
    (device(LifecycleState.QUARANTINED), standing(Tier.AFFIRMING), Outcome.QUARANTINE, 999),
    (device(LifecycleState.DECOMMISSIONED), standing(Tier.AFFIRMING), Outcome.REJECT, None),
    (None, standing(Tier.AFFIRMING), Outcome.QUARANTINE, 999),
])
def test_attestation_table(record: DeviceRecord | None, att: AttestationStanding | None, outcome: Outcome,
                           vlan: int | None) -> None:
    decision = decide(VALID, record, ATT_RULES, att)
    assert (decision.outcome, decision.vlan) == (outcome, vlan)


def test_attestation_reason_is_recorded() -> None:
    decision = decide(VALID, device(LifecycleState.OPERATIONAL), ATT_RULES, standing(Tier.WARNING))
    assert decision.reasons[-1] == "attestation warning: test"


def test_invalid_certificate_is_rejected_whatever_the_attestation() -> None:
    assert decide(INVALID, device(LifecycleState.OPERATIONAL), ATT_RULES, standing(Tier.AFFIRMING)).outcome \
        is Outcome.REJECT
