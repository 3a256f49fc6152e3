"""SSH CLI drivers: a thin netmiko wrapper around the pure vendor tables in :mod:`switch_drivers.vendors`."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .base import Capability, Target, VlanChange
from .errors import (
    AuthenticationError,
    CommandFailed,
    ConnectError,
    DriverError,
    DriverTimeout,
    HostKeyError,
    Unsupported,
    VerificationFailed,
)
from .vendors import VENDORS, CliVendor, check_interface, parse_vlan, render

__all__ = [
    "AristaEosDriver",
    "AristaEosOptions",
    "ArubaAosCxDriver",
    "ArubaAosCxOptions",
    "CiscoIosDriver",
    "CiscoIosOptions",
    "CliDriver",
    "CliOptions",
    "HpProcurveDriver",
    "HpProcurveOptions",
    "JuniperJunosDriver",
    "JuniperJunosOptions",
    "connection_params",
]

log = logging.getLogger(__name__)

HostKeyPolicy = Literal["strict", "accept-new", "insecure-ignore"]


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
    host_key_policy: HostKeyPolicy = "strict"
    conn_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=20.0, gt=0)
    save_config: bool = False


class CiscoIosOptions(CliOptions):
    """Cisco IOS / IOS-XE."""


class AristaEosOptions(CliOptions):
    """Arista EOS."""


class ArubaAosCxOptions(CliOptions):
    """Aruba AOS-CX 10.x."""


class HpProcurveOptions(CliOptions):
    """HPE ProCurve / ArubaOS-Switch."""


class JuniperJunosOptions(CliOptions):
    """Junos. ``els=False`` uses ``port-mode`` for pre-ELS EX switches."""

    els: bool = True
    commit_timeout: float = Field(default=60.0, gt=0)


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
    if options.host_key_policy != "insecure-ignore":
        if options.known_hosts is None or not options.known_hosts.is_file():
            raise HostKeyError(
                f"known_hosts file {options.known_hosts} does not exist; create it with the switch's host "
                "key (ssh-keyscan) or set host_key_policy",
                switch=target.name,
            )
        params.update(alt_host_keys=True, alt_key_file=str(options.known_hosts))
    # strict -> paramiko RejectPolicy; accept-new -> AutoAddPolicy saving into the loaded known_hosts file
    # (a *changed* key still raises BadHostKeyException); insecure-ignore -> AutoAddPolicy, nothing loaded.
    params["ssh_strict"] = options.host_key_policy == "strict"
    return params


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        nxt = exc.__cause__ or exc.__context__
        assert nxt is not None
        exc = nxt
    return exc


def translate_connect_error(exc: BaseException, switch: str) -> DriverError:
    """Map a netmiko/paramiko/socket exception raised while connecting to the driver tree."""
    from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException

    text = str(exc)
    if isinstance(exc, NetmikoAuthenticationException):
        return AuthenticationError("SSH login rejected; check the username and password reference", switch=switch)
    if "known_hosts" in text or "Host key for server" in text or "does not match" in text:
        return HostKeyError(
            "SSH host key is unknown or has changed; verify the switch and update known_hosts", switch=switch
        )
    if isinstance(exc, NetmikoTimeoutException | OSError | EOFError):
        cause = type(_root_cause(exc)).__name__
        return ConnectError(f"SSH connection failed ({cause}); check address, port and reachability",
                            switch=switch)
    if isinstance(exc, ValueError) and "enable" in text:
        return AuthenticationError("enable secret rejected; check enable_secret", switch=switch)
    return ConnectError(f"SSH session setup failed ({type(exc).__name__})", switch=switch)


class CliDriver:
    """Generic netmiko driver; subclasses only bind a vendor table and an options class."""

    name: ClassVar[str]
    vendor: ClassVar[CliVendor]
    options_type: ClassVar[type[CliOptions]] = CliOptions
    capabilities: ClassVar[Capability] = (
        Capability.GET_VLAN | Capability.SET_VLAN | Capability.BOUNCE_PORT | Capability.SAVE_CONFIG
    )

    def __init__(self, target: Target, options: CliOptions) -> None:
        self._target = target
        self.options = options
        self._conn: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target.name!r}, {self._target.host!r})"

    @property
    def target(self) -> Target:
        return self._target

    # -- session ---------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        from netmiko import ConnectHandler

        params = connection_params(self.vendor, self._target, self.options)
        try:
            self._conn = ConnectHandler(**params)
            if self.vendor.needs_enable and not self._conn.check_enable_mode():
                self._conn.enable()
        except Exception as exc:
            self._close()
            raise translate_connect_error(exc, self._target.name) from exc
        log.debug("connected to %s (%s)", self._target.name, self.name)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()

    def _abort(self) -> None:
        """Drop a broken session without the polite logout (which would wait on a dead channel)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.paramiko_cleanup()

    def _session(self) -> Any:
        if self._conn is None:
            raise ConnectError("not connected; use the driver as a context manager", switch=self._target.name)
        return self._conn

    @contextlib.contextmanager
    def _io(self, port: str | None, action: str) -> Iterator[None]:
        """Translate netmiko exceptions raised during an operation."""
        from netmiko.exceptions import ConfigInvalidException, ReadTimeout

        try:
            yield
        except DriverError:
            raise
        except ConfigInvalidException as exc:
            raise CommandFailed(f"{action} refused by the switch: {_error_line(str(exc))}",
                                switch=self._target.name, port=port) from exc
        except ReadTimeout as exc:
            self._abort()
            raise DriverTimeout(f"{action}: no prompt within {self.options.read_timeout:g}s; the session was "
                                "closed, check the switch and retry", switch=self._target.name, port=port) from exc
        except (OSError, EOFError) as exc:
            raise ConnectError(f"{action}: SSH session lost ({type(exc).__name__})",
                               switch=self._target.name, port=port) from exc

    def _check_port(self, port: str) -> str:
        return check_interface(self.vendor, port, switch=self._target.name)

    def _show(self, command: str, port: str) -> str:
        conn = self._session()
        with self._io(port, f"{command!r}"):
            try:
                out = conn.send_command(command, read_timeout=self.options.read_timeout)
            except Exception:
                self._abort()  # an unanswered command leaves the channel out of sync
                raise
        text = str(out)
        if re.search(self.vendor.error_pattern, text, re.M):
            raise CommandFailed(f"{command!r} failed: {_error_line(text)}", switch=self._target.name, port=port)
        return text

    def _push(self, commands: list[str], port: str, action: str) -> str:
        conn = self._session()
        with self._io(port, action):
            output = conn.send_config_set(
                commands,
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
            self._abort()

    # -- operations ------------------------------------------------------------------------------------
    def get_port_vlan(self, port: str) -> int:
        port = self._check_port(port)
        raw = self._show(self.vendor.show_vlan.format(port=port), port)
        return parse_vlan(self.vendor, raw, switch=self._target.name, port=port)

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        commands = render(self._set_templates(), self.vendor, port, vlan, switch=self._target.name)
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
        self._apply(down, port, "shut down port")
        try:
            self._apply(up, port, "re-enable port")
        except DriverError as exc:
            exc.annotate("the port was shut down and may still be DOWN; re-enable it by hand")
            raise

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

    # -- helpers for subclasses ------------------------------------------------------------------------
    def _set_templates(self) -> tuple[str, ...]:
        return self.vendor.set_vlan

    def _apply(self, commands: list[str], port: str, action: str) -> None:
        try:
            self._push(commands, port, action)
        except CommandFailed:
            self._recover_after_failure()
            raise

    def _state_note(self, port: str) -> str:
        """Re-read the port after a failed change so the error reports the state actually left behind."""
        if self._conn is None:
            return "port state unknown: the session was closed; check it by hand"
        try:
            return f"port is now in VLAN {self.get_port_vlan(port)}"
        except DriverError:
            return "port state could not be read back; check it by hand"


def _error_line(text: str) -> str:
    for line in text.splitlines():
        if "matched error:" in line:
            head, _, err = line.partition("matched error:")
            command = head.partition("at command:")[2].strip().rstrip(",")
            return f"{command!r} -> {err.strip()!r}" if command else err.strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() != "^"]
    return lines[-1][:200] if lines else text[:200]


class CiscoIosDriver(CliDriver):
    name = "cisco_ios"
    vendor = VENDORS["cisco_ios"]
    options_type = CiscoIosOptions
    capabilities = CliDriver.capabilities | Capability.REAUTHENTICATE


class AristaEosDriver(CliDriver):
    name = "arista_eos"
    vendor = VENDORS["arista_eos"]
    options_type = AristaEosOptions


class ArubaAosCxDriver(CliDriver):
    name = "aruba_aoscx"
    vendor = VENDORS["aruba_aoscx"]
    options_type = ArubaAosCxOptions


class HpProcurveDriver(CliDriver):
    name = "hp_procurve"
    vendor = VENDORS["hp_procurve"]
    options_type = HpProcurveOptions
    capabilities = CliDriver.capabilities | Capability.REAUTHENTICATE


class JuniperJunosDriver(CliDriver):
    """Junos: changes go to the candidate, then ``commit``; a failed commit is rolled back (``rollback 0``)."""

    name = "juniper_junos"
    vendor = VENDORS["juniper_junos"]
    options_type = JuniperJunosOptions
    capabilities = CliDriver.capabilities | Capability.REAUTHENTICATE

    def _set_templates(self) -> tuple[str, ...]:
        opts = self.options
        if isinstance(opts, JuniperJunosOptions) and not opts.els:
            return tuple(t.replace("interface-mode", "port-mode") for t in self.vendor.set_vlan)
        return self.vendor.set_vlan

    def _apply(self, commands: list[str], port: str, action: str) -> None:
        conn = self._session()
        try:
            self._push(commands, port, action)
            with self._io(port, f"{action} (commit)"):
                timeout = getattr(self.options, "commit_timeout", 60.0)
                conn.commit(and_quit=True, read_timeout=timeout)
        except (CommandFailed, ValueError) as exc:
            rolled = self._rollback()
            detail = _error_line(str(exc)) if isinstance(exc, CommandFailed) else _commit_error(str(exc))
            raise CommandFailed(
                f"{action}: {detail}; candidate configuration "
                + ("rolled back (rollback 0), nothing was committed" if rolled else "could NOT be rolled back"),
                switch=self._target.name, port=port,
            ) from exc

    def _rollback(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.send_command("rollback 0", expect_string=r"#\s*$", read_timeout=self.options.read_timeout)
            conn.exit_config_mode()
            return True
        except Exception:
            self._close()
            return False


def _commit_error(text: str) -> str:
    errors = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("error:")]
    return "commit failed: " + ("; ".join(errors) if errors else _error_line(text))


DRIVERS: tuple[type[CliDriver], ...] = (
    CiscoIosDriver, AristaEosDriver, ArubaAosCxDriver, HpProcurveDriver, JuniperJunosDriver,
)
