"""``trustport ca``: the owner (LDevID) CA -- create or adopt it, issue for devices that cannot do EST, revoke,
list, and publish or renew the CRL."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from policy.errors import IssuanceError
from policy.issuance import IssuanceIdentity, load_csr
from policy.text import safe_text
from policy.x509facts import parse_oneline_dn
from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.settings.config import load_config


def _actor() -> str:
    import getpass
    import os

    return os.environ.get("SUDO_USER") or getpass.getuser() or "cli"


@click.group("ca")
def ca_group() -> None:
    """The owner CA that issues LDevIDs (see the 'ca:' config section)."""


@ca_group.command("init")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path), help="adopt this existing CA certificate")
@click.option("--key", "key_file", type=click.Path(path_type=Path), help="adopt this existing CA key (owner-only)")
@click.option("--cn", "common_name", help="CA common name (default: '<organization> LDevID CA')")
@click.option("--org", "organization", help="CA organization, also the O of every LDevID (default: the site)")
@click.option("--key-type", default="p256", show_default=True,
              type=click.Choice(["p256", "p384", "rsa2048", "rsa3072", "rsa4096"]))
@click.option("--days", default=3650, show_default=True, type=click.IntRange(1, 36500), help="CA validity")
@config_option
def ca_init(cert_file: Path | None, key_file: Path | None, common_name: str | None, organization: str | None,
            key_type: str, days: int, config_file: Path) -> None:
    """Create the owner CA (key 0600 + self-signed certificate) at the configured paths, or adopt existing files;
    publish its first CRL."""
    from policy.errors import StoreError
    from trustport.services.ca import init_ca

    config = load_config(config_file, check_files=False)
    with App(config) as app:
        try:
            app.store.ping()
            store = app.store
        except StoreError:
            store = None
        done = init_ca(config, now=cli_base.now_utc(), cert_file=cert_file, key_file=key_file,
                       common_name=common_name, organization=organization, key_kind=key_type, days=days, store=store)
    verb = "created" if done.created else "adopted"
    cli_base.echo_safe(f"{verb} owner CA {done.subject}: certificate {done.certificate}, key {done.key} (0600)")
    if done.crl is not None:
        cli_base.echo_safe(f"published CRL {done.crl}")
    if done.config_snippet:
        click.echo("add to the config (then 'trustport config check'):\n" + done.config_snippet)
    for problem in done.problems:
        cli_base.echo_safe(f"warning: {problem}", err=True)


def _identity_of(app: App, ref: str) -> tuple[IssuanceIdentity, int]:
    """The identity of a registered device, from the registry only: its serial, the CN and MUD URL of the
    certificate it last authenticated with."""
    from policy.model import LifecycleState
    from trustport.services.devices import resolve_device

    record = resolve_device(app.store, ref)
    if record.state is LifecycleState.DECOMMISSIONED:
        raise IssuanceError(f"device #{record.id} {record.key.serial_number} is decommissioned; no LDevID is issued "
                            "for it (re-onboard it first)")
    last = app.store.last_certificate(record.id)
    common_name = parse_oneline_dn(last.subject).get("CN") if last is not None else None
    mud_url = record.mud_url or (last.mud_url if last is not None else None)
    return IssuanceIdentity(record.key.serial_number, None, common_name, mud_url), record.id


@ca_group.command("issue")
@click.option("--csr", "csr_file", type=click.Path(path_type=Path), required=True, help="PKCS#10 request, PEM or DER")
@click.option("--device", required=True, help="registry id or serial: the LDevID's identity comes from here")
@click.option("--out", "out_file", type=click.Path(path_type=Path), required=True, help="write the LDevID (PEM)")
@click.option("--replaces", help="certificate serial of the device's previous LDevID (revoked at once)")
@click.option("--chain/--no-chain", default=False, help="append the CA certificate(s) to --out")
@click.option("--actor", default=_actor, show_default="the invoking user")
@config_option
def ca_issue(csr_file: Path, device: str, out_file: Path, replaces: str | None, chain: bool, actor: str,
             config_file: Path) -> None:
    """Issue an LDevID for a registered device that cannot do EST. Only the CSR's key is used (its signature must
    verify); names come from the registry device."""
    from cryptography.hazmat.primitives import serialization

    try:
        data = csr_file.read_bytes()
    except OSError as exc:
        raise IssuanceError(f"{csr_file}: cannot read it: {exc.strerror or exc}") from exc
    csr = load_csr(data, str(csr_file))
    config = load_config(config_file, check_files=False)
    with App(config) as app:
        owner_ca = app.owner_ca
        identity, device_id = _identity_of(app, device)
        issued = owner_ca.issue(csr, identity, now=cli_base.now_utc(), replaces=replaces, actor=actor)
        pem = issued.pem + (b"".join(c.public_bytes(serialization.Encoding.PEM) for c in owner_ca.certificates())
                            if chain else b"")
    out_file.write_bytes(pem)
    cli_base.echo_safe(f"issued LDevID serial {issued.cert_serial} for device #{device_id} "
                       f"{identity.serial_number}, valid until {issued.not_after.isoformat()}: {out_file}")
    if replaces:
        cli_base.echo_safe(f"revoked the replaced certificate {replaces} and published the CRL")


@ca_group.command("revoke")
@click.argument("cert_serial")
@click.option("--reason", required=True, help="why (audit log, deny list)")
@click.option("--actor", default=_actor, show_default="the invoking user")
@config_option
def ca_revoke(cert_serial: str, reason: str, actor: str, config_file: Path) -> None:
    """Revoke an LDevID the owner CA issued: deny list + a new CRL at once (the next authentication is refused)."""
    config = load_config(config_file, check_files=False)
    with App(config) as app:
        owner_ca = app.owner_ca
        fresh = owner_ca.revoke(cert_serial, reason=reason, now=cli_base.now_utc(), actor=actor)
    cli_base.echo_safe(("revoked" if fresh else "already revoked:") + f" {cert_serial}; published "
                       f"{owner_ca.crl_path}")


@ca_group.command("list")
@click.option("--device", "device_serial", help="only this device serial")
@click.option("--json", "as_json", is_flag=True)
@config_option
def ca_list(device_serial: str | None, as_json: bool, config_file: Path) -> None:
    """Certificates the owner CA issued, newest first."""
    import dataclasses

    from trustport.store.issued import SqlIssuedStore

    config = load_config(config_file, check_files=False)
    with App(config) as app:
        records = SqlIssuedStore(app.store).list(device_serial)
    if as_json:
        cli_base.emit_json([{k: v for k, v in dataclasses.asdict(r).items() if k != "pem"} for r in records])
        return
    click.echo(cli_base.table(("serial", "device", "issued", "not after", "revoked", "replaced by", "reason"), [
        (r.cert_serial, r.device_serial, r.issued_at.strftime("%Y-%m-%d %H:%M"), r.not_after.strftime("%Y-%m-%d"),
         r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at else "", r.replaced_by or "",
         r.revocation_reason or "") for r in records]))


@ca_group.command("crl")
@click.option("--renew-if-due", is_flag=True, help="publish only when less than ca.crl_renewal_margin_hours remain")
@config_option
def ca_crl(renew_if_due: bool, config_file: Path) -> None:
    """Publish the owner CA's CRL (cron: --renew-if-due), and say when it expires."""
    config = load_config(config_file, check_files=False)
    now = cli_base.now_utc()
    with App(config) as app:
        owner_ca = app.owner_ca
        published = owner_ca.renew_crl_if_due(now) if renew_if_due else owner_ca.publish_crl(now)
        status = owner_ca.crl_status(now)
    when = status.next_update.isoformat() if status.next_update else "never"
    cli_base.echo_safe(("published" if published else "not due:") + f" {status.path} ({status.revoked} revoked, "
                       f"next update {when})")
    if status.expired:
        cli_base.echo_safe(f"error: {safe_text(status.problem or 'the CRL has expired')}", err=True)
        sys.exit(1)


@ca_group.command("server-cert")
@click.option("--dns", "dns_names", multiple=True, help="a DNS name the API / dashboard is reached by (repeatable)")
@click.option("--ip", "ip_addresses", multiple=True, help="an IP address it is reached by (repeatable)")
@click.option("--out-cert", type=click.Path(path_type=Path), required=True,
              help="write the certificate (PEM, then the CA chain): api.tls_certificate")
@click.option("--out-key", type=click.Path(path_type=Path), required=True,
              help="write its new private key (PEM, mode 0600): api.tls_key")
@click.option("--days", default=397, show_default=True, type=click.IntRange(1, 825), help="validity")
@config_option
def ca_server_cert(dns_names: tuple[str, ...], ip_addresses: tuple[str, ...], out_cert: Path, out_key: Path,
                   days: int, config_file: Path) -> None:
    """Issue a TLS server certificate (serverAuth, SAN) for 'trustport api serve', signed by the owner CA; clients
    verify it with the CA certificate (ca.certificate)."""
    from trustport.services.ca import issue_server_certificate, write_atomically

    config = load_config(config_file, check_files=False)
    with App(config) as app:
        issued = issue_server_certificate(app.owner_ca, dns_names=list(dns_names), ip_addresses=list(ip_addresses),
                                          now=cli_base.now_utc(), days=days)
    try:
        write_atomically(out_key, issued.key_pem, 0o600)
        write_atomically(out_cert, issued.certificate_pem, 0o644)
    except OSError as exc:
        raise IssuanceError(f"cannot write the server certificate or key: {exc.strerror or exc}") from exc
    cli_base.echo_safe(f"issued server certificate serial {issued.cert_serial} for "
                       f"{', '.join([*dns_names, *ip_addresses])}, valid until {issued.not_after.isoformat()}: "
                       f"{out_cert} (key {out_key}, 0600)")
    click.echo("set api.tls_certificate and api.tls_key to these files, then restart 'trustport api serve'")
