"""Subcommands: config, radius, decide, devices, lab."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from policy.decide import SegmentRules, rule_table
from policy.dn import DnError, canonical_dn, canonical_serial
from policy.errors import CertificateError, IdentityError, TrustportError
from policy.lifecycle import ACTIONS, Action
from policy.model import CertificateFacts, CertKind, DeviceKey, DeviceRecord, LifecycleState
from policy.text import safe_text
from trustport.app import App
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.cli.decide import authorizer_for, decide_command, evaluate_pem, read_certificates
from trustport.services.devices import resolve_device
from trustport.settings.config import Problem, check_config, load_config
from trustport.store.lifecycle import SqlLifecycleStore
from trustport.store.sql import SqlDeviceStore


@click.group("config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def config_check(file: Path, as_json: bool) -> None:
    """Report every problem in FILE with its location (exit 1 if any)."""
    from trustport.settings.config import ca_config_problems, config_warnings

    config, problems = check_config(file)
    if config is not None and not problems:
        problems = ca_config_problems(config)
    warnings = config_warnings(config, cli_base.now_utc()) if config is not None and not problems else []
    if as_json:
        cli_base.emit_json({"file": str(file), "ok": not problems,
                          "problems": [{"location": p.location, "message": p.message} for p in problems],
                          "warnings": [{"location": p.location, "message": p.message} for p in warnings]})
    elif problems:
        _print_problems(problems, f" in {file}")
    else:
        assert config is not None
        for warning in warnings:
            cli_base.echo_safe(warning)
        cli_base.echo_safe(f"{file}: OK ({len(config.trust_anchors)} trust anchor(s), "
                           f"{len(config.segments)} segment(s), {len(config.radius.clients)} RADIUS client(s))"
                           + (f", {len(warnings)} warning(s)" if warnings else ""))
    if problems:
        sys.exit(1)


def _print_problems(problems: Sequence[Problem], where: str = "") -> None:
    for problem in problems:
        cli_base.echo_safe(problem)
    cli_base.echo_safe(f"{len(problems)} problem(s) found{where}")


@click.group("policy")
def policy_group() -> None:
    """Segment policy."""


@policy_group.command("check")
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("--explain", is_flag=True, help="print the effective rule table (VLAN per site, Filter-Id)")
@config_option
def policy_check(file: Path | None, as_json: bool, explain: bool, config_file: Path) -> None:
    """Validate a policy file (segments, sites, rules), or the policy in the config; exit 1 on problems.

    Lists the rules that admit unregistered devices (their ``state:`` names unknown or pending)."""
    from trustport.settings.config import check_policy_file

    if file is not None:
        document, problems = check_policy_file(file)
    else:
        config, problems = check_config(config_file)
        document = config.policy_document() if config is not None and not problems else None
    rules = document.segment_rules() if document is not None and not problems else None
    revision = document.revision() if document is not None and rules is not None else None
    admitting = [r.name for r in rules.rules if r.admits_unregistered()] if rules is not None else []
    if as_json:
        cli_base.emit_json({"ok": not problems, "problems": [{"location": p.location, "message": p.message}
                                                           for p in problems],
                          "rules": [r.name for r in rules.rules] if rules else [],
                          "admit_unregistered": admitting, "policy_revision": revision,
                          **({"table": rule_table(rules)} if explain and rules is not None and not problems
                             else {})})
    elif problems:
        _print_problems(problems)
    else:
        assert rules is not None
        click.echo(f"OK: {len(rules.segments)} segment(s), {len(rules.sites)} site(s), {len(rules.rules)} rule(s); "
                   f"policy revision {revision}")
        if explain:
            _explain(rules)
        else:
            click.echo(cli_base.table(("#", "rule", "match", "then"), [
                (i + 1, r.name, "; ".join(f"{c.field}={'|'.join(c.patterns)}" for c in r.conditions),
                 "reject" if r.reject else f"segment {r.segment}") for i, r in enumerate(rules.rules)]))
        if admitting:
            cli_base.echo_safe("rules that admit unregistered devices (state: unknown/pending): "
                               + ", ".join(admitting))
        else:
            click.echo("no rule admits unregistered devices: unknown and pending devices go to quarantine")
    if problems:
        sys.exit(1)


def _vlans(rules: SegmentRules, segment: str) -> str:
    per_site = rules.site_vlans.get(segment, {})
    return "; ".join([str(rules.segments[segment]), *(f"{site}={vlan}" for site, vlan in sorted(per_site.items()))])


def _explain(rules: SegmentRules) -> None:
    rows = []
    for row in rule_table(rules):
        match = "; ".join(f"{k}={'|'.join(v)}" for k, v in row["match"].items())
        then = "reject" if row["action"] == "reject" else f"segment {row['segment']}"
        vlan = "-" if row["segment"] is None else _vlans(rules, row["segment"])
        rows.append((row["order"], row["name"], match, then, vlan, row["filter_id"] or "-",
                     "yes" if row["admits_unregistered"] else ""))
    click.echo(cli_base.table(("#", "rule", "match", "then", "VLAN (site=VLAN)", "Filter-Id", "unregistered"),
                              rows))
    fallbacks = [("quarantine", rules.quarantine_segment), ("default", rules.default_segment),
                 ("onboarding", rules.onboarding_segment)]
    click.echo("\nwithout a matching rule:")
    for label, segment in fallbacks:
        if segment is None:
            target = "quarantine" if label == "onboarding" else "-"
            cli_base.echo_safe(f"  {label:<11} (not set{': ' + target if target != '-' else ''})")
        else:
            cli_base.echo_safe(f"  {label:<11} segment {segment}, VLAN {_vlans(rules, segment)}, "
                               f"Filter-Id {rules.filters.get(segment, '-')}")
    att = rules.attestation
    if att is None:
        click.echo("attestation placement: not configured (attestation results never change placement)")
    else:
        cli_base.echo_safe(f"attestation placement: warning -> {att.warning_segment}, contraindicated -> "
                           f"{rules.quarantine_segment}, missing (LDevID) -> {att.missing_ldevid_segment}, "
                           f"missing (IDevID) -> {att.missing_idevid_segment}")


@click.group("radius")
def radius_group() -> None:
    """FreeRADIUS configuration."""


@radius_group.command("render")
@click.option("--config", "config_file", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="raddb directory to write")
@click.option("--check/--no-check", default=True,
              help="check that radius.run_as_user can read/write what radiusd needs, and run 'freeradius -XC'")
def radius_render(config_file: Path, out: Path, check: bool) -> None:
    """Write a runnable FreeRADIUS raddb directory from the trustport config."""
    from trustport.freeradius.render import permission_problems, render, site_packages
    from trustport.freeradius.run import RadiusServer

    config = load_config(config_file)
    written = render(config, out)
    click.echo(f"wrote {len(written)} files to {out}")
    if check:
        problems = permission_problems(config, out)
        try:
            RadiusServer(out.resolve(), out / "log" / "check.log").check()
        except TrustportError as exc:
            problems.append(str(exc))
        if problems:
            raise click.ClickException(f"{len(problems)} problem(s) in {out}: radiusd would refuse to start, "
                                       "or start and reject every device:\n  " + "\n  ".join(problems))
        click.echo("freeradius -XC: configuration OK" + (
            f"; user {config.radius.run_as_user} can read and write what radiusd needs"
            if config.radius.run_as_user else ""))
    click.echo(f"start it with: PYTHONPATH={site_packages()} freeradius -d {out.resolve()}")


@click.group("devices")
def devices_group() -> None:
    """The device registry."""


def _store(config_file: Path) -> SqlDeviceStore:
    return App.from_file(config_file).store


def _device_row(d: DeviceRecord) -> tuple[Any, ...]:
    seen = d.last_seen.strftime("%Y-%m-%d %H:%M:%S") if d.last_seen else "never"
    return (d.id, d.key.serial_number, d.state.value, d.segment or "-", d.cert_kind or "-", d.owner or "-", seen,
            d.key.issuer)


DEVICE_HEADERS = ("id", "serial", "state", "segment", "kind", "owner", "last seen", "issuer")


@devices_group.command("list")
@click.option("--state", type=click.Choice([s.value for s in LifecycleState]))
@click.option("--json", "as_json", is_flag=True)
@config_option
def devices_list(state: str | None, as_json: bool, config_file: Path) -> None:
    store = _store(config_file)
    try:
        devices = store.list_devices(LifecycleState(state) if state else None)
    finally:
        store.close()
    if as_json:
        cli_base.emit_json(list(devices))
    else:
        click.echo(cli_base.table(DEVICE_HEADERS, [_device_row(d) for d in devices]))


@devices_group.command("show")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=20, show_default=True, help="decision log entries to show")
@config_option
def devices_show(device: str, as_json: bool, limit: int, config_file: Path) -> None:
    store = _store(config_file)
    try:
        record = resolve_device(store, device)
        log = store.decisions(record.id, limit=limit)
        events = SqlLifecycleStore(store).events(record.id, limit=limit)
    finally:
        store.close()
    if as_json:
        cli_base.emit_json({"device": record, "decisions": list(log), "lifecycle": list(events)})
        return
    for label, value in (("id", record.id), ("serial", record.key.serial_number), ("issuer", record.key.issuer),
                         ("state", record.state.value), ("segment", record.segment), ("owner", record.owner),
                         ("class", record.device_class), ("location", record.location),
                         ("notes", record.notes), ("kind", record.cert_kind), ("cert serial", record.cert_serial),
                         ("fingerprint", record.fingerprint_sha256), ("MUD URL", record.mud_url),
                         ("first seen", record.first_seen), ("last seen", record.last_seen)):
        cli_base.echo_safe(f"{label:<12} {value if value is not None else '-'}")
    click.echo("\nlifecycle (newest first):")
    click.echo(cli_base.table(("time", "action", "from", "to", "actor", "reason"), [
        (e.time.strftime("%Y-%m-%d %H:%M:%S"), e.action, e.from_state, e.to_state, e.actor, e.reason or "")
        for e in events]))
    click.echo("\ndecision log (newest first):")
    click.echo(cli_base.table(("time", "outcome", "vlan", "nas", "port", "mac", "reasons"), [
        (e.time.strftime("%Y-%m-%d %H:%M:%S"), e.outcome.value, e.vlan, e.context.nas_ip, e.context.nas_port,
         e.context.calling_station_id, "; ".join(e.reasons)) for e in log]))


@devices_group.command("add")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path), help="take issuer + serial from this PEM")
@click.option("--chain", "chain_file", type=click.Path(path_type=Path), help="intermediate CA certificates (PEM)")
@click.option("--issuer", help="issuer DN in one-line form (/C=../O=../CN=..)")
@click.option("--serial", help="device serial number (subject serialNumber)")
@click.option("--state", type=click.Choice([s.value for s in LifecycleState]), default="operational",
              show_default=True)
@click.option("--segment")
@click.option("--owner")
@click.option("--notes")
@click.option("--force", is_flag=True, help="register a certificate the RADIUS path would reject (warns)")
@click.option("--json", "as_json", is_flag=True)
@config_option
def devices_add(cert_file: Path | None, chain_file: Path | None, issuer: str | None, serial: str | None, state: str,
                segment: str | None, owner: str | None, notes: str | None, force: bool, as_json: bool,
                config_file: Path) -> None:
    """Register a device by its certificate (validated as RADIUS would), or by issuer DN + serial number."""
    config = load_config(config_file, check_files=False)
    if segment is not None and segment not in config.segments:
        raise TrustportError(f"segment {segment!r} is not defined; known: {', '.join(config.segments)}")
    facts = None
    kind = None
    if cert_file is not None:
        authorizer = authorizer_for(config)
        store = authorizer.store
        try:
            facts, kind = _validated_pem(authorizer, cert_file, chain_file, force)
        except BaseException:
            store.close()
            raise
        issuer, serial = facts.issuer, facts.device_serial
    else:
        if not issuer or not serial:
            raise click.UsageError("give --cert FILE, or --issuer '/C=../CN=..' and --serial SN")
        try:
            issuer, serial = canonical_dn(issuer, "--issuer"), canonical_serial(serial, "--serial")
        except DnError as exc:
            raise IdentityError(str(exc)) from exc
        if not issuer:
            raise click.UsageError("--issuer must be a one-line DN such as '/C=DE/O=Acme/CN=Acme IDevID CA'")
        store = App(config).store
    assert serial is not None
    try:
        record = store.add_device(DeviceKey(issuer, serial), state=LifecycleState(state), segment=segment,
                                  owner=owner, notes=notes, cert_kind=kind, facts=facts, now=cli_base.now_utc())
    finally:
        store.close()
    if as_json:
        cli_base.emit_json(record)
    else:
        click.echo(f"added device #{record.id} {safe_text(serial)} ({record.state.value})")


def _validated_pem(authorizer: Any, cert_file: Path, chain_file: Path | None, force: bool,
                   ignore: frozenset[str] = frozenset()) -> tuple[CertificateFacts, CertKind | None]:
    """Judge a PEM as the RADIUS path would; refuse what it would reject unless ``force`` (then warn)."""
    certs = read_certificates(cert_file)
    intermediates = certs[1:] + (read_certificates(chain_file) if chain_file else [])
    judged = evaluate_pem(authorizer, certs[0], intermediates, cli_base.now_utc())
    if judged.facts is None:
        raise IdentityError(f"{cert_file}: {judged.checks[0].detail}")
    if not judged.facts.device_serial:
        raise CertificateError(f"{cert_file}: subject has no serialNumber; not an 802.1AR device certificate")
    failures = [c for c in judged.checks if c.ok is False and c.name not in ignore]
    why = "; ".join(f"{c.name}: {c.detail}" for c in failures)
    if failures and not force:
        raise CertificateError(f"{cert_file}: FreeRADIUS and the hook would reject this certificate ({why}); "
                               "fix it, or register it anyway with --force")
    if failures:
        click.echo(f"warning: registering a certificate the RADIUS path rejects: {safe_text(why)}", err=True)
    return judged.facts, judged.result.verdict.kind


@devices_group.command("rebind")
@click.argument("device")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path), required=True,
              help="the device's new certificate (PEM)")
@click.option("--chain", "chain_file", type=click.Path(path_type=Path), help="intermediate CA certificates (PEM)")
@click.option("--reason", help="why (kept in the audit log)")
@click.option("--actor", default=None, help="who (default: the invoking user)")
@click.option("--force", is_flag=True, help="bind a certificate the RADIUS path would reject (warns)")
@config_option
def devices_rebind(device: str, cert_file: Path, chain_file: Path | None, reason: str | None, actor: str | None,
                   force: bool, config_file: Path) -> None:
    """Bind DEVICE to a new certificate (same issuer and serial number); the old one stops being accepted."""
    from policy.certificates import BINDING
    from policy.model import AuditNote

    config = load_config(config_file)
    authorizer = authorizer_for(config)
    store = authorizer.store
    try:
        record = resolve_device(store, device)
        facts, _kind = _validated_pem(authorizer, cert_file, chain_file, force, frozenset({BINDING}))
        if DeviceKey(facts.issuer, facts.device_serial or "") != record.key:
            raise CertificateError(f"{cert_file} is {facts.device_serial} @ {facts.issuer}, "
                                   f"not device #{record.id} ({record.key})")
        note = AuditNote(actor or _actor(), "certificate-rebound", record.state.value,
                         f"certificate serial {record.cert_serial or '(none)'} -> {facts.cert_serial}"
                         + (f": {reason}" if reason else ""))
        updated = store.bind_certificate(record.id, facts, cli_base.now_utc(), note)
    finally:
        store.close()
    click.echo(f"device #{updated.id} {safe_text(updated.key.serial_number)} is now bound to certificate serial "
               f"{updated.cert_serial}")


def _actor() -> str:
    import getpass
    import os

    return os.environ.get("SUDO_USER") or getpass.getuser() or "cli"


def _transition(action: Action) -> None:
    @devices_group.command(action.name, help=action.help + " DEVICES are ids or serial numbers. With --wait, waits "
                           "for the enforcement jobs (a 'trustport worker' runs elsewhere) and exits 1 if any failed, "
                           "the timeout passed, or a connected device stays in its VLAN.")
    @click.argument("devices", nargs=-1, required=True)
    @click.option("--segment", help="segment to place the device(s) in")
    @click.option("--reason", help="why (recorded in the audit log and the device notes)")
    @click.option("--actor", default=_actor, show_default="the invoking user", help="who (audit log)")
    @click.option("--wait", is_flag=True, help="wait for each queued job and report what was read back or why it "
                  "failed")
    @click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
                  help="with --wait: seconds to wait for the jobs")
    @click.option("--json", "as_json", is_flag=True)
    @config_option
    def command(devices: tuple[str, ...], segment: str | None, reason: str | None, actor: str, wait: bool,
                timeout: float, as_json: bool, config_file: Path) -> None:
        import contextlib

        from trustport.cli.enforce import report_actions
        from trustport.services.enforcement import wait_for_jobs
        from trustport.services.lifecycle import resolve_devices
        from trustport.store.queue import SqlJobQueue

        app = App(load_config(config_file, check_files=False))
        store = app.store
        results, errors = [], []
        waited: dict[int, Any] = {}
        try:
            service = app.lifecycle
            service.check_segment(segment)  # before anything is looked up or written
            records = resolve_devices(store, devices)  # all of them first; each device once, in order named
            show = len(records) > 1 and not as_json
            with (click.progressbar(length=len(records), label=f"{action.name} {len(records)} devices",
                                    file=sys.stderr, show_pos=True) if show else contextlib.nullcontext()) as bar:
                for outcome in service.act_many(records, action.name, actor=actor, reason=reason,
                                                now=cli_base.now_utc(), segment=segment,
                                                progress=bar.update if bar is not None else None):
                    if isinstance(outcome, TrustportError):
                        errors.append(str(outcome))
                    else:
                        results.append(outcome)
            job_ids = list(dict.fromkeys(q.job.id for r in results for q in r.queued if q.job is not None))
            if wait and job_ids:
                if not as_json:
                    cli_base.echo_safe(f"waiting up to {timeout:g} s for {len(job_ids)} job(s)...", err=True)
                waited = wait_for_jobs(SqlJobQueue(store), job_ids, timeout)
        finally:
            store.close()
        code = report_actions(results, errors, waited, wait=wait, timeout=timeout, segment=segment, as_json=as_json)
        if code:
            sys.exit(code)


for _action in ACTIONS.values():
    _transition(_action)


@click.command("lab")
@click.option("--workdir", type=click.Path(path_type=Path), help="keep the lab's files here (default: temporary)")
@click.option("--dashboard", is_flag=True, help="after the stories, keep the lab running with the dashboard on a "
              "loopback URL (and a worker) until Ctrl-C")
def lab_command(workdir: Path | None, dashboard: bool) -> None:
    """Run the demo lab: real FreeRADIUS + eapol_test, one client per scenario, and print what each got."""
    try:
        from trustport_lab.console import hold
        from trustport_lab.lab import run_lab
    except ModuleNotFoundError as exc:  # the lab's simulators need the lab extra (asyncssh, httpx)
        raise click.ClickException(f"trustport lab needs the lab extra ({exc.name} is not installed): "
                                   "pip install 'trustport[lab]'") from exc

    run = run_lab(workdir, echo=click.echo, hold=hold(click.echo) if dashboard else None)
    rows, story, onboarding = run.rows, run.story, run.onboarding
    bad = [r for r in rows if not r.as_expected]
    bad_story = [s for s in story if s.after != 999 or "VLAN 999" not in s.reauth]
    click.echo("")
    failed = not _story_line("onboarding", onboarding, " and ".join(run.missing) + " not found on PATH", 6,
                             "unknown IDevID -> LDevID -> production -> revoked")
    failed |= not _story_line("directory", run.directory, run.directory_missing or "", 5,
                              "directory-approved -> disabled -> outage -> removed")
    if bad or bad_story:
        click.echo(f"{len(bad)} of {len(rows)} scenarios and {len(bad_story)} of {len(story)} story steps did not "
                   "get the expected outcome")
        sys.exit(1)
    click.echo(f"all {len(rows)} scenarios got the expected outcome"
               + (f"; all {len(story)} connected devices were moved to quarantine and re-authenticated into it"
                  if story else ""))
    if failed:
        sys.exit(1)


def _story_line(name: str, story: Any, missing: str, steps: int, summary: str) -> bool:
    """The lab's one-line verdict on a story (None: it could not run, for ``missing``); True when all went well."""
    if story is None:
        click.echo(f"{name}: not run, {missing}")
        return False
    if not story.ok:
        wrong = sum(1 for r in story.rows if not r.as_expected)
        click.echo(f"{name}: {wrong or 'a'} step(s) not as expected, {len(story.rows)} of {steps} run")
        return False
    click.echo(f"{name}: all {len(story.rows)} steps as expected ({summary})")
    return True


def register(cli: click.Group) -> None:
    from trustport.cli.accounts import tokens_group, users_group
    from trustport.cli.attest import api_group, attest_group
    from trustport.cli.ca import ca_group
    from trustport.cli.enforce import jobs_group, sessions_group, worker_command
    from trustport.cli.mud import mud
    from trustport.cli.pki import pki_group
    from trustport.cli.switch import coa, switch

    for command in (config_group, policy_group, radius_group, decide_command, devices_group, lab_command,
                    attest_group, api_group, worker_command, jobs_group, sessions_group, switch, coa, mud,
                    ca_group, pki_group, tokens_group, users_group):
        cli.add_command(command)
    from trustport.cli.directory import directory_group
    from trustport.cli.est import est_group

    cli.add_command(est_group)
    cli.add_command(directory_group)


