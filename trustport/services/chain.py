"""Chain verification for PEM certificates (``trustport decide``, ``devices add --cert``), with cryptography's
verifier, under the same limits as the TLS handshake FreeRADIUS runs.

On the RADIUS path OpenSSL did this during the handshake (``verify_depth = 1``: at most one intermediate); here we
must do it ourselves before trusting any of the certificate's contents. The verified chain's second certificate
is what FreeRADIUS reports as ``TLS-Cert-*`` (depth 1): the anchor role is decided from it on both paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.x509.verification import (
    ClientVerifier,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from policy.model import CertificateFacts, Check
from policy.x509facts import facts_from_certificate
from trustport.services.trust import TrustMaterial

MAX_INTERMEDIATES = 1  # FreeRADIUS verify_depth = 1 (trustport/freeradius/templates/mods-enabled/eap)


def _verifier(roots: list[x509.Certificate], at: datetime) -> ClientVerifier:
    return (
        PolicyBuilder().store(Store(roots)).time(at).max_chain_depth(MAX_INTERMEDIATES)
        # 802.1AR device certificates often lack the SAN/EKU a Web PKI client profile demands: the profile checks
        # that matter here are trustport's own (policy.certificates); CA certificates keep the RFC 5280 rules.
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )


def verify_chain(leaf: x509.Certificate, intermediates: list[x509.Certificate],
                 anchors: Iterable[x509.Certificate], now: datetime) -> tuple[Check, x509.Certificate | None]:
    """The chain check and the certificate that issued ``leaf`` in the verified chain (None if none verified).

    A leaf outside its own validity period is verified once more at a time inside it, so that the verdict can
    still name its anchor (the validity check reports the expiry itself)."""
    roots = list(anchors)
    if not roots:
        return Check("chain", False, "no trust anchors configured"), None
    try:
        chain = _verifier(roots, now).verify(leaf, intermediates).chain
        note = ""
    except VerificationError as exc:
        start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        if start <= now <= end:
            return Check("chain", False, f"does not chain to a configured trust anchor: {exc}"), None
        at = start if now < start else end
        try:
            chain = _verifier(roots, at).verify(leaf, intermediates).chain
        except VerificationError:
            return Check("chain", False, f"does not chain to a configured trust anchor: {exc}"), None
        note = f", verified at {at.isoformat()} because the certificate is not valid now"
    if len(chain) < 2:
        return Check("chain", False, "the certificate is itself a trust anchor, not a device certificate"), None
    return Check("chain", True, f"chains to a configured trust anchor ({len(chain) - 2} intermediate(s){note})"), \
        chain[1]


def pem_facts(cert: x509.Certificate, intermediates: list[x509.Certificate], trust: TrustMaterial,
              now: datetime) -> tuple[CertificateFacts, Check]:
    """Facts of a PEM device certificate read as the RADIUS path reads them, and the chain check.

    The issuer certificate comes from the verified chain only (configured issuing CAs + ``intermediates``).
    Raises IdentityError where the RADIUS path would refuse the names."""
    check, issuer = verify_chain(cert, trust.intermediates() + intermediates, trust.roots(), now)
    return facts_from_certificate(cert, issuer), check
