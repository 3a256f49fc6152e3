"""The project's exception tree (root: ``TrustportError``).

``switch_drivers`` is a standalone library with its own root (``switch_drivers.errors.DriverError``); the app
translates those at its boundary into ``EnforcementError``.
"""

from __future__ import annotations


class TrustportError(Exception):
    """Root of every error trustport raises on purpose."""


class ConfigError(TrustportError):
    """A configuration file is missing, unreadable or invalid."""


class CertificateError(TrustportError):
    """A certificate (or CRL, or trust anchor file) could not be parsed."""


class IdentityError(CertificateError):
    """A certificate's names cannot be read as one unambiguous device identity (see policy.dn)."""


class IssuanceError(CertificateError):
    """A certificate request was refused, or the owner CA cannot issue (bad CSR, weak key, CA key problems)."""


class AttestationError(TrustportError):
    """An attestation result could not be verified."""


class DirectoryError(TrustportError):
    """The directory (LDAP) could not be reached or answered badly."""


class StoreError(TrustportError):
    """The registry database failed."""


class DeviceNotFound(StoreError):
    pass


class DeviceExists(StoreError):
    pass


class EnforcementError(TrustportError):
    """Pushing a decision to the network failed (wraps ``switch_drivers`` errors)."""


class CoAError(EnforcementError):
    """A RADIUS CoA / Disconnect-Request failed or was NAKed."""
