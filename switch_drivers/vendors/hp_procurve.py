"""HPE ProCurve / ArubaOS-Switch: CLI facts, read-back parsers (ntc-templates) and the driver.

Facts that matter for enforcement: ``device_type`` is ``hp_procurve``, never ``aruba_os`` (the Mobility Controller);
``vlan N untagged X`` *creates* VLAN N when it is missing, so the driver checks ``show vlans`` first. Port state comes
from two tables: ``show interfaces brief`` (Enabled, Status) and ``show interfaces status`` (untagged VLAN).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..base import Capability
from ..cli import CliDriver, CliOptions, CliVendor, PortRow

__all__ = ["HP_PROCURVE", "HpProcurveDriver", "HpProcurveOptions", "parse_ports", "parse_vlan", "parse_vlans"]


def _ntc(command: str, raw: str) -> list[dict[str, Any]] | None:
    from ntc_templates.parse import parse_output

    try:
        rows = parse_output(platform="hp_procurve", command=command, data=raw)
    except Exception:  # TextFSM raises its own error types on unexpected lines
        return None
    return rows if isinstance(rows, list) else None


def parse_vlan(raw: str) -> int | None:
    """``show vlans ports X detail``: the one VLAN the port is untagged in."""
    untagged = re.findall(r"^\s*(\d+)\s+.*\|.*\bUntagged\s*$", raw, re.M)
    return int(untagged[0]) if len(untagged) == 1 else None


def parse_vlans(raw: str) -> frozenset[int] | None:
    """``show vlans``."""
    rows = _ntc("show vlans", raw)
    if rows is None:
        return None
    return frozenset(int(r["vlan_id"]) for r in rows if str(r.get("vlan_id", "")).isdigit())


def parse_ports(outputs: Sequence[str]) -> dict[str, PortRow]:
    """``show interfaces brief [X]`` + ``show interfaces status [X]``."""
    brief = _ntc("show interfaces brief", outputs[0]) or []
    status = {str(r["port"]): str(r["vlan_untagged"]) for r in _ntc("show interfaces status", outputs[1]) or []}
    ports: dict[str, PortRow] = {}
    for row in brief:
        name = str(row["port"])
        untagged = status.get(name, "")
        ports[name] = PortRow(port=name, vlan=int(untagged) if untagged.isdigit() else None,
                              admin_up=row["enabled"] == "Yes", oper_up=row["status"] == "Up",
                              mode="access" if untagged.isdigit() else "tagged-only")
    return ports


HP_PROCURVE = CliVendor(
    name="hp_procurve",
    device_type="hp_procurve",  # never "aruba_os" (that is the Mobility Controller driver)
    interface_re=re.compile(r"(?:[A-Z]?\d{1,3}|\d{1,2}/[A-Z]?\d{1,3})", re.ASCII),
    interface_hint="a ProCurve port such as 5, A5 or 1/5",
    error_pattern=r"Invalid input|Module not present|VLAN id must be|not a valid port",
    missing_interface=r"Module not present for port or invalid port|Invalid input",
    set_vlan=("vlan {vlan} untagged {port}",),
    port_down=("interface {port} disable",),
    port_up=("interface {port} enable",),
    show_vlan="show vlans ports {port} detail",
    parse_vlan=parse_vlan,
    show_vlans="show vlans",
    parse_vlans=parse_vlans,
    show_port=("show interfaces brief {port}", "show interfaces status {port}"),
    show_ports=("show interfaces brief", "show interfaces status"),
    parse_ports=parse_ports,
    reauth=("aaa port-access authenticator {port} reauthenticate",),
    reauth_in_config=True,
)


class HpProcurveOptions(CliOptions):
    """HPE ProCurve / ArubaOS-Switch."""


class HpProcurveDriver(CliDriver):
    """HPE ProCurve / ArubaOS-Switch over SSH (netmiko)."""

    name = "hp_procurve"
    summary = "HPE ProCurve / ArubaOS-Switch over SSH (netmiko)"
    vendor = HP_PROCURVE
    options_type = HpProcurveOptions
    capabilities = CliDriver.capabilities | Capability.REAUTHENTICATE
