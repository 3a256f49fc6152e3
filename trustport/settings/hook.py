"""What the hook needs at run time, read from the ``hook.json`` that ``trustport radius render`` writes.

One pydantic model, serialised by pydantic (``model_dump(mode="json")``) and loaded by it
(``model_validate``): no hand-written JSON. The policy travels as the policy *document* (segments, sites, policy,
attestation placement) exactly as configured, and the hook rebuilds ``SegmentRules`` from it with the same checks
``trustport config check`` runs (``policy.policy_doc``). ``policy_revision`` is a short SHA-256 of the canonical
JSON of the effective policy (the document normalised from the built rules: segments with VLANs, per-site VLANs
and Filter-Ids, sites, quarantine/default/onboarding segments, rules in order, attestation placement): it names
the policy a decision was made with, and changes exactly when the policy does.

Kept separate from the app's YAML config so that the hook (inside radiusd) depends on nothing but ``policy`` and
pydantic. The database URL (it may carry a password) is a ``SecretStr``: it never appears in a repr or a log line;
only the hook.json written by render (owner-only) holds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    SecretStr,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic.dataclasses import dataclass

from policy.certificates import RevocationPolicy
from policy.decide import AttestationRules, SegmentRules
from policy.errors import ConfigError
from policy.model import CertKind
from policy.policy_doc import build_segment_rules, document_from_rules
from policy.rules import RuleError
from trustport.services.attestation_gate import AttestationSettings

SETTINGS_VERSION = 2
if TYPE_CHECKING:  # callers pass the URL as a str; pydantic keeps it as a SecretStr
    SecretUrl = SecretStr | str
else:
    SecretUrl = SecretStr


def _built_by_validator() -> SegmentRules:
    raise AssertionError("HookSettings._derive builds rules from policy_document")
PLACEMENT_KEYS = ("warning_segment", "missing_ldevid_segment", "missing_idevid_segment")


@dataclass(frozen=True)
class AnchorFile:
    name: str
    role: CertKind
    file: Path
    max_certificate_days: int | None = None  # None: the role's default (LDevID 825 days, IDevID unlimited)


@dataclass(frozen=True)
class MudSettings:
    directory: Path
    signers: tuple[Path, ...]
    require_signature: bool = True
    refresh_seconds: float = 60.0


def canonical_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def policy_revision(document: Mapping[str, Any]) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of a policy document (``document_from_rules``)."""
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:12]


def placement_rules(document: Mapping[str, Any]) -> AttestationRules | None:
    placement = document.get("attestation")
    if placement is None:
        return None
    if not isinstance(placement, Mapping) or set(placement) != set(PLACEMENT_KEYS):
        raise RuleError(f"attestation placement: a mapping of exactly {', '.join(PLACEMENT_KEYS)}",
                        ("attestation",))
    return AttestationRules(*(str(placement[k]) for k in PLACEMENT_KEYS))


class HookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    version: Literal[2] = 2
    anchors: tuple[AnchorFile, ...]
    crl_dir: Path | None
    crl_refresh_seconds: float = Field(gt=0)
    revocation: RevocationPolicy
    database: SecretUrl = Field(alias="database_url")
    attestation: AttestationSettings | None = None  # verifier keys, max age: reading results, not placing by them
    mud: MudSettings | None = None
    # segments/sites/policy as configured, plus "attestation": {warning_segment, missing_*_segment} when the
    # config asks attestation to change placement (else None: decisions ignore attestation)
    policy_document: dict[str, Any] = Field(default_factory=dict)
    policy_revision: str = ""
    # the trustport YAML these settings come from: the hook re-reads it when it changes (one policy at run time)
    config_file: Path | None = None
    # built from policy_document (or given, and then policy_document is derived from it); never serialised
    rules: InstanceOf[SegmentRules] = Field(default_factory=_built_by_validator, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        """rules <-> policy_document (one is given, the other follows), and the revision of the document."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("version", SETTINGS_VERSION) != SETTINGS_VERSION:
            raise ValueError(f"hook settings version {data.get('version')!r}, expected {SETTINGS_VERSION}")
        doc, rules = data.get("policy_document"), data.get("rules")
        if not doc and isinstance(rules, SegmentRules):
            doc = data["policy_document"] = document_from_rules(rules)
        if not isinstance(doc, Mapping):
            raise ValueError("policy_document: the segments/sites/policy document is required")
        if rules is None:
            data["rules"] = build_segment_rules(doc.get("segments") or {}, doc.get("sites") or {},
                                                doc.get("policy") or {}, placement_rules(doc))
        built = data["rules"]
        # the revision of the *effective* policy (normalised from the built rules): 30 and {vlan: 30} are the same
        revision = policy_revision(document_from_rules(built)) if isinstance(built, SegmentRules) else ""
        if data.get("policy_revision") not in (None, "", revision):
            raise ValueError(f"policy_revision {data['policy_revision']!r} does not match the policy document "
                             f"({revision}); hook.json was edited by hand")
        data["policy_revision"] = revision
        return data

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
