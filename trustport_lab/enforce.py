"""The lab's continuous-authorization story: a connected device is quarantined by an operator and another by a
failing attestation; the worker moves the fake switch port (CoA is NAKed by the fake NAS, so it falls back to
the CLI), reads it back, and the device re-authenticates into quarantine. Then the NAS goes silent (it answers
no CoA at all) and a third device is quarantined: the NAS's silence sends the job to the switch fallback at once,
and the port is moved all the same.

The fake switch (SSH, Cisco IOS CLI) and fake NAS are the simulators in ``trustport_lab.fakes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from policy.text import safe_text
from trustport.cli.base import table
from trustport.files import write_private
from trustport_lab.fakes.coa_nas import CoaNas
from trustport_lab.fakes.fake_cli import FakeCliServer, PortState

PORT_COUNT = 16  # one per scenario, and the onboarding story's new device
SWITCH_ENV = {"TP_LAB_SWITCH_PASSWORD": "lab-switch-pass", "TP_LAB_ENABLE_SECRET": "lab-enable-secret",
              "TP_LAB_COA_SECRET": "lab-coa-secret-123"}


@dataclass
class LabNetwork:
    switch: FakeCliServer
    nas: CoaNas
    extra_config: dict[str, object]

    def port(self, number: int) -> PortState:
        return self.switch.states["cisco_ios"].ports[f"GigabitEthernet1/0/{number}"]


@contextlib.contextmanager
def lab_network(work: Path) -> Iterator[LabNetwork]:
    """A fake Cisco access switch and a fake CoA NAS on loopback, and the config that points trustport at them."""
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # the fake's "socket.send() raised" on client hang-up
    os.environ.update(SWITCH_ENV)
    switch = FakeCliServer(vendors=("cisco_ios",))
    state = switch.states["cisco_ios"]
    state.password, state.secret = SWITCH_ENV["TP_LAB_SWITCH_PASSWORD"], SWITCH_ENV["TP_LAB_ENABLE_SECRET"]
    state.ports = {f"GigabitEthernet1/0/{i}": PortState(vlan=1) for i in range(1, PORT_COUNT + 1)}
    state.vlans |= {30, 35, 40, 90, 999}
    nas = CoaNas(secret=SWITCH_ENV["TP_LAB_COA_SECRET"].encode(), sessions=set())  # knows no session: NAK
    switch.start()
    nas.start()
    try:
        (work / "known_hosts").write_text(switch.known_hosts_lines())
        inventory = {"switches": {
            "access-1": {"driver": "cisco_ios", "address": "127.0.0.1", "port": switch.ports["cisco_ios"],
                         "site": "lab", "options": {"username": "admin", "password_env": "TP_LAB_SWITCH_PASSWORD",
                                                    "enable_secret_env": "TP_LAB_ENABLE_SECRET",
                                                    "known_hosts": str(work / "known_hosts"), "conn_timeout": 3,
                                                    "read_timeout": 5}},
            "access-1-coa": {"driver": "coa", "address": "127.0.0.1", "port": nas.port,
                             "options": {"secret_env": "TP_LAB_COA_SECRET", "vendor": "cisco", "timeout": 0.5,
                                         "retries": 2}},
        }}
        write_private(work / "inventory.yaml", yaml.safe_dump(inventory).encode())
        extra: dict[str, object] = {"enforcement": {
            "inventory": "inventory.yaml", "backoff_seconds": 1,
            "nas": [{"nas_ip": "127.0.0.1", "coa": "access-1-coa", "switch": "access-1",
                     "ports": {str(i): f"Gi1/0/{i}" for i in range(1, PORT_COUNT + 1)}}],
        }}
        yield LabNetwork(switch, nas, extra)
    finally:
        nas.stop()
        switch.stop()


@dataclass(frozen=True)
class StoryRow:
    step: str
    port: str
    before: int
    after: int
    reauth: str
    ms: float
    detail: str


def apply_radius_vlan(network: LabNetwork, port: int, vlan: int | None) -> None:
    """What a real 802.1X switch does with Tunnel-Private-Group-Id: put the port in that VLAN."""
    if vlan is not None:
        network.port(port).vlan = vlan


def run_story(lab: Any, network: LabNetwork, echo: Callable[[str], None]) -> list[StoryRow]:
    from trustport.services.enforcement import Enforcement
    from trustport.services.lifecycle import LifecycleService
    from trustport.worker.executor import DriverExecutor
    from trustport.worker.loop import Worker
    from trustport_lab.attest import post_token

    config = lab.config
    enforcement = Enforcement(config, lab.store)
    executor = DriverExecutor.from_file(config.path(config.enforcement.inventory))
    settings = dataclasses.replace(enforcement.worker_settings, concurrency=1)  # one switch: output in order
    worker = Worker(enforcement.queue, executor, settings, worker_id="lab-worker", sessions=enforcement.sessions,
                    on_event=lambda job, message: echo(f"    job #{job.id}: {safe_text(message)}"))
    rows = []

    def move(step: str, serial: str, trigger: Callable[[], str]) -> None:
        port = lab.ports[serial]
        before = network.port(port).vlan
        start = time.perf_counter()
        detail = trigger()
        jobs = worker.drain()
        elapsed = (time.perf_counter() - start) * 1000
        after = network.port(port).vlan
        reauth = lab.authenticate(serial)
        apply_radius_vlan(network, port, reauth.vlan)
        got = f"{reauth.code} VLAN {reauth.vlan}" if reauth.vlan is not None else reauth.code
        states = ", ".join(f"#{j.id} {j.state}" for j in jobs) or "no job"
        rows.append(StoryRow(step, f"Gi1/0/{port}", before, after, got, elapsed, f"{detail}; jobs: {states}"))

    echo("  operator: trustport devices quarantine SN-1001 --reason 'unexpected traffic'")
    service = LifecycleService(config, lab.store)

    def operator(serial: str, reason: str) -> Callable[[], str]:
        def act() -> str:
            device = next(d for d in lab.store.list_devices() if d.key.serial_number == serial)
            result = service.act(device, "quarantine", actor="lab-operator", reason=reason, now=datetime.now(UTC))
            return f"{result.before.state.value} -> {result.after.state.value}"
        return act

    move("operator quarantines SN-1001", "SN-1001", operator("SN-1001", "unexpected traffic"))

    echo("  verifier: POST /v1/attestation-results (SN-1102 now contraindicated)")

    def attestation() -> str:
        body = post_token(lab, "SN-1102", "contraindicated")
        enforcement.drain_reevaluations(datetime.now(UTC))
        return f"attestation {body.get('status')}: {body.get('reevaluation')}"

    move("attestation of SN-1102 drops", "SN-1102", attestation)

    echo("  the NAS stops answering CoA; operator: trustport devices quarantine SN-1104 --reason 'lateral movement'")
    network.nas.silent = True
    worker_log = logging.getLogger("trustport.worker")
    level = worker_log.level
    worker_log.setLevel(logging.ERROR)  # its warning says what the job lines below say
    try:
        move("quarantine via a silent NAS", "SN-1104", operator("SN-1104", "lateral movement"))
    finally:
        network.nas.silent = False
        worker_log.setLevel(level)
    return rows


def format_story(rows: list[StoryRow]) -> str:
    return table(("what happened", "switch port", "VLAN before", "after (read back)", "device re-authenticates",
                  "ms", "how"),
                 [(r.step, r.port, r.before, r.after, r.reauth, f"{r.ms:.0f}", r.detail) for r in rows])
