"""Juniper Junos (ELS; ``els: false`` for pre-ELS EX): CLI facts, read-back parsers and the driver.

Facts that matter for enforcement: changes go to a candidate and take effect on ``commit`` (a failed commit is undone
with ``rollback 0``); the configuration accepts interfaces that do not exist -- the commit succeeds and nothing
happens -- so every operation first asks the hardware (``show interfaces X terse``: ``error: device X not found``).
A bounce needs two commits (``disable`` then ``delete disable``; in one commit they cancel out).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field

from ..base import Capability
from ..cli import CliDriver, CliOptions, CliVendor, PortRow

__all__ = ["JUNIPER_JUNOS", "JuniperJunosDriver", "JuniperJunosOptions", "parse_ports", "parse_vlan", "parse_vlans"]

_PHYSICAL = re.compile(r"(?:ge|xe|et|mge|fe)-\d{1,2}/\d{1,2}/\d{1,3}", re.ASCII)


def parse_vlan(raw: str) -> int | None:
    """``show configuration interfaces X | display set``: numeric ``vlan members`` (none: VLAN default, id 1)."""
    if "family ethernet-switching" not in raw:
        return None
    members = re.findall(r"vlan members (\S+)\s*$", raw, re.M)
    if not members:
        return 1  # ELS access port without members is in VLAN "default" (id 1)
    if len(members) == 1 and members[0].isdigit():
        return int(members[0])
    if members == ["default"]:
        return 1
    return None


def parse_vlans(raw: str) -> frozenset[int] | None:
    """``show configuration vlans | display set``: every ``vlan-id``."""
    ids = re.findall(r"^set vlans \S+ vlan-id (\d+)\s*$", raw, re.M)
    return frozenset(int(i) for i in ids) if ids else None


def parse_ports(outputs: Sequence[str]) -> dict[str, PortRow]:
    """``show interfaces [X] terse`` (Admin, Link of each physical interface) + ``show configuration interfaces [X]
    | display set`` (its VLAN)."""
    terse, config = outputs
    lines: dict[str, list[str]] = {}
    for line in config.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[:2] == ["set", "interfaces"]:
            lines.setdefault(parts[2], []).append(line)
    ports: dict[str, PortRow] = {}
    for line in terse.splitlines():
        parts = line.split()
        if len(parts) < 3 or not _PHYSICAL.fullmatch(parts[0]) or parts[1] not in ("up", "down"):
            continue
        name = parts[0]
        own = "\n".join(lines.get(name, []))
        vlan = parse_vlan(own)
        ports[name] = PortRow(port=name, vlan=vlan, admin_up=parts[1] == "up" and " disable" not in own,
                              oper_up=parts[2] == "up", mode="access" if vlan is not None else "non-access")
    return ports


JUNIPER_JUNOS = CliVendor(
    name="juniper_junos",
    device_type="juniper_junos",
    interface_re=re.compile(r"(?:ge|xe|et|mge|fe)-\d{1,2}/\d{1,2}/\d{1,3}", re.ASCII),
    interface_hint="a Junos interface such as ge-0/0/5",
    error_pattern=r"syntax error|unknown command|^error:|missing argument|invalid value",
    missing_interface=r"error: device \S+ not found",
    set_vlan=(
        "delete interfaces {port} unit 0 family ethernet-switching vlan members",
        "set interfaces {port} unit 0 family ethernet-switching interface-mode access",
        "set interfaces {port} unit 0 family ethernet-switching vlan members {vlan}",
    ),
    port_down=("set interfaces {port} disable",),
    port_up=("delete interfaces {port} disable",),
    show_vlan="show configuration interfaces {port} | display set",
    parse_vlan=parse_vlan,
    show_vlans="show configuration vlans | display set",
    parse_vlans=parse_vlans,
    show_port=("show interfaces {port} terse", "show configuration interfaces {port} | display set"),
    show_ports=("show interfaces terse", "show configuration interfaces | display set"),
    parse_ports=parse_ports,
    exists_check="show interfaces {port} terse",
    reauth=("clear dot1x interface {port}",),
    needs_commit=True,
    needs_enable=False,
)


class JuniperJunosOptions(CliOptions):
    """Junos. ``els=False`` uses ``port-mode`` for pre-ELS EX switches."""

    els: bool = True
    commit_timeout: float = Field(default=60.0, gt=0)


class JuniperJunosDriver(CliDriver):
    """Juniper Junos ELS over SSH (netmiko, commit/rollback)."""

    name = "juniper_junos"
    summary = "Juniper Junos ELS over SSH (netmiko, commit/rollback)"
    vendor = JUNIPER_JUNOS
    options_type = JuniperJunosOptions
    capabilities = CliDriver.capabilities | Capability.REAUTHENTICATE

    def _set_templates(self) -> tuple[str, ...]:
        opts = self.options
        if isinstance(opts, JuniperJunosOptions) and not opts.els:
            return tuple(t.replace("interface-mode", "port-mode") for t in self.vendor.set_vlan)
        return self.vendor.set_vlan
