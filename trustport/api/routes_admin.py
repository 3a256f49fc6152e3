"""/v1/tokens and /v1/users (role admin): API tokens shown once and stored hashed, dashboard logins."""

# No ``from __future__ import annotations``: FastAPI reads these signatures' real types.
from typing import Annotated, Any

from fastapi import APIRouter, Path

from trustport.api.auth import Admin, ApiContext
from trustport.api.core import problem
from trustport.api.models import Done, PasswordIn, TokenCreatedOut, TokenIn, TokenOut, UserIn, UserOut
from trustport.services.accounts import NAME, AccountError
from trustport.store.accounts import TokenRecord, UserRecord

Name = Annotated[str, Path(min_length=1, max_length=64, description="letters, digits and _ . @ -")]


def _token(t: TokenRecord) -> TokenOut:
    return TokenOut(name=t.name, role=t.role, created_at=t.created_at, created_by=t.created_by,
                    revoked_at=t.revoked_at, last_used_at=t.last_used_at)


def _user(u: UserRecord) -> UserOut:
    return UserOut(name=u.name, role=u.role, created_at=u.created_at, created_by=u.created_by,
                   disabled_at=u.disabled_at)


def _known(name: str, what: str) -> str:
    if not NAME.match(name):
        raise problem(404, f"unknown-{what}", f"no {what} named {name[:64]!r} (names are 1-64 letters, digits and "
                                              "_ . @ -)")
    return name


def router(ctx: ApiContext, problems: dict[int | str, dict[str, Any]]) -> APIRouter:
    api = APIRouter(prefix="/v1", responses=problems)
    root = ctx.root

    @api.get("/tokens", response_model=list[TokenOut], tags=["accounts"], summary="API tokens")
    def list_tokens(_who: Admin) -> list[TokenOut]:
        """The registry's tokens (names, roles, last use; never their secrets)."""
        return [_token(t) for t in root.accounts.accounts.tokens()]

    @api.post("/tokens", status_code=201, response_model=TokenCreatedOut, tags=["accounts"],
              summary="Create an API token")
    def create_token(body: TokenIn, who: Admin) -> TokenCreatedOut:
        """The secret is in this answer only: only its SHA-256 is stored."""
        try:
            record, secret = root.accounts.create_token(body.name, body.role, actor=who.name, now=ctx.clock())
        except AccountError as exc:
            raise problem(422, "invalid-request", str(exc)) from exc
        return TokenCreatedOut(token=_token(record), secret=secret,
                               note="shown once: store it now, it cannot be shown again")

    @api.delete("/tokens/{name}", response_model=Done, tags=["accounts"], summary="Revoke an API token")
    def revoke_token(name: Name, who: Admin) -> Done:
        """It is refused (401) from now on."""
        try:
            root.accounts.revoke_token(_known(name, "token"), actor=who.name, now=ctx.clock())
        except AccountError as exc:
            raise problem(404, "unknown-token", str(exc)) from exc
        return Done(message=f"token {name} revoked")

    @api.get("/users", response_model=list[UserOut], tags=["accounts"], summary="Dashboard users")
    def list_users(_who: Admin) -> list[UserOut]:
        return [_user(u) for u in root.accounts.accounts.users()]

    @api.post("/users", status_code=201, response_model=UserOut, tags=["accounts"], summary="Add a user")
    def add_user(body: UserIn, who: Admin) -> UserOut:
        """A dashboard login (scrypt password hash)."""
        try:
            return _user(root.accounts.add_user(body.name, body.role, body.password, actor=who.name,
                                                now=ctx.clock()))
        except AccountError as exc:
            raise problem(422, "invalid-request", str(exc)) from exc

    def _change(name: str, change: Any) -> None:
        try:
            change(_known(name, "user"))
        except AccountError as exc:
            raise problem(404, "unknown-user", str(exc)) from exc

    @api.post("/users/{name}/disable", response_model=Done, tags=["accounts"], summary="Disable a user")
    def disable_user(name: Name, who: Admin) -> Done:
        """Ends the user's sessions too."""
        _change(name, lambda n: root.accounts.set_disabled(n, True, actor=who.name, now=ctx.clock()))
        return Done(message=f"user {name} disabled")

    @api.post("/users/{name}/enable", response_model=Done, tags=["accounts"], summary="Enable a user")
    def enable_user(name: Name, who: Admin) -> Done:
        _change(name, lambda n: root.accounts.set_disabled(n, False, actor=who.name, now=ctx.clock()))
        return Done(message=f"user {name} enabled")

    @api.put("/users/{name}/password", response_model=Done, tags=["accounts"], summary="Set a user's password")
    def set_password(name: Name, body: PasswordIn, who: Admin) -> Done:
        """Ends the user's sessions too."""
        _change(name, lambda n: root.accounts.set_password(n, body.password, actor=who.name, now=ctx.clock()))
        return Done(message=f"password of user {name} changed")

    return api
