"""RADIUS Change-of-Authorization driver (RFC 5176) built on pyrad.

``port`` arguments are *session selectors*: a MAC address (-> Calling-Station-Id) or ``key=value`` pairs
separated by commas, keys ``calling-station-id``, ``acct-session-id``, ``nas-port-id``, ``user-name``,
``audit-session-id`` (Cisco only). CoA cannot read a VLAN back: the NAS's CoA-ACK is the verification.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .base import Capability, Target, VlanChange
from .errors import CoANak, ConnectError, DriverTimeout, InvalidArgument, Unsupported

__all__ = ["ERROR_CAUSES", "VENDOR_COMMANDS", "CoaDriver", "CoaOptions", "dictionary_path", "parse_session"]

log = logging.getLogger(__name__)

CoaVendor = Literal["ietf", "cisco", "hp", "aruba", "arista", "juniper"]

ERROR_CAUSES: dict[int, str] = {
    201: "Residual-Context-Removed", 202: "Invalid-EAP-Packet", 401: "Unsupported-Attribute",
    402: "Missing-Attribute", 403: "NAS-Identification-Mismatch", 404: "Invalid-Request",
    405: "Unsupported-Service", 406: "Unsupported-Extension", 407: "Invalid-Attribute-Value",
    501: "Administratively-Prohibited", 502: "Request-Not-Routable", 503: "Session-Context-Not-Found",
    504: "Session-Context-Not-Removable", 505: "Other-Proxy-Processing-Error", 506: "Resources-Unavailable",
    507: "Request-Initiated", 508: "Multiple-Session-Selection-Unsupported",
}

# Vendor CoA commands: action -> attributes. "{seconds}" is the bounce hold time. A missing "reauth" entry
# means the vendor re-authenticates on a Disconnect-Request (PacketFence does the same for HP/Aruba).
VENDOR_COMMANDS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "cisco": {
        "reauth": (("Cisco-AVPair", "subscriber:command=reauthenticate"),
                   ("Cisco-AVPair", "subscriber:reauthenticate-type=last")),
        "bounce": (("Cisco-AVPair", "subscriber:command=bounce-host-port"),),
    },
    "hp": {"bounce": (("HP-Port-Bounce-Host", "{seconds}"),)},
    "aruba": {"bounce": (("Aruba-Port-Bounce-Host", "{seconds}"),)},
    "arista": {"bounce": (("Arista-PortFlap", "{seconds}"),)},
    "juniper": {"bounce": (("Juniper-AV-Pair", "Port-Bounce"),)},
    "ietf": {},
}

_SELECTOR_KEYS = {
    "calling-station-id": "Calling-Station-Id",
    "acct-session-id": "Acct-Session-Id",
    "nas-port-id": "NAS-Port-Id",
    "user-name": "User-Name",
    "audit-session-id": "audit-session-id",
}
_MAC_RE = re.compile(r"(?i)(?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2}|(?:[0-9a-f]{4}\.){2}[0-9a-f]{4}|[0-9a-f]{12}")
_VALUE_RE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,251}[\x21-\x7e])?")


def dictionary_path() -> str:
    """Path of the shipped pyrad dictionary (RFC 2865/5176 attributes + Cisco/HP/Aruba/Arista/Juniper VSAs)."""
    return str(resources.files("switch_drivers") / "data" / "dictionary")


def normalize_mac(mac: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` / ``aabb.ccdd.eeff`` -> ``AA-BB-CC-DD-EE-FF`` (RFC 3580 Calling-Station-Id)."""
    digits = re.sub(r"[^0-9A-Fa-f]", "", mac).upper()
    return "-".join(digits[i:i + 2] for i in range(0, 12, 2))


def parse_session(selector: str, *, switch: str = "") -> list[tuple[str, str]]:
    """Turn a session selector into RADIUS attributes; raise :class:`InvalidArgument` if malformed."""
    if not isinstance(selector, str) or not selector.strip():
        raise InvalidArgument("empty session selector; give a MAC or key=value pairs", switch=switch)
    if _MAC_RE.fullmatch(selector):
        return [("Calling-Station-Id", normalize_mac(selector))]
    attrs: list[tuple[str, str]] = []
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _SELECTOR_KEYS:
            raise InvalidArgument(
                f"bad session selector part {part!r}; use a MAC or {', '.join(_SELECTOR_KEYS)}=VALUE",
                switch=switch)
        if not _VALUE_RE.fullmatch(value):
            raise InvalidArgument(f"session selector value for {key} must be 1-253 printable ASCII characters",
                                  switch=switch)
        if key == "calling-station-id" and _MAC_RE.fullmatch(value):
            value = normalize_mac(value)
        if key == "audit-session-id":
            attrs.append(("Cisco-AVPair", f"audit-session-id={value}"))
        else:
            attrs.append((_SELECTOR_KEYS[key], value))
    return attrs


class CoaOptions(BaseModel):
    """Per-NAS CoA settings. Cisco IOS listens on 1700 unless ``port 3799`` is configured; RFC 5176 is 3799.

    ``retries`` is the total number of transmissions; ``timeout`` is per transmission (seconds).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: SecretStr
    vendor: CoaVendor = "ietf"
    timeout: float = Field(default=2.0, gt=0)
    retries: int = Field(default=3, ge=1, le=10)
    nas_ip_address: str | None = None
    bounce_seconds: int = Field(default=12, ge=1, le=60)


class CoaDriver:
    """CoA-Request / Disconnect-Request sender. ``target.port`` is the NAS CoA port (default 3799)."""

    name: ClassVar[str] = "coa"
    options_type: ClassVar[type[CoaOptions]] = CoaOptions
    capabilities: ClassVar[Capability] = Capability.BOUNCE_PORT | Capability.REAUTHENTICATE | Capability.DISCONNECT

    def __init__(self, target: Target, options: CoaOptions) -> None:
        self._target = target
        self.options = options
        self._client: Any = None

    def __repr__(self) -> str:
        return f"CoaDriver({self._target.name!r}, {self._target.host!r})"

    @property
    def target(self) -> Target:
        return self._target

    def __enter__(self) -> Self:
        from pyrad import client, dictionary

        self._client = client.Client(
            server=self._target.host,
            coaport=self._target.port or 3799,
            secret=self.options.secret.get_secret_value().encode(),
            dict=dictionary.Dictionary(dictionary_path()),
            retries=self.options.retries,
            timeout=self.options.timeout,
        )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        client, self._client = self._client, None
        if client is not None:
            client._CloseSocket()

    # -- intent operations -----------------------------------------------------------------------------
    def get_port_vlan(self, port: str) -> int:
        raise Unsupported("CoA cannot read a port VLAN; use a CLI or SNMP driver", switch=self._target.name,
                          port=port)

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        raise Unsupported("CoA does not set VLANs directly: return the VLAN in the Access-Accept and send "
                          "reauthenticate", switch=self._target.name, port=port)

    def reauthenticate(self, port: str) -> None:
        commands = VENDOR_COMMANDS[self.options.vendor]
        if "reauth" in commands:
            self._send("CoA-Request", port, commands["reauth"])
        else:
            self._send("Disconnect-Request", port, ())

    def bounce_port(self, port: str) -> None:
        commands = VENDOR_COMMANDS[self.options.vendor]
        if "bounce" not in commands:
            raise Unsupported(f"no CoA port-bounce attribute for vendor {self.options.vendor!r}",
                              switch=self._target.name, port=port)
        self._send("CoA-Request", port, commands["bounce"])

    def disconnect(self, port: str) -> None:
        self._send("Disconnect-Request", port, ())

    # -- wire ------------------------------------------------------------------------------------------
    def build_attributes(self, selector: str, extra: tuple[tuple[str, str], ...]) -> list[tuple[str, str | int]]:
        """The attribute list of a request (pure; used by tests and the CLI's --dry-run)."""
        attrs: list[tuple[str, str | int]] = []
        if self.options.nas_ip_address:
            attrs.append(("NAS-IP-Address", self.options.nas_ip_address))
        attrs.extend(parse_session(selector, switch=self._target.name))
        for name, value in extra:
            rendered = value.format(seconds=self.options.bounce_seconds)
            attrs.append((name, int(rendered) if rendered.isdigit() else rendered))
        return attrs

    def _send(self, kind: Literal["CoA-Request", "Disconnect-Request"], selector: str,
              extra: tuple[tuple[str, str], ...]) -> None:
        from pyrad import client as pyrad_client
        from pyrad import packet

        if self._client is None:
            raise ConnectError("not open; use the driver as a context manager", switch=self._target.name)
        attrs = self.build_attributes(selector, extra)
        code = packet.CoARequest if kind == "CoA-Request" else packet.DisconnectRequest
        request = self._client.CreateCoAPacket(code=code, message_authenticator=True)
        for name, value in attrs:
            request.AddAttribute(name, value)
        log.debug("%s: sending %s to %s:%s with %s", self._target.name, kind, self._target.host,
                  self._target.port or 3799, ", ".join(f"{n}={v}" for n, v in attrs))
        try:
            reply = self._client.SendPacket(request)
        except pyrad_client.Timeout as exc:
            raise DriverTimeout(
                f"{kind}: no valid reply after {self.options.retries} x {self.options.timeout:g}s (NAS down, "
                "CoA port closed/firewalled, or wrong shared secret: a NAS silently drops bad requests)",
                switch=self._target.name, port=selector) from exc
        except OSError as exc:
            raise ConnectError(f"{kind}: cannot send to the NAS ({exc.strerror or type(exc).__name__})",
                               switch=self._target.name, port=selector) from exc
        finally:
            self._client._CloseSocket()
        if reply.code in (packet.CoAACK, packet.DisconnectACK):
            log.debug("%s: %s acknowledged", self._target.name, kind)
            return
        cause = _error_cause(reply)
        cause_text = f"{cause} {ERROR_CAUSES.get(cause, 'unknown')}" if cause is not None else "no Error-Cause"
        raise CoANak(f"{kind} rejected by the NAS ({cause_text}); check the session selector and NAS policy",
                     switch=self._target.name, port=selector, error_cause=cause)


def _error_cause(reply: Any) -> int | None:
    try:
        values = reply["Error-Cause"]
    except KeyError:
        return None
    value = values[0] if values else None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        for code, name in ERROR_CAUSES.items():
            if name == value:
                return code
    return None

