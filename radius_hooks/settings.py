"""What the hook needs at run time, read from the ``hook.json`` that ``trustport radius render`` writes.

Kept separate from the app's YAML config so that the hook (inside radiusd) depends on nothing but ``policy``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from policy.certificates import RevocationPolicy
from policy.decide import AttestationRules, SegmentRules
from policy.errors import ConfigError
from policy.model import CertKind
from policy.policy_doc import build_segment_rules
from policy.rules import RuleError
from radius_hooks.attestation_gate import AttestationSettings

SETTINGS_VERSION = 1


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


@dataclass(frozen=True)
class HookSettings:
    anchors: tuple[AnchorFile, ...]
    crl_dir: Path | None
    crl_refresh_seconds: float
    revocation: RevocationPolicy
    rules: SegmentRules
    database_url: str
    attestation: AttestationSettings | None = None
    policy_document: Mapping[str, Any] = field(default_factory=dict)  # segments/sites/policy, as configured
    mud: MudSettings | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SETTINGS_VERSION,
            "trust_anchors": [{"name": a.name, "role": a.role.value, "file": str(a.file),
                               "max_certificate_days": a.max_certificate_days} for a in self.anchors],
            "crl_dir": str(self.crl_dir) if self.crl_dir else None,
            "crl_refresh_seconds": self.crl_refresh_seconds,
            "revocation": {
                "require_crl_for": sorted(k.value for k in self.revocation.require_crl_for),
                "accept_stale_crl": self.revocation.accept_stale_crl,
            },
            "policy": self.policy_document or {
                "segments": dict(self.rules.segments), "sites": {},
                "policy": {"quarantine_segment": self.rules.quarantine_segment,
                           "default_segment": self.rules.default_segment,
                           "onboarding_segment": self.rules.onboarding_segment}},
            "database_url": self.database_url,
            "mud": None if self.mud is None else {
                "directory": str(self.mud.directory), "signers": [str(p) for p in self.mud.signers],
                "require_signature": self.mud.require_signature, "refresh_seconds": self.mud.refresh_seconds},
            "attestation": None if self.attestation is None or self.rules.attestation is None else {
                "verifier_keys": [{"name": n, "file": str(p)} for n, p in self.attestation.verifier_keys],
                "max_age_seconds": self.attestation.max_age.total_seconds(),
                "leeway_seconds": self.attestation.leeway.total_seconds(),
                "warning_segment": self.rules.attestation.warning_segment,
                "missing_ldevid_segment": self.rules.attestation.missing_ldevid_segment,
                "missing_idevid_segment": self.rules.attestation.missing_idevid_segment,
            },
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> HookSettings:
        try:
            if not isinstance(data, dict) or data.get("version") != SETTINGS_VERSION:
                raise ValueError(f"expected an object with version {SETTINGS_VERSION}")
            rev = data["revocation"]
            att = data.get("attestation")
            doc = data["policy"]
            mud = data.get("mud")
            return cls(
                anchors=tuple(
                    AnchorFile(str(a["name"]), CertKind(a["role"]), Path(a["file"]),
                               None if a.get("max_certificate_days") is None else int(a["max_certificate_days"]))
                    for a in data["trust_anchors"]
                ),
                crl_dir=Path(data["crl_dir"]) if data.get("crl_dir") else None,
                crl_refresh_seconds=float(data["crl_refresh_seconds"]),
                revocation=RevocationPolicy(
                    frozenset(CertKind(k) for k in rev["require_crl_for"]), bool(rev["accept_stale_crl"])
                ),
                rules=build_segment_rules(
                    doc["segments"], doc.get("sites", {}), doc["policy"],
                    AttestationRules(str(att["warning_segment"]), str(att["missing_ldevid_segment"]),
                                     str(att["missing_idevid_segment"])) if att else None),
                policy_document=doc,
                mud=MudSettings(Path(mud["directory"]), tuple(Path(p) for p in mud["signers"]),
                                bool(mud["require_signature"]), float(mud["refresh_seconds"])) if mud else None,
                database_url=str(data["database_url"]),
                attestation=AttestationSettings(
                    verifier_keys=tuple((str(k["name"]), Path(k["file"])) for k in att["verifier_keys"]),
                    max_age=timedelta(seconds=float(att["max_age_seconds"])),
                    leeway=timedelta(seconds=float(att["leeway_seconds"])),
                ) if att else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError, RuleError) as exc:
            raise ConfigError(f"{source}: invalid hook settings ({type(exc).__name__}: {exc}); "
                              "re-run 'trustport radius render'") from exc

    @classmethod
    def load(cls, path: Path) -> HookSettings:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read hook settings: {exc}") from exc
        return cls.from_json(data, str(path))
