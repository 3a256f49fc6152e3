"""Fixtures for the driver contract suite: the fakes on free loopback ports, and one harness per driver.

The suite is parametrised from the driver registry (entry points): every registered driver runs it, and a driver
without a harness fails rather than being skipped. A harness knows how to build its driver against the running fake
with good (or deliberately bad) options and how to read the fake's state, so the tests are driver-agnostic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from switch_drivers import default_registry
from trustport_lab.fakes.coa_nas import CoaNas
from trustport_lab.fakes.fake_cli import FakeCliServer, free_tcp_port
from trustport_lab.fakes.harness import (
    FAKE_DIALECT,
    SNMP_DRIVERS,
    Harness,
    cli_harness,
    coa_harness,
    snmp_harness,
)
from trustport_lab.fakes.snmp_agent import SnmpAgent, free_udp_port, snmpd_available


def pytest_configure(config: pytest.Config) -> None:
    # pysnmp 7.1 calls deprecated pysmi names on every SnmpEngine(); not ours to fix
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pysnmp.*")


@pytest.fixture(scope="session")
def cli_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeCliServer, Path]]:
    server = FakeCliServer().start()
    known_hosts = tmp_path_factory.mktemp("ssh") / "known_hosts"
    known_hosts.write_text(server.known_hosts_lines())
    yield server, known_hosts
    server.stop()


@pytest.fixture(scope="session")
def snmp_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpAgent]:
    if not snmpd_available():
        pytest.fail("Debian package 'snmpd' is not installed (apt-get install snmpd; make test does it)")
    agent = SnmpAgent(tmp_path_factory.mktemp("snmpd")).start()
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def coa_fake() -> Iterator[CoaNas]:
    nas = CoaNas().start()
    yield nas
    nas.stop()


REGISTERED = sorted(default_registry())


@pytest.fixture(params=REGISTERED)
def harness(request: pytest.FixtureRequest) -> Harness:
    name: str = request.param
    if name in FAKE_DIALECT:
        server, known_hosts = request.getfixturevalue("cli_fake")
        return cli_harness(name, server, known_hosts)
    if name in SNMP_DRIVERS:
        return snmp_harness(name, request.getfixturevalue("snmp_fake"))
    if name == "coa":
        return coa_harness(request.getfixturevalue("coa_fake"))
    pytest.fail(f"driver {name!r} is registered but trustport_lab/fakes/harness.py has no harness for it; add one "
                "(see docs/switch-drivers.md, 'Adding a vendor in one file')")


@pytest.fixture
def closed_tcp_port() -> int:
    return free_tcp_port()


@pytest.fixture
def closed_udp_port() -> int:
    return free_udp_port()
