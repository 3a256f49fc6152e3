"""trustport's REST API (FastAPI): attestation results arrive here from verifiers. OpenAPI at /docs.

Every route but /healthz and the OpenAPI documents needs ``Authorization: Bearer <token>`` with one of the
configured API tokens (compared in constant time). ``RequestGuard`` checks that from the headers alone, before a
byte of the body is read, then reads the body itself: it counts the bytes that actually arrive (sized or
chunked), stops at ``max_body_bytes`` with 413, and answers 408 when the body does not arrive in time. Early
answers close the connection, so nothing more of the body is read. ``server_config`` adds a deadline for the
request head (uvicorn has none) and uvicorn's own limits, and is what ``trustport api serve`` runs.

Errors are problems: ``{"detail": {"reason": <code>, "message": <what failed, what to do>}}``. They never echo
the request back; a database outage is 503 with Retry-After, never 500.
"""

# No ``from __future__ import annotations``: FastAPI must see the route signatures' real types (the local
# ``authenticated`` dependency could not be found from a string).
import asyncio
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import anyio
import h11
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from policy.attestation import TokenRejected
from policy.errors import AttestationError, CertificateError, DeviceNotFound, StoreError
from trustport.app import App
from trustport.services.attestation import InvalidDeviceRef
from trustport.settings.config import TrustportConfig

MAX_BODY_BYTES = 256 * 1024
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
RETRY_AFTER_S = 5
_NONCE_TTL = timedelta(hours=1)
_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class ApiLimits:
    """How much a client may send and how long it may take; every one bounds what an unauthenticated peer costs."""

    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout_s: float = 5.0  # from the end of the request head to the end of the body
    header_timeout_s: float = 5.0  # from connecting (or the first byte of the next request) to the end of the head
    keep_alive_s: int = 5  # idle time between requests on one connection
    max_header_bytes: int = 16 * 1024  # the whole request head (h11's incomplete-event limit)
    max_connections: int = 64  # beyond this uvicorn answers 503

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "body_timeout_s", "header_timeout_s", "keep_alive_s", "max_header_bytes",
                     "max_connections"):
            if not getattr(self, name) > 0:
                raise ValueError(f"API limit {name} must be positive, not {getattr(self, name)!r}")


class AttestationIn(BaseModel):
    token: str = Field(min_length=1, max_length=65536, description="EAR JWT (compact JWS)")
    device: str | None = Field(default=None, max_length=128, description="registry id or device serial number")
    certificate: str | None = Field(default=None, max_length=16384,
                                    description="the device's EAP-TLS certificate (PEM), for akpub/cnf binding")

    @field_validator("token", "device", "certificate")
    @classmethod
    def _real_text(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains a lone surrogate (\\ud800-\\udfff); send UTF-8 text") from None
        return value

    @field_validator("token", "certificate")
    @classmethod
    def _ascii(cls, value: str | None) -> str | None:
        if value is not None and not value.isascii():
            raise ValueError("must be ASCII (a compact JWS, a PEM certificate)")
        return value


class AttestationOut(BaseModel):
    device_id: int
    device_serial: str
    accepted: bool
    status: str | None
    binding: str | None
    expires_at: datetime | None
    reasons: list[str]
    reevaluation: str | None = Field(description="set when a connected device's standing dropped")


class Problem(BaseModel):
    reason: str
    message: str


class ProblemOut(BaseModel):
    detail: Problem


class NonceOut(BaseModel):
    device_id: int
    nonce: str
    expires_at: datetime


def _json_text(text: str, limit: int) -> str:
    """``text`` that can always be sent as UTF-8 JSON (a lone surrogate becomes an escape), cut at ``limit``;
    JSON itself escapes control characters, and messages quote untrusted values with repr() already."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


def problem_body(reason: str, message: str) -> dict[str, Any]:
    return {"detail": {"reason": reason, "message": _json_text(message, _MESSAGE_CHARS)}}


def problem(code: int, reason: str, message: str) -> HTTPException:
    return HTTPException(code, problem_body(reason, message)["detail"])


def _authorised(headers: Sequence[tuple[bytes, bytes]], tokens: Sequence[bytes]) -> bool:
    """Exactly one ``Authorization: Bearer <token>`` naming a configured token; every token is compared, in
    constant time, whichever matches."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if len(values) != 1:
        return False
    scheme, _, presented = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    presented = presented.strip()
    matched = False
    for secret in tokens:
        matched |= hmac.compare_digest(presented, secret)
    return matched and bool(presented)


class RequestGuard:
    """ASGI middleware in front of the whole app: authentication from the headers, then a bounded, timed body.

    The body is read here (at most ``max_body_bytes``, within ``body_timeout_s``) and handed to the app whole,
    so no route can be reached by a body that was never counted.
    """

    def __init__(self, app: ASGIApp, tokens: Sequence[bytes], limits: ApiLimits) -> None:
        self.app = app
        self.tokens = tuple(tokens)
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
        if scope.get("path") not in PUBLIC_PATHS and not _authorised(headers, self.tokens):
            await _answer(send, 401, "unauthenticated", "missing or invalid API token: send 'Authorization: Bearer "
                                                         "<token>' with a token from the config's api.tokens",
                          [(b"www-authenticate", b"Bearer")])
            return
        lengths = [value for name, value in headers if name.lower() == b"content-length"]
        if lengths:
            if len(set(lengths)) != 1 or not (lengths[0].isdigit() and len(lengths[0]) <= 18):
                await _answer(send, 400, "bad-content-length", "Content-Length must be one ASCII decimal number")
                return
            if int(lengths[0]) > self.limits.max_body_bytes:
                await self._too_large(send)
                return
        body = await self._read_body(receive, send)
        if body is None:
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect is left to come

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once the client was answered (413, 408) or went away."""
        chunks: list[bytes] = []
        size = 0
        more = True
        deadline = anyio.current_time() + self.limits.body_timeout_s
        while more:
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as waiting:
                message = await receive()
            if waiting.cancelled_caught:
                await _answer(send, 408, "timeout", f"the request body did not arrive within "
                                                    f"{self.limits.body_timeout_s:g} s; send it at once")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                await self._too_large(send)
                return None
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        await _answer(send, 413, "too-large", f"request body larger than {self.limits.max_body_bytes} bytes; an "
                                              "attestation result with its certificate is far smaller")


async def _answer(send: Send, code: int, reason: str, message: str,
                  extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A problem response that also closes the connection: the unread rest of the body is never read."""
    response = JSONResponse(problem_body(reason, message), status_code=code)
    raw = [*response.raw_headers, (b"connection", b"close"), *extra]
    await send({"type": "http.response.start", "status": code, "headers": raw})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})


def _validation_message(exc: RequestValidationError) -> str:
    """Where and what, from pydantic's errors, without the submitted values (they are never echoed back)."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(_json_text(str(part), 40) for part in error.get("loc", ()))
        parts.append(f"{where}: {_json_text(str(error.get('msg', 'invalid')), 160)}")
    return "; ".join(parts) + " (the request schema is at /docs)"


def install_problem_handlers(app: FastAPI) -> None:
    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(problem_body("invalid-request", _validation_message(exc)), status_code=422)

    async def http_problem(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail
        if not (isinstance(detail, dict) and {"reason", "message"} <= set(detail)):
            hint = _HINTS.get(exc.status_code, "")
            detail = problem_body(_REASONS.get(exc.status_code, "http-error"), f"{detail}{hint}")["detail"]
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    async def store_problem(_request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, InvalidDeviceRef):
            return JSONResponse(problem_body("bad-device-ref", str(exc)), status_code=422)
        if isinstance(exc, DeviceNotFound):
            return JSONResponse(problem_body("unknown-device", str(exc)), status_code=404)
        return JSONResponse(problem_body("store-unavailable", f"{exc}; retry in {RETRY_AFTER_S} s"), status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(StoreError, store_problem)


_HINTS = {400: ": send one UTF-8 JSON object (the request schema is at /docs)",
          404: ": no such route (see /docs)", 405: ": see /docs for the methods of this route"}
_REASONS = {400: "bad-request", 401: "unauthenticated", 404: "not-found", 405: "method-not-allowed",
            413: "too-large", 415: "unsupported-media-type"}


def create_app(config: TrustportConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
               limits: ApiLimits | None = None) -> FastAPI:
    if config.api is None:
        raise AttestationError("the REST API is not configured: add an 'api:' section with at least one token")
    limits = limits or ApiLimits()
    tokens = [(t.name, t.secret.get_secret_value().encode()) for t in config.api.tokens]
    root = App(config)
    store = root.store
    service = root.attestation
    app = FastAPI(title="trustport", version="0.1.0",
                  description="Trusted network-layer onboarding: attestation results and device standing.")
    install_problem_handlers(app)
    bearer = HTTPBearer(auto_error=False)

    def authenticated(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        """The token's name (``RequestGuard`` already refused everyone else; checked again per route)."""
        if credentials is not None and credentials.scheme.lower() == "bearer":
            presented = credentials.credentials.encode("latin-1", "replace")  # the header bytes again
            names = [name for name, secret in tokens if hmac.compare_digest(presented, secret)]
            if names:
                return names[0]
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, problem_body("unauthenticated", "missing or invalid "
                            "API token")["detail"], headers={"WWW-Authenticate": "Bearer"})

    problems: dict[int | str, dict[str, Any]] = {
        code: {"model": ProblemOut} for code in (400, 401, 404, 408, 413, 422, 503)}

    @app.get("/healthz", responses={503: {"model": ProblemOut}})
    def healthz() -> dict[str, str]:
        store.ping()
        return {"status": "ok"}

    @app.post("/v1/attestation-results", status_code=201, response_model=AttestationOut, responses=problems)
    def post_result(body: AttestationIn, _client: Annotated[str, Depends(authenticated)]) -> AttestationOut:
        try:
            outcome = service.import_token(body.token, clock(), device_ref=body.device,
                                           certificate_pem=body.certificate.encode() if body.certificate else None)
        except TokenRejected as exc:
            raise problem(422, exc.reason, str(exc)) from exc
        except (CertificateError, AttestationError) as exc:
            raise problem(422, "invalid", str(exc)) from exc
        stored = outcome.stored
        return AttestationOut(device_id=outcome.device.id, device_serial=outcome.device.key.serial_number,
                              accepted=stored.accepted, status=stored.status.name.lower() if stored.status else None,
                              binding=stored.binding, expires_at=stored.expires_at, reasons=list(stored.reasons),
                              reevaluation=outcome.reevaluation)

    @app.get("/v1/devices/{device}/attestation-results", response_model=list[AttestationOut], responses=problems)
    def list_results(device: str, _client: Annotated[str, Depends(authenticated)]) -> list[AttestationOut]:
        record = service.resolve(device)
        return [AttestationOut(device_id=record.id, device_serial=record.key.serial_number, accepted=r.accepted,
                               status=r.status.name.lower() if r.status else None, binding=r.binding,
                               expires_at=r.expires_at, reasons=list(r.reasons), reevaluation=None)
                for r in service.results.results(record.id)]

    @app.post("/v1/devices/{device}/attestation-nonce", status_code=201, response_model=NonceOut,
              responses=problems)
    def new_nonce(device: str, _client: Annotated[str, Depends(authenticated)]) -> NonceOut:
        record = service.resolve(device)
        now = clock()
        nonce = service.results.issue_nonce(record.id, now, _NONCE_TTL)
        return NonceOut(device_id=record.id, nonce=nonce, expires_at=now + _NONCE_TTL)

    app.state.store = store
    app.state.limits = limits
    app.add_middleware(RequestGuard, tokens=[secret for _name, secret in tokens], limits=limits)
    return app


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


def server_config(app: FastAPI, host: str, port: int, limits: ApiLimits | None = None,
                  log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration ``trustport api serve`` runs: h11 with a head deadline, bounded heads,
    connections and keep-alive."""
    limits = limits or ApiLimits()
    protocol = type("TrustportH11Protocol", (HeadDeadlineProtocol,), {"header_timeout_s": limits.header_timeout_s})
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol,
                          timeout_keep_alive=limits.keep_alive_s,
                          h11_max_incomplete_event_size=limits.max_header_bytes,
                          limit_concurrency=limits.max_connections, timeout_graceful_shutdown=limits.keep_alive_s,
                          server_header=False)
