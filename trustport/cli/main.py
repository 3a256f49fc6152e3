"""The ``trustport`` command line. Tables for humans, ``--json`` for scripts; secrets never printed."""

from __future__ import annotations

import click

from trustport.cli import commands as cli_commands
from trustport.cli import db as cli_db
from trustport.cli import radius_status as cli_radius_status
from trustport.cli.base import TrustportGroup, install_safe_logging


@click.group(cls=TrustportGroup)
@click.version_option(package_name="trustport")
def cli() -> None:
    """trustport: trusted network-layer onboarding and lifecycle management of IoT devices."""


cli_commands.register(cli)
cli.add_command(cli_db.db_group)
cli_commands.radius_group.add_command(cli_radius_status.status_command)


def main() -> None:
    install_safe_logging()
    cli(prog_name="trustport")


if __name__ == "__main__":
    main()
