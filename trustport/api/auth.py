"""Who is asking, and whether their role may: ``require(role)`` is the dependency every /v1 route declares.

``RequestGuard`` authenticated the bearer token (off the event loop) and put the ``Principal`` in the ASGI scope;
``require`` reads it and refuses a role too low with 403. viewer < operator < admin (see
``trustport.services.accounts``). The role a route needs is added to its OpenAPI description."""

# No ``from __future__ import annotations``: FastAPI reads these signatures' real types.
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from trustport.api.core import PRINCIPAL, UNAUTHENTICATED, problem
from trustport.app import App
from trustport.services.accounts import Principal, Role

bearer_scheme = HTTPBearer(auto_error=False, description="an API token: 'trustport tokens create NAME --role R'")


@dataclass(frozen=True)
class ApiContext:
    """What the routes share: the composition root and the clock."""

    root: App
    clock: Callable[[], datetime]


def require(role: Role) -> Any:
    """A dependency giving the request's ``Principal`` if its role is at least ``role``; 401 / 403 otherwise."""

    def principal(request: Request,
                  _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]) -> Principal:
        found = request.scope.get(PRINCIPAL)
        if not isinstance(found, Principal):
            raise problem(401, "unauthenticated", UNAUTHENTICATED, {"WWW-Authenticate": "Bearer"})
        if not found.allows(role):
            raise problem(403, "forbidden", f"role {found.role} cannot {request.method} {request.url.path[:80]}: it "
                                            f"needs role {role} or higher (token or user {found.name!r})")
        return found

    principal.required_role = role  # type: ignore[attr-defined]  # read by document_roles
    return Depends(principal)


Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]
Admin = Annotated[Principal, require("admin")]


def document_roles(routes: Sequence[BaseRoute]) -> None:
    """Append the role each route needs to its OpenAPI description, and document its 401 and 403 (call it on a
    router before it is included)."""
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        roles = [getattr(d.call, "required_role", None) for d in route.dependant.dependencies]
        role = next((r for r in roles if r is not None), None)
        if role is None:
            continue
        note = f"**Role:** {role} or higher (viewer < operator < admin)."
        route.description = f"{route.description}\n\n{note}" if route.description else note
        route.openapi_extra = {**(route.openapi_extra or {}), "x-trustport-role": role}
        for code, text in ((401, "no or an invalid bearer token"), (403, f"a role lower than {role}")):
            route.responses.setdefault(code, {"description": text})
