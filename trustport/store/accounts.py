"""API tokens, dashboard users, their login sessions, and the audit log of writes that are not a device's lifecycle.

Secrets are never stored: a token and a session cookie are kept as their SHA-256 (they are 256-bit random values,
so a hash lookup is as good as a constant-time compare), a password as an scrypt hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policy.errors import StoreError
from trustport.store.schema import api_tokens, audit_log, users, web_sessions
from trustport.store.sql import SqlDeviceStore


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    role: str
    password_hash: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None


@dataclass(frozen=True)
class SessionRecord:
    user: UserRecord
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: datetime
    actor: str
    action: str
    target: str
    detail: str | None


class NameTaken(StoreError):
    """A token or user with this name exists already."""


def _token(row: sa.Row[tuple[object, ...]]) -> TokenRecord:
    m = row._mapping
    return TokenRecord(m["id"], m["name"], m["role"], m["created_at"], m["created_by"], m["revoked_at"],
                       m["last_used_at"])


def _user(row: sa.Row[tuple[object, ...]]) -> UserRecord:
    m = row._mapping
    return UserRecord(m["id"], m["name"], m["role"], m["password_hash"], m["created_at"], m["created_by"],
                      m["disabled_at"])


class SqlAccountStore:
    def __init__(self, store: SqlDeviceStore) -> None:
        self.store = store

    # -- tokens ----------------------------------------------------------------------------------------------

    def add_token(self, name: str, role: str, token_sha256: str, *, actor: str, now: datetime) -> TokenRecord:
        with self.store.transaction(f"creating API token {name}") as conn:
            if conn.execute(sa.select(api_tokens.c.id).where(api_tokens.c.name == name)).first() is not None:
                raise NameTaken(f"an API token named {name!r} exists already (revoke it, or choose another name)")
            conn.execute(api_tokens.insert().values(name=name, role=role, token_sha256=token_sha256,
                                                    created_at=now, created_by=actor))
            self.audit_in(conn, now, actor, "token-create", f"token {name}", f"role {role}")
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.name == name)).one()
        return _token(row)

    def tokens(self) -> list[TokenRecord]:
        with self.store.transaction("listing API tokens") as conn:
            return [_token(r) for r in conn.execute(sa.select(api_tokens).order_by(api_tokens.c.name))]

    def token_by_hash(self, token_sha256: str) -> TokenRecord | None:
        with self.store.transaction("checking an API token") as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.token_sha256 == token_sha256)).first()
        return None if row is None else _token(row)

    def touch_token(self, token_id: int, now: datetime) -> None:
        with self.store.transaction("recording an API token's use") as conn:
            conn.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=now))

    def revoke_token(self, name: str, *, actor: str, now: datetime) -> bool:
        """False if no unrevoked token has this name."""
        with self.store.transaction(f"revoking API token {name}") as conn:
            done = conn.execute(api_tokens.update().where(api_tokens.c.name == name,
                                                          api_tokens.c.revoked_at.is_(None))
                                .values(revoked_at=now)).rowcount == 1
            if done:
                self.audit_in(conn, now, actor, "token-revoke", f"token {name}", None)
        return done

    # -- users and sessions ----------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str, *, actor: str, now: datetime) -> UserRecord:
        with self.store.transaction(f"adding user {name}") as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first() is not None:
                raise NameTaken(f"a user named {name!r} exists already")
            conn.execute(users.insert().values(name=name, role=role, password_hash=password_hash, created_at=now,
                                               created_by=actor))
            self.audit_in(conn, now, actor, "user-add", f"user {name}", f"role {role}")
            row = conn.execute(sa.select(users).where(users.c.name == name)).one()
        return _user(row)

    def user(self, name: str) -> UserRecord | None:
        with self.store.transaction("reading a user") as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
        return None if row is None else _user(row)

    def users(self) -> list[UserRecord]:
        with self.store.transaction("listing users") as conn:
            return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]

    def update_user(self, name: str, *, actor: str, now: datetime, password_hash: str | None = None,
                    disabled: bool | None = None) -> bool:
        """A new password and/or disabled (which also ends the user's sessions); False if there is no such user."""
        values: dict[str, object] = {}
        if password_hash is not None:
            values["password_hash"] = password_hash
        if disabled is not None:
            values["disabled_at"] = now if disabled else None
        with self.store.transaction(f"changing user {name}") as conn:
            row = conn.execute(sa.select(users.c.id).where(users.c.name == name)).first()
            if row is None:
                return False
            conn.execute(users.update().where(users.c.id == row.id).values(**values))
            if disabled or password_hash is not None:
                conn.execute(web_sessions.update().where(web_sessions.c.user_id == row.id,
                                                         web_sessions.c.revoked_at.is_(None)).values(revoked_at=now))
            what = "user-disable" if disabled else "user-enable" if disabled is False else "user-password"
            self.audit_in(conn, now, actor, what, f"user {name}", None)
        return True

    def add_session(self, user_id: int, id_sha256: str, csrf_token: str, *, now: datetime,
                    expires_at: datetime) -> None:
        with self.store.transaction("recording a login") as conn:
            conn.execute(web_sessions.insert().values(id_sha256=id_sha256, user_id=user_id, csrf_token=csrf_token,
                                                      created_at=now, expires_at=expires_at))
            conn.execute(web_sessions.delete().where(web_sessions.c.expires_at < now))  # old ones go

    def session(self, id_sha256: str, now: datetime) -> SessionRecord | None:
        """The live session (not expired, not revoked, its user not disabled), or None."""
        query = (sa.select(web_sessions, users).join(users, users.c.id == web_sessions.c.user_id)
                 .where(web_sessions.c.id_sha256 == id_sha256, web_sessions.c.revoked_at.is_(None),
                        web_sessions.c.expires_at > now, users.c.disabled_at.is_(None)))
        with self.store.transaction("reading a login session") as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        m = row._mapping
        user = UserRecord(m[users.c.id], m[users.c.name], m[users.c.role], m[users.c.password_hash],
                          m[users.c.created_at], m[users.c.created_by], m[users.c.disabled_at])
        return SessionRecord(user, m[web_sessions.c.csrf_token], m[web_sessions.c.created_at],
                             m[web_sessions.c.expires_at])

    def end_session(self, id_sha256: str, now: datetime) -> None:
        with self.store.transaction("ending a login session") as conn:
            conn.execute(web_sessions.update().where(web_sessions.c.id_sha256 == id_sha256).values(revoked_at=now))

    # -- audit -----------------------------------------------------------------------------------------------

    @staticmethod
    def audit_in(conn: Connection, time: datetime, actor: str, action: str, target: str, detail: str | None) -> None:
        conn.execute(audit_log.insert().values(time=time, actor=actor, action=action, target=target, detail=detail))

    def audit(self, time: datetime, actor: str, action: str, target: str, detail: str | None = None) -> None:
        with self.store.transaction(f"auditing {action}") as conn:
            self.audit_in(conn, time, actor, action, target, detail)

    def audit_entries(self, limit: int = 100, *, actor: str | None = None) -> Sequence[AuditEntry]:
        query = sa.select(audit_log).order_by(audit_log.c.time.desc(), audit_log.c.id.desc()).limit(limit)
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        with self.store.transaction("reading the audit log") as conn:
            return [AuditEntry(r.id, r.time, r.actor, r.action, r.target, r.detail) for r in conn.execute(query)]
