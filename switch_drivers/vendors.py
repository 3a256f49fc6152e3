"""Vendor CLI specifics as data: interface-name grammar, command templates, error patterns, read-back parsers.

Everything here is pure (no I/O) so it is unit-tested table-driven against recorded device output.
Command templates are rendered only after the interface name matched the vendor's strict regex and the VLAN
passed :func:`~switch_drivers.base.check_vlan`, so no caller-supplied text can add a command.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .base import check_vlan
from .errors import CommandFailed, InvalidArgument

__all__ = ["VENDORS", "CliVendor", "parse_vlan", "render"]


@dataclass(frozen=True, slots=True)
class CliVendor:
    """One CLI dialect. Templates use ``{port}`` and ``{vlan}``; ``()`` means 'not supported by CLI'."""

    name: str
    device_type: str  # netmiko device_type
    interface_re: re.Pattern[str]
    interface_hint: str  # shown in InvalidArgument messages
    error_pattern: str  # netmiko error_pattern for send_config_set (re.M)
    set_vlan: tuple[str, ...]
    port_down: tuple[str, ...]
    port_up: tuple[str, ...]
    show_vlan: str  # exec-mode read-back command
    reauth: tuple[str, ...] = ()
    reauth_in_config: bool = False
    needs_commit: bool = False  # Junos candidate configuration
    needs_enable: bool = True
    cmd_verify: bool = True
    leave_config: str = ""  # sent after a refused command when netmiko cannot see the config sub-mode


_CISCO_ERRORS = r"% ?Invalid input|% ?Incomplete command|% ?Ambiguous command|% Access VLAN does not exist"

CISCO_IOS = CliVendor(
    name="cisco_ios",
    device_type="cisco_ios",
    interface_re=re.compile(
        r"(?:GigabitEthernet|Gi|TenGigabitEthernet|Te|TwentyFiveGigE|Twe|FortyGigabitEthernet|Fo|"
        r"HundredGigE|Hu|FastEthernet|Fa|Ethernet|Et)\d{1,3}(?:/\d{1,3}){0,3}", re.ASCII),
    interface_hint="an IOS interface such as Gi1/0/5 or GigabitEthernet1/0/5",
    error_pattern=_CISCO_ERRORS,
    set_vlan=("interface {port}", "switchport mode access", "switchport access vlan {vlan}"),
    port_down=("interface {port}", "shutdown"),
    port_up=("interface {port}", "no shutdown"),
    show_vlan="show interfaces {port} switchport",
    reauth=("clear access-session interface {port}",),
)

ARISTA_EOS = CliVendor(
    name="arista_eos",
    device_type="arista_eos",
    interface_re=re.compile(r"(?:Ethernet|Et)\d{1,3}(?:/\d{1,3}){0,2}", re.ASCII),
    interface_hint="an EOS interface such as Ethernet5 or Ethernet1/5",
    error_pattern=r"% ?Invalid input|% ?Incomplete command|% ?Ambiguous command",
    set_vlan=("interface {port}", "switchport mode access", "switchport access vlan {vlan}"),
    port_down=("interface {port}", "shutdown"),
    port_up=("interface {port}", "no shutdown"),
    show_vlan="show interfaces {port} switchport | json",
)

# AOS-CX: netmiko's check_config_mode does not recognise (config-if)#, so every list ends with "end".
ARUBA_AOSCX = CliVendor(
    name="aruba_aoscx",
    device_type="aruba_aoscx",
    interface_re=re.compile(r"\d{1,2}/\d{1,2}/\d{1,3}", re.ASCII),
    interface_hint="an AOS-CX interface member/slot/port such as 1/1/5",
    error_pattern=r"Invalid input|% ?Command incomplete|should be created before|is not L2",
    set_vlan=("interface {port}", "no routing", "vlan access {vlan}", "end"),
    port_down=("interface {port}", "shutdown", "end"),
    port_up=("interface {port}", "no shutdown", "end"),
    show_vlan="show running-config interface {port}",
    needs_enable=False,
    leave_config="end",
)

HP_PROCURVE = CliVendor(
    name="hp_procurve",
    device_type="hp_procurve",  # never "aruba_os" (that is the Mobility Controller driver)
    interface_re=re.compile(r"(?:[A-Z]?\d{1,3}|\d{1,2}/[A-Z]?\d{1,3})", re.ASCII),
    interface_hint="a ProCurve port such as 5, A5 or 1/5",
    error_pattern=r"Invalid input|Module not present|VLAN id must be|not a valid port",
    set_vlan=("vlan {vlan} untagged {port}",),
    port_down=("interface {port} disable",),
    port_up=("interface {port} enable",),
    show_vlan="show vlans ports {port} detail",
    reauth=("aaa port-access authenticator {port} reauthenticate",),
    reauth_in_config=True,
)

JUNIPER_JUNOS = CliVendor(
    name="juniper_junos",
    device_type="juniper_junos",
    interface_re=re.compile(r"(?:ge|xe|et|mge|fe)-\d{1,2}/\d{1,2}/\d{1,3}", re.ASCII),
    interface_hint="a Junos interface such as ge-0/0/5",
    error_pattern=r"syntax error|unknown command|^error:|missing argument|invalid value",
    set_vlan=(
        "delete interfaces {port} unit 0 family ethernet-switching vlan members",
        "set interfaces {port} unit 0 family ethernet-switching interface-mode access",
        "set interfaces {port} unit 0 family ethernet-switching vlan members {vlan}",
    ),
    port_down=("set interfaces {port} disable",),
    port_up=("delete interfaces {port} disable",),
    show_vlan="show configuration interfaces {port} | display set",
    reauth=("clear dot1x interface {port}",),
    needs_commit=True,
    needs_enable=False,
)

VENDORS: dict[str, CliVendor] = {
    v.name: v for v in (CISCO_IOS, ARISTA_EOS, ARUBA_AOSCX, HP_PROCURVE, JUNIPER_JUNOS)
}


def check_interface(vendor: CliVendor, port: object, *, switch: str = "") -> str:
    """Return ``port`` if it is a well-formed interface name for ``vendor``; nothing else is ever sent."""
    if not isinstance(port, str) or not vendor.interface_re.fullmatch(port):
        raise InvalidArgument(
            f"interface name {port!r} is not valid for {vendor.name}; use {vendor.interface_hint}",
            switch=switch,
        )
    return port


def render(templates: tuple[str, ...], vendor: CliVendor, port: str, vlan: object = None,
           *, switch: str = "") -> list[str]:
    """Fill ``{port}``/``{vlan}`` into command templates after validating both."""
    port = check_interface(vendor, port, switch=switch)
    values: dict[str, Any] = {"port": port}
    if any("{vlan}" in t for t in templates):
        values["vlan"] = check_vlan(vlan, switch=switch, port=port)
    return [t.format(**values) for t in templates]


def _parse_ios(raw: str) -> int | None:
    from ntc_templates.parse import parse_output

    try:
        rows = parse_output(platform="cisco_ios", command="show interfaces switchport", data=raw)
    except Exception:  # TextFSM raises its own error types on unexpected lines
        rows = None
    if isinstance(rows, list) and rows:
        value = str(rows[0].get("access_vlan", ""))
        return int(value) if value.isdigit() else None
    match = re.search(r"^Access Mode VLAN:\s+(\d+)", raw, re.M)
    return int(match.group(1)) if match else None


def _parse_eos(raw: str) -> int | None:
    try:
        doc = json.loads(raw)
        ports = doc["switchports"]
        if len(ports) != 1:
            return None
        (info,) = ports.values()
        return int(info["switchportInfo"]["accessVlanId"])
    except (ValueError, KeyError, TypeError):
        return None


def _parse_aoscx(raw: str) -> int | None:
    if not re.search(r"^\s*no routing\s*$", raw, re.M):
        return None  # routed port: no access VLAN
    match = re.search(r"^\s*vlan access (\d+)\s*$", raw, re.M)
    return int(match.group(1)) if match else 1


def _parse_procurve(raw: str) -> int | None:
    untagged = re.findall(r"^\s*(\d+)\s+.*\|.*\bUntagged\s*$", raw, re.M)
    return int(untagged[0]) if len(untagged) == 1 else None


def _parse_junos(raw: str) -> int | None:
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


_PARSERS = {
    "cisco_ios": _parse_ios,
    "arista_eos": _parse_eos,
    "aruba_aoscx": _parse_aoscx,
    "hp_procurve": _parse_procurve,
    "juniper_junos": _parse_junos,
}


def parse_vlan(vendor: CliVendor, raw: str, *, switch: str = "", port: str | None = None) -> int:
    """Extract the access VLAN from the vendor's ``show_vlan`` output or raise :class:`CommandFailed`."""
    vlan = _PARSERS[vendor.name](raw)
    if vlan is None:
        snippet = " ".join(raw.split())[:160]
        raise CommandFailed(
            f"could not read the access VLAN from {vendor.show_vlan.format(port=port)!r} output "
            f"(is it an access port? output: {snippet!r})",
            switch=switch,
            port=port,
        )
    return vlan
