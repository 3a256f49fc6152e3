"""A real 802.1X authenticator for tests: hostapd (``driver=wired``) and wpa_supplicant across a veth pair.

hostapd runs in the root network namespace on one end of a veth pair, so it reaches FreeRADIUS on 127.0.0.1 and
its RFC 5176 DAS listener is reachable from the test at ``127.0.0.1:<das_port>`` without any routing.
wpa_supplicant (the device) runs in its own namespace on the other end. Names are random per run
(``tp-supp-<hex>``, ``tpa<hex>``/``tpb<hex>``) so parallel or leftover runs never collide, and everything is
stopped by PID and deleted on exit, also when the test fails.

hostapd 2.10 quirks the harness is built around (docs/testing-hostapd.md, shared/reference/hostapd-nas.md):

* A Disconnect-Request does not tell a wired supplicant anything; it stays "authenticated" forever. A new
  session starts only when the device sends a frame: EAPOL-Start or DHCP (:meth:`Supplicant.kick_reauth`).
* After a Disconnect (or an EAP failure) hostapd keeps the STA entry for exactly 5 s. A trigger in that window
  is ignored (DHCP) or yields a session hostapd silently drops at +5 s (EAPOL-Start), so
  :meth:`Supplicant.kick_reauth` first waits until the STA is gone (:meth:`WiredNas.wait_sta_gone`).
* ``driver=wired`` ignores the VLAN attributes: the VLAN is visible in hostapd's RADIUS dump and in the
  registry, not on the port.

Missing tools or a failing ``ip netns add`` raise :class:`HarnessError` naming the Debian package: these
tests fail rather than skip, so CI cannot go green without them.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = ["EAP_FAILURE", "EAP_SUCCESS", "HarnessError", "LogHit", "RadiusMessage", "Supplicant", "WiredNas",
           "mac_colon", "mac_dashed", "parse_radius_dump", "require_tool"]

EAP_SUCCESS = "CTRL-EVENT-EAP-SUCCESS"
EAP_FAILURE = "CTRL-EVENT-EAP-FAILURE"

PACKAGES = {
    "ip": "iproute2",
    "hostapd": "hostapd",
    "hostapd_cli": "hostapd",
    "wpa_supplicant": "wpasupplicant",
    "wpa_cli": "wpasupplicant",
    "radclient": "freeradius-utils",
}
CTRL_PATH_MAX = 90  # sun_path is 108 bytes; leave room for "/<ifname>" and wpa_ctrl's own names
_MAC = re.compile(r"^([0-9a-f]{2}(?::[0-9a-f]{2}){5})$")


class HarnessError(RuntimeError):
    """The NAS/supplicant harness could not be set up, or an expected event did not happen in time."""


def require_tool(name: str) -> str:
    """Absolute path of ``name``; raises naming the Debian package when it is missing."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        package = PACKAGES.get(name, "?")
        raise HarnessError(f"{name} not found: install the Debian package '{package}' "
                           f"(apt-get install {package}); these tests fail instead of skipping without it")
    return found


def mac_colon(mac: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` from any of ``AA-BB-…``, ``aa:bb:…``, ``aabb.ccdd.eeff`` or ``aabbccddeeff``."""
    digits = re.sub(r"[^0-9a-fA-F]", "", mac).lower()
    if len(digits) != 12:
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def mac_dashed(mac: str) -> str:
    """``AA-BB-CC-DD-EE-FF``: how hostapd sends Calling-Station-Id."""
    return mac_colon(mac).upper().replace(":", "-")


def _run(args: Sequence[str], *, what: str, timeout: float = 10.0, check: bool = True) -> str:
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{what}: {' '.join(args)} did not finish in {timeout} s") from exc
    if check and proc.returncode != 0:
        raise HarnessError(f"{what}: {' '.join(args)} failed with exit code {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _short_ctrl_dir(preferred: Path, stack: contextlib.ExitStack) -> Path:
    """``preferred`` unless unix socket paths under it would be too long; then a short temporary dir."""
    if len(str(preferred.resolve())) <= CTRL_PATH_MAX:
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred
    short = Path(tempfile.mkdtemp(prefix="tp-ctrl-"))
    stack.callback(shutil.rmtree, short, ignore_errors=True)
    return short


@dataclass(frozen=True)
class LogHit:
    """A matching log line and the byte offset just after it (pass it as ``after`` to wait for the next one)."""

    line: str
    offset: int

    @property
    def time(self) -> float | None:
        """The epoch timestamp ``-t`` put in front of the line (same clock as :func:`time.time`)."""
        head = self.line.split(":", 1)[0]
        try:
            return float(head)
        except ValueError:
            return None


@dataclass(frozen=True)
class RadiusMessage:
    """One RADIUS packet as hostapd ``-dd`` dumped it (sent or received)."""

    time: float  # epoch seconds, from ``-t``
    code: int
    name: str  # "Access-Accept", "Accounting-Request", "Disconnect-ACK" …
    attributes: tuple[tuple[str, str], ...]  # (name, value as printed: 'text' in quotes, otherwise hex)

    def value(self, name: str) -> str | None:
        """First value of attribute ``name`` exactly as hostapd printed it, or None."""
        return next((value for attr, value in self.attributes if attr == name), None)

    def text(self, name: str) -> str | None:
        """First value of ``name`` as text: quotes stripped, and the string attributes hostapd dumps in hex
        (Tunnel-Private-Group-Id, Class) decoded. Integers come as hostapd printed them (decimal or hex)."""
        value = self.value(name)
        if value is None:
            return None
        if len(value) >= 2 and value[0] == value[-1] == "'":
            return value[1:-1]
        if name in _ASCII_HEXDUMPS:
            with contextlib.suppress(ValueError):
                return bytes.fromhex(value).decode("ascii", "replace")
        return value


_ASCII_HEXDUMPS = frozenset({"Tunnel-Private-Group-Id", "Class"})  # RADIUS_ATTR_HEXDUMP/UNDIST but really text
_DUMP_MESSAGE = re.compile(r"^(\d+\.\d+): RADIUS message: code=(\d+) \(([^)]*)\)")
_DUMP_ATTRIBUTE = re.compile(r"^\d+\.\d+:\s+Attribute \d+ \(([^)]*)\) length=\d+")
_DUMP_VALUE = re.compile(r"^\d+\.\d+:\s+Value: (.*)$")


def parse_radius_dump(log: str) -> list[RadiusMessage]:
    """Every RADIUS message in a hostapd ``-ddt`` log, in order."""
    messages: list[RadiusMessage] = []
    head: re.Match[str] | None = None
    attributes: list[tuple[str, str]] = []
    name: str | None = None

    def flush() -> None:
        if head is not None:
            messages.append(RadiusMessage(float(head.group(1)), int(head.group(2)), head.group(3),
                                          tuple(attributes)))

    for line in log.splitlines():
        if match := _DUMP_MESSAGE.match(line):
            flush()
            head, attributes, name = match, [], None
        elif head is None:
            continue
        elif match := _DUMP_ATTRIBUTE.match(line):
            name = match.group(1)
        elif (match := _DUMP_VALUE.match(line)) and name is not None:
            attributes.append((name, match.group(1).strip()))
            name = None
        else:
            flush()
            head = None
    flush()
    return messages


class _Log:
    """A daemon's log file, searched from byte offsets (``-t`` lines carry epoch timestamps)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name

    def offset(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def data(self, after: int = 0) -> bytes:
        try:
            with self.path.open("rb") as f:
                f.seek(after)
                return f.read()
        except FileNotFoundError:
            return b""

    def text(self, after: int = 0) -> str:
        return self.data(after).decode("utf-8", "replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def lines(self, after: int = 0) -> Iterator[LogHit]:
        """Complete lines from byte ``after`` on, each with the offset just past it (byte-exact)."""
        position = after
        for raw in self.data(after).splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                return  # still being written
            position += len(raw)
            yield LogHit(raw.decode("utf-8", "replace").rstrip("\n"), position)

    def find(self, pattern: str | re.Pattern[str], after: int = 0) -> LogHit | None:
        """First complete line at or after byte ``after`` that contains ``pattern`` (a regex if compiled)."""
        return next((hit for hit in self.lines(after) if _matches(pattern, hit.line)), None)

    def wait(self, pattern: str | re.Pattern[str], timeout: float, *, after: int = 0,
             fail_on: Sequence[str] = (), process: subprocess.Popen[bytes] | None = None) -> LogHit:
        """The first line matching ``pattern``; a ``fail_on`` line before it, the process exiting or the timeout
        raise :class:`HarnessError` with the log's tail."""
        deadline = time.monotonic() + timeout
        shown = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        position = after
        while True:
            for hit in self.lines(position):
                if _matches(pattern, hit.line):
                    return hit
                if any(bad in hit.line for bad in fail_on):
                    raise HarnessError(f"{self.name}: waiting for {shown!r}, got {hit.line!r} "
                                       f"({self.path}):\n{self.tail()}")
                position = hit.offset
            if process is not None and process.poll() is not None:
                raise HarnessError(f"{self.name} exited with code {process.returncode} while waiting for "
                                   f"{shown!r} ({self.path}):\n{self.tail()}")
            if time.monotonic() >= deadline:
                raise HarnessError(f"{self.name}: no {shown!r} within {timeout} s ({self.path}):\n{self.tail()}")
            time.sleep(0.02)


def _matches(pattern: str | re.Pattern[str], line: str) -> bool:
    return bool(pattern.search(line)) if isinstance(pattern, re.Pattern) else pattern in line


class WiredNas:
    """hostapd ``driver=wired`` as a NAS: 802.1X towards the device, RADIUS + accounting to 127.0.0.1, and an
    RFC 5176 DAS (Disconnect-Request) on ``127.0.0.1:das_port`` accepting only 127.0.0.1 with ``das_secret``.

    Owns the link: a namespace ``tp-supp-<hex>`` holding the device end ``tpb<hex>`` of a veth pair whose NAS
    end ``tpa<hex>`` stays in the root namespace. :class:`Supplicant` runs on the device end; one at a time.
    """

    def __init__(self, radius_port: int, radius_secret: str, *, acct_port: int, das_port: int, das_secret: str,
                 nas_identifier: str, workdir: Path, start_timeout: float = 10.0) -> None:
        tag = secrets.token_hex(3)
        self.namespace = f"tp-supp-{tag}"
        self.interface = f"tpa{tag}"
        self.device_interface = f"tpb{tag}"
        self.radius_port = radius_port
        self.acct_port = acct_port
        self.das_port = das_port
        self.nas_identifier = nas_identifier
        self.workdir = workdir
        self.log_path = workdir / f"hostapd-{tag}.log"
        self.conf_path = workdir / f"hostapd-{tag}.conf"
        self.start_timeout = start_timeout
        self._radius_secret = radius_secret
        self._das_secret = das_secret
        self._log = _Log(self.log_path, "hostapd")
        self._stack = contextlib.ExitStack()
        self._process: subprocess.Popen[bytes] | None = None
        self.ctrl_dir = workdir / f"hostapd-ctrl-{tag}"

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> WiredNas:
        ip, hostapd = require_tool("ip"), require_tool("hostapd")
        require_tool("hostapd_cli")
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._create_link(ip)
            self.ctrl_dir = _short_ctrl_dir(self.ctrl_dir, self._stack)
            self.conf_path.write_text(self._config(), encoding="utf-8")
            self.conf_path.chmod(0o600)
            with self.log_path.open("wb") as out:
                self._process = subprocess.Popen([hostapd, "-ddt", str(self.conf_path)], stdout=out,
                                                 stderr=subprocess.STDOUT)
            self._stack.callback(self._stop_hostapd)
            self._wait_ready()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _create_link(self, ip: str) -> None:
        try:
            _run([ip, "netns", "add", self.namespace], what="creating the device network namespace")
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n`ip netns add` needs root or CAP_SYS_ADMIN+CAP_NET_ADMIN (package "
                               "'iproute2'); run the hostapd tests as root or in a privileged container") from exc
        self._stack.callback(_run, [ip, "netns", "del", self.namespace], what="deleting the namespace", check=False)
        _run([ip, "link", "add", self.interface, "type", "veth", "peer", "name", self.device_interface],
             what="creating the veth pair")
        # if the move below fails the pair is still in the root namespace; deleting one end deletes both
        self._stack.callback(_run, [ip, "link", "del", self.interface], what="deleting the veth", check=False)
        _run([ip, "link", "set", self.device_interface, "netns", self.namespace], what="moving the device end")
        _run([ip, "-n", self.namespace, "link", "set", "lo", "up"], what="namespace loopback up")
        _run([ip, "-n", self.namespace, "link", "set", self.device_interface, "up"], what="device end up")
        _run([ip, "link", "set", self.interface, "up"], what="NAS end up")

    def _config(self) -> str:
        return "\n".join([
            f"interface={self.interface}",
            "driver=wired",
            "logger_stdout=-1",
            "logger_stdout_level=0",
            f"ctrl_interface={self.ctrl_dir}",
            "ieee8021x=1",
            "eap_reauth_period=0",
            "use_pae_group_addr=1",
            "eapol_version=2",
            "own_ip_addr=127.0.0.1",
            f"nas_identifier={self.nas_identifier}",
            "auth_server_addr=127.0.0.1",
            f"auth_server_port={self.radius_port}",
            f"auth_server_shared_secret={self._radius_secret}",
            "acct_server_addr=127.0.0.1",
            f"acct_server_port={self.acct_port}",
            f"acct_server_shared_secret={self._radius_secret}",
            f"radius_das_port={self.das_port}",
            f"radius_das_client=127.0.0.1 {self._das_secret}",
            "radius_das_require_event_timestamp=0",
            "",
        ])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            if self._cli("ping", check=False).strip() == "PONG":
                return
            time.sleep(0.05)
        raise HarnessError(f"hostapd did not come up on {self.interface} (exit code "
                           f"{self._process.poll() if self._process else None}, log {self.log_path}):\n"
                           f"{self._log.tail()}")

    def _stop_hostapd(self) -> None:
        _stop(self._process)  # SIGTERM: hostapd sends Acct-Stop/Accounting-Off, so stop it before FreeRADIUS

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- control ---------------------------------------------------------------------------------------------
    def _cli(self, *args: str, check: bool = True) -> str:
        return _run([require_tool("hostapd_cli"), "-p", str(self.ctrl_dir), "-i", self.interface, *args],
                    what="hostapd_cli", check=check, timeout=5.0)

    def sta_list(self) -> dict[str, dict[str, str]]:
        """``hostapd_cli all_sta``: MAC (``aa:bb:…``) → its key=value fields (``flags``, ``dot1xAuthSessionId``…)."""
        stations: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for raw in self._cli("all_sta").splitlines():
            line = raw.strip()
            if _MAC.match(line):
                current = stations.setdefault(line, {})
            elif current is not None and "=" in line:
                key, _, value = line.partition("=")
                current[key] = value
        return stations

    def wait_sta_gone(self, mac: str, timeout: float = 10.0) -> float:
        """Wait until hostapd has freed the STA (5 s after a Disconnect or EAP failure); returns seconds waited."""
        wanted, start = mac_colon(mac), time.monotonic()
        while wanted in self.sta_list():
            if time.monotonic() - start >= timeout:
                raise HarnessError(f"hostapd still lists STA {wanted} after {timeout} s:\n{self._log.tail()}")
            time.sleep(0.05)
        return time.monotonic() - start

    def wait_sta_authorized(self, mac: str, timeout: float = 10.0) -> dict[str, str]:
        """Wait until the port is authorized for ``mac``; returns its ``all_sta`` fields."""
        wanted, deadline = mac_colon(mac), time.monotonic() + timeout
        while True:
            fields = self.sta_list().get(wanted)
            if fields is not None and "[AUTHORIZED]" in fields.get("flags", ""):
                return fields
            if time.monotonic() >= deadline:
                raise HarnessError(f"hostapd did not authorize {wanted} within {timeout} s "
                                   f"(now: {fields}):\n{self._log.tail()}")
            time.sleep(0.05)

    def acct_session_id(self, mac: str) -> str | None:
        """The STA's current Acct-Session-Id (as in its Access-Requests and accounting), or None if unknown."""
        return self.sta_list().get(mac_colon(mac), {}).get("dot1xAuthSessionId")

    def eapol_reauth(self, mac: str) -> None:
        """Re-authenticate a live session in place (``raw EAPOL_REAUTH``): same Acct-Session-Id, ~15 ms."""
        answer = self._cli("raw", "EAPOL_REAUTH", mac_colon(mac)).strip()
        if answer != "OK":
            raise HarnessError(f"hostapd_cli raw EAPOL_REAUTH {mac_colon(mac)} answered {answer!r}")

    # -- log -------------------------------------------------------------------------------------------------
    def log_offset(self) -> int:
        return self._log.offset()

    def log_text(self, after: int = 0) -> str:
        return self._log.text(after)

    def radius_messages(self, after: int = 0) -> list[RadiusMessage]:
        """RADIUS packets hostapd sent/received after byte ``after`` of its log (Access-*, Accounting-*, DAS)."""
        return parse_radius_dump(self._log.text(after))

    def wait_log(self, pattern: str | re.Pattern[str], timeout: float, *, after: int = 0,
                 fail_on: Sequence[str] = ()) -> LogHit:
        """Wait for a hostapd ``-ddt`` log line; fails early if hostapd exits or a ``fail_on`` line appears."""
        return self._log.wait(pattern, timeout, after=after, fail_on=fail_on, process=self._process)


# One DHCPDISCOVER sent raw from the device end: hostapd's wired driver listens on UDP/67 on its interface and
# starts 802.1X for an unknown sender. Raw AF_PACKET because the device end has no IPv4 address or route.
_DHCP_KICK = r"""
import os, socket, struct, sys
ifname, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
bootp = struct.pack("!BBBB4sHH", 1, 1, 6, 0, os.urandom(4), 0, 0x8000) + bytes(16) + mac + bytes(10 + 64 + 128)
bootp += b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\xff"
bootp += bytes(max(0, 300 - len(bootp)))
udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), b"\xff" * 4)
words = sum(struct.unpack("!10H", header))
while words >> 16:
    words = (words & 0xFFFF) + (words >> 16)
header = header[:10] + struct.pack("!H", ~words & 0xFFFF) + header[12:]
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
    s.bind((ifname, 0))
    s.send(b"\xff" * 6 + mac + b"\x08\x00" + header + udp)
"""


class Supplicant:
    """wpa_supplicant ``-D wired`` with EAP-TLS in the NAS's device namespace: the device.

    Each instance gives the device end a fresh random MAC, so devices started one after another on the same
    :class:`WiredNas` are distinct stations to hostapd.
    """

    def __init__(self, nas: WiredNas, cert: Path, key: Path, ca_cert: Path, identity: str, workdir: Path,
                 *, start_timeout: float = 10.0) -> None:
        self.nas = nas
        self.cert, self.key, self.ca_cert, self.identity = cert, key, ca_cert, identity
        self.workdir = workdir
        tag = secrets.token_hex(3)
        self.log_path = workdir / f"wpas-{tag}.log"
        self.conf_path = workdir / f"wpas-{tag}.conf"
        self.ctrl_dir = workdir / f"wpas-ctrl-{tag}"
        self.start_timeout = start_timeout
        mac = bytearray(secrets.token_bytes(6))
        mac[0] = (mac[0] & 0xFC) | 0x02  # locally administered, unicast
        self.mac = mac_dashed(mac.hex())
        self._log = _Log(self.log_path, "wpa_supplicant")
        self._stack = contextlib.ExitStack()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def interface(self) -> str:
        return self.nas.device_interface

    def __enter__(self) -> Supplicant:
        ip, wpas = require_tool("ip"), require_tool("wpa_supplicant")
        require_tool("wpa_cli")
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.ctrl_dir = _short_ctrl_dir(self.ctrl_dir, self._stack)
            ns = ["-n", self.nas.namespace]
            _run([ip, *ns, "link", "set", self.interface, "down"], what="device end down")
            _run([ip, *ns, "link", "set", self.interface, "address", mac_colon(self.mac)], what="setting the MAC")
            _run([ip, *ns, "link", "set", self.interface, "up"], what="device end up")
            self.conf_path.write_text(self._config(), encoding="utf-8")
            self.conf_path.chmod(0o600)
            # `ip netns exec` execs (no fork), so the PID is wpa_supplicant's own
            with self.log_path.open("wb") as out:
                self._process = subprocess.Popen(
                    [ip, "netns", "exec", self.nas.namespace, wpas, "-D", "wired", "-i", self.interface,
                     "-c", str(self.conf_path), "-ddt"], stdout=out, stderr=subprocess.STDOUT)
            self._stack.callback(_stop, self._process)
            self._wait_ready()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _config(self) -> str:
        return (f"ctrl_interface={self.ctrl_dir}\nap_scan=0\neapol_version=2\n"
                "network={\n\tkey_mgmt=IEEE8021X\n\teap=TLS\n"
                f'\tidentity="{self.identity}"\n\tca_cert="{self.ca_cert}"\n'
                f'\tclient_cert="{self.cert}"\n\tprivate_key="{self.key}"\n\teapol_flags=0\n}}\n')

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            if self._cli("ping", check=False).strip() == "PONG":
                return
            time.sleep(0.05)
        raise HarnessError(f"wpa_supplicant did not come up in {self.nas.namespace} (log {self.log_path}):\n"
                           f"{self._log.tail()}")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- control ---------------------------------------------------------------------------------------------
    def _cli(self, *args: str, check: bool = True) -> str:
        # the control socket is a filesystem socket, reachable from the root namespace
        return _run([require_tool("wpa_cli"), "-p", str(self.ctrl_dir), "-i", self.interface, *args],
                    what="wpa_cli", check=check, timeout=5.0)

    def status(self) -> dict[str, str]:
        """``wpa_cli status`` as a dict (``Supplicant PAE state``, ``suppPortStatus``, ``EAP state`` …)."""
        return dict(line.split("=", 1) for line in self._cli("status").splitlines() if "=" in line)

    def set_eapol_timers(self, auth_period: int = 5, start_period: int = 2) -> None:
        """Shorten authPeriod/startPeriod (30 s each by default). After a reject that comes *after* the TLS
        handshake (policy in check-eap-tls), wpa_supplicant discards the EAP-Failure and everything else until
        authWhile runs out, then sends EAPOL-Start; with the defaults that is ~30 s (reference §9.6)."""
        for name, value in (("authPeriod", auth_period), ("startPeriod", start_period)):
            answer = self._cli("set", f"EAPOL::{name}", str(value)).strip()
            if answer != "OK":
                raise HarnessError(f"wpa_cli set EAPOL::{name} {value} answered {answer!r}")

    def kick_reauth(self, method: Literal["eapol", "dhcp"] = "eapol", *, sta_gone_timeout: float = 10.0) -> float:
        """Make the device start a new 802.1X session, as its next frame would on a switch port.

        Needed after a Disconnect-Request, which hostapd does not signal to a wired supplicant. Waits first until
        hostapd has freed the old STA (5 s after the Disconnect; a trigger before that is ignored or produces a
        session hostapd silently kills), then sends an EAPOL-Start (``wpa_cli reauthenticate``) or one raw
        DHCPDISCOVER from the namespace. ``eapol`` needs wpa_supplicant in SUPP_PAE AUTHENTICATED (as after a
        Disconnect, which it does not notice); ``dhcp`` works in any state. Returns the seconds spent waiting for
        the STA to go.
        For a live session use :meth:`WiredNas.eapol_reauth` instead: this would wait for a STA that stays.
        """
        waited = self.nas.wait_sta_gone(self.mac, sta_gone_timeout)
        if method == "eapol":
            # wpa_supplicant answers OK but sends nothing unless its SUPP_PAE is AUTHENTICATED
            state = self.status().get("Supplicant PAE state")
            if state != "AUTHENTICATED":
                raise HarnessError(f"wpa_cli reauthenticate sends an EAPOL-Start only in SUPP_PAE AUTHENTICATED, "
                                   f"the device is in {state}; use kick_reauth('dhcp')")
            answer = self._cli("reauthenticate").strip()
            if answer != "OK":
                raise HarnessError(f"wpa_cli reauthenticate answered {answer!r}")
        else:
            _run([require_tool("ip"), "netns", "exec", self.nas.namespace, sys.executable, "-c", _DHCP_KICK,
                  self.interface, mac_colon(self.mac)], what="sending a DHCPDISCOVER from the device namespace")
        return waited

    # -- log -------------------------------------------------------------------------------------------------
    def log_offset(self) -> int:
        return self._log.offset()

    def log_text(self, after: int = 0) -> str:
        return self._log.text(after)

    def wait_event(self, event: str, timeout: float, *, after: int = 0, fail_on: Sequence[str] = ()) -> LogHit:
        """Wait for a control event (``CTRL-EVENT-EAP-SUCCESS``, ``CTRL-EVENT-EAP-FAILURE`` …) in the log after
        byte ``after`` (take :meth:`log_offset` before the action); fails early on ``fail_on`` or exit."""
        return self._log.wait(event, timeout, after=after, fail_on=fail_on, process=self._process)

