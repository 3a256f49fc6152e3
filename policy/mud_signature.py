"""MUD files as published and kept: where the signature and local copies live, the detached CMS signature
(RFC 8520 section 13) and signed loading.

Pure: bytes, trusted certificates and ``now`` in; the signer certificate or a ``MudSignatureError`` out. A file
that fails here gives the device no MUD-derived policy, which the rules treat as "no MUD".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char
from pyasn1_modules import rfc5280, rfc5652

from policy.mud import MudProfile, MudSignatureError, parse_mud

MAX_SIGNATURE_BYTES = 64 * 1024
MUD_SIGNER_OID = "1.3.6.1.5.5.7.1.30"


def signature_url(profile: MudProfile) -> str:
    """Where the detached signature lives: ``mud-signature`` if given, else the MUD URL with ``.json`` -> ``.p7s``."""
    if profile.mud_signature:
        return profile.mud_signature
    base = profile.mud_url.split("?", 1)[0]
    return (base.removesuffix(".json")) + ".p7s"


# --- where a MUD file and its signature are kept ---------------------------------------------------------------
# The one place these rules live: the RADIUS-path lookup, the local directory reader and ``trustport mud fetch``
# all use them.

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._~-]{0,200}$")


def local_file_names(url: str) -> tuple[str, ...]:
    """Names tried for ``url`` in a local MUD directory, in order; the first is canonical (what a fetch writes).

    ``<sha256 hex of the URL as UTF-8>.json`` is unambiguous for any URL; the URL's last path segment (and, without
    a ``.json`` suffix, that segment plus ``.json``) is readable for hand-copied files, and safe because the file's
    ``mud-url`` must still equal ``url``. Segments that are not plain file names (``..``, dot files, ``%``) are
    never tried.
    """
    names = [hashlib.sha256(url.encode("utf-8")).hexdigest() + ".json"]
    segment = urlsplit(url).path.rsplit("/", 1)[-1]
    if _SAFE_SEGMENT.match(segment):
        names.append(segment)
        if not segment.endswith(".json"):
            names.append(segment + ".json")
    return tuple(names)


def local_signature_name(file_name: str) -> str:
    """The detached signature beside a local MUD file: ``.json`` replaced by (or, without it, followed by) ``.p7s``."""
    return file_name.removesuffix(".json") + ".p7s"


# --- detached CMS signature (RFC 5652 SignedData, RFC 8520 section 13) --------------------------------------
# cryptography can build CMS but not verify it: the structure is decoded with pyasn1-modules' RFC 5652 and RFC 5280
# modules (strict DER: what does not re-encode to the same bytes is refused, so BER indefinite lengths and
# non-minimal encodings never pass), and the maths and the chain are left to cryptography.

_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_CONTENT_TYPES = frozenset({"1.2.840.113549.1.7.1", "1.2.840.113549.1.9.16.1.41"})  # id-data, id-ct-mudtype
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256, "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512}
_WEAK_DIGESTS = {"1.3.14.3.2.26": "SHA-1", "1.2.840.113549.2.5": "MD5"}
_SIGNATURES: dict[str, tuple[str, type[hashes.HashAlgorithm] | None]] = {
    "1.2.840.10045.2.1": ("ecdsa", None), "1.2.840.10045.4.3.2": ("ecdsa", hashes.SHA256),
    "1.2.840.10045.4.3.3": ("ecdsa", hashes.SHA384), "1.2.840.10045.4.3.4": ("ecdsa", hashes.SHA512),
    "1.2.840.113549.1.1.1": ("rsa", None), "1.2.840.113549.1.1.11": ("rsa", hashes.SHA256),
    "1.2.840.113549.1.1.12": ("rsa", hashes.SHA384), "1.2.840.113549.1.1.13": ("rsa", hashes.SHA512),
    "1.3.101.112": ("ed25519", None), "1.3.101.113": ("ed448", None)}
_MAX_SIGNERS = 4


def _decode(data: bytes, spec: Any, what: str) -> Any:
    """One DER value of ``spec``; ValueError (with ``what``) for trailing bytes, BER, or anything malformed."""
    try:
        value, rest = der_decoder.decode(data, asn1Spec=spec)
        if rest:
            raise ValueError(f"{len(rest)} bytes after the value")
        if der_encoder.encode(value) != data:
            raise ValueError("not DER (BER indefinite length or non-minimal encoding; re-sign with -outform DER, "
                             "without -stream)")
    except PyAsn1Error as exc:
        raise ValueError(f"{what}: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc
    return value


def _der(value: Any) -> bytes:
    return bytes(der_encoder.encode(value))


def _name_der(cert: x509.Certificate, which: str) -> bytes:
    return (cert.issuer if which == "issuer" else cert.subject).public_bytes()


def mud_signer_name(device_cert: x509.Certificate) -> x509.Name | None:
    """The Name in the device certificate's ``id-pe-mudsigner`` extension (who may sign its MUD file), if any."""
    try:
        value = device_cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(MUD_SIGNER_OID)).value
    except x509.ExtensionNotFound:
        return None
    try:
        assert isinstance(value, x509.UnrecognizedExtension)
        name = _decode(value.value, rfc5280.Name(), "MUDsigner")
        # the DER of a valid Name is what cryptography's own parser reads: a stub certificate is not needed
        return _name_from_der(_der(name))
    except (AssertionError, ValueError) as exc:
        raise MudSignatureError(f"device certificate: id-pe-mudsigner extension is not a DER Name ({exc})") from exc


def _name_from_der(der: bytes) -> x509.Name:
    rdns = []
    for rdn in _decode(der, rfc5280.Name(), "Name")["rdnSequence"]:
        attributes = []
        for atv in rdn:
            oid = str(atv["type"])
            raw = bytes(atv["value"])
            attributes.append(x509.NameAttribute(x509.ObjectIdentifier(oid), _directory_string(raw)))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


_STRING_SPECS: tuple[tuple[Any, str], ...] = (
    (char.UTF8String(), "utf-8"), (char.PrintableString(), "ascii"), (char.IA5String(), "ascii"),
    (char.TeletexString(), "latin-1"), (char.BMPString(), "utf-16-be"), (char.UniversalString(), "utf-32-be"))


def _directory_string(raw: bytes) -> str:
    for spec, encoding in _STRING_SPECS:
        try:
            value, rest = der_decoder.decode(raw, asn1Spec=spec)
        except PyAsn1Error:
            continue
        if not rest:
            return bytes(value.asOctets()).decode(encoding)
    raise ValueError("attribute value is not a directory string")


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


@dataclass(frozen=True)
class _SignerInfo:
    sid: Any  # rfc5652.SignerIdentifier
    digest_oid: str
    signed_attrs: Any | None  # rfc5652.SignedAttributes, or None
    signature_oid: str
    signature: bytes


def _load_certificate(der: bytes) -> x509.Certificate:
    """Load and touch every field used later: cryptography parses lazily, and a damaged one must fail here."""
    cert = x509.load_der_x509_certificate(der)
    try:
        _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_before_utc, cert.not_valid_after_utc,
             cert.public_key(), cert.serial_number, _name_der(cert, "issuer"))
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"certificate {cert.serial_number:x}: {exc}") from exc
    return cert


def _parse_signed_data(signature_der: bytes) -> tuple[str, list[x509.Certificate], list[_SignerInfo]]:
    content_info = _decode(signature_der, rfc5652.ContentInfo(), "ContentInfo")
    if str(content_info["contentType"]) != _OID_SIGNED_DATA:
        raise ValueError(f"content type {content_info['contentType']} is not SignedData")
    signed = _decode(bytes(content_info["content"]), rfc5652.SignedData(), "SignedData")
    if int(signed["version"]) not in (1, 3, 4, 5):
        raise ValueError("SignedData: unknown version")
    listed = {str(algorithm["algorithm"]) for algorithm in signed["digestAlgorithms"]}
    encap = signed["encapContentInfo"]
    if encap["eContent"].isValue:
        raise ValueError("the signature embeds content; RFC 8520 uses a detached signature over the MUD file")
    certificates = []
    if signed["certificates"].isValue:
        for choice in signed["certificates"]:
            if choice.getName() == "certificate":
                certificates.append(_load_certificate(_der(choice["certificate"])))
    signers = []
    for info in signed["signerInfos"]:
        sid = info["sid"]
        if int(info["version"]) != (3 if sid.getName() == "subjectKeyIdentifier" else 1):
            raise ValueError("SignerInfo: version does not fit its signer identifier")
        attrs = info["signedAttrs"] if info["signedAttrs"].isValue else None
        signers.append(_SignerInfo(sid, str(info["digestAlgorithm"]["algorithm"]), attrs,
                                   str(info["signatureAlgorithm"]["algorithm"]), bytes(info["signature"])))
        if signers[-1].digest_oid not in listed:
            raise ValueError("SignerInfo: digest algorithm not listed in SignedData.digestAlgorithms")
    return str(encap["eContentType"]), certificates, signers


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _find_signer(info: _SignerInfo, candidates: list[x509.Certificate]) -> x509.Certificate | None:
    kind = info.sid.getName()
    if kind == "issuerAndSerialNumber":
        issuer = _der(info.sid["issuerAndSerialNumber"]["issuer"])
        serial = int(info.sid["issuerAndSerialNumber"]["serialNumber"])
        return next((cert for cert in candidates
                     if cert.serial_number == serial and _name_der(cert, "issuer") == issuer), None)
    if kind == "subjectKeyIdentifier":
        key_id = bytes(info.sid["subjectKeyIdentifier"])
        return next((cert for cert in candidates if _subject_key_id(cert) == key_id), None)
    raise ValueError("SignerIdentifier: unexpected structure")


def _signed_bytes(info: _SignerInfo, mud: bytes, content_type: str, digest: hashes.HashAlgorithm,
                  source: str) -> bytes:
    """What the signature covers: the DER SET of signed attributes (checked against the file) or the file."""
    if info.signed_attrs is None:
        return mud
    values: dict[str, list[Any]] = {}
    for attribute in info.signed_attrs:
        values.setdefault(str(attribute["attrType"]), []).extend(attribute["attrValues"])
    declared = values.get(_OID_CONTENT_TYPE, [])
    if len(declared) != 1 or str(_decode(bytes(declared[0]), rfc5652.ContentType(), "contentType")) != content_type:
        raise MudSignatureError(f"{source}: signature's contentType attribute is missing or differs from its content")
    message_digest = values.get(_OID_MESSAGE_DIGEST, [])
    hasher = hashes.Hash(digest)
    hasher.update(mud)
    if len(message_digest) != 1 or bytes(_decode(bytes(message_digest[0]), rfc5652.MessageDigest(),
                                                 "messageDigest")) != hasher.finalize():
        raise MudSignatureError(f"{source}: the MUD file does not match its signature (message digest differs): "
                                "the file was changed after signing, or this .p7s belongs to another file")
    encoded = _der(info.signed_attrs)
    return b"\x31" + encoded[1:]  # signed as SET OF, stored as [0] IMPLICIT


def _check_signature(cert: x509.Certificate, info: _SignerInfo, data: bytes, digest: hashes.HashAlgorithm,
                     source: str) -> None:
    family, fixed = _SIGNATURES.get(info.signature_oid, ("", None))
    if not family:
        raise MudSignatureError(f"{source}: unsupported signature algorithm {info.signature_oid} "
                                "(ECDSA, RSA PKCS#1 v1.5, Ed25519 and Ed448 are accepted)")
    if fixed is not None and not isinstance(digest, fixed):
        raise MudSignatureError(f"{source}: signature algorithm hash {fixed().name} differs from digest {digest.name}")
    key = cert.public_key()
    try:
        if family == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(info.signature, data, ec.ECDSA(digest))
        elif family == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(info.signature, data, padding.PKCS1v15(), digest)
        elif (family == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey)) or (
                family == "ed448" and isinstance(key, ed448.Ed448PublicKey)):
            key.verify(info.signature, data)
        else:
            raise MudSignatureError(f"{source}: {family} signature does not fit the key of {_describe(cert)}")
    except InvalidSignature:
        raise MudSignatureError(f"{source}: signature does not verify with the key of signer {_describe(cert)}: "
                                "forged or corrupted") from None


def _check_trust(cert: x509.Certificate, intermediates: list[x509.Certificate], trusted: list[x509.Certificate],
                 now: datetime, expected_signer: x509.Name | None, source: str) -> None:
    who = _describe(cert)
    if now > cert.not_valid_after_utc:
        raise MudSignatureError(f"{source}: signer certificate {who} expired at {cert.not_valid_after_utc.isoformat()}")
    if now < cert.not_valid_before_utc:
        raise MudSignatureError(f"{source}: signer certificate {who} is not valid before "
                                f"{cert.not_valid_before_utc.isoformat()}")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise MudSignatureError(f"{source}: signer certificate {who} keyUsage lacks digitalSignature")
    except x509.ExtensionNotFound:
        pass
    verifier = (PolicyBuilder().store(Store(trusted)).time(now)
                .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                    ee_policy=ExtensionPolicy.permit_all())
                .build_client_verifier())
    try:
        verifier.verify(cert, intermediates)
    except VerificationError as exc:
        raise MudSignatureError(f"{source}: signer certificate {who} does not chain to a trusted MUD signer ({exc}); "
                                "add its CA to the trusted MUD signers if this manufacturer is trusted") from exc
    if expected_signer is not None and cert.subject != expected_signer:
        raise MudSignatureError(f"{source}: signer {who} is not the MUD signer {expected_signer.rfc4514_string()} "
                                "named by the device certificate (id-pe-mudsigner)")


def verify_mud_signature(mud: bytes, signature_der: bytes, trusted_signers: list[x509.Certificate], now: datetime,
                         expected_signer: x509.Name | None = None, *, source: str = "MUD file") -> x509.Certificate:
    """Check a detached CMS signature over the exact MUD bytes; return the signer certificate.

    The signer must chain (through certificates carried in the signature) to one of ``trusted_signers`` (CA
    certificates, or a pinned signer certificate itself) at ``now``; ``expected_signer`` is the device
    certificate's id-pe-mudsigner Name, which must equal the signer's subject when given.
    """
    if not signature_der:
        raise MudSignatureError(f"{source}: unsigned: no signature (.p7s) was provided")
    if len(signature_der) > MAX_SIGNATURE_BYTES:
        raise MudSignatureError(f"{source}: signature too large: {len(signature_der)} bytes > {MAX_SIGNATURE_BYTES}")
    if not trusted_signers:
        raise MudSignatureError(f"{source}: no trusted MUD signers configured; cannot accept any signature")
    try:
        content_type, certificates, signers = _parse_signed_data(signature_der)
    except (ValueError, IndexError) as exc:
        raise MudSignatureError(f"{source}: signature is not a DER CMS SignedData: {exc}") from exc
    if content_type not in _CONTENT_TYPES:
        raise MudSignatureError(f"{source}: signed content type {content_type} is neither id-data nor id-ct-mudtype")
    if not signers:
        raise MudSignatureError(f"{source}: unsigned: the CMS SignedData has no signers")
    if len(signers) > _MAX_SIGNERS:
        raise MudSignatureError(f"{source}: too many signers ({len(signers)} > {_MAX_SIGNERS})")
    first_error: MudSignatureError | None = None
    for info in signers:
        try:
            if info.digest_oid in _WEAK_DIGESTS:
                raise MudSignatureError(f"{source}: signed with {_WEAK_DIGESTS[info.digest_oid]}, which is broken")
            if info.digest_oid not in _DIGESTS:
                raise MudSignatureError(f"{source}: unsupported digest algorithm {info.digest_oid}")
            digest = _DIGESTS[info.digest_oid]()
            try:
                cert = _find_signer(info, certificates + trusted_signers)
                data = _signed_bytes(info, mud, content_type, digest, source)
            except (ValueError, IndexError) as exc:
                raise MudSignatureError(f"{source}: signature is not a DER CMS SignedData: {exc}") from exc
            if cert is None:
                raise MudSignatureError(f"{source}: the signer's certificate is neither in the signature nor "
                                        "among the trusted MUD signers")
            _check_signature(cert, info, data, digest, source)
            _check_trust(cert, [c for c in certificates if c != cert], trusted_signers, now, expected_signer, source)
        except MudSignatureError as exc:
            first_error = first_error or exc
            continue
        return cert
    assert first_error is not None
    raise first_error


@dataclass(frozen=True)
class VerifiedMud:
    profile: MudProfile
    signer: x509.Certificate | None  # None only when the caller allowed unsigned files


def load_mud(mud: bytes, signature_der: bytes | None, *, source: str, url: str,
             trusted_signers: list[x509.Certificate], now: datetime, expected_signer: x509.Name | None = None,
             require_signature: bool = True) -> VerifiedMud:
    """Signature first (over the exact bytes), then parsing; the file must name ``url`` as its mud-url."""
    signer = None
    if signature_der is not None or require_signature:
        signer = verify_mud_signature(mud, signature_der or b"", trusted_signers, now, expected_signer,
                                      source=source)
    return VerifiedMud(parse_mud(mud, source, expected_url=url), signer)
