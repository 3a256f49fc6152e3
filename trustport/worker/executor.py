"""The app's ``StepExecutor``: runs enforcement steps through ``switch_drivers`` and translates its errors.

``policy`` never imports the drivers; this is the one adapter between them. Driver errors are sorted into
transient (retry with backoff: unreachable, timeout, bad credentials until an operator fixes them, a read-back
that disagreed) and permanent (use the fallback: a CoA NAK, an unsupported operation, an invalid port or VLAN).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from policy.enforcement import PermanentStepError, Step, StepKind, TransientStepError
from policy.errors import ConfigError
from switch_drivers import (
    CoANak,
    DriverError,
    DriverRegistry,
    InvalidArgument,
    SwitchDriver,
    Unsupported,
    default_registry,
)
from switch_drivers.inventory import Inventory, load_inventory


class DriverExecutor:
    """Keeps one open driver (SSH session, SNMP engine, CoA client) per switch between steps and jobs, so a
    worker draining many ports of one switch logs in once; ``release()`` closes them (the worker calls it when it
    moves on to another switch or runs out of work)."""

    def __init__(self, inventory: Inventory, registry: DriverRegistry | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.inventory = inventory
        self.registry = registry or default_registry()
        self.environ = environ if environ is not None else os.environ
        self._open: dict[str, SwitchDriver] = {}
        self.connections = 0

    @classmethod
    def from_file(cls, path: Path) -> DriverExecutor:
        try:
            return cls(load_inventory(path))
        except DriverError as exc:
            raise ConfigError(f"inventory {path}: {exc}") from exc

    def _driver(self, target: str) -> SwitchDriver:
        driver = self._open.get(target)
        if driver is None:
            driver = self.inventory.driver(target, self.registry, self.environ)
            driver.__enter__()
            self.connections += 1
            self._open[target] = driver
        return driver

    def _close(self, target: str) -> None:
        driver = self._open.pop(target, None)
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.__exit__(None, None, None)

    def release(self) -> None:
        for target in list(self._open):
            self._close(target)

    def execute(self, step: Step) -> str:
        reused = step.target in self._open
        try:
            try:
                return self._run(self._driver(step.target), step)
            except DriverError as exc:
                self._close(step.target)  # the session may be broken: never reuse it after an error
                if not reused or isinstance(exc, CoANak | Unsupported | InvalidArgument):
                    raise
                return self._run(self._driver(step.target), step)  # a kept session went stale: once more, fresh
        except (CoANak, Unsupported, InvalidArgument) as exc:  # driver messages name the switch and port
            raise PermanentStepError(f"{step.kind.value}: {exc}") from exc
        except DriverError as exc:
            raise TransientStepError(f"{step.kind.value}: {exc}") from exc

    @staticmethod
    def _run(driver: SwitchDriver, step: Step) -> str:
        if step.kind is StepKind.SET_VLAN:
            if step.vlan is None:
                raise PermanentStepError(f"set-vlan step for {step.target} {step.port} has no VLAN")
            change = driver.set_port_vlan(step.port, step.vlan)
            return f"{step.port}: VLAN {change.before} -> {change.after} (read back)"
        if step.kind is StepKind.BOUNCE:
            driver.bounce_port(step.port)
            return f"{step.port}: bounced"
        if step.kind is StepKind.COA_REAUTH:
            driver.reauthenticate(step.port)
            return f"{step.port}: CoA-ACK (re-authenticate)"
        disconnect = getattr(driver, "disconnect", None)
        if disconnect is None:
            raise PermanentStepError(f"{step.target} cannot send a Disconnect-Request")
        disconnect(step.port)
        return f"{step.port}: Disconnect-ACK"
