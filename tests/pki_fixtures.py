"""Test PKI, generated per test session with cryptography (no committed keys)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from trustport_lab.pki import Issued, crl_pem, issue_device, issue_server, make_ca, make_crl

NOW = datetime.now(UTC).replace(microsecond=0)  # the CLI reads the real clock


@dataclass
class DevicePki:
    root: Path
    cas: dict[str, Issued] = field(default_factory=dict)
    devices: dict[str, Issued] = field(default_factory=dict)

    def cert_path(self, name: str) -> Path:
        return self.root / f"{name}.pem"

    def key_path(self, name: str) -> Path:
        return self.root / f"{name}.key"


def sha1_signed_device(pki: DevicePki, now: datetime) -> x509.Certificate:
    """cryptography refuses to sign with SHA-1, so the weak certificate is made with the openssl CLI."""
    subj = "/C=DE/O=Acme Devices/CN=sha1.devices.example/serialNumber=SN-SHA1"
    key, csr, crt = pki.root / "sha1.key", pki.root / "sha1.csr", pki.root / "sha1.pem"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", subj], check=True, capture_output=True)
    ext = pki.root / "sha1.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki.cert_path("idevid-ca")),
                    "-CAkey", str(pki.key_path("idevid-ca")), "-CAcreateserial", "-sha1", "-days", "30",
                    "-extfile", str(ext), "-out", str(crt)], check=True, capture_output=True)
    return x509.load_pem_x509_certificate(crt.read_bytes())


def build_test_pki(root: Path, now: datetime = NOW) -> DevicePki:
    pki = DevicePki(root)
    pki.cas = {
        "idevid": make_ca("Acme Manufacturer IDevID CA", "Acme Devices", now=now),
        "ldevid": make_ca("Site LDevID CA", "Example Site", now=now),
        "rogue": make_ca("Rogue CA", "Evil", now=now),
        # same subject as the IDevID CA, different key: a look-alike issuer
        "lookalike": make_ca("Acme Manufacturer IDevID CA", "Acme Devices", now=now),
        "server": make_ca("RADIUS server CA", "Example Site", now=now),
    }
    for name, ca in pki.cas.items():
        ca.write(root, f"{name}-ca")
    issue_server(pki.cas["server"], "radius.test", now=now).write(root, "server")
    idev, ldev = pki.cas["idevid"], pki.cas["ldevid"]
    specs: dict[str, Issued] = {
        "idevid-ok": issue_device(idev, cn="idev.example", serial_number="SN-0001", now=now,
                                  mud_url="https://mud.acme.example/sensor.json"),
        "ldevid-ok": issue_device(ldev, cn="ldev.example", serial_number="SN-0002", now=now,
                                  not_after=now + timedelta(days=365)),
        "ldevid-revoked": issue_device(ldev, cn="revoked.example", serial_number="SN-0003", now=now,
                                       not_after=now + timedelta(days=365)),
        "expired": issue_device(ldev, cn="expired.example", serial_number="SN-0004", now=now,
                                not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)),
        "not-yet-valid": issue_device(idev, cn="future.example", serial_number="SN-0005", now=now,
                                      not_before=now + timedelta(days=2)),
        "no-serial": issue_device(idev, cn="noserial.example", serial_number=None, now=now),
        "leaf-is-ca": issue_device(idev, cn="ca-leaf.example", serial_number="SN-0006", now=now, is_ca=True),
        "eku-server-only": issue_device(idev, cn="server-eku.example", serial_number="SN-0007", now=now,
                                        eku=(ExtendedKeyUsageOID.SERVER_AUTH,)),
        "no-eku": issue_device(idev, cn="no-eku.example", serial_number="SN-0008", now=now, eku=None),
        "no-digital-signature": issue_device(idev, cn="nods.example", serial_number="SN-0009", now=now,
                                             digital_signature=False),
        "rsa1024": issue_device(idev, cn="rsa1024.example", serial_number="SN-0010", now=now, key_kind="rsa1024"),
        "rsa2048": issue_device(idev, cn="rsa2048.example", serial_number="SN-0011", now=now, key_kind="rsa2048"),
        "p224": issue_device(idev, cn="p224.example", serial_number="SN-0012", now=now, key_kind="p224"),
        "p384": issue_device(idev, cn="p384.example", serial_number="SN-0013", now=now, key_kind="p384"),
        "rogue": issue_device(pki.cas["rogue"], cn="rogue.example", serial_number="SN-0014", now=now),
        "lookalike": issue_device(pki.cas["lookalike"], cn="lookalike.example", serial_number="SN-0015", now=now),
        "mud-http": issue_device(idev, cn="mudhttp.example", serial_number="SN-0016", now=now,
                                 mud_url="http://mud.acme.example/plain.json"),
        "mud-garbage": issue_device(idev, cn="mudbad.example", serial_number="SN-0017", now=now,
                                    mud_der=b"\x04\x03abc"),
    }
    for name, issued in specs.items():
        issued.write(root, name)
    pki.devices = specs
    crl_dir = root / "crl"
    crl_dir.mkdir(exist_ok=True)
    (crl_dir / "ldevid.crl").write_bytes(
        crl_pem(make_crl(ldev, [specs["ldevid-revoked"].cert.serial_number], now=now)))
    return pki
