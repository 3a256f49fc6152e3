"""Every certificate of the hostile corpus through real FreeRADIUS 3.2 + rlm_python3 + eapol_test AND through
``trustport decide``: the same outcome on both, the attack refused, no registry row changed by a rejected
certificate, the victim's record untouched, and an audit entry where a forged copy met a bound device."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography import x509

from policy.model import CertKind, DeviceKey, LifecycleState
from policy.x509facts import facts_from_certificate, oneline_dn
from tests.hostile_corpus import CASE_NAMES, VICTIM, HostileCase, build_corpus
from trustport.cli.main import cli
from trustport.freeradius.run import EapolResult, run_eapol, write_eapol_conf
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.schema import devices
from trustport_lab.lab import SEGMENTS, Lab
from trustport_lab.pki import make_ca


@dataclass
class CorpusLab:
    lab: Lab
    cases: dict[str, HostileCase]
    files: dict[str, tuple[Path, Path]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusLab]:
    work = tmp_path_factory.mktemp("hostile")
    now = datetime.now(UTC).replace(microsecond=0)
    lab = Lab(work, now, echo=lambda _m: None)
    # the manufacturer anchor file also names the CA it issues IDevIDs with (one intermediate is allowed)
    issuing = make_ca("Acme IDevID Issuing CA", "Acme Devices", now=now, issuer=lab.cas["idevid"], path_length=0)
    anchor_file = work / "pki" / "idevid-ca.pem"
    anchor_file.write_bytes(anchor_file.read_bytes() + issuing.cert_pem())
    lab.cas["idevid-issuing"] = issuing
    with lab:
        cases = {c.name: c for c in build_corpus(lab.cas, now, work / "built")}
        files = {name: case.write(work / "corpus") for name, case in cases.items()}
        for case in cases.values():
            if case.register is not None:
                issuer = lab.cas["ldevid"].cert
                facts = facts_from_certificate(case.leaf.cert, issuer)
                assert facts.device_serial is not None
                lab.store.add_device(DeviceKey(facts.issuer, facts.device_serial), state=LifecycleState(case.register),
                                     segment="production", now=now, cert_kind=CertKind.LDEVID, facts=facts)
        yield CorpusLab(lab, cases, files)


def _registry(lab: Lab) -> list[tuple[Any, ...]]:
    with lab.store.transaction("reading the registry for the test") as conn:
        return [tuple(row) for row in conn.execute(sa.select(devices).order_by(devices.c.id))]


def _radius(corpus: CorpusLab, name: str) -> str:
    cert, key = corpus.files[name]
    lab = corpus.lab
    conf = write_eapol_conf(lab.work / f"eapol-{name}.conf", identity=f"{name}.example",
                            ca_cert=lab.work / "pki" / "server-ca.pem", client_cert=cert, private_key=key,
                            weak_client=True)
    result = run_eapol(conf, port=lab.config.radius.auth_port,
                       secret=lab.config.radius.clients[0].secret.get_secret_value(), mac="02:00:00:00:99:01",
                       nas_port=9)
    lab.settle()  # what the hook journaled is in the registry before the test reads it
    return _outcome(result)


def _outcome(result: EapolResult) -> str:
    if result.code == "Access-Accept" and result.vlan is not None:
        kind = "quarantine" if result.vlan == SEGMENTS["quarantine"] else "accept"
        return f"{kind} VLAN {result.vlan}"
    if result.code == "Access-Reject":
        assert result.eap_code == 4, "a reject must carry an EAP-Failure"
        return "reject"
    raise AssertionError(f"no clean answer: {result.code}\n{result.output[-1500:]}")


def _decide(corpus: CorpusLab, name: str) -> tuple[str, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["decide", "--config", str(corpus.lab.config_path),
                                      "--cert", str(corpus.files[name][0]), "--nas-ip", "127.0.0.1", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    decision = answer["decision"]
    if decision["outcome"] == "reject":
        return "reject", answer
    return f"{decision['outcome']} VLAN {decision['vlan']}", answer


def test_corpus_covers_every_attack_class(corpus: CorpusLab) -> None:
    attacks = [c for c in corpus.cases.values() if c.expect == "reject"]
    controls = [c for c in corpus.cases.values() if c.expect == "admit"]
    assert len(attacks) >= 20 and len(controls) >= 8
    assert tuple(corpus.cases) == CASE_NAMES  # the parametrisation below runs every case built


@pytest.mark.parametrize("name", CASE_NAMES)
def test_freeradius_and_decide_agree(corpus: CorpusLab, name: str) -> None:
    case = corpus.cases[name]
    lab = corpus.lab
    victim_key = DeviceKey(oneline_dn(lab.cas["ldevid"].cert.subject), VICTIM)
    victim_before = lab.store.find_device(victim_key)
    audit_before = len(SqlLifecycleStore(lab.store).events(victim_before.id)) if victim_before else 0
    if name == "control-utf8-serial":  # registered by an operator typing the serial, not from the certificate
        added = CliRunner().invoke(cli, ["devices", "add", "--config", str(lab.config_path), "--serial",
                                         "HLD-ü-0205", "--issuer", oneline_dn(lab.cas["idevid"].cert.subject)])
        assert added.exit_code == 0, added.output
    registry_before = _registry(lab)

    decided, answer = _decide(corpus, name)  # first: decide writes nothing, so RADIUS sees the same registry
    assert _registry(lab) == registry_before, "decide wrote to the registry"
    got = _radius(corpus, name)

    assert got == decided, f"{name}: FreeRADIUS says {got}, decide says {decided}: {answer['checks']}"
    if case.expect == "reject":
        assert got == "reject", f"{name} ({case.attack}) got {got}"
        assert _registry(lab) == registry_before, f"{name}: a rejected certificate changed the registry"
    else:
        assert got != "reject", f"{name} ({case.attack}) was refused: {answer['checks']}"
    victim_after = lab.store.find_device(victim_key)
    assert victim_after == victim_before, f"{name} changed the victim's record"
    if case.claims == VICTIM and name == "second-certificate":
        events = SqlLifecycleStore(lab.store).events(victim_before.id)  # type: ignore[union-attr]
        assert len(events) == audit_before + 1 and events[0].action == "certificate-mismatch", events
    if name == "control-utf8-serial":
        matches = [d for d in lab.store.list_devices() if d.key.serial_number == "HLD-ü-0205"]
        assert len(matches) == 1 and matches[0].state is LifecycleState.OPERATIONAL, matches
        assert matches[0].last_seen is not None, "the hook did not find the device the operator registered"


def test_a_real_impostor_never_lifts_a_victims_attestation(corpus: CorpusLab) -> None:
    """After every impostor attempt the victim is still bound to its own certificate: its own certificate still
    gets production, so an attestation result bound to its key still belongs to it."""
    lab = corpus.lab
    cert, key = lab.devices[VICTIM]
    conf = write_eapol_conf(lab.work / "eapol-victim.conf", identity="victim.example",
                            ca_cert=lab.work / "pki" / "server-ca.pem", client_cert=cert, private_key=key)
    result = run_eapol(conf, port=lab.config.radius.auth_port,
                       secret=lab.config.radius.clients[0].secret.get_secret_value(), mac="02:00:00:00:99:02")
    assert _outcome(result) == "accept VLAN 30"
    device = lab.store.find_device(DeviceKey(oneline_dn(lab.cas["ldevid"].cert.subject), VICTIM))
    assert device is not None
    assert device.cert_serial == format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x")
