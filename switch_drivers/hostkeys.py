"""SSH host keys for the CLI drivers: the policy paramiko applies, the key a switch offers, and the two failures
(an unknown key, a changed key) told apart with the SHA256 fingerprints an operator can compare.

paramiko logs a failed handshake (a dead peer, a refused key) at ERROR with a traceback; with no logging configured
Python prints that on stderr. Our sessions log on their own channel, :data:`TRANSPORT_LOG`, whose records are
demoted to DEBUG: the failure reaches the caller once, as a translated ``DriverError``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paramiko  # type: ignore[import-untyped]  # paramiko ships no type information

from .base import Target
from .errors import ConnectError, HostKeyChanged, HostKeyError, HostKeyUnknown

__all__ = [
    "TRANSPORT_LOG",
    "HostKeyPolicyName",
    "HostKeyReport",
    "PolicyForSession",
    "UnknownHostKey",
    "changed_key_error",
    "fingerprint",
    "inspect",
    "known_hosts_name",
    "offered_key",
    "offline",
    "unknown_key_error",
]

HostKeyPolicyName = Literal["strict", "accept-new", "insecure-ignore"]
TRANSPORT_LOG = "switch_drivers.ssh"
_APPEND_LOCK = threading.Lock()


class _Demote(logging.Filter):
    """paramiko's transport thread reports every handshake failure at ERROR with a traceback; the driver raises a
    translated error for it, so the log records are kept for debugging only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


logging.getLogger(TRANSPORT_LOG).addFilter(_Demote())


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH and paramiko file a host key under: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint (what ``ssh-keygen -lf`` and a switch's ``show ip ssh`` print)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class UnknownHostKey(paramiko.SSHException):  # type: ignore[misc]
    """Raised inside paramiko's handshake by the strict policy; carries the key the switch offered."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        self.hostname = hostname
        self.key = key
        super().__init__(f"host key for {hostname} is not in known_hosts")


def _keyscan(target: Target, known_hosts: Path | None, key_type: str | None = None) -> str:
    port = target.port or 22
    kind = f" -t {key_type.removeprefix('ssh-')}" if key_type else ""
    dest = known_hosts or "KNOWN_HOSTS"
    return f"ssh-keyscan -p {port}{kind} {target.host} >> {dest}"


def unknown_key_error(target: Target, known_hosts: Path | None, key: paramiko.PKey | None) -> HostKeyUnknown:
    """The switch is not in known_hosts (or there is no known_hosts file): say how to trust it, with the key it
    offered so the operator can compare it with the switch's console before adding it."""
    name = known_hosts_name(target.host, target.port or 22)
    if known_hosts is None or not known_hosts.is_file():
        where = ("no known_hosts file is configured" if known_hosts is None
                 else f"known_hosts file {known_hosts} does not exist")
        head = f"SSH host key of {name} cannot be verified: {where} (host_key_policy strict)"
    else:
        head = f"SSH host key of {name} is not in known_hosts {known_hosts} (host_key_policy strict)"
    if key is None:
        return HostKeyUnknown(f"{head}; add the switch's key with `{_keyscan(target, known_hosts)}` after checking "
                              "its fingerprint on the switch console", switch=target.name)
    fp = fingerprint(key)
    return HostKeyUnknown(
        f"{head}; the switch offered {key.get_name()} {fp}. If that matches the fingerprint shown on the switch "
        f"console, add it with `{_keyscan(target, known_hosts, key.get_name())}` (or set host_key_policy "
        "accept-new to record it on first use)", switch=target.name, fingerprint=fp)


def changed_key_error(target: Target, known_hosts: Path | None, offered: paramiko.PKey,
                      expected: paramiko.PKey | None) -> HostKeyChanged:
    """The switch offered a key other than the one known_hosts holds: possibly an impostor. Nothing was sent."""
    name = known_hosts_name(target.host, target.port or 22)
    fp = fingerprint(offered)
    known = f"{expected.get_name()} {fingerprint(expected)}" if expected is not None else "a different key"
    return HostKeyChanged(
        f"SSH host key of {name} has CHANGED: the switch offered {offered.get_name()} {fp} but known_hosts "
        f"{known_hosts} has {known}. This may be an impostor (man-in-the-middle) or a replaced or re-keyed switch; "
        "nothing was sent (no password either). Verify the new fingerprint on the switch console, then remove the "
        f"old line (`ssh-keygen -R '{name}' -f {known_hosts}`) and add the new key", switch=target.name,
        fingerprint=fp)


class PolicyForSession(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """What to do with a switch that is not in known_hosts (a known but *different* key never gets here: paramiko
    raises ``BadHostKeyException`` itself, which the driver reports as :class:`HostKeyChanged`)."""

    def __init__(self, policy: HostKeyPolicyName, known_hosts: Path | None) -> None:
        self.policy = policy
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.policy == "insecure-ignore":
            return
        if self.policy == "strict" or self.known_hosts is None:
            raise UnknownHostKey(hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _APPEND_LOCK, self.known_hosts.open("a", encoding="ascii") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def install(conn: Any, policy: PolicyForSession) -> None:
    """Make a netmiko connection (built with ``auto_connect=False``) use ``policy`` and our log channel."""
    build = conn._build_ssh_client

    def build_client() -> paramiko.SSHClient:
        client: paramiko.SSHClient = build()
        client.set_log_channel(TRANSPORT_LOG)
        client.set_missing_host_key_policy(policy)
        return client

    conn._build_ssh_client = build_client


@dataclass(frozen=True, slots=True)
class HostKeyReport:
    """What ``trustport switch check`` says about one switch's host key.

    ``state``: ``known`` (offered key matches known_hosts), ``unknown`` (no entry), ``changed`` (a different key),
    ``no-known-hosts`` (strict/accept-new without an existing file), ``not-checked`` (insecure-ignore), ``listed``
    (known_hosts has an entry; the switch was not contacted to compare it).
    """

    state: Literal["known", "listed", "unknown", "changed", "no-known-hosts", "not-checked"]
    offered: str | None  # "ssh-ed25519 SHA256:..." as offered by the switch (None when it was not contacted)
    expected: str | None  # what known_hosts holds for it
    error: HostKeyError | None  # the error a connection would raise (None when it would be accepted)

    @property
    def ok(self) -> bool:
        return self.error is None


def _known(known_hosts: Path | None, name: str) -> dict[str, paramiko.PKey] | None:
    if known_hosts is None or not known_hosts.is_file():
        return None
    keys = paramiko.HostKeys(str(known_hosts))
    entry = keys.lookup(name)
    return dict(entry) if entry is not None else {}


def offered_key(target: Target, timeout: float, prefer: list[str] | None = None) -> paramiko.PKey:
    """Connect, run the key exchange only (no authentication) and return the switch's host key."""
    port = target.port or 22
    try:
        sock = socket.create_connection((target.host, port), timeout=timeout)
    except OSError as exc:
        raise ConnectError(f"TCP connection to {target.host}:{port} failed ({exc.strerror or type(exc).__name__}); "
                           "check address, port and reachability", switch=target.name) from exc
    transport = paramiko.Transport(sock)
    transport.set_log_channel(TRANSPORT_LOG)
    try:
        if prefer:
            options = transport.get_security_options()
            options.key_types = [*prefer, *(k for k in options.key_types if k not in prefer)]
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise ConnectError(f"SSH handshake with {target.host}:{port} failed ({type(exc).__name__}); is it an SSH "
                           "server?", switch=target.name) from exc
    finally:
        transport.close()


def inspect(target: Target, policy: HostKeyPolicyName, known_hosts: Path | None, timeout: float) -> HostKeyReport:
    """Compare the key ``target`` offers with known_hosts, as a connection with ``policy`` would. Raises
    :class:`ConnectError` when the switch cannot be reached."""
    name = known_hosts_name(target.host, target.port or 22)
    known = _known(known_hosts, name)
    key = offered_key(target, timeout, prefer=list(known)[:1] if known else None)
    offered = f"{key.get_name()} {fingerprint(key)}"
    if policy == "insecure-ignore":
        return HostKeyReport("not-checked", offered, None, None)
    if known is None:
        if policy == "accept-new" and known_hosts is not None and known_hosts.parent.is_dir():
            return HostKeyReport("unknown", offered, None, None)  # recorded on the first connection
        return HostKeyReport("no-known-hosts", offered, None, unknown_key_error(target, known_hosts, key))
    if not known:
        error = None if policy == "accept-new" else unknown_key_error(target, known_hosts, key)
        return HostKeyReport("unknown", offered, None, error)
    expected = known.get(key.get_name()) or next(iter(known.values()))
    expected_text = f"{expected.get_name()} {fingerprint(expected)}"
    if expected == key:
        return HostKeyReport("known", offered, expected_text, None)
    return HostKeyReport("changed", offered, expected_text, changed_key_error(target, known_hosts, key, expected))


def offline(target: Target, policy: HostKeyPolicyName, known_hosts: Path | None) -> HostKeyReport:
    """What known_hosts alone says (the switch is not contacted): whether a connection could be verified at all."""
    if policy == "insecure-ignore":
        return HostKeyReport("not-checked", None, None, None)
    name = known_hosts_name(target.host, target.port or 22)
    known = _known(known_hosts, name)
    if known is None:
        if policy == "accept-new" and known_hosts is not None and known_hosts.parent.is_dir():
            return HostKeyReport("unknown", None, None, None)
        return HostKeyReport("no-known-hosts", None, None, unknown_key_error(target, known_hosts, None))
    if not known:
        return HostKeyReport("unknown", None, None,
                             None if policy == "accept-new" else unknown_key_error(target, known_hosts, None))
    expected = next(iter(known.values()))
    return HostKeyReport("listed", None, f"{expected.get_name()} {fingerprint(expected)}", None)
