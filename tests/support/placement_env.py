"""One registry, one config, one PKI for comparing the three placement paths: the hook (``Hook.check_eap_tls``),
the enforcement planner (``Enforcement.target``) and ``trustport decide --json``. The policy is given by the test
(the example of docs/policy.md, parsed out of the document)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from policy.enforcement import SessionView
from policy.model import DeviceKey, DeviceRecord, LifecycleState
from policy.x509facts import facts_from_certificate
from radius_hooks.hook import Hook
from tests.radius_pairs import freeradius_pairs
from tests.support.hook_env import REJECT, UPDATED, FakeRadiusd
from trustport.cli.main import cli
from trustport.services.enforcement import Enforcement
from trustport.settings.config import TrustportConfig, load_config
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore
from trustport_lab.pki import Issued, crl_pem, issue_device, issue_server, make_ca, make_crl

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
NAS_IPS = ("10.10.1.2", "10.20.1.2")  # a campus and a clinic access switch (docs/policy.md's sites)
MUD_URL = "https://lighting.example.com/lightbulb2000.json"  # the RFC 8520 light bulb: internet-only


def doc_policy(heading: str = "## Example") -> dict[str, Any]:
    """The first ```yaml block after ``heading`` in docs/policy.md (so the doc and the tests cannot drift)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(heading)
    block = re.search(r"```yaml\n(.*?)```", text[start:], re.S)
    assert block is not None, f"no yaml block after {heading!r} in {DOC}"
    data = yaml.safe_load(block.group(1))
    assert isinstance(data, dict)
    return data


# name -> (CA common name, organisation, role)
CAS = {
    "medpump-ldevid": ("MedPump LDevID CA", "MedPump Medical", "ldevid"),
    "vitalsigns-ldevid": ("VitalSigns LDevID CA", "VitalSigns GmbH", "ldevid"),
    "axis-idevid": ("Axis IDevID CA", "Axis Communications", "idevid"),
    "axis-ldevid": ("Axis LDevID CA", "Axis Communications", "ldevid"),
    "medpump-idevid": ("MedPump IDevID CA", "MedPump Medical", "idevid"),
    "acme-idevid": ("Acme IDevID CA", "Acme Lighting", "idevid"),
    "printco-idevid": ("PrintCo IDevID CA", "PrintCo", "idevid"),
    "campus-ldevid": ("Campus LDevID CA", "Campus Hospital", "ldevid"),
}


@dataclass(frozen=True)
class Seen:
    """What one path decided, in the terms the three can be compared in."""

    outcome: str  # accept | quarantine | reject
    vlan: int | None
    segment: str | None
    filter_id: str | None
    rule: str | None


@dataclass
class PlacementEnv:
    work: Path
    now: datetime
    policy: dict[str, Any]
    cas: dict[str, Issued] = field(default_factory=dict)
    devices: dict[str, tuple[Issued, str]] = field(default_factory=dict)  # name -> (certificate, CA name)
    macs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pki = self.work / "pki"
        (self.work / "crl").mkdir(parents=True, exist_ok=True)
        for name, (cn, org, role) in CAS.items():
            ca = make_ca(cn, org, now=self.now)
            ca.write(pki, name)
            self.cas[name] = ca
            if role == "ldevid":
                (self.work / "crl" / f"{name}.crl").write_bytes(crl_pem(make_crl(ca, [], now=self.now)))
        issue_server(make_ca("RADIUS server CA", "Campus Hospital", now=self.now), "radius.test",
                     now=self.now).write(pki, "server")
        mud = self.work / "mud"
        mud.mkdir()
        from policy.mud_signature import local_file_names
        from tests.unit.test_mud import encode, lightbulb

        (mud / local_file_names(MUD_URL)[0]).write_bytes(encode(lightbulb()))
        (self.work / "inventory.yaml").write_text(yaml.safe_dump({"switches": {"nas-coa": {
            "driver": "coa", "address": "127.0.0.1", "port": 3799,
            "options": {"secret_env": "TP_TEST_COA_SECRET", "vendor": "cisco"}}}}))
        self.write_config(self.policy)
        self.store = SqlDeviceStore(self.config.database_url(), create=True)
        self.store.ensure_schema()
        self.radiusd = FakeRadiusd()
        self.hook = Hook(self.radiusd, clock=lambda: self.now)
        settings = self.config.hook_settings()
        (self.work / "hook.json").write_text(json.dumps(settings.to_json()))
        assert self.hook.instantiate({"settings": str(self.work / "hook.json")}) == 0, self.radiusd.lines

    def write_config(self, policy: dict[str, Any]) -> None:
        data: dict[str, Any] = {
            "radius": {"server_certificate": "pki/server.pem", "server_key": "pki/server.key",
                       "clients": [{"name": "nas", "address": "10.0.0.0/8", "secret": "placement-test-secret"}]},
            "trust_anchors": [{"name": name, "role": role, "file": f"pki/{name}.pem"}
                              for name, (_, _, role) in CAS.items()],
            "revocation": {"crl_dir": "crl"},
            "database": {"url": "sqlite:///registry.sqlite"},
            "mud": {"directory": "mud", "signers": [], "require_signature": False},
            "enforcement": {"inventory": "inventory.yaml",
                            "nas": [{"nas_ip": ip, "coa": "nas-coa"} for ip in NAS_IPS]},
            **policy,
        }
        self.config_path = self.work / "trustport.yaml"
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.config: TrustportConfig = load_config(self.config_path)

    def device(self, name: str, ca: str, *, cn: str | None = None, mud_url: str | None = None) -> Issued:
        serial = f"SN-{len(self.devices) + 1:04d}"
        expiry: dict[str, Any] = {"not_after": self.now + timedelta(days=365)} if CAS[ca][2] == "ldevid" else {}
        issued = issue_device(self.cas[ca], cn=cn or f"{name}.devices.example", serial_number=serial, now=self.now,
                              org=CAS[ca][1], mud_url=mud_url, **expiry)
        issued.write(self.work / "pki", name)
        self.devices[name] = (issued, ca)
        self.macs[name] = f"02-00-00-00-{len(self.macs) // 256:02x}-{len(self.macs) % 256:02x}"
        return issued

    def register(self, name: str, state: LifecycleState, **fields: Any) -> DeviceRecord:
        facts = facts_from_certificate(self.devices[name][0].cert)
        assert facts.device_serial
        return self.store.add_device(DeviceKey(facts.issuer, facts.device_serial), state=state, now=self.now,
                                     facts=facts, **fields)

    def record(self, name: str) -> DeviceRecord | None:
        facts = facts_from_certificate(self.devices[name][0].cert)
        assert facts.device_serial
        return self.store.find_device(DeviceKey(facts.issuer, facts.device_serial))

    def request(self, name: str, nas_ip: str) -> dict[str, Any]:
        issued, ca = self.devices[name]
        pairs = tuple(("NAS-IP-Address", nas_ip) if n == "NAS-IP-Address" else (n, v)
                      for n, v in freeradius_pairs(issued.cert, self.cas[ca].cert, mac=self.macs[name]))
        return {"request": pairs, "config": (("Auth-Type", "Accept"),), "reply": None}

    def via_hook(self, name: str, nas_ip: str) -> Seen:
        request = self.request(name, nas_ip)
        answer = self.hook.check_eap_tls(request)
        self.hook.settle()  # the decision log entry is in the journal until drained
        entry = self.store.decisions(None, limit=1)[0]
        rule = _rule(entry.reasons)
        if answer == REJECT:
            return Seen("reject", None, None, None, rule)
        assert isinstance(answer, tuple) and answer[0] == UPDATED, answer
        reply = {n: v for n, _, v in answer[1]["reply"]}
        self.hook.post_auth(request)  # records the session the planner works on
        self.hook.settle()
        return Seen(entry.outcome.value, int(reply["Tunnel-Private-Group-Id"]), entry.segment, reply.get("Filter-Id"),
                    rule)

    def via_planner(self, name: str, nas_ip: str) -> Seen:
        device = self.record(name)
        assert device is not None, f"{name} never reached the registry"
        sessions = SqlSessionStore(self.store).active_for_device(device.id)
        session = next((s for s in sessions if s.nas_ip == nas_ip), None)
        if session is None:  # rejected here, so not connected here: the planner asks about this NAS anyway
            session = SessionView(0, device.id, nas_ip, None, "5", self.macs[name], None, None)
        decision = Enforcement(self.config, self.store).target(device, session, self.now)
        return Seen(decision.outcome.value, decision.vlan, decision.segment, decision.filter_id, decision.rule)

    def via_decide(self, name: str, nas_ip: str) -> Seen:
        result = CliRunner().invoke(cli, ["decide", "--cert", str(self.work / "pki" / f"{name}.pem"),
                                          "--nas-ip", nas_ip, "--nas-port", "5", "--json",
                                          "--config", str(self.config_path)])
        assert result.exit_code == 0, result.output
        decision = json.loads(result.output)["decision"]
        return Seen(decision["outcome"], decision["vlan"], decision["segment"], decision["filter_id"],
                    decision["rule"])

    def close(self) -> None:
        self.hook.detach(None)
        self.store.close()


def _rule(reasons: tuple[str, ...]) -> str | None:
    for reason in reasons:
        found = re.match(r"rule '([^']+)' matched", reason)
        if found:
            return found.group(1)
    return None
