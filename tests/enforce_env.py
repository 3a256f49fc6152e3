"""An enforcement test environment: real SQLite registry, fake Cisco switch over SSH, fake CoA NAS, inventory."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from policy.model import DeviceKey, DeviceRecord, LifecycleState, NetworkContext
from policy.x509facts import facts_from_certificate
from tests.pki_fixtures import DevicePki
from trustport.settings.config import TrustportConfig, load_config
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore
from trustport_lab.fakes.coa_nas import CoaNas
from trustport_lab.fakes.fake_cli import FakeCliServer, PortState

SWITCH_PASSWORD = "fake-pass-123"
ENABLE_SECRET = "fake-enable-456"
PORTS = {str(i): f"Gi1/0/{i}" for i in range(1, 9)}


def switch_ports(count: int) -> dict[str, PortState]:
    return {f"GigabitEthernet1/0/{i}": PortState(vlan=30) for i in range(1, count + 1)}


@contextmanager
def fake_switch(port: int = 0, count: int = 8) -> Iterator[FakeCliServer]:
    server = FakeCliServer(vendors=("cisco_ios",), ports={"cisco_ios": port} if port else None)
    state = server.states["cisco_ios"]
    state.ports = switch_ports(count)
    state.vlans |= {30, 35, 40, 999}
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class EnforceEnv:
    work: Path
    pki: DevicePki
    switch_port: int
    coa_port: int
    config_path: Path = field(init=False)
    config: TrustportConfig = field(init=False)
    store: SqlDeviceStore = field(init=False)
    host_key_lines: str = ""

    def write(self, *, coa: bool, switch: bool = True, coa_mode: str = "reauth", switch_port: int | None = None,
              read_timeout: float = 4.0, max_attempts: int = 5, lease_seconds: float = 60.0,
              extra_switches: dict[str, Any] | None = None, nas: list[dict[str, Any]] | None = None,
              directory: dict[str, Any] | None = None) -> None:
        (self.work / "known_hosts").write_text(self.host_key_lines)
        switches: dict[str, Any] = {
            "access-1": {"driver": "cisco_ios", "address": "127.0.0.1", "port": switch_port or self.switch_port,
                         "options": {"username": "admin", "password_env": "TP_TEST_SWITCH_PASSWORD",
                                     "enable_secret_env": "TP_TEST_ENABLE_SECRET",
                                     "known_hosts": str(self.work / "known_hosts"), "conn_timeout": 2,
                                     "read_timeout": read_timeout}},
            "nas-coa": {"driver": "coa", "address": "127.0.0.1", "port": self.coa_port,
                        "options": {"secret_env": "TP_TEST_COA_SECRET", "vendor": "cisco", "timeout": 0.5,
                                    "retries": 2}},
            **(extra_switches or {}),
        }
        (self.work / "inventory.yaml").write_text(yaml.safe_dump({"switches": switches}))
        binding: dict[str, Any] = {"nas_ip": "127.0.0.1", "ports": PORTS, "coa_mode": coa_mode}
        if coa:
            binding["coa"] = "nas-coa"
        if switch:
            binding["switch"] = "access-1"
        data = {
            "radius": {"server_certificate": str(self.pki.cert_path("server")),
                       "server_key": str(self.pki.key_path("server")),
                       "clients": [{"name": "nas", "address": "127.0.0.1", "secret": secrets.token_urlsafe(20)}]},
            "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(self.pki.cert_path("idevid-ca"))},
                              {"name": "site", "role": "ldevid", "file": str(self.pki.cert_path("ldevid-ca"))}],
            "revocation": {"crl_dir": str(self.pki.root / "crl")},
            "segments": {"production": 30, "cameras": 40, "quarantine": 999},
            "policy": {"default_segment": "production"},
            "database": {"url": "sqlite:///registry.sqlite"},
            "enforcement": {"inventory": "inventory.yaml", "nas": nas or [binding], "max_attempts": max_attempts,
                            "backoff_seconds": 2, "lease_seconds": lease_seconds},
            **({"directory": directory} if directory is not None else {}),
        }
        self.config_path = self.work / "trustport.yaml"
        self.config_path.write_text(yaml.safe_dump(data))
        self.config = load_config(self.config_path)
        self.store = SqlDeviceStore(self.config.database_url(), create=True)
        self.store.ensure_schema()  # now, so another App on this config finds the registry

    def connected_device(self, name: str, port: str, mac: str, now: datetime | None = None) -> DeviceRecord:
        """A registered operational device with an active session on NAS 127.0.0.1, NAS-Port ``port``."""
        now = now or datetime.now(UTC)
        facts = facts_from_certificate(self.pki.devices[name].cert)
        assert facts.device_serial
        key = DeviceKey(facts.issuer, facts.device_serial)
        device = self.store.find_device(key) or self.store.add_device(
            key, state=LifecycleState.OPERATIONAL, now=now, facts=facts, segment="production")
        SqlSessionStore(self.store).authenticated(device.id, NetworkContext(nas_ip="127.0.0.1", nas_port=port,
                                                                            calling_station_id=mac), 30,
                                                  "production", now)
        return device


ENV = {"TP_TEST_SWITCH_PASSWORD": SWITCH_PASSWORD, "TP_TEST_ENABLE_SECRET": ENABLE_SECRET,
       "TP_TEST_COA_SECRET": "testing123"}


def coa_nas(sessions: set[str]) -> CoaNas:
    return CoaNas(sessions=sessions).start()
