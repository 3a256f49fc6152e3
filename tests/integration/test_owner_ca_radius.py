"""The owner CA against real FreeRADIUS + eapol_test: an LDevID it issues from a CSR authenticates; after
`trustport ca revoke` the next authentication (once the CRL directory is re-read) is an EAP-Failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policy.issuance import IssuanceIdentity
from policy.model import DeviceKey, LifecycleState, Outcome
from policy.x509facts import facts_from_certificate
from trustport.cli.main import cli
from trustport.files import write_private
from trustport.services.ca import OwnerCA
from trustport_lab.lab import Lab

REFRESH_SECONDS = 1


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("owner-ca-lab")
    extra = {"ca": {"name": "ldevid", "certificate": "pki/ldevid-ca.pem", "key": "pki/ldevid-ca.key"},
             "revocation": {"crl_dir": "crl", "refresh_seconds": REFRESH_SECONDS, "require_crl_for": ["ldevid"]}}
    with Lab(work, datetime.now(UTC), echo=lambda _m: None, extra_config=extra) as running:
        yield running


def enroll(lab: Lab, serial: str) -> str:
    """What EST does: a CSR with the device's new key (claiming another identity), an LDevID for the identity."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-1001")]))
           .sign(key, hashes.SHA256()))
    owner = OwnerCA.load(lab.config, lab.store)
    issued = owner.issue(csr, IssuanceIdentity(serial, ("1.3.6.1.4.1.99999.1", b"HW-" + serial.encode()),
                                               f"{serial.lower()}.devices.example"),
                         now=datetime.now(UTC), actor="test")
    pki = lab.work / "pki"
    (pki / f"{serial}.pem").write_bytes(issued.pem)
    write_private(pki / f"{serial}.key", key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    lab.devices[serial] = (pki / f"{serial}.pem", pki / f"{serial}.key")
    facts = facts_from_certificate(issued.certificate)
    assert facts.device_serial == serial
    lab.store.add_device(DeviceKey(facts.issuer, serial), state=LifecycleState.OPERATIONAL, now=datetime.now(UTC),
                         segment="production", owner="test", facts=facts)
    return issued.cert_serial


def test_issued_ldevid_authenticates_and_is_refused_after_revoke(lab: Lab) -> None:
    cert_serial = enroll(lab, "SN-8008")
    accepted = lab.authenticate("SN-8008")
    assert accepted.code == "Access-Accept", accepted.output[-2000:]
    # the lab's attestation placement: an LDevID without an attestation result goes to 'restricted' (VLAN 35)
    assert accepted.attributes.get("Tunnel-Private-Group-Id") == "35"

    result = CliRunner().invoke(cli, ["ca", "revoke", cert_serial, "--reason", "key compromise",
                                      "--config", str(lab.config_path)])
    assert result.exit_code == 0, result.output
    time.sleep(REFRESH_SECONDS + 0.2)  # the hook re-reads crl_dir at most every refresh_seconds
    rejected = lab.authenticate("SN-8008")
    assert rejected.code == "Access-Reject", rejected.output[-2000:]
    device = lab.store.find_device(DeviceKey(facts_from_certificate(lab.certificate("SN-8008")).issuer, "SN-8008"))
    assert device is not None
    entry = lab.store.decisions(device.id, limit=1)[0]
    assert entry.outcome is Outcome.REJECT
    assert any(f"serial {cert_serial} is revoked by ldevid.crl" in r for r in entry.reasons), entry.reasons


def test_other_ldevids_of_the_owner_ca_still_authenticate(lab: Lab) -> None:
    enroll(lab, "SN-8009")
    accepted = lab.authenticate("SN-8009")
    assert accepted.code == "Access-Accept", accepted.output[-2000:]


def test_issued_certificates_on_postgresql(postgres) -> None:  # type: ignore[no-untyped-def]
    """The issued-certificate repository on a real PostgreSQL: re-issue revokes and deny-lists in one transaction."""
    from policy.errors import IssuanceError
    from trustport.store.issued import IssuedRecord, SqlIssuedStore
    from trustport.store.lifecycle import SqlLifecycleStore
    from trustport.store.sql import SqlDeviceStore

    now = datetime.now(UTC)
    with SqlDeviceStore(postgres.create_database(), create=True) as store:
        store.initialise()
        issued = SqlIssuedStore(store)
        first = IssuedRecord("a1", "/CN=owner", "SN-1", "/CN=x/serialNumber=SN-1", now, now, now, "test", pem="p")
        issued.record_issued(first)
        with pytest.raises(IssuanceError, match="belongs to device"):
            issued.record_issued(IssuedRecord("b2", "/CN=owner", "SN-2", "/s", now, now, now, "t", pem="p"),
                                 replaces="a1")
        assert issued.get("b2") is None  # the refused re-issue wrote nothing
        issued.record_issued(IssuedRecord("c3", "/CN=owner", "SN-1", "/s", now, now, now, "t", pem="p"),
                             replaces="a1")
        assert [r.cert_serial for r in issued.revoked("/CN=owner", now)] == ["a1"]
        assert issued.revoke("a1", reason="again", now=now, actor="t") is False
        assert ("/CN=owner", "a1") in SqlLifecycleStore(store).denied_index()
