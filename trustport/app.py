"""The composition root: one place that builds the registry, the trust material, the services and the switch
driver executor from one configuration. Every adapter (CLI commands, the REST API, the worker) gets them from
``App``, and the RADIUS hook, which has the rendered hook settings rather than the YAML, from ``build_authorizer``,
instead of opening its own store or loading anchors itself, so they all use the same objects the same way."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from policy.errors import ConfigError
from trustport.settings.config import TrustportConfig, load_config
from trustport.settings.hook import HookSettings
from trustport.store.sql import SqlDeviceStore

if TYPE_CHECKING:  # the services pull in what only some commands need
    from switch_drivers import DriverRegistry
    from switch_drivers.inventory import Inventory
    from trustport.services.accounts import AccountService
    from trustport.services.attestation import AttestationService
    from trustport.services.auth_path import HookRuntime
    from trustport.services.authorize import Authorizer, PlacementService
    from trustport.services.ca import OwnerCA
    from trustport.services.console import ConsoleService
    from trustport.services.directory import DirectorySync
    from trustport.services.enforcement import Enforcement
    from trustport.services.lifecycle import LifecycleService
    from trustport.services.trust import TrustMaterial
    from trustport.store.queue import Job
    from trustport.worker.executor import DriverExecutor
    from trustport.worker.loop import Worker


def load_trust(settings: HookSettings) -> TrustMaterial:
    from trustport.services.trust import TrustMaterial

    return TrustMaterial.load(settings.anchors, settings.crl_dir, settings.crl_refresh_seconds, time.monotonic)


def build_authorizer(settings: HookSettings, store: SqlDeviceStore | None = None, *,
                     trust: TrustMaterial | None = None, placement: PlacementService | None = None,
                     runtime: HookRuntime | None = None) -> Authorizer:
    """The authorization service of these settings: what the RADIUS hook runs (it has the hook settings, not the
    YAML) and what ``App.authorizer`` is. ``store`` is reused when given (a policy reload on the same registry).
    With ``runtime`` (the hook's), reads come from its cache and writes go to its journal."""
    from trustport.services.authorize import Authorizer, DenyList, PlacementService, mud_lookup
    from trustport.store.lifecycle import SqlLifecycleStore
    from trustport.store.sessions import SqlSessionStore

    if runtime is not None:
        from trustport.services.attestation_gate import AttestationGate

        gate = AttestationGate(settings.attestation, runtime.attestations) if settings.attestation else None
        cache = runtime.cache
        return Authorizer(settings, runtime.reads, trust if trust is not None else load_trust(settings),
                          PlacementService(settings, runtime.reads, gate, mud_lookup(settings)),
                          deny_list=cache.denied if cache is not None
                          else DenyList(SqlLifecycleStore(runtime.store).denied_index).reason,
                          sessions=runtime.sessions)
    store = store if store is not None else SqlDeviceStore(settings.database_url)
    placement = placement if placement is not None else PlacementService.from_settings(settings, store)
    return Authorizer(settings, store, trust if trust is not None else load_trust(settings), placement,
                      deny_list=DenyList(SqlLifecycleStore(store).denied_index).reason,
                      sessions=SqlSessionStore(store))


class App:
    """Built lazily: a command that only lists devices never loads trust anchors. Close it (or use ``with``)."""

    def __init__(self, config: TrustportConfig, *, create: bool = False) -> None:
        self.config = config
        self._create = create

    @classmethod
    def from_file(cls, config_file: Path, *, check_files: bool = False) -> App:
        return cls(load_config(config_file, check_files=check_files))

    def __enter__(self) -> App:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @cached_property
    def settings(self) -> HookSettings:
        return self.config.hook_settings()

    @cached_property
    def store(self) -> SqlDeviceStore:
        """The registry; only ``trustport db init`` builds it with ``create=True``."""
        return SqlDeviceStore(self.config.database_url(), create=self._create)

    @cached_property
    def trust(self) -> TrustMaterial:
        return load_trust(self.settings)

    @cached_property
    def placement(self) -> PlacementService:
        """The one placement (input building + ``place``) the authorizer and the enforcement planner share."""
        from trustport.services.authorize import PlacementService

        return PlacementService.from_settings(self.settings, self.store)

    @cached_property
    def authorizer(self) -> Authorizer:
        return build_authorizer(self.settings, self.store, trust=self.trust, placement=self.placement)

    @cached_property
    def attestation(self) -> AttestationService:
        from trustport.services.attestation import AttestationService

        return AttestationService(self.settings.attestation, self.store, self.trust)

    @cached_property
    def enforcement(self) -> Enforcement:
        from trustport.services.enforcement import Enforcement

        return Enforcement(self.config, self.store, placement=self.placement, capabilities=self.capabilities)

    @cached_property
    def registry(self) -> DriverRegistry:
        """The switch drivers (built-in and third-party, through entry points), loaded once."""
        from switch_drivers import default_registry

        return default_registry()

    @cached_property
    def inventory(self) -> Inventory:
        """The ``enforcement.inventory`` file, read once for the planner's capabilities and the executor."""
        from switch_drivers import DriverError
        from switch_drivers.inventory import load_inventory

        if self.config.enforcement is None:
            raise ConfigError("enforcement is not configured: add an 'enforcement:' section (inventory, nas)")
        path = self.config.path(self.config.enforcement.inventory)
        try:
            return load_inventory(path)
        except DriverError as exc:
            raise ConfigError(f"inventory {path}: {exc}") from exc

    @cached_property
    def capabilities(self) -> dict[str, frozenset[str]]:
        """Inventory name -> what its driver can do (from the driver registry), for the enforcement planner."""
        if self.config.enforcement is None:
            return {}
        try:
            inventory = self.inventory
        except ConfigError:  # 'config check' and the worker report a broken inventory; plan as configured
            return {}
        registry = self.registry
        return {name: frozenset((flag.name or "").lower() for flag in registry[entry.driver].capabilities)
                for name, entry in inventory.switches.items() if entry.driver in registry}

    @cached_property
    def owner_ca(self) -> OwnerCA:
        """The owner (LDevID) CA of the ``ca:`` section; ConfigError/IssuanceError when it cannot issue."""
        from trustport.services.ca import OwnerCA

        return OwnerCA.load(self.config, self.store)

    @cached_property
    def lifecycle(self) -> LifecycleService:
        from trustport.services.lifecycle import LifecycleService

        return LifecycleService(self.config, self.store, enforcement=self.enforcement
                                if self.config.enforcement is not None else None)

    @cached_property
    def accounts(self) -> AccountService:
        """API tokens, dashboard users and their sessions (roles viewer / operator / admin)."""
        from trustport.services.accounts import AccountService

        return AccountService(self.config, self.store)

    @cached_property
    def console(self) -> ConsoleService:
        """What the REST API and the dashboard read: overview, devices, one device's story, live decisions."""
        from trustport.services.console import ConsoleService

        return ConsoleService(self.config, self.store)

    @cached_property
    def directory(self) -> DirectorySync:
        """The ``directory:`` section's sync (ConfigError without one); its changes go through ``lifecycle``."""
        from trustport.services.directory import DirectorySync

        if self.config.directory is None:
            raise ConfigError("no directory is configured: add a 'directory:' section (docs/directory.md)")
        return DirectorySync(self.config, self.store, self.lifecycle)

    @cached_property
    def executor(self) -> DriverExecutor:
        """The switch drivers of the configured inventory (the enforcement worker's executor)."""
        from trustport.worker.executor import DriverExecutor

        _ = self.enforcement  # raises PlanningError for a config without an 'enforcement:' section
        return DriverExecutor(self.inventory, self.registry)

    def worker(self, *, concurrency: int | None = None, worker_id: str | None = None,
               on_event: Callable[[Job, str], None] | None = None) -> Worker:
        """The enforcement worker over this registry and inventory; it corrects sessions from its read-backs."""
        import dataclasses

        from trustport.worker.loop import Worker

        settings = self.enforcement.worker_settings
        if concurrency is not None:
            settings = dataclasses.replace(settings, concurrency=concurrency)
        return Worker(self.enforcement.queue, self.executor, settings, worker_id=worker_id, on_event=on_event,
                      sessions=self.enforcement.sessions)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
