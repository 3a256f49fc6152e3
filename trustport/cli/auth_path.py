"""``trustport radius caches`` and ``trustport radius journal``: the hooks' registry caches (generation applied,
lease) and their journals (what is not in the registry yet), docs/performance.md."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.settings.config import load_config
from trustport.store import changes
from trustport.store.journal import REJECTED, drain_orphans, journal_status


@click.command("caches")
@click.option("--json", "as_json", is_flag=True)
@config_option
def caches_command(as_json: bool, config_file: Path) -> None:
    """Each FreeRADIUS hook's registry cache: the generation it applied against the registry's, and its lease
    (a lapsed cache is not used: that hook reads the registry directly). Exit 1 when a live cache is behind by more
    than its refresh would explain."""
    with App(load_config(config_file)) as app, app.store.transaction("reading the registry caches") as conn:
        current, now, views = changes.caches(conn)
    rows = [{"cache": v.cache_id, "generation": v.generation, "behind": current - v.generation,
             "lease_left_s": round((v.lease_until - now).total_seconds(), 3),
             "state": "live" if v.lease_until > now else "lapsed"} for v in views]
    if as_json:
        cli_base.emit_json({"generation": current, "caches": rows})
    else:
        click.echo(f"registry generation {current}")
        if not rows:
            click.echo("no hook has a registry cache (none running, or auth_path.cache is off)")
        else:
            click.echo(cli_base.table(("cache", "generation", "behind", "lease left (s)", "state"), [
                (r["cache"], r["generation"], r["behind"], r["lease_left_s"], r["state"]) for r in rows]))


@click.command("journal")
@click.option("--drain", is_flag=True, help="apply the journals of FreeRADIUS processes that are gone (a live "
                                            "radiusd drains its own)")
@click.option("--json", "as_json", is_flag=True)
@config_option
def journal_command(drain: bool, as_json: bool, config_file: Path) -> None:
    """What the hooks have answered but the registry does not hold yet (the journal files in
    auth_path.journal_directory), and the records the registry refused (rejected.jsonl). Exit 1 when some were
    refused."""
    cli_base.install_safe_logging()
    config = load_config(config_file)
    directory = config.journal_dir()
    if directory is None:
        raise click.ClickException("auth_path.journal is off in this config: the hooks write to the registry "
                                   "before they answer")
    with App(config) as app:
        applied = drain_orphans(directory, app.store, report=lambda m: cli_base.echo_safe(m, err=True)) \
            if drain else 0
        status = journal_status(directory, app.store)
    rejected = _rejected(directory)
    if as_json:
        cli_base.emit_json({"directory": str(directory), "files": list(status.files),
                            "pending_bytes": status.pending_bytes, "pending_records": status.pending_records,
                            "applied_now": applied, "rejected": rejected})
    else:
        cli_base.echo_safe(f"journal {directory}: {len(status.files)} file(s), {status.pending_bytes} byte(s) "
                           + (f"({status.pending_records} record(s)) " if status.pending_records is not None else "")
                           + "not in the registry yet" + (f"; {applied} record(s) applied now" if drain else ""))
        if rejected:
            cli_base.echo_safe(f"{rejected} record(s) the registry refused are kept in {directory / REJECTED}")
    if rejected:
        sys.exit(1)


def _rejected(directory: Path) -> int:
    try:
        with (directory / REJECTED).open("rb") as lines:
            return sum(1 for line in lines if line.strip())
    except FileNotFoundError:
        return 0
