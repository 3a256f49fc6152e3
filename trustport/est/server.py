"""The EST server: RFC 7030 over TLS with client-certificate authentication, on a small threaded HTTP/1.1 server.

Why ``http.server`` and not the API's uvicorn: enrolment is authenticated by the TLS client certificate itself, and
uvicorn does not hand the peer certificate to the application; here the handler holds the ``SSLSocket`` and reads
``getpeercert(binary_form=True)``. The TLS handshake runs in the connection's own thread (not in ``accept``), under
a timeout, so a slow or silent client holds one thread, never the listener. OpenSSL checks the client certificate
against the configured trust anchors during the handshake (``CERT_OPTIONAL``: /cacerts and /csrattrs work without
one); the enrolment service then judges the certificate again exactly as RADIUS does (``Authorizer.evaluate``).
Python 3.11 exposes only the leaf, not the chain the client sent: intermediates must be configured CAs (they are
on the RADIUS path too, where FreeRADIUS' ``ca_file`` holds them).

Requests are bounded: one ``Content-Length`` (no chunked bodies: 411), at most ``max_body_bytes`` (413, nothing
read), read within ``timeout_seconds``; every answer closes the connection. Errors are one line of text that names
what was wrong, never a traceback; an unexpected failure is logged and answered 500 without detail.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from policy.errors import ConfigError
from policy.text import safe_text
from trustport.app import App
from trustport.est import wire
from trustport.services.enrollment import EnrollmentAnswer, EnrollmentService
from trustport.settings.config import TrustportConfig
from trustport.settings.enrollment import EnrollmentConfig

log = logging.getLogger(__name__)
PREFIX = "/.well-known/est/"
GET_OPS = frozenset({"cacerts", "csrattrs"})
POST_OPS = frozenset({"simpleenroll", "simplereenroll"})
_MESSAGE_CHARS = 600
DRAIN_BYTES = 1 << 20  # an oversized or chunked body the client keeps sending after it was refused
DRAIN_SECONDS = 1.0


def tls_context(certificate: Path, key: Path, client_cas: list[x509.Certificate],
                key_password: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context: our certificate, client certificates optional but verified against
    ``client_cas`` (the configured trust anchors and issuing CAs, never the system store)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certificate), str(key), password=key_password)
    context.verify_mode = ssl.CERT_OPTIONAL
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in client_cas)
    if pem:
        context.load_verify_locations(cadata=pem)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


class EstServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], service: EnrollmentService, context: ssl.SSLContext,
                 settings: EnrollmentConfig, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.service = service
        self.context = context
        self.settings = settings
        self.clock = clock
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        # one enrolment decision at a time: the authorizer's caches (trust material, deny list, attestation) were
        # built for the hook's one-request-at-a-time use; TLS and body reading stay parallel
        self.decisions = threading.Lock()
        super().__init__(address, EstHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # over the limit: drop at once, before any TLS work
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake here, in the connection's thread and under the timeout, then the HTTP exchange."""
        sock: socket.socket = request
        sock.settimeout(self.settings.timeout_seconds)
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("EST: TLS handshake with %s failed: %s", client_address[0], safe_text(exc, 200))
            return
        try:
            EstHandler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("EST: unexpected error serving %s", client_address[0])


class EstHandler(http.server.BaseHTTPRequestHandler):
    server: EstServer
    protocol_version = "HTTP/1.1"
    server_version = "trustport-est"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # the request line is the client's: escaped (and cut) before it reaches a log line of either format
        log.info("EST %s: %s", self.client_address[0], safe_text(format % args, 300),
                 extra={"client": self.client_address[0]})

    # -- answers ------------------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 200 and content_type != "text/plain; charset=utf-8":
            self.send_header("Content-Transfer-Encoding", "base64")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _text(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        line = safe_text(message, _MESSAGE_CHARS)
        self._send(status, (line + "\n").encode("utf-8", "backslashreplace"), "text/plain; charset=utf-8", headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own refusals (bad request line, header too long, ...): one line, no HTML."""
        text = (message or self.responses.get(code, ("error",))[0]).split(" (", 1)[0]  # no echo of the request
        try:
            self._text(code, text)
        except OSError:
            self.close_connection = True

    # -- routing ------------------------------------------------------------------------------------------------

    def _operation(self) -> str | None:
        path = self.path.split("?", 1)[0]
        if not path.startswith(PREFIX):
            self._text(404, f"not an EST path; EST is under {PREFIX} (cacerts, simpleenroll, simplereenroll, "
                            "csrattrs)")
            return None
        op = path[len(PREFIX):].strip("/")
        if op not in GET_OPS | POST_OPS:
            self._text(404, f"unknown EST operation; this server offers {', '.join(sorted(GET_OPS | POST_OPS))}")
            return None
        return op

    def _guarded(self, method: str) -> None:
        try:
            op = self._operation()
            if op is None:
                return
            wanted = "GET" if op in GET_OPS else "POST"
            if method != wanted:
                self._text(405, f"{op} takes {wanted}", {"Allow": wanted})
                return
            if op == "cacerts":
                self._send(200, wire.certs_only(self.server.service.ca_certificates()), wire.PKCS7_CERTS_ONLY)
            elif op == "csrattrs":
                self._send(200, wire.csr_attributes(), wire.CSRATTRS)
            else:
                self._enroll(renew=op == "simplereenroll")
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            log.exception("EST: unexpected error in %s %s", method, safe_text(self.path, 100))
            try:
                self._text(500, "internal error; the server log has the details")
            except OSError:
                self.close_connection = True

    def do_GET(self) -> None:
        self._guarded("GET")

    def do_HEAD(self) -> None:
        self._guarded("GET")

    def do_POST(self) -> None:
        self._guarded("POST")

    def do_PUT(self) -> None:
        self._guarded("PUT")

    def do_DELETE(self) -> None:
        self._guarded("DELETE")

    # -- enrolment ----------------------------------------------------------------------------------------------

    def _body(self) -> bytes | None:
        """The request body, bounded; None when it was refused (the answer is sent)."""
        if self.headers.get_all("Transfer-Encoding"):
            self._refuse_body(411, "chunked or otherwise transfer-encoded bodies are not accepted; send the "
                                    "CSR with a Content-Length")
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self._refuse_body(411, "Content-Length is required")
            return None
        if len(set(lengths)) != 1 or not (lengths[0].strip().isdigit() and len(lengths[0].strip()) <= 12):
            self._refuse_body(400, "Content-Length must be one decimal number")
            return None
        size = int(lengths[0])
        limit = min(self.server.settings.max_body_bytes, wire.MAX_CSR_BYTES)
        if size > limit:
            self._refuse_body(413, f"the body is {size} bytes; a certificate request here is at most "
                                    f"{limit} bytes")
            return None
        try:
            body = self.rfile.read(size)
        except TimeoutError:
            self._text(408, f"the body did not arrive within {self.server.settings.timeout_seconds:g} s")
            return None
        if len(body) != size:
            self.close_connection = True
            return None  # the client went away mid-body: nothing to answer
        return body

    def _refuse_body(self, status: int, message: str) -> None:
        """Answer, then read and drop what the client is still sending (at most ``DRAIN_BYTES``, briefly), so that
        closing does not reset the connection before the client has read the answer."""
        self._text(status, message)
        self.wfile.flush()
        self.connection.settimeout(DRAIN_SECONDS)
        left = DRAIN_BYTES
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, ValueError):
            pass

    def _enroll(self, *, renew: bool) -> None:
        body = self._body()
        if body is None:
            return
        try:
            csr = wire.parse_csr(body, self.headers.get("Content-Type"))
        except wire.WireError as exc:
            self._text(exc.status, str(exc))
            return
        peer = self.connection.getpeercert(binary_form=True) if isinstance(self.connection, ssl.SSLSocket) \
            else None
        with self.server.decisions:
            answer = self.server.service.enroll(peer or None, csr, self.server.clock(), renew=renew)
        self._answer(answer)

    def _answer(self, answer: EnrollmentAnswer) -> None:
        if answer.issued is not None:
            self._send(200, wire.certs_only([answer.issued.certificate]), wire.PKCS7_CERTS_ONLY)
            return
        headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else None
        self._text(answer.status, answer.message, headers)


def enrollment_settings(config: TrustportConfig) -> EnrollmentConfig:
    """The config's ``enrollment:`` section, or the defaults when it has none."""
    return config.enrollment if config.enrollment is not None else EnrollmentConfig()


def build_server(app: App, settings: EnrollmentConfig | None = None, *, listen: str | None = None,
                 port: int | None = None, clock: Callable[[], datetime] | None = None) -> EstServer:
    """The EST server of ``app``'s config: its owner CA, the same authorizer and lifecycle service as every other
    adapter, TLS with the enrollment (else RADIUS) server certificate; bound, not yet serving."""
    config = app.config
    settings = settings if settings is not None else enrollment_settings(config)
    service = EnrollmentService(settings, app.authorizer, app.store, app.lifecycle, app.owner_ca)
    cert, key = settings.server_files(config.radius.server_certificate, config.radius.server_key)
    password = None
    if settings.server_certificate is None and config.radius.server_key_password is not None:
        password = config.radius.server_key_password.get_secret_value()
    try:
        context = tls_context(config.path(cert), config.path(key), app.trust.roots() + app.trust.intermediates(),
                              password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"EST server certificate {config.path(cert)} / key {config.path(key)}: cannot load them "
                          f"({safe_text(exc, 200)})") from exc
    return EstServer((listen or settings.listen_address, settings.port if port is None else port), service, context,
                     settings, **({"clock": clock} if clock is not None else {}))


def serve(server: EstServer) -> None:
    """Serve until interrupted; then stop accepting and close the listener."""
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()


def start_in_thread(server: EstServer) -> threading.Thread:
    """For tests and the lab: serve in a daemon thread; stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="est-server",
                              daemon=True)
    thread.start()
    return thread
