"""The ``directory:`` section: where device records come from (OpenLDAP, Active Directory) and how they are read.

Only LDAPS (``ldaps://``) or LDAP with StartTLS (``ldap://`` + ``start_tls: true``), always checked against
``ca_file``: there is no setting that accepts any certificate, and plain LDAP (which would send the bind password
in clear) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from policy.directory import DEFAULT_FILTERS, PRESETS, AttributeMap, EntryRules, SyncRules
from policy.dn import DnError
from policy.document import Name
from trustport.settings.base import SettingsModel
from trustport.settings.secrets import SECRET_BASE, resolve_secret


def _ldap_dn(value: str, what: str) -> str:
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    try:
        parse_dn(value)
    except LDAPInvalidDnError as exc:
        raise ValueError(f"{what} {value[:80]!r} is not an LDAP DN ({exc})") from None
    if any(ord(ch) < 0x20 for ch in value):
        raise ValueError(f"{what} contains a control character")
    return value


class DirectoryLifecycle(SettingsModel):
    """What a sync does to a device whose entry is disabled, or gone."""

    disabled: Literal["quarantine", "decommission"] = "quarantine"
    removed: Literal["quarantine", "decommission"] = "decommission"


class DirectoryConfig(SettingsModel):
    name: Name = "directory"
    url: str  # ldaps://host[:port] or ldap://host[:port] with start_tls
    start_tls: bool = False
    ca_file: Path
    bind_dn: str
    bind_password: SecretStr
    base_dn: str
    filter: str | None = None  # default: the mapping's (objectClass=trustportDevice) / AD computers with a serial
    scope: Literal["subtree", "level"] = "subtree"
    mapping: Literal["openldap", "active-directory"] = "openldap"
    attributes: dict[str, str | None] = Field(default_factory=dict)  # override single attributes of the mapping
    default_issuer: str | None = None  # the IDevID issuer for entries without one (AD has no issuer attribute)
    allowed_segments: list[str] | None = None  # segments the directory may assign; default: every segment
    lifecycle: DirectoryLifecycle = DirectoryLifecycle()
    page_size: int = Field(default=500, ge=1, le=10000)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)  # connect, and each answer
    interval_seconds: float = Field(default=300.0, ge=10, le=86400)  # 'trustport worker' syncs this often
    max_value_length: int = Field(default=256, ge=16, le=4096)
    max_removed_fraction: float = Field(default=0.1, ge=0, le=1)  # more is refused without --allow-mass-removal

    @field_validator("bind_password", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> SecretStr:
        return resolve_secret(value, SECRET_BASE.get())

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
            raise ValueError(f"{value[:80]!r} is not ldaps://HOST[:PORT] or ldap://HOST[:PORT]")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError("give the server only (ldaps://HOST[:PORT]); the base DN and filter have their own "
                             "settings")
        _ = parts.port  # raises ValueError for a port that is not 1-65535
        return value

    @field_validator("bind_dn", "base_dn")
    @classmethod
    def _dns(cls, value: str) -> str:
        return _ldap_dn(value, "DN")

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from ldap3.core.exceptions import LDAPInvalidFilterError
        from ldap3.operation.search import parse_filter

        if not value.startswith("(") or not value.endswith(")"):
            raise ValueError("an LDAP filter is enclosed in parentheses, e.g. (objectClass=trustportDevice)")
        try:
            parse_filter(value, None, auto_escape=False, auto_encode=False, validator=None, check_names=False)
        except LDAPInvalidFilterError as exc:
            raise ValueError(f"{value[:80]!r} is not an LDAP filter ({exc})") from None
        return value

    @field_validator("default_issuer")
    @classmethod
    def _issuer(cls, value: str | None) -> str | None:
        from policy.directory import issuer_dn

        try:
            return None if value is None else issuer_dn(value)
        except DnError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _transport(self) -> DirectoryConfig:
        scheme = urlsplit(self.url).scheme
        if scheme == "ldap" and not self.start_tls:
            raise ValueError("ldap:// without start_tls would send the bind password in clear: use ldaps://, or "
                             "set start_tls: true")
        if scheme == "ldaps" and self.start_tls:
            raise ValueError("ldaps:// is TLS already; start_tls is for ldap:// URLs")
        self.attribute_map()  # an unknown or malformed attribute override is an error here
        return self

    def attribute_map(self) -> AttributeMap:
        """The preset with this section's overrides."""
        base = PRESETS[self.mapping].model_dump()
        unknown = set(self.attributes) - set(base)
        if unknown:
            raise ValueError(f"unknown attribute mapping key(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(base)}")
        return AttributeMap(**{**base, **self.attributes})

    def search_filter(self) -> str:
        return self.filter or DEFAULT_FILTERS[self.mapping]

    def entry_rules(self, segments: list[str]) -> EntryRules:
        allowed = frozenset(self.allowed_segments if self.allowed_segments is not None else segments)
        return EntryRules(self.attribute_map(), allowed, self.default_issuer, self.max_value_length)

    def sync_rules(self) -> SyncRules:
        mapping = self.attribute_map()
        manages = frozenset(name for name in ("owner", "device_class", "site", "segment")
                            if getattr(mapping, name) is not None)
        return SyncRules(self.lifecycle.disabled, self.lifecycle.removed, manages)

    def resolved_ca(self, base_dir: Path) -> Path:
        return self.ca_file if self.ca_file.is_absolute() else (base_dir / self.ca_file).resolve()
