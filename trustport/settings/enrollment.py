"""The ``enrollment:`` section: the EST server (RFC 7030) and who may enrol without an operator.

Auto-approval rules use the policy's own ``Match`` (the same fields, globs and validation as a segment rule);
they are matched against the authenticated IDevID and the device's attestation standing, never the CSR."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from policy.document import Match, Name
from trustport.settings.base import SettingsModel, unique


class AutoApprove(SettingsModel):
    """A pending device that matches is put into onboarding (audited as actor ``est``) and gets its LDevID."""

    name: Name
    match: Match


class EnrollmentConfig(SettingsModel):
    listen_address: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    # null: the RADIUS server's certificate and key (radius.server_certificate / server_key)
    server_certificate: Path | None = None
    server_key: Path | None = None
    auto_approve: list[AutoApprove] = Field(default_factory=list)
    require_attestation: Literal["affirming"] | None = None
    retry_after_seconds: int = Field(default=300, ge=1, le=86400)  # what a pending device is told
    max_body_bytes: int = Field(default=16 * 1024, ge=1024, le=1 << 20)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)  # TLS handshake, request head and body
    max_connections: int = Field(default=64, ge=1, le=4096)

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("auto_approve")
    @classmethod
    def _rule_names(cls, value: list[AutoApprove]) -> list[AutoApprove]:
        return unique(value, ("enrollment", "auto_approve"), "auto-approve rule")

    @model_validator(mode="after")
    def _server_pair(self) -> EnrollmentConfig:
        if (self.server_certificate is None) != (self.server_key is None):
            raise ValueError("give both server_certificate and server_key, or neither (then the RADIUS server's "
                             "are used)")
        return self

    def server_files(self, certificate: Path, key: Path) -> tuple[Path, Path]:
        """This section's server certificate and key, else the given (RADIUS) ones."""
        if self.server_certificate is not None and self.server_key is not None:
            return self.server_certificate, self.server_key
        return certificate, key
