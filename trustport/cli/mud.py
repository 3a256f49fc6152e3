"""``trustport mud``: fill the local MUD directory over HTTPS (out of band), and show what the RADIUS path sees.

Exit codes: 0 done / a usable hint, 1 ``show`` found a problem with the file, 2 configuration, fetch or
verification failed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from policy.errors import ConfigError
from policy.mud import MudFetchError, policy_hint
from policy.mud_signature import load_mud, local_file_names, local_signature_name
from trustport.cli import base as cli_base
from trustport.cli.base import config_option
from trustport.services.mud_fetch import fetch_mud_and_signature
from trustport.services.mud_lookup import MudLookupResult
from trustport.settings.config import load_config
from trustport.settings.mud import MudConfig


def mud_section(config_file: Path) -> tuple[MudConfig, Path]:
    """The ``mud:`` section and the directory its relative paths are relative to."""
    config = load_config(config_file)
    section = config.mud
    if section is None:
        raise ConfigError(f"{config_file}: no 'mud:' section; add one with directory and signers (docs/mud.md)")
    return section, config.base_dir


def write_atomically(directory: Path, files: dict[str, bytes]) -> None:
    """Write every file to a temporary name first, then rename them in, in order: a reader sees whole files only.

    Temporary names start with a dot, which the local naming rules never try.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        for name, data in files.items():
            fd, temporary_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
            staged.append((Path(temporary_name), directory / name))
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o644)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for temporary, final in staged:
            temporary.replace(final)
    except OSError as exc:
        for temporary, _ in staged:
            with contextlib.suppress(OSError):
                temporary.unlink()
        raise MudFetchError(f"{exc.filename or directory}: cannot write the MUD file: {exc.strerror or exc}") from exc


@click.group("mud", cls=cli_base.TrustportGroup)
def mud() -> None:
    """MUD (RFC 8520) profiles: fetch them into the local directory, and show what the RADIUS path makes of them."""


@mud.command("fetch")
@click.argument("url")
@config_option
def mud_fetch(url: str, config_file: Path) -> None:
    """Download the MUD file at URL and its signature, verify both, and store them in the MUD directory."""
    section, base = mud_section(config_file)
    directory = section.directory_path(base)
    if not section.fetch:
        raise ConfigError(f"{config_file}: mud.fetch is false, so trustport does not download MUD files; set "
                          f"'mud: {{fetch: true}}', or copy the file and its .p7s into {directory} by hand")
    signers = section.load_signers(base)
    document, signature = fetch_mud_and_signature(url, timeout_s=section.fetch_timeout_seconds)
    verified = load_mud(document.body, signature.body, source=url, url=url, trusted_signers=list(signers),
                        now=cli_base.now_utc(), require_signature=True)
    name = local_file_names(url)[0]
    mud_path, signature_path = directory / name, directory / local_signature_name(name)
    # Between the two renames a lookup may see a mismatched pair: that fails verification and is retried at its
    # next stat, so it can cost one refresh interval, never let a file through unverified.
    write_atomically(directory, {signature_path.name: signature.body, name: document.body})
    hint = policy_hint(verified.profile)
    assert verified.signer is not None
    written_at = datetime.fromtimestamp(mud_path.stat().st_mtime, UTC)  # what the lookup counts cache-validity from
    for line in (f"fetched {url}",
                 f"  file:           {mud_path}",
                 f"  signature:      {signature_path}",
                 f"  signed by:      {verified.signer.subject.rfc4514_string()}",
                 f"  classification: {hint.classification.value}",
                 f"  filter-id:      {hint.filter_id or '-'}",
                 f"  valid until:    {verified.profile.expires_at(written_at).isoformat()} "
                 f"(cache-validity {verified.profile.cache_validity_hours} h)"):
        cli_base.echo_safe(line)  # the signer's subject and the file's filter-id come from the network


def result_document(url: str, result: MudLookupResult) -> dict[str, Any]:
    hint = result.hint
    return {
        "url": url, "ok": result.ok, "status": result.status.value, "detail": result.detail,
        "file": str(result.path) if result.path else None,
        "signer": result.signer.subject.rfc4514_string() if result.signer else None,
        "expires_at": result.expires_at.isoformat() if result.expires_at else None,
        "classification": hint.classification.value if hint else None,
        "filter_id": hint.filter_id if hint else None,
        "from_device_acls": list(hint.from_device_acls) if hint else [],
        "to_device_acls": list(hint.to_device_acls) if hint else [],
        "peers": sorted(peer.value for peer in hint.peers) if hint else [],
        "dns_names": list(hint.dns_names) if hint else [],
        "manufacturer": hint.manufacturer if hint else None,
        "model": hint.model if hint else None,
        "is_supported": hint.is_supported if hint else None,
    }


@mud.command("show")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="one JSON object, for scripts")
@config_option
def mud_show(url: str, as_json: bool, config_file: Path) -> None:
    """What the RADIUS path's MUD lookup yields for URL now: the policy hint, or the specific problem."""
    section, base = mud_section(config_file)
    result = section.lookup(base).hint(url, cli_base.now_utc())
    document = result_document(url, result)
    if as_json:
        cli_base.emit_json(document)
    else:
        labels = (("url", "url"), ("file", "file"), ("status", "status"), ("classification", "classification"),
                  ("filter-id", "filter_id"), ("from-device ACLs", "from_device_acls"),
                  ("to-device ACLs", "to_device_acls"), ("peers", "peers"), ("DNS names", "dns_names"),
                  ("signer", "signer"), ("expires", "expires_at"))
        for label, key in labels:
            value = document[key]
            if value not in (None, []) and (result.ok or key in ("url", "file", "status")):
                cli_base.echo_safe(f"{label + ':':<17} {', '.join(value) if isinstance(value, list) else value}")
        if not result.ok:
            cli_base.echo_safe(f"{'problem:':<17} {result.detail}")
    if not result.ok:
        sys.exit(1)
