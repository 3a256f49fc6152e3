"""SSH CLI drivers: one netmiko wrapper for every vendor.

A vendor is data -- :class:`CliVendor`: interface grammar, command templates, error strings and read-back parsers --
in its own module under :mod:`switch_drivers.vendors`. :class:`CliDriver` does everything else once: the session
(host keys checked by :mod:`switch_drivers.hostkeys`, exceptions translated), the single-port operations that read
back what they wrote, the VLAN pre-flight, and the batch (:mod:`switch_drivers.cli_batch`: one push and one read-back
for many ports).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from . import hostkeys
from .base import Capability, DriverBase, PortMove, PortOutcome, PortStatus, Target, VlanChange, check_vlan
from .errors import (
    AuthenticationError,
    CommandFailed,
    ConnectError,
    DriverError,
    DriverTimeout,
    InterfaceMissing,
    InvalidArgument,
    Unsupported,
    VerificationFailed,
)
from .hostkeys import HostKeyPolicyName

__all__ = [
    "CliDriver",
    "CliOptions",
    "CliVendor",
    "HostKeyPolicyName",
    "PortRow",
    "check_interface",
    "connection_params",
    "parse_vlan",
    "render",
    "translate_connect_error",
]

log = logging.getLogger(__name__)


class CliOptions(BaseModel):
    """SSH CLI settings. Timeouts are seconds. ``host_key_policy``:

    * ``strict`` (default): the host key must already be in ``known_hosts``;
    * ``accept-new``: unknown hosts are added to ``known_hosts``, changed keys are still rejected;
    * ``insecure-ignore``: any key is accepted (lab use only).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(min_length=1)
    password: SecretStr
    enable_secret: SecretStr | None = None
    known_hosts: Path | None = None
    host_key_policy: HostKeyPolicyName = "strict"
    conn_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=20.0, gt=0)
    save_config: bool = False
    batch_chunk: int = Field(default=64, ge=1, le=1000)  # configuration lines written before waiting for prompts


@dataclass(frozen=True, slots=True)
class PortRow:
    """One port as a status command reports it; ``vlan`` is None when it is not an access port (``mode`` says
    what it is instead: routed, trunk)."""

    port: str
    vlan: int | None
    admin_up: bool
    oper_up: bool | None = None
    mode: str = "access"


def _as_is(port: str) -> str:
    return port


@dataclass(frozen=True, slots=True)
class CliVendor:
    """One CLI dialect as data. Templates use ``{port}`` and ``{vlan}``; ``()`` means 'not supported by CLI'.

    ``show_port`` (one port) and ``show_ports`` (every port) print the same format, parsed by ``parse_ports`` into
    rows keyed by ``canonical(name)``; ``missing_interface`` is the switch's answer to a command naming an interface
    it does not have."""

    name: str
    device_type: str  # netmiko device_type
    interface_re: re.Pattern[str]
    interface_hint: str  # shown in InvalidArgument messages
    error_pattern: str  # a refused configuration line (re.M)
    missing_interface: str  # re.M
    set_vlan: tuple[str, ...]
    port_down: tuple[str, ...]
    port_up: tuple[str, ...]
    show_vlan: str  # one port's access VLAN
    parse_vlan: Callable[[str], int | None]
    show_vlans: str  # the VLAN table (pre-flight)
    parse_vlans: Callable[[str], frozenset[int] | None]
    show_port: tuple[str, ...]
    show_ports: tuple[str, ...]
    parse_ports: Callable[[Sequence[str]], dict[str, PortRow]]
    canonical: Callable[[str], str] = _as_is
    exists_check: str = ""  # read before show_vlan where the configuration accepts absent interfaces (Junos)
    push_suffix: tuple[str, ...] = ()  # ends every configuration push (AOS-CX: "end")
    block_suffix: tuple[str, ...] = ()  # ends each port's lines in a batch push
    reauth: tuple[str, ...] = ()
    reauth_in_config: bool = False
    needs_commit: bool = False  # Junos candidate configuration
    needs_enable: bool = True
    cmd_verify: bool = True
    leave_config: str = ""  # sent after a refused command when netmiko cannot see the config sub-mode


def check_interface(vendor: CliVendor, port: object, *, switch: str = "") -> str:
    """Return ``port`` if it is a well-formed interface name for ``vendor``; nothing else is ever sent."""
    if not isinstance(port, str) or not vendor.interface_re.fullmatch(port):
        raise InvalidArgument(
            f"interface name {port!r} is not valid for {vendor.name}; use {vendor.interface_hint}",
            switch=switch,
        )
    return port


def render(templates: tuple[str, ...], vendor: CliVendor, port: str, vlan: object = None,
           *, switch: str = "") -> list[str]:
    """Fill ``{port}``/``{vlan}`` into command templates after validating both."""
    port = check_interface(vendor, port, switch=switch)
    values: dict[str, Any] = {"port": port}
    if any("{vlan}" in t for t in templates):
        values["vlan"] = check_vlan(vlan, switch=switch, port=port)
    return [t.format(**values) for t in templates]


def parse_vlan(vendor: CliVendor, raw: str, *, switch: str = "", port: str | None = None) -> int:
    """Extract the access VLAN from the vendor's ``show_vlan`` output or raise :class:`CommandFailed`."""
    vlan = vendor.parse_vlan(raw)
    if vlan is None:
        snippet = " ".join(raw.split())[:160]
        raise CommandFailed(
            f"could not read the access VLAN from {vendor.show_vlan.format(port=port)!r} output "
            f"(is it an access port? output: {snippet!r})",
            switch=switch,
            port=port,
        )
    return vlan


def connection_params(vendor: CliVendor, target: Target, options: CliOptions) -> dict[str, Any]:
    """netmiko ``ConnectHandler`` keyword arguments. The result holds secrets: never log it."""
    params: dict[str, Any] = {
        "device_type": vendor.device_type,
        "host": target.host,
        "port": target.port or 22,
        "username": options.username,
        "password": options.password.get_secret_value(),
        "conn_timeout": options.conn_timeout,
        "auth_timeout": options.conn_timeout,
        "banner_timeout": options.conn_timeout,
        "read_timeout_override": None,
        "fast_cli": True,
        "use_keys": False,
        "allow_agent": False,
        "system_host_keys": False,
        "ssh_config_file": None,
    }
    if options.enable_secret is not None:
        params["secret"] = options.enable_secret.get_secret_value()
    known = options.known_hosts
    if options.host_key_policy == "strict" and (known is None or not known.is_file()):
        raise hostkeys.unknown_key_error(target, known, None)
    if options.host_key_policy == "accept-new" and (known is None or not known.parent.is_dir()):
        raise hostkeys.unknown_key_error(target, known, None)
    if options.host_key_policy != "insecure-ignore":
        params.update(alt_host_keys=True, alt_key_file=str(known))
    # the policy for a host missing from known_hosts is hostkeys.PolicyForSession (installed by CliDriver._open);
    # a known host offering another key raises BadHostKeyException in paramiko whatever the policy
    params["ssh_strict"] = options.host_key_policy == "strict"
    return params


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def translate_connect_error(exc: BaseException, target: Target, known_hosts: Path | None = None) -> DriverError:
    """Map a netmiko/paramiko/socket exception raised while connecting to the driver tree."""
    import paramiko  # type: ignore[import-untyped]
    from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException

    switch = target.name
    for link in _chain(exc):
        if isinstance(link, DriverError):
            return link
        if isinstance(link, hostkeys.UnknownHostKey):
            return hostkeys.unknown_key_error(target, known_hosts, link.key)
        if isinstance(link, paramiko.BadHostKeyException):
            return hostkeys.changed_key_error(target, known_hosts, link.key, link.expected_key)
    if isinstance(exc, NetmikoAuthenticationException):
        return AuthenticationError("SSH login rejected; check the username and password reference", switch=switch)
    if isinstance(exc, ValueError) and "enable" in str(exc).lower():
        return AuthenticationError("enable secret rejected; check enable_secret", switch=switch)
    if isinstance(exc, NetmikoTimeoutException | OSError | EOFError | paramiko.SSHException):
        causes = [type(link).__name__ for link in _chain(exc)]
        return ConnectError(f"SSH connection failed ({causes[-1]}); check address, port and reachability",
                            switch=switch)
    return ConnectError(f"SSH session setup failed ({type(exc).__name__})", switch=switch)


def _error_line(text: str) -> str:
    for line in text.splitlines():
        if "matched error:" in line:
            head, _, err = line.partition("matched error:")
            command = head.partition("at command:")[2].strip().rstrip(",")
            return f"{command!r} -> {err.strip()!r}" if command else err.strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() != "^"]
    return lines[-1][:200] if lines else text[:200]


def _commit_error(text: str) -> str:
    errors = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("error:")]
    return "commit failed: " + ("; ".join(errors) if errors else _error_line(text))


class CliDriver(DriverBase):
    """The netmiko driver; a vendor module binds ``vendor`` (its data), ``options_type`` and ``name``."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    vendor: ClassVar[CliVendor]
    options_type: ClassVar[type[CliOptions]] = CliOptions
    capabilities: ClassVar[Capability] = (
        Capability.GET_VLAN | Capability.SET_VLAN | Capability.BOUNCE_PORT | Capability.SAVE_CONFIG
        | Capability.VLAN_TABLE | Capability.PORT_STATUS | Capability.BATCH
    )

    def __init__(self, target: Target, options: CliOptions) -> None:
        super().__init__(target)
        self.options = options
        self._conn: Any = None
        self._dropped = ""  # why the last session was dropped (for the next call's error)
        self._reread_for: set[int] = set()  # VLANs the table was re-read for in this session

    # -- session ---------------------------------------------------------------------------------------
    def _open(self) -> None:
        from netmiko import ConnectHandler

        params = connection_params(self.vendor, self._target, self.options)
        policy = hostkeys.PolicyForSession(self.options.host_key_policy, self.options.known_hosts)
        self._dropped = ""
        self._reread_for = set()
        try:
            conn = ConnectHandler(**params, auto_connect=False)
            hostkeys.install(conn, policy)
            self._conn = conn
            conn._open()
            if self.vendor.needs_enable and not conn.check_enable_mode():
                conn.enable()
        except Exception as exc:
            self._abort("the connection failed")
            raise translate_connect_error(exc, self._target, self.options.known_hosts) from exc
        log.debug("connected to %s (%s)", self._target.name, self.name)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()

    def _abort(self, why: str) -> None:
        """Drop a broken session without the polite logout (which would wait on a dead channel)."""
        conn, self._conn = self._conn, None
        self._dropped = why
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.paramiko_cleanup()
            with contextlib.suppress(Exception):  # disconnect() would remove netmiko's secrets filter; do it here
                logging.getLogger("netmiko").removeFilter(conn._secrets_filter)

    def _session(self) -> Any:
        if self._conn is None:
            why = f" ({self._dropped})" if self._dropped else ""
            raise ConnectError(f"no SSH session{why}; open the driver again (use it as a context manager)",
                               switch=self._target.name)
        return self._conn

    @contextlib.contextmanager
    def _io(self, port: str | None, action: str,
            passthrough: tuple[type[Exception], ...] = ()) -> Iterator[None]:
        """Translate netmiko/paramiko exceptions raised during an operation; a session that timed out or broke is
        dropped, never reused (its channel is out of sync). ``passthrough`` exceptions are the caller's to handle."""
        from netmiko.exceptions import ConfigInvalidException, ReadTimeout

        reraise: tuple[type[Exception], ...] = (DriverError, *passthrough)
        try:
            yield
        except reraise:
            raise
        except ConfigInvalidException as exc:
            raise CommandFailed(f"{action} refused by the switch: {_error_line(str(exc))}",
                                switch=self._target.name, port=port) from exc
        except ReadTimeout as exc:
            self._abort(f"{action} timed out")
            raise DriverTimeout(f"{action}: no prompt within {self.options.read_timeout:g}s; the session was "
                                "closed, check the switch and retry", switch=self._target.name, port=port) from exc
        except Exception as exc:
            self._abort(f"{action} lost the session")
            raise ConnectError(f"{action}: SSH session lost ({type(exc).__name__}); the session was closed",
                               switch=self._target.name, port=port) from exc

    def _check_port(self, port: str) -> str:
        return check_interface(self.vendor, port, switch=self._target.name)

    def _show(self, command: str, port: str | None) -> str:
        conn = self._session()
        with self._io(port, f"{command!r}"):
            text = str(conn.send_command(command, read_timeout=self.options.read_timeout))
        if port is not None and re.search(self.vendor.missing_interface, text, re.M):
            raise InterfaceMissing(f"interface does not exist on this switch ({command!r} answered "
                                   f"{_error_line(text)!r}); check the port name", switch=self._target.name,
                                   port=port)
        if re.search(self.vendor.error_pattern, text, re.M):
            raise CommandFailed(f"{command!r} failed: {_error_line(text)}", switch=self._target.name, port=port)
        return text

    def _push(self, commands: list[str], port: str | None, action: str) -> str:
        conn = self._session()
        with self._io(port, action):
            output = conn.send_config_set(
                [*commands, *self.vendor.push_suffix],
                error_pattern=self.vendor.error_pattern,
                read_timeout=self.options.read_timeout,
                cmd_verify=self.vendor.cmd_verify,
                exit_config_mode=not self.vendor.needs_commit,
            )
            return str(output)

    def _recover_after_failure(self) -> None:
        """Leave configuration mode after a refused command so the session stays usable."""
        conn = self._conn
        if conn is None:
            return
        try:
            if self.vendor.leave_config:
                conn.send_command(self.vendor.leave_config, expect_string=r"#\s*$",
                                  read_timeout=self.options.read_timeout)
            if conn.check_config_mode():
                conn.exit_config_mode()
        except Exception:
            self._abort("leaving configuration mode failed")

    def _commit(self, action: str, port: str | None) -> None:
        """Junos: commit the candidate; a failed commit is rolled back (``rollback 0``) and reported."""
        conn = self._session()
        timeout = float(getattr(self.options, "commit_timeout", self.options.read_timeout))
        try:
            with self._io(port, f"{action} (commit)", passthrough=(ValueError,)):  # netmiko: commit refused
                conn.commit(and_quit=True, read_timeout=timeout)
        except ValueError as exc:
            raise self._rolled_back(action, _commit_error(str(exc)), port) from exc

    def _rolled_back(self, action: str, detail: str, port: str | None) -> CommandFailed:
        rolled = self._rollback()
        return CommandFailed(
            f"{action}: {detail}; candidate configuration "
            + ("rolled back (rollback 0), nothing was committed" if rolled else "could NOT be rolled back"),
            switch=self._target.name, port=port)

    def _rollback(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.send_command("rollback 0", expect_string=r"#\s*$", read_timeout=self.options.read_timeout)
            conn.exit_config_mode()
            return True
        except Exception:
            self._abort("rollback failed")
            return False

    def _apply(self, commands: list[str], port: str, action: str) -> None:
        """One configuration change of one port, committed where the vendor needs it."""
        try:
            self._push(commands, port, action)
        except CommandFailed as exc:
            if self.vendor.needs_commit:
                raise self._rolled_back(action, _error_line(str(exc)), port) from exc
            self._recover_after_failure()
            raise
        if self.vendor.needs_commit:
            self._commit(action, port)

    # -- reads -----------------------------------------------------------------------------------------
    def _read_vlans(self) -> frozenset[int]:
        raw = self._show(self.vendor.show_vlans, None)
        table = self.vendor.parse_vlans(raw)
        if not table:
            snippet = " ".join(raw.split())[:160]
            raise CommandFailed(f"could not read the VLAN table from {self.vendor.show_vlans!r} (output: "
                                f"{snippet!r})", switch=self._target.name)
        return table

    def check_vlan_exists(self, vlan: int, port: str | None = None) -> None:
        """The cached table is re-read once (per VLAN and session) before a VLAN is declared missing: a VLAN created
        on the switch after this session read the table is found; nothing is ever created by the driver."""
        if self._vlans is not None and vlan not in self._vlans and vlan not in self._reread_for:
            self._reread_for.add(vlan)
            self._vlans = None
        super().check_vlan_exists(vlan, port)

    def _rows(self, commands: Sequence[str], port: str | None) -> dict[str, PortRow]:
        outputs = [self._show(c.format(port=port) if port else c, port) for c in commands]
        rows = self.vendor.parse_ports(outputs)
        if not rows:
            snippet = " ".join(" ".join(outputs).split())[:160]
            raise CommandFailed(f"could not read the port state from {list(commands)!r} (output: {snippet!r})",
                                switch=self._target.name, port=port)
        return rows

    def port_status(self, port: str) -> PortStatus:
        port = self._check_port(port)
        row = self._rows(self.vendor.show_port, port).get(self.vendor.canonical(port))
        if row is None:
            raise InterfaceMissing("interface is not in the switch's port status; check the port name",
                                   switch=self._target.name, port=port)
        if row.vlan is None:
            raise CommandFailed(f"is a {row.mode} port, not an access port; trustport only changes access ports "
                                "(nothing was changed)", switch=self._target.name, port=port)
        return PortStatus(port=port, vlan=row.vlan, admin_up=row.admin_up, oper_up=row.oper_up)

    def read_all_ports(self) -> dict[str, PortRow]:
        """Every port's state in the fewest commands (the batch's one read before and one read-back)."""
        return self._rows(self.vendor.show_ports, None)

    def get_port_vlan(self, port: str) -> int:
        port = self._check_port(port)
        if self.vendor.exists_check:  # its configuration accepts absent interfaces: ask the hardware first
            self._show(self.vendor.exists_check.format(port=port), port)
        raw = self._show(self.vendor.show_vlan.format(port=port), port)
        return parse_vlan(self.vendor, raw, switch=self._target.name, port=port)

    # -- changes ---------------------------------------------------------------------------------------
    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        commands = render(self._set_templates(), self.vendor, port, vlan, switch=self._target.name)
        self.check_vlan_exists(vlan, port)
        before = self.get_port_vlan(port)
        try:
            self._apply(commands, port, f"set access VLAN {vlan}")
        except DriverError as exc:
            exc.annotate(self._state_note(port))
            raise
        after = self.get_port_vlan(port)
        if after != vlan:
            raise VerificationFailed(f"access VLAN change to {vlan} did not take effect",
                                     switch=self._target.name, port=port, expected=vlan, actual=after)
        if self.options.save_config:
            self.save_config()
        return VlanChange(switch=self._target.name, port=port, before=before, after=after)

    def bounce_port(self, port: str) -> None:
        down = render(self.vendor.port_down, self.vendor, port, switch=self._target.name)
        up = render(self.vendor.port_up, self.vendor, port, switch=self._target.name)
        before = self.port_status(port)  # it exists (Junos would accept configuration for an absent interface)
        self._apply(down, port, "shut down port")
        try:
            self._apply(up, port, "re-enable port")
        except DriverError as exc:
            exc.annotate("the port was shut down and may still be DOWN; run ensure_port_up or re-enable it by hand")
            raise
        try:
            self.verify_up(port, before.vlan)
        except VerificationFailed as exc:
            exc.annotate("the switch accepted the re-enable but the port is not up; check it by hand")
            raise

    def ensure_port_up(self, port: str) -> bool:
        status = self.port_status(port)
        if status.admin_up:
            return False
        self._apply(render(self.vendor.port_up, self.vendor, port, switch=self._target.name), port, "re-enable port")
        self.verify_up(port, status.vlan)
        return True

    def reauthenticate(self, port: str) -> None:
        if not self.vendor.reauth:
            raise Unsupported(f"{self.name} has no CLI re-authentication command; use the coa driver",
                              switch=self._target.name, port=port)
        commands = render(self.vendor.reauth, self.vendor, port, switch=self._target.name)
        if self.vendor.reauth_in_config:
            self._apply(commands, port, "re-authenticate port")
            return
        for command in commands:
            self._show(command, port)

    def save_config(self) -> None:
        if self.vendor.needs_commit:
            return  # Junos: commit already persisted the change
        conn = self._session()
        with self._io(None, "save configuration"):
            conn.save_config()

    def move_ports(self, moves: Sequence[PortMove]) -> list[PortOutcome]:
        """Pre-flight every port (name, VLAN table, one read of all ports), ONE configuration push (Junos: one
        commit; bounces need a second), ONE read-back; a port that fails gets its own error."""
        from .cli_batch import run_batch

        return run_batch(self, moves)

    # -- helpers for subclasses and the batch ----------------------------------------------------------
    def _set_templates(self) -> tuple[str, ...]:
        return self.vendor.set_vlan

    def _state_note(self, port: str) -> str:
        """Re-read the port after a failed change so the error reports the state actually left behind."""
        if self._conn is None:
            return "port state unknown: the session was closed; check it by hand"
        try:
            return f"port is now in VLAN {self.get_port_vlan(port)}"
        except DriverError:
            return "port state could not be read back; check it by hand"

    def push_lines(self, lines: Sequence[str], action: str) -> list[str]:
        """Send ``lines`` in configuration mode without waiting for each echo: ``batch_chunk`` lines are written,
        then their prompts are awaited. Returns each line's answer (what the switch printed after the echo)."""
        conn = self._session()
        prompt = re.compile(re.escape(conn.base_prompt) + r"[^\n]*?[#>]")
        answers: list[str] = []
        chunk = self.options.batch_chunk
        with self._io(None, action):
            conn.config_mode()
            for start in range(0, len(lines), chunk):
                part = lines[start:start + chunk]
                conn.write_channel("".join(conn.normalize_cmd(line) for line in part))
                text = self._await_prompts(conn, prompt, len(part), action)
                pieces = prompt.split(text)[: len(part)]
                answers += [piece.partition("\n")[2] for piece in pieces]
            if not self.vendor.needs_commit:
                conn.exit_config_mode()
        return answers

    def _await_prompts(self, conn: Any, prompt: re.Pattern[str], count: int, action: str) -> str:
        deadline = time.monotonic() + self.options.read_timeout
        text = ""
        while True:
            text += str(conn.read_channel())
            if len(prompt.findall(text)) >= count:
                return text
            if time.monotonic() > deadline:
                self._abort(f"{action} timed out")
                raise DriverTimeout(f"{action}: the switch stopped answering (no prompt within "
                                    f"{self.options.read_timeout:g}s); the session was closed, check the switch "
                                    "and retry", switch=self._target.name)
            time.sleep(0.005)

    def line_failed(self, answer: str) -> str | None:
        """The vendor's error text in a line's answer, or None."""
        if re.search(self.vendor.error_pattern, answer, re.M):
            return _error_line(answer)
        return None


_MOVED = {  # these lived here before each vendor got its own module; still importable from switch_drivers.cli
    "AristaEosDriver": "arista_eos", "AristaEosOptions": "arista_eos", "ArubaAosCxDriver": "aruba_aoscx",
    "ArubaAosCxOptions": "aruba_aoscx", "CiscoIosDriver": "cisco_ios", "CiscoIosOptions": "cisco_ios",
    "HpProcurveDriver": "hp_procurve", "HpProcurveOptions": "hp_procurve", "JuniperJunosDriver": "juniper_junos",
    "JuniperJunosOptions": "juniper_junos",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"switch_drivers.vendors.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
