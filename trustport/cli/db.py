"""``trustport db``: create the registry database explicitly, and say whether it is healthy.

Nothing else creates a registry: the hook, the worker, the API and ``decide`` refuse a missing or empty one,
so a registry that was deleted or truncated never comes back empty (without its devices and deny list) by
itself. ``db init`` is the one deliberate step that makes a new one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.settings.config import load_config
from trustport.store.sql import RegistryHealth


@click.group("db")
def db_group() -> None:
    """The registry database: create it, check it."""


def _summary(health: RegistryHealth) -> str:
    devices = "?" if health.devices is None else str(health.devices)
    return f"schema version {health.schema_version}, id {health.registry_id or 'not recorded'}, {devices} device(s)"


@db_group.command("init")
@click.option("--quick", is_flag=True, help="skip the full integrity check of an existing SQLite registry")
@config_option
def db_init(quick: bool, config_file: Path) -> None:
    """Create the registry if the database is missing or empty, add the tables of a newer trustport to an older
    one; leave a healthy one as it is.

    A foreign or damaged database is refused (exit 2) and left untouched."""
    config = load_config(config_file, check_files=False)
    with App(config, create=True) as app:  # the one place a registry is created
        done, health = app.store.initialise(integrity=not quick)
    if done == "unchanged":
        click.echo(f"registry {health.url} is already initialised ({_summary(health)}): nothing changed")
    elif done == "created":
        click.echo(f"created registry {health.url} ({_summary(health)})")
    elif done.startswith("upgraded"):
        click.echo(f"upgraded registry {health.url}: added the tables this trustport needs ({_summary(health)}; "
                   "data kept)")
    else:
        click.echo(f"recorded trustport's identity in registry {health.url} ({_summary(health)}; data kept)")


@db_group.command("status")
@click.option("--quick", is_flag=True, help="skip the full integrity check (SQLite PRAGMA quick_check)")
@click.option("--json", "as_json", is_flag=True)
@config_option
def db_status(quick: bool, as_json: bool, config_file: Path) -> None:
    """Registry URL (password hidden), schema version, device count and health; exit 1 when not healthy."""
    config = load_config(config_file, check_files=False)
    with App(config) as app:
        health = app.store.inspect(integrity=not quick)
    if as_json:
        cli_base.emit_json({"url": health.url, "healthy": health.healthy, "state": health.state.value,
                            "schema_version": health.schema_version, "registry_id": health.registry_id,
                            "devices": health.devices, "identity_recorded": health.identity_recorded,
                            "problem": health.problem})
    else:
        rows = [("registry", health.url), ("state", health.state.value),
                ("schema", "-" if health.schema_version is None else str(health.schema_version)),
                ("id", health.registry_id or ("not recorded: run 'trustport db init' to record it"
                                              if health.healthy else "-")),
                ("devices", "-" if health.devices is None else str(health.devices)),
                ("healthy", "yes" if health.healthy else "NO")]
        for label, value in rows:
            click.echo(f"{label:<9} {value}")
        if health.problem:
            click.echo(f"problem   {health.problem}")
    if not health.healthy:
        sys.exit(1)
