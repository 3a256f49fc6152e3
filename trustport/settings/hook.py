"""What the hook needs at run time, read from the ``hook.json`` that ``trustport radius render`` writes.

One pydantic model, serialised by pydantic (``model_dump(mode="json")``) and loaded by it (``model_validate``):
no hand-written JSON. Its parts are the config's own models: the policy is ``policy.document.PolicyDocument``
(checked with the same reference checks ``trustport config check`` runs, compiled to ``SegmentRules`` once at
load), anchors are the config's ``AnchorFile`` entries and MUD its ``MudConfig``, with paths made absolute.
``policy_revision`` (``PolicyDocument.revision``) names the policy a decision was made with, and changes exactly
when the policy does.

Kept apart from the YAML loader so that the hook (inside radiusd) needs no YAML. The database URL (it may carry a
password) is a ``SecretStr``: it never appears in a repr or a log line; only the hook.json written by render
(owner-only) holds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic.dataclasses import dataclass

from policy.certificates import RevocationPolicy
from policy.decide import SegmentRules
from policy.document import PolicyDocument
from policy.errors import ConfigError
from policy.model import CertKind
from policy.rules import RuleError
from trustport.settings.attestation import AttestationConfig
from trustport.settings.mud import MudConfig

SETTINGS_VERSION = 3
if TYPE_CHECKING:  # callers pass the URL as a str; pydantic keeps it as a SecretStr
    SecretUrl = SecretStr | str
else:
    SecretUrl = SecretStr


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class AnchorFile:
    """One trust anchor: the config's ``trust_anchors`` entries, and (with its path made absolute) the hook's."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    role: CertKind
    file: Path  # the self-signed root CA, optionally followed by the CAs it issued device certificates with
    # longest validity accepted for a device certificate under this anchor; None: LDevID 825 days, IDevID none
    max_certificate_days: Annotated[int, Field(ge=1, le=36500)] | None = None


class AuthPath(BaseModel):
    """How the hook keeps work off the serialized authentication path (docs/performance.md): registry reads from a
    cache kept right by the change feed (``trustport.services.registry_cache``), and the decision log, last seen
    and sessions written to a local journal a thread drains into the registry (``trustport.store.journal``).
    Absent from an older hook.json: both off, every read and write goes to the registry on the path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache: bool = False
    refresh_seconds: float = Field(default=0.1, gt=0, le=1.0)
    lease_seconds: float = Field(default=2.0, gt=0, le=5.0)  # trustport.store.changes.MAX_LEASE_S
    max_cached_devices: int = Field(default=100_000, ge=1, le=10_000_000)
    journal_dir: Path | None = None  # None: no journal
    journal_sync: bool = False  # fdatasync each record (survives host power loss too; costs a disk flush each)
    journal_flush_seconds: float = Field(default=0.2, gt=0, le=10)  # under load, one transaction this often

    @model_validator(mode="after")
    def _lease_outlasts_refresh(self) -> AuthPath:
        check_lease(self.refresh_seconds, self.lease_seconds)
        return self


def check_lease(refresh_seconds: float, lease_seconds: float) -> None:
    """A cache must renew its lease before it runs out (``auth_path`` in the YAML and in hook.json)."""
    if refresh_seconds >= lease_seconds:
        raise ValueError(f"refresh_seconds ({refresh_seconds}) must be below lease_seconds ({lease_seconds}): a "
                         "cache must renew its lease before it runs out")


class HookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    version: Literal[3] = 3  # SETTINGS_VERSION
    anchors: tuple[AnchorFile, ...]
    crl_dir: Path | None
    crl_refresh_seconds: float = Field(gt=0)
    revocation: RevocationPolicy
    database: SecretUrl = Field(alias="database_url")
    attestation: AttestationConfig | None = None  # verifier keys, max age: reading results (placement: policy)
    mud: MudConfig | None = None  # with absolute paths
    policy: PolicyDocument  # segments/sites/policy and, when it changes placement, the attestation placement
    policy_revision: str = ""  # PolicyDocument.revision(); a hand-edited hook.json that disagrees is refused
    # the trustport YAML these settings come from: the hook re-reads it when it changes (one policy at run time)
    config_file: Path | None = None
    # where the hook leaves its counters (latency, outcomes) for /metrics; None: metrics off
    metrics_dir: Path | None = None
    metrics_flush_seconds: float = Field(default=5.0, gt=0)
    auth_path: AuthPath = AuthPath()
    _rules: SegmentRules = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> HookSettings:
        revision = self.policy.revision()
        if self.policy_revision not in ("", revision):
            raise ValueError(f"policy_revision {self.policy_revision!r} does not match the policy document "
                             f"({revision}); hook.json was edited by hand")
        object.__setattr__(self, "policy_revision", revision)
        self._rules = self.policy.segment_rules()  # reference problems raise here, when hook.json is loaded
        return self

    @property
    def rules(self) -> SegmentRules:
        """The compiled policy ``place`` runs."""
        return self._rules

    @field_serializer("database", when_used="json")
    def _reveal_database(self, value: SecretUrl) -> str:
        return self.database_url  # hook.json is owner-only (render writes it with write_private)

    @property
    def database_url(self) -> str:
        """The full URL with the password: pass it to the store, never print it."""
        value = self.database
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def to_json(self) -> dict[str, Any]:
        """What hook.json holds (pydantic's own serialisation)."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_json(cls, data: Any, source: str) -> HookSettings:
        try:
            return cls.model_validate(data)
        except (ValidationError, RuleError, ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: invalid hook settings ({type(exc).__name__}: {exc}); "
                              "re-run 'trustport radius render'") from exc

    @classmethod
    def load(cls, path: Path) -> HookSettings:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read hook settings: {exc}") from exc
        return cls.from_json(data, str(path))
