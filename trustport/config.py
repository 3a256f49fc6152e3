"""The operator's configuration file (YAML): typed, validated, every problem reported with its location.

Secrets are given inline, as ``{env: NAME}`` or ``{file: PATH}``, and are held as ``Secret`` values that print
as REDACTED. Relative paths are relative to the config file's directory.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import core_schema

from policy.certificates import RevocationPolicy
from policy.decide import AttestationRules, SegmentRules
from policy.errors import ConfigError, TrustportError
from policy.model import CertKind
from policy.policy_doc import build_segment_rules, check_segments
from policy.rules import RuleError
from radius_hooks.attestation_gate import AttestationSettings
from radius_hooks.settings import AnchorFile, HookSettings, MudSettings
from trustport.mud_config import MudConfig

MAX_CONFIG_BYTES = 1_000_000


class Secret:
    """A secret string that never prints."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('REDACTED')"

    def __str__(self) -> str:
        return "REDACTED"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            lambda v: v if isinstance(v, Secret) else Secret(str(v)),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _v: "REDACTED"),
        )


def _resolve_secret(value: Any, base: Path) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        if not value:
            raise ValueError("secret is empty")
        return Secret(value)
    if isinstance(value, dict) and set(value) == {"env"}:
        name = str(value["env"])
        if name not in os.environ or not os.environ[name]:
            raise ValueError(f"environment variable {name} is not set")
        return Secret(os.environ[name])
    if isinstance(value, dict) and set(value) == {"file"}:
        path = base / str(value["file"])
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
        if not text:
            raise ValueError(f"secret file {path} is empty")
        return Secret(text)
    raise ValueError("a secret is a string, {env: NAME} or {file: PATH}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RadiusClient(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    address: str
    secret: Secret

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        ipaddress.ip_network(value, strict=False)
        return value

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Secret:
        secret = _resolve_secret(value, _BASE.get())
        if len(secret.reveal()) < 16:
            raise ValueError("RADIUS shared secrets must be at least 16 characters")
        if any(ch in secret.reveal() for ch in '"\\\n\r'):
            raise ValueError('RADIUS shared secrets must not contain quotes, backslashes or newlines')
        return secret


class RadiusSettings(_Model):
    listen_address: str = "127.0.0.1"
    auth_port: int = Field(default=1812, ge=1, le=65535)
    acct_port: int = Field(default=1813, ge=1, le=65535)
    reject_delay: int = Field(default=1, ge=0, le=5)
    run_as_user: str | None = "freerad"
    server_certificate: Path
    server_key: Path
    server_key_password: Secret | None = None
    clients: list[RadiusClient] = Field(min_length=1)

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("server_key_password", mode="before")
    @classmethod
    def _key_password(cls, value: Any) -> Secret | None:
        return None if value is None else _resolve_secret(value, _BASE.get())


class TrustAnchorSettings(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    role: CertKind
    file: Path  # the self-signed root CA, optionally followed by the CAs it issued device certificates with
    # longest validity accepted for a device certificate under this anchor; default: LDevID 825 days, IDevID none
    max_certificate_days: int | None = Field(default=None, ge=1, le=36500)


class RevocationSettings(_Model):
    crl_dir: Path | None = None
    refresh_seconds: float = Field(default=30.0, gt=0, le=86400)
    require_crl_for: list[CertKind] = Field(default_factory=lambda: [CertKind.LDEVID])
    accept_stale_crl: bool = False


class PolicySettings(_Model):
    quarantine_segment: str = "quarantine"
    default_segment: str | None = None
    onboarding_segment: str | None = None
    rules: list[dict[str, Any]] = Field(default_factory=list)  # see policy/policy_doc.py and docs/policy.md


class DatabaseSettings(_Model):
    url: str = "sqlite:///trustport.sqlite"
    password: Secret | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: Any) -> Secret | None:
        return None if value is None else _resolve_secret(value, _BASE.get())

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("database url must start with sqlite:/// or postgresql://")
        return value


class VerifierKeySettings(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    file: Path


class AttestationConfig(_Model):
    """Attestation results (EAR) from a verifier such as Veraison; see docs/attestation.md."""

    verifier_keys: list[VerifierKeySettings] = Field(min_length=1)
    max_age_seconds: int = Field(default=86400, gt=0, le=30 * 86400)
    leeway_seconds: int = Field(default=30, ge=0, le=600)
    warning_segment: str
    missing_ldevid_segment: str
    missing_idevid_segment: str | None = None  # default: the quarantine segment


class ApiToken(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    secret: Secret

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Secret:
        secret = _resolve_secret(value, _BASE.get())
        if len(secret.reveal()) < 24:
            raise ValueError("API tokens must be at least 24 characters")
        return secret


class ApiSettings(_Model):
    listen_address: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    tokens: list[ApiToken] = Field(min_length=1)


class NasSettings(_Model):
    """The equipment behind one NAS: a CoA-capable entry and/or a switch, by inventory name."""

    nas_ip: str | None = None
    nas_identifier: str | None = None
    coa: str | None = None
    switch: str | None = None
    ports: dict[str, str] = Field(default_factory=dict)  # NAS-Port / NAS-Port-Id -> switch interface
    bounce: bool = True
    coa_mode: Literal["reauth", "disconnect"] = "reauth"

    @model_validator(mode="after")
    def _complete(self) -> NasSettings:
        if self.nas_ip is None and self.nas_identifier is None:
            raise ValueError("give nas_ip or nas_identifier")
        if self.coa is None and self.switch is None:
            raise ValueError("give coa and/or switch (inventory names)")
        if self.nas_ip is not None:
            ipaddress.ip_address(self.nas_ip)
        return self


class EnforcementSettings(_Model):
    inventory: Path
    nas: list[NasSettings] = Field(min_length=1)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_seconds: float = Field(default=2.0, gt=0, le=3600)
    backoff_cap_seconds: float = Field(default=300.0, gt=0, le=86400)
    lease_seconds: float = Field(default=60.0, gt=1, le=3600)


class TrustportConfig(_Model):
    site: str = "default"
    radius: RadiusSettings
    trust_anchors: list[TrustAnchorSettings] = Field(min_length=1)
    revocation: RevocationSettings = RevocationSettings()
    segments: dict[str, int | dict[str, Any]]
    sites: dict[str, list[str]] = Field(default_factory=dict)
    policy: PolicySettings = PolicySettings()
    policy_file: Path | None = None
    database: DatabaseSettings = DatabaseSettings()
    attestation: AttestationConfig | None = None
    api: ApiSettings | None = None
    enforcement: EnforcementSettings | None = None
    mud: MudConfig | None = None
    base_dir: Path = Path()

    @field_validator("segments")
    @classmethod
    def _segments(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            check_segments(value)
        except RuleError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _references(self) -> TrustportConfig:
        try:
            self.segment_rules()
        except RuleError as exc:
            raise ValueError(str(exc)) from exc
        names = [a.name for a in self.trust_anchors]
        if len(names) != len(set(names)):
            raise ValueError("trust anchor names must be unique")
        return self

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else (self.base_dir / value).resolve()

    def database_url(self) -> str:
        """The URL with relative SQLite paths made absolute and the password filled in (never print it)."""
        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str(self.path(Path(url[len("sqlite:///"):])))
        if self.database.password is not None and url.startswith("postgresql"):
            from sqlalchemy.engine import make_url

            url = make_url(url).set(password=self.database.password.reveal()).render_as_string(hide_password=False)
        return url

    def attestation_rules(self) -> AttestationRules | None:
        att = self.attestation
        if att is None:
            return None
        return AttestationRules(att.warning_segment, att.missing_ldevid_segment,
                                att.missing_idevid_segment or self.policy.quarantine_segment)

    def policy_document(self) -> dict[str, Any]:
        return {"segments": self.segments, "sites": self.sites, "policy": self.policy.model_dump()}

    def segment_rules(self) -> SegmentRules:
        doc = self.policy_document()
        return build_segment_rules(doc["segments"], doc["sites"], doc["policy"], self.attestation_rules())

    def hook_settings(self) -> HookSettings:
        att = self.attestation
        return HookSettings(
            anchors=tuple(AnchorFile(a.name, a.role, self.path(a.file), a.max_certificate_days)
                          for a in self.trust_anchors),
            crl_dir=self.path(self.revocation.crl_dir) if self.revocation.crl_dir else None,
            crl_refresh_seconds=self.revocation.refresh_seconds,
            revocation=RevocationPolicy(frozenset(self.revocation.require_crl_for), self.revocation.accept_stale_crl),
            rules=self.segment_rules(),
            policy_document=self.policy_document(),
            database_url=self.database_url(),
            mud=None if self.mud is None else MudSettings(
                directory=self.mud.directory_path(self.base_dir),
                signers=tuple(self.path(p) for p in self.mud.signers),
                require_signature=self.mud.require_signature, refresh_seconds=self.mud.refresh_seconds),
            attestation=None if att is None else AttestationSettings(
                verifier_keys=tuple((k.name, self.path(k.file)) for k in att.verifier_keys),
                max_age=timedelta(seconds=att.max_age_seconds), leeway=timedelta(seconds=att.leeway_seconds)),
        )


class _BaseDir:
    """The directory relative secret files resolve against, while one config is being validated."""

    def __init__(self) -> None:
        self._value = Path()

    def get(self) -> Path:
        return self._value

    def set(self, value: Path) -> None:
        self._value = value


_BASE = _BaseDir()


@dataclass(frozen=True)
class Problem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def _line_index(node: yaml.Node, path: tuple[str | int, ...], out: dict[tuple[str | int, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[(*path, str(key.value))] = key.start_mark.line + 1
            _line_index(value, (*path, str(key.value)), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)


def _locate(file: Path, loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> str:
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return f"{file}:{lines[loc[:cut]]}: {dotted}"
    return f"{file}: {dotted}"


def _error_loc(error: Any) -> tuple[str | int, ...]:
    """Pydantic's location, or for a policy error raised by the model validator, the policy element's."""
    loc = tuple(error["loc"])
    cause = getattr(error.get("ctx", {}).get("error"), "__cause__", None)
    if not loc and isinstance(cause, RuleError):
        return cause.path
    return loc


def _inventory_problems(config: TrustportConfig, file: Path) -> Iterator[Problem]:
    from switch_drivers import DriverError
    from switch_drivers.inventory import load_inventory

    assert config.enforcement is not None
    path = config.path(config.enforcement.inventory)
    try:
        inventory = load_inventory(path)
    except (DriverError, OSError) as exc:
        yield Problem(f"{file}: enforcement.inventory", f"{path}: {exc}")
        return
    for i, nas in enumerate(config.enforcement.nas):
        for role in ("coa", "switch"):
            name = getattr(nas, role)
            if name is not None and name not in inventory.switches:
                yield Problem(f"{file}: enforcement.nas.{i}.{role}", f"{name!r} is not in the inventory {path}")


def _file_problems(config: TrustportConfig, file: Path) -> Iterator[Problem]:
    """Checks that need the file system: referenced files exist and parse."""

    from radius_hooks.settings import AnchorFile
    from radius_hooks.trust import load_anchors

    for i, anchor in enumerate(config.trust_anchors):
        path = config.path(anchor.file)
        try:
            load_anchors((AnchorFile(anchor.name, anchor.role, path, anchor.max_certificate_days),))
        except OSError as exc:
            yield Problem(f"{file}: trust_anchors.{i}.file", f"cannot read {path}: {exc.strerror}")
        except ConfigError as exc:
            yield Problem(f"{file}: trust_anchors.{i}.file", str(exc))
        except Exception as exc:
            yield Problem(f"{file}: trust_anchors.{i}.file", str(exc))
    for name in ("server_certificate", "server_key"):
        path = config.path(getattr(config.radius, name))
        if not path.is_file():
            yield Problem(f"{file}: radius.{name}", f"file {path} does not exist")
    if config.attestation is not None:
        from policy.attestation import load_verifier_key

        for i, key in enumerate(config.attestation.verifier_keys):
            path = config.path(key.file)
            try:
                load_verifier_key(key.name, path.read_bytes())
            except OSError as exc:
                yield Problem(f"{file}: attestation.verifier_keys.{i}.file", f"cannot read {path}: {exc.strerror}")
            except TrustportError as exc:
                yield Problem(f"{file}: attestation.verifier_keys.{i}.file", str(exc))
    if config.enforcement is not None:
        yield from _inventory_problems(config, file)
    if config.revocation.crl_dir is not None and not config.path(config.revocation.crl_dir).is_dir():
        yield Problem(f"{file}: revocation.crl_dir", f"directory {config.path(config.revocation.crl_dir)} "
                                                      "does not exist")


POLICY_FILE_KEYS = ("segments", "sites", "policy")


def _include_policy(file: Path, data: dict[str, Any]) -> tuple[dict[str, Any], Problem | None]:
    """Take segments/sites/policy from the separate policy file named by ``policy_file``."""
    path = Path(str(data["policy_file"]))
    path = path if path.is_absolute() else file.resolve().parent / path
    clash = [k for k in POLICY_FILE_KEYS if k in data]
    if clash:
        return data, Problem(f"{file}: policy_file", f"{', '.join(clash)} must be in {path} only, not in both files")
    try:
        included = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return data, Problem(f"{file}: policy_file", f"cannot read {path}: {exc.strerror}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        return data, Problem(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")
    if not isinstance(included, dict) or set(included) - set(POLICY_FILE_KEYS):
        return data, Problem(str(path), f"a policy file holds only {', '.join(POLICY_FILE_KEYS)}")
    return {**data, **included}, None


def check_config(file: Path, *, check_files: bool = True) -> tuple[TrustportConfig | None, list[Problem]]:
    """Parse and validate; returns the config (if it validated) and every problem found."""
    try:
        if file.stat().st_size > MAX_CONFIG_BYTES:
            return None, [Problem(str(file), f"larger than {MAX_CONFIG_BYTES} bytes; is this a config file?")]
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(str(file), f"cannot read: {exc}")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        return None, [Problem(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    if not isinstance(data, dict):
        return None, [Problem(str(file), "the top level must be a mapping (key: value)")]
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    if data.get("policy_file") is not None:
        merged, problem = _include_policy(file, data)
        if problem is not None:
            return None, [problem]
        data = merged
    base = file.resolve().parent
    _BASE.set(base)
    try:
        config = TrustportConfig.model_validate({**data, "base_dir": base})
    except ValidationError as exc:
        problems = [Problem(_locate(file, _error_loc(e), lines), e["msg"]) for e in exc.errors()]
        return None, problems
    finally:
        _BASE.set(Path())
    problems = list(_file_problems(config, file)) if check_files else []
    return config, problems


def check_policy_file(file: Path) -> tuple[SegmentRules | None, list[Problem]]:
    """A standalone policy file (segments, sites, policy): built, or every problem with its line."""
    try:
        text = file.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(str(file), f"cannot read: {exc}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        return None, [Problem(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    if not isinstance(data, dict) or set(data) - set(POLICY_FILE_KEYS) or "segments" not in data:
        return None, [Problem(str(file), f"a policy file is a mapping with segments (and sites, policy); "
                                         f"allowed keys: {', '.join(POLICY_FILE_KEYS)}")]
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    try:
        return build_segment_rules(data["segments"] or {}, data.get("sites") or {}, data.get("policy") or {}), []
    except RuleError as exc:
        return None, [Problem(_locate(file, exc.path, lines), str(exc))]
    except (TypeError, AttributeError) as exc:
        return None, [Problem(str(file), f"malformed policy: {exc}")]


def load_config(file: Path, *, check_files: bool = True) -> TrustportConfig:
    config, problems = check_config(file, check_files=check_files)
    if problems or config is None:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(str(p) for p in problems))
    return config


__all__ = ["Problem", "Secret", "TrustportConfig", "check_config", "load_config"]
