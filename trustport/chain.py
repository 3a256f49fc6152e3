"""Chain verification for PEM certificates (``trustport decide``), with cryptography's verifier.

On the RADIUS path OpenSSL did this during the handshake; here we must do it ourselves before trusting any of
the certificate's contents.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from policy.model import Check


def verify_chain(leaf: x509.Certificate, intermediates: list[x509.Certificate],
                 anchors: Iterable[x509.Certificate], now: datetime) -> Check:
    roots = list(anchors)
    if not roots:
        return Check("chain", False, "no trust anchors configured")
    verifier = (
        PolicyBuilder().store(Store(roots)).time(now)
        # 802.1AR device certificates often lack the SAN/EKU a Web PKI client profile demands: the profile checks
        # that matter here are trustport's own (policy.certificates); CA certificates keep the RFC 5280 rules.
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        return Check("chain", False, f"does not chain to a configured trust anchor: {exc}")
    return Check("chain", True, "chains to a configured trust anchor")
