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
    DriverError,
    InvalidArgument,
    SwitchDriver,
    SwitchResult,
    VlanChange,
    default_registry,
    run_each,
)
from switch_drivers.inventory import Inventory, load_inventory

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
    return value


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
    """Shut PORT down and bring it back up."""
    results = _run(_load(inventory_path), switch_names, lambda d: d.bounce_port(port))
    _report(results, as_json, lambda _: f"{port} bounced")


@switch.command("check")
@_common
def check(inventory_path: Path, as_json: bool) -> None:
    """Validate the inventory: drivers, options and secret references (nothing is contacted)."""
    problems = _load(inventory_path).problems(default_registry())
    if as_json:
        click.echo(json.dumps({"ok": not problems, "problems": problems}, indent=2))
    else:
        for problem in problems:
            click.echo(safe_text(problem), err=True)
        if not problems:
            click.echo("inventory OK")
    if problems:
        raise SystemExit(2)


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

    def operation(driver: SwitchDriver) -> None:
        disconnect = getattr(driver, "disconnect", None)
        if disconnect is None:
            raise InvalidArgument(f"driver {driver.name} cannot disconnect sessions; use a 'coa' entry",
                                  switch=driver.target.name)
        disconnect(session)

    results = _run(_load(inventory_path), switch_names, operation)
    _report(results, as_json, lambda _: f"disconnect of {session} acknowledged")
