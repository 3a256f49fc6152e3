"""``create_app``: the REST API on trustport's services, the OpenAPI docs from local assets, the dashboard."""

# No ``from __future__ import annotations``: FastAPI reads these signatures' real types.
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from policy.errors import AttestationError
from trustport.api import routes_admin, routes_devices, routes_ops
from trustport.api.attestation_models import ProblemOut
from trustport.api.auth import ApiContext, document_roles
from trustport.api.core import ApiLimits, RequestGuard, install_problem_handlers
from trustport.app import App
from trustport.services.accounts import Principal
from trustport.settings.config import TrustportConfig

STATIC = Path(__file__).with_name("static")
DOCS_STATIC = "/docs/static"

DESCRIPTION = """Trusted network-layer onboarding: the device registry, lifecycle actions, sessions, decisions,
enforcement jobs, audit, policy and attestation results -- the same services as the `trustport` CLI.

Every route but `/healthz` and these documents needs `Authorization: Bearer <token>`: a token from
`trustport tokens create NAME --role R` or the config's `api.tokens`. Roles: **viewer** reads everything,
**operator** also acts (lifecycle actions, jobs, sessions, attestation results), **admin** also manages tokens,
users and device registration. Errors are `{"detail": {"reason", "message"}}`."""


def create_app(config: TrustportConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
               limits: ApiLimits | None = None) -> FastAPI:
    if config.api is None:
        raise AttestationError("the REST API is not configured: add an 'api:' section (tokens: 'trustport tokens "
                               "create')")
    limits = limits or ApiLimits()
    root = App(config)
    store = root.store
    accounts = root.accounts
    ctx = ApiContext(root, clock)
    app = FastAPI(title="trustport", version="0.1.0", description=DESCRIPTION, docs_url=None, redoc_url=None)
    install_problem_handlers(app)
    problems: dict[int | str, dict[str, Any]] = {
        code: {"model": ProblemOut} for code in (400, 401, 403, 404, 408, 409, 413, 422, 503)}

    @app.get("/healthz", responses={503: {"model": ProblemOut}}, tags=["health"], summary="Liveness + registry")
    def healthz() -> dict[str, str]:
        """Public: 200 when the registry answers, 503 when it does not."""
        store.ping()
        return {"status": "ok"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="trustport API",
                                   swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png")

    app.mount(DOCS_STATIC, StaticFiles(directory=STATIC), name="docs-static")
    for module in (routes_devices, routes_ops, routes_admin):
        router = module.router(ctx, problems)
        document_roles(router.routes)
        app.include_router(router)
    if config.api.dashboard:
        _mount_dashboard(app, root, clock)

    def authenticate(secret: str) -> Principal | None:
        return accounts.authenticate_token(secret, clock())

    app.state.store = store
    app.state.limits = limits
    app.state.root = root
    app.add_middleware(RequestGuard, authenticate=authenticate, limits=limits)
    return app


def _mount_dashboard(app: FastAPI, root: App, clock: Callable[[], datetime]) -> None:
    """The dashboard's routes under /ui (its own cookie login)."""
    from trustport.dashboard import mount

    mount(app, root, clock)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)
