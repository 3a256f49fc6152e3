"""Per-vendor CLI behaviour for the fake SSH switches (prompts, modes, outputs, exact error strings, quirks)."""

from __future__ import annotations

import json
import re
from typing import ClassVar

from .fake_cli import DeviceState, PortState, VendorSession, _Stall
from .fake_cli_junos import JuniperJunos

IOS_INVALID = "% Invalid input detected at '^' marker."
IOS_SWITCHPORT = """Name: {short}
Switchport: Enabled
Administrative Mode: static access
Operational Mode: {oper}
Administrative Trunking Encapsulation: dot1q
Operational Trunking Encapsulation: native
Negotiation of Trunking: Off
Access Mode VLAN: {vlan} ({vname})
Trunking Native Mode VLAN: 1 (default)
Administrative Native VLAN tagging: enabled
Voice VLAN: none
Administrative private-vlan host-association: none
Administrative private-vlan mapping: none
Operational private-vlan: none
Trunking VLANs Enabled: ALL
Pruning VLANs Enabled: 2-1001
Capture Mode Disabled
Capture VLANs Allowed: ALL

Protected: false
Unknown unicast blocked: disabled
Unknown multicast blocked: disabled
Appliance trust: none"""


def _vname(vlan: int) -> str:
    return "default" if vlan == 1 else f"VLAN{vlan:04d}"


def oper_up(port: PortState) -> bool:
    return port.link and not port.shutdown


class CiscoLike(VendorSession):
    """IOS-style exec / enable / config / config-if modes."""

    invalid = (IOS_INVALID,)
    start_mode = "exec"
    config_cmd = "configure terminal"
    if_prompt = "(config-if)#"

    def __init__(self, state: DeviceState) -> None:
        super().__init__(state)
        self.mode = self.start_mode

    def err(self, line: str) -> str:
        caret = " " * (len(self.prompt()) + max(line.rfind(" "), 0) + 1) + "^"
        return self.out(caret, *self.invalid)

    def prompt(self) -> str:
        host = self.state.hostname
        return {
            "exec": f"{host}>",
            "enable": f"{host}#",
            "config": f"{host}(config)#",
            "config-if": f"{host}{self.if_prompt}",
        }[self.mode]

    def canon(self, name: str) -> str | None:
        return name if name in self.state.ports else None

    def handle(self, line: str) -> str:
        if not line:
            return ""
        if line in ("terminal length 0", "terminal width 511", "no page", "terminal width 511 "):
            return self.common_terminal(line)
        if self.mode == "exec":
            return self.exec_cmd(line)
        if line == "end" and self.mode.startswith("config"):
            self.mode, self.iface = "enable", None
            return ""
        if self.mode == "enable":
            return self.enable_cmd(line)
        if line.startswith("do "):
            return self.show(line[3:])
        if line.startswith("interface "):
            name = self.canon(line.split(None, 1)[1])
            if name is None:
                return self.err(line)
            self.mode, self.iface = "config-if", name
            return ""
        if line == "exit":
            self.mode, self.iface = ("config", None) if self.mode == "config-if" else ("enable", None)
            return ""
        if self.mode == "config-if" and self.iface:
            if self.iface in self.state.refuse_ports and line not in ("shutdown", "no shutdown"):
                return self.err(line)
            return self.if_cmd(self.state.ports[self.iface], line)
        return self.config_cmd_line(line)

    def common_terminal(self, line: str) -> str:
        return ""

    def exec_cmd(self, line: str) -> str:
        if line == "enable":
            self.awaiting = self.check_secret
            return "Password: "
        if line in ("exit", "logout"):
            self.closed = True
            return ""
        if line.startswith("show "):
            return self.show(line)
        return self.err(line)

    def check_secret(self, answer: str) -> str:
        if answer == self.state.secret:
            self.mode = "enable"
            return ""
        return self.out("% Access denied", "")

    def enable_cmd(self, line: str) -> str:
        if line == self.config_cmd:
            self.mode = "config"
            return self.out("Enter configuration commands, one per line.  End with CNTL/Z.")
        if line in ("exit", "logout"):
            self.closed = True
            return ""
        if line in ("write mem", "write memory", "copy running-config startup-config"):
            with self.state.lock:
                self.state.saves += 1
            return self.out("Building configuration...", "[OK]")
        if line.startswith("show "):
            return self.show(line)
        return self.other_enable(line)

    def other_enable(self, line: str) -> str:
        m = re.fullmatch(r"clear access-session interface (\S+)", line)
        if m and self.canon(m.group(1)):
            with self.state.lock:
                self.state.ports[self.canon(m.group(1)) or ""].reauths += 1
            return ""
        return self.err(line)

    def set_access_vlan(self, port: PortState, vlan: int) -> None:
        with self.state.lock:
            if not self.state.ignores(self.iface or ""):
                port.vlan = vlan

    def if_cmd(self, port: PortState, line: str) -> str:
        if line in ("shutdown", "no shutdown"):
            self.set_shutdown(port, line == "shutdown")
            return ""
        if line == "switchport mode access":
            return ""
        m = re.fullmatch(r"switchport access vlan (\d+)", line)
        if m and 1 <= int(m.group(1)) <= 4094:
            vlan = int(m.group(1))
            msg = ""
            if vlan not in self.state.vlans:  # real IOS: creates the VLAN and moves the port
                with self.state.lock:
                    self.state.vlans.add(vlan)
                msg = self.out(f"% Access VLAN does not exist. Creating vlan {vlan}")
            self.set_access_vlan(port, vlan)
            return msg
        return self.err(line)

    def config_cmd_line(self, line: str) -> str:
        return self.err(line)

    def short(self, name: str) -> str:
        return name.replace("GigabitEthernet", "Gi").replace("TenGigabitEthernet", "Te").replace(
            "FastEthernet", "Fa")

    def show_vlan_brief(self) -> str:
        members: dict[int, list[str]] = {v: [] for v in self.state.vlans}
        for name, port in self.state.ports.items():
            members.setdefault(port.vlan, []).append(self.short(name))
        lines = ["", "VLAN Name                             Status    Ports",
                 "---- -------------------------------- --------- -------------------------------"]
        for vlan in sorted(members):
            ports = members[vlan]
            groups = [", ".join(ports[i:i + 4]) for i in range(0, len(ports), 4)] or [""]
            lines.append(f"{vlan:<4} {_vname(vlan):<32} active    {groups[0]}".rstrip())
            lines += [f"{'':48}{group}" for group in groups[1:]]
        for vlan, name in ((1002, "fddi-default"), (1003, "token-ring-default"), (1004, "fddinet-default"),
                           (1005, "trnet-default")):
            lines.append(f"{vlan:<4} {name:<32} act/unsup")
        return self.out(*lines)

    def show_status(self, names: list[str]) -> str:
        lines = ["", "Port      Name               Status       Vlan       Duplex  Speed Type"]
        for name in names:
            port = self.state.ports[name]
            status = "disabled" if port.shutdown else ("connected" if port.link else "notconnect")
            lines.append(f"{self.short(name):<9} {'':<18} {status:<12} {port.vlan:<10} a-full a-1000 "
                         "10/100/1000BaseTX")
        return self.out(*lines)

    def show(self, line: str) -> str:
        if self.state.stall_show:
            raise _Stall
        if line == "show vlan brief":
            return self.show_vlan_brief()
        if line == "show interfaces status":
            return self.show_status(list(self.state.ports))
        m = re.fullmatch(r"show interfaces (\S+) status", line)
        if m and (name := self.canon(m.group(1))):
            return self.show_status([name])
        m = re.fullmatch(r"show interfaces (\S+) switchport", line)
        if m and (name := self.canon(m.group(1))):
            port = self.state.ports[name]
            oper = "down" if port.shutdown else "static access"
            return self.out(*IOS_SWITCHPORT.format(
                short=self.short(name), vlan=port.vlan, vname=_vname(port.vlan), oper=oper).splitlines())
        return self.err(line)


class CiscoIos(CiscoLike):
    ABBREV: ClassVar[dict[str, str]] = {"gi": "GigabitEthernet", "te": "TenGigabitEthernet", "fa": "FastEthernet"}

    def canon(self, name: str) -> str | None:
        m = re.fullmatch(r"([A-Za-z]+)(\d+(?:/\d+)*)", name)
        if not m:
            return None
        prefix = m.group(1).lower()
        for short, full in self.ABBREV.items():
            if full.lower().startswith(prefix) and prefix.startswith(short):
                cand = full + m.group(2)
                return cand if cand in self.state.ports else None
        return None


class AristaEos(CiscoLike):
    invalid = ("% Invalid input",)
    if_prompt = "(config-if-Et{n})#"

    def err(self, line: str) -> str:
        tokens = line.split()
        return self.out(f"% Invalid input (at token {max(len(tokens) - 1, 0)}: '{tokens[-1] if tokens else ''}')")

    def prompt(self) -> str:
        if self.mode == "config-if" and self.iface:
            return f"{self.state.hostname}(config-if-Et{self.iface.removeprefix('Ethernet')})#"
        return super().prompt()

    def canon(self, name: str) -> str | None:
        m = re.fullmatch(r"(?i)(?:ethernet|et)(\d+(?:/\d+)*)", name)
        cand = f"Ethernet{m.group(1)}" if m else ""
        return cand if cand in self.state.ports else None

    def common_terminal(self, line: str) -> str:
        if line.startswith("terminal width"):
            return self.out("Width set to 511 columns.")
        return self.out("Pagination disabled.")

    def check_secret(self, answer: str) -> str:
        if answer == self.state.secret:
            self.mode = "enable"
            return ""
        return self.out("% Access denied")

    def if_cmd(self, port: PortState, line: str) -> str:
        m = re.fullmatch(r"switchport access vlan (\d+)", line)
        if m and not 1 <= int(m.group(1)) <= 4094:
            return self.err(line)
        if m:  # EOS accepts a missing VLAN silently ("inactive"); the port then forwards nothing
            self.set_access_vlan(port, int(m.group(1)))
            return ""
        return super().if_cmd(port, line)

    def json(self, doc: object) -> str:
        return self.out(*json.dumps(doc, indent=2).splitlines())

    def status_json(self, names: list[str]) -> str:
        statuses = {}
        for name in names:
            port = self.state.ports[name]
            link = "disabled" if port.shutdown else ("connected" if port.link else "notconnect")
            statuses[name] = {
                "description": "", "linkStatus": link, "bandwidth": 1000000000, "interfaceType": "1000BASE-T",
                "duplex": "duplexFull", "autoNegotiateActive": True, "lineProtocolStatus": "up" if oper_up(port)
                else "down", "vlanInformation": {"interfaceMode": "bridged", "vlanId": port.vlan,
                                                 "interfaceForwardingModel": "bridged"}}
        return self.json({"interfaceStatuses": statuses})

    def show(self, line: str) -> str:
        if self.state.stall_show:
            raise _Stall
        if line == "show vlan | json":
            members: dict[int, dict[str, object]] = {v: {} for v in self.state.vlans}
            for name, port in self.state.ports.items():
                if port.vlan in members:
                    members[port.vlan][name] = {"privatePromoted": False, "blocked": None}
            return self.json({"sourceDetail": "", "vlans": {
                str(v): {"name": _vname(v).upper(), "dynamic": False, "status": "active", "interfaces": members[v]}
                for v in sorted(members)}})
        if line == "show interfaces status | json":
            return self.status_json(list(self.state.ports))
        m = re.fullmatch(r"show interfaces (\S+) (switchport|status) \| json", line)
        name = (self.canon(m.group(1)) if m else None) or ""
        if m and not name:
            return self.out("% Interface does not exist")
        if m and m.group(2) == "status":
            return self.status_json([name])
        if m:
            port = self.state.ports[name]
            doc = {"switchports": {name: {"enabled": True, "switchportInfo": {
                "mode": "access", "accessVlanId": port.vlan, "accessVlanName": _vname(port.vlan).upper(),
                "trunkingNativeVlanId": 1, "trunkAllowedVlans": "ALL", "tpid": "0x8100",
                "macLearning": True, "staticTrunkGroups": [], "dynamicTrunkGroups": []}}}}
            return self.json(doc)
        return self.err(line)


class ArubaAosCx(CiscoLike):
    """AOS-CX 10.x: logs in at '#', 'no page', (config-if)# that 'exit'/'end' must leave."""

    start_mode = "enable"
    config_cmd = "configure term"
    invalid = ("Invalid input: ",)

    def err(self, line: str) -> str:
        return self.out(f"Invalid input: {line.rsplit(maxsplit=1)[-1] if line.split() else line}")

    def enable_cmd(self, line: str) -> str:
        if line in ("configure terminal", "configure term", "config"):
            self.mode = "config"
            return ""
        return super().enable_cmd(line)

    def canon(self, name: str) -> str | None:
        return name if name in self.state.ports else None

    def if_cmd(self, port: PortState, line: str) -> str:
        if line == "no routing":
            with self.state.lock:
                port.routed = False
            return ""
        m = re.fullmatch(r"vlan access (\d+)", line)
        if m:
            vlan = int(m.group(1))
            if not 1 <= vlan <= 4094:
                return self.err(line)
            if port.routed:
                return self.out("Interface is not L2. Use 'no routing' first.")
            if vlan not in self.state.vlans:
                return self.out(f"VLAN {vlan} should be created before assigning to an interface.")
            self.set_access_vlan(port, vlan)
            return ""
        if line in ("shutdown", "no shutdown"):
            self.set_shutdown(port, line == "shutdown")
            return ""
        return self.err(line)

    def other_enable(self, line: str) -> str:
        m = re.fullmatch(r"aaa authentication port-access interface (\S+) reauthenticate", line)
        if m and m.group(1) in self.state.ports:
            with self.state.lock:
                self.state.ports[m.group(1)].reauths += 1
            return ""
        return self.err(line)

    def show_brief(self, names: list[str]) -> str:
        rule = "-" * 104
        lines = [rule, "Port      Native  Mode   Type           Enabled Status  Reason                  Speed   "
                       "Description", "          VLAN                                                          "
                       "        (Mb/s)", rule]
        for name in names:
            port = self.state.ports[name]
            vlan, mode = ("--", "routed") if port.routed else (str(port.vlan), "access")
            reason = "Administratively down" if port.shutdown else ("" if port.link else "Waiting for link")
            lines.append(f"{name:<9} {vlan:<7} {mode:<6} 1GbT           {'no' if port.shutdown else 'yes':<7} "
                         f"{'up' if oper_up(port) else 'down':<7} {reason:<23} 1000    --")
        return self.out(*lines)

    def show(self, line: str) -> str:
        if self.state.stall_show:
            raise _Stall
        if line == "show vlan":
            rule = "-" * 98
            lines = [rule, "VLAN  Name                              Status  Reason          Type      Interfaces", rule]
            for vlan in sorted(self.state.vlans):
                ports = [n for n, p in self.state.ports.items() if p.vlan == vlan and not p.routed]
                kind = "default" if vlan == 1 else "static"
                lines.append(f"{vlan:<5} {f'VLAN{vlan}':<33} up      ok              {kind:<9} "
                             f"{','.join(ports[:6])}".rstrip())
                lines += [f"{'':76}{','.join(ports[i:i + 6])}" for i in range(6, len(ports), 6)]
            return self.out(*lines)
        if line == "show interface brief":
            return self.show_brief(list(self.state.ports))
        m = re.fullmatch(r"show (?:interface (\S+) brief|running-config interface (\S+))", line)
        if m and not self.canon(m.group(1) or m.group(2)):
            return self.out(f"Invalid input: {m.group(1) or m.group(2)}")
        if m and m.group(1):
            return self.show_brief([m.group(1)])
        if m:
            name = m.group(2)
            port = self.state.ports[name]
            body = [f"interface {name}", "    shutdown" if port.shutdown else "    no shutdown"]
            if not port.routed:
                body += ["    no routing", f"    vlan access {port.vlan}"]
            return self.out(*body, "    exit")
        return self.err(line)


class HpProcurve(CiscoLike):
    """ArubaOS-Switch/ProCurve: banner + 'Press any key', (eth-N)# context, logout confirmation."""

    start_mode = "enable"
    invalid = ("Invalid input: ",)
    banner = (
        "\r\nHP J9775A 2530-48G Switch\r\nSoftware revision YA.16.10.0003\r\n\r\n"
        "(C) Copyright 2020 Hewlett Packard Enterprise Development LP\r\n\r\n"
        "                   RESTRICTED RIGHTS LEGEND\r\n\r\nPress any key to continue"
    )

    def __init__(self, state: DeviceState) -> None:
        super().__init__(state)
        self.waiting_key = True

    def on_key(self) -> str | None:
        if self.waiting_key:
            self.waiting_key = False
            return "\r\n" + self.prompt()
        return None

    def prompt(self) -> str:
        if self.mode == "config-if" and self.iface:
            return f"{self.state.hostname}(eth-{self.iface})# "
        return super().prompt() + " "

    def err(self, line: str) -> str:
        return self.out(f"Invalid input: {line.rsplit(maxsplit=1)[-1] if line.split() else line}")

    def no_port(self, name: str) -> str:
        return self.out(f"Module not present for port or invalid port: {name}")

    def enable_cmd(self, line: str) -> str:
        if line in ("exit", "logout"):
            self.awaiting = self.logout_answer
            return "Do you want to log out [y/n]? "
        return super().enable_cmd(line)

    def logout_answer(self, answer: str) -> str:
        self.closed = answer.lower().startswith("y")
        return "" if self.closed else self.prompt()

    def move(self, vlan: int, name: str) -> str:
        if not 1 <= vlan <= 4094:
            return self.out(f"Invalid input: {vlan}")
        if name in self.state.refuse_ports:
            return self.out(f"Invalid input: {name}")
        with self.state.lock:
            self.state.vlans.add(vlan)  # real ProCurve: 'vlan N untagged X' creates VLAN N
            if not self.state.ignores(name):
                self.state.ports[name].vlan = vlan
        return ""

    def config_cmd_line(self, line: str) -> str:
        m = re.fullmatch(r"vlan (\d+) untagged (\S+)", line)
        if m:
            if m.group(2) not in self.state.ports:
                return self.no_port(m.group(2))
            return self.move(int(m.group(1)), m.group(2))
        m = re.fullmatch(r"interface (\S+) (disable|enable)", line)
        if m and m.group(1) in self.state.ports:
            self.set_shutdown(self.state.ports[m.group(1)], m.group(2) == "disable")
            return ""
        m = re.fullmatch(r"aaa port-access authenticator (\S+) reauthenticate", line)
        if m and m.group(1) in self.state.ports:
            with self.state.lock:
                self.state.ports[m.group(1)].reauths += 1
            return ""
        return self.err(line)

    def handle(self, line: str) -> str:
        m = re.fullmatch(r"interface (\S+) (disable|enable)", line)
        if m and self.mode == "config":
            if m.group(1) not in self.state.ports:
                return self.no_port(m.group(1))
            return self.config_cmd_line(line)
        if line.startswith("interface ") and self.mode in ("config", "config-if"):
            name = line.split(None, 1)[1]
            if name not in self.state.ports:
                return self.no_port(name)
        return super().handle(line)

    def if_cmd(self, port: PortState, line: str) -> str:
        if line in ("disable", "enable"):
            self.set_shutdown(port, line == "disable")
            return ""
        m = re.fullmatch(r"untagged vlan (\d+)", line)
        if m and self.iface:
            return self.move(int(m.group(1)), self.iface)
        return self.err(line)

    def show_brief(self, names: list[str]) -> str:
        lines = ["", " Status and Counters - Port Status", "",
                 "                  | Intrusion                           MDI  Flow  Bcast",
                 "  Port  Type      | Alert     Enabled Status Mode       Mode Ctrl  Limit",
                 "  ----- --------- + --------- ------- ------ ---------- ---- ---- -----"]
        for name in names:
            port = self.state.ports[name]
            lines.append(f"  {name:<5} 100/1000T | No        {'No' if port.shutdown else 'Yes':<7} "
                         f"{'Up' if oper_up(port) else 'Down':<6} 1000FDx    MDIX off  0")
        return self.out(*lines, "")

    def show_status(self, names: list[str]) -> str:
        lines = ["", "  Port     Name       Status  Config-mode   Speed    Type       Tagged Untagged",
                 "  -------- ---------- ------- ------------- -------- ---------- ------ --------"]
        for name in names:
            port = self.state.ports[name]
            lines.append(f"  {name:<8}            {'Up' if oper_up(port) else 'Down':<7} Auto          1000FDx  "
                         f"100/1000T  No     {port.vlan}")
        return self.out(*lines, "")

    def show(self, line: str) -> str:
        if self.state.stall_show:
            raise _Stall
        if line == "show vlans":
            lines = ["", " Status and Counters - VLAN Information", "",
                     "  Maximum VLANs to support : 256", "  Primary VLAN : DEFAULT_VLAN", "  Management VLAN :",
                     "", "  VLAN ID Name                             | Status     Voice Jumbo",
                     "  ------- -------------------------------- + ---------- ----- -----"]
            for vlan in sorted(self.state.vlans):
                name = "DEFAULT_VLAN" if vlan == 1 else f"VLAN{vlan}"
                lines.append(f"  {vlan:<7} {name:<32} | Port-based No    No")
            return self.out(*lines, "")
        m = re.fullmatch(r"show interfaces (brief|status)(?: (\S+))?", line)
        if m and m.group(2) and m.group(2) not in self.state.ports:
            return self.no_port(m.group(2))
        if m:
            names = [m.group(2)] if m.group(2) else list(self.state.ports)
            return self.show_brief(names) if m.group(1) == "brief" else self.show_status(names)
        m = re.fullmatch(r"show vlans ports (\S+) detail", line)
        if m and m.group(1) not in self.state.ports:
            return self.no_port(m.group(1))
        if m:
            vlan = self.state.ports[m.group(1)].vlan
            name = "DEFAULT_VLAN" if vlan == 1 else f"VLAN{vlan}"
            return self.out(
                "", f" Status and Counters - VLAN Information - for ports {m.group(1)}", "",
                "  VLAN ID Name                             | Status     Voice Jumbo Mode    ",
                "  ------- -------------------------------- + ---------- ----- ----- --------",
                f"  {vlan:<7} {name:<32} | Port-based No    No    Untagged", "")
        return self.err(line)


SESSIONS: dict[str, type[VendorSession]] = {
    "cisco_ios": CiscoIos,
    "arista_eos": AristaEos,
    "aruba_aoscx": ArubaAosCx,
    "hp_procurve": HpProcurve,
    "juniper_junos": JuniperJunos,
}
