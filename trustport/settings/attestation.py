"""The ``attestation:`` section: which verifier keys sign results (EAR) and how old one may be; where attestation
moves a device only with an explicit ``placement:``. The hook gets this same model (paths made absolute)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from policy.attestation import VerifierKey, load_verifier_key
from policy.errors import AttestationError
from trustport.settings.base import SettingsModel, unique


class VerifierKeySettings(SettingsModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    file: Path


class AttestationPlacement(SettingsModel):
    """Where attestation moves a device: the explicit opt-in (without it, attestation never changes placement)."""

    warning_segment: str
    missing_ldevid_segment: str
    missing_idevid_segment: str | None = None  # default: the quarantine segment


class AttestationConfig(SettingsModel):
    """Attestation results (EAR) from a verifier such as Veraison; see docs/attestation.md.

    ``verifier_keys``/``max_age_seconds``/``leeway_seconds`` say how results are read (the REST API needs them).
    Placement changes only with ``placement:`` — or, as before, ``warning_segment`` + ``missing_ldevid_segment``
    given directly here, which is the same explicit setting."""

    verifier_keys: list[VerifierKeySettings] = Field(min_length=1)
    max_age_seconds: int = Field(default=86400, gt=0, le=30 * 86400)
    leeway_seconds: int = Field(default=30, ge=0, le=600)
    placement: AttestationPlacement | None = None
    warning_segment: str | None = None
    missing_ldevid_segment: str | None = None
    missing_idevid_segment: str | None = None  # default: the quarantine segment

    @field_validator("verifier_keys")
    @classmethod
    def _key_names(cls, value: list[VerifierKeySettings]) -> list[VerifierKeySettings]:
        return unique(value, ("attestation", "verifier_keys"), "verifier key")

    @model_validator(mode="after")
    def _placement(self) -> AttestationConfig:
        legacy = [k for k in ("warning_segment", "missing_ldevid_segment", "missing_idevid_segment")
                  if getattr(self, k) is not None]
        if legacy and self.placement is not None:
            raise ValueError(f"give {', '.join(legacy)} inside placement: only, not both here and there")
        missing = [k for k in ("warning_segment", "missing_ldevid_segment") if getattr(self, k) is None]
        if legacy and missing:
            raise ValueError(f"{', '.join(legacy)} asks attestation to change placement, which also needs "
                             f"{', '.join(missing)} (or put all of them under placement:)")
        return self

    def effective_placement(self) -> AttestationPlacement | None:
        if self.placement is not None:
            return self.placement
        if self.warning_segment is None or self.missing_ldevid_segment is None:
            return None
        return AttestationPlacement(warning_segment=self.warning_segment,
                                    missing_ldevid_segment=self.missing_ldevid_segment,
                                    missing_idevid_segment=self.missing_idevid_segment)

    def placement_path(self) -> tuple[str, ...]:
        return ("attestation", "placement") if self.placement is not None else ("attestation",)

    @property
    def max_age(self) -> timedelta:
        return timedelta(seconds=self.max_age_seconds)

    @property
    def leeway(self) -> timedelta:
        return timedelta(seconds=self.leeway_seconds)

    def resolved(self, base: Path) -> AttestationConfig:
        """With the verifier key paths made absolute (what the hook is given)."""
        keys = [k.model_copy(update={"file": k.file if k.file.is_absolute() else (base / k.file).resolve()})
                for k in self.verifier_keys]
        return self.model_copy(update={"verifier_keys": keys})

    def load_keys(self) -> tuple[VerifierKey, ...]:
        keys = []
        for key in self.verifier_keys:
            try:
                data = key.file.read_bytes()
            except OSError as exc:
                raise AttestationError(f"verifier key {key.name!r}: cannot read {key.file}: {exc.strerror}") from exc
            keys.append(load_verifier_key(key.name, data))
        return tuple(keys)
