"""The CLI batch: many ports of one switch in one configuration push and one read-back, one outcome per port.

The order of work, and why:

1. pure checks (interface grammar, VLAN id, a port named twice) and the VLAN pre-flight against the session's cached
   VLAN table -- nothing is sent for a VLAN the switch lacks (IOS would create it, EOS would accept it);
2. one read of every port: an absent interface is refused here, before a push in which IOS would stay in the
   previous port's context and Junos would configure a phantom interface; routed/trunk ports are refused too;
3. one push of every remaining port's lines, written ``batch_chunk`` lines at a time without waiting for each echo;
   Junos: one commit (a bounce needs a second one: ``disable`` and ``delete disable`` in one commit change nothing);
4. a port whose lines the switch refused -- every port, when a Junos push or commit fails and is rolled back -- is
   redone on its own through the single-port operations, so only the bad port fails;
5. one read-back of every port: the VLAN of each and, after a bounce, that it is enabled again.

A session failure (timeout, lost connection) ends the batch: every port not yet decided gets that error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .base import PortMove, PortOutcome, PortStatus, VlanChange, check_vlan
from .errors import CommandFailed, DriverError, InterfaceMissing, InvalidArgument, VerificationFailed, VlanMissing

if TYPE_CHECKING:
    from .cli import CliDriver, PortRow

__all__ = ["run_batch"]


def run_batch(driver: CliDriver, moves: Sequence[PortMove]) -> list[PortOutcome]:
    outcomes: dict[int, PortOutcome] = {}
    keys = _pure_checks(driver, moves, outcomes)
    try:
        _run(driver, moves, keys, outcomes)
    except DriverError as exc:
        exc.annotate("the batch stopped here; ports without a result of their own are in an unknown state until "
                     "read again")
        for i, move in enumerate(moves):
            outcomes.setdefault(i, PortOutcome(move.port, error=exc))
    return [outcomes[i] for i in range(len(moves))]


def _pure_checks(driver: CliDriver, moves: Sequence[PortMove], outcomes: dict[int, PortOutcome]) -> dict[int, str]:
    switch = driver.target.name
    keys: dict[int, str] = {}
    seen: set[str] = set()
    for i, move in enumerate(moves):
        try:
            port = driver._check_port(move.port)
            if move.vlan is not None:
                check_vlan(move.vlan, switch=switch, port=port)
            key = driver.vendor.canonical(port)
            if key in seen:
                raise InvalidArgument("is named more than once in this batch; give each port once", switch=switch,
                                      port=port)
        except DriverError as exc:
            outcomes[i] = PortOutcome(move.port, error=exc)
            continue
        seen.add(key)
        keys[i] = key
    return keys


def _run(driver: CliDriver, moves: Sequence[PortMove], keys: dict[int, str],
         outcomes: dict[int, PortOutcome]) -> None:
    switch = driver.target.name
    for i in list(keys):
        vlan = moves[i].vlan
        if vlan is not None:
            try:
                driver.check_vlan_exists(vlan, moves[i].port)
            except VlanMissing as exc:
                outcomes[i] = PortOutcome(moves[i].port, error=exc)
                del keys[i]
    if not keys:
        return
    before = driver.read_all_ports()
    for i, key in list(keys.items()):
        row = before.get(key)
        error: DriverError | None = None
        if row is None:
            error = InterfaceMissing("interface does not exist on this switch (not in its port status); check the "
                                     "port name (nothing was changed)", switch=switch, port=moves[i].port)
        elif row.vlan is None:
            error = CommandFailed(f"is a {row.mode} port, not an access port; trustport only changes access ports "
                                  "(nothing was changed)", switch=switch, port=moves[i].port)
        if error is not None:
            outcomes[i] = PortOutcome(moves[i].port, error=error)
            del keys[i]
    if not keys:
        return
    redo = _push(driver, moves, list(keys))
    done = [i for i in keys if i not in redo]
    after = driver.read_all_ports() if done else {}
    for i, key in keys.items():
        orig = before[key].vlan
        assert orig is not None
        if i in redo:
            outcomes[i] = _with_before(driver._move_one(moves[i]), orig)
        else:
            outcomes[i] = _compare(driver, moves[i], orig, after.get(key))
    _save(driver, outcomes)


def _lines(driver: CliDriver, move: PortMove, *, down: bool, up: bool) -> list[str]:
    vendor = driver.vendor
    lines: list[str] = []
    if move.vlan is not None:
        lines += [t.format(port=move.port, vlan=move.vlan) for t in driver._set_templates()]
    if move.bounce and down:
        lines += [t.format(port=move.port) for t in vendor.port_down]
    if move.bounce and up:
        lines += [t.format(port=move.port) for t in vendor.port_up]
    if lines:
        lines += vendor.block_suffix
    return lines


def _push(driver: CliDriver, moves: Sequence[PortMove], order: list[int]) -> set[int]:
    """Push every port's lines; return the ports to redo one by one."""
    commit = driver.vendor.needs_commit
    blocks = {i: _lines(driver, moves[i], down=True, up=not commit) for i in order}
    redo = _push_blocks(driver, blocks, "batch configuration push")
    if commit and redo:
        return set(order)  # the candidate was rolled back: redo every port, each with its own commit
    if commit:
        bounced = {i: _lines(driver, dataclasses.replace(moves[i], vlan=None), down=False, up=True)
                   for i in order if moves[i].bounce}
        if bounced and _push_blocks(driver, bounced, "batch re-enable after bounce"):
            for i in bounced:  # the VLANs are committed; bring each bounced port up on its own
                driver.ensure_port_up(moves[i].port)
    return redo


def _push_blocks(driver: CliDriver, blocks: dict[int, list[str]], action: str) -> set[int]:
    owners = [i for i, lines in blocks.items() for _ in lines]
    lines = [line for block in blocks.values() for line in block]
    if not lines:
        return set()
    if driver.vendor.push_suffix:
        lines += driver.vendor.push_suffix
    answers = driver.push_lines(lines, action)
    failed = {owners[n] for n, answer in enumerate(answers[: len(owners)]) if driver.line_failed(answer)}
    if not driver.vendor.needs_commit:
        return failed
    if failed:
        driver._rollback()
        return set(blocks)
    try:
        driver._commit(action, None)
    except CommandFailed:
        return set(blocks)  # rolled back by _commit
    return set()


def _with_before(outcome: PortOutcome, before: int) -> PortOutcome:
    """A redone port reports the VLAN it had before the batch (its own read saw what the push left)."""
    if outcome.change is None:
        return outcome
    change = outcome.change
    return dataclasses.replace(outcome, change=VlanChange(change.switch, change.port, before, change.after))


def _compare(driver: CliDriver, move: PortMove, before: int, row: PortRow | None) -> PortOutcome:
    switch = driver.target.name
    if row is None or row.vlan is None:
        return PortOutcome(move.port, error=CommandFailed(
            "port is missing from the read-back after the push (or is no longer an access port); check it by hand",
            switch=switch, port=move.port))
    change = VlanChange(switch, move.port, before, row.vlan) if move.vlan is not None else None
    expected = move.vlan if move.vlan is not None else before
    if row.vlan != expected:
        what = f"access VLAN change to {move.vlan}" if move.vlan is not None else "the bounce"
        return PortOutcome(move.port, error=VerificationFailed(
            f"{what} did not take effect", switch=switch, port=move.port, expected=expected, actual=row.vlan))
    status = PortStatus(move.port, row.vlan, row.admin_up, row.oper_up)
    if move.bounce and not row.admin_up:
        return PortOutcome(move.port, change, error=VerificationFailed(
            "port is still shut down after the bounce; run ensure_port_up or re-enable it by hand", switch=switch,
            port=move.port, expected="enabled", actual="shut down"))
    return PortOutcome(move.port, change, move.bounce, status if move.bounce else None)


def _save(driver: CliDriver, outcomes: dict[int, PortOutcome]) -> None:
    changed = [i for i, o in outcomes.items() if o.ok and o.change is not None and o.change.changed]
    if not (driver.options.save_config and changed):
        return
    try:
        driver.save_config()
    except DriverError as exc:
        exc.annotate("the change is in the running configuration only")
        for i in changed:
            outcomes[i] = dataclasses.replace(outcomes[i], error=exc)
