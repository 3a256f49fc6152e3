"""``trustport pki test-device``: 802.1AR-style test IDevIDs and LDevIDs for the lab and pilots (no openssl CLI).

Certificates are built by ``policy.issuance`` (the owner CA's builder), so a test device looks exactly like what
trustport issues and accepts: subject serialNumber, hardwareModuleName, MUD URL. Keys are written owner-only.
Needs nothing from the ``lab`` extra.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from policy.certificates import NO_EXPIRY
from policy.errors import IssuanceError
from policy.issuance import (
    CLOCK_SKEW,
    IssuanceIdentity,
    SigningKey,
    build_ca_certificate,
    build_device_certificate,
)
from policy.x509facts import format_serial
from trustport.cli import base as cli_base
from trustport.files import write_private
from trustport.services.ca import random_serial, read_ca_files

NO_EXPIRY_TEXT = "99991231235959Z"
KEY_TYPES = ("p256", "p384", "p521", "rsa2048", "rsa3072", "rsa4096")


def new_key(kind: str) -> SigningKey:
    curves: dict[str, ec.EllipticCurve] = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
    if kind in curves:
        return ec.generate_private_key(curves[kind])
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))


def _key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(directory: Path, stem: str, cert: x509.Certificate, key: SigningKey) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(key_path, _key_pem(key))
    return cert_path, key_path


def _hardware_module_name(hw_type: str | None, hw_serial: str | None) -> tuple[str, bytes] | None:
    if hw_type is None and hw_serial is None:
        return None
    if hw_type is None or hw_serial is None:
        raise click.UsageError("give both --hw-type OID and --hw-serial, or neither")
    return hw_type, hw_serial.encode()


@click.group("pki")
def pki_group() -> None:
    """Test PKI for labs and pilots (802.1AR device certificates)."""


@pki_group.command("test-device")
@click.option("--serial", "serial_number", required=True, help="device serial (subject serialNumber)")
@click.option("--cn", "common_name", help="subject CN (default: the serial)")
@click.option("--hw-type", help="hardwareModuleName hwType OID (RFC 4108), e.g. 1.3.6.1.4.1.99999.1")
@click.option("--hw-serial", help="hardwareModuleName hwSerialNum (text)")
@click.option("--mud-url", help="MUD URL extension (https://...)")
@click.option("--ca-cert", type=click.Path(path_type=Path), help="issuing CA certificate (PEM)")
@click.option("--ca-key", type=click.Path(path_type=Path), help="issuing CA key (PEM, owner-only)")
@click.option("--make-ca", is_flag=True, help="create a test manufacturer CA in --out-dir (test-manufacturer-ca.*)")
@click.option("--ca-org", default="Test Manufacturer", show_default=True, help="with --make-ca: its organization")
@click.option("--owner-ca", is_flag=True, help="issue an LDevID from the configured owner CA (recorded, revocable)")
@click.option("--key-type", default="p256", show_default=True, type=click.Choice(KEY_TYPES))
@click.option("--days", type=click.IntRange(1, 36500),
              help=f"validity (default: IDevID none, i.e. {NO_EXPIRY_TEXT}; owner CA: ca.ldevid_days)")
@click.option("--out-dir", type=click.Path(path_type=Path), required=True)
@click.option("--name", "stem", help="file stem (default: the serial)")
@click.option("--config", "config_file", type=click.Path(path_type=Path), envvar="TRUSTPORT_CONFIG",
              default=Path("trustport.yaml"), show_default=True, help="with --owner-ca: the trustport config")
def test_device(serial_number: str, common_name: str | None, hw_type: str | None, hw_serial: str | None,
                mud_url: str | None, ca_cert: Path | None, ca_key: Path | None, make_ca: bool, ca_org: str,
                owner_ca: bool, key_type: str, days: int | None, out_dir: Path, stem: str | None,
                config_file: Path) -> None:
    """Write STEM.pem + STEM.key (0600): an IDevID from a (test) manufacturer CA, or an LDevID from the owner CA."""
    from policy.dn import DnError, canonical_serial

    try:
        serial_number = canonical_serial(serial_number, "--serial")
    except DnError as exc:
        raise IssuanceError(str(exc)) from exc
    identity = IssuanceIdentity(serial_number, _hardware_module_name(hw_type, hw_serial),
                                common_name or serial_number, mud_url)
    stem = stem or "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in serial_number)
    now = cli_base.now_utc()
    key = new_key(key_type)
    if sum((owner_ca, make_ca, ca_cert is not None)) != 1:
        raise click.UsageError("choose one issuer: --owner-ca, --make-ca, or --ca-cert/--ca-key")
    if owner_ca:
        _owner_ca_ldevid(config_file, identity, key, out_dir, stem, now)
        return
    if make_ca:
        ca_key_obj = new_key("p256")
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca_org),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"{ca_org} IDevID CA")])
        ca = build_ca_certificate(ca_key_obj, subject, serial=random_serial(), now=now,
                                  validity=timedelta(days=36500))
        paths = _write(out_dir, "test-manufacturer-ca", ca, ca_key_obj)
        cli_base.echo_safe(f"test manufacturer CA: {paths[0]} (key {paths[1]}); configure it as a trust anchor "
                           "with role idevid")
    else:
        if ca_key is None:
            raise click.UsageError("--ca-cert needs --ca-key")
        assert ca_cert is not None
        certs, ca_key_obj = read_ca_files(ca_cert, ca_key)
        ca = certs[0]

    not_before = now - CLOCK_SKEW
    not_after = not_before + timedelta(days=days) if days else NO_EXPIRY  # 802.1AR: IDevIDs do not expire
    cert = build_device_certificate(key.public_key(), identity, ca_cert=ca, ca_key=ca_key_obj,
                                    serial=random_serial(), not_before=not_before, not_after=not_after)
    cert_path, key_path = _write(out_dir, stem, cert, key)
    cli_base.echo_safe(f"device {serial_number}: {cert_path} (serial {format_serial(cert.serial_number)}), key "
                       f"{key_path} (0600)")


def _owner_ca_ldevid(config_file: Path, identity: IssuanceIdentity, key: SigningKey, out_dir: Path, stem: str,
                     now: datetime) -> None:
    from cryptography.hazmat.primitives import hashes

    from trustport.app import App
    from trustport.settings.config import load_config

    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, identity.serial_number)]))
           .sign(key, hashes.SHA256()))
    config = load_config(config_file, check_files=False)
    with App(config) as app:
        issued = app.owner_ca.issue(csr, identity, now=now, actor="pki test-device")
    cert_path, key_path = _write(out_dir, stem, issued.certificate, key)
    cli_base.echo_safe(f"LDevID {identity.serial_number}: {cert_path} (serial {issued.cert_serial}), key {key_path} "
                       "(0600)")
