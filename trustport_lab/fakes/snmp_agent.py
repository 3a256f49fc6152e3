"""Start/stop a real Debian net-snmp ``snmpd`` on a free loopback UDP port with our pass_persist switch.

snmpd runs as the invoking user (root in CI is fine: the pass_persist script is stdlib-only and lives in the
checkout). v2c communities: ``public`` (read-only) and ``private`` (read-write); v3 user ``nacuser``
authPriv SHA/AES with keys ``authpass123``/``privpass123``. :meth:`SnmpAgent.pdu_counts` reads snmpd's own
request counters, so a test can count the PDUs a driver sent at the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import snmp_pass_persist

SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"
SUBTREES = (
    ".1.3.6.1.2.1.17",  # BRIDGE-MIB incl. Q-BRIDGE
    ".1.3.6.1.2.1.2.2.1.7",  # ifAdminStatus (shadowed: writes only touch the fake's state)
    ".1.3.6.1.2.1.2.2.1.8",  # ifOperStatus (shadowed)
    ".1.3.6.1.2.1.31.1.1.1.1",  # ifName
    ".1.3.6.1.4.1.9.9.68",  # CISCO-VLAN-MEMBERSHIP-MIB
    ".1.3.6.1.4.1.9.9.46",  # CISCO-VTP-MIB
    ".1.0.8802.1.1.1.1.1.2.1.5",  # dot1xPaePortReauthenticate
)
V3_USER, V3_AUTH, V3_PRIV = "nacuser", "authpass123", "privpass123"
# SNMPv2-MIB snmp group: requests snmpd received, by PDU type (there is no GETBULK counter)
REQUEST_COUNTERS = {"get": "1.3.6.1.2.1.11.15.0", "getnext": "1.3.6.1.2.1.11.16.0", "set": "1.3.6.1.2.1.11.17.0"}


def snmpd_available() -> bool:
    return Path(SNMPD).is_file() and os.access(SNMPD, os.X_OK)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SnmpAgent:
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _own_gets: int = field(default=0, repr=False)  # GETs pdu_counts itself sent

    @property
    def state_path(self) -> Path:
        return self.workdir / "state.json"

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_path.read_text()))

    def reset(self, state: dict[str, Any] | None = None, *, extra_ports: int = 0) -> None:
        """Replace the switch's state (default: the three standard ports plus ``extra_ports`` Gi2/0/N)."""
        new = state or snmp_pass_persist.default_state(extra_ports)
        self.state_path.write_text(json.dumps(new, indent=1))

    def update_port(self, name: str, **fields: Any) -> None:
        """Change one port's row (``admin``, ``link``, ``refuse``...) by ifName."""
        state = self.state()
        row = next(p for p in state["ports"] if p["ifName"] == name)
        row.update(fields)
        self.reset(state)

    def pdu_counts(self) -> dict[str, int]:
        """snmpd's request counters since it started, less the GETs this method sent itself."""
        from pysnmp.hlapi.v3arch.asyncio import (
            CommunityData,
            ContextData,
            ObjectIdentity,
            ObjectType,
            SnmpEngine,
            UdpTransportTarget,
            get_cmd,
        )

        async def read() -> dict[str, int]:
            engine = SnmpEngine()
            try:
                transport = await UdpTransportTarget.create(("127.0.0.1", self.port), timeout=2, retries=1)
                indication, status, _, binds = await get_cmd(
                    engine, CommunityData("public", mpModel=1), transport,  # noqa: S508 - the lab's read-only v2c
                    ContextData(),
                    *(ObjectType(ObjectIdentity(oid)) for oid in REQUEST_COUNTERS.values()))
            finally:
                engine.close_dispatcher()
            if indication or status:
                raise RuntimeError(f"cannot read snmpd's counters: {indication or status}")
            return {name: int(value) for name, (_, value) in zip(REQUEST_COUNTERS, binds, strict=True)}

        counts = asyncio.run(read())
        self._own_gets += 1
        counts["get"] -= self._own_gets
        return counts

    def start(self, timeout: float = 10.0, attempts: int = 3) -> SnmpAgent:
        """Start snmpd; a free port can be taken between probing and binding, so retry on a new one."""
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                self.port = 0
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> SnmpAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "persist").mkdir(exist_ok=True)
        self.reset()
        self._own_gets = 0  # a new snmpd starts its counters at zero
        self.port = self.port or free_udp_port()
        script = Path(snmp_pass_persist.__file__).resolve()
        lines = [
            f"agentAddress udp:127.0.0.1:{self.port}",
            "rocommunity public 127.0.0.1",
            "rwcommunity private 127.0.0.1",
            f"createUser {V3_USER} SHA {V3_AUTH} AES {V3_PRIV}",
            f"rwuser {V3_USER} priv",
            "dontLogTCPWrappersConnects yes",
        ]
        lines += [f"pass_persist -p 1 {oid} {sys.executable} {script} {self.state_path} {oid}" for oid in SUBTREES]
        conf = self.workdir / "snmpd.conf"
        conf.write_text("\n".join(lines) + "\n")
        log = self.workdir / "snmpd.log"
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(self.workdir / "persist"), "MIBS": "", "MIBDIRS": ""}
        self.proc = subprocess.Popen(
            [SNMPD, "-f", "-C", "-c", str(conf), "-Lf", str(log), "-p", str(self.workdir / "snmpd.pid")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpd exited early: {log.read_text() if log.exists() else ''}")
            if log.exists() and "NET-SNMP version" in log.read_text():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("snmpd did not start in time")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # snmpd and its pass_persist children (own session)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
