"""The dashboard's plumbing: templates (autoescaped, untrusted text shown with its control characters escaped),
cookie sessions, CSRF, roles, security headers, and the error pages every route falls back to.

A route raises ``Refused`` (a status and a message for the operator) or lets a trustport error escape; the
``DashboardRoute`` class turns either into an HTML page with the right status (404 unknown device or job, 409 a
refused transition or job state, 503 the registry is down), never a traceback.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from policy.errors import DeviceNotFound, StoreError, TrustportError
from policy.lifecycle import TransitionRefused
from policy.text import safe_text
from trustport.app import App
from trustport.services.accounts import Principal, Role
from trustport.store.queue import JobNotFound, JobStateError

log = logging.getLogger("trustport.dashboard")

HERE = Path(__file__).parent
COOKIE = "trustport_session"
LOGIN_COOKIE = "trustport_login"  # the login form's CSRF token (double submit): no session exists yet
PREFIX = "/ui"
MAX_FORM_BYTES = 256 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}


class Refused(Exception):
    """An answer other than the page: a status and what to tell the operator."""

    def __init__(self, status: int, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


class LoginNeeded(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def _finalize(value: object) -> object:
    """Every ``{{ value }}``: None shows as nothing, text with its control/bidi characters escaped (autoescape
    then makes it HTML-safe); markup made by the templates themselves (``tojson``) is left alone."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return safe_text(value)
    return value


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    s = abs(int(seconds))
    if s < 120:
        text = f"{s} s"
    elif s < 7200:
        text = f"{s // 60} min"
    elif s < 172800:
        text = f"{s // 3600} h"
    else:
        text = f"{s // 86400} d"
    return sign + text


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path of the dashboard itself (no scheme, host, ``//`` or backslash),
    else the overview."""
    default = PREFIX + "/"
    if not target or len(target) > 2000 or not target.startswith(PREFIX + "/"):
        return default
    if any(c in target for c in "\\\r\n\t") or "//" in target or any(ord(c) < 0x20 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


@dataclass
class Dashboard:
    app: App
    clock: Callable[[], datetime]
    env: Environment

    @classmethod
    def build(cls, app: App, clock: Callable[[], datetime]) -> Dashboard:
        env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True,
                          default_for_string=True), finalize=_finalize, trim_blocks=True, lstrip_blocks=True)
        env.filters["ts"] = fmt_time
        env.filters["age"] = fmt_age
        env.filters["q"] = lambda v: quote(str(v), safe="")
        return cls(app, clock, env)

    # -- settings --------------------------------------------------------------------------------------------

    @property
    def secure_cookie(self) -> bool:
        api = self.app.config.api
        return api is not None and api.tls_certificate is not None

    @property
    def session_minutes(self) -> int:
        api = self.app.config.api
        return api.session_minutes if api is not None else 480

    # -- rendering -------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, context: Mapping[str, Any], *, status: int = 200,
               principal: Principal | None = None) -> HTMLResponse:
        html = self.env.get_template(template).render(
            request=request, me=principal, now=self.clock(), path=request.url.path, **context)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def message(self, request: Request, status: int, message: str, *, title: str | None = None,
                principal: Principal | None = None) -> HTMLResponse:
        titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Refused", 422: "Check the form",
                  503: "Registry unavailable", 500: "Something went wrong"}
        return self.render(request, "message.html", {"title": title or titles.get(status, "Error"),
                                                      "message": message, "status": status},
                           status=status, principal=principal)

    # -- sessions, roles, CSRF -------------------------------------------------------------------------------

    def principal(self, request: Request, needed: Role = "viewer") -> Principal:
        """The logged-in user (else ``LoginNeeded``), who must have at least ``needed`` (else 403)."""
        cookie = request.cookies.get(COOKIE, "")
        found = self.app.accounts.session(cookie, self.clock()) if cookie else None
        if found is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginNeeded(target)
        request.state.principal = found
        if not found.allows(needed):
            raise Refused(403, f"{found.name} is a {found.role}: this needs the {needed} role")
        return found

    async def form(self, request: Request, principal: Principal | None = None) -> dict[str, list[str]]:
        """The POSTed form (urlencoded), after its CSRF token is checked against the session's (or, for the login
        form, against the login cookie): a missing or wrong token is 403 and the caller writes nothing."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
            raise Refused(413, "the form is too large")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "the form is too large")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and kind not in ("application/x-www-form-urlencoded", ""):
            raise Refused(415, "send the form as application/x-www-form-urlencoded")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=2000)
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "the form could not be read") from None
        fields: dict[str, list[str]] = {}
        for key, value in pairs:
            fields.setdefault(key, []).append(value)
        sent = request.headers.get("x-csrf-token") or (fields.get("csrf") or [""])[0]
        expected = principal.csrf_token if principal is not None else request.cookies.get(LOGIN_COOKIE)
        if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Refused(403, "the form's security token is missing or out of date: reload the page and try "
                               "again (nothing was changed)", "Form refused")
        return fields

    @staticmethod
    def new_login_token() -> str:
        return secrets.token_urlsafe(24)


def field(fields: Mapping[str, list[str]], name: str, *, limit: int = 500) -> str:
    value = (fields.get(name) or [""])[0].strip()
    if len(value) > limit:
        raise Refused(422, f"{name} is longer than {limit} characters")
    return value


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _status_of(exc: Exception) -> int:
    if isinstance(exc, DeviceNotFound | JobNotFound):
        return 404
    if isinstance(exc, StoreError):
        return 503
    if isinstance(exc, TransitionRefused | JobStateError):
        return 409
    return 409


def dashboard_route_class(dashboard: Dashboard) -> type[APIRoute]:
    """A route class whose handlers answer every failure with a page: login redirect, refusal, trustport error
    (404/409/503) or, for a bug, a plain 500 page without the traceback (which goes to the log)."""

    class DashboardRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except LoginNeeded as exc:
                    login = f"{PREFIX}/login?next={quote(safe_next(exc.target), safe='/')}"
                    if is_htmx(request):
                        return Response(status_code=401, headers={**PAGE_HEADERS, "HX-Redirect": login})
                    return RedirectResponse(login, status_code=303, headers=PAGE_HEADERS)
                except Refused as exc:
                    return await run_in_threadpool(dashboard.message, request, exc.status, exc.message,
                                                   title=exc.title, principal=_who(request))
                except TrustportError as exc:
                    status = _status_of(exc)
                    text = str(exc)
                    if status == 503:
                        log.warning("dashboard: %s", safe_text(text, 500))
                        text = f"The registry database is not answering: {text}. Try again in a moment."
                    return await run_in_threadpool(dashboard.message, request, status, text,
                                                   principal=_who(request))
                except (HTTPException, RequestValidationError):
                    raise  # FastAPI's own answers
                except Exception:
                    log.exception("dashboard: unexpected error on %s", safe_text(request.url.path, 200))
                    return dashboard.message(request, 500, "An unexpected error occurred; it has been logged. "
                                             "Nothing more is known here.", principal=_who(request))

            return guarded

    return DashboardRoute


def _who(request: Request) -> Principal | None:
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else None
