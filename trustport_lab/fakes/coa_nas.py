"""A pyrad-based CoA/Disconnect target (a fake NAS) on a free loopback UDP port.

ACKs requests whose Calling-Station-Id / Acct-Session-Id / User-Name / NAS-Port-Id names a known session;
NAKs others with Error-Cause 503 (Session-Context-Not-Found), or 501 (Administratively-Prohibited) for
sessions in ``prohibited``. Requests without a valid Message-Authenticator are dropped (BlastRADIUS-era
NAS behaviour). Modes for the "NAS that never answers" tests: ``silent=True`` drops everything; sessions in
``ignored`` are never answered while the others are (a NAS that answers only some requests); ``drop_first=N``
drops the first N requests it receives (a lossy path that the retries cover). Every answered request is recorded.
"""

from __future__ import annotations

import contextlib
import select
import threading
from dataclasses import dataclass, field
from typing import Any

from pyrad import dictionary, packet, server

from switch_drivers.coa import dictionary_path

from .snmp_agent import free_udp_port

SESSION_ATTRS = ("Calling-Station-Id", "Acct-Session-Id", "User-Name", "NAS-Port-Id")
RECORDED_ATTRS = (*SESSION_ATTRS, "NAS-IP-Address", "Message-Authenticator", "Cisco-AVPair", "HP-Port-Bounce-Host",
                  "Aruba-Port-Bounce-Host", "Arista-PortFlap", "Juniper-AV-Pair")


@dataclass
class CoaNas:
    secret: bytes = b"testing123"
    sessions: set[str] = field(default_factory=lambda: {"AA-BB-CC-00-11-22", "sess-0001"})
    prohibited: set[str] = field(default_factory=set)
    silent: bool = False
    ignored: set[str] = field(default_factory=set)
    drop_first: int = 0
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    received: int = 0  # every request that arrived, including those dropped
    unanswered: int = 0  # requests dropped on purpose (silent, ignored, drop_first)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _server: Any = None

    def start(self) -> CoaNas:
        nas = self
        self.port = self.port or free_udp_port()

        class _Server(server.Server):  # type: ignore[misc]
            def HandleCoaPacket(self, pkt: Any) -> None:
                nas._answer(self, pkt)

            def HandleDisconnectPacket(self, pkt: Any) -> None:
                nas._answer(self, pkt)

        self._server = _Server(
            addresses=["127.0.0.1"], coaport=self.port, auth_enabled=False, acct_enabled=False,
            coa_enabled=True, dict=dictionary.Dictionary(dictionary_path()),
            hosts={"127.0.0.1": server.RemoteHost("127.0.0.1", self.secret, "trustport")},
        )
        self._thread = threading.Thread(target=self._run, name="fake-coa-nas", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        srv = self._server
        srv._poll = select.poll()
        srv._fdmap = {}
        srv._PrepareSockets()
        while not self._stop.is_set():
            for fd, _event in srv._poll.poll(100):
                with contextlib.suppress(Exception):
                    srv._ProcessInput(srv._fdmap[fd])

    def _answer(self, srv: Any, pkt: Any) -> None:
        self.received += 1
        if self.silent or "Message-Authenticator" not in pkt or not pkt.verify_message_authenticator():
            self.unanswered += self.silent
            return
        keys = {str(v) for name in SESSION_ATTRS if name in pkt for v in pkt[name]}
        if keys & self.ignored or self.drop_first > 0:
            if not keys & self.ignored:
                self.drop_first -= 1
            self.unanswered += 1
            return
        attrs = {name: list(pkt[name]) for name in RECORDED_ATTRS if name in pkt}
        kind = "coa" if pkt.code == packet.CoARequest else "disconnect"
        self.requests.append({"kind": kind, "attrs": attrs})
        reply = srv.CreateReplyPacket(pkt)
        if keys & self.prohibited:
            reply.code = packet.CoANAK if kind == "coa" else packet.DisconnectNAK
            reply.AddAttribute("Error-Cause", 501)
        elif not keys & self.sessions:
            reply.code = packet.CoANAK if kind == "coa" else packet.DisconnectNAK
            reply.AddAttribute("Error-Cause", 503)
        reply.add_message_authenticator()
        srv.SendReplyPacket(pkt.fd, reply)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._server is not None:
            for fd in self._server.coafds:
                with contextlib.suppress(Exception):
                    fd.close()
