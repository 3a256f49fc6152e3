"""The app's ``StepExecutor``: runs enforcement steps through ``switch_drivers`` and translates its errors.

``policy`` never imports the drivers; this is the one adapter between them. Driver errors are sorted into
transient (retry with backoff: unreachable, timeout, bad credentials until an operator fixes them, a read-back
that disagreed) and permanent (use the fallback: a CoA NAK, an unsupported operation, an invalid port or VLAN).
"""

from __future__ import annotations

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
    Unsupported,
    default_registry,
)
from switch_drivers.inventory import Inventory, load_inventory


class DriverExecutor:
    def __init__(self, inventory: Inventory, registry: DriverRegistry | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.inventory = inventory
        self.registry = registry or default_registry()
        self.environ = environ if environ is not None else os.environ

    @classmethod
    def from_file(cls, path: Path) -> DriverExecutor:
        try:
            return cls(load_inventory(path))
        except DriverError as exc:
            raise ConfigError(f"inventory {path}: {exc}") from exc

    def execute(self, step: Step) -> str:
        try:
            driver = self.inventory.driver(step.target, self.registry, self.environ)
            with driver:
                return self._run(driver, step)
        except (CoANak, Unsupported, InvalidArgument) as exc:  # driver messages name the switch and port
            raise PermanentStepError(f"{step.kind.value}: {exc}") from exc
        except DriverError as exc:
            raise TransientStepError(f"{step.kind.value}: {exc}") from exc

    @staticmethod
    def _run(driver: object, step: Step) -> str:
        from switch_drivers import SwitchDriver

        assert isinstance(driver, SwitchDriver)
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
