"""The throw-away slapd in trustport_lab.slapd, against the real server."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPInvalidCredentialsResult, LDAPSocketOpenError

from trustport_lab import slapd as slapd_mod
from trustport_lab.slapd import Slapd, ad_computer_ldif, device_ldif, generated_devices, running_slapd

COUNT = 1500
HOSTILE_CN = ' #dev,+"\\<>;=*)(cn=*\x01é'
HOSTILE = {
    "cn": HOSTILE_CN,
    "serialNumber": "SN-*)(|(cn=*))",
    "trustportIssuer": "/C=US/O=Acme, Inc./CN=Acme IDevID CA ",
    "trustportOwner": "*)(cn=*\x01\nx",
    "trustportSite": ": leading colon",
    "trustportSegment": "<file:///etc/passwd",
    "trustportDeviceClass": "caméra ☃\r\n\tend",
    "trustportApproved": "TRUE",
    "description": " leading space",
}
AD_COMPUTER = {
    "cn": "PC-0001",
    "serialNumber": "AD-SN-0001",
    "userAccountControl": "4098",
    "managedBy": "cn=facilities,ou=services,dc=example,dc=org",
    "location": "hq/building 2",
    "description": "AD-style computer",
}


@pytest.fixture(scope="module")
def server() -> Iterator[Slapd]:
    ldif = device_ldif([*generated_devices(COUNT), HOSTILE], "ou=devices,dc=example,dc=org")
    ldif += "\n" + ad_computer_ldif([AD_COMPUTER], "ou=devices,dc=example,dc=org")
    with running_slapd(ldif=ldif, ad_schema=True) as s:
        yield s


def service(server: Slapd, *, ldaps: bool = True, ca_file: Path | None = None, **kw: object) -> ldap3.Connection:
    return ldap3.Connection(
        server.server(ldaps=ldaps, ca_file=ca_file), user=server.bind_dn, password=server.bind_password, **kw
    )


def test_service_account_binds_over_ldaps(server: Slapd) -> None:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(server.ca_file))
    conn = ldap3.Connection(
        ldap3.Server(server.ldaps_url, use_ssl=True, tls=tls), user=server.bind_dn, password=server.bind_password
    )
    assert conn.bind(), conn.result
    assert conn.extend.standard.who_am_i() == f"dn:{server.bind_dn}"
    conn.unbind()


def test_service_account_binds_over_starttls(server: Slapd) -> None:
    conn = service(server, ldaps=False)
    conn.open()
    assert conn.start_tls()
    assert conn.bind(), conn.result
    assert conn.search(server.devices_dn, "(cn=dev-00001)", attributes=["serialNumber"])
    assert conn.entries[0].serialNumber.value == "SN-00001"
    conn.unbind()


def test_wrong_ca_is_refused(server: Slapd) -> None:
    conn = service(server, ca_file=server.wrong_ca_file)
    with pytest.raises(LDAPSocketOpenError, match="certificate verify failed"):
        conn.bind()


def test_wrong_password_is_refused(server: Slapd) -> None:
    conn = ldap3.Connection(server.server(), user=server.bind_dn, password="wrong", raise_exceptions=True)
    with pytest.raises(LDAPInvalidCredentialsResult):
        conn.bind()
    plain = ldap3.Connection(server.server(), user=server.bind_dn, password="wrong")
    assert not plain.bind()
    assert plain.result["result"] == 49


def test_anonymous_can_only_authenticate(server: Slapd) -> None:
    anon = ldap3.Connection(server.server())
    assert anon.bind()
    anon.search(server.devices_dn, "(objectClass=*)", attributes=["cn"])
    assert anon.entries == []
    svc = service(server)
    svc.bind()
    svc.search(server.services_dn, "(objectClass=*)", attributes=["userPassword"])
    assert svc.entries == []  # the service account reads devices only


def test_unpaged_search_hits_size_limit_paged_returns_all(server: Slapd) -> None:
    conn = service(server)
    assert conn.bind()
    conn.search(server.devices_dn, "(cn=dev-*)", attributes=["cn"])
    assert conn.result["description"] == "sizeLimitExceeded"
    assert len(conn.entries) == 1000
    entries = list(
        conn.extend.standard.paged_search(server.devices_dn, "(cn=dev-*)", attributes=["cn"], paged_size=500)
    )
    assert len([e for e in entries if e["type"] == "searchResEntry"]) == COUNT
    conn.unbind()


def test_hostile_values_round_trip(server: Slapd) -> None:
    conn = service(server)
    assert conn.bind()
    assert conn.search(server.devices_dn, "(serialNumber=SN-\\2a\\29\\28|\\28cn=\\2a\\29\\29)", attributes=["*"])
    (entry,) = conn.entries
    for attr, value in HOSTILE.items():
        assert entry[attr].value == value, attr
    assert "trustportDevice" in entry.objectClass.values
    conn.unbind()


def test_ad_computer_entry(server: Slapd) -> None:
    conn = service(server)
    assert conn.bind()
    assert conn.search(server.devices_dn, "(&(objectClass=computer)(serialNumber=AD-SN-0001))", attributes=["*"])
    (entry,) = conn.entries
    assert entry.userAccountControl.value == "4098"  # get_info=NONE: no schema, so values stay strings
    assert entry.managedBy.value == AD_COMPUTER["managedBy"]
    assert entry.location.value == "hq/building 2"
    conn.unbind()


def test_admin_writes_service_reads(server: Slapd) -> None:
    dn = f"cn=dev-added,{server.devices_dn}"
    with server.admin() as admin:
        admin.add(dn, ["device", "trustportDevice"], {"serialNumber": "SN-ADDED", "trustportApproved": "FALSE"})
        admin.modify(dn, {"trustportApproved": [(ldap3.MODIFY_REPLACE, ["TRUE"])]})
    conn = service(server)
    assert conn.bind()
    assert conn.search(dn, "(trustportApproved=TRUE)", search_scope=ldap3.BASE, attributes=["serialNumber"])
    # the service account may not write
    assert not conn.modify(dn, {"trustportApproved": [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
    assert conn.result["description"] == "insufficientAccessRights"
    with server.admin() as admin:
        admin.delete(dn)
    conn.unbind()


def test_stop_then_start_keeps_ports_and_data(server: Slapd) -> None:
    port, tls_port = server.port, server.tls_port
    server.stop()
    try:
        with pytest.raises(LDAPSocketOpenError):
            service(server).bind()
    finally:
        server.start()
    assert (server.port, server.tls_port) == (port, tls_port)
    conn = service(server)
    assert conn.bind()
    assert conn.search(server.devices_dn, f"(cn=dev-{COUNT:05d})", attributes=["cn"])
    conn.unbind()


def test_device_ldif_encodes_unsafe_values() -> None:
    text = device_ldif([{"cn": "a", "description": " x", "trustportOwner": "ok"}], "ou=d,dc=x")
    assert "dn: cn=a,ou=d,dc=x\n" in text
    assert "description:: IHg=\n" in text
    assert "trustportOwner: ok\n" in text
    assert "objectClass: device\nobjectClass: trustportDevice\n" in text


def test_missing_binaries_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slapd_mod.shutil, "which", lambda *a, **k: None)
    with pytest.raises(slapd_mod.SlapdUnavailable, match="apt-get install slapd ldap-utils"):
        slapd_mod.find_binaries()


def test_a_relative_workdir_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trustport lab --workdir lab` hands the launcher a relative path; slapadd and slapd run inside it."""
    monkeypatch.chdir(tmp_path)
    with running_slapd(Path("relative") / "slapd") as server:
        assert server.workdir.is_absolute() and server.ca_file.is_file()
        conn = service(server, auto_bind=True)
        assert conn.bound
        conn.unbind()
