"""The guard in front of every route, and problem-style errors.

``RequestGuard`` (ASGI middleware) checks, from the request head alone and before a byte of the body is read: the
path (no ``..`` segments, encoded slashes, NUL or control characters, undecodable bytes, nothing over-long), then
the bearer token -- looked up off the event loop (``AccountService.authenticate_token``: config tokens in constant
time, registry tokens by their SHA-256) -- and puts the ``Principal`` in the ASGI scope. Then it reads the body
itself: it counts the bytes that actually arrive (sized or chunked), stops at ``max_body_bytes`` with 413, and
answers 408 when the body does not arrive in time. Early answers close the connection, so nothing more of the body
is read. Paths under ``/ui`` (the dashboard, which authenticates by its session cookie) and the public paths
(``/healthz``, ``/docs`` and its local assets, ``/openapi.json``) pass without a token; body limits still apply.

Errors are problems: ``{"detail": {"reason": <code>, "message": <what failed, what to do>}}``. They never echo
the request back; a database outage is 503 with Retry-After, never 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from policy.errors import DeviceExists, DeviceNotFound, StoreError, TrustportError
from trustport.services.accounts import AccountError, Principal
from trustport.services.attestation import InvalidDeviceRef
from trustport.store.accounts import NameTaken
from trustport.store.queue import JobNotFound, JobStateError

MAX_BODY_BYTES = 256 * 1024
MAX_PATH_CHARS = 8192  # a 5000-digit "device id" still reaches the route (and gets its own 422)
MAX_TOKEN_BYTES = 512
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/"})
PUBLIC_PREFIXES = ("/docs/static/",)
COOKIE_PREFIXES = ("/ui/", )  # the dashboard's own routes: cookie sessions, checked by the dashboard
RETRY_AFTER_S = 5
PRINCIPAL = "trustport.principal"  # the ASGI scope key the guard sets
_MESSAGE_CHARS = 500

log = logging.getLogger("trustport.api")


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


def json_text(text: str, limit: int) -> str:
    """``text`` that can always be sent as UTF-8 JSON (a lone surrogate becomes an escape), cut at ``limit``;
    JSON itself escapes control characters, and messages quote untrusted values with repr() already."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


def problem_body(reason: str, message: str) -> dict[str, Any]:
    return {"detail": {"reason": reason, "message": json_text(message, _MESSAGE_CHARS)}}


def problem(code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(code, problem_body(reason, message)["detail"], headers=headers)


def path_problem(scope: Scope) -> str | None:
    """Why a request path (or its query string) is refused before routing (None: it may be routed)."""
    path = str(scope.get("path", ""))
    raw = bytes(scope.get("raw_path") or path.encode("utf-8", "replace"))
    if len(path) > MAX_PATH_CHARS or len(raw) > 3 * MAX_PATH_CHARS:
        return f"the path is longer than {MAX_PATH_CHARS} characters; no route takes one so long"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return "the path contains a NUL or control character"
    if "\ufffd" in path:
        return "the path is not UTF-8 once percent-decoded"
    lowered = raw.lower()
    if b"%2f" in lowered or b"%5c" in lowered or "\\" in path:
        return "an encoded '/' or a backslash is not allowed in a path (refer to such a device by its registry id)"
    if any(part in (".", "..") for part in path.split("/")):
        return "'.' and '..' path segments are not allowed"
    query = bytes(scope.get("query_string", b""))
    if b"%00" in query or b"\x00" in query or len(query) > MAX_PATH_CHARS:
        return f"the query string contains a NUL character or is longer than {MAX_PATH_CHARS} characters"
    return None


def bearer_secret(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The token of exactly one ``Authorization: Bearer <token>`` header (ASCII, bounded), else None."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, presented = values[0].strip().partition(b" ")
    presented = presented.strip()
    if scheme.lower() != b"bearer" or not presented or len(presented) > MAX_TOKEN_BYTES or not presented.isascii():
        return None
    return presented.decode("ascii")


UNAUTHENTICATED = ("missing or invalid API token: send 'Authorization: Bearer <token>' with a token from "
                   "'trustport tokens create' or the config's api.tokens")


class RequestGuard:
    """ASGI middleware in front of the whole app: path and authentication from the head, then a bounded, timed
    body, read here (at most ``max_body_bytes``, within ``body_timeout_s``) and handed to the app whole, so no route
    can be reached by a body that was never counted."""

    def __init__(self, app: ASGIApp, authenticate: Callable[[str], Principal | None], limits: ApiLimits) -> None:
        self.app = app
        self.authenticate = authenticate
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        why = path_problem(scope)
        if why is not None:
            await answer(send, 400, "bad-path", why)
            return
        path = str(scope.get("path", ""))
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
        if not (path in PUBLIC_PATHS or path == "/ui" or path.startswith(PUBLIC_PREFIXES + COOKIE_PREFIXES)):
            secret = bearer_secret(headers)
            try:
                principal = None if secret is None else await anyio.to_thread.run_sync(self.authenticate, secret)
            except StoreError as exc:
                await answer(send, 503, "store-unavailable", f"{exc}; retry in {RETRY_AFTER_S} s",
                             [(b"retry-after", str(RETRY_AFTER_S).encode())])
                return
            if principal is None:
                await answer(send, 401, "unauthenticated", UNAUTHENTICATED, [(b"www-authenticate", b"Bearer")])
                return
            scope = {**scope, PRINCIPAL: principal}
        lengths = [value for name, value in headers if name.lower() == b"content-length"]
        if lengths:
            if len(set(lengths)) != 1 or not (lengths[0].isdigit() and len(lengths[0]) <= 18):
                await answer(send, 400, "bad-content-length", "Content-Length must be one ASCII decimal number")
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
                await answer(send, 408, "timeout", f"the request body did not arrive within "
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
        await answer(send, 413, "too-large", f"request body larger than {self.limits.max_body_bytes} bytes; an "
                                             "attestation result with its certificate is far smaller")


async def answer(send: Send, code: int, reason: str, message: str,
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
        where = ".".join(json_text(str(part), 40) for part in error.get("loc", ()))
        parts.append(f"{where}: {json_text(str(error.get('msg', 'invalid')), 160)}")
    return "; ".join(parts) + " (the request schema is at /docs)"


def _error_answer(exc: Exception) -> tuple[int, str, str] | None:
    """Status, reason and message for trustport's own errors (None: not one of them)."""
    message = str(exc)
    if isinstance(exc, InvalidDeviceRef):
        return 422, "bad-device-ref", message
    if isinstance(exc, DeviceNotFound):
        return 404, "unknown-device", message
    if isinstance(exc, JobNotFound):
        return 404, "unknown-job", message
    if isinstance(exc, JobStateError):
        return 409, "job-state", message
    if isinstance(exc, (NameTaken, DeviceExists)):
        return 409, "exists", message
    if isinstance(exc, StoreError):
        return 503, "store-unavailable", f"{message}; retry in {RETRY_AFTER_S} s"
    if isinstance(exc, AccountError):
        return 422, "invalid", message
    return None


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

    async def trustport_problem(request: Request, exc: Exception) -> JSONResponse:
        found = _error_answer(exc)
        if found is None:  # a TrustportError a route did not map: the request could not be carried out
            found = (422, "refused", str(exc))
        code, reason, message = found
        headers = {"Retry-After": str(RETRY_AFTER_S)} if code == 503 else None
        return JSONResponse(problem_body(reason, message), status_code=code, headers=headers)

    async def last_resort(request: Request, exc: Exception) -> JSONResponse:
        """A real bug: logged with its traceback, answered 500 without details."""
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(problem_body("internal-error", "the server failed on this request; the error is in its "
                                         "log"), status_code=500)

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(TrustportError, trustport_problem)
    app.add_exception_handler(Exception, last_resort)


_HINTS = {400: ": send one UTF-8 JSON object (the request schema is at /docs)",
          404: ": no such route (see /docs)", 405: ": see /docs for the methods of this route"}
_REASONS = {400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
            405: "method-not-allowed", 413: "too-large", 415: "unsupported-media-type"}
