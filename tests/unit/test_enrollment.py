"""EST wire encodings and the enrolment authority, without a network: the real owner CA and registry (SQLite in a
temporary directory), certificates handed to the service as the TLS layer would (DER of the peer certificate)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from policy.model import DeviceKey, LifecycleState
from tests.pki_fixtures import DevicePki
from tests.support.est_env import EstEnv, build_est_env
from trustport.est import wire
from trustport.services.enrollment import EnrollmentService
from trustport.settings.enrollment import EnrollmentConfig
from trustport.store.issued import SqlIssuedStore
from trustport.store.lifecycle import SqlLifecycleStore

ACME = "/C=DE/O=Acme Devices/CN=Acme Manufacturer IDevID CA"


def csr(key: Any = None, cn: str = "device", serial: str | None = "SN-OTHER") -> x509.CertificateSigningRequest:
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())


def der(request: x509.CertificateSigningRequest) -> bytes:
    return request.public_bytes(serialization.Encoding.DER)


# -- wire ---------------------------------------------------------------------------------------------------------

def test_base64_tolerates_line_breaks_and_refuses_junk() -> None:
    raw = bytes(range(200))
    wrapped = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    assert wire.decode_base64(wrapped, "body") == raw
    for junk in (b"", b"  \r\n", b"AAA", b"AAAA*AAA", b"AA==AA==", b"\x00AAAA"):
        with pytest.raises(wire.WireError) as err:
            wire.decode_base64(junk, "body")
        assert err.value.status == 400


def test_csr_in_base64_der_and_pem_and_what_is_refused() -> None:
    request = csr()
    body = base64.b64encode(der(request))
    assert wire.parse_csr(body, "application/pkcs10") == request
    assert wire.parse_csr(body, "Application/PKCS10; charset=x") == request
    pem = request.public_bytes(serialization.Encoding.PEM)
    assert wire.parse_csr(pem, None) == request
    cases = [
        (body, "text/plain", 415),
        (body, None, 415),
        (base64.b64encode(b"\x30\x03\x02\x01\x00"), "application/pkcs10", 400),
        (b"-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----", None, 400),
        (b"A" * (wire.MAX_CSR_BYTES + 1), "application/pkcs10", 413),
    ]
    tampered = der(csr(cn="AAAAAAAA")).replace(b"AAAAAAAA", b"BBBBBBBB")
    cases.append((base64.b64encode(tampered), "application/pkcs10", 400))
    for data, content_type, status in cases:
        with pytest.raises(wire.WireError) as err:
            wire.parse_csr(data, content_type)
        assert err.value.status == status, (data[:30], str(err.value))
        assert "Traceback" not in str(err.value)
    with pytest.raises(wire.WireError, match="signature does not verify"):
        wire.parse_csr(base64.b64encode(tampered), "application/pkcs10")


def test_certs_only_and_csrattrs() -> None:
    from trustport_lab.pki import make_ca

    ca = make_ca("x", "y", now=datetime.now(UTC)).cert
    body = wire.certs_only([ca])
    assert all(len(line) <= 64 for line in body.split(b"\r\n"))
    assert pkcs7.load_der_pkcs7_certificates(base64.b64decode(b"".join(body.split()))) == [ca]
    attrs = base64.b64decode(b"".join(wire.csr_attributes().split()))
    assert attrs[0] == 0x30 and attrs[1] == len(attrs) - 2  # one DER SEQUENCE (AttrOrOID ...)
    assert bytes.fromhex("2a8648ce3d0201") in attrs and bytes.fromhex("2a8648ce3d030107") in attrs


def test_enrollment_config_is_checked() -> None:
    EnrollmentConfig.model_validate({"auto_approve": [{"name": "axis", "match": {"manufacturer": "Axis*",
                                                                                  "attestation": "affirming"}}]})
    for bad in ({"server_certificate": "a.pem"}, {"auto_approve": [{"name": "x", "match": {}}]},
                {"auto_approve": [{"name": "x", "match": {"nonsense": "y"}}]},
                {"require_attestation": "warning"}, {"listen_address": "not-an-ip"}, {"surprise": 1},
                {"auto_approve": [{"name": "a", "match": {"owner": "x"}}, {"name": "a", "match": {"owner": "y"}}]}):
        with pytest.raises(ValidationError):
            EnrollmentConfig.model_validate(bad)


# -- the enrolment authority --------------------------------------------------------------------------------------

@pytest.fixture
def env(pki: DevicePki, tmp_path: Path) -> Iterator[EstEnv]:
    built = build_est_env(pki, tmp_path / "est")
    yield built
    built.close()


def service(env: EstEnv, **settings: Any) -> EnrollmentService:
    return EnrollmentService(EnrollmentConfig.model_validate(settings), env.app.authorizer, env.app.store,
                             env.app.lifecycle, env.ca)


def peer(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)


def now() -> datetime:
    return datetime.now(UTC)


def actions(env: EstEnv, device_id: int) -> list[str]:
    return [e.action for e in SqlLifecycleStore(env.app.store).events(device_id)]


def test_no_client_certificate_and_foreign_certificates_are_refused(env: EstEnv, pki: DevicePki) -> None:
    est = service(env)
    assert est.enroll(None, csr(), now()).status == 403
    for name in ("rogue", "lookalike", "ldevid-ok", "expired", "no-serial"):  # ldevid-ok: a CA not configured here
        answer = est.enroll(peer(pki.cert_path(name)), csr(), now())
        assert answer.status == 403 and answer.issued is None, (name, answer)
    assert env.app.store.list_devices() == []  # nothing refused was registered


def test_auto_approve_by_manufacturer(env: EstEnv) -> None:
    est = service(env, auto_approve=[{"name": "acme", "match": {"manufacturer": "Acme*", "cert_kind": "idevid"}}])
    cert, _ = env.idevid("SN-8001")
    answer = est.enroll(peer(cert), csr(), now())
    assert answer.status == 200 and answer.issued is not None, answer
    device = env.app.store.find_device(DeviceKey(env.ca.issuer, "SN-8001"))
    assert device is not None and device.state is LifecycleState.ONBOARDING
    assert {"est-registered", "onboard", "ldevid-enrolled"} <= set(actions(env, device.id))


def test_auto_approve_that_needs_attestation_leaves_the_device_pending(env: EstEnv) -> None:
    est = service(env, auto_approve=[{"name": "attested", "match": {"manufacturer": "Acme*",
                                                                     "attestation": "affirming"}}])
    cert, _ = env.idevid("SN-8002")
    answer = est.enroll(peer(cert), csr(), now())
    assert answer.status == 202 and answer.retry_after == 300
    device = env.app.store.find_device(DeviceKey(ACME, "SN-8002"))
    assert device is not None and device.state is LifecycleState.PENDING


def test_require_attestation_refuses_an_approved_device_without_it(env: EstEnv) -> None:
    est = service(env, require_attestation="affirming")
    cert, _ = env.idevid("SN-8003")
    env.register(cert, LifecycleState.ONBOARDING)
    answer = est.enroll(peer(cert), csr(), now())
    assert answer.status == 403 and "affirming" in answer.message and answer.issued is None
    device = env.app.store.find_device(DeviceKey(ACME, "SN-8003"))
    assert device is not None and "est-refused" in actions(env, device.id)


def test_weak_keys_are_refused(env: EstEnv) -> None:
    est = service(env)
    cert, _ = env.idevid("SN-8004")
    env.register(cert, LifecycleState.ONBOARDING)
    for key in (rsa.generate_private_key(public_exponent=65537, key_size=1024),
                ec.generate_private_key(ec.SECP224R1())):
        answer = est.enroll(peer(cert), csr(key), now())
        assert answer.status == 400 and "key policy" in answer.message, answer


def test_identity_comes_from_the_idevid_not_the_csr(env: EstEnv) -> None:
    est = service(env)
    cert, _ = env.idevid("SN-8005", cn="sensor-8005")
    env.register(cert, LifecycleState.OPERATIONAL)
    answer = est.enroll(peer(cert), csr(cn="admin", serial="SN-0001"), now())
    assert answer.issued is not None
    subject = answer.issued.certificate.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)] == ["SN-8005"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["sensor-8005"]


def test_a_device_that_changes_while_issuing_gets_nothing_and_nothing_is_recorded(
        env: EstEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Authenticated, then an operator quarantines it before the issuing transaction: the binding check inside
    that transaction refuses, so no certificate is recorded (none ever leaves the server) and the device keeps
    its IDevID binding."""
    est = service(env)
    cert, _ = env.idevid("SN-8006")
    env.register(cert, LifecycleState.ONBOARDING)
    real_issue = env.ca.issue

    def operator_quarantines_then_issue(*args: Any, **kwargs: Any) -> Any:
        env.cli("devices", "quarantine", "SN-8006", "--reason", "meanwhile")
        return real_issue(*args, **kwargs)

    monkeypatch.setattr(env.ca, "issue", operator_quarantines_then_issue)
    answer = est.enroll(peer(cert), csr(), now())
    assert answer.status == 409 and answer.issued is None
    assert "changed while its certificate was being issued" in answer.message
    assert [r for r in SqlIssuedStore(env.app.store).list() if r.device_serial == "SN-8006"] == []
    device = env.app.store.find_device(DeviceKey(ACME, "SN-8006"))
    assert device is not None and device.cert_kind is not None and device.cert_kind.value == "idevid"


def test_registry_outage_is_503_not_a_crash(env: EstEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from policy.errors import StoreError

    est = service(env)
    cert, _ = env.idevid("SN-8007")

    def down(*_: Any, **__: Any) -> Any:
        raise StoreError("registry down")

    monkeypatch.setattr(env.app.store, "find_device", down)
    answer = est.enroll(peer(cert), csr(), now())
    assert answer.status == 503 and answer.retry_after


def test_the_radius_hook_agrees_the_ldevid_is_this_device_and_the_old_one_is_not(env: EstEnv) -> None:
    """The attribute path (FreeRADIUS' TLS-Client-Cert-* into the hook), not only ``pem_facts``: the enrolled LDevID
    is accepted into the device's segment; after re-enrolment the old LDevID is rejected, the new one accepted."""
    import json

    from radius_hooks.hook import Hook
    from tests.radius_pairs import freeradius_pairs
    from tests.support.hook_env import REJECT, UPDATED, FakeRadiusd

    est = service(env)
    cert, _ = env.idevid("SN-8008")
    env.register(cert, LifecycleState.OPERATIONAL)
    key = ec.generate_private_key(ec.SECP256R1())
    first = est.enroll(peer(cert), csr(key), now()).issued
    assert first is not None
    settings = env.root / "hook.json"
    settings.write_text(json.dumps(env.config.hook_settings().to_json()))
    hook = Hook(FakeRadiusd(), clock=now)
    assert hook.instantiate({"settings": str(settings)}) == 0

    def radius(certificate: x509.Certificate) -> Any:
        request = {"request": freeradius_pairs(certificate, env.ca.certificate),
                   "config": (("Auth-Type", "Accept"),), "reply": None}
        return hook.check_eap_tls(request)

    rcode, lists = radius(first.certificate)
    assert rcode == UPDATED and ("Tunnel-Private-Group-Id", ":=", "30") in lists["reply"]
    second = est.enroll(first.certificate.public_bytes(serialization.Encoding.DER), csr(), now(), renew=True).issued
    assert second is not None
    assert radius(first.certificate) == REJECT
    rcode, lists = radius(second.certificate)
    assert rcode == UPDATED and ("Tunnel-Private-Group-Id", ":=", "30") in lists["reply"]
