"""``trustport radius render``: a runnable raddb directory from the trustport config and the templates in
``trustport/freeradius/templates/``. Files holding secrets (clients.conf, hook.json, the eap module) are owner-only."""

from __future__ import annotations

import json
import os
import re
import shutil
import sysconfig
from pathlib import Path

import radius_hooks
from policy.errors import ConfigError
from trustport.settings.config import TrustportConfig
from trustport.files import write_private

# TLS 1.2 SignatureScheme names (OpenSSL): what a client may sign its CertificateVerify with.
CLIENT_SIGALGS = ":".join((
    "ecdsa_secp256r1_sha256", "ecdsa_secp384r1_sha384", "ecdsa_secp521r1_sha512", "ed25519", "ed448",
    "rsa_pss_rsae_sha256", "rsa_pss_rsae_sha384", "rsa_pss_rsae_sha512",
    "rsa_pss_pss_sha256", "rsa_pss_pss_sha384", "rsa_pss_pss_sha512",
    "rsa_pkcs1_sha256", "rsa_pkcs1_sha384", "rsa_pkcs1_sha512",
))
PLACEHOLDER = re.compile(r"@@([a-z_]+)@@")
SECRET_FILES = frozenset({"clients.conf", "hook.json", "mods-enabled/eap"})


def template_dir() -> Path:
    """The raddb templates: $TRUSTPORT_FREERADIUS_TEMPLATES if set, else the copy shipped inside the package."""
    from importlib import resources

    override = os.environ.get("TRUSTPORT_FREERADIUS_TEMPLATES")
    # an installed wheel is unpacked on disk, so the package resource is a real directory
    shipped = resources.files("trustport.freeradius").joinpath("templates")
    candidate = Path(override) if override else Path(str(shipped))
    if not (candidate / "radiusd.conf").is_file():
        fix = ("point TRUSTPORT_FREERADIUS_TEMPLATES at a directory holding radiusd.conf, or unset it to use the "
               "templates installed with trustport") if override else "reinstall trustport: its package data is missing"
        raise ConfigError(f"FreeRADIUS templates not found in {candidate}; {fix}")
    return candidate


def python_path() -> str:
    """Where radiusd's embedded Python finds radius_hooks/policy (the source tree or site-packages)."""
    return str(Path(radius_hooks.__file__).resolve().parents[1])


def site_packages() -> str:
    """The venv's site-packages: radiusd must get it in PYTHONPATH (prepended), see docs/freeradius.md."""
    return sysconfig.get_paths()["purelib"]


def _clients(config: TrustportConfig) -> str:
    blocks = []
    for client in config.radius.clients:
        blocks.append(
            f"client {client.name} {{\n"
            f"\tipaddr = {client.address}\n"
            f"\tproto = udp\n"
            f"\tsecret = \"{client.secret.reveal()}\"\n"
            f"\trequire_message_authenticator = yes\n"
            f"\tlimit_proxy_state = yes\n"
            f"\tnas_type = other\n"
            f"}}\n"
        )
    return "\n".join(blocks)


def _values(config: TrustportConfig, out: Path) -> dict[str, str]:
    radius = config.radius
    password = radius.server_key_password
    return {
        "raddb_dir": str(out),
        "log_dir": str(out / "log"),
        "run_dir": str(out / "run"),
        "security_user": (f"\tuser = {radius.run_as_user}\n\tgroup = {radius.run_as_user}"
                          if radius.run_as_user else "\t# runs as the invoking user (run_as_user: null)"),
        "reject_delay": str(radius.reject_delay),
        "clients": _clients(config),
        "server_key": str(config.path(radius.server_key)),
        "server_key_password": f'\t\tprivate_key_password = "{password.reveal()}"' if password else "",
        "server_certificate": str(config.path(radius.server_certificate)),
        "python_path": python_path(),
        "hook_settings": str(out / "hook.json"),
        "listen_address": radius.listen_address,
        "auth_port": str(radius.auth_port),
        "acct_port": str(radius.acct_port),
        "sigalgs": CLIENT_SIGALGS,
    }


def _fill(text: str, values: dict[str, str], name: str) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ConfigError(f"template {name}: unknown placeholder @@{key}@@")
        return values[key]

    return PLACEHOLDER.sub(replace, text)


def render(config: TrustportConfig, out: Path) -> list[Path]:
    """Write the raddb directory; returns the files written. Replaces files trustport owns, keeps others."""
    templates = template_dir()
    out = out.resolve()
    values = _values(config, out)
    written: list[Path] = []
    for directory in ("log", "run", "certs/empty"):
        (out / directory).mkdir(parents=True, exist_ok=True)
    for source in sorted(templates.rglob("*")):
        if not source.is_file():
            continue
        rel = source.relative_to(templates).as_posix()
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = _fill(source.read_text(encoding="utf-8"), values, rel)
        if rel in SECRET_FILES:
            write_private(target, text.encode())
        else:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    bundle = b"".join(config.path(a.file).read_bytes().rstrip() + b"\n" for a in config.trust_anchors)
    anchors = out / "certs" / "trust-anchors.pem"
    anchors.write_bytes(bundle)
    settings = out / "hook.json"
    write_private(settings, json.dumps(config.hook_settings().to_json(), indent=2).encode())
    written += [anchors, settings]
    if config.radius.run_as_user:
        _hand_over(out, config.radius.run_as_user)
    return written


def _hand_over(out: Path, user: str) -> None:
    """Make the rendered tree readable by the radiusd user (root renders, freerad runs)."""
    try:
        shutil.chown(out, user=user, group=user)
        for path in out.rglob("*"):
            shutil.chown(path, user=user, group=user)
    except (LookupError, PermissionError) as exc:
        raise ConfigError(f"cannot hand {out} over to user {user!r} ({exc}); create the user, run render as "
                          "root, or set radius.run_as_user: null to run radiusd as yourself") from exc
