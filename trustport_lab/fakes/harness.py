"""Driver-agnostic view of a driver + its fake, used by the contract suite and the bench.

Every driver in the registry needs a harness here: the contract suite is parametrised from the registry and fails for
a driver it cannot build (see docs/switch-drivers.md, "Adding a vendor in one file").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switch_drivers import AuthenticationError, ConnectError, DriverTimeout, SwitchDriver, Target, default_registry

from .coa_nas import CoaNas
from .fake_cli import FakeCliServer, PortState
from .snmp_agent import V3_AUTH, V3_PRIV, V3_USER, SnmpAgent

CLI_DRIVERS = ("cisco_ios", "aruba_aoscx", "hp_procurve", "juniper_junos", "arista_eos")
SNMP_DRIVERS = ("snmp_qbridge", "snmp_cisco_vmvlan")
ALL_DRIVERS = (*CLI_DRIVERS, *SNMP_DRIVERS, "coa")

# The access port each test moves, per driver (SNMP: ifName; CoA: a session selector).
GOOD_PORT = {
    "cisco_ios": "Gi1/0/5", "aruba_aoscx": "1/1/5", "hp_procurve": "5", "juniper_junos": "ge-0/0/5",
    "arista_eos": "Ethernet5", "snmp_qbridge": "Gi1/0/5", "snmp_cisco_vmvlan": "Gi1/0/5",
    "coa": "AA-BB-CC-00-11-22",
}
# A well-formed interface name the fake switch does not have.
MISSING_PORT = {
    "cisco_ios": "Gi1/0/99", "aruba_aoscx": "1/1/49", "hp_procurve": "49", "juniper_junos": "ge-0/0/49",
    "arista_eos": "Ethernet49", "snmp_qbridge": "Gi1/0/99", "snmp_cisco_vmvlan": "Gi1/0/99",
}
# The name a driver is given for port number i, and the name the fake files it under.
CLI_PORT = {"cisco_ios": "Gi1/0/{i}", "aruba_aoscx": "1/1/{i}", "hp_procurve": "{i}", "juniper_junos": "ge-0/0/{i}",
            "arista_eos": "Ethernet{i}"}
FAKE_PORT = {"cisco_ios": "GigabitEthernet1/0/{i}"}
# Which fake dialect plays a CLI driver (a new vendor that speaks an existing dialect adds one line here).
FAKE_DIALECT: dict[str, str] = {name: name for name in CLI_DRIVERS}


@dataclass
class Harness:
    name: str
    port: str
    build: Callable[..., SwitchDriver]
    vlan_of: Callable[[str], int] = field(repr=False)
    bounces_of: Callable[[str], int] = field(repr=False)
    reauths_of: Callable[[str], int] = field(repr=False)
    snapshot: Callable[[], Any] = field(repr=False)
    wrong_credentials: dict[str, Any] = field(default_factory=dict)
    wrong_credentials_error: type[Exception] = AuthenticationError
    closed_port_error: type[Exception] = ConnectError
    secret_values: tuple[str, ...] = ()
    fast_fail: dict[str, Any] = field(default_factory=dict)  # short timeouts for unreachable/timeout tests
    fake: Any = None
    missing_port: str | None = None
    cli: bool = False
    ports: Callable[[int], list[str]] = field(default=lambda n: [], repr=False)  # n driver-facing port names
    fake_port: Callable[[str], str] = field(default=lambda p: p, repr=False)


def cli_harness(name: str, server: FakeCliServer, known_hosts: Path) -> Harness:
    dialect = FAKE_DIALECT[name]
    state = server.states[dialect]
    state.reset()

    def build(port: int | None = None, **overrides: Any) -> SwitchDriver:
        options: dict[str, Any] = {
            "username": "admin", "password": "fake-pass-123", "enable_secret": "fake-enable-456",
            "known_hosts": known_hosts, "conn_timeout": 3, "read_timeout": 4,
        }
        options.update(overrides)
        target = Target(name=f"fake-{name}", host="127.0.0.1", port=port or server.ports[dialect])
        return default_registry().create(name, target, options)

    template = CLI_PORT[dialect]
    stored = FAKE_PORT.get(dialect, template)

    def fake_port(port: str) -> str:
        for i in range(1, 1001):
            if port == template.format(i=i):
                return stored.format(i=i)
        return port

    def ports(count: int) -> list[str]:
        """Give the fake ``count`` access ports (1..count, all in VLAN 1) and return their driver-facing names."""
        with state.lock:
            state.ports = {stored.format(i=i): PortState() for i in range(1, count + 1)}
        return [template.format(i=i) for i in range(1, count + 1)]

    return Harness(
        name=name, port=GOOD_PORT[dialect], build=build, fake=state,
        vlan_of=lambda p: state.ports[fake_port(p)].vlan,
        bounces_of=lambda p: state.ports[fake_port(p)].bounces,
        reauths_of=lambda p: state.ports[fake_port(p)].reauths,
        snapshot=lambda: ({n: (p.vlan, p.shutdown) for n, p in state.ports.items()}, sorted(state.vlans),
                          dict(state.phantom)),
        wrong_credentials={"password": "not-the-password"},
        secret_values=("not-the-password", "fake-pass-123", "fake-enable-456"),
        missing_port=MISSING_PORT[dialect], cli=True, ports=ports, fake_port=fake_port,
    )


def snmp_harness(name: str, agent: SnmpAgent) -> Harness:
    agent.reset()

    def build(port: int | None = None, **overrides: Any) -> SwitchDriver:
        options: dict[str, Any] = {
            "version": "3", "username": V3_USER, "auth_key": V3_AUTH, "priv_key": V3_PRIV,
            "timeout": 2.0, "retries": 1, "bounce_down_seconds": 0.05,
        }
        options.update(overrides)
        target = Target(name=f"fake-{name}", host="127.0.0.1", port=port or agent.port)
        return default_registry().create(name, target, options)

    def port_row(p: str) -> dict[str, Any]:
        return next(r for r in agent.state()["ports"] if p in (r["ifName"], str(r["ifIndex"])))

    return Harness(
        name=name, port=GOOD_PORT[name], build=build, fake=agent,
        vlan_of=lambda p: int(agent.state()["pvid"][str(port_row(p)["bridgePort"])]),
        bounces_of=lambda p: int(port_row(p)["bounces"]),
        reauths_of=lambda p: int(port_row(p)["reauths"]),
        snapshot=lambda: {k: v for k, v in agent.state().items() if k in ("pvid", "vlans", "ports")},
        wrong_credentials={"auth_key": "wrong-auth-key"},
        closed_port_error=DriverTimeout,
        secret_values=("wrong-auth-key", V3_PRIV),
        fast_fail={"timeout": 0.3, "retries": 0},
        missing_port=MISSING_PORT[name],
    )


def coa_harness(nas: CoaNas) -> Harness:
    nas.requests.clear()
    nas.silent = False
    nas.received = 0
    nas.ignored = set()
    nas.drop_first = 0
    nas.unanswered = 0

    def build(port: int | None = None, **overrides: Any) -> SwitchDriver:
        options: dict[str, Any] = {"secret": "testing123", "vendor": "cisco", "timeout": 1.0, "retries": 2}
        options.update(overrides)
        return default_registry().create("coa", Target("fake-nas", "127.0.0.1", port or nas.port), options)

    def count(kind: str, marker: str) -> int:
        return sum(1 for r in nas.requests if r["kind"] == kind and any(marker in str(v) for v in r["attrs"].values()))

    return Harness(
        name="coa", port=GOOD_PORT["coa"], build=build, fake=nas,
        vlan_of=lambda p: 0,
        bounces_of=lambda p: count("coa", "bounce-host-port"),
        reauths_of=lambda p: count("coa", "command=reauthenticate"),
        snapshot=lambda: len(nas.requests),
        wrong_credentials={"secret": "wrong-secret", "timeout": 0.2},
        wrong_credentials_error=DriverTimeout,  # a NAS silently drops requests with a bad authenticator
        closed_port_error=DriverTimeout,
        secret_values=("wrong-secret", "testing123"),
        fast_fail={"timeout": 0.2, "retries": 2},
    )
