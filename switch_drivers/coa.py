"""RADIUS Change-of-Authorization driver (RFC 5176): pyrad builds and verifies the packets, the driver does the
sending, so the retry budget is its own and many requests can be outstanding at once.

``port`` arguments are *session selectors*: a MAC address (-> Calling-Station-Id) or ``key=value`` pairs
separated by commas, keys ``calling-station-id``, ``acct-session-id``, ``nas-port-id``, ``user-name``,
``audit-session-id`` (Cisco only). CoA cannot read a VLAN back: the NAS's CoA-ACK is the verification.

A NAS that never answers within the budget (``retries`` tries, ``timeout`` apart) raises :class:`NoAnswer`: for
this job the NAS cannot do it, and the caller enforces on the switch instead of retrying the same silent path.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .base import Capability, DriverBase, PortOutcome, Target, VlanChange
from .errors import CoANak, CommandFailed, ConnectError, DriverError, InvalidArgument, NoAnswer, Unsupported

__all__ = ["ERROR_CAUSES", "VENDOR_COMMANDS", "CoaDriver", "CoaOptions", "dictionary_path", "parse_session"]

log = logging.getLogger(__name__)

CoaVendor = Literal["ietf", "cisco", "hp", "aruba", "arista", "juniper"]
RequestKind = Literal["CoA-Request", "Disconnect-Request"]
Command = tuple[RequestKind, tuple[tuple[str, str], ...]]

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

    The retry budget is small and explicit: a request is sent ``retries`` times in all (tries), ``timeout``
    seconds apart. With the defaults a NAS that never answers is given up after 3 tries over 6 s (``NoAnswer``),
    so the switch fallback starts within seconds. ``max_in_flight`` bounds the requests outstanding at once in
    ``reauthenticate_many``/``disconnect_many``; each of them has the same per-request budget.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: SecretStr
    vendor: CoaVendor = "ietf"
    timeout: float = Field(default=2.0, gt=0, le=30)
    retries: int = Field(default=3, ge=1, le=10)
    max_in_flight: int = Field(default=64, ge=1, le=256)
    nas_ip_address: str | None = None
    bounce_seconds: int = Field(default=12, ge=1, le=60)

    @property
    def budget_seconds(self) -> float:
        """How long one request waits for the NAS at most."""
        return self.timeout * self.retries


@functools.lru_cache(maxsize=1)
def _dictionary() -> Any:
    from pyrad import dictionary

    return dictionary.Dictionary(dictionary_path())


@dataclass(eq=False)
class _Request:
    """One request on the wire: its packet, how often it was sent, until when its current try waits."""

    selector: str
    kind: RequestKind
    packet: Any
    raw: bytes = b""
    tries: int = 0
    deadline: float = 0.0
    reply: Any = None
    error: DriverError | None = None


class CoaDriver(DriverBase):
    """CoA-Request / Disconnect-Request sender. ``target.port`` is the NAS CoA port (default 3799)."""

    name: ClassVar[str] = "coa"
    options_type: ClassVar[type[CoaOptions]] = CoaOptions
    capabilities: ClassVar[Capability] = Capability.BOUNCE_PORT | Capability.REAUTHENTICATE | Capability.DISCONNECT

    def __init__(self, target: Target, options: CoaOptions) -> None:
        super().__init__(target)
        self.options = options
        self._socket: socket.socket | None = None
        self._address: Any = None

    def _open(self) -> None:
        port = self._target.port or 3799
        try:
            family, _, _, _, self._address = socket.getaddrinfo(self._target.host, port, type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            raise ConnectError(f"cannot resolve the NAS address {self._target.host!r} ({exc}); check the inventory",
                               switch=self._target.name) from exc
        _dictionary()
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def _close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    # -- intent operations -----------------------------------------------------------------------------
    def get_port_vlan(self, port: str) -> int:
        raise Unsupported("CoA cannot read a port VLAN; use a CLI or SNMP driver", switch=self._target.name,
                          port=port)

    def set_port_vlan(self, port: str, vlan: int) -> VlanChange:
        raise Unsupported("CoA does not set VLANs directly: return the VLAN in the Access-Accept and send "
                          "reauthenticate", switch=self._target.name, port=port)

    def _reauth_command(self) -> Command:
        commands = VENDOR_COMMANDS[self.options.vendor]
        return ("CoA-Request", commands["reauth"]) if "reauth" in commands else ("Disconnect-Request", ())

    def reauthenticate(self, port: str) -> None:
        self._one(port, self._reauth_command())

    def bounce_port(self, port: str) -> None:
        commands = VENDOR_COMMANDS[self.options.vendor]
        if "bounce" not in commands:
            raise Unsupported(f"no CoA port-bounce attribute for vendor {self.options.vendor!r}",
                              switch=self._target.name, port=port)
        self._one(port, ("CoA-Request", commands["bounce"]))

    def disconnect(self, port: str) -> None:
        self._one(port, ("Disconnect-Request", ()))

    def reauthenticate_many(self, selectors: Sequence[str]) -> list[PortOutcome]:
        """Re-authenticate many sessions at once: all requests go out together (``max_in_flight`` at a time),
        each with its own budget; one outcome per selector, in order (``NoAnswer`` for a session the NAS ignored).
        A session named twice is sent once and both get its outcome."""
        return self._many(selectors, self._reauth_command())

    def disconnect_many(self, selectors: Sequence[str]) -> list[PortOutcome]:
        """Disconnect many sessions at once, like :meth:`reauthenticate_many`."""
        return self._many(selectors, ("Disconnect-Request", ()))

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

    def _one(self, selector: str, command: Command) -> None:
        (outcome,) = self._many([selector], command)
        if outcome.error is not None:
            raise outcome.error

    def _many(self, selectors: Sequence[str], command: Command) -> list[PortOutcome]:
        from pyrad import packet

        kind, extra = command
        errors: dict[int, DriverError] = {}
        requests: dict[int, _Request] = {}
        by_session: dict[tuple[tuple[str, str | int], ...], _Request] = {}
        for n, selector in enumerate(selectors):
            try:
                attrs = tuple(self.build_attributes(selector, extra))
                if attrs not in by_session:  # the same session twice (perhaps spelt differently) is sent once
                    by_session[attrs] = _Request(selector, kind, self._packet(kind, selector, list(attrs)))
                requests[n] = by_session[attrs]
            except InvalidArgument as exc:
                errors[n] = exc
        self._exchange(list(by_session.values()))
        acks = {"CoA-Request": (packet.CoAACK, packet.CoANAK), "Disconnect-Request": (packet.DisconnectACK,
                                                                                       packet.DisconnectNAK)}[kind]
        answers = {id(r): r.error or self._answer(r, acks) for r in by_session.values()}
        return [PortOutcome(selector, error=errors[n] if n not in requests else answers[id(requests[n])])
                for n, selector in enumerate(selectors)]

    def _packet(self, kind: RequestKind, selector: str, attrs: list[tuple[str, str | int]]) -> Any:
        from pyrad import packet

        if self._socket is None:
            raise ConnectError("not open; use the driver as a context manager", switch=self._target.name)
        code = packet.CoARequest if kind == "CoA-Request" else packet.DisconnectRequest
        request = packet.CoAPacket(code=code, secret=self.options.secret.get_secret_value().encode(),
                                   dict=_dictionary(), message_authenticator=True)
        try:
            for name, value in attrs:
                request.AddAttribute(name, value)
        except (KeyError, ValueError, TypeError, struct.error) as exc:
            raise InvalidArgument(f"{kind}: cannot encode the attributes ({type(exc).__name__}: {exc})",
                                  switch=self._target.name, port=selector) from exc
        log.debug("%s: %s to %s:%s with %s", self._target.name, kind, self._target.host, self._target.port or 3799,
                  ", ".join(f"{n}={v}" for n, v in attrs))
        return request

    def _answer(self, request: _Request, acks: tuple[int, int]) -> DriverError | None:
        reply = request.reply
        if reply.code == acks[0]:
            log.debug("%s: %s for %s acknowledged", self._target.name, request.kind, request.selector)
            return None
        if reply.code != acks[1]:
            return CommandFailed(f"{request.kind}: the NAS answered with packet code {reply.code}, neither ACK nor "
                                 "NAK; check the NAS's CoA configuration", switch=self._target.name,
                                 port=request.selector)
        cause = _error_cause(reply)
        cause_text = f"{cause} {ERROR_CAUSES.get(cause, 'unknown')}" if cause is not None else "no Error-Cause"
        return CoANak(f"{request.kind} rejected by the NAS ({cause_text}); check the session selector and NAS policy",
                      switch=self._target.name, port=request.selector, error_cause=cause)

    def _exchange(self, requests: list[_Request]) -> None:
        """Send ``requests`` (at most ``max_in_flight`` outstanding, each with its own id) and collect the valid
        replies; a request still unanswered after ``retries`` tries gets ``NoAnswer``."""
        sock = self._socket
        if sock is None:
            raise ConnectError("not open; use the driver as a context manager", switch=self._target.name)
        waiting = deque(requests)
        in_flight: dict[int, _Request] = {}
        free_ids = deque(random.sample(range(256), 256))  # ids only need to differ, not to be secret
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        limit = self.options.max_in_flight
        while waiting or in_flight:
            while waiting and len(in_flight) < limit:
                request = waiting.popleft()
                request.packet.id = free_ids.popleft()
                request.raw = request.packet.RequestPacket()
                in_flight[request.packet.id] = request
                self._transmit(sock, request, in_flight, free_ids)
            if not in_flight:
                continue
            wait = max(0.0, min(r.deadline for r in in_flight.values()) - time.monotonic())
            if poller.poll(math.ceil(wait * 1000)):
                self._receive(sock, in_flight, free_ids)
            now = time.monotonic()
            for ident, request in list(in_flight.items()):
                if request.deadline > now:
                    continue
                if request.tries < self.options.retries:
                    self._transmit(sock, request, in_flight, free_ids)
                else:
                    request.error = self._no_answer(request)
                    del in_flight[ident]
                    free_ids.append(ident)

    def _transmit(self, sock: socket.socket, request: _Request, in_flight: dict[int, _Request],
                  free_ids: deque[int]) -> None:
        request.tries += 1
        request.deadline = time.monotonic() + self.options.timeout
        try:
            sock.sendto(request.raw, self._address)
        except BlockingIOError:
            pass  # the send buffer is full: this try counts, the next one goes out after the timeout
        except OSError as exc:
            request.error = ConnectError(f"{request.kind}: cannot send to the NAS ({exc.strerror or exc})",
                                         switch=self._target.name, port=request.selector)
            del in_flight[request.packet.id]
            free_ids.append(request.packet.id)

    def _receive(self, sock: socket.socket, in_flight: dict[int, _Request], free_ids: deque[int]) -> None:
        """Take every datagram that is there; keep the replies that verify against a request in flight."""
        from pyrad import packet

        for _ in range(1024):  # bounded: a flood of junk cannot hold the loop past the deadlines
            try:
                data = sock.recv(4096)
            except BlockingIOError:  # nothing more to read
                return
            except OSError:  # an error reported late (ICMP); reading it cleared it: the budget decides
                continue
            request = in_flight.get(data[1]) if len(data) >= 20 else None
            if request is None:
                continue  # a late reply to a request that is done, or not a RADIUS packet
            try:
                reply = request.packet.CreateReply(packet=data)
                valid = request.packet.VerifyReply(reply, data)
            except (packet.PacketError, KeyError, ValueError, IndexError, struct.error):
                continue
            if not valid:  # wrong Response Authenticator / Message-Authenticator: forged, or another secret
                continue
            request.reply = reply
            del in_flight[data[1]]
            free_ids.append(data[1])

    def _no_answer(self, request: _Request) -> NoAnswer:
        tries = f"{request.tries} {'try' if request.tries == 1 else 'tries'}"
        return NoAnswer(
            f"no answer to {request.kind} after {tries} over {request.tries * self.options.timeout:g} s from the NAS "
            f"at {self._target.host}:{self._target.port or 3799} (NAS down, CoA port closed or firewalled, or a wrong "
            "shared secret: a NAS silently drops requests it cannot authenticate); the NAS cannot do this now, "
            "enforce on the switch instead", switch=self._target.name, port=request.selector)


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

