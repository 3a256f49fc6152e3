"""Who may do what: API tokens and dashboard logins, each with a role (viewer < operator < admin).

* viewer: read everything (devices, sessions, decisions, jobs, audit, policy, decide);
* operator: also lifecycle actions, job retry/cancel, sessions, attestation results;
* admin: also tokens, users and device registration.

A token is ``tp_`` + 43 URL-safe characters (256 random bits), shown once by ``trustport tokens create``; only its
SHA-256 is stored. Config tokens (``api.tokens``) are machines' tokens provisioned with the config. A dashboard login
is a user with an scrypt password hash; its session cookie is 256 random bits (stored hashed) with a CSRF token
that every form must send back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from policy.errors import TrustportError
from trustport.settings.config import TrustportConfig
from trustport.store.accounts import SqlAccountStore, TokenRecord, UserRecord
from trustport.store.sql import SqlDeviceStore

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TOKEN = re.compile(r"^tp_[A-Za-z0-9_-]{43}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_TOUCH_EVERY = timedelta(minutes=1)  # a token's last use is written at most this often


class AccountError(TrustportError):
    """A token, user or password that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: the name is the actor in the audit log."""

    name: str
    role: Role
    via: Literal["token", "config-token", "session"]
    csrf_token: str | None = None  # for a dashboard session

    def allows(self, needed: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_name(name: str, what: str) -> str:
    if not NAME.match(name):
        raise AccountError(f"{what} name {name[:80]!r}: 1-64 letters, digits and _ . @ - only")
    return name


def hash_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password) > MAX_PASSWORD:
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_DUMMY_HASH = hash_password("not a real password, for timing")


class AccountService:
    def __init__(self, config: TrustportConfig, store: SqlDeviceStore) -> None:
        self.config = config
        self.accounts = SqlAccountStore(store)
        tokens = config.api.tokens if config.api is not None else []
        self._config_tokens = [(t.name, t.secret.get_secret_value().encode(), t.role) for t in tokens]

    # -- tokens ----------------------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, *, actor: str, now: datetime) -> tuple[TokenRecord, str]:
        """A new token and its secret (shown once; only its hash is kept)."""
        check_name(name, "token")
        secret = "tp_" + secrets.token_urlsafe(32)
        record = self.accounts.add_token(name, check_role(role), _sha256(secret), actor=actor, now=now)
        return record, secret

    def revoke_token(self, name: str, *, actor: str, now: datetime) -> None:
        if not self.accounts.revoke_token(name, actor=actor, now=now):
            raise AccountError(f"no active API token named {name!r} ('trustport tokens list')")

    def authenticate_token(self, secret: str, now: datetime) -> Principal | None:
        """The principal a bearer token stands for, or None (unknown, revoked, malformed)."""
        raw = secret.encode()
        for name, token, role in self._config_tokens:  # every one compared, in constant time
            if hmac.compare_digest(raw, token):
                return Principal(name, check_role(role), "config-token")
        if not TOKEN.match(secret):
            return None
        record = self.accounts.token_by_hash(_sha256(secret))
        if record is None or record.revoked_at is not None:
            return None
        if record.last_used_at is None or now - record.last_used_at >= _TOUCH_EVERY:
            self.accounts.touch_token(record.id, now)
        return Principal(record.name, check_role(record.role), "token")

    # -- users and logins ------------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str, *, actor: str, now: datetime) -> UserRecord:
        return self.accounts.add_user(check_name(name, "user"), check_role(role), hash_password(password),
                                      actor=actor, now=now)

    def set_password(self, name: str, password: str, *, actor: str, now: datetime) -> None:
        if not self.accounts.update_user(name, actor=actor, now=now, password_hash=hash_password(password)):
            raise AccountError(f"no user named {name!r}")

    def set_disabled(self, name: str, disabled: bool, *, actor: str, now: datetime) -> None:
        if not self.accounts.update_user(name, actor=actor, now=now, disabled=disabled):
            raise AccountError(f"no user named {name!r}")

    def login(self, name: str, password: str, now: datetime) -> tuple[str, Principal] | None:
        """A new session cookie value and its principal, or None (the same answer, and about the same time,
        for an unknown user, a disabled one and a wrong password)."""
        user = self.accounts.user(name) if NAME.match(name) else None
        ok = verify_password(password, user.password_hash if user is not None else _DUMMY_HASH)
        if user is None or not ok or user.disabled_at is not None:
            return None
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        minutes = self.config.api.session_minutes if self.config.api is not None else 480
        self.accounts.add_session(user.id, _sha256(cookie), csrf, now=now, expires_at=now + timedelta(minutes=minutes))
        self.accounts.audit(now, user.name, "login", f"user {user.name}")
        return cookie, Principal(user.name, check_role(user.role), "session", csrf)

    def session(self, cookie: str, now: datetime) -> Principal | None:
        if not cookie or len(cookie) > 128:
            return None
        found = self.accounts.session(_sha256(cookie), now)
        if found is None:
            return None
        return Principal(found.user.name, check_role(found.user.role), "session", found.csrf_token)

    def logout(self, cookie: str, now: datetime) -> None:
        if cookie and len(cookie) <= 128:
            self.accounts.end_session(_sha256(cookie), now)
