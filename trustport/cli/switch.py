"""``trustport switch ...`` and ``trustport coa ...``: drive switches listed in an inventory file.

SWITCH may be one inventory name or several separated by commas; every switch gets its own result line
and the exit status is 1 if any failed (2 for bad arguments/inventory). Registered in the main CLI with
``cli.add_command(switch)`` and ``cli.add_command(coa)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from policy.text import safe_text
from switch_drivers import (
    Capability,
    DriverError,
    InvalidArgument,
    PortMove,
    PortOutcome,
    PortStatus,
    SwitchDriver,
    SwitchResult,
    VlanChange,
    default_registry,
    run_each,
)
from switch_drivers.inventory import Inventory, SwitchCheck, load_inventory

__all__ = ["coa", "switch"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _common(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")(func)
    return click.option(
        "--inventory", "-i", "inventory_path", required=True, envvar="TRUSTPORT_INVENTORY",
        type=click.Path(dir_okay=False, path_type=Path), help="Inventory YAML (env TRUSTPORT_INVENTORY).",
    )(func)


def _load(path: Path) -> Inventory:
    try:
        return load_inventory(path)
    except DriverError as exc:
        raise click.ClickException(safe_text(exc)) from exc


def _run(inventory: Inventory, names: str, operation: Callable[[SwitchDriver], T]) -> list[SwitchResult[T]]:
    registry = default_registry()
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise click.BadParameter("give at least one switch name", param_hint="SWITCH")
    for name in wanted:
        if name not in inventory.switches:
            raise click.BadParameter(f"{name!r} is not in the inventory", param_hint="SWITCH")
    drivers = {name: (lambda n=name: inventory.driver(n, registry)) for name in wanted}
    return run_each(drivers, operation)


def _render(value: object) -> Any:
    if isinstance(value, VlanChange):
        return {"port": value.port, "before": value.before, "after": value.after, "changed": value.changed}
    if isinstance(value, PortStatus):
        return {"port": value.port, "vlan": value.vlan, "admin_up": value.admin_up, "oper_up": value.oper_up}
    if isinstance(value, PortOutcome):
        return {"port": value.port, "ok": value.ok, "change": _render(value.change), "bounced": value.bounced,
                "status": _render(value.status),
                "error": None if value.error is None else {"type": type(value.error).__name__,
                                                           "message": str(value.error)}}
    if isinstance(value, list | tuple | frozenset):
        return [_render(v) for v in value]
    return value


def _state(status: PortStatus) -> str:
    link = "" if status.oper_up is None else (", link up" if status.oper_up else ", link down")
    return f"VLAN {status.vlan}, {'enabled' if status.admin_up else 'shut down'}{link}"


def _report(results: list[SwitchResult[Any]], as_json: bool, describe: Callable[[Any], str]) -> None:
    if as_json:
        doc = [
            {
                "switch": r.switch,
                "ok": r.ok,
                "result": _render(r.value) if r.ok else None,
                "error": None if r.ok else {"type": type(r.error).__name__, "message": str(r.error)},
                "seconds": round(r.seconds, 3),
            }
            for r in results
        ]
        click.echo(json.dumps(doc, indent=2))  # ensure_ascii: control characters come out as \uNNNN
    else:  # ports, read-back values and error messages carry switch output: shown escaped
        for r in results:
            if r.ok:
                click.echo(safe_text(f"{r.switch}: {describe(r.value)}"))
            else:
                click.echo(safe_text(f"{r.switch}: FAILED {type(r.error).__name__}: {r.error}"), err=True)
    if any(not r.ok for r in results):
        bad_args = all(isinstance(r.error, InvalidArgument) for r in results if not r.ok)
        raise SystemExit(2 if bad_args else 1)
    if any(isinstance(r.value, list) and any(isinstance(o, PortOutcome) and not o.ok for o in r.value)
           for r in results):
        raise SystemExit(1)


@click.group("switch")
def switch() -> None:
    """Read and change access-port VLANs through the switch drivers."""


@switch.command("get-vlan")
@_common
@click.argument("switch_names", metavar="SWITCH")
@click.argument("port")
def get_vlan(inventory_path: Path, as_json: bool, switch_names: str, port: str) -> None:
    """Print the access VLAN of PORT."""
    results = _run(_load(inventory_path), switch_names, lambda d: d.get_port_vlan(port))
    _report(results, as_json, lambda vlan: f"{port} is in VLAN {vlan}")


@switch.command("set-vlan")
@_common
@click.argument("switch_names", metavar="SWITCH")
@click.argument("port")
@click.argument("vlan", type=click.IntRange(1, 4094))
def set_vlan(inventory_path: Path, as_json: bool, switch_names: str, port: str, vlan: int) -> None:
    """Move PORT to access VLAN and verify by reading it back."""
    results = _run(_load(inventory_path), switch_names, lambda d: d.set_port_vlan(port, vlan))
    _report(results, as_json, lambda c: f"{c.port} VLAN {c.before} -> {c.after} (verified)")


@switch.command("bounce")
@_common
@click.argument("switch_names", metavar="SWITCH")
@click.argument("port")
def bounce(inventory_path: Path, as_json: bool, switch_names: str, port: str) -> None:
    """Shut PORT down, bring it back up and read back that it is enabled again."""

    def operation(driver: SwitchDriver) -> PortStatus | None:
        driver.bounce_port(port)
        return driver.port_status(port) if Capability.PORT_STATUS in driver.capabilities else None

    results = _run(_load(inventory_path), switch_names, operation)
    _report(results, as_json, lambda s: f"{port} bounced" + (f" (read back: {_state(s)})" if s else ""))


@switch.command("status")
@_common
@click.argument("switch_names", metavar="SWITCH")
@click.argument("port")
def status(inventory_path: Path, as_json: bool, switch_names: str, port: str) -> None:
    """Print PORT's VLAN and admin/link state as the switch reports it."""
    results = _run(_load(inventory_path), switch_names, lambda d: d.port_status(port))
    _report(results, as_json, lambda s: f"{port}: {_state(s)}")


@switch.command("ensure-up")
@_common
@click.argument("switch_names", metavar="SWITCH")
@click.argument("port")
def ensure_up(inventory_path: Path, as_json: bool, switch_names: str, port: str) -> None:
    """Enable PORT if it is administratively down (e.g. a bounce was interrupted), and read it back."""
    results = _run(_load(inventory_path), switch_names, lambda d: d.ensure_port_up(port))
    _report(results, as_json, lambda was_down: f"{port} " + ("was down: enabled (verified)" if was_down
                                                             else "is already enabled"))


@switch.command("move")
@_common
@click.option("--bounce", is_flag=True, help="Bounce every port after the move (one push for all).")
@click.argument("switch_names", metavar="SWITCH")
@click.argument("vlan", type=click.IntRange(1, 4094))
@click.argument("ports", metavar="PORT...", nargs=-1, required=True)
def move(inventory_path: Path, as_json: bool, bounce: bool, switch_names: str, vlan: int,
         ports: tuple[str, ...]) -> None:
    """Move PORTs to VLAN in one batch (one push, one read-back); one result line per port."""
    moves = [PortMove(port, vlan, bounce) for port in ports]
    results = _run(_load(inventory_path), switch_names, lambda d: d.move_ports(moves))

    def describe(outcomes: list[PortOutcome]) -> str:
        lines = []
        for o in outcomes:
            if o.error is not None:
                lines.append(f"  {o.port}: FAILED {type(o.error).__name__}: {o.error}")
            else:
                change = f"VLAN {o.change.before} -> {o.change.after}" if o.change else "VLAN unchanged"
                lines.append(f"  {o.port}: {change} (verified)" + (", bounced" if o.bounced else ""))
        return f"{sum(o.ok for o in outcomes)}/{len(outcomes)} ports moved\n" + "\n".join(lines)

    _report(results, as_json, describe)


def _describe_check(c: SwitchCheck) -> str:
    parts = []
    if c.reachable is not None:
        parts.append("reachable" if c.reachable else "NOT reachable")
    if c.login is not None:
        parts.append("login OK" if c.login else "login FAILED")
    if c.host_key is not None:
        key = c.host_key
        shown = key.offered or key.expected
        parts.append(f"host key {key.state}" + (f" ({shown})" if shown else "")
                     + (" - accept-new records it on the first connection" if key.state == "unknown" else ""))
    if c.vlans is not None:
        parts.append(f"{c.vlans} VLANs")
    parts.append("capabilities " + (", ".join(c.capabilities) or "none"))
    return f"{c.switch} ({c.driver}): " + ", ".join(parts)


@switch.command("check")
@_common
@click.option("--offline", is_flag=True, help="Only validate the inventory and known_hosts; contact no switch.")
def check(inventory_path: Path, as_json: bool, offline: bool) -> None:
    """Check every switch: options and secret references, then (unless --offline) the host key it offers against
    known_hosts, reachability, login and the driver's capabilities. Exit 2: inventory problems; 1: a switch fails."""
    inventory = _load(inventory_path)
    registry = default_registry()
    names = list(inventory.switches)
    results = run_each_check(inventory, registry, names, contact=not offline)
    plugin_problems = [f"driver plugin {name}: {text}" for name, text in registry.problems.items()]
    if as_json:
        doc = {"ok": all(c.ok for c in results) and not plugin_problems, "plugin_problems": plugin_problems,
               "problems": [f"switches.{c.switch}: {p}" for c in results for p in c.problems],
               "switches": [_check_json(c) for c in results]}
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in plugin_problems:
            click.echo(safe_text(line), err=True)
        for c in results:
            if c.problems:
                for problem in c.problems:
                    click.echo(safe_text(f"switches.{c.switch}: {problem}"), err=True)
            elif c.errors:
                for error in c.errors:
                    click.echo(safe_text(f"{c.switch}: FAILED {error}"), err=True)
                click.echo(safe_text(_describe_check(c)), err=True)
            else:
                click.echo(safe_text(_describe_check(c)))
        if all(c.ok for c in results):
            click.echo(f"inventory OK ({len(results)} switches" + (", not contacted)" if offline else ")"))
    if any(c.problems for c in results):
        raise SystemExit(2)
    if any(c.errors for c in results):
        raise SystemExit(1)


def run_each_check(inventory: Inventory, registry: Any, names: list[str], *, contact: bool) -> list[SwitchCheck]:
    from concurrent.futures import ThreadPoolExecutor

    if not names:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        return list(pool.map(lambda n: inventory.check(n, registry, contact=contact), names))


def _check_json(c: SwitchCheck) -> dict[str, Any]:
    key = c.host_key
    return {
        "switch": c.switch, "driver": c.driver, "ok": c.ok, "reachable": c.reachable, "login": c.login,
        "host_key": None if key is None else {"state": key.state, "offered": key.offered, "expected": key.expected},
        "vlans": c.vlans, "capabilities": list(c.capabilities), "problems": list(c.problems),
        "errors": list(c.errors),
    }


@click.group("coa")
def coa() -> None:
    """Send RADIUS CoA / Disconnect requests through a NAS listed in the inventory (driver: coa)."""


@coa.command("reauth")
@_common
@click.argument("switch_names", metavar="NAS")
@click.argument("session")
def coa_reauth(inventory_path: Path, as_json: bool, switch_names: str, session: str) -> None:
    """Force re-authentication of SESSION (MAC, or acct-session-id=..., user-name=..., nas-port-id=...)."""
    results = _run(_load(inventory_path), switch_names, lambda d: d.reauthenticate(session))
    _report(results, as_json, lambda _: f"re-authentication of {session} acknowledged")


@coa.command("disconnect")
@_common
@click.argument("switch_names", metavar="NAS")
@click.argument("session")
def coa_disconnect(inventory_path: Path, as_json: bool, switch_names: str, session: str) -> None:
    """Send a Disconnect-Request for SESSION."""

    results = _run(_load(inventory_path), switch_names, lambda d: d.disconnect(session))  # switches: Unsupported
    _report(results, as_json, lambda _: f"disconnect of {session} acknowledged")
