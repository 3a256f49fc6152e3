"""What ``trustport api serve`` runs: uvicorn with h11, a deadline for the request head (uvicorn has none), bounded
heads, connections and keep-alive, and HTTPS (TLS 1.2 or later) when the config names a certificate and key."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from trustport.api.core import ApiLimits


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head, which uvicorn itself does not have.

    A peer that connects and sends nothing, or half a request line, or headers a byte at a time, gets 408 and a
    closed connection ``header_timeout_s`` after it connected (or after the first byte of its next request).
    """

    header_timeout_s = ApiLimits.header_timeout_s
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Armed while the peer owes a request head, stopped once h11 has parsed one."""
        owes_head = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if owes_head and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)
        elif not owes_head:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.timeout_keep_alive_task is not None and self.cycle is not None:
            return  # idle between requests, not half-sent: uvicorn's keep-alive timeout closes it
        body = f"request head not received within {self.header_timeout_s:g} s\n".encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()


def tls_context(_config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's TLS context from the certificate and key files, refusing anything older than TLS 1.2."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_config(app: FastAPI, host: str, port: int, limits: ApiLimits | None = None,
                  log_level: str = "info", *, tls_certificate: Path | None = None, tls_key: Path | None = None,
                  log_config: dict[str, Any] | None = None) -> uvicorn.Config:
    """The uvicorn configuration ``trustport api serve`` runs: h11 with a head deadline, bounded heads,
    connections and keep-alive; HTTPS with ``tls_certificate`` + ``tls_key`` (both or neither)."""
    if (tls_certificate is None) != (tls_key is None):
        raise ValueError("give both a TLS certificate and its key, or neither")
    limits = limits or ApiLimits()
    protocol = type("TrustportH11Protocol", (HeadDeadlineProtocol,), {"header_timeout_s": limits.header_timeout_s})
    tls = tls_certificate is not None
    extra: dict[str, Any] = {} if log_config is None else {"log_config": log_config}
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol,
                     timeout_keep_alive=limits.keep_alive_s, h11_max_incomplete_event_size=limits.max_header_bytes,
                     limit_concurrency=limits.max_connections, timeout_graceful_shutdown=limits.keep_alive_s,
                     server_header=False, ssl_certfile=str(tls_certificate) if tls_certificate else None,
                     ssl_keyfile=str(tls_key) if tls_key else None,
                     ssl_version=ssl.PROTOCOL_TLS_SERVER, ssl_context_factory=tls_context if tls else None,
                     **extra)
