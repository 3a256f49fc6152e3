"""``trustport tokens`` (create, list, revoke) and ``trustport users`` (add, list, disable, enable, passwd): API
tokens and dashboard logins with a role (viewer < operator < admin), stored hashed in the registry; every change is
in the audit log with the invoking user as actor."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import click

from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.services.accounts import MAX_PASSWORD, MIN_PASSWORD, ROLES, AccountError

role_option = click.option("--role", type=click.Choice(ROLES), required=True,
                           help="viewer: read; operator: also act on devices, jobs, sessions; admin: also tokens, "
                                "users, device registration")


def _actor() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser() or "cli"


actor_option = click.option("--actor", default=_actor, show_default="the invoking user", help="who (audit log)")


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else ""


@click.group("tokens")
def tokens_group() -> None:
    """REST API tokens (bearer), each with a role; shown once, stored hashed."""


@tokens_group.command("create")
@click.argument("name")
@role_option
@click.option("--json", "as_json", is_flag=True)
@actor_option
@config_option
def tokens_create(name: str, role: str, as_json: bool, actor: str, config_file: Path) -> None:
    """Create token NAME; its secret is printed once (only its SHA-256 is kept)."""
    with App.from_file(config_file) as app:
        record, secret = app.accounts.create_token(name, role, actor=actor, now=cli_base.now_utc())
    if as_json:
        cli_base.emit_json({"name": record.name, "role": record.role, "created_at": record.created_at,
                            "secret": secret, "note": "shown once: it cannot be shown again"})
        return
    cli_base.echo_safe(f"created API token {record.name} (role {record.role}):")
    click.echo(secret)
    click.echo("store it now: it is shown once and cannot be shown again (send it as 'Authorization: Bearer ...')",
               err=True)


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@config_option
def tokens_list(as_json: bool, config_file: Path) -> None:
    """The registry's tokens (never their secrets); the config's api.tokens are listed too."""
    with App.from_file(config_file) as app:
        tokens = app.accounts.accounts.tokens()
        configured = [(t.name, t.role) for t in (app.config.api.tokens if app.config.api else [])]
    if as_json:
        cli_base.emit_json({"tokens": [{k: v for k, v in t.__dict__.items() if k != "id"} for t in tokens],
                            "config_tokens": [{"name": n, "role": r} for n, r in configured]})
        return
    rows = [(t.name, t.role, _when(t.created_at), t.created_by, _when(t.last_used_at),
             "revoked " + _when(t.revoked_at) if t.revoked_at else "active") for t in tokens]
    rows += [(n, r, "", "config", "", "config (api.tokens)") for n, r in configured]
    click.echo(cli_base.table(("name", "role", "created", "by", "last used", "status"), rows))


@tokens_group.command("revoke")
@click.argument("name")
@actor_option
@config_option
def tokens_revoke(name: str, actor: str, config_file: Path) -> None:
    """Revoke token NAME: refused from now on."""
    with App.from_file(config_file) as app:
        app.accounts.revoke_token(name, actor=actor, now=cli_base.now_utc())
    cli_base.echo_safe(f"revoked API token {name}")


@click.group("users")
def users_group() -> None:
    """Dashboard logins, each with a role; passwords stored as scrypt hashes."""


def _password(password_file: Path | None) -> str:
    """From the file (its first line), else asked twice without echo."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")[: MAX_PASSWORD + 2]
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"cannot read the password file {password_file}: {exc}") from exc
        password = text.splitlines()[0] if text else ""
    else:
        password = click.prompt(f"password ({MIN_PASSWORD}-{MAX_PASSWORD} characters)", hide_input=True,
                                confirmation_prompt=True)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


password_file_option = click.option("--password-file", type=click.Path(path_type=Path),
                                    help="read the password from this file's first line (default: ask twice)")


@users_group.command("add")
@click.argument("name")
@role_option
@password_file_option
@actor_option
@config_option
def users_add(name: str, role: str, password_file: Path | None, actor: str, config_file: Path) -> None:
    """Add dashboard user NAME."""
    password = _password(password_file)
    with App.from_file(config_file) as app:
        user = app.accounts.add_user(name, role, password, actor=actor, now=cli_base.now_utc())
    cli_base.echo_safe(f"added user {user.name} (role {user.role})")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@config_option
def users_list(as_json: bool, config_file: Path) -> None:
    with App.from_file(config_file) as app:
        users = app.accounts.accounts.users()
    if as_json:
        cli_base.emit_json([{k: v for k, v in u.__dict__.items() if k not in ("id", "password_hash")}
                            for u in users])
        return
    click.echo(cli_base.table(("name", "role", "created", "by", "status"), [
        (u.name, u.role, _when(u.created_at), u.created_by,
         "disabled " + _when(u.disabled_at) if u.disabled_at else "active") for u in users]))


@users_group.command("disable")
@click.argument("name")
@actor_option
@config_option
def users_disable(name: str, actor: str, config_file: Path) -> None:
    """Disable user NAME (its sessions end at once)."""
    _set_disabled(name, True, actor, config_file)


@users_group.command("enable")
@click.argument("name")
@actor_option
@config_option
def users_enable(name: str, actor: str, config_file: Path) -> None:
    """Enable user NAME again."""
    _set_disabled(name, False, actor, config_file)


def _set_disabled(name: str, disabled: bool, actor: str, config_file: Path) -> None:
    with App.from_file(config_file) as app:
        app.accounts.set_disabled(name, disabled, actor=actor, now=cli_base.now_utc())
    cli_base.echo_safe(f"{'disabled' if disabled else 'enabled'} user {name}")


@users_group.command("passwd")
@click.argument("name")
@password_file_option
@actor_option
@config_option
def users_passwd(name: str, password_file: Path | None, actor: str, config_file: Path) -> None:
    """Set user NAME's password (its sessions end)."""
    password = _password(password_file)
    with App.from_file(config_file) as app:
        app.accounts.set_password(name, password, actor=actor, now=cli_base.now_utc())
    cli_base.echo_safe(f"changed the password of user {name}")
