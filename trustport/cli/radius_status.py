"""``trustport radius status``: which policy revision each running FreeRADIUS holds, against the YAML on disk.

Each radiusd's hook records (server, pid, revision, when loaded, last authentication) in ``radius_servers`` at start
and whenever it reloads the policy; a server whose revision differs from the config's is "stale" (it has not seen
the edit yet, or the edit failed to load there: its radiusd.log says why)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.settings.config import load_config


@click.command("status")
@click.option("--json", "as_json", is_flag=True)
@config_option
def status_command(as_json: bool, config_file: Path) -> None:
    """Policy revision of every running FreeRADIUS against the config on disk (exit 1 when one is stale)."""
    config = load_config(config_file)  # a config that does not validate is reported as such (exit 2)
    revision = config.policy_revision()
    with App(config) as app:
        servers = app.store.radius_servers()
    rows = [{"server": s.server_id, "pid": s.pid, "policy_revision": s.policy_revision, "loaded_at": s.loaded_at,
             "last_auth_at": s.last_auth_at, "state": "current" if s.policy_revision == revision else "stale"}
            for s in servers]
    stale = [r for r in rows if r["state"] == "stale"]
    if as_json:
        cli_base.emit_json({"config": str(config_file), "policy_revision": revision, "servers": rows})
    else:
        cli_base.echo_safe(f"config {config_file}: policy revision {revision}")
        if not rows:
            click.echo("no FreeRADIUS has recorded itself in the registry yet")
        else:
            click.echo(cli_base.table(("server", "pid", "revision", "loaded", "last auth", "state"), [
                (r["server"], r["pid"], r["policy_revision"] or "?", r["loaded_at"], r["last_auth_at"] or "-",
                 r["state"]) for r in rows]))
        if stale:
            click.echo(f"{len(stale)} server(s) run another policy revision: see their radiusd.log (a reload that "
                       "failed validation keeps the previous policy and says why)")
    if stale:
        sys.exit(1)
