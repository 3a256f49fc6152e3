"""``trustport est serve``: the EST (RFC 7030) enrolment server for LDevIDs from the owner CA."""

from __future__ import annotations

from pathlib import Path

import click

from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.settings.config import load_config


@click.group("est")
def est_group() -> None:
    """EST enrolment (RFC 7030): devices trade their IDevID for an LDevID over TLS."""


@est_group.command("serve")
@click.option("--listen", help="address to listen on (default: enrollment.listen_address, 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), help="TCP port (default: enrollment.port, 8443)")
@config_option
def est_serve(listen: str | None, port: int | None, config_file: Path) -> None:
    """Serve /.well-known/est/{cacerts,simpleenroll,simplereenroll,csrattrs} until interrupted."""
    from trustport.est.server import build_server, serve

    cli_base.serve_logging()  # requests and handshakes at info unless --log-level says otherwise
    with App(load_config(config_file)) as app:
        server = build_server(app, listen=listen, port=port)
        host, bound = server.server_address[:2]
        cli_base.echo_safe(f"EST listening on https://{host!s}:{bound}/.well-known/est/ (Ctrl-C stops it)")
        try:
            serve(server)
        except KeyboardInterrupt:
            click.echo("stopped")
