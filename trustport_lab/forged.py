"""The lab's impostors: certificates that try to pass for the registered LDevID device SN-1001, and a registered
device whose key FreeRADIUS must refuse. Each gets a real EAP-TLS attempt like every other lab scenario."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from trustport_lab.pki import Issued, issue_device, make_ca

VICTIM = "SN-1001"


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value, _type=_ASN1Type.UTF8String) for oid, value in attrs])


def _victim_name() -> x509.Name:
    return _name((NameOID.COUNTRY_NAME, "DE"), (NameOID.ORGANIZATION_NAME, "Acme Devices"),
                 (NameOID.COMMON_NAME, f"{VICTIM.lower()}.devices.example"), (NameOID.SERIAL_NUMBER, VICTIM))


def forge(kind: str, cas: dict[str, Issued], now: datetime, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write the forged certificate ``kind`` (leaf followed by the chain the client sends) and its key."""
    idev, ldev = cas["idevid"], cas["ldevid"]
    year = now + timedelta(days=365)
    chain: list[x509.Certificate] = []
    if kind == "lookalike-ca":
        # a CA under the MANUFACTURER anchor copying the LDevID CA's name, key id, serial and validity
        ski = ldev.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        lookalike = make_ca("unused", "unused", now=now, issuer=idev, name=ldev.cert.subject, key_kind="rsa2048",
                            serial=ldev.cert.serial_number, key_id=ski, path_length=0,
                            validity=(ldev.cert.not_valid_before_utc, ldev.cert.not_valid_after_utc))
        leaf = issue_device(lookalike, cn="x", serial_number=None, now=now, subject=_victim_name(), not_after=year)
        chain = [lookalike.cert]
    elif kind == "cn-hides-serial":
        leaf = issue_device(ldev, cn="x", serial_number=None, now=now, not_after=year, subject=_name(
            (NameOID.COUNTRY_NAME, "DE"), (NameOID.COMMON_NAME, f"evil/serialNumber={VICTIM}"),
            (NameOID.SERIAL_NUMBER, "SN-9001")))
    elif kind == "second-certificate":
        leaf = issue_device(ldev, cn=f"{VICTIM.lower()}.devices.example", serial_number=VICTIM, now=now,
                            not_after=year)
    elif kind == "dsa-key":
        leaf = issue_device(ldev, cn="sn-1105.devices.example", serial_number="SN-1105", now=now, not_after=year,
                            key_kind="dsa2048")
    else:
        raise ValueError(f"unknown forgery {kind!r}")
    cert_path, key_path = leaf.write(directory, stem)
    cert_path.write_bytes(leaf.cert_pem() + b"".join(Issued(c, leaf.key).cert_pem() for c in chain))
    return cert_path, key_path
