"""``trustport tokens`` and ``trustport users``; ``trustport ca server-cert``'s refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.attest_env import AttestEnv
from tests.unit.test_owner_ca import config_file  # noqa: F401
from trustport.app import App
from trustport.cli.main import cli
from trustport.store.accounts import SqlAccountStore


def run(*args: str, code: int = 0, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    assert result.exit_code == code, result.output
    return result.output


def test_tokens_create_list_revoke(env: AttestEnv) -> None:
    cfg = ("--config", str(env.config_path))
    out = run("tokens", "create", "ci-bot", "--role", "operator", "--actor", "alice", *cfg)
    secret = next(line for line in out.splitlines() if line.startswith("tp_"))
    assert "shown once" in out and "cannot be shown again" in out
    with App(env.config) as app:
        principal = app.accounts.authenticate_token(secret, datetime.now(UTC))
        assert principal is not None and (principal.name, principal.role) == ("ci-bot", "operator")
    made = json.loads(run("tokens", "create", "other", "--role", "viewer", "--json", *cfg))
    assert made["secret"].startswith("tp_") and made["role"] == "viewer"
    listed = run("tokens", "list", *cfg)
    assert "ci-bot" in listed and "verifier" in listed and secret not in listed
    assert secret not in run("tokens", "list", "--json", *cfg)
    run("tokens", "revoke", "ci-bot", *cfg)
    assert "revoked" in run("tokens", "list", *cfg)
    assert "no active API token" in run("tokens", "revoke", "ci-bot", *cfg, code=2)
    assert "Invalid value" in run("tokens", "create", "x", "--role", "root", *cfg, code=2)
    assert "exists already" in run("tokens", "create", "other", "--role", "viewer", *cfg, code=2)
    actions = {(e.actor, e.action) for e in SqlAccountStore(env.store).audit_entries()}
    assert ("alice", "token-create") in actions and any(a == "token-revoke" for _who, a in actions)


def test_users_add_list_disable_enable_passwd(env: AttestEnv, tmp_path: Path) -> None:
    cfg = ("--config", str(env.config_path))
    password = tmp_path / "pw"
    password.write_text("a long enough password\n")
    run("users", "add", "bob", "--role", "admin", "--password-file", str(password), *cfg)
    run("users", "add", "eve", "--role", "viewer", *cfg, stdin="another good password\nanother good password\n")
    listed = run("users", "list", *cfg)
    assert "bob" in listed and "eve" in listed and "scrypt" not in listed
    assert "password_hash" not in run("users", "list", "--json", *cfg)
    run("users", "disable", "bob", *cfg)
    assert "disabled" in run("users", "list", *cfg)
    run("users", "enable", "bob", *cfg)
    run("users", "passwd", "bob", *cfg, stdin="a brand new password\na brand new password\n")
    with App(env.config) as app:
        assert app.accounts.login("bob", "a brand new password", datetime.now(UTC)) is not None
    short = tmp_path / "short"
    short.write_text("short\n")
    assert "12 to 1024" in run("users", "add", "mallory", "--role", "viewer", "--password-file", str(short), *cfg,
                               code=2)
    assert "no user named" in run("users", "disable", "nobody", *cfg, code=2)


@pytest.mark.parametrize(("args", "why"), [
    ((), "at least one"), (("--dns", "bad name!"), "not a DNS name"), (("--ip", "300.1.1.1"), "not an IP address"),
])
def test_server_cert_refusals(config_file: Path, tmp_path: Path, args: tuple[str, ...], why: str) -> None:  # noqa: F811
    out = run("ca", "server-cert", *args, "--out-cert", str(tmp_path / "c.pem"), "--out-key",
              str(tmp_path / "k.pem"), "--config", str(config_file), code=2)
    assert why in out and not (tmp_path / "k.pem").exists()
