"""The operator's configuration file (YAML): typed, validated, every problem reported with its location.

Secrets are given inline, as ``{env: NAME}`` or ``{file: PATH}``, and are held as pydantic ``SecretStr`` values
that print as ``**********``. Relative paths are relative to the config file's directory.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from policy.certificates import RevocationPolicy
from policy.decide import AttestationRules, SegmentRules
from policy.document import (
    PolicyDocument,
    PolicySection,
    Segment,
    SiteMembers,
    error_message,
    policy_problems,
)
from policy.errors import ConfigError, TrustportError
from policy.model import CertKind
from policy.rules import RuleError
from trustport.settings import safe_yaml
from trustport.settings.attestation import AttestationConfig
from trustport.settings.base import PolicyProblems, SettingsModel, unique
from trustport.settings.ca import CaSettings
from trustport.settings.directory import DirectoryConfig
from trustport.settings.enrollment import EnrollmentConfig
from trustport.settings.hook import AnchorFile, AuthPath, HookSettings, check_lease
from trustport.settings.mud import MudConfig
from trustport.settings.secrets import SECRET_BASE, resolve_secret

MAX_CONFIG_BYTES = safe_yaml.MAX_BYTES
MAX_PEM_BYTES = 1 << 20


class RadiusClient(SettingsModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    address: str
    secret: SecretStr

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        ipaddress.ip_network(value, strict=False)
        return value

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> SecretStr:
        secret = resolve_secret(value, SECRET_BASE.get())
        if len(secret.get_secret_value()) < 16:
            raise ValueError("RADIUS shared secrets must be at least 16 characters")
        if any(ch in secret.get_secret_value() for ch in '"\\\n\r'):
            raise ValueError('RADIUS shared secrets must not contain quotes, backslashes or newlines')
        return secret


class RadiusSettings(SettingsModel):
    listen_address: str = "127.0.0.1"
    auth_port: int = Field(default=1812, ge=1, le=65535)
    acct_port: int = Field(default=1813, ge=1, le=65535)
    reject_delay: int = Field(default=1, ge=0, le=5)
    run_as_user: str | None = "freerad"
    server_certificate: Path
    server_key: Path
    server_key_password: SecretStr | None = None
    clients: list[RadiusClient] = Field(min_length=1)

    @field_validator("clients")
    @classmethod
    def _client_names(cls, value: list[RadiusClient]) -> list[RadiusClient]:
        return unique(value, ("radius", "clients"), "RADIUS client")

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("server_key_password", mode="before")
    @classmethod
    def _key_password(cls, value: Any) -> SecretStr | None:
        return None if value is None else resolve_secret(value, SECRET_BASE.get())


class RevocationSettings(SettingsModel):
    crl_dir: Path | None = None
    refresh_seconds: float = Field(default=30.0, gt=0, le=86400)
    require_crl_for: list[CertKind] = Field(default_factory=lambda: [CertKind.LDEVID])
    accept_stale_crl: bool = False


class DatabaseSettings(SettingsModel):
    url: str = "sqlite:///trustport.sqlite"
    password: SecretStr | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: Any) -> SecretStr | None:
        return None if value is None else resolve_secret(value, SECRET_BASE.get())

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("database url must start with sqlite:/// or postgresql://")
        return value


class ApiToken(SettingsModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    secret: SecretStr
    role: Literal["viewer", "operator", "admin"] = "operator"  # a verifier posting results is an operator

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> SecretStr:
        secret = resolve_secret(value, SECRET_BASE.get())
        if len(secret.get_secret_value()) < 24:
            raise ValueError("API tokens must be at least 24 characters")
        return secret


Role = Literal["viewer", "operator", "admin"]


class ApiSettings(SettingsModel):
    """The REST API and the dashboard (``trustport api serve``). Tokens and dashboard users live in the registry
    (``trustport tokens create``, ``trustport users add``, stored hashed); ``tokens`` here are for machines whose
    secret is provisioned with the config (a verifier posting attestation results), each with its role."""

    listen_address: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    tokens: list[ApiToken] = Field(default_factory=list)
    tls_certificate: Path | None = None  # PEM chain; with tls_key, the API and dashboard are served over HTTPS
    tls_key: Path | None = None
    session_minutes: int = Field(default=480, ge=5, le=10080)  # a dashboard login lasts this long
    dashboard: bool = True

    @field_validator("tokens")
    @classmethod
    def _token_names(cls, value: list[ApiToken]) -> list[ApiToken]:
        return unique(value, ("api", "tokens"), "API token")

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("give both tls_certificate and tls_key, or neither (plain HTTP on the listen address)")
        return self


class MetricsSettings(SettingsModel):
    """Where the RADIUS hook and the worker leave their counters for the process that serves ``/metrics``."""

    directory: Path = Path("metrics")  # relative to the config file; the hook (radiusd's user) must write it
    flush_seconds: float = Field(default=5.0, gt=0, le=300)
    enabled: bool = True


class AuthPathSettings(SettingsModel):
    """What the RADIUS hook does off the authentication path (docs/performance.md)."""

    cache: bool = True  # registry reads from memory, kept right by the change feed
    refresh_seconds: float = Field(default=0.1, gt=0, le=1.0)  # how often each hook reads the feed
    lease_seconds: float = Field(default=2.0, gt=0, le=5.0)  # how long an unconfirmed cache may still be used
    max_cached_devices: int = Field(default=100_000, ge=1, le=10_000_000)
    journal: bool = True  # decision log, last seen, sessions: to a local journal first, drained by a thread
    journal_directory: Path = Path("journal")  # relative to the config file; the hook (radiusd's user) writes it
    journal_sync: bool = False
    # a record after a quiet spell is in the registry within ~20 ms; under load one transaction this often takes
    # everything that came meanwhile (what the registry lags behind, and what keeps the drainer's CPU small)
    journal_flush_seconds: float = Field(default=0.2, gt=0, le=10)

    @model_validator(mode="after")
    def _lease_outlasts_refresh(self) -> AuthPathSettings:
        check_lease(self.refresh_seconds, self.lease_seconds)
        return self


class NasSettings(SettingsModel):
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


class EnforcementSettings(SettingsModel):
    inventory: Path
    nas: list[NasSettings] = Field(min_length=1)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_seconds: float = Field(default=2.0, gt=0, le=3600)
    backoff_cap_seconds: float = Field(default=300.0, gt=0, le=86400)
    lease_seconds: float = Field(default=15.0, gt=1, le=3600)  # renewed by a heartbeat while a job runs


class TrustportConfig(SettingsModel):
    site: str = "default"
    radius: RadiusSettings
    trust_anchors: list[AnchorFile] = Field(min_length=1)
    revocation: RevocationSettings = RevocationSettings()
    # the policy document's sections (policy.document, the model hook.json holds too); references: _references
    segments: dict[str, Segment] = Field(min_length=1)
    sites: dict[str, SiteMembers] = Field(default_factory=dict)
    policy: PolicySection = PolicySection()
    policy_file: Path | None = None
    database: DatabaseSettings = DatabaseSettings()
    attestation: AttestationConfig | None = None
    api: ApiSettings | None = None
    enforcement: EnforcementSettings | None = None
    mud: MudConfig | None = None
    ca: CaSettings | None = None
    enrollment: EnrollmentConfig | None = None  # the EST server (trustport est serve)
    directory: DirectoryConfig | None = None  # device records synced from OpenLDAP / Active Directory
    metrics: MetricsSettings = MetricsSettings()
    auth_path: AuthPathSettings = AuthPathSettings()
    base_dir: Path = Path()
    config_file: Path | None = None  # set by the loader (the hook reloads the policy from it); not read from YAML

    @field_validator("trust_anchors")
    @classmethod
    def _anchor_names(cls, value: list[AnchorFile]) -> list[AnchorFile]:
        return unique(value, ("trust_anchors",), "trust anchor")

    @model_validator(mode="after")
    def _references(self) -> TrustportConfig:
        problems = self.policy_problems()
        if problems:
            raise PolicyProblems(problems)
        return self

    def policy_problems(self) -> list[RuleError]:
        att = self.attestation
        problems = self.policy_document().reference_problems(att.placement_path() if att is not None
                                                             else ("attestation",))
        allowed = self.directory.allowed_segments if self.directory is not None else None
        problems += [RuleError(f"segment {name!r} is not defined; defined: {', '.join(self.segments)}",
                               ("directory", "allowed_segments", i))
                     for i, name in enumerate(allowed or ()) if name not in self.segments]
        return problems

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else (self.base_dir / value).resolve()

    def ca_crl_path(self) -> Path | None:
        """Where the owner CA publishes its CRL: ``ca.crl_file``, else ``<revocation.crl_dir>/<ca.name>.crl``."""
        if self.ca is None:
            return None
        if self.ca.crl_file is not None:
            return self.path(self.ca.crl_file)
        if self.revocation.crl_dir is None:
            return None
        return self.path(self.revocation.crl_dir) / f"{self.ca.name}.crl"

    def database_url(self) -> str:
        """The URL with relative SQLite paths made absolute and the password filled in (never print it)."""
        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str(self.path(Path(url[len("sqlite:///"):])))
        if self.database.password is not None and url.startswith("postgresql"):
            from sqlalchemy.engine import make_url

            password = self.database.password.get_secret_value()
            url = make_url(url).set(password=password).render_as_string(hide_password=False)
        return url

    def attestation_rules(self) -> AttestationRules | None:
        """Where attestation moves a device, or None: only with an explicit placement (docs/attestation.md)."""
        placement = None if self.attestation is None else self.attestation.effective_placement()
        if placement is None:
            return None
        return AttestationRules(warning_segment=placement.warning_segment,
                                missing_ldevid_segment=placement.missing_ldevid_segment,
                                missing_idevid_segment=placement.missing_idevid_segment
                                or self.policy.quarantine_segment)

    def policy_document(self) -> PolicyDocument:
        """The effective policy: what the hook is given, and what ``policy_revision`` is the hash of."""
        return PolicyDocument(segments=self.segments, sites=self.sites, policy=self.policy,
                              attestation=self.attestation_rules())

    def segment_rules(self) -> SegmentRules:
        return self.policy_document().segment_rules()

    def policy_revision(self) -> str:
        return self.policy_document().revision()

    def hook_settings(self) -> HookSettings:
        att = self.attestation
        return HookSettings(
            anchors=tuple(replace(a, file=self.path(a.file)) for a in self.trust_anchors),
            crl_dir=self.path(self.revocation.crl_dir) if self.revocation.crl_dir else None,
            crl_refresh_seconds=self.revocation.refresh_seconds,
            revocation=RevocationPolicy(frozenset(self.revocation.require_crl_for), self.revocation.accept_stale_crl),
            policy=self.policy_document(),
            database_url=self.database_url(),
            config_file=self.config_file,
            mud=None if self.mud is None else self.mud.model_copy(update={
                "directory": self.mud.directory_path(self.base_dir),
                "signers": [self.path(p) for p in self.mud.signers]}),
            attestation=None if att is None else att.resolved(self.base_dir),
            metrics_dir=self.path(self.metrics.directory) if self.metrics.enabled else None,
            metrics_flush_seconds=self.metrics.flush_seconds,
            auth_path=AuthPath(
                cache=self.auth_path.cache, refresh_seconds=self.auth_path.refresh_seconds,
                lease_seconds=self.auth_path.lease_seconds, max_cached_devices=self.auth_path.max_cached_devices,
                journal_dir=self.journal_dir(), journal_sync=self.auth_path.journal_sync,
                journal_flush_seconds=self.auth_path.journal_flush_seconds),
        )

    def journal_dir(self) -> Path | None:
        """Where the hooks journal their writes (None: journal off)."""
        return self.path(self.auth_path.journal_directory) if self.auth_path.journal else None




@dataclass(frozen=True)
class Problem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


Lines = dict[tuple[str | int, ...], int]


class _Where:
    """Which file (and line) a config path comes from: the config, or the policy file for segments/sites/policy."""

    def __init__(self, file: Path, lines: Lines) -> None:
        self.files: dict[str, tuple[Path, Lines]] = {}
        self.default = (file, lines)

    def include(self, keys: tuple[str, ...], file: Path, lines: Lines) -> None:
        for key in keys:
            self.files[key] = (file, lines)

    def locate(self, loc: tuple[str | int, ...]) -> str:
        file, lines = self.files.get(str(loc[0]), self.default) if loc else self.default
        return _locate(file, loc, lines)


def _locate(file: Path, loc: tuple[str | int, ...], lines: Lines) -> str:
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return f"{file}:{lines[loc[:cut]]}: {dotted}"
    return f"{file}: {dotted}"


def _error_problems(error: Any, where: _Where) -> list[Problem]:
    """Pydantic's error at its location; a ``PolicyProblems`` from the model validator as one problem each."""
    loc = tuple(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, PolicyProblems):
        return [Problem(where.locate(p.path), _message(p)) for p in cause.problems]
    if not loc and isinstance(getattr(cause, "__cause__", None), RuleError):
        loc = cause.__cause__.path
    return [Problem(where.locate(loc), error_message(error))]


def _message(problem: RuleError) -> str:
    """The message without a leading ``segments.x:`` that repeats the location."""
    text, dotted = str(problem), ".".join(str(p) for p in problem.path)
    return text[len(dotted) + 2:] if dotted and text.startswith(dotted + ": ") else text


def _yaml_problems(exc: safe_yaml.YamlProblems) -> list[Problem]:
    return [Problem(p.location(), p.message) for p in exc.problems]


def _read_pem(path: Path, what: str) -> bytes:
    return safe_yaml.read_regular_file(path, MAX_PEM_BYTES, what)


def _inventory_problems(config: TrustportConfig, file: Path) -> Iterator[Problem]:
    from switch_drivers import DriverError, default_registry
    from switch_drivers.inventory import load_inventory

    assert config.enforcement is not None
    path = config.path(config.enforcement.inventory)
    try:
        safe_yaml.read_regular_file(path, MAX_CONFIG_BYTES, "inventory")
        inventory = load_inventory(path)
    except (DriverError, OSError) as exc:
        yield Problem(f"{file}: enforcement.inventory", f"{path}: {exc.strerror if isinstance(exc, OSError) else exc}")
        return
    registry = default_registry()
    for i, nas in enumerate(config.enforcement.nas):
        for role in ("coa", "switch"):
            name = getattr(nas, role)
            if name is None:
                continue
            if name not in inventory.switches:
                yield Problem(f"{file}: enforcement.nas.{i}.{role}", f"{name!r} is not in the inventory {path}")
                continue
            driver = inventory.switches[name].driver
            if driver not in registry:
                yield Problem(f"{file}: enforcement.nas.{i}.{role}", f"{name!r} uses unknown driver {driver!r}")
                continue
            needed = _needed_capabilities(role, nas)
            missing = [c.name or str(c) for c in needed if c not in registry[driver].capabilities]
            if missing:
                yield Problem(f"{file}: enforcement.nas.{i}.{role}",
                              f"{name!r} (driver {driver}) cannot {', '.join(m.lower() for m in missing)}, which "
                              f"this entry needs; pick another driver or change the entry")


def _needed_capabilities(role: str, nas: NasSettings) -> list[Any]:
    """What a NAS entry asks of the driver behind it (the planner's steps)."""
    from switch_drivers import Capability

    if role == "coa":
        return [Capability.DISCONNECT if nas.coa_mode == "disconnect" else Capability.REAUTHENTICATE]
    return [Capability.SET_VLAN, *([Capability.BOUNCE_PORT] if nas.bounce else [])]


def _server_problems(config: TrustportConfig, where: _Where) -> Iterator[Problem]:
    """The server certificate parses, its key parses (with the configured password) and belongs to it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    radius = config.radius
    cert_path, key_path = config.path(radius.server_certificate), config.path(radius.server_key)
    cert = key = None
    try:
        certs = x509.load_pem_x509_certificates(_read_pem(cert_path, "server certificate"))
        cert = certs[0]
    except OSError as exc:
        yield Problem(where.locate(("radius", "server_certificate")), str(exc.strerror or exc))
    except ValueError:
        yield Problem(where.locate(("radius", "server_certificate")),
                      f"{cert_path} is not a PEM certificate (-----BEGIN CERTIFICATE-----)")
    password = radius.server_key_password.get_secret_value().encode() if radius.server_key_password else None
    try:
        key = serialization.load_pem_private_key(_read_pem(key_path, "server key"), password)
    except OSError as exc:
        yield Problem(where.locate(("radius", "server_key")), str(exc.strerror or exc))
    except TypeError as exc:
        yield Problem(where.locate(("radius", "server_key")), f"{key_path}: {exc} (server_key_password)")
    except (ValueError, Exception) as exc:  # cryptography: wrong password, not a key, unsupported algorithm
        yield Problem(where.locate(("radius", "server_key")),
                      f"{key_path} is not a PEM private key trustport can read ({type(exc).__name__}: "
                      f"{str(exc)[:120]}); a wrong server_key_password gives this too")
    if cert is not None and key is not None:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        ours = key.public_key().public_bytes(serialization.Encoding.DER, spki)
        if ours != cert.public_key().public_bytes(serialization.Encoding.DER, spki):
            yield Problem(where.locate(("radius", "server_key")),
                          f"{key_path} does not belong to the server certificate {cert_path} (their public keys "
                          "differ); configure the key the certificate was issued for")


def _file_problems(config: TrustportConfig, where: _Where) -> Iterator[Problem]:
    """Checks that need the file system: referenced files are regular files, parse, and have the right role."""

    from trustport.services.trust import load_anchors
    from trustport.settings.hook import AnchorFile

    file = where.default[0]
    specs, anchors_ok = [], True
    for i, anchor in enumerate(config.trust_anchors):
        path = config.path(anchor.file)
        loc = where.locate(("trust_anchors", i, "file"))
        spec = AnchorFile(anchor.name, anchor.role, path, anchor.max_certificate_days)
        specs.append(spec)
        try:
            _read_pem(path, "trust anchor file")  # a FIFO or device would block load_anchors' read
            load_anchors((spec,))
        except OSError as exc:
            anchors_ok = False
            yield Problem(loc, str(exc.strerror or exc))
        except Exception as exc:  # ConfigError/CertificateError: not PEM, not a CA, no root, ...
            anchors_ok = False
            yield Problem(loc, str(exc))
    if anchors_ok:
        try:  # across files: one CA configured twice, or under two roles
            load_anchors(tuple(specs))
        except Exception as exc:
            yield Problem(where.locate(("trust_anchors",)), str(exc))
    yield from _server_problems(config, where)
    if config.attestation is not None:
        from policy.attestation import load_verifier_key

        for i, key in enumerate(config.attestation.verifier_keys):
            path = config.path(key.file)
            loc = where.locate(("attestation", "verifier_keys", i, "file"))
            try:
                load_verifier_key(key.name, _read_pem(path, "verifier key"))
            except OSError as exc:
                yield Problem(loc, str(exc.strerror or exc))
            except TrustportError as exc:
                yield Problem(loc, str(exc))
    if config.enforcement is not None:
        yield from _inventory_problems(config, file)
    if config.revocation.crl_dir is not None and not config.path(config.revocation.crl_dir).is_dir():
        yield Problem(where.locate(("revocation", "crl_dir")),
                      f"directory {config.path(config.revocation.crl_dir)} does not exist")
    if config.directory is not None:
        yield from _directory_ca_problems(config, where)


def _directory_ca_problems(config: TrustportConfig, where: _Where) -> Iterator[Problem]:
    from cryptography import x509

    assert config.directory is not None
    path = config.path(config.directory.ca_file)
    try:
        certificates = x509.load_pem_x509_certificates(_read_pem(path, "directory CA file"))
    except OSError as exc:
        yield Problem(where.locate(("directory", "ca_file")), str(exc.strerror or exc))
    except ValueError as exc:
        yield Problem(where.locate(("directory", "ca_file")), f"{path} holds no PEM certificate ({exc})")
    else:
        if not certificates:
            yield Problem(where.locate(("directory", "ca_file")), f"{path} holds no PEM certificate")


POLICY_FILE_KEYS = ("segments", "sites", "policy")


def _include_policy(file: Path, data: dict[str, Any], where: _Where) -> tuple[dict[str, Any], list[Problem]]:
    """Take segments/sites/policy from the separate policy file named by ``policy_file``."""
    raw = data["policy_file"]
    if not isinstance(raw, str) or not raw:
        return data, [Problem(where.locate(("policy_file",)), "a path to a policy file (segments, sites, policy)")]
    path = Path(raw)
    path = path if path.is_absolute() else file.resolve().parent / path
    clash = [k for k in POLICY_FILE_KEYS if k in data]
    if clash:
        return data, [Problem(where.locate(("policy_file",)),
                              f"{', '.join(clash)} must be in {path} only, not in both files")]
    try:
        included, lines = safe_yaml.load(path, MAX_CONFIG_BYTES, "policy file")
    except safe_yaml.YamlProblems as exc:
        return data, [Problem(where.locate(("policy_file",)), f"{p.location()}: {p.message}")
                      for p in exc.problems]
    if not isinstance(included, dict) or set(map(str, included)) - set(POLICY_FILE_KEYS):
        extra = sorted(set(map(str, included)) - set(POLICY_FILE_KEYS)) if isinstance(included, dict) else []
        return data, [Problem(_locate(path, (k,), lines) if extra else str(path),
                              f"a policy file holds only {', '.join(POLICY_FILE_KEYS)}")
                      for k in (extra or [""])]
    where.include(POLICY_FILE_KEYS, path, lines)
    return {**data, **included}, []


def _load_yaml(file: Path) -> tuple[dict[str, Any] | None, Lines, list[Problem]]:
    try:
        data, lines = safe_yaml.load(file, MAX_CONFIG_BYTES, "config file")
    except safe_yaml.YamlProblems as exc:
        return None, {}, _yaml_problems(exc)
    if not isinstance(data, dict):
        return None, lines, [Problem(f"{file}:1: (top level)", "the top level must be a mapping (key: value)")]
    return data, lines, []


def check_config(file: Path, *, check_files: bool = True) -> tuple[TrustportConfig | None, list[Problem]]:
    """Parse and validate; returns the config (if it validated) and every problem found, each as
    ``file:line: path: message``. Never raises for a bad file, never blocks on one, never takes long."""
    data, lines, problems = _load_yaml(file)
    if data is None:
        return None, problems
    where = _Where(file, lines)
    if data.get("policy_file") is not None:
        data, problems = _include_policy(file, data, where)
        if problems:
            return None, problems
    base = file.resolve().parent
    SECRET_BASE.set(base)
    try:
        config = TrustportConfig.model_validate({**data, "base_dir": base, "config_file": file.resolve()})
    except ValidationError as exc:
        problems = [p for e in exc.errors() for p in _error_problems(e, where)]
        causes = [e.get("ctx", {}).get("error") for e in exc.errors()]
        if not any(isinstance(c, PolicyProblems) and c.policy for c in causes):
            problems += _raw_policy_problems(data, where, {str(p) for p in problems})
        return None, problems
    finally:
        SECRET_BASE.set(Path())
    problems = list(_file_problems(config, where)) if check_files else []
    return config, problems


def _raw_policy_problems(data: dict[str, Any], where: _Where, seen: set[str]) -> list[Problem]:
    """When other sections fail, the model validator does not run: check the policy document on its own (its
    shape problems are already among pydantic's; this adds the reference problems)."""
    policy = data.get("policy")
    att = data.get("attestation")
    placement = None
    if isinstance(att, dict):
        given: dict[str, Any] = att["placement"] if isinstance(att.get("placement"), dict) else att
        if all(isinstance(given.get(k), str) for k in ("warning_segment", "missing_ldevid_segment")):
            quarantine = policy.get("quarantine_segment", "quarantine") if isinstance(policy, dict) else "quarantine"
            placement = {"warning_segment": given["warning_segment"],
                         "missing_ldevid_segment": given["missing_ldevid_segment"],
                         "missing_idevid_segment": str(given.get("missing_idevid_segment") or quarantine)}
    document = {k: data[k] for k in POLICY_FILE_KEYS if k in data}
    _document, found = policy_problems({**document, "attestation": placement})
    out = [Problem(where.locate(p.path), _message(p)) for p in found]
    return [p for p in out if str(p) not in seen]


def check_policy_file(file: Path) -> tuple[PolicyDocument | None, list[Problem]]:
    """A standalone policy file (segments, sites, policy): validated, or every problem with its line."""
    try:
        data, lines = safe_yaml.load(file, MAX_CONFIG_BYTES, "policy file")
    except safe_yaml.YamlProblems as exc:
        return None, _yaml_problems(exc)
    if not isinstance(data, dict) or "segments" not in data:
        return None, [Problem(f"{file}:1: (top level)", f"a policy file is a mapping with segments (and sites, "
                                                       f"policy); allowed keys: {', '.join(POLICY_FILE_KEYS)}")]
    extra = sorted(set(map(str, data)) - set(POLICY_FILE_KEYS))
    if extra:
        return None, [Problem(_locate(file, (k,), lines), f"unknown key; a policy file holds only "
                                                          f"{', '.join(POLICY_FILE_KEYS)}") for k in extra]
    document, found = policy_problems(data)
    return document, [Problem(_locate(file, p.path, lines), _message(p)) for p in found]


def ca_config_problems(config: TrustportConfig) -> list[Problem]:
    """Errors of the ``ca:`` section, for ``config check`` only: they read the CA key, which radiusd (whose hook
    loads this config too) must not be able to read, so they are not part of ``check_config``."""
    from trustport.settings.ca import ca_problems

    file = config.config_file or Path("config")
    return [Problem(f"{file}: {'.'.join(loc)}", message) for loc, message in ca_problems(config)]


def config_warnings(config: TrustportConfig, now: datetime) -> list[Problem]:
    """What ``config check`` reports without failing (exit 0): expired or soon-expiring CRLs, each "warning: ..."."""
    from trustport.settings.ca import crl_warnings

    file = config.config_file or Path("config")
    return [Problem(f"{file}: {'.'.join(loc)}", f"warning: {message}") for loc, message in crl_warnings(config, now)]


def load_config(file: Path, *, check_files: bool = True) -> TrustportConfig:
    config, problems = check_config(file, check_files=check_files)
    if problems or config is None:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(str(p) for p in problems))
    return config


__all__ = ["Problem", "TrustportConfig", "ca_config_problems", "check_config", "config_warnings", "load_config"]
