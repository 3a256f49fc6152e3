"""``trustport radius render``: a runnable raddb directory from the trustport config and the templates in
``trustport/freeradius/templates/``. Files holding secrets (clients.conf, hook.json, the eap module) are owner-only."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import radius_hooks
from policy.errors import ConfigError
from trustport.files import write_private
from trustport.settings.config import TrustportConfig

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
            f"\tsecret = \"{client.secret.get_secret_value()}\"\n"
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
        "server_key_password": f'\t\tprivate_key_password = "{password.get_secret_value()}"' if password else "",
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
    metrics_dir = config.path(config.metrics.directory) if config.metrics.enabled else None
    if metrics_dir is not None:
        metrics_dir.mkdir(parents=True, exist_ok=True)
    journal_dir = config.journal_dir()
    if journal_dir is not None:
        journal_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        # the hook writes its counters and its journal there (the directories only, not what is in them)
        for what, handed in (("metrics", metrics_dir), ("journal", journal_dir)):
            if handed is None:
                continue
            try:
                shutil.chown(handed, user=config.radius.run_as_user, group=config.radius.run_as_user)
            except (LookupError, PermissionError) as exc:
                raise ConfigError(f"cannot hand the {what} directory {handed} over to user "
                                  f"{config.radius.run_as_user!r} ({exc})") from exc
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


# -- can radiusd, once it dropped root, read and write what it needs? ------------------------------------------

READ, WRITE, SEARCH = 4, 2, 1


@dataclass(frozen=True)
class RunAs:
    """Who radiusd runs as: ``user``/``group`` in radiusd.conf; it calls initgroups, so supplementary groups count."""

    name: str
    group: str
    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def of(cls, user: str) -> RunAs:
        """The rendered radiusd.conf says ``user = U`` and ``group = U``; without such a group, U's own."""
        try:
            account = pwd.getpwnam(user)
        except KeyError as exc:
            raise ConfigError(f"radius.run_as_user {user!r} is not a user on this machine; create it (Debian's "
                              "freeradius package creates freerad) or set radius.run_as_user: null") from exc
        try:
            gid, group = grp.getgrnam(user).gr_gid, user
        except KeyError:
            gid, group = account.pw_gid, _group_name(account.pw_gid)
        return cls(user, group, account.pw_uid, gid, frozenset((gid, *os.getgrouplist(user, gid))))


@dataclass(frozen=True)
class Need:
    """One path radiusd must reach. ``hand_over``: the fix is to give it to the radiusd user (its own files:
    hook.json, the registry), not to open it to that user's group."""

    label: str
    path: Path
    want: int  # READ / WRITE bits; directories need SEARCH as well
    directory: bool = False
    hand_over: bool = False
    missing: str = ""  # what to do when it does not exist; empty: say that it does not exist


def allowed(mode: int, owner: int, group: int, who: RunAs, want: int) -> bool:
    """Classic Unix permission check (no ACLs): the owner bits apply to the owner even when the group's or
    others' bits would grant more; root may do anything."""
    if who.uid == 0:
        return True
    if owner == who.uid:
        bits = mode >> 6
    elif group in who.groups:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _verb(want: int) -> str:
    if want & SEARCH and not want & (READ | WRITE):
        return "searchable (x)"
    return " and ".join(word for bit, word in ((READ, "readable"), (WRITE, "writable")) if want & bit)


def _fix(path: Path, st: os.stat_result, who: RunAs, want: int, hand_over: bool) -> str:
    mode = stat.S_IMODE(st.st_mode)
    if hand_over:
        return f"chown {who.name}:{who.group} {path} && chmod {mode | want << 6:04o} {path}"
    if st.st_uid == who.uid:
        return f"chmod {mode | want << 6:04o} {path}"
    if st.st_gid in who.groups:
        return f"chmod {mode | want << 3:04o} {path}"
    return f"chown {_user_name(st.st_uid)}:{who.group} {path} && chmod {mode | want << 3:04o} {path}"


def _describe(st: os.stat_result) -> str:
    return f"mode {stat.S_IMODE(st.st_mode):04o} {_user_name(st.st_uid)}:{_group_name(st.st_gid)}"


def access_problems(needs: Sequence[Need], who: RunAs,
                    stat_path: Callable[[Path], os.stat_result] = os.stat) -> list[str]:
    """Every path radiusd (as ``who``) cannot reach, read or write, each with the command that fixes it; a
    directory on the way to several paths is reported once."""
    problems: list[str] = []
    blocked: dict[Path, list[str]] = {}
    blocked_stat: dict[Path, os.stat_result] = {}
    for need in needs:
        path = Path(os.path.realpath(need.path))
        for parent in reversed(path.parents):  # every directory on the way must be searchable (x)
            try:
                st = stat_path(parent)
            except OSError:
                break  # the path itself is reported missing below
            if not allowed(st.st_mode, st.st_uid, st.st_gid, who, SEARCH):
                blocked.setdefault(parent, []).append(f"{need.label} {path}")
                blocked_stat[parent] = st
        try:  # checked even behind a blocked directory, so that one round of fixes is enough
            st = stat_path(path)
        except FileNotFoundError:
            problems.append(f"{need.label} {path} does not exist" + (f": {need.missing}" if need.missing else ""))
            continue
        except OSError as exc:
            problems.append(f"{need.label} {path} cannot be examined: {exc.strerror or exc}")
            continue
        if need.directory != stat.S_ISDIR(st.st_mode):
            problems.append(f"{need.label} {path} is {'not ' if need.directory else ''}a directory")
            continue
        want = need.want | (SEARCH if need.directory else 0)
        if not allowed(st.st_mode, st.st_uid, st.st_gid, who, want):
            problems.append(f"{need.label} {path} is not {_verb(need.want)} by user {who.name} ({_describe(st)}): "
                            f"{_fix(path, st, who, want, need.hand_over)}")
    for parent, reached in blocked.items():
        st = blocked_stat[parent]
        problems.append(f"directory {parent} is not searchable by user {who.name} ({_describe(st)}), so it cannot "
                        f"reach {', '.join(reached)}: {_fix(parent, st, who, SEARCH, hand_over=False)}")
    return problems


def _files_in(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_file())
    except OSError:
        return []


def radiusd_needs(config: TrustportConfig, out: Path) -> list[Need]:
    """What the rendered radiusd and its hook open once they run as radius.run_as_user."""
    out = out.resolve()
    needs = [
        Need("server certificate", config.path(config.radius.server_certificate), READ),
        Need("server key", config.path(config.radius.server_key), READ),
        *(Need(f"trust anchor {a.name}", config.path(a.file), READ) for a in config.trust_anchors),
        Need("rendered raddb", out, READ, directory=True, hand_over=True),
        Need("rendered trust anchors", out / "certs" / "trust-anchors.pem", READ),
        Need("eap ca_path", out / "certs" / "empty", READ, directory=True),
        Need("hook settings", out / "hook.json", READ, hand_over=True),
        Need("radiusd log directory", out / "log", WRITE, directory=True, hand_over=True),
        Need("radiusd run directory", out / "run", WRITE, directory=True, hand_over=True),
    ]
    if config.config_file is not None:  # the hook re-reads the policy from it
        needs.append(Need("trustport config", config.config_file, READ))
    if config.policy_file is not None:
        needs.append(Need("policy file", config.path(config.policy_file), READ))
    if config.revocation.crl_dir is not None:
        crl_dir = config.path(config.revocation.crl_dir)
        needs.append(Need("CRL directory", crl_dir, READ, directory=True))
        needs += [Need("CRL", crl, READ) for crl in _files_in(crl_dir)]
    if config.mud is not None:
        mud_dir = config.mud.directory_path(config.base_dir)
        needs.append(Need("MUD directory", mud_dir, READ, directory=True))
        needs += [Need("MUD file", file, READ) for file in _files_in(mud_dir)]
        needs += [Need("MUD signer", config.path(p), READ) for p in config.mud.signers]
    if config.attestation is not None:
        needs += [Need(f"verifier key {k.name}", config.path(k.file), READ) for k in config.attestation.verifier_keys]
    if config.metrics.enabled:  # the hook leaves its counters there for /metrics
        needs.append(Need("metrics directory", config.path(config.metrics.directory), WRITE, directory=True,
                          hand_over=True))
    url = config.database_url()
    if url.startswith("sqlite:///"):
        registry = Path(url[len("sqlite:///"):])
        user = config.radius.run_as_user
        init = (f"create it as {user}: runuser -u {user} -- trustport db init --config {config.config_file or 'FILE'}"
                f" (or run db init as root, then chown {user}:{user} {registry} {registry.parent})")
        # SQLite in WAL mode creates registry-wal and registry-shm next to the file: the directory must be writable
        needs.append(Need("registry directory", registry.parent, WRITE, directory=True, hand_over=True))
        needs.append(Need("registry", registry, READ | WRITE, hand_over=True, missing=init))
        needs += [Need("registry journal", Path(f"{registry}{suffix}"), READ | WRITE, hand_over=True)
                  for suffix in ("-wal", "-shm") if Path(f"{registry}{suffix}").exists()]
    return needs


def permission_problems(config: TrustportConfig, out: Path) -> list[str]:
    """What stops radiusd, running as radius.run_as_user, from reading its files and writing the registry.
    Empty when radiusd runs as the invoking user (run_as_user: null)."""
    user = config.radius.run_as_user
    if not user:
        return []
    return access_problems(radiusd_needs(config, out), RunAs.of(user))
