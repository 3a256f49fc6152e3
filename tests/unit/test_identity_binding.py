"""A registered device is bound to its certificate: another certificate with the same issuer and serial number is
not that device (reject, audit entry, nothing overwritten), until an operator re-binds it. Through the hook."""

from __future__ import annotations

from datetime import timedelta

from policy.model import CertKind, DeviceKey, LifecycleState, Outcome
from policy.x509facts import facts_from_certificate
from radius_hooks.hook import Hook
from tests.pki_fixtures import NOW, DevicePki
from tests.radius_pairs import freeradius_pairs
from tests.support.hook_env import REJECT, UPDATED, FakeRadiusd
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.sql import SqlDeviceStore
from trustport_lab.pki import Issued, issue_device

ISSUER = "/C=DE/O=Example Site/CN=Site LDevID CA"


def _request(cert: Issued, pki: DevicePki, mac: str = "02-00-00-00-00-01") -> dict[str, object]:
    return {"request": freeradius_pairs(cert.cert, pki.cas["ldevid"].cert, mac=mac),
            "config": (("Auth-Type", "Accept"),), "reply": None}


def _copy_of_sn_0002(pki: DevicePki) -> Issued:
    """A genuine certificate from the same LDevID CA with the same subject serialNumber: a second device."""
    return issue_device(pki.cas["ldevid"], cn="ldev.example", serial_number="SN-0002", now=NOW,
                        not_after=NOW + timedelta(days=365))


def _store(instance: Hook) -> SqlDeviceStore:
    """The registry as an operator's command opens it (its changes wait for the hook's cache)."""
    assert instance.runtime is not None
    return SqlDeviceStore(instance.runtime.settings.database_url)


def test_another_certificate_with_a_registered_serial_is_refused(hook: tuple[Hook, FakeRadiusd],
                                                                 pki: DevicePki) -> None:
    instance, radiusd = hook
    store = _store(instance)
    genuine = pki.devices["ldevid-ok"]
    registered = store.add_device(DeviceKey(ISSUER, "SN-0002"), state=LifecycleState.OPERATIONAL, now=NOW,
                                  cert_kind=CertKind.LDEVID, facts=facts_from_certificate(genuine.cert))
    assert instance.check_eap_tls(_request(_copy_of_sn_0002(pki), pki, "02-00-00-00-00-66")) == REJECT
    assert any("does not match the registered one" in line for _, line in radiusd.lines)
    assert store.get_device(registered.id) == registered  # nothing overwritten: serial, fingerprint, last seen
    instance.settle()
    (event,) = SqlLifecycleStore(store).events(registered.id)
    assert (event.actor, event.action, event.from_state, event.to_state) == (
        "radius", "certificate-mismatch", "operational", "operational")
    assert "02-00-00-00-00-66" in (event.reason or "")
    instance.settle()
    entry = store.decisions(registered.id, limit=1)[0]
    assert entry.outcome is Outcome.REJECT and any("certificate-binding" in r for r in entry.reasons)
    # the real device still gets in, and is still bound to its own certificate
    rcode, _lists = instance.check_eap_tls(_request(genuine, pki))  # type: ignore[misc]
    assert rcode == UPDATED
    after = store.get_device(registered.id)
    assert after is not None and after.cert_serial == registered.cert_serial
    assert after.fingerprint_sha256 == registered.fingerprint_sha256


def test_a_device_registered_by_serial_is_bound_on_first_use(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    instance, _ = hook
    store = _store(instance)
    device = store.add_device(DeviceKey(ISSUER, "SN-0002"), state=LifecycleState.OPERATIONAL, now=NOW)
    assert device.cert_serial is None
    first = pki.devices["ldevid-ok"]
    rcode, _lists = instance.check_eap_tls(_request(first, pki))  # type: ignore[misc]
    assert rcode == UPDATED
    bound = store.get_device(device.id)
    assert bound is not None and bound.cert_serial == format(first.cert.serial_number, "x")
    instance.settle()
    assert [e.action for e in SqlLifecycleStore(store).events(device.id)] == ["certificate-bound"]
    assert instance.check_eap_tls(_request(_copy_of_sn_0002(pki), pki)) == REJECT
    still = store.get_device(device.id)
    assert still is not None and still.cert_serial == bound.cert_serial


def test_an_operator_rebind_moves_the_binding(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    from policy.model import AuditNote

    instance, _ = hook
    store = _store(instance)
    old = pki.devices["ldevid-ok"]
    device = store.add_device(DeviceKey(ISSUER, "SN-0002"), state=LifecycleState.OPERATIONAL, now=NOW,
                              cert_kind=CertKind.LDEVID, facts=facts_from_certificate(old.cert))
    new = _copy_of_sn_0002(pki)
    store.bind_certificate(device.id, facts_from_certificate(new.cert), NOW,
                           AuditNote("alice", "certificate-rebound", "operational", "new board"))
    rcode, _lists = instance.check_eap_tls(_request(new, pki))  # type: ignore[misc]
    assert rcode == UPDATED
    assert instance.check_eap_tls(_request(old, pki, "02-00-00-00-00-02")) == REJECT
    instance.settle()
    actions = [e.action for e in SqlLifecycleStore(store).events(device.id)]
    assert actions == ["certificate-mismatch", "certificate-rebound"]  # newest first
