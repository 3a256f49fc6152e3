"""The ``trustport`` command line. Tables for humans, ``--json`` for scripts; secrets never printed."""

from __future__ import annotations

import click

from trustport import cli_commands
from trustport.cli_base import TrustportGroup


@click.group(cls=TrustportGroup)
@click.version_option(package_name="trustport")
def cli() -> None:
    """trustport: trusted network-layer onboarding and lifecycle management of IoT devices."""


cli_commands.register(cli)


def main() -> None:
    cli(prog_name="trustport")


if __name__ == "__main__":
    main()
