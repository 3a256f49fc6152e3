"""The hostile certificate corpus: every class of forged or malformed device certificate trustport has been
attacked with, and the genuine controls beside them, generated at test time against a lab's PKI.

Each case names what it tries (most pose as the registered LDevID device ``VICTIM``), the files an 802.1X client
would present (leaf + the chain it sends), and what must happen: ``reject``, or ``admit`` (accept or quarantine,
whichever the policy gives: the point of a control is that both paths agree and let it in). Registration of
the controls' devices is part of the case, so that a forged copy meets a registered, bound victim.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from trustport_lab.pki import NO_EXPIRY, Issued, issue_device, make_ca

CASE_NAMES = (
    "lookalike-ca",
    "lookalike-aki-dirname",
    "lookalike-aki-truncated",
    "lookalike-aki-junk",
    "lookalike-ca-other-key",
    "lookalike-other-key-no-aki",
    "lookalike-other-key-aki-dirname",
    "cn-hides-serial",
    "cn-backslash",
    "cn-plus-serial",
    "multi-valued-rdn",
    "two-serials",
    "escaped-printable",
    "control-serial",
    "slash-in-issuer",
    "long-subject",
    "second-certificate",
    "dsa-key",
    "rsa1024-key",
    "p224-key",
    "secp256k1-key",
    "brainpool-key",
    "ldevid-never-expires",
    "ldevid-too-long",
    "expired",
    "sha1-signature",
    "unconfigured-intermediate",
    "chain-too-deep",
    "rogue-ca",
    "control-p256",
    "control-rsa2048",
    "control-p384",
    "control-p521",
    "control-ed25519",
    "control-ed448",
    "control-idevid-unknown",
    "control-utf8-serial",
    "control-plus-in-cn",
    "control-600-char-subject",
    "hidden-second-serial",
    "control-configured-intermediate",
)
VICTIM = "SN-1001"  # the lab's operational, attested LDevID device (production VLAN 30)
A = x509.NameAttribute


@dataclass(frozen=True)
class HostileCase:
    name: str
    attack: str  # what it tries, in one line
    expect: str  # "reject" or "admit"
    leaf: Issued
    chain: tuple[x509.Certificate, ...] = ()
    register: str | None = None  # state to register the leaf's device in before the attempt
    claims: str | None = None  # the registered serial it poses as (its record must stay untouched)
    files: dict[str, Path] = field(default_factory=dict)

    def write(self, directory: Path) -> tuple[Path, Path]:
        """``NAME.pem`` holds the leaf followed by the chain the client sends; ``NAME.key`` its key."""
        cert_path, key_path = self.leaf.write(directory, self.name)
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf.cert, *self.chain))
        cert_path.write_bytes(pem)
        return cert_path, key_path


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    """UTF8String values throughout, so any character can be tried (PrintableString refuses most)."""
    return x509.Name([A(oid, value, _type=_ASN1Type.UTF8String) for oid, value in attrs])


def _ldev_name(serial: str, cn: str | None = None) -> x509.Name:
    return _name((NameOID.COUNTRY_NAME, "DE"), (NameOID.ORGANIZATION_NAME, "Acme Devices"),
                 (NameOID.COMMON_NAME, cn or f"{serial.lower()}.devices.example"), (NameOID.SERIAL_NUMBER, serial))


def _ski(ca: Issued) -> bytes:
    return ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def openssl_signed(ca: Issued, serial: str, digest: str, workdir: Path) -> Issued:
    """A device certificate signed with ``digest`` by the openssl CLI: cryptography refuses to sign with SHA-1."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = ca.write(workdir, "openssl-ca")
    key, csr, crt, ext = (workdir / f"{serial}.{s}" for s in ("key", "csr", "pem", "ext"))
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", f"/C=DE/O=Acme Devices/CN=x/serialNumber={serial}"],
                   check=True, capture_output=True)
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                    "-set_serial", str(int.from_bytes(os.urandom(8), "big")), f"-{digest}", "-days", "365",
                    "-extfile", str(ext), "-out", str(crt)], check=True, capture_output=True)
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return Issued(x509.load_pem_x509_certificate(crt.read_bytes()), private)


def build_corpus(cas: dict[str, Issued], now: datetime, workdir: Path) -> list[HostileCase]:
    idev, ldev = cas["idevid"], cas["ldevid"]
    year = now + timedelta(days=365)

    def ldevid(serial: str, **kw: object) -> Issued:
        kw.setdefault("not_after", year)
        return issue_device(ldev, cn=f"{serial.lower()}.devices.example", serial_number=serial, now=now,
                            **kw)  # type: ignore[arg-type]

    # 1. A CA under the MANUFACTURER anchor that copies the LDevID CA's name, key id, serial and validity.
    lookalike = make_ca("unused", "unused", now=now, issuer=idev, name=ldev.cert.subject,
                        serial=ldev.cert.serial_number, key_id=_ski(ldev),
                        validity=(ldev.cert.not_valid_before_utc, ldev.cert.not_valid_after_utc), path_length=0)
    # The same with another key type: OpenSSL then does not take the real LDevID CA as the leaf's issuer (its key
    # cannot have made the signature) and verifies leaf -> look-alike -> manufacturer anchor.
    lookalike_rsa = make_ca("unused", "unused", now=now, issuer=idev, name=ldev.cert.subject, key_kind="rsa2048",
                            serial=ldev.cert.serial_number, key_id=_ski(ldev),
                            validity=(ldev.cert.not_valid_before_utc, ldev.cert.not_valid_after_utc), path_length=0)
    victim_name = _ldev_name(VICTIM)

    def under_lookalike(aki: x509.AuthorityKeyIdentifier | None, ca: Issued = lookalike,
                        omit_aki: bool = False) -> Issued:
        return issue_device(ca, cn="victim.example", serial_number=None, now=now, subject=victim_name,
                            not_after=year, aki=aki, omit_aki=omit_aki)

    # 2. Names that hide another attribute in text
    sub = make_ca("Acme Issuing CA 2", "Acme Devices", now=now, issuer=idev, path_length=0)
    sub_sub = make_ca("Acme Issuing CA 3", "Acme Devices", now=now, issuer=sub, path_length=None)
    slash_issuer = make_ca("unused", "unused", now=now, name=_name(
        (NameOID.COUNTRY_NAME, "DE"), (NameOID.ORGANIZATION_NAME, "Example Site/CN=trustport LDevID CA")))
    cases: list[Callable[[], HostileCase]] = [
        lambda: HostileCase("lookalike-ca", "CA under the IDevID anchor copying the LDevID CA's name+key id+serial",
                            "reject", under_lookalike(None), (lookalike.cert,), claims=VICTIM),
        lambda: HostileCase("lookalike-aki-dirname", "same, leaf AKI without keyid (DirName + serial only)",
                            "reject", under_lookalike(x509.AuthorityKeyIdentifier(
                                None, [x509.DirectoryName(ldev.cert.subject)], ldev.cert.serial_number)),
                            (lookalike.cert,), claims=VICTIM),
        lambda: HostileCase("lookalike-aki-truncated", "same, leaf AKI keyid with a byte dropped", "reject",
                            under_lookalike(x509.AuthorityKeyIdentifier(_ski(ldev)[:-1], None, None)),
                            (lookalike.cert,), claims=VICTIM),
        lambda: HostileCase("lookalike-aki-junk", "same, leaf AKI keyid with trailing junk", "reject",
                            under_lookalike(x509.AuthorityKeyIdentifier(_ski(ldev) + b"\x00junk", None, None)),
                            (lookalike.cert,), claims=VICTIM),
        lambda: HostileCase("lookalike-ca-other-key", "look-alike LDevID CA with an RSA key (OpenSSL verifies it "
                            "up to the IDevID anchor)", "reject", under_lookalike(None, lookalike_rsa),
                            (lookalike_rsa.cert,), claims=VICTIM),
        lambda: HostileCase("lookalike-other-key-no-aki", "same, leaf without an authorityKeyIdentifier", "reject",
                            under_lookalike(None, lookalike_rsa, omit_aki=True), (lookalike_rsa.cert,),
                            claims=VICTIM),
        lambda: HostileCase("lookalike-other-key-aki-dirname", "same, leaf AKI DirName + serial only", "reject",
                            under_lookalike(x509.AuthorityKeyIdentifier(
                                None, [x509.DirectoryName(ldev.cert.subject)], ldev.cert.serial_number),
                                lookalike_rsa), (lookalike_rsa.cert,), claims=VICTIM),
        lambda: HostileCase("cn-hides-serial", "LDevID CA cert whose CN carries '/serialNumber=<victim>'", "reject",
                            ldevid("SN-9901", subject=_name(
                                (NameOID.COUNTRY_NAME, "DE"), (NameOID.COMMON_NAME, f"evil/serialNumber={VICTIM}"),
                                (NameOID.SERIAL_NUMBER, "SN-9901"))), claims=VICTIM),
        lambda: HostileCase("cn-backslash", "CN ending in a backslash before the victim's serialNumber", "reject",
                            ldevid(VICTIM, subject=_name((NameOID.COMMON_NAME, "x\\"),
                                                         (NameOID.SERIAL_NUMBER, VICTIM))), claims=VICTIM),
        lambda: HostileCase("cn-plus-serial", "CN carrying '+serialNumber=<victim>'", "reject",
                            ldevid("SN-9902", subject=_name(
                                (NameOID.COMMON_NAME, f"x+serialNumber={VICTIM}"), (NameOID.SERIAL_NUMBER, "SN-9902"))),
                            claims=VICTIM),
        lambda: HostileCase("multi-valued-rdn", "serialNumber inside a multi-valued RDN with the CN", "reject",
                            ldevid(VICTIM, subject=x509.Name([x509.RelativeDistinguishedName([
                                A(NameOID.COMMON_NAME, "x"), A(NameOID.SERIAL_NUMBER, VICTIM)])])), claims=VICTIM),
        lambda: HostileCase("two-serials", "two serialNumber attributes, the victim's second", "reject",
                            ldevid("SN-9903", subject=_name((NameOID.SERIAL_NUMBER, "SN-9903"),
                                                            (NameOID.SERIAL_NUMBER, VICTIM))), claims=VICTIM),
        lambda: HostileCase("escaped-printable", "a literal '\\x41' in the serial (poses as an escape)", "reject",
                            ldevid("SN-\\x41", subject=_ldev_name("SN-\\x41"))),
        lambda: HostileCase("control-serial", "newline and ANSI escape in the serial", "reject",
                            ldevid("SN-1\n\x1b[2J", subject=_ldev_name("SN-1\n\x1b[2J", cn="ctl.example"))),
        lambda: HostileCase("slash-in-issuer", "unknown CA whose O carries '/CN=<LDevID CA name>'", "reject",
                            issue_device(slash_issuer, cn="x", serial_number=VICTIM, now=now, not_after=year),
                            claims=VICTIM),
        lambda: HostileCase("long-subject", "a 2,000-character serialNumber (past FreeRADIUS's 1023)", "reject",
                            issue_device(idev, cn="long.example", serial_number="S" * 2000, now=now)),
        lambda: HostileCase("second-certificate", "another genuine LDevID with the victim's serial", "reject",
                            ldevid(VICTIM), claims=VICTIM),
        lambda: HostileCase("dsa-key", "registered LDevID with a DSA-2048 key", "reject",
                            ldevid("SN-9910", key_kind="dsa2048"), register="operational"),
        lambda: HostileCase("rsa1024-key", "registered LDevID with RSA-1024", "reject",
                            ldevid("SN-9911", key_kind="rsa1024"), register="operational"),
        lambda: HostileCase("p224-key", "registered LDevID with P-224", "reject",
                            ldevid("SN-9912", key_kind="p224"), register="operational"),
        lambda: HostileCase("secp256k1-key", "registered LDevID with secp256k1", "reject",
                            ldevid("SN-9913", key_kind="secp256k1"), register="operational"),
        lambda: HostileCase("brainpool-key", "registered LDevID with brainpoolP256r1", "reject",
                            ldevid("SN-9914", key_kind="brainpool256"), register="operational"),
        lambda: HostileCase("ldevid-never-expires", "registered LDevID with notAfter 99991231235959Z", "reject",
                            ldevid("SN-9915", not_after=NO_EXPIRY), register="operational"),
        lambda: HostileCase("ldevid-too-long", "registered LDevID valid for 5 years (> 825 days)", "reject",
                            ldevid("SN-9916", not_after=now + timedelta(days=5 * 365)), register="operational"),
        lambda: HostileCase("expired", "registered LDevID that expired yesterday", "reject",
                            ldevid("SN-9917", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)),
                            register="operational"),
        lambda: HostileCase("sha1-signature", "registered LDevID signed with SHA-1 (made by the openssl CLI)", "reject",
                            openssl_signed(ldev, "SN-9921", "sha1", workdir / "openssl"), register="operational"),
        lambda: HostileCase("unconfigured-intermediate", "IDevID under a sub-CA the config does not name", "reject",
                            issue_device(sub, cn="sub.example", serial_number="SN-9918", now=now), (sub.cert,)),
        lambda: HostileCase("chain-too-deep", "IDevID two intermediates below its anchor", "reject",
                            issue_device(sub_sub, cn="deep.example", serial_number="SN-9919", now=now),
                            (sub_sub.cert, sub.cert)),
        lambda: HostileCase("rogue-ca", "a CA that is no anchor", "reject",
                            issue_device(cas["rogue"], cn="rogue.example", serial_number="SN-9920", now=now)),
        # the genuine controls: the same paths must let these in
        lambda: HostileCase("control-p256", "genuine registered LDevID, P-256", "admit", ldevid("SN-9930"),
                            register="operational"),
        lambda: HostileCase("control-rsa2048", "genuine registered LDevID, RSA-2048", "admit",
                            ldevid("SN-9931", key_kind="rsa2048"), register="operational"),
        lambda: HostileCase("control-p384", "genuine registered LDevID, P-384", "admit",
                            ldevid("SN-9932", key_kind="p384"), register="operational"),
        lambda: HostileCase("control-p521", "genuine registered LDevID, P-521", "admit",
                            ldevid("SN-9933", key_kind="p521"), register="operational"),
        lambda: HostileCase("control-ed25519", "genuine registered LDevID, Ed25519", "admit",
                            ldevid("SN-9934", key_kind="ed25519"), register="operational"),
        lambda: HostileCase("control-ed448", "genuine registered LDevID, Ed448", "admit",
                            ldevid("SN-9935", key_kind="ed448"), register="operational"),
        lambda: HostileCase("control-idevid-unknown", "genuine unknown IDevID (never expires)", "admit",
                            issue_device(idev, cn="new.example", serial_number="SN-9936", now=now)),
        lambda: HostileCase("control-utf8-serial", "genuine IDevID with serial HLD-ü-0205", "admit",
                            issue_device(idev, cn="x", serial_number=None, now=now, subject=_name(
                                (NameOID.COMMON_NAME, "hld.example"), (NameOID.SERIAL_NUMBER, "HLD-ü-0205")))),
        lambda: HostileCase("control-plus-in-cn", "genuine IDevID whose CN has a literal '+'", "admit",
                            issue_device(idev, cn="a+b.example", serial_number="SN-9937", now=now)),
        lambda: HostileCase("control-600-char-subject", "genuine IDevID with a 600-character subject", "admit",
                            issue_device(idev, cn="x", serial_number="SN-9938", now=now, subject=_name(
                                *[(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i:02d} " + "u" * 50) for i in range(10)],
                                (NameOID.SERIAL_NUMBER, "SN-9938")))),
        lambda: HostileCase("hidden-second-serial", "a second serialNumber past FreeRADIUS's buffer: both paths "
                            "see only the first (an unknown device)", "admit",
                            issue_device(idev, cn="x", serial_number=None, now=now, subject=_name(
                                (NameOID.SERIAL_NUMBER, "SN-9940"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "u" * 1100),
                                (NameOID.SERIAL_NUMBER, VICTIM)))),
        lambda: HostileCase("control-configured-intermediate", "genuine IDevID under the configured issuing CA",
                            "admit", issue_device(cas["idevid-issuing"], cn="issued.example",
                                                  serial_number="SN-9939", now=now), (cas["idevid-issuing"].cert,)),
    ]
    return [make() for make in cases]
