"""Cisco IOS / IOS-XE: CLI facts, read-back parsers (ntc-templates) and the driver.

Facts that matter for enforcement: ``switchport access vlan N`` for a VLAN the switch lacks prints
``% Access VLAN does not exist. Creating vlan N`` and *creates* it, so the driver checks ``show vlan brief`` first
and never sends it (the message stays in the error pattern in case the table changed in between). A status line
says ``disabled`` for an administratively shut port; the VLAN column says ``trunk``/``routed`` for other ports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..base import Capability
from ..cli import CliDriver, CliOptions, CliVendor, PortRow

__all__ = ["CISCO_IOS", "CiscoIosDriver", "CiscoIosOptions", "canonical", "parse_ports", "parse_vlan",
           "parse_vlans"]

# long name -> the short form IOS prints in tables (show interfaces status, show vlan brief)
_NAMES = {
    "GigabitEthernet": "Gi", "TenGigabitEthernet": "Te", "TwentyFiveGigE": "Twe", "FortyGigabitEthernet": "Fo",
    "HundredGigE": "Hu", "FastEthernet": "Fa", "Ethernet": "Et",
}
_LONG = {**{k.lower(): k for k in _NAMES}, **{v.lower(): k for k, v in _NAMES.items()}}
_NAME_RE = re.compile(r"([A-Za-z]+)(\d{1,3}(?:/\d{1,3}){0,3})", re.ASCII)


def canonical(port: str) -> str:
    """``Gi1/0/5`` and ``GigabitEthernet1/0/5`` are the same port: compare in the long form."""
    match = _NAME_RE.fullmatch(port)
    if not match or match.group(1).lower() not in _LONG:
        return port
    return _LONG[match.group(1).lower()] + match.group(2)


def _ntc(command: str, raw: str) -> list[dict[str, Any]] | None:
    from ntc_templates.parse import parse_output

    try:
        rows = parse_output(platform="cisco_ios", command=command, data=raw)
    except Exception:  # TextFSM raises its own error types on unexpected lines
        return None
    return rows if isinstance(rows, list) else None


def parse_vlan(raw: str) -> int | None:
    """``show interfaces X switchport``: the access VLAN, None for a trunk or unreadable output."""
    rows = _ntc("show interfaces switchport", raw)
    if rows:
        if "trunk" in str(rows[0].get("admin_mode", "")).lower():
            return None  # never turn an uplink into an access port
        value = str(rows[0].get("access_vlan", ""))
        return int(value) if value.isdigit() else None
    if re.search(r"^Administrative Mode:\s+trunk", raw, re.M):
        return None
    match = re.search(r"^Access Mode VLAN:\s+(\d+)", raw, re.M)
    return int(match.group(1)) if match else None


def parse_vlans(raw: str) -> frozenset[int] | None:
    """``show vlan brief``: the VLAN ids defined on the switch."""
    rows = _ntc("show vlan brief", raw)
    if rows is None:
        return None
    return frozenset(int(r["vlan_id"]) for r in rows if str(r.get("vlan_id", "")).isdigit())


def parse_ports(outputs: Sequence[str]) -> dict[str, PortRow]:
    """``show interfaces [X] status``: VLAN, admin and link state of every listed port."""
    rows = _ntc("show interfaces status", outputs[0]) or []
    ports: dict[str, PortRow] = {}
    for row in rows:
        name, status, vlan = str(row["port"]), str(row["status"]), str(row["vlan_id"])
        ports[canonical(name)] = PortRow(
            port=name, vlan=int(vlan) if vlan.isdigit() else None, admin_up=status != "disabled",
            oper_up=status == "connected", mode="access" if vlan.isdigit() else vlan)
    return ports


CISCO_IOS = CliVendor(
    name="cisco_ios",
    device_type="cisco_ios",
    interface_re=re.compile(
        r"(?:GigabitEthernet|Gi|TenGigabitEthernet|Te|TwentyFiveGigE|Twe|FortyGigabitEthernet|Fo|"
        r"HundredGigE|Hu|FastEthernet|Fa|Ethernet|Et)\d{1,3}(?:/\d{1,3}){0,3}", re.ASCII),
    interface_hint="an IOS interface such as Gi1/0/5 or GigabitEthernet1/0/5",
    error_pattern=r"% ?Invalid input|% ?Incomplete command|% ?Ambiguous command|% Access VLAN does not exist",
    missing_interface=r"% ?Invalid input detected|% ?Invalid interface",
    set_vlan=("interface {port}", "switchport mode access", "switchport access vlan {vlan}"),
    port_down=("interface {port}", "shutdown"),
    port_up=("interface {port}", "no shutdown"),
    show_vlan="show interfaces {port} switchport",
    parse_vlan=parse_vlan,
    show_vlans="show vlan brief",
    parse_vlans=parse_vlans,
    show_port=("show interfaces {port} status",),
    show_ports=("show interfaces status",),
    parse_ports=parse_ports,
    canonical=canonical,
    block_suffix=("exit",),  # back to (config): a refused 'interface' line then cannot leave us in another port
    reauth=("clear access-session interface {port}",),
)


class CiscoIosOptions(CliOptions):
    """Cisco IOS / IOS-XE."""


class CiscoIosDriver(CliDriver):
    """Cisco IOS / IOS-XE over SSH (netmiko)."""

    name = "cisco_ios"
    summary = "Cisco IOS / IOS-XE over SSH (netmiko)"
    vendor = CISCO_IOS
    options_type = CiscoIosOptions
    capabilities = CliDriver.capabilities | Capability.REAUTHENTICATE
