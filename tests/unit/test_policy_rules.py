"""Policy rules as tables: matching, precedence over lifecycle defaults, sites, Filter-Id, and bad policy files."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from policy.attestation import AttestationStanding, Tier
from policy.decide import decide
from policy.document import build_segment_rules, policy_problems
from policy.model import (
    CertificateFacts,
    CertificateVerdict,
    CertKind,
    Check,
    DeviceKey,
    DeviceRecord,
    LifecycleState,
    NetworkContext,
    Outcome,
)
from policy.rules import RuleError, resolve_site
from trustport.cli.main import cli

T = datetime(2026, 1, 1, tzinfo=UTC)
ISSUER = "/C=DE/O=Axis Communications/CN=Axis IDevID CA"

DOC = {
    "segments": {
        "production": 30,
        "cameras": {"vlan": 40, "filter_id": "CAMERA-ACL", "sites": {"branch": 140}},
        "printers": 50,
        "restricted": 35,
        "quarantine": 999,
        "onboarding": 60,
    },
    "sites": {"hq": ["10.1.0.0/16"], "branch": ["10.2.0.0/16", "branch-wlc"]},
    "policy": {
        "default_segment": "production",
        "onboarding_segment": "onboarding",
        "rules": [
            {"name": "no-legacy-at-branch", "match": {"site": "branch", "subject.CN": "legacy-*"}, "reject": True},
            {"name": "axis-cameras", "match": {"manufacturer": "Axis*", "cert_kind": "ldevid"}, "segment": "cameras"},
            {"name": "unknown-axis-onboard", "match": {"manufacturer": "Axis*", "state": "unknown"},
             "segment": "onboarding"},
            {"name": "printers-by-mud", "match": {"mud_url": "https://mud.printco.example/*"}, "segment": "printers"},
            {"name": "lab-owner", "match": {"owner": ["lab", "research"], "device_class": "sensor"},
             "segment": "restricted", "filter_id": "LAB-ONLY"},
            {"name": "warning-cams", "match": {"attestation": "warning", "manufacturer": "Axis*"},
             "segment": "cameras"},
        ],
    },
}
RULES = build_segment_rules({**DOC, "attestation": {"warning_segment": "restricted",
                                                    "missing_ldevid_segment": "restricted",
                                                    "missing_idevid_segment": "quarantine"}})


def facts(cn: str = "cam-1", issuer: str = ISSUER, mud: str | None = None) -> CertificateFacts:
    return CertificateFacts(source="pem", subject=f"/C=DE/O=Axis/CN={cn}/serialNumber=SN-9", issuer=issuer,
                            cert_serial="1f", device_serial="SN-9", mud_url=mud)


def verdict(kind: CertKind) -> CertificateVerdict:
    return CertificateVerdict(True, kind, "a", (Check("trust-anchor", True, "ok"),))


def device(state: LifecycleState, kind: CertKind = CertKind.LDEVID, owner: str | None = None,
           device_class: str | None = None, segment: str | None = None) -> DeviceRecord:
    return DeviceRecord(3, DeviceKey(ISSUER, "SN-9"), state, segment, owner, None, kind, "1f", None, None, T, T,
                        device_class=device_class)


AFFIRMING = AttestationStanding(Tier.AFFIRMING, "ok")
WARNING = AttestationStanding(Tier.WARNING, "meh")
HQ = NetworkContext(nas_ip="10.1.2.3")
BRANCH = NetworkContext(nas_ip="10.2.9.9")
WLC = NetworkContext(nas_ip="192.0.2.1", nas_identifier="branch-wlc")
OTHER_ISSUER = "/C=DE/O=Acme/CN=Acme CA"

CASES = [
    # (id, facts, verdict kind, device, attestation, context, outcome, vlan, rule, filter)
    ("axis ldevid at hq -> cameras", facts(), CertKind.LDEVID, device(LifecycleState.OPERATIONAL), AFFIRMING, HQ,
     Outcome.ACCEPT, 40, "axis-cameras", "CAMERA-ACL"),
    ("axis ldevid at branch -> site VLAN", facts(), CertKind.LDEVID, device(LifecycleState.OPERATIONAL), AFFIRMING,
     BRANCH, Outcome.ACCEPT, 140, "axis-cameras", "CAMERA-ACL"),
    ("site by NAS-Identifier", facts(), CertKind.LDEVID, device(LifecycleState.OPERATIONAL), AFFIRMING, WLC,
     Outcome.ACCEPT, 140, "axis-cameras", "CAMERA-ACL"),
    ("legacy at branch rejected", facts("legacy-7"), CertKind.LDEVID, device(LifecycleState.OPERATIONAL), AFFIRMING,
     BRANCH, Outcome.REJECT, None, "no-legacy-at-branch", None),
    ("legacy at hq is fine", facts("legacy-7"), CertKind.LDEVID, device(LifecycleState.OPERATIONAL), AFFIRMING, HQ,
     Outcome.ACCEPT, 40, "axis-cameras", "CAMERA-ACL"),
    ("unknown axis idevid -> onboarding", facts(), CertKind.IDEVID, None, None, HQ, Outcome.ACCEPT, 60,
     "unknown-axis-onboard", None),
    ("unknown other -> quarantine default", facts(issuer=OTHER_ISSUER), CertKind.IDEVID, None, None, HQ,
     Outcome.QUARANTINE, 999, None, None),
    ("quarantined beats rules", facts(), CertKind.LDEVID, device(LifecycleState.QUARANTINED), AFFIRMING, HQ,
     Outcome.QUARANTINE, 999, None, None),
    ("decommissioned beats rules", facts(), CertKind.LDEVID, device(LifecycleState.DECOMMISSIONED), AFFIRMING, HQ,
     Outcome.REJECT, None, None, None),
    ("mud url rule", facts(issuer=OTHER_ISSUER, mud="https://mud.printco.example/p1.json"), CertKind.LDEVID,
     device(LifecycleState.OPERATIONAL), AFFIRMING, HQ, Outcome.ACCEPT, 50, "printers-by-mud", None),
    ("owner + class rule with filter", facts(issuer=OTHER_ISSUER), CertKind.LDEVID,
     device(LifecycleState.OPERATIONAL, owner="Research", device_class="sensor"), AFFIRMING, HQ,
     Outcome.ACCEPT, 35, "lab-owner", "LAB-ONLY"),
    ("no rule: device's own segment", facts(issuer=OTHER_ISSUER), CertKind.LDEVID,
     device(LifecycleState.OPERATIONAL, segment="printers"), AFFIRMING, HQ, Outcome.ACCEPT, 50, None, None),
    ("attestation lowers a rule placement", facts(issuer=OTHER_ISSUER, mud="https://mud.printco.example/x"),
     CertKind.LDEVID, device(LifecycleState.OPERATIONAL), WARNING, HQ, Outcome.ACCEPT, 35, "printers-by-mud", None),
    ("rule on attestation is not lowered again", facts(), CertKind.IDEVID,
     device(LifecycleState.OPERATIONAL, kind=CertKind.IDEVID), WARNING, HQ, Outcome.ACCEPT, 40, "warning-cams",
     "CAMERA-ACL"),
]


@pytest.mark.parametrize(("case", "f", "kind", "record", "att", "ctx", "outcome", "vlan", "rule", "filter_id"),
                         CASES, ids=[c[0] for c in CASES])
def test_policy_table(case: str, f: CertificateFacts, kind: CertKind, record: DeviceRecord | None,
                      att: AttestationStanding | None, ctx: NetworkContext, outcome: Outcome, vlan: int | None,
                      rule: str | None, filter_id: str | None) -> None:
    decision = decide(verdict(kind), record, RULES, att, facts=f, context=ctx)
    assert (decision.outcome, decision.vlan, decision.rule, decision.filter_id) == (outcome, vlan, rule, filter_id)


def test_unknown_device_placed_by_rule_is_still_recorded_pending() -> None:
    decision = decide(verdict(CertKind.IDEVID), None, RULES, None, facts=facts(), context=HQ)
    assert decision.register_pending and "rule 'unknown-axis-onboard' matched" in decision.reasons[-1]


@pytest.mark.parametrize(("members", "ip", "ident", "site"), [
    ({"a": ("10.0.0.0/8",)}, "10.9.9.9", None, "a"), ({"a": ("10.0.0.1",)}, "10.0.0.1", None, "a"),
    ({"a": ("wlc-1",)}, None, "wlc-1", "a"), ({"a": ("10.0.0.0/8",)}, "11.0.0.1", None, None),
    ({"a": ("10.0.0.0/8",)}, "garbage", None, None), ({}, "10.0.0.1", None, None),
])
def test_resolve_site(members: dict[str, tuple[str, ...]], ip: str | None, ident: str | None,
                      site: str | None) -> None:
    assert resolve_site(members, ip, ident) == site


BAD = [
    ({"segments": {"q": 0}}, "VLAN 0", ("segments", "q")),
    ({"segments": {"q": {"vlan": 10, "color": "red"}}}, "unknown key", ("segments", "q")),
    ({"segments": {"quarantine": 9}, "policy": {"rules": [{"name": "x", "match": {"colour": "red"},
                                                           "segment": "quarantine"}]}}, "unknown match field",
     ("policy", "rules", 0)),
    ({"segments": {"quarantine": 9}, "policy": {"rules": [{"name": "x", "match": {"site": "a"}}]}},
     "exactly one of", ("policy", "rules", 0)),
    ({"segments": {"quarantine": 9}, "policy": {"rules": [{"name": "x", "match": {}, "segment": "quarantine"}]}},
     "non-empty", ("policy", "rules", 0)),
    ({"segments": {"quarantine": 9}, "policy": {"rules": [{"name": "x", "match": {"site": "a"},
                                                           "segment": "mars"}]}},
     "'mars' is not defined", ("policy", "rules", 0, "segment")),
    ({"segments": {"quarantine": 9}, "policy": {"rules": [
        {"name": "x", "match": {"site": "a"}, "reject": True}, {"name": "x", "match": {"site": "b"}, "reject": True}]}},
     "must be unique", ("policy", "rules", 1, "name")),
    ({"segments": {"quarantine": 9}, "policy": {"rules": [{"name": "x", "match": {"nas_ip": "10.0.0.0/99"},
                                                           "reject": True}]}}, "not a network", ("policy", "rules", 0)),
    ({"segments": {"quarantine": {"vlan": 9, "sites": {"nowhere": 10}}}}, "site 'nowhere' is not defined",
     ("segments", "quarantine", "sites", "nowhere")),
    ({"segments": {"quarantine": 9}, "sites": {"a": "10.0.0.0/8"}}, "a non-empty list of NAS", ("sites", "a")),
    ({"segments": {"quarantine": 9}, "policy": {"colour": 1}}, "unknown key", ("policy", "colour")),
]


@pytest.mark.parametrize(("doc", "message", "path"), BAD)
def test_bad_policies_are_refused_with_their_place(doc: dict[str, object], message: str,
                                                   path: tuple[object, ...]) -> None:
    with pytest.raises(RuleError):
        build_segment_rules(doc)
    document, problems = policy_problems(doc)
    assert document is None
    assert any(re.search(message, str(p)) and p.path[: len(path)] == path for p in problems), problems


def test_policy_check_command(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text(yaml.safe_dump(DOC))
    out = CliRunner().invoke(cli, ["policy", "check", str(good)])
    assert out.exit_code == 0 and "OK: 6 segment(s), 2 site(s), 6 rule(s)" in out.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments:\n  quarantine: 9\npolicy:\n  rules:\n    - name: a\n      match: {colour: red}\n"
                   "      segment: quarantine\n")
    result = CliRunner().invoke(cli, ["policy", "check", str(bad)])
    assert result.exit_code == 1 and f"{bad}:6: policy.rules.0.match.colour" in result.output


def test_policy_file_referenced_from_config(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(DOC))
    config = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "clients": [{"name": "sw", "address": "10.0.0.0/8", "secret": "x" * 20}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))}],
        "policy_file": "policy.yaml",
    }
    (tmp_path / "trustport.yaml").write_text(yaml.safe_dump(config))
    out = CliRunner().invoke(cli, ["policy", "check", "--config", str(tmp_path / "trustport.yaml")])
    assert out.exit_code == 0 and "6 rule(s)" in out.output, out.output
    config["segments"] = {"x": 1}
    (tmp_path / "trustport.yaml").write_text(yaml.safe_dump(config))
    clash = CliRunner().invoke(cli, ["config", "check", str(tmp_path / "trustport.yaml")])
    assert clash.exit_code == 1 and "must be in" in clash.output


def test_every_match_field_is_one_the_decision_fills() -> None:
    """A match field the decision never fills would make every rule using it a silent no-op."""
    from policy.decide import device_view
    from policy.document import Match

    view = device_view(facts(), verdict(CertKind.IDEVID), None, None, None, None)
    assert set(view.values) == set(Match.model_fields) - {"subject"}
    assert view.subject["CN"] == "cam-1"


@pytest.mark.parametrize(("field", "values"), [
    ("state", ["unknown", "pending", "onboarding", "operational"]),
    ("cert_kind", [k.value for k in CertKind]),
    ("attestation", ["affirming", "warning", "contraindicated", "none", "missing"]),
])
def test_enum_fields_take_every_value_and_nothing_else(field: str, values: list[str]) -> None:
    from policy.document import RuleSpec

    for value in [*values, values[0][:2] + "*"]:  # each value, and a glob matching one
        assert RuleSpec.model_validate({"name": "r", "match": {field: value}, "reject": True}).compile().uses(field)
    for wrong in ["", "quarantined", "decommissioned", values[0] + "x", "*x"]:
        with pytest.raises(ValueError):
            RuleSpec.model_validate({"name": "r", "match": {field: wrong}, "reject": True})
