"""RFC 7030 encodings, pure: base64 bodies, PKCS#10 in, PKCS#7 certs-only out, the CSR attributes document.

Every refusal is a ``WireError`` with the HTTP status to answer and a message that names what was wrong; nothing
here echoes the request back."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc7030

PKCS10 = "application/pkcs10"
PKCS7_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
CSRATTRS = "application/csrattrs"
MAX_CSR_BYTES = 16 * 1024  # an RSA-4096 CSR with extensions is under 3 KiB of base64
_B64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_PEM = re.compile(rb"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----(.*?)-----END (?:NEW )?CERTIFICATE REQUEST-----",
                  re.DOTALL)


class WireError(Exception):
    """A request that cannot be served as sent; ``status`` is the HTTP answer (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_base64(body: bytes, what: str) -> bytes:
    """RFC 7030 base64 (RFC 4648 alphabet); line breaks and other white space between characters are tolerated,
    anything else is refused (no silent skipping of junk, as ``b64decode`` without validation would do)."""
    compact = b"".join(body.split())
    if not compact:
        raise WireError(400, f"the {what} is empty")
    if not _B64.fullmatch(compact) or len(compact) % 4:
        raise WireError(400, f"the {what} is not base64 (RFC 4648 alphabet, padded)")
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise WireError(400, f"the {what} is not base64: {exc}") from exc


def encode_base64(der: bytes) -> bytes:
    """Base64 in 64-character lines, CRLF-terminated (what RFC 7030 clients expect)."""
    text = base64.b64encode(der)
    return b"".join(text[i:i + 64] + b"\r\n" for i in range(0, len(text), 64))


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_csr(body: bytes, content_type: str | None) -> x509.CertificateSigningRequest:
    """The PKCS#10 request of an enrol body: base64 DER as ``application/pkcs10`` (RFC 7030), or a PEM block (for
    humans with ``curl --data-binary @req.pem``). Its self-signature must verify: proof of possession of the key."""
    if len(body) > MAX_CSR_BYTES:
        raise WireError(413, f"the request body is larger than {MAX_CSR_BYTES} bytes; a CSR is a few KiB")
    pem = _PEM.search(body)
    if pem is not None:
        der = decode_base64(pem.group(1), "PEM certificate request")
    elif _media_type(content_type) in (PKCS10, "application/x-pkcs10"):
        der = decode_base64(body, "PKCS#10 body")
    else:
        raise WireError(415, f"send the CSR as Content-Type {PKCS10} (base64 DER) or as a PEM block, not "
                             f"{_media_type(content_type) or 'no Content-Type'!r}"[:200])
    try:
        csr = x509.load_der_x509_csr(der)
        valid = csr.is_signature_valid
    except ValueError as exc:
        raise WireError(400, f"the body is not a PKCS#10 certificate request ({str(exc)[:120]})") from exc
    except Exception as exc:  # an unsupported key or signature algorithm inside an otherwise well-formed request
        raise WireError(400, f"the certificate request cannot be read ({type(exc).__name__})") from exc
    if not valid:
        raise WireError(400, "the certificate request's signature does not verify with its own public key "
                             "(no proof of possession of the private key)")
    return csr


def certs_only(certificates: list[x509.Certificate]) -> bytes:
    """A degenerate PKCS#7 SignedData holding ``certificates`` (DER, then base64): the EST answer body."""
    return encode_base64(pkcs7.serialize_certificates(certificates, serialization.Encoding.DER))


# --- /csrattrs: CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID (RFC 7030 section 4.5.2) -------------------------

EC_PUBLIC_KEY = "1.2.840.10045.2.1"
PRIME256V1 = "1.2.840.10045.3.1.7"
ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"


def csr_attributes() -> bytes:
    """What we ask for: an EC key on P-256 (``id-ecPublicKey`` with ``prime256v1``), signed ECDSA-with-SHA256.
    The subject is not asked for: the issued certificate's names come from the authenticated IDevID."""
    attrs = rfc7030.CsrAttrs()
    key = rfc7030.AttrOrOID()
    key["attribute"]["attrType"] = univ.ObjectIdentifier(EC_PUBLIC_KEY)
    key["attribute"]["attrValues"].append(univ.ObjectIdentifier(PRIME256V1))
    attrs.append(key)
    signature = rfc7030.AttrOrOID()
    signature["oid"] = univ.ObjectIdentifier(ECDSA_WITH_SHA256)
    attrs.append(signature)
    return encode_base64(bytes(der_encoder.encode(attrs)))
