"""A config with attestation + API enabled, on the test PKI, for the attestation tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from policy.model import DeviceKey, DeviceRecord, LifecycleState
from policy.x509facts import facts_from_certificate, spki_der
from tests.pki_fixtures import DevicePki
from trustport.settings.config import TrustportConfig, load_config
from trustport.store.sql import SqlDeviceStore
from trustport_lab.fake_verifier import SigningKey, new_signing_key, write_public_jwk

API_TOKEN = "api-token-" + "x" * 30


@dataclass
class AttestEnv:
    config: TrustportConfig
    config_path: Path
    verifier: SigningKey
    store: SqlDeviceStore
    pki: DevicePki

    def register(self, name: str, now: datetime, *, state: LifecycleState = LifecycleState.OPERATIONAL,
                 seen: bool = False) -> DeviceRecord:
        facts = facts_from_certificate(self.pki.devices[name].cert)
        assert facts.device_serial
        record = self.store.add_device(DeviceKey(facts.issuer, facts.device_serial), state=state, now=now,
                                       facts=facts, segment="production")
        if seen:
            self.store.record_seen(record.id, facts, now)
        return record

    def akpub(self, name: str) -> bytes:
        return spki_der(self.pki.devices[name].cert)


def make_env(pki: DevicePki, tmp_path: Path) -> AttestEnv:
    verifier = new_signing_key("p256")
    write_public_jwk(verifier, tmp_path / "verifier.jwk")
    data = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": secrets.token_urlsafe(20)}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))},
                          {"name": "site", "role": "ldevid", "file": str(pki.cert_path("ldevid-ca"))}],
        "revocation": {"crl_dir": str(pki.root / "crl")},
        "segments": {"production": 30, "restricted": 35, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "attestation": {"verifier_keys": [{"name": "veraison", "file": "verifier.jwk"}], "max_age_seconds": 3600,
                        "warning_segment": "restricted", "missing_ldevid_segment": "restricted"},
        "api": {"tokens": [{"name": "verifier", "secret": API_TOKEN}]},
    }
    path = tmp_path / "trustport.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    return AttestEnv(config, path, verifier, SqlDeviceStore(config.database_url(), create=True), pki)


@pytest.fixture
def env(pki: DevicePki, tmp_path: Path) -> Iterator[AttestEnv]:
    environment = make_env(pki, tmp_path)
    environment.store.ensure_schema()  # the registry exists before the API's own store opens it
    yield environment
    environment.store.close()
