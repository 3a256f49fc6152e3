"""An asyncssh server that plays five switch CLIs well enough for netmiko to drive them unchanged.

Each vendor session models the prompts, modes, paging/width commands, configuration contexts, the show commands the
drivers read (per port, all ports, the VLAN table) and the exact error strings and quirks the real switches have:
IOS creates a missing VLAN on ``switchport access vlan N``, EOS accepts it silently, Junos accepts configuration for
interfaces that do not exist. Device state (access VLAN and admin state per port, the VLAN table, Junos
candidate/running configuration) lives in :class:`DeviceState` objects that tests read and poke directly (the
server runs in a background thread of the test process), including fault switches: ``stall_show``, ``hang_on``
(stop answering mid-command), ``ignore_changes``/``ignore_ports`` (say yes, do nothing), ``ignore_enable`` (a port
that stays down), ``refuse_ports``, ``fail_next_commit``.

Standalone, one process serving many independent switches (login ``admin`` / ``fake-pass-123``, enable secret
``fake-enable-456``)::

    python -m trustport_lab.fakes.fake_cli --vendor cisco_ios --switches 25 --ports 100 \\
        --base-port 20000 --ready-file /tmp/fleet.json --known-hosts /tmp/known_hosts

serves 25 switches named ``cisco_ios-01`` .. ``cisco_ios-25`` on 127.0.0.1:20000..20024 (``--base-port 0``: any
free ports), each with 100 ports (IOS ``GigabitEthernet1/0/1..100``, EOS ``Ethernet1..``, AOS-CX ``1/1/1..``,
ProCurve ``1..``, Junos ``ge-0/0/1..``), every port in VLAN 1, VLANs 1, 10, 20, 30, 99 and 999 defined. When every
listener is up it writes the ready file (JSON ``{"cisco_ios-01": 20000, ...}``, written atomically), the
known_hosts file, and prints the host key fingerprint and one ``known_hosts`` line per switch. One host key serves
all switches. ``python -m trustport_lab.fakes.fake_cli cisco_ios:13001 juniper_junos:13004`` (one switch per vendor
on fixed ports) still works. Stop it with SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
PORT_NAME: dict[str, str] = {  # port number i (1-based) -> the vendor's name for it, for --ports N
    "cisco_ios": "GigabitEthernet1/0/{i}", "aruba_aoscx": "1/1/{i}", "hp_procurve": "{i}",
    "juniper_junos": "ge-0/0/{i}", "arista_eos": "Ethernet{i}",
}
DEFAULT_VLANS = frozenset({1, 10, 20, 30, 99, 999})


def port_names(vendor: str, count: int) -> tuple[str, ...]:
    return tuple(PORT_NAME[vendor].format(i=i) for i in range(1, count + 1))


@dataclass
class PortState:
    vlan: int = 1
    shutdown: bool = False
    bounces: int = 0  # completed shutdown -> no shutdown transitions
    reauths: int = 0
    routed: bool = False  # AOS-CX: ports are routed until "no routing"
    link: bool = True  # a device is plugged in (oper up when not shut down)


@dataclass
class DeviceState:
    """What the fake switch 'is'; shared by all sessions of one switch. Tests may read and poke it."""

    vendor: str
    hostname: str
    username: str = "admin"
    password: str = "fake-pass-123"  # noqa: S105 - the fake switch's own login
    secret: str = "fake-enable-456"  # noqa: S105
    port_names: tuple[str, ...] = ()  # reset() creates these ports (default: DEFAULT_PORTS[vendor])
    ports: dict[str, PortState] = field(default_factory=dict)
    vlans: set[int] = field(default_factory=lambda: set(DEFAULT_VLANS))
    commands: list[str] = field(default_factory=list)  # every line received, passwords excluded
    record_commands: bool = True
    saves: int = 0
    fail_next_commit: str | None = None  # Junos: error text the next commit prints
    stall_show: bool = False  # never answer 'show' commands (timeout tests)
    hang_on: str | None = None  # stop answering at the first line containing this text (a switch hung mid-command)
    ignore_changes: bool = False  # accept VLAN commands but change nothing (read-back tests)
    ignore_ports: set[str] = field(default_factory=set)  # the same, for these ports only
    ignore_enable: bool = False  # accept 'no shutdown'/'enable' but leave the port down
    refuse_ports: set[str] = field(default_factory=set)  # refuse VLAN changes of these ports with the vendor's error
    sessions: int = 0  # SSH sessions open now
    logins: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Junos candidate configuration: interface -> (vlan, disabled); running lives in ports (+ phantom)
    candidate: dict[str, tuple[int, bool]] = field(default_factory=dict)
    phantom: dict[str, tuple[int, bool]] = field(default_factory=dict)  # Junos: committed config of absent ports

    def reset(self) -> None:
        with self.lock:
            names = self.port_names or DEFAULT_PORTS[self.vendor]
            routed = {"1/1/1"} if self.vendor == "aruba_aoscx" and not self.port_names else set()
            self.ports = {name: PortState(routed=name in routed) for name in names}
            self.vlans = set(DEFAULT_VLANS)
            self.commands.clear()
            self.saves = 0
            self.fail_next_commit = None
            self.stall_show = False
            self.hang_on = None
            self.ignore_changes = False
            self.ignore_ports = set()
            self.ignore_enable = False
            self.refuse_ports = set()
            self.candidate = {}
            self.phantom = {}

    def ignores(self, port: str) -> bool:
        return self.ignore_changes or port in self.ignore_ports


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

    def set_shutdown(self, port: PortState, down: bool) -> None:
        with self.state.lock:
            if not down and self.state.ignore_enable:
                return
            if port.shutdown and not down:
                port.bounces += 1
            port.shutdown = down

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
        self.pending: list[str] = []

    def connection_made(self, chan: Any) -> None:
        self.chan = chan
        with self.vs.state.lock:
            self.vs.state.sessions += 1
            self.vs.state.logins += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.chan is not None:
            with self.vs.state.lock:
                self.vs.state.sessions -= 1
            self.chan = None
        self.stalled = True  # never write to a closed channel

    def _write(self, text: str) -> None:
        self.pending.append(text)

    def _flush(self) -> None:
        text, self.pending = "".join(self.pending), []
        if text and self.chan is not None and not self.chan.is_closing():
            self.chan.write(text)

    def pty_requested(self, *args: Any) -> bool:
        return True

    def shell_requested(self) -> bool:
        return True

    def session_started(self) -> None:
        self._write(self.vs.banner or self.vs.prompt())
        self._flush()

    def data_received(self, data: str, datatype: Any) -> None:
        try:
            self._receive(data)
        finally:
            self._flush()  # one write per packet received, not one per character echoed

    def _receive(self, data: str) -> None:
        for ch in data:
            if self.stalled:
                return
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
                    self._flush()
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
        state = vs.state
        if vs.awaiting is not None:
            answer, vs.awaiting = vs.awaiting, None
            reply = answer(line)
        else:
            if state.record_commands:
                with state.lock:
                    state.commands.append(line)
            try:
                if state.hang_on and state.hang_on in line:
                    raise _Stall
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


def _hostname(device: str, vendor: str) -> str:
    short = f"sw-{vendor.split('_', maxsplit=1)[0]}"
    return short if device == vendor else f"{short}-{device.rsplit('-', 1)[-1]}"


class FakeCliServer:
    """Runs one SSH listener per fake switch on 127.0.0.1 in a background event-loop thread.

    By default one switch per vendor, named after the vendor (``states["cisco_ios"]``, ``ports["cisco_ios"]``);
    :meth:`fleet` builds many switches of one vendor. ``ports`` maps switch names to the TCP ports wanted (0: any).
    """

    def __init__(self, vendors: tuple[str, ...] = VENDORS, ports: Mapping[str, int] | None = None, *,
                 devices: Mapping[str, str] | None = None, port_count: int | None = None,
                 host: str = "127.0.0.1", record_commands: bool = True) -> None:
        self.devices: dict[str, str] = dict(devices) if devices else {v: v for v in vendors}
        self.vendors = tuple(dict.fromkeys(self.devices.values()))
        self.host = host
        self.requested_ports = dict(ports or {})
        self.ports: dict[str, int] = {}
        self.states = {
            name: DeviceState(vendor=vendor, hostname=_hostname(name, vendor),
                              port_names=port_names(vendor, port_count) if port_count else (),
                              record_commands=record_commands)
            for name, vendor in self.devices.items()
        }
        for state in self.states.values():
            state.reset()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-cli", daemon=True)
        self._servers: list[Any] = []

    @classmethod
    def fleet(cls, vendor: str, switches: int, ports: int, base_port: int = 0,
              host: str = "127.0.0.1") -> FakeCliServer:
        """``switches`` independent switches ``<vendor>-01``.. with ``ports`` ports each, on ``base_port``+i."""
        width = max(2, len(str(switches)))
        names = [f"{vendor}-{i:0{width}d}" for i in range(1, switches + 1)]
        wanted = {name: (base_port + i if base_port else 0) for i, name in enumerate(names)}
        return cls(devices=dict.fromkeys(names, vendor), ports=wanted, port_count=ports, host=host,
                   record_commands=False)

    @property
    def fingerprint(self) -> str:
        return str(self.host_key.get_fingerprint("sha256"))

    def known_hosts_lines(self) -> str:
        key = self.host_key.export_public_key("openssh").decode().strip()
        return "".join(f"[{self.host}]:{port} {key}\n" for port in self.ports.values())

    async def _start(self) -> None:
        for name, vendor in self.devices.items():
            state = self.states[name]
            cls = _session_class(vendor)
            server = await asyncssh.create_server(
                lambda state=state, cls=cls: _Server(state, cls),
                self.host,
                self.requested_ports.get(name, 0),
                server_host_keys=[self.host_key],
                encoding="utf-8",
                line_editor=False,
            )
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    def start(self) -> FakeCliServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
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


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trustport_lab.fakes.fake_cli",
        description="Fake SSH switches for netmiko (login admin / fake-pass-123, enable secret fake-enable-456). "
                    "Many switches of one vendor: --vendor V --switches N --ports P. One switch per vendor on fixed "
                    "ports: VENDOR:PORT arguments.",
        epilog=f"Vendors: {', '.join(VENDORS)}. Ports are named "
               + ", ".join(f"{v} {PORT_NAME[v].format(i='N')}" for v in VENDORS)
               + f". Every port starts in VLAN 1; VLANs {', '.join(map(str, sorted(DEFAULT_VLANS)))} exist.")
    parser.add_argument("listen", nargs="*", metavar="VENDOR:PORT", help="one switch of VENDOR on PORT (0: any)")
    parser.add_argument("--vendor", choices=VENDORS, help="the vendor every switch of the fleet plays")
    parser.add_argument("--switches", type=int, default=1, help="number of switches (default 1)")
    parser.add_argument("--ports", type=int, default=48, help="ports per switch (default 48)")
    parser.add_argument("--base-port", type=int, default=0,
                        help="TCP port of the first switch; the others follow (default 0: any free ports)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--ready-file", type=Path, help="write JSON {switch name: TCP port} here once listening")
    parser.add_argument("--known-hosts", type=Path, help="write the known_hosts lines of every switch here")
    args = parser.parse_args(argv)
    if args.vendor and args.listen:
        parser.error("give either --vendor (a fleet) or VENDOR:PORT arguments, not both")
    if not 1 <= args.switches <= 1000 or not 1 <= args.ports <= 1000:
        parser.error("--switches and --ports must be 1-1000")
    for item in args.listen:
        vendor, _, port = item.partition(":")
        if vendor not in VENDORS or not port.isdigit():
            parser.error(f"{item!r}: expected VENDOR:PORT with VENDOR one of {', '.join(VENDORS)}")
    return args


def main(argv: list[str]) -> None:
    args = _arguments(argv)
    if args.vendor:
        server = FakeCliServer.fleet(args.vendor, args.switches, args.ports, args.base_port, args.host)
    else:
        wanted = dict(arg.split(":", 1) for arg in args.listen) if args.listen else dict.fromkeys(VENDORS, "0")
        server = FakeCliServer(tuple(wanted), {v: int(p) for v, p in wanted.items()}, host=args.host)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    if args.known_hosts:
        _write_atomically(args.known_hosts, server.known_hosts_lines())
    if args.ready_file:
        _write_atomically(args.ready_file, json.dumps(server.ports, indent=1) + "\n")
    for name, port in server.ports.items():
        print(f"{name} {args.host}:{port}", flush=True)
    print(f"host key {server.fingerprint}", flush=True)
    print(server.known_hosts_lines(), end="", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()


if __name__ == "__main__":
    # under ``python -m`` this file is __main__: run the package's copy, the one the vendor sessions subclass
    importlib.import_module("trustport_lab.fakes.fake_cli").main(sys.argv[1:])
