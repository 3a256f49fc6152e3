"""The REST API on a real SQLite registry with one token per role, for the API's role and input tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from policy.model import DeviceRecord
from tests.attest_env import AttestEnv
from trustport.api import create_app
from trustport.app import App

NOW = datetime.now(UTC).replace(microsecond=0)
ROLES = ("viewer", "operator", "admin")


@dataclass
class ApiEnv:
    env: AttestEnv
    client: TestClient
    tokens: dict[str, str]  # role -> bearer secret (registry tokens named after their role)
    device: DeviceRecord

    def auth(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}


def serve_api(env: AttestEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    """The ``api`` fixture's body: tokens for every role, one registered device, a TestClient."""
    with App(env.config) as root:
        tokens = {role: root.accounts.create_token(f"{role}-token", role, actor="test", now=NOW)[1] for role in ROLES}
    device = env.register("ldevid-ok", NOW, seen=True)
    app = create_app(env.config, clock=lambda: NOW)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield ApiEnv(env, client, tokens, device)
