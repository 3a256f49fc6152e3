"""The rlm_python3 hook outside radiusd: a stand-in for the ``radiusd`` module, hook settings over the test PKI,
a hook instance on a fresh registry, and a valid check-eap-tls request."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from policy.certificates import RevocationPolicy
from policy.document import PolicyDocument
from policy.model import CertKind
from radius_hooks.hook import Hook
from tests.pki_fixtures import NOW, DevicePki
from tests.radius_pairs import freeradius_pairs
from trustport.settings.hook import AnchorFile, AuthPath, HookSettings
from trustport.store.sql import SqlDeviceStore

REJECT, OK, UPDATED, NOOP, FAIL = 0, 2, 8, 7, 1


class FakeRadiusd(SimpleNamespace):
    """Stands in for the C module: constants and radlog (the real one is exercised by the integration tests)."""

    def __init__(self) -> None:
        super().__init__(RLM_MODULE_REJECT=REJECT, RLM_MODULE_OK=OK, RLM_MODULE_UPDATED=UPDATED,
                         RLM_MODULE_NOOP=NOOP, RLM_MODULE_FAIL=FAIL, L_INFO=3, L_ERR=4, L_AUTH=2, L_WARN=5,
                         config={}, lines=[])

    def radlog(self, level: int, message: str) -> None:
        self.lines.append((level, message))


# How the hook reaches the registry: "cached" as rendered from a config by default (cache + journal), "direct" as
# an older hook.json without auth_path (every read and write on the path).
AUTH_PATHS = ("cached", "direct")


def write_settings(pki: DevicePki, tmp: Path, auth_path: str = "cached") -> Path:
    settings = HookSettings(
        auth_path=AuthPath(cache=True, journal_dir=tmp / "journal") if auth_path == "cached" else AuthPath(),
        anchors=(AnchorFile("acme", CertKind.IDEVID, pki.cert_path("idevid-ca")),
                 AnchorFile("site", CertKind.LDEVID, pki.cert_path("ldevid-ca"))),
        crl_dir=pki.root / "crl", crl_refresh_seconds=30, revocation=RevocationPolicy(),
        policy=PolicyDocument.model_validate({"segments": {"production": 30, "quarantine": 999},
                                              "policy": {"default_segment": "production"}}),
        database_url=f"sqlite:///{tmp / 'registry.sqlite'}",
    )
    path = tmp / "hook.json"
    path.write_text(json.dumps(settings.to_json()))
    with SqlDeviceStore(settings.database_url, create=True) as registry:  # what 'trustport db init' does
        registry.ensure_schema()
    return path


@pytest.fixture
def hook(pki: DevicePki, tmp_path: Path) -> tuple[Hook, FakeRadiusd]:
    radiusd = FakeRadiusd()
    instance = Hook(radiusd, clock=lambda: NOW)
    assert instance.instantiate({"settings": str(write_settings(pki, tmp_path))}) == 0
    return instance, radiusd


def valid_request(pki: DevicePki, name: str = "idevid-ok", ca: str = "idevid") -> dict[str, Any]:
    return {"request": freeradius_pairs(pki.devices[name].cert, pki.cas[ca].cert),
            "config": (("Auth-Type", "Accept"),), "reply": None}
