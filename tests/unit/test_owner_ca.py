"""The owner CA: issuance from a CSR (proof of possession, key policy, identity never from the CSR), revocation
with the CRL published at once, CRL renewal, `ca init` files, `config check` warnings, `pki test-device`."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from policy.errors import ConfigError, IssuanceError
from policy.issuance import IssuanceIdentity, hardware_module_name, identity_from_certificate, load_csr
from policy.x509facts import facts_from_certificate, format_serial
from tests.pki_fixtures import DevicePki
from trustport.app import App
from trustport.cli.main import cli
from trustport.services.ca import OwnerCA
from trustport.services.trust import load_crl
from trustport.settings.config import load_config
from trustport.store.lifecycle import SqlLifecycleStore

SECRET = "owner-ca-test-shared-secret-01"
HW_TYPE = "1.3.6.1.4.1.99999.1.2"


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


def write_config(directory: Path, pki: DevicePki, **ca: object) -> Path:
    data = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "run_as_user": None, "reject_delay": 0,
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": SECRET}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))},
                          {"name": "owner", "role": "ldevid", "file": "pki/owner.pem"}],
        "revocation": {"crl_dir": "crl"},
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "ca": {"name": "owner", "certificate": "pki/owner.pem", "key": "pki/owner.key", **ca},
    }
    (directory / "crl").mkdir(exist_ok=True)
    path = directory / "trustport.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def config_file(pki: DevicePki, tmp_path: Path) -> Path:
    path = write_config(tmp_path, pki)
    run("db", "init", "--config", str(path))
    run("ca", "init", "--org", "Example Site", "--config", str(path))
    return path


@pytest.fixture
def owner(config_file: Path) -> OwnerCA:
    config = load_config(config_file, check_files=False)
    app = App(config)
    return OwnerCA.load(config, app.store)


def now() -> datetime:
    return datetime.now(UTC)


def make_csr(key: object = None, *, cn: str = "claimed", serial: str = "SN-CLAIMED", sign_hash: object = "sha256",
             extra_eku: bool = False) -> x509.CertificateSigningRequest:
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Attacker Org")]))
    if extra_eku:  # a CSR asking for more than a device certificate: CA:TRUE and serverAuth
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


IDENTITY = IssuanceIdentity("SN-4711", (HW_TYPE, b"HW-0815"), "pump-4711", "https://mud.example/pump.json")


# -- issuance ----------------------------------------------------------------------------------------------

def test_identity_comes_from_the_idevid_not_from_the_csr(owner: OwnerCA) -> None:
    issued = owner.issue(make_csr(cn="SN-0001-other-device", serial="SN-0001", extra_eku=True), IDENTITY,
                         now=now(), actor="test")
    facts = facts_from_certificate(issued.certificate)
    assert facts.device_serial == "SN-4711"
    assert facts.common_name == "pump-4711"
    assert "Attacker" not in facts.subject and "O=Example Site" in facts.subject
    assert facts.is_ca is False and facts.eku_oids == (ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,)
    assert "Digital Signature" in (facts.key_usage or ()) and "Key Agreement" in (facts.key_usage or ())
    assert facts.mud_url == "https://mud.example/pump.json"
    assert hardware_module_name(issued.certificate) == (HW_TYPE, b"HW-0815")
    assert issued.cert_serial == format_serial(issued.certificate.serial_number) == facts.cert_serial
    assert issued.certificate.serial_number.bit_length() <= 127
    exts = issued.certificate.extensions
    assert exts.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert exts.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == \
        owner.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    lifetime = issued.certificate.not_valid_after_utc - issued.certificate.not_valid_before_utc
    assert lifetime == timedelta(days=365)
    issued.certificate.verify_directly_issued_by(owner.certificate)
    assert owner.issued.get(issued.cert_serial) is not None


def test_hardware_module_name_round_trips_from_an_idevid(owner: OwnerCA) -> None:
    ldevid = owner.issue(make_csr(), IDENTITY, now=now(), actor="test").certificate
    again = identity_from_certificate(ldevid)
    assert again == IDENTITY


def test_rsa_keys_get_no_key_agreement(owner: OwnerCA) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = owner.issue(make_csr(key), IDENTITY, now=now(), actor="test").certificate
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_agreement is False


def test_a_csr_whose_signature_does_not_match_its_key_is_refused(owner: OwnerCA) -> None:
    der = bytearray(make_csr().public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    forged = load_csr(bytes(der))
    with pytest.raises(IssuanceError, match="signature does not match"):
        owner.issue(forged, IDENTITY, now=now(), actor="test")
    # a CSR for someone else's public key, signed by the attacker's key: no proof of possession either
    victim = ec.generate_private_key(ec.SECP256R1()).public_key()
    body = make_csr()
    swapped = bytearray(body.public_bytes(serialization.Encoding.DER))
    own_spki = body.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    victim_spki = victim.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    start = bytes(swapped).index(own_spki)
    swapped[start:start + len(own_spki)] = victim_spki  # same length for two P-256 keys
    with pytest.raises(IssuanceError, match="proof of possession"):
        owner.issue(load_csr(bytes(swapped)), IDENTITY, now=now(), actor="test")


@pytest.mark.parametrize(("key", "why"), [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA 1024"),
    (lambda: dsa.generate_private_key(key_size=2048), "dsa keys are not accepted"),
    (lambda: ec.generate_private_key(ec.SECP224R1()), "secp224r1"),
    (lambda: ec.generate_private_key(ec.SECP256K1()), "secp256k1"),
    (lambda: ec.generate_private_key(ec.BrainpoolP256R1()), "brainpoolP256r1"),
])
def test_weak_keys_are_refused_by_the_authentication_key_policy(owner: OwnerCA, key: object, why: str) -> None:
    csr = make_csr(key())  # type: ignore[operator]
    with pytest.raises(IssuanceError, match=why):
        owner.issue(csr, IDENTITY, now=now(), actor="test")
    assert owner.issued.list("SN-4711") == []


@pytest.mark.parametrize("data", [b"", b"hello", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE"
                                  b" REQUEST-----\n", b"\x30\x03\x02\x01\x00"])
def test_a_csr_that_is_not_pem_or_der_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(IssuanceError, match="not a PEM or DER certificate request"):
        load_csr(data, "dev.csr")


@pytest.mark.parametrize(("identity", "why"), [
    (IssuanceIdentity("SN-1/CN=other"), "'/'"),
    (IssuanceIdentity(" SN-1"), "white space"),
    (IssuanceIdentity("SN-1", ("not-an-oid", b"x")), "not a valid dotted OID"),
    (IssuanceIdentity("SN-1", ("7.1", b"x")), "not a valid dotted OID"),
    (IssuanceIdentity("SN-1", None, "cn", "http://mud.example/x.json"), "not an https:// URL"),
])
def test_an_identity_no_certificate_can_carry_is_refused(owner: OwnerCA, identity: IssuanceIdentity,
                                                         why: str) -> None:
    with pytest.raises(IssuanceError, match=why):
        owner.issue(make_csr(), identity, now=now(), actor="test")
    assert owner.issued.list() == []


# -- revocation and the CRL --------------------------------------------------------------------------------

def _crl_serials(owner: OwnerCA) -> frozenset[str]:
    return load_crl(owner.crl_path, {owner.issuer: owner.certificate}).revoked


def test_reissue_with_replaces_revokes_the_old_certificate_and_lists_it(owner: OwnerCA) -> None:
    first = owner.issue(make_csr(), IDENTITY, now=now(), actor="test")
    assert first.cert_serial not in _crl_serials(owner)
    second = owner.issue(make_csr(), IDENTITY, now=now(), replaces=first.cert_serial.upper(), actor="est")
    assert _crl_serials(owner) == {first.cert_serial}
    old = owner.issued.get(first.cert_serial)
    assert old is not None and old.revoked_at is not None and old.replaced_by == second.cert_serial
    denied = SqlLifecycleStore(owner.issued.store).denied_index()  # type: ignore[attr-defined]
    assert (owner.issuer, first.cert_serial) in denied


def test_replacing_another_devices_certificate_is_refused(owner: OwnerCA) -> None:
    other = owner.issue(make_csr(), IssuanceIdentity("SN-OTHER"), now=now(), actor="test")
    with pytest.raises(IssuanceError, match="belongs to device 'SN-OTHER'"):
        owner.issue(make_csr(), IDENTITY, now=now(), replaces=other.cert_serial, actor="test")
    assert owner.issued.list("SN-4711") == []  # nothing issued
    assert _crl_serials(owner) == frozenset()


def test_revoke_publishes_the_crl_at_once(owner: OwnerCA) -> None:
    issued = owner.issue(make_csr(), IDENTITY, now=now(), actor="test")
    before = owner.crl_status(now())
    assert owner.revoke(issued.cert_serial, reason="key compromise", now=now(), actor="test") is True
    assert issued.cert_serial in _crl_serials(owner)
    assert owner.revoke(issued.cert_serial, reason="again", now=now(), actor="test") is False
    assert owner.crl_status(now()).this_update is not None and before.this_update is not None
    assert not [p for p in owner.crl_path.parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(IssuanceError, match="not issued by the owner CA"):
        owner.revoke("abcdef", reason="x", now=now(), actor="test")


def test_crl_renewal_only_within_the_margin(owner: OwnerCA) -> None:
    t0 = now()
    owner.publish_crl(t0)
    first = owner.crl_status(t0)
    assert first.next_update is not None and not first.renewal_due
    assert owner.renew_crl_if_due(t0 + timedelta(hours=24)) is None  # 168 h validity, 48 h margin: far
    assert owner.crl_status(t0).next_update == first.next_update
    later = t0 + timedelta(hours=121)  # 47 h left
    assert owner.crl_status(later).renewal_due
    assert owner.renew_crl_if_due(later) == owner.crl_path
    renewed = owner.crl_status(later)
    assert renewed.next_update is not None and renewed.next_update > first.next_update
    assert not renewed.renewal_due
    expired = owner.crl_status(later + timedelta(hours=169))
    assert expired.expired and expired.renewal_due


# -- the CA's files and config -----------------------------------------------------------------------------

def test_ca_init_writes_an_owner_only_key_and_a_crl(config_file: Path) -> None:
    root = config_file.parent
    key = root / "pki" / "owner.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((root / "pki" / "owner.pem").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (root / "crl" / "owner.crl").is_file()
    out = run("config", "check", str(config_file))
    assert "OK" in out and "warning" not in out
    # a second init adopts the same files and changes nothing
    before = key.read_bytes()
    assert "adopted" in run("ca", "init", "--config", str(config_file))
    assert key.read_bytes() == before


def test_ca_key_with_wrong_permissions_or_another_key_is_refused(config_file: Path, tmp_path: Path) -> None:
    key = config_file.parent / "pki" / "owner.key"
    os.chmod(key, 0o644)
    out = run("ca", "crl", "--config", str(config_file), ok=False)
    assert "accessible by group or others (mode 0644)" in out and "chmod 600" in out
    assert "mode 0644" in run("config", "check", str(config_file), ok=False)
    os.chmod(key, 0o600)
    other = tmp_path / "other.key"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(other, 0o600)
    out = run("ca", "init", "--cert", str(config_file.parent / "pki" / "owner.pem"), "--key", str(other),
              "--config", str(config_file), ok=False)
    assert "does not belong to the CA certificate" in out


def test_a_device_certificate_cannot_be_adopted_as_the_ca(pki: DevicePki, config_file: Path) -> None:
    out = run("ca", "init", "--cert", str(pki.cert_path("idevid-ok")), "--key", str(pki.key_path("idevid-ok")),
              "--config", str(config_file), ok=False)
    assert "is not a CA certificate" in out


def test_a_ca_that_is_not_an_ldevid_anchor_is_refused(pki: DevicePki, tmp_path: Path) -> None:
    path = write_config(tmp_path, pki)
    data = yaml.safe_load(path.read_text())
    data["trust_anchors"] = data["trust_anchors"][:1]
    path.write_text(yaml.safe_dump(data))
    run("db", "init", "--config", str(path))
    out = run("ca", "init", "--config", str(path))
    assert "not one of the configured trust_anchors" in out
    with pytest.raises(ConfigError, match="not one of the configured trust_anchors"):
        OwnerCA.load(load_config(path, check_files=False), App(load_config(path, check_files=False)).store)
    assert "not one of the configured trust_anchors" in run("config", "check", str(path), ok=False)


def test_ldevid_days_above_the_anchor_maximum_is_a_config_error(pki: DevicePki, tmp_path: Path) -> None:
    path = write_config(tmp_path, pki, ldevid_days=900)
    run("db", "init", "--config", str(path))
    run("ca", "init", "--config", str(path))
    assert "exceeds the 825 days" in run("config", "check", str(path), ok=False)


def test_config_check_warns_about_an_expired_crl_and_exits_0(owner: OwnerCA, config_file: Path) -> None:
    owner.publish_crl(now() - timedelta(days=30))  # nextUpdate 23 days ago
    result = CliRunner().invoke(cli, ["config", "check", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "warning: CRL owner.crl expired at" in result.output and "1 warning(s)" in result.output
    owner.publish_crl(now() - timedelta(hours=150))  # 18 h left, margin 48 h
    assert "warning: CRL owner.crl expires in" in run("config", "check", str(config_file))


# -- the CLI -----------------------------------------------------------------------------------------------

def test_ca_issue_for_a_registered_device_takes_the_identity_from_the_registry(
        pki: DevicePki, config_file: Path, tmp_path: Path) -> None:
    c = ("--config", str(config_file))
    run("devices", "add", "--cert", str(pki.cert_path("idevid-ok")), "--state", "pending", *c)
    csr = tmp_path / "dev.csr"
    csr.write_bytes(make_csr(serial="SN-9999", cn="someone-else").public_bytes(serialization.Encoding.PEM))
    out = run("ca", "issue", "--csr", str(csr), "--device", "SN-0001", "--out", str(tmp_path / "ldev.pem"), *c)
    assert "issued LDevID serial" in out
    cert = x509.load_pem_x509_certificate((tmp_path / "ldev.pem").read_bytes())
    facts = facts_from_certificate(cert)
    assert facts.device_serial == "SN-0001" and "someone-else" not in facts.subject
    assert facts.mud_url == "https://mud.acme.example/sensor.json"
    # the LDevID is what the RADIUS path accepts: `devices add --cert` validates exactly as it does
    run("devices", "add", "--cert", str(tmp_path / "ldev.pem"), *c)
    listed = run("ca", "list", *c)
    assert facts.cert_serial in listed and "SN-0001" in listed
    run("ca", "revoke", facts.cert_serial, "--reason", "lost", *c)
    decided = run("decide", "--cert", str(tmp_path / "ldev.pem"), *c, ok=False)
    assert "revoked" in decided
    assert "lost" in run("ca", "list", *c)
    out = run("ca", "crl", "--renew-if-due", *c)
    assert out.startswith("not due:") and "1 revoked" in out
    run("devices", "decommission", "1", *c)  # the IDevID's registry entry (the LDevID is device #2)
    assert "is decommissioned" in run("ca", "issue", "--csr", str(csr), "--device", "1", "--out",
                                      str(tmp_path / "again.pem"), *c, ok=False)


def test_ca_issue_bad_inputs(config_file: Path, tmp_path: Path) -> None:
    c = ("--config", str(config_file))
    garbage = tmp_path / "bad.csr"
    garbage.write_bytes(b"not a request")
    assert "not a PEM or DER certificate request" in run("ca", "issue", "--csr", str(garbage), "--device", "x",
                                                         "--out", str(tmp_path / "o.pem"), *c, ok=False)
    weak = tmp_path / "weak.csr"
    weak.write_bytes(make_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)).public_bytes(
        serialization.Encoding.DER))
    run("devices", "add", "--issuer", "/CN=x", "--serial", "SN-W", *c)
    assert "RSA 1024 bits" in run("ca", "issue", "--csr", str(weak), "--device", "SN-W", "--out",
                                  str(tmp_path / "o.pem"), *c, ok=False)
    assert not (tmp_path / "o.pem").exists()


def test_pki_test_device_makes_802_1ar_certificates_the_registry_accepts(config_file: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "lab"
    run("pki", "test-device", "--make-ca", "--serial", "SN-LAB-1", "--hw-type", HW_TYPE, "--hw-serial", "HW-1",
        "--mud-url", "https://mud.example/lab.json", "--out-dir", str(out_dir))
    assert stat.S_IMODE((out_dir / "SN-LAB-1.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((out_dir / "test-manufacturer-ca.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((out_dir / "SN-LAB-1.pem").read_bytes())
    assert identity_from_certificate(cert) == IssuanceIdentity("SN-LAB-1", (HW_TYPE, b"HW-1"), "SN-LAB-1",
                                                               "https://mud.example/lab.json")
    assert cert.not_valid_after_utc.year == 9999  # IDevID: no well-defined expiration
    key = serialization.load_pem_private_key((out_dir / "SN-LAB-1.key").read_bytes(), None)
    assert key.public_key() == cert.public_key()
    data = yaml.safe_load(config_file.read_text())
    data["trust_anchors"].append({"name": "lab-mfr", "role": "idevid",
                                  "file": str(out_dir / "test-manufacturer-ca.pem")})
    config_file.write_text(yaml.safe_dump(data))
    c = ("--config", str(config_file))
    assert "added device" in run("devices", "add", "--cert", str(out_dir / "SN-LAB-1.pem"), *c)
    # a second device from the same test CA, and an LDevID from the owner CA (recorded, revocable)
    run("pki", "test-device", "--ca-cert", str(out_dir / "test-manufacturer-ca.pem"), "--ca-key",
        str(out_dir / "test-manufacturer-ca.key"), "--serial", "SN-LAB-2", "--key-type", "p384", "--out-dir",
        str(out_dir))
    run("devices", "add", "--cert", str(out_dir / "SN-LAB-2.pem"), *c)
    run("pki", "test-device", "--owner-ca", "--serial", "SN-LAB-1", "--name", "SN-LAB-1-ldevid", "--out-dir",
        str(out_dir), *c)
    ldevid = facts_from_certificate(x509.load_pem_x509_certificate((out_dir / "SN-LAB-1-ldevid.pem").read_bytes()))
    assert ldevid.cert_serial in run("ca", "list", *c)
    run("devices", "add", "--cert", str(out_dir / "SN-LAB-1-ldevid.pem"), *c)


def test_pki_test_device_refuses_ambiguous_issuers(tmp_path: Path) -> None:
    out = run("pki", "test-device", "--serial", "SN-1", "--out-dir", str(tmp_path), ok=False)
    assert "choose one issuer" in out


def test_the_hooks_loader_never_reads_the_ca_key(config_file: Path) -> None:
    """radiusd's hook reloads the YAML with load_config; the CA key is none of its business (it must not be able
    to read it), so only `config check` looks at the ca: files."""
    (config_file.parent / "pki" / "owner.key").unlink()
    assert load_config(config_file).ca is not None
    assert "CA key" in run("config", "check", str(config_file), ok=False)


def test_db_init_adds_the_issued_certificates_table_to_an_older_registry(config_file: Path) -> None:
    import sqlite3

    from policy.errors import StoreError
    from trustport.store.issued import SqlIssuedStore
    from trustport.store.sql import RegistryState, SqlDeviceStore

    path = config_file.parent / "registry.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE issued_certificates")
    conn.commit()
    conn.close()
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        assert store.inspect().state is RegistryState.OUTDATED
        with pytest.raises(StoreError, match="older trustport"):
            SqlIssuedStore(store).list()
    assert "upgraded" in run("db", "init", "--config", str(config_file))
    with SqlDeviceStore(f"sqlite:///{path}") as store:
        assert SqlIssuedStore(store).list() == []


def test_the_worker_renews_the_owner_ca_crl_before_it_expires(config_file: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """`trustport worker` checks the owner CA's CRL (at most once a minute) and re-issues it inside the margin."""
    from trustport.cli import base as cli_base

    data = yaml.safe_load(config_file.read_text())
    (config_file.parent / "inventory.yaml").write_text(yaml.safe_dump({"switches": {"sw": {
        "driver": "cisco_ios", "address": "127.0.0.1", "options": {"username": "u", "password_env": "NOPE"}}}}))
    data["enforcement"] = {"inventory": "inventory.yaml", "nas": [{"nas_ip": "127.0.0.1", "switch": "sw"}]}
    config_file.write_text(yaml.safe_dump(data))
    config = load_config(config_file, check_files=False)
    owner = OwnerCA.load(config, App(config).store)
    first = owner.crl_status(now())
    assert first.next_update is not None and not first.renewal_due
    run("worker", "--drain", "--config", str(config_file))  # far from due: the same CRL
    assert owner.crl_status(now()).next_update == first.next_update
    later = first.next_update - timedelta(hours=1)  # inside the renewal margin
    monkeypatch.setattr(cli_base, "now_utc", lambda: later)
    out = run("worker", "--drain", "--config", str(config_file))
    assert "CRL re-issued before it expired" in out
    renewed = owner.crl_status(later)
    assert renewed.next_update is not None and renewed.next_update > first.next_update and not renewed.renewal_due
