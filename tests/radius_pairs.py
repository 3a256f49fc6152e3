"""Build the request tuple FreeRADIUS 3.2.1 hands the hook in check-eap-tls, from a real certificate.

Names and value formats follow what was observed (../shared/reference/freeradius-python3.md §3); the
integration tests check the real thing.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from policy.dn import render_oneline
from policy.x509facts import MUD_URL_OID, facts_from_certificate, key_id_hex

Pairs = tuple[tuple[str, str], ...]


def _asn1_time(cert_time: object) -> str:
    from datetime import datetime

    assert isinstance(cert_time, datetime)
    if cert_time.year >= 2050:
        return cert_time.strftime("%Y%m%d%H%M%SZ")
    return cert_time.strftime("%y%m%d%H%M%SZ")


def freeradius_pairs(cert: x509.Certificate, issuer: x509.Certificate, *, mac: str = "02-00-00-00-00-01") -> Pairs:
    facts = facts_from_certificate(cert)
    pairs: list[tuple[str, str]] = [
        ("User-Name", facts.common_name or "device"), ("NAS-IP-Address", "127.0.0.1"),
        ("Calling-Station-Id", mac), ("NAS-Port", "5"), ("EAP-Type", "TLS"),
        # depth 1: the certificate that signed the client's (FreeRADIUS exports it before the client's own)
        ("TLS-Cert-Serial", format(issuer.serial_number, "040x")),
        ("TLS-Cert-Expiration", _asn1_time(issuer.not_valid_after_utc)),
        ("TLS-Cert-Valid-Since", _asn1_time(issuer.not_valid_before_utc)),
        ("TLS-Cert-Subject", render_oneline(issuer.subject)), ("TLS-Cert-Issuer", render_oneline(issuer.issuer)),
        ("TLS-Cert-Common-Name", "CA"),
        ("TLS-Client-Cert-Serial", format(cert.serial_number, "040x")),
        ("TLS-Client-Cert-Expiration", _asn1_time(cert.not_valid_after_utc)),
        ("TLS-Client-Cert-Valid-Since", _asn1_time(cert.not_valid_before_utc)),
        ("TLS-Client-Cert-Subject", render_oneline(cert.subject)),
        ("TLS-Client-Cert-Issuer", render_oneline(cert.issuer)),
    ]
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cn:
        pairs.append(("TLS-Client-Cert-Common-Name", str(cn[0].value)))
    try:
        bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
        assert isinstance(bc, x509.BasicConstraints)
        pairs.append(("TLS-Client-Cert-X509v3-Basic-Constraints", "CA:TRUE" if bc.ca else "CA:FALSE"))
    except x509.ExtensionNotFound:
        pass
    if facts.key_usage is not None:
        pairs.append(("TLS-Client-Cert-X509v3-Key-Usage", ", ".join(facts.key_usage)))
    if facts.eku_oids is not None:
        pairs.append(("TLS-Client-Cert-X509v3-Extended-Key-Usage", "TLS Web Client Authentication"))
        pairs += [("TLS-Client-Cert-X509v3-Extended-Key-Usage-OID", oid) for oid in facts.eku_oids]
    if facts.authority_key_id:
        pairs.append(("TLS-Client-Cert-X509v3-Authority-Key-Identifier", facts.authority_key_id))
    try:
        mud = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(MUD_URL_OID)).value
        assert isinstance(mud, x509.UnrecognizedExtension)
        pairs.append((f"TLS-Client-Cert-{MUD_URL_OID}", "0x" + mud.value.hex()))
    except x509.ExtensionNotFound:
        pass
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    pairs.append(("TLS-Cert-X509v3-Subject-Key-Identifier", key_id_hex(ski.digest)))
    return tuple(pairs)
