"""The web dashboard (operator's console), served by trustport itself under ``/ui``, offline: every asset
(CSS, htmx, the little JavaScript) ships in this package and is served from ``/ui/static/``.

``mount`` adds the dashboard's routes to the REST API's FastAPI application. Pages authenticate by the session
cookie (``trustport_session``) themselves; every POST carries the session's CSRF token; viewers read, operators
act on devices and jobs. See docs/dashboard.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI, Response

from trustport.app import App
from trustport.dashboard.routes import build_router
from trustport.dashboard.web import HERE, PREFIX, SECURITY_HEADERS, Dashboard

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml", ".ico": "image/x-icon"}

__all__ = ["mount"]


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every shipped asset, read once: only these names are served (nothing else of the file system)."""
    out: dict[str, tuple[bytes, str]] = {}
    for path in sorted((HERE / "static").iterdir()):
        kind = STATIC_TYPES.get(path.suffix.lower()) or ("text/plain; charset=utf-8"
                                                         if path.name.upper().startswith("LICENSE") else None)
        if path.is_file() and kind is not None:
            out[path.name] = (path.read_bytes(), kind)
    return out


def mount(api: FastAPI, app: App, clock: Callable[[], datetime]) -> None:
    """Add the dashboard to ``api``: its pages under ``/ui`` and its assets under ``/ui/static``."""
    dashboard = Dashboard.build(app, clock)
    files = _static_files()

    @api.get(PREFIX + "/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        found = files.get(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
        body, kind = found
        return Response(body, media_type=kind, headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"})

    api.include_router(build_router(dashboard))
