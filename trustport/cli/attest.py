"""``trustport attest`` and ``trustport api``: attestation results from the command line, and the REST server."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from policy.attestation import TokenRejected
from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.services.attestation import AttestationService
from trustport.settings.config import TrustportConfig, load_config

MAX_TOKEN_FILE = 256 * 1024



def read_small(source: str, what: str) -> bytes:
    """A file (or '-' for stdin), refusing anything larger than an attestation result can be."""
    stream = sys.stdin.buffer if source == "-" else None
    try:
        data = stream.read(MAX_TOKEN_FILE + 1) if stream is not None else Path(source).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {what} {source}: {exc.strerror}") from exc
    if len(data) > MAX_TOKEN_FILE:
        raise click.ClickException(f"{what} {source} is larger than {MAX_TOKEN_FILE} bytes")
    return data


def service_for(config: TrustportConfig) -> AttestationService:
    return App(config).attestation


@click.group("attest")
def attest_group() -> None:
    """Attestation results (EAR tokens) from a verifier."""


@attest_group.command("import")
@click.argument("source")
@click.option("--device", help="registry id or serial number (default: found by the attested key)")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path), help="the device certificate (PEM)")
@click.option("--json", "as_json", is_flag=True)
@config_option
def attest_import(source: str, device: str | None, cert_file: Path | None, as_json: bool, config_file: Path) -> None:
    """Verify and store the EAR token in SOURCE (a file, or - for stdin)."""
    token = read_small(source, "token").decode("ascii", "replace").strip()
    service = service_for(load_config(config_file))
    try:
        outcome = service.import_token(token, cli_base.now_utc(), device_ref=device,
                                       certificate_pem=cert_file.read_bytes() if cert_file else None)
    except TokenRejected as exc:
        if as_json:
            cli_base.emit_json({"accepted": False, "reason": exc.reason, "message": str(exc)})
        else:
            click.echo(f"refused ({exc.reason}): {exc}")
        sys.exit(1)
    finally:
        service.store.close()
    stored = outcome.stored
    if as_json:
        cli_base.emit_json({"device_id": outcome.device.id, "accepted": stored.accepted,
                          "status": stored.status.name.lower() if stored.status else None,
                          "binding": stored.binding, "expires_at": stored.expires_at, "reasons": stored.reasons,
                          "reevaluation": outcome.reevaluation, "vector": stored.vector})
    else:
        click.echo(f"device #{outcome.device.id} {outcome.device.key.serial_number}: "
                   + ("accepted" if stored.accepted else "REFUSED") + f" — {'; '.join(stored.reasons)}")
        if outcome.reevaluation:
            click.echo(f"re-evaluation requested: {outcome.reevaluation}")
    if not stored.accepted:
        sys.exit(1)


@attest_group.command("show")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True)
@config_option
def attest_show(device: str, as_json: bool, config_file: Path) -> None:
    """Attestation results received for DEVICE, newest first."""
    service = service_for(load_config(config_file))
    try:
        record = service.resolve(device)
        results = service.results.results(record.id)
    finally:
        service.store.close()
    if as_json:
        cli_base.emit_json([{k: v for k, v in r.__dict__.items() if k != "token"} for r in results])
        return
    click.echo(cli_base.table(("received", "accepted", "status", "binding", "expires", "reasons"), [
        (r.received_at.strftime("%Y-%m-%d %H:%M:%S"), "yes" if r.accepted else "no",
         r.status.name.lower() if r.status else "-", r.binding or "-",
         r.expires_at.strftime("%Y-%m-%d %H:%M:%S") if r.expires_at else "-", "; ".join(r.reasons))
        for r in results]))


@attest_group.command("nonce")
@click.argument("device")
@config_option
def attest_nonce(device: str, config_file: Path) -> None:
    """Issue a nonce for DEVICE: the verifier puts it in eat_nonce to bind its result to this device."""
    service = service_for(load_config(config_file))
    try:
        click.echo(service.results.issue_nonce(service.resolve(device).id, cli_base.now_utc()))
    finally:
        service.store.close()


@click.group("api")
def api_group() -> None:
    """The REST API."""


@api_group.command("serve")
@click.option("--request-timeout", type=click.FloatRange(min=0.1, max=300), default=5.0, show_default=True,
              help="seconds a client has to send the request head, and again the body, before it gets 408")
@click.option("--keep-alive", type=click.IntRange(min=1, max=300), default=5, show_default=True,
              help="seconds an idle connection is kept open between requests")
@click.option("--max-connections", type=click.IntRange(min=1, max=100_000), default=64, show_default=True,
              help="concurrent connections beyond which the server answers 503")
@config_option
def api_serve(request_timeout: float, keep_alive: int, max_connections: int, config_file: Path) -> None:
    """Serve the REST API (OpenAPI at /docs) and the dashboard (/ui) on the configured address; over HTTPS (TLS 1.2
    or later) when api.tls_certificate and api.tls_key are set ('trustport ca server-cert' issues one)."""
    import uvicorn

    from trustport.api import ApiLimits, create_app, server_config

    config = load_config(config_file)
    limits = ApiLimits(body_timeout_s=request_timeout, header_timeout_s=request_timeout, keep_alive_s=keep_alive,
                       max_connections=max_connections)
    app = create_app(config, limits=limits)
    assert config.api is not None  # create_app refuses a config without it
    api = config.api
    from trustport.logs import uvicorn_log_config

    settings = cli_base.serve_logging()  # trustport's log format for uvicorn's lines too
    log_config = uvicorn_log_config(settings.fmt, settings.level or "INFO")
    cert = config.path(api.tls_certificate) if api.tls_certificate is not None else None
    key = config.path(api.tls_key) if api.tls_key is not None else None
    uvicorn.Server(server_config(app, api.listen_address, api.port, limits, tls_certificate=cert, tls_key=key,
                                 log_config=log_config)).run()
