"""The ``mud:`` section of the trustport config: where MUD files are kept, whom to trust, and whether to fetch.

Relative paths are relative to the config file's directory (the ``base`` passed in).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trustport.services.mud_lookup import MudLookup
from trustport.services.mud_lookup import load_signers as load_signer_files


class MudConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: Path  # MUD files and their .p7s, named as policy.mud_signature.local_file_names says
    signers: list[Path]  # PEM certificates of trusted MUD signers, or of the CAs that issue them
    require_signature: bool = True
    refresh_seconds: float = Field(default=60, ge=0, le=86_400)  # how often the RADIUS path re-stats a file
    fetch: bool = False  # allow 'trustport mud fetch' to download over HTTPS
    fetch_timeout_seconds: float = Field(default=10, gt=0, le=300)

    @model_validator(mode="after")
    def _signers_when_required(self) -> MudConfig:
        if self.require_signature and not self.signers:
            raise ValueError("require_signature is true but no signers are listed; add the PEM file of your MUD "
                             "signers' CA, or set require_signature: false")
        return self

    def directory_path(self, base: Path) -> Path:
        return self.directory if self.directory.is_absolute() else base / self.directory

    def load_signers(self, base: Path) -> tuple[x509.Certificate, ...]:
        """The trusted signer certificates; a ``ConfigError`` names the file that is missing or not PEM."""
        return load_signer_files(path if path.is_absolute() else base / path for path in self.signers)

    def lookup(self, base: Path, clock: Callable[[], float] = time.monotonic) -> MudLookup:
        """The RADIUS-path lookup this section describes (signer files are read now)."""
        return MudLookup(self.directory_path(base), self.load_signers(base), self.require_signature,
                         self.refresh_seconds, clock)
