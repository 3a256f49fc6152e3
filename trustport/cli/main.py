"""The ``trustport`` command line. Tables for humans, ``--json`` for scripts; secrets never printed."""

from __future__ import annotations

import click

from trustport import logs
from trustport.cli import auth_path as cli_auth_path
from trustport.cli import base as cli_base
from trustport.cli import commands as cli_commands
from trustport.cli import db as cli_db
from trustport.cli import radius_status as cli_radius_status
from trustport.cli.base import TrustportGroup, install_safe_logging


@click.group(cls=TrustportGroup)
@click.version_option(package_name="trustport")
@click.option("--log-format", type=click.Choice(logs.FORMATS), default="text", show_default=True,
              envvar="TRUSTPORT_LOG_FORMAT",
              help="log lines on stderr: text (timestamp, level, logger, message) or one JSON object per line "
                   "[env: TRUSTPORT_LOG_FORMAT]")
@click.option("--log-level", type=click.Choice(logs.LEVELS, case_sensitive=False), envvar="TRUSTPORT_LOG_LEVEL",
              help="lowest level logged [env: TRUSTPORT_LOG_LEVEL; default: warning, info for worker (and its "
                   "directory sync), est serve and api serve]")
@click.pass_context
def cli(ctx: click.Context, log_format: logs.LogFormat, log_level: str | None) -> None:
    """trustport: trusted network-layer onboarding and lifecycle management of IoT devices."""
    cli_base.setup_logging(ctx, log_format, log_level.lower() if log_level else None)


cli_commands.register(cli)
cli.add_command(cli_db.db_group)
cli_commands.radius_group.add_command(cli_radius_status.status_command)
cli_commands.radius_group.add_command(cli_auth_path.caches_command)
cli_commands.radius_group.add_command(cli_auth_path.journal_command)


def main() -> None:
    install_safe_logging()
    cli(prog_name="trustport")


if __name__ == "__main__":
    main()
