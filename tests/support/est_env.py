"""An EST set-up over the test PKI: a config with an owner CA (``ca:``) that is also an ldevid trust anchor, a fresh
registry, its first CRL, and helpers to make IDevIDs and register devices the way an operator would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from policy.model import LifecycleState
from tests.pki_fixtures import DevicePki
from trustport.app import App
from trustport.cli.main import cli
from trustport.services.ca import OwnerCA
from trustport.settings.config import TrustportConfig, load_config
from trustport_lab.pki import Issued, issue_device, make_ca

SECRET = "est-test-shared-secret-0123"


@dataclass
class EstEnv:
    root: Path
    pki: DevicePki
    config_file: Path
    config: TrustportConfig
    app: App
    ca: OwnerCA
    owner: Issued

    def idevid(self, serial: str, *, key_kind: str = "p256", cn: str | None = None) -> tuple[Path, Path]:
        """A fresh IDevID from the test manufacturer CA, written as ``<serial>.pem`` / ``.key``."""
        now = datetime.now(UTC)
        issued = issue_device(self.pki.cas["idevid"], cn=cn or f"{serial.lower()}.devices.example",
                              serial_number=serial, now=now, key_kind=key_kind,
                              mud_url="https://mud.acme.example/sensor.json")
        return issued.write(self.root / "devices", serial)

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(cli, [*args, "--config", str(self.config_file)])
        assert result.exit_code == 0, result.output
        return result.output

    def register(self, cert: Path, state: LifecycleState) -> None:
        """``devices add --cert`` (validated as RADIUS would), then the lifecycle actions to reach ``state``."""
        self.cli("devices", "add", "--cert", str(cert), "--state", "pending")
        serial = cert.stem
        if state is LifecycleState.ONBOARDING:
            self.cli("devices", "onboard", serial)
        elif state is LifecycleState.OPERATIONAL:
            self.cli("devices", "approve", serial)
        elif state is LifecycleState.QUARANTINED:
            self.cli("devices", "quarantine", serial)
        elif state is LifecycleState.DECOMMISSIONED:
            self.cli("devices", "decommission", serial, "--reason", "returned to vendor")

    def close(self) -> None:
        self.app.close()


def build_est_env(pki: DevicePki, root: Path, **extra: Any) -> EstEnv:
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(minutes=1)
    owner = make_ca("Owner LDevID CA", "Example Site", now=now, path_length=0)
    owner.write(root, "owner-ca")
    (root / "crl").mkdir(exist_ok=True)
    data: dict[str, Any] = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "run_as_user": None, "reject_delay": 0,
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": SECRET}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))},
                          {"name": "owner", "role": "ldevid", "file": str(root / "owner-ca.pem")}],
        "revocation": {"crl_dir": str(root / "crl"), "refresh_seconds": 1},
        "segments": {"production": 30, "onboarding": 90, "quarantine": 999},
        "policy": {"default_segment": "production", "onboarding_segment": "onboarding"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "ca": {"name": "owner", "certificate": str(root / "owner-ca.pem"), "key": str(root / "owner-ca.key")},
        **extra,
    }
    config_file = root / "trustport.yaml"
    config_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["db", "init", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    config = load_config(config_file)
    app = App(config)
    ca = OwnerCA.load(config, app.store)
    ca.publish_crl(datetime.now(UTC))
    return EstEnv(root, pki, config_file, config, app, ca, owner)
