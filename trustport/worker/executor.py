"""The app's ``StepExecutor``: applies units of enforcement work through ``switch_drivers`` and sorts their errors.

``policy`` never imports the drivers; this is the one adapter between them. All units for one switch go to the
driver in one ``move_ports`` call over one session (pre-flight, several ports per push, one read-back); NAS
requests (CoA, Disconnect) go out all at once (``send_nas_requests``). Every unit gets its own result.

Errors are sorted into transient (retry with backoff: unreachable, timeout, bad credentials until an operator fixes
them, a read-back that disagreed, a command refused for an unknown reason), permanent (use the fallback: a CoA NAK,
an unsupported operation, an invalid port or VLAN, an interface or VLAN the switch does not have) and, for NAS
requests, no-answer (a NAS that never answered within its whole retry budget -- any timeout -- or cannot be sent
to: it cannot do it for this job, so the switch fallback runs at once).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from policy.enforcement import FailureKind, Step, StepFailure, StepKind, Unit, UnitResult
from policy.errors import ConfigError
from switch_drivers import (
    AuthenticationError,
    CoANak,
    CommandFailed,
    ConnectError,
    DriverError,
    DriverRegistry,
    DriverTimeout,
    InterfaceMissing,
    InvalidArgument,
    PortMove,
    PortOutcome,
    SwitchDriver,
    Unsupported,
    VlanMissing,
    default_registry,
)
from switch_drivers.inventory import Inventory, load_inventory

NAS_KINDS = frozenset({StepKind.COA_REAUTH, StepKind.COA_DISCONNECT})
NAS_CONCURRENCY = 16  # NAS requests in flight at once per batch (each waits its NAS's timeout x retries at worst)
_PERMANENT = (CoANak, Unsupported, InvalidArgument, VlanMissing, InterfaceMissing)
_SESSION_BROKEN = (ConnectError, AuthenticationError, DriverTimeout)  # the session cannot be reused after these


def classify(exc: DriverError, *, nas: bool) -> FailureKind:
    if nas and isinstance(exc, DriverTimeout | ConnectError) and not isinstance(exc, AuthenticationError):
        return FailureKind.NO_ANSWER
    if isinstance(exc, _PERMANENT):
        return FailureKind.PERMANENT
    return FailureKind.TRANSIENT


def _failure(step: StepKind, exc: DriverError, *, nas: bool) -> StepFailure:
    kind = classify(exc, nas=nas)
    if kind is FailureKind.NO_ANSWER:
        return StepFailure(kind, f"{step.value}: the NAS did not answer: {exc}")
    return StepFailure(kind, f"{step.value}: {exc}")


class DriverExecutor:
    """Keeps one open driver (SSH session, SNMP engine) per switch between batches, per thread, so a worker
    draining many ports of one switch logs in once; ``release()`` closes the calling thread's (the worker calls it
    when it moves on to another switch or runs out of work). Thread-safe: each worker thread has its own sessions."""

    def __init__(self, inventory: Inventory, registry: DriverRegistry | None = None,
                 environ: Mapping[str, str] | None = None, nas_concurrency: int = NAS_CONCURRENCY) -> None:
        self.inventory = inventory
        self.registry = registry or default_registry()
        self.environ = environ if environ is not None else os.environ
        self.nas_concurrency = nas_concurrency
        self._local = threading.local()
        self._count = threading.Lock()
        self.connections = 0

    @classmethod
    def from_file(cls, path: Path) -> DriverExecutor:
        try:
            return cls(load_inventory(path))
        except DriverError as exc:
            raise ConfigError(f"inventory {path}: {exc}") from exc

    @property
    def _open(self) -> dict[str, SwitchDriver]:
        opened: dict[str, SwitchDriver] | None = getattr(self._local, "open", None)
        if opened is None:
            opened = self._local.open = {}
        return opened

    def _new_driver(self, target: str) -> SwitchDriver:
        driver = self.inventory.driver(target, self.registry, self.environ)
        driver.__enter__()
        with self._count:
            self.connections += 1
        return driver

    def _driver(self, target: str) -> SwitchDriver:
        driver = self._open.get(target)
        if driver is None:
            driver = self._open[target] = self._new_driver(target)
        return driver

    def _close(self, target: str) -> None:
        driver = self._open.pop(target, None)
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.__exit__(None, None, None)

    def release(self) -> None:
        for target in list(self._open):
            self._close(target)

    def run(self, units: Sequence[Unit]) -> list[UnitResult]:
        results: list[UnitResult | None] = [None] * len(units)
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, unit in enumerate(units):
            groups.setdefault((unit.target, unit.steps[0].kind in NAS_KINDS), []).append(i)
        for (target, nas), indexes in groups.items():
            group = [units[i] for i in indexes]
            done = self._nas(target, group) if nas else self._switch(target, group)
            for i, result in zip(indexes, done, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    # -- switches ----------------------------------------------------------------------------------------------

    def _switch(self, target: str, units: Sequence[Unit]) -> list[UnitResult]:
        reused = target in self._open
        try:
            self._driver(target)  # once for the whole group: a switch that is down costs one connect timeout
        except DriverError as exc:
            self._close(target)
            return [UnitResult(0, failure=_failure(u.steps[0].kind, exc, nas=False)) for u in units]
        results: list[UnitResult | None] = [None] * len(units)
        ensure = [i for i, u in enumerate(units) if u.steps[0].kind is StepKind.ENSURE_UP]
        moves = [i for i, u in enumerate(units) if u.steps[0].kind is not StepKind.ENSURE_UP]
        for i in ensure:  # resumed jobs first: a port an interrupted bounce left shut comes up before anything else
            results[i] = self._ensure_up(target, units[i])
        for wave in _waves([(i, units[i]) for i in moves]):  # a port twice in one push: the later one next push
            outcomes = self._move(target, [_port_move(u) for _, u in wave], reused)
            reused = True
            for (i, unit), outcome in zip(wave, outcomes, strict=True):
                results[i] = _move_result(unit, outcome)
        return [r for r in results if r is not None]

    def _ensure_up(self, target: str, unit: Unit) -> UnitResult:
        step = unit.steps[0]
        try:
            driver = self._driver(target)
            try:
                what = ("was left shut by an interrupted bounce: re-enabled" if driver.ensure_port_up(step.port)
                        else "is up (the interrupted bounce had re-enabled it)")
            except Unsupported:  # a driver that cannot tell: a bounce also ends with the port enabled
                driver.bounce_port(step.port)
                what = "bounced again to make sure it is enabled after an interrupted bounce"
        except DriverError as exc:
            if isinstance(exc, _SESSION_BROKEN):
                self._close(target)
            return UnitResult(0, failure=_failure(step.kind, exc, nas=False))
        return UnitResult(1, (f"{step.port}: {what}",))

    def _move(self, target: str, moves: list[PortMove], reused: bool) -> list[PortOutcome]:
        """``reused``: the session was open before this group (it may have gone stale meanwhile)."""
        try:
            outcomes = self._move_ports(self._driver(target), moves)
        except DriverError as exc:  # connecting failed, or the session broke outside any one port
            self._close(target)
            if not reused or isinstance(exc, _PERMANENT):
                return [PortOutcome(m.port, error=exc) for m in moves]
            return self._move_fresh(target, moves)
        if any(o.error is not None and isinstance(o.error, _SESSION_BROKEN) for o in outcomes):
            self._close(target)  # never reuse a session after it failed
            if reused and all(o.error is not None and o.change is None for o in outcomes):
                return self._move_fresh(target, moves)  # a kept session went stale: once more, freshly logged in
        return outcomes

    def _move_fresh(self, target: str, moves: list[PortMove]) -> list[PortOutcome]:
        try:
            outcomes = self._move_ports(self._driver(target), moves)
        except DriverError as exc:
            self._close(target)
            return [PortOutcome(m.port, error=exc) for m in moves]
        if any(o.error is not None and isinstance(o.error, _SESSION_BROKEN) for o in outcomes):
            self._close(target)
        return outcomes

    @staticmethod
    def _move_ports(driver: SwitchDriver, moves: list[PortMove]) -> list[PortOutcome]:
        outcomes = list(driver.move_ports(moves))
        if len(outcomes) != len(moves):
            raise CommandFailed(f"driver returned {len(outcomes)} results for {len(moves)} ports",
                                switch=driver.target.name)
        return outcomes

    # -- NASes -------------------------------------------------------------------------------------------------

    def _nas(self, target: str, units: Sequence[Unit]) -> list[UnitResult]:
        errors = send_nas_requests(lambda: self.inventory.driver(target, self.registry, self.environ),
                                   [u.steps[0] for u in units], self.nas_concurrency)
        results = []
        for unit, error in zip(units, errors, strict=True):
            step = unit.steps[0]
            if error is None:
                what = "Disconnect-ACK" if step.kind is StepKind.COA_DISCONNECT else "CoA-ACK (re-authenticate)"
                results.append(UnitResult(1, (f"{step.port}: {what}",)))
            else:
                results.append(UnitResult(0, failure=_failure(step.kind, error, nas=True)))
        return results


def send_nas_requests(open_driver: Callable[[], SwitchDriver], steps: Sequence[Step],
                      concurrency: int = NAS_CONCURRENCY) -> list[DriverError | None]:
    """Send each CoA/Disconnect step to its NAS, all at once; per step None (ACKed) or the error. Drivers with a
    many-session operation (``reauthenticate_many``/``disconnect_many``: all requests on the wire together, each
    with its own retry budget) get one call per kind; others one request per thread, ``concurrency`` at a time."""
    try:
        with open_driver() as driver:
            if hasattr(driver, "reauthenticate_many") and hasattr(driver, "disconnect_many"):
                return _many(driver, steps)
    except DriverError as exc:  # the NAS entry cannot even be opened (address, secret): every step fails alike
        return [exc] * len(steps)

    def one(step: Step) -> DriverError | None:
        try:
            with open_driver() as driver:
                if step.kind is StepKind.COA_DISCONNECT:
                    driver.disconnect(step.port)
                else:
                    driver.reauthenticate(step.port)
        except DriverError as exc:
            return exc
        return None

    if len(steps) <= 1 or concurrency <= 1:
        return [one(s) for s in steps]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(steps)), thread_name_prefix="nas") as pool:
        return list(pool.map(one, steps))


def _many(driver: Any, steps: Sequence[Step]) -> list[DriverError | None]:
    errors: list[DriverError | None] = [None] * len(steps)
    for kind, send in ((StepKind.COA_REAUTH, driver.reauthenticate_many),
                       (StepKind.COA_DISCONNECT, driver.disconnect_many)):
        indexes = [i for i, s in enumerate(steps) if s.kind is kind]
        if not indexes:
            continue
        outcomes: list[PortOutcome] = list(send([steps[i].port for i in indexes]))
        if len(outcomes) != len(indexes):
            raise CommandFailed(f"driver returned {len(outcomes)} results for {len(indexes)} sessions",
                                switch=driver.target.name)
        for i, outcome in zip(indexes, outcomes, strict=True):
            errors[i] = outcome.error
    return errors


def _port_move(unit: Unit) -> PortMove:
    vlan = next((s.vlan for s in unit.steps if s.kind is StepKind.SET_VLAN), None)
    return PortMove(unit.port, vlan, bounce=unit.bounces)


def _waves(items: list[tuple[int, Unit]]) -> list[list[tuple[int, Unit]]]:
    waves: list[list[tuple[int, Unit]]] = []
    for item in items:
        for wave in waves:
            if all(u.port != item[1].port for _, u in wave):
                wave.append(item)
                break
        else:
            waves.append([item])
    return waves


def _move_result(unit: Unit, outcome: PortOutcome) -> UnitResult:
    messages: list[str] = []
    vlan: int | None = None
    for step in unit.steps:
        if step.kind is StepKind.SET_VLAN:
            if outcome.change is None:
                break
            change = outcome.change
            messages.append(f"{unit.port}: VLAN {change.before} -> {change.after} (read back)")
            vlan = change.after
        elif step.kind is StepKind.BOUNCE:
            if not outcome.bounced or outcome.error is not None:
                break
            status = outcome.status
            if status is not None:
                vlan = status.vlan
                messages.append(f"{unit.port}: bounced, up in VLAN {status.vlan} (read back)")
            else:
                messages.append(f"{unit.port}: bounced")
    done = len(messages)
    if done == len(unit.steps):
        return UnitResult(done, tuple(messages), vlan=vlan)
    error = outcome.error or CommandFailed("the driver reported success without doing this step",
                                           switch=unit.target, port=unit.port)
    return UnitResult(done, tuple(messages), _failure(unit.steps[done].kind, error, nas=False), vlan)
