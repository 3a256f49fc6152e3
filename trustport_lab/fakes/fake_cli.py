"""An asyncssh server that plays five switch CLIs well enough for netmiko to drive them unchanged.

Each vendor session models the prompts, modes, paging/width commands, configuration contexts and the exact
error strings the corresponding netmiko class and our drivers rely on. Device state (access VLAN and admin
state per port, Junos candidate/running configuration) lives in :class:`DeviceState` objects that the
tests read and poke directly (the server runs in a background thread of the test process).

Run standalone: ``python -m trustport_lab.fakes.fake_cli cisco_ios:13001 juniper_junos:13004 ...``
(login admin / fake-pass-123, enable secret fake-enable-456).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

VENDORS = ("cisco_ios", "aruba_aoscx", "hp_procurve", "juniper_junos", "arista_eos")

# Port names each fake knows, keyed by vendor; every port starts in VLAN 1 except where noted.
DEFAULT_PORTS: dict[str, tuple[str, ...]] = {
    "cisco_ios": ("GigabitEthernet1/0/1", "GigabitEthernet1/0/5", "GigabitEthernet1/0/6"),
    "aruba_aoscx": ("1/1/1", "1/1/5", "1/1/6"),
    "hp_procurve": ("1", "5", "6"),
    "juniper_junos": ("ge-0/0/1", "ge-0/0/5", "ge-0/0/6"),
    "arista_eos": ("Ethernet1", "Ethernet5", "Ethernet6"),
}
DEFAULT_VLANS = frozenset({1, 10, 20, 30, 99})


@dataclass
class PortState:
    vlan: int = 1
    shutdown: bool = False
    bounces: int = 0  # completed shutdown -> no shutdown transitions
    reauths: int = 0
    routed: bool = False  # AOS-CX: ports are routed until "no routing"


@dataclass
class DeviceState:
    """What the fake switch 'is'; shared by all sessions of one vendor. Tests may read and poke it."""

    vendor: str
    hostname: str
    username: str = "admin"
    password: str = "fake-pass-123"  # noqa: S105 - the fake switch's own login
    secret: str = "fake-enable-456"  # noqa: S105
    ports: dict[str, PortState] = field(default_factory=dict)
    vlans: set[int] = field(default_factory=lambda: set(DEFAULT_VLANS))
    commands: list[str] = field(default_factory=list)  # every line received, passwords excluded
    saves: int = 0
    fail_next_commit: str | None = None  # Junos: error text the next commit prints
    stall_show: bool = False  # never answer 'show' commands (timeout tests)
    ignore_changes: bool = False  # accept VLAN commands but change nothing (read-back tests)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Junos candidate configuration: port -> (vlan, disabled); running lives in ports
    candidate: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def reset(self) -> None:
        with self.lock:
            self.ports = {
                name: PortState(routed=(self.vendor, name) == ("aruba_aoscx", "1/1/1"))
                for name in DEFAULT_PORTS[self.vendor]
            }
            self.vlans = set(DEFAULT_VLANS)
            self.commands.clear()
            self.saves = 0
            self.fail_next_commit = None
            self.stall_show = False
            self.ignore_changes = False
            self.candidate = {}


class _Stall(Exception):
    """Raised by a handler to make the session stop answering."""


class VendorSession:
    """Base: line discipline, echo, modes. Subclasses implement ``prompt`` and ``handle``."""

    newline = "\r\n"
    banner = ""

    def __init__(self, state: DeviceState) -> None:
        self.state = state
        self.mode = "enable"
        self.iface: str | None = None
        self.awaiting: Callable[[str], str] | None = None  # next line is an answer (password, yes/no)
        self.echo_next = True
        self.closed = False

    # -- helpers ---------------------------------------------------------------------------------------
    def out(self, *lines: str) -> str:
        return "".join(line + self.newline for line in lines)

    def port(self, name: str) -> PortState | None:
        return self.state.ports.get(name)

    def prompt(self) -> str:
        raise NotImplementedError

    def handle(self, line: str) -> str:
        raise NotImplementedError

    def on_key(self) -> str | None:
        """Return output for a 'press any key' screen, or None when not waiting for a key."""
        return None


class _Conn(asyncssh.SSHServerSession[str]):
    def __init__(self, vendor_session: VendorSession) -> None:
        self.vs = vendor_session
        self.chan: Any = None
        self.buf = ""
        self.last_cr = False
        self.stalled = False

    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def connection_lost(self, exc: Exception | None) -> None:
        self.stalled = True  # never write to a closed channel

    def _write(self, text: str) -> None:
        if not self.stalled and not self.chan.is_closing():
            self.chan.write(text)

    def pty_requested(self, *args: Any) -> bool:
        return True

    def shell_requested(self) -> bool:
        return True

    def session_started(self) -> None:
        self._write(self.vs.banner or self.vs.prompt())

    def data_received(self, data: str, datatype: Any) -> None:
        if self.stalled:
            return
        for ch in data:
            if ch == "\n" and self.last_cr:
                self.last_cr = False
                continue
            self.last_cr = ch == "\r"
            key_reply = self.vs.on_key()
            if key_reply is not None:
                self._write(key_reply)
                continue
            if ch in "\r\n":
                line, self.buf = self.buf, ""
                self._line(line)
                if self.vs.closed:
                    self.chan.exit(0)
                    return
            elif ch in "\x7f\b":
                self.buf = self.buf[:-1]
            else:
                self.buf += ch
                if self.vs.echo_next and self.vs.awaiting is None:
                    self._write(ch)

    def _line(self, line: str) -> None:
        vs = self.vs
        if vs.awaiting is not None:
            answer, vs.awaiting = vs.awaiting, None
            reply = answer(line)
        else:
            with vs.state.lock:
                vs.state.commands.append(line)
            try:
                reply = vs.handle(line.strip())
            except _Stall:
                self._write(vs.newline)
                self.stalled = True
                return
        if vs.closed:
            self._write(vs.newline + reply)
            return
        self._write(vs.newline + reply + ("" if vs.awaiting else vs.prompt()))

    def eof_received(self) -> bool:
        return False

    def break_received(self, msec: int) -> bool:
        return False


class _Server(asyncssh.SSHServer):
    def __init__(self, state: DeviceState, cls: type[VendorSession]) -> None:
        self.state = state
        self.cls = cls

    def session_requested(self) -> _Conn:
        return _Conn(self.cls(self.state))

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self.state.username and password == self.state.password


def _session_class(vendor: str) -> type[VendorSession]:
    from . import fake_cli_vendors

    return fake_cli_vendors.SESSIONS[vendor]


class FakeCliServer:
    """Runs one SSH listener per vendor on 127.0.0.1 in a background event-loop thread."""

    def __init__(self, vendors: tuple[str, ...] = VENDORS, ports: dict[str, int] | None = None) -> None:
        self.vendors = vendors
        self.requested_ports = ports or {}
        self.ports: dict[str, int] = {}
        self.states = {v: DeviceState(vendor=v, hostname=f"sw-{v.split('_')[0]}") for v in vendors}
        for state in self.states.values():
            state.reset()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-cli", daemon=True)
        self._servers: list[Any] = []

    def known_hosts_lines(self) -> str:
        key = self.host_key.export_public_key("openssh").decode().strip()
        return "".join(f"[127.0.0.1]:{port} {key}\n" for port in self.ports.values())

    async def _start(self) -> None:
        for vendor in self.vendors:
            state = self.states[vendor]
            cls = _session_class(vendor)
            server = await asyncssh.create_server(
                lambda state=state, cls=cls: _Server(state, cls),
                "127.0.0.1",
                self.requested_ports.get(vendor, 0),
                server_host_keys=[self.host_key],
                encoding="utf-8",
                line_editor=False,
            )
            self._servers.append(server)
            self.ports[vendor] = server.sockets[0].getsockname()[1]

    def start(self) -> FakeCliServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        async def _close() -> None:
            for server in self._servers:
                server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 2)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str]) -> None:
    wanted = dict(arg.split(":", 1) for arg in argv) if argv else dict.fromkeys(VENDORS, "0")
    server = FakeCliServer(tuple(wanted), {v: int(p) for v, p in wanted.items()}).start()
    for vendor, port in server.ports.items():
        print(f"{vendor} 127.0.0.1:{port}", flush=True)
    print(server.known_hosts_lines(), end="", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    server.stop()


if __name__ == "__main__":
    # under ``python -m`` this file is __main__: run the package's copy, the one the vendor sessions subclass
    importlib.import_module("trustport_lab.fakes.fake_cli").main(sys.argv[1:])
