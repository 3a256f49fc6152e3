"""Run FreeRADIUS and eapol_test for the lab and the integration tests (loopback only)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from policy.errors import TrustportError
from trustport.freeradius.render import python_path, site_packages

READY = "Ready to process requests"


class ToolMissing(TrustportError):
    pass


def require_tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        raise ToolMissing(f"{name} not found; install the Debian package '{package}' (make demo does this)")
    return found


def free_port(kind: int = socket.SOCK_DGRAM, count: int = 1) -> int:
    """A loopback port free for UDP (and the next ``count - 1`` as well)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + count > 65535:
            continue
        try:
            for extra in range(1, count):
                with socket.socket(socket.AF_INET, kind) as other:
                    other.bind(("127.0.0.1", port + extra))
        except OSError:
            continue
        return port
    raise TrustportError("no free loopback port found")


def radiusd_env() -> dict[str, str]:
    """PYTHONPATH is prepended to the embedded interpreter's path; python_path in the module is appended after
    Debian's dist-packages, whose old packages would otherwise win."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([site_packages(), python_path()])
    return env


class RadiusServer:
    """``freeradius -f -xx -l stdout -d DIR`` (threaded, like production), stopped on exit."""

    def __init__(self, raddb: Path, log_file: Path, timeout_s: float = 30.0) -> None:
        self.raddb = raddb
        self.log_file = log_file
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    def check(self) -> str:
        """``freeradius -XC``: returns the output, raises with its tail if the config is refused."""
        binary = require_tool("freeradius", "freeradius")
        proc = subprocess.run([binary, "-XC", "-d", str(self.raddb)], capture_output=True, text=True,
                              env=radiusd_env(), timeout=60, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
            raise TrustportError(f"freeradius -XC refused {self.raddb}:\n{tail}")
        return proc.stdout

    def __enter__(self) -> RadiusServer:
        binary = require_tool("freeradius", "freeradius")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as out:
            self.process = subprocess.Popen([binary, "-f", "-xx", "-l", "stdout", "-d", str(self.raddb)],
                                            stdout=out, stderr=subprocess.STDOUT, env=radiusd_env())
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            text = self.log_file.read_text(errors="replace")
            if READY in text:
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-30:])
        raise TrustportError(f"FreeRADIUS did not start (see {self.log_file}):\n{tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class EapolResult:
    success: bool
    code: str  # "Access-Accept", "Access-Reject", or "none"
    attributes: dict[str, str] = field(default_factory=dict)
    eap_code: int | None = None  # code of the EAP-Message in the final RADIUS packet (3 success, 4 failure)
    seconds: float = 0.0
    output: str = ""

    @property
    def vlan(self) -> int | None:
        value = self.attributes.get("Tunnel-Private-Group-Id")
        return int(value) if value and value.isdigit() else None


_MESSAGE = re.compile(r"RADIUS message: code=(\d+) \(([^)]+)\)")
_ATTRIBUTE = re.compile(r"Attribute (\d+) \(([^)]+)\) length=\d+\s*\n\s*Value: ([0-9a-fA-F]*)")


def parse_eapol_output(output: str, returncode: int, seconds: float) -> EapolResult:
    messages = list(_MESSAGE.finditer(output))
    if not messages:
        return EapolResult(False, "none", {}, None, seconds, output)
    last = messages[-1]
    block = output[last.end():]
    attributes: dict[str, str] = {}
    eap_code = None
    for match in _ATTRIBUTE.finditer(block):
        name, value = match.group(2), match.group(3)
        if name not in ("EAP-Message", "Tunnel-Private-Group-Id", "Tunnel-Type", "Tunnel-Medium-Type") \
                or len(value) % 2:
            continue  # eapol_test prints some integers in decimal (Framed-MTU: "994"), not hex
        raw = bytes.fromhex(value)
        if name == "EAP-Message" and raw and eap_code is None:
            eap_code = raw[0]
        elif name == "Tunnel-Private-Group-Id":
            attributes[name] = raw.decode("ascii", "replace")
        elif name in ("Tunnel-Type", "Tunnel-Medium-Type") and len(raw) == 4:
            attributes[name] = str(int.from_bytes(raw[1:], "big"))  # first octet is the tag
    return EapolResult(returncode == 0 and "SUCCESS" in output.splitlines()[-1:][0] if output.strip() else False,
                       last.group(2), attributes, eap_code, seconds, output)


def write_eapol_conf(path: Path, *, identity: str, ca_cert: Path, client_cert: Path, private_key: Path,
                     weak_client: bool = False) -> Path:
    """``weak_client``: let the supplicant present keys and signatures OpenSSL's default level refuses, to test
    the server's key policy (only the global ``openssl_ciphers`` line does that)."""
    path.write_text(
        ("openssl_ciphers=DEFAULT:@SECLEVEL=0\n" if weak_client else "")
        + "network={\n\tkey_mgmt=IEEE8021X\n\teap=TLS\n"
        f'\tidentity="{identity}"\n\tca_cert="{ca_cert}"\n\tclient_cert="{client_cert}"\n'
        f'\tprivate_key="{private_key}"\n\teapol_flags=0\n}}\n', encoding="utf-8")
    return path


def run_eapol(conf: Path, *, port: int, secret: str, mac: str, timeout_s: int = 10,
              nas_port: int | None = None) -> EapolResult:
    binary = require_tool("eapol_test", "eapoltest")
    args = [binary, "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-s", secret, "-r", "0", "-M", mac,
            "-t", str(timeout_s)]
    if nas_port is not None:
        args += ["-N", f"5:d:{nas_port}"]  # NAS-Port (attribute 5) as a decimal integer
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s + 10, check=False)
    return parse_eapol_output(proc.stdout + proc.stderr, proc.returncode, time.perf_counter() - start)
