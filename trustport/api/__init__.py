"""trustport's REST API (FastAPI): the device-management API behind the same services as the CLI, with roles.

* ``core``: ``RequestGuard`` (path checks, bearer authentication and bounded bodies before any route), problems;
* ``auth``: ``require(role)``, the principal of a request;
* ``routes_devices``, ``routes_ops``, ``routes_admin``: the /v1 routes and /metrics;
* ``app``: ``create_app`` (OpenAPI docs at /docs from local assets, the dashboard under /ui);
* ``server``: ``server_config``, the uvicorn configuration ``trustport api serve`` runs (HTTPS when configured).

See docs/api.md.
"""

from trustport.api.app import create_app
from trustport.api.core import MAX_BODY_BYTES, PUBLIC_PATHS, ApiLimits, RequestGuard, problem, problem_body
from trustport.api.server import HeadDeadlineProtocol, server_config

__all__ = ["MAX_BODY_BYTES", "PUBLIC_PATHS", "ApiLimits", "HeadDeadlineProtocol", "RequestGuard", "create_app",
           "problem", "problem_body", "server_config"]
