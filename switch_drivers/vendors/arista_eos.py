"""Arista EOS: CLI facts, JSON read-back parsers and the driver.

Facts that matter for enforcement: ``switchport access vlan N`` for a VLAN that does not exist is accepted without a
word and the port then forwards nothing (the VLAN is "inactive"), so the driver checks ``show vlan | json`` first.
Every read uses EOS's ``| json`` output; an absent interface answers ``% Interface does not exist``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..cli import CliDriver, CliOptions, CliVendor, PortRow

__all__ = ["ARISTA_EOS", "AristaEosDriver", "AristaEosOptions", "canonical", "parse_ports", "parse_vlan",
           "parse_vlans"]

_NAME_RE = re.compile(r"(?:Ethernet|Et)(\d{1,3}(?:/\d{1,3}){0,2})", re.ASCII)


def canonical(port: str) -> str:
    match = _NAME_RE.fullmatch(port)
    return f"Ethernet{match.group(1)}" if match else port


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def parse_vlan(raw: str) -> int | None:
    """``show interfaces X switchport | json``: ``switchports.<port>.switchportInfo.accessVlanId``."""
    try:
        ports = _json(raw)["switchports"]
        if len(ports) != 1:
            return None
        (info,) = ports.values()
        if info["switchportInfo"].get("mode", "access") != "access":
            return None
        return int(info["switchportInfo"]["accessVlanId"])
    except (KeyError, TypeError, ValueError):
        return None


def parse_vlans(raw: str) -> frozenset[int] | None:
    """``show vlan | json``: the keys of ``vlans`` are the ids."""
    try:
        return frozenset(int(vid) for vid in _json(raw)["vlans"])
    except (KeyError, TypeError, ValueError):
        return None


def parse_ports(outputs: Sequence[str]) -> dict[str, PortRow]:
    """``show interfaces [X] status | json``: ``interfaceStatuses.<port>`` with ``linkStatus`` (connected,
    notconnect, disabled, errdisabled) and ``vlanInformation``."""
    try:
        statuses = _json(outputs[0])["interfaceStatuses"]
        ports: dict[str, PortRow] = {}
        for name, info in statuses.items():
            vlan_info = info.get("vlanInformation", {})
            mode = str(vlan_info.get("interfaceMode", vlan_info.get("interfaceForwardingModel", "unknown")))
            vlan = vlan_info.get("vlanId") if mode == "bridged" else None
            link = str(info.get("linkStatus", ""))
            ports[canonical(name)] = PortRow(port=name, vlan=int(vlan) if vlan is not None else None,
                                             admin_up=link != "disabled", oper_up=link == "connected", mode=mode)
        return ports
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}


ARISTA_EOS = CliVendor(
    name="arista_eos",
    device_type="arista_eos",
    interface_re=re.compile(r"(?:Ethernet|Et)\d{1,3}(?:/\d{1,3}){0,2}", re.ASCII),
    interface_hint="an EOS interface such as Ethernet5 or Ethernet1/5",
    error_pattern=r"% ?Invalid input|% ?Incomplete command|% ?Ambiguous command|% Interface does not exist",
    missing_interface=r"% Interface does not exist|% ?Invalid input",
    set_vlan=("interface {port}", "switchport mode access", "switchport access vlan {vlan}"),
    port_down=("interface {port}", "shutdown"),
    port_up=("interface {port}", "no shutdown"),
    show_vlan="show interfaces {port} switchport | json",
    parse_vlan=parse_vlan,
    show_vlans="show vlan | json",
    parse_vlans=parse_vlans,
    show_port=("show interfaces {port} status | json",),
    show_ports=("show interfaces status | json",),
    parse_ports=parse_ports,
    canonical=canonical,
    block_suffix=("exit",),
)


class AristaEosOptions(CliOptions):
    """Arista EOS."""


class AristaEosDriver(CliDriver):
    """Arista EOS over SSH (netmiko, JSON read-back)."""

    name = "arista_eos"
    summary = "Arista EOS over SSH (netmiko, JSON read-back)"
    vendor = ARISTA_EOS
    options_type = AristaEosOptions
