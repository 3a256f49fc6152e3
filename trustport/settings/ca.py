"""The ``ca:`` section: the owner (LDevID) CA that trustport runs (``trustport ca init``, EST enrollment).

```yaml
ca:
  name: hq-ldevid            # the CRL is published as <crl_dir>/<name>.crl unless crl_file is given
  certificate: pki/hq-ldevid-ca.pem   # also one of trust_anchors, with role ldevid
  key: pki/hq-ldevid-ca.key           # owner-only (0600)
  ldevid_days: 365           # at most the anchor's max_certificate_days
  crl_validity_hours: 168    # nextUpdate = publication + this
  crl_renewal_margin_hours: 48   # 'trustport ca crl --renew-if-due' re-issues when less than this remains
```
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from trustport.settings.base import SettingsModel

if TYPE_CHECKING:
    from trustport.settings.config import TrustportConfig


class CaSettings(SettingsModel):
    name: str = Field(default="owner-ca", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    certificate: Path
    key: Path
    ldevid_days: int = Field(default=365, ge=1, le=3650)
    crl_validity_hours: float = Field(default=168.0, gt=0, le=24 * 366)
    crl_renewal_margin_hours: float = Field(default=48.0, gt=0, le=24 * 365)
    crl_file: Path | None = None  # default: revocation.crl_dir / f"{name}.crl"

    @model_validator(mode="after")
    def _margin(self) -> CaSettings:
        if self.crl_renewal_margin_hours >= self.crl_validity_hours:
            raise ValueError(f"crl_renewal_margin_hours ({self.crl_renewal_margin_hours:g}) must be less than "
                             f"crl_validity_hours ({self.crl_validity_hours:g}), or the CRL is renewed constantly")
        return self


def ca_problems(config: TrustportConfig) -> Iterator[tuple[tuple[str, ...], str]]:
    """Errors of the ``ca:`` section that need the files: (config path, message) each."""
    from policy.errors import TrustportError
    from trustport.services.ca import anchor_problem, read_ca_files

    ca = config.ca
    if ca is None:
        return
    if config.ca_crl_path() is None:
        yield ("ca",), "no place to publish the CRL: set revocation.crl_dir (or ca.crl_file)"
    try:
        certs, _key = read_ca_files(config.path(ca.certificate), config.path(ca.key))
    except TrustportError as exc:
        yield ("ca", "key" if " key " in f" {exc}" else "certificate"), str(exc)
        return
    problem = anchor_problem(config, certs[0], ca)
    if problem is not None:
        yield ("ca", "certificate"), problem


def crl_warnings(config: TrustportConfig, now: datetime) -> Iterator[tuple[tuple[str, ...], str]]:
    """Warnings (not errors): CRLs in ``revocation.crl_dir`` that have expired or expire within the renewal margin
    (the RADIUS path fails closed on an expired CRL), and an owner CA CRL published where the hook never looks."""
    from cryptography import x509

    from trustport.services.trust import CRL_SUFFIXES

    margin = timedelta(hours=config.ca.crl_renewal_margin_hours if config.ca is not None else 24.0)
    crl_path = config.ca_crl_path()
    if config.revocation.crl_dir is None:
        return
    directory = config.path(config.revocation.crl_dir)
    if crl_path is not None and crl_path.parent != directory:
        yield ("ca", "crl_file"), (f"the owner CA's CRL {crl_path} is not in revocation.crl_dir {directory}: the "
                                   "RADIUS path never reads it")
    if not directory.is_dir():
        return
    fix = "'trustport ca crl' (or your CRL fetch job)"
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in CRL_SUFFIXES or not path.is_file():
            continue
        try:
            data = path.read_bytes()
            crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
        except (OSError, ValueError) as exc:
            yield ("revocation", "crl_dir"), f"{path} cannot be read as a CRL ({exc}); it is ignored"
            continue
        next_update = crl.next_update_utc
        if next_update is None:
            continue
        if now > next_update:
            yield ("revocation", "crl_dir"), (
                f"CRL {path.name} expired at {next_update.isoformat()}: certificates of its issuer are rejected "
                f"while revocation.require_crl_for covers them (fail closed); renew it with {fix}")
        elif next_update - now < margin:
            hours = (next_update - now).total_seconds() / 3600
            yield ("revocation", "crl_dir"), (f"CRL {path.name} expires in {hours:.1f} h "
                                              f"({next_update.isoformat()}); renew it with {fix}")
