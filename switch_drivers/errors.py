"""The one exception tree of the switch driver library.

Every third-party exception (netmiko, paramiko, pysnmp, pyrad, socket) is translated at the driver edge
with ``raise ... from exc``; callers only ever catch :class:`DriverError` or one of its subclasses.
Messages name the switch and the port and say what to do. They never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CoANak",
    "CommandFailed",
    "ConnectError",
    "DriverError",
    "DriverTimeout",
    "HostKeyChanged",
    "HostKeyError",
    "HostKeyUnknown",
    "InterfaceMissing",
    "InvalidArgument",
    "NoAnswer",
    "Unsupported",
    "VerificationFailed",
    "VlanMissing",
]


class DriverError(Exception):
    """Root of every error raised by ``switch_drivers``.

    ``switch`` is the inventory name (or address) of the device, ``port`` the interface the operation
    was about (``None`` when not port-specific).
    """

    def __init__(self, message: str, *, switch: str = "", port: str | None = None) -> None:
        self.switch = switch
        self.port = port
        where = f"{switch}" + (f" port {port}" if port else "")
        super().__init__(f"{where}: {message}" if where else message)

    def annotate(self, extra: str) -> DriverError:
        """Append ``extra`` (e.g. the state left behind) to the message; returns ``self`` for ``raise``."""
        self.args = (f"{self.args[0]} ({extra})", *self.args[1:])
        return self


class ConnectError(DriverError):
    """The device could not be reached (refused, unreachable, protocol failure)."""


class HostKeyError(ConnectError):
    """The SSH host key is unknown or does not match the known_hosts file."""


class HostKeyUnknown(HostKeyError):
    """The switch's SSH host key is not in known_hosts (``fingerprint``: SHA256 of the key it offered, if known)."""

    def __init__(self, message: str, *, switch: str = "", fingerprint: str | None = None) -> None:
        self.fingerprint = fingerprint
        super().__init__(message, switch=switch)


class HostKeyChanged(HostKeyError):
    """The switch offered a different SSH host key than known_hosts holds: possibly an impostor."""

    def __init__(self, message: str, *, switch: str = "", fingerprint: str | None = None) -> None:
        self.fingerprint = fingerprint
        super().__init__(message, switch=switch)


class AuthenticationError(DriverError):
    """The device rejected the credentials (SSH password, enable secret, SNMP USM/community)."""


class DriverTimeout(DriverError):
    """The device did not answer in time (SSH prompt, SNMP response, CoA reply)."""


class NoAnswer(DriverTimeout):
    """The device never answered within its whole retry budget (a silent NAS): for this job the device cannot do
    it, so the caller uses its fallback path instead of retrying the same one."""


class CommandFailed(DriverError):
    """The device refused a command or returned an error status."""


class VlanMissing(CommandFailed):
    """The target VLAN is not defined on the switch (pre-flight); nothing was changed. Permanent."""

    def __init__(self, message: str, *, switch: str = "", port: str | None = None, vlan: int) -> None:
        self.vlan = vlan
        super().__init__(message, switch=switch, port=port)


class InterfaceMissing(CommandFailed):
    """The interface does not exist on the switch; nothing was changed. Permanent."""


class Unsupported(DriverError):
    """The driver cannot do this operation (see its ``capabilities``)."""


class VerificationFailed(DriverError):
    """The read-back after a change does not show the requested state."""

    def __init__(
        self, message: str, *, switch: str = "", port: str | None = None, expected: object, actual: object
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{message} (expected {expected!r}, read back {actual!r})", switch=switch, port=port)


class InvalidArgument(DriverError, ValueError):
    """A caller-supplied value (interface name, VLAN id, session id) is malformed; nothing was sent."""


class CoANak(CommandFailed):
    """The NAS answered CoA-NAK / Disconnect-NAK; ``error_cause`` is the RFC 5176 Error-Cause (or None)."""

    def __init__(self, message: str, *, switch: str = "", port: str | None = None, error_cause: int | None) -> None:
        self.error_cause = error_cause
        super().__init__(message, switch=switch, port=port)
