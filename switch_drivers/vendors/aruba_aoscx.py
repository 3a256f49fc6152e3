"""Aruba AOS-CX 10.x: CLI facts, read-back parsers (ntc-templates for ``show vlan``) and the driver.

Facts that matter for enforcement: ports may be routed (``no routing`` makes them L2; a routed port is refused, never
converted); the VLAN must exist (``VLAN N should be created before assigning to an interface``); netmiko cannot see
the ``(config-if)#`` context, so every push ends with ``end``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..cli import CliDriver, CliOptions, CliVendor, PortRow

__all__ = ["ARUBA_AOSCX", "ArubaAosCxDriver", "ArubaAosCxOptions", "parse_ports", "parse_vlan", "parse_vlans"]


def parse_vlan(raw: str) -> int | None:
    """``show running-config interface X``: ``vlan access N`` (VLAN 1 when absent); None for a routed port."""
    if not re.search(r"^\s*no routing\s*$", raw, re.M):
        return None  # routed port: no access VLAN
    match = re.search(r"^\s*vlan access (\d+)\s*$", raw, re.M)
    return int(match.group(1)) if match else 1


def parse_vlans(raw: str) -> frozenset[int] | None:
    """``show vlan``."""
    from ntc_templates.parse import parse_output

    try:
        rows = parse_output(platform="aruba_aoscx", command="show vlan", data=raw)
    except Exception:  # TextFSM raises its own error types on unexpected lines
        return None
    if not isinstance(rows, list):
        return None
    return frozenset(int(r["vlan_id"]) for r in rows if str(r.get("vlan_id", "")).isdigit())


_BRIEF_ROW = re.compile(
    r"^(?P<port>\d{1,2}/\d{1,2}/\d{1,3})\s+(?P<vlan>\d+|--)\s+(?P<mode>\S+)\s+\S+\s+(?P<enabled>yes|no)\s+"
    r"(?P<status>up|down)\b", re.M)


def parse_ports(outputs: Sequence[str]) -> dict[str, PortRow]:
    """``show interface [X] brief``: Native VLAN, Mode (access/trunk/routed), Enabled, Status per port."""
    ports: dict[str, PortRow] = {}
    for m in _BRIEF_ROW.finditer(outputs[0]):
        access = m["mode"] == "access" and m["vlan"].isdigit()
        ports[m["port"]] = PortRow(port=m["port"], vlan=int(m["vlan"]) if access else None,
                                   admin_up=m["enabled"] == "yes", oper_up=m["status"] == "up", mode=m["mode"])
    return ports


ARUBA_AOSCX = CliVendor(
    name="aruba_aoscx",
    device_type="aruba_aoscx",
    interface_re=re.compile(r"\d{1,2}/\d{1,2}/\d{1,3}", re.ASCII),
    interface_hint="an AOS-CX interface member/slot/port such as 1/1/5",
    error_pattern=r"Invalid input|% ?Command incomplete|should be created before|is not L2",
    missing_interface=r"Invalid input|Interface \S+ does not exist",
    set_vlan=("interface {port}", "no routing", "vlan access {vlan}"),
    port_down=("interface {port}", "shutdown"),
    port_up=("interface {port}", "no shutdown"),
    show_vlan="show running-config interface {port}",
    parse_vlan=parse_vlan,
    show_vlans="show vlan",
    parse_vlans=parse_vlans,
    show_port=("show interface {port} brief",),
    show_ports=("show interface brief",),
    parse_ports=parse_ports,
    push_suffix=("end",),
    block_suffix=("exit",),
    needs_enable=False,
    leave_config="end",
)


class ArubaAosCxOptions(CliOptions):
    """Aruba AOS-CX 10.x."""


class ArubaAosCxDriver(CliDriver):
    """Aruba AOS-CX over SSH (netmiko)."""

    name = "aruba_aoscx"
    summary = "Aruba AOS-CX over SSH (netmiko)"
    vendor = ARUBA_AOSCX
    options_type = ArubaAosCxOptions
