"""``trustport directory``: sync device records from OpenLDAP / Active Directory, its status, one-serial lookups."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from policy.directory import Kind, read_entry
from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.settings.config import load_config

SHOWN = 20  # changes of each kind listed by a sync without --json


@click.group("directory")
def directory_group() -> None:
    """The device directory (LDAP): sync it into the registry, see its status, look up one serial."""


@directory_group.command("sync")
@click.option("--dry-run", is_flag=True, help="read the directory and say what would change; write nothing")
@click.option("--allow-mass-removal", is_flag=True,
              help="apply a sync that takes out more linked devices than directory.max_removed_fraction")
@click.option("--json", "as_json", is_flag=True)
@config_option
def directory_sync(dry_run: bool, allow_mass_removal: bool, as_json: bool, config_file: Path) -> None:
    """Read every entry (paged), then add, change, disable and remove devices to match; state changes are
    audited with actor 'directory' and enforced through the queue like any other action."""
    cli_base.install_safe_logging()
    with App(load_config(config_file)) as app:
        sync = app.directory
        progress = _Progress(enabled=not as_json and sys.stderr.isatty())
        try:
            report = sync.sync(cli_base.now_utc(), dry_run=dry_run, allow_mass_removal=allow_mass_removal,
                               progress=progress.update)
        finally:
            progress.done()
    if as_json:
        cli_base.emit_json({"dry_run": dry_run, "counts": report.counts(), "read_seconds": report.read_seconds,
                            "seconds": report.seconds, "errors": report.errors,
                            "changes": [{"kind": c.kind.value, "dn": c.dn, "action": c.action,
                                         "device": c.device.id if c.device else None, "detail": c.detail,
                                         "fields": dict(c.fields)} for c in report.plan.changes]})
        return
    for kind in (Kind.ADD, Kind.ACTION, Kind.UPDATE, Kind.LINK, Kind.UNLINK, Kind.KEPT, Kind.WAITING, Kind.REFUSED):
        changes = report.plan.of(kind)
        for change in changes[:SHOWN]:
            what = change.action or kind.value
            cli_base.echo_safe(f"  {what:<12} {change.detail}" + (f"  [{change.dn}]" if change.device else ""))
        if len(changes) > SHOWN:
            cli_base.echo_safe(f"  ... and {len(changes) - SHOWN} more {kind.value} ('--json' lists all)")
    for error in report.errors:
        cli_base.echo_safe(f"error: {error}", err=True)
    cli_base.echo_safe(f"directory {sync.settings.name}: {report.summary()} (read in {report.read_seconds:.1f} s, "
                       f"total {report.seconds:.1f} s)")
    if report.errors:
        sys.exit(1)


class _Progress:
    """'read N entries' on the terminal while a large directory is paged through (nothing when not a terminal)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.count = 0

    def update(self, n: int) -> None:
        self.count += n
        if self.enabled:
            click.echo(f"\rreading the directory: {self.count} entries", nl=False, err=True)

    def done(self) -> None:
        if self.enabled and self.count:
            click.echo(err=True)


@directory_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--prometheus", is_flag=True, help="the directory metrics in the Prometheus text format")
@config_option
def directory_status(as_json: bool, prometheus: bool, config_file: Path) -> None:
    """The last sync attempt and the data in force; exits 1 when the last attempt failed or none succeeded."""
    from trustport.directory.metrics import render
    from trustport.store.directory import SqlDirectoryStore

    config = load_config(config_file, check_files=False)
    if config.directory is None:
        raise click.UsageError("no 'directory:' section in the config")
    settings = config.directory
    with App(config) as app:
        status = SqlDirectoryStore(app.store, settings.name).status()
    now = cli_base.now_utc()
    if prometheus:
        click.echo(render(settings.name, status, now), nl=False)
        return
    data: dict[str, Any] = {"directory": settings.name, "url": settings.url, "synced": status is not None}
    if status is not None:
        data.update({k: v for k, v in status.__dict__.items() if k not in ("directory", "url")})
        data["age_seconds"] = (now - status.last_success_at).total_seconds() if status.last_success_at else None
    if as_json:
        cli_base.emit_json(data)
    elif status is None:
        cli_base.echo_safe(f"directory {settings.name} ({settings.url}): never synced ('trustport directory sync')")
    else:
        in_force = (f"data from {status.last_success_at:%Y-%m-%d %H:%M:%S} UTC in force "
                    f"({data['age_seconds']:.0f} s old), {status.entries} entries, {status.linked} linked devices"
                    if status.last_success_at else "no successful sync yet")
        cli_base.echo_safe(f"directory {settings.name} ({settings.url}): "
                           + ("up" if status.up else f"DOWN since {_failed_since(status)}") + f"; {in_force}")
        cli_base.echo_safe(f"last attempt {status.last_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
                           + (f" failed: {status.last_error}" if status.last_error else " succeeded"
                              + (f" in {status.duration_seconds:.1f} s" if status.duration_seconds else ""))
                           + f"; {status.failures_total} failed attempts in total")
        if status.summary:
            cli_base.echo_safe("last sync: " + ", ".join(f"{k} {v}" for k, v in status.summary.items() if v))
    if status is None or not status.up:
        sys.exit(1)


def _failed_since(status: Any) -> str:
    return (f"{status.consecutive_failures} attempt(s) ago (last at {status.last_attempt_at:%H:%M:%S} UTC)")


@directory_group.command("lookup")
@click.argument("serial")
@click.option("--json", "as_json", is_flag=True)
@config_option
def directory_lookup(serial: str, as_json: bool, config_file: Path) -> None:
    """Entries for one device serial, read as a sync would read them (the serial is escaped: '*' is a
    character, not a wildcard)."""
    config = load_config(config_file)
    with App(config) as app:
        sync = app.directory
        found = [read_entry(dn, attributes, sync.entry_rules) for dn, attributes in sync.client.lookup(serial)]
    if as_json:
        cli_base.emit_json(found)
        return
    if not found:
        cli_base.echo_safe(f"no entry for serial {serial!r} under {sync.settings.base_dn}")
        sys.exit(1)
    for entry in found:
        cli_base.echo_safe(f"{entry.dn}: {entry}")
