"""``trustport decide``: what FreeRADIUS + the hook would do with a certificate, read exactly as the RADIUS
path reads it (chain built under the same depth limit, names through the same strict parser, the same
attribute limits, the same checks and decision), writing nothing. Also the PEM validation `devices add` uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from policy.errors import CertificateError, IdentityError
from policy.model import CertificateFacts, Check, Decision, NetworkContext, Outcome
from policy.text import safe_text
from policy.x509facts import load_pem_certificates
from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.settings.config import TrustportConfig, load_config

MAX_CERT_BYTES = 256 * 1024


def read_certificates(path: Path) -> list[x509.Certificate]:
    try:
        if not path.is_file():
            raise CertificateError(f"{path}: not a regular file")
        if path.stat().st_size > MAX_CERT_BYTES:
            raise CertificateError(f"{path}: larger than {MAX_CERT_BYTES} bytes; not a device certificate")
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read: {exc.strerror}") from exc
    return load_pem_certificates(data, str(path))


def authorizer_for(config: TrustportConfig) -> Any:
    return App(config).authorizer


@dataclass(frozen=True)
class PemEvaluation:
    """A PEM certificate judged as the RADIUS path would judge it; ``facts`` is None when its names are refused."""

    facts: CertificateFacts | None
    checks: tuple[Check, ...]
    decision: Decision
    result: Any = None  # trustport.services.authorize.AuthResult when the facts could be read

    @property
    def valid(self) -> bool:
        return self.result is not None and self.result.verdict.valid


def evaluate_pem(authorizer: Any, cert: x509.Certificate, intermediates: list[x509.Certificate], now: datetime,
                 context: NetworkContext | None = None, attestation_file: Path | None = None) -> PemEvaluation:
    from trustport.services.chain import pem_facts

    try:
        facts, chain = pem_facts(cert, intermediates, authorizer.trust, now)
    except IdentityError as exc:
        check = Check("names", False, str(exc))
        return PemEvaluation(None, (check,), Decision(Outcome.REJECT, None, None, (f"request: {exc}",)))
    standing = _standing_from_file(attestation_file, authorizer, facts, now) if attestation_file else None
    result = authorizer.evaluate(facts, now, extra_checks=(chain,), attestation=standing, context=context)
    return PemEvaluation(facts, result.verdict.checks, result.decision, result)


def _standing_from_file(path: Path, authorizer: Any, facts: CertificateFacts, now: datetime) -> Any:
    """Verify a token file and bind it to the certificate given to ``decide`` (nothing is stored)."""
    from policy.attestation import AttestationStanding, DeviceBinding, TokenRejected, check_binding
    from trustport.cli.attest import read_small
    from trustport.services.attestation import AttestationService

    service = AttestationService(authorizer.settings.attestation, authorizer.store, authorizer.trust)
    token = read_small(str(path), "token").decode("ascii", "replace").strip()
    try:
        claims = service.verify(token, now)
        binding = check_binding(claims, DeviceBinding(facts.spki_sha256, facts.fingerprint_sha256))
    except TokenRejected as exc:
        return AttestationStanding(None, f"{path.name} refused ({exc.reason}): {exc}")
    return AttestationStanding(claims.status, f"{path.name}, bound by {binding}", claims.vector())


MARKS = {True: "ok  ", False: "FAIL", None: "--  "}


def print_checks(checks: tuple[Check, ...]) -> None:
    click.echo(cli_base.table(("check", "result", "detail"), [(c.name, MARKS[c.ok], c.detail) for c in checks]))


@click.command("decide")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path), required=True, help="device certificate (PEM)")
@click.option("--chain", "chain_file", type=click.Path(path_type=Path),
              help="intermediate CA certificates the device sends (PEM)")
@click.option("--nas-ip", help="NAS-IP-Address the request would come from")
@click.option("--nas-port", help="NAS-Port / NAS-Port-Id")
@click.option("--attestation", "attestation_file", type=click.Path(path_type=Path),
              help="an EAR token (file) to decide with, instead of the latest stored result")
@click.option("--json", "as_json", is_flag=True)
@config_option
def decide_command(cert_file: Path, chain_file: Path | None, nas_ip: str | None, nas_port: str | None,
                   attestation_file: Path | None, as_json: bool, config_file: Path) -> None:
    """What would happen to this device? Validates the certificate like FreeRADIUS + the hook, writes nothing."""
    config = load_config(config_file)
    certs = read_certificates(cert_file)
    intermediates = certs[1:] + (read_certificates(chain_file) if chain_file else [])
    authorizer = authorizer_for(config)
    context = NetworkContext(nas_ip=nas_ip, nas_port=nas_port)
    judged = evaluate_pem(authorizer, certs[0], intermediates, cli_base.now_utc(), context, attestation_file)
    facts, decision, result = judged.facts, judged.decision, judged.result
    device = result.device if result is not None else None
    attestation = result.attestation if result is not None else None
    if as_json:
        cli_base.emit_json({"device": None if facts is None else {
                                "issuer": facts.issuer, "serial_number": facts.device_serial,
                                "subject": facts.subject, "mud_url": facts.mud_url,
                                "registry_id": device.id if device else None,
                                "state": device.state if device else None},
                            "context": context, "checks": judged.checks, "decision": decision,
                            "attestation": attestation, "policy_revision": authorizer.policy_revision})
        return
    if facts is not None:
        kind = result.verdict.kind if result is not None else None
        click.echo(f"device   {safe_text(facts.device_serial or '?')}  ({safe_text(facts.subject)})")
        click.echo(f"issuer   {safe_text(facts.issuer)}  [{kind or 'untrusted'}]")
        click.echo(f"registry {f'#{device.id} {device.state.value}' if device else 'not registered'}")
    if attestation is not None:
        click.echo(f"attested {attestation.label}: {safe_text(attestation.detail)}")
    if nas_ip or nas_port:
        click.echo(f"from     NAS {safe_text(nas_ip or '?')} port {safe_text(nas_port or '?')}")
    click.echo("")
    print_checks(judged.checks)
    click.echo("")
    vlan = f" VLAN {decision.vlan} ({decision.segment})" if decision.vlan is not None else ""
    click.echo(f"decision: {decision.outcome.value.upper()}{vlan}"
               + (f" Filter-Id {safe_text(decision.filter_id)}" if decision.filter_id else ""))
    click.echo(f"rule:     {safe_text(decision.rule or '(none matched: lifecycle default)')}")
    click.echo(f"policy:   revision {authorizer.policy_revision}")
    for reason in decision.reasons:
        click.echo(f"  - {safe_text(reason)}")
