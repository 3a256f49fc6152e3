"""Per-vendor CLI behaviour for the fake SSH switches (prompts, modes, outputs, exact error strings)."""

from __future__ import annotations

import json
import re
from typing import ClassVar

from .fake_cli import DeviceState, PortState, VendorSession, _Stall

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
            if self.state.stall_show:
                raise _Stall
            return self.show(line)
        return self.other_enable(line)

    def other_enable(self, line: str) -> str:
        m = re.fullmatch(r"clear access-session interface (\S+)", line)
        if m and self.canon(m.group(1)):
            with self.state.lock:
                self.state.ports[self.canon(m.group(1)) or ""].reauths += 1
            return ""
        return self.err(line)

    def set_shutdown(self, port: PortState, down: bool) -> None:
        with self.state.lock:
            if port.shutdown and not down:
                port.bounces += 1
            port.shutdown = down

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
            if vlan not in self.state.vlans:
                self.state.vlans.add(vlan)
                msg = self.out(f"% Access VLAN does not exist. Creating vlan {vlan}")
            with self.state.lock:
                port.vlan = port.vlan if self.state.ignore_changes else vlan
            return msg
        return self.err(line)

    def config_cmd_line(self, line: str) -> str:
        return self.err(line)

    def show(self, line: str) -> str:
        if self.state.stall_show:
            raise _Stall
        m = re.fullmatch(r"show interfaces (\S+) switchport", line)
        if m and (name := self.canon(m.group(1))):
            port = self.state.ports[name]
            short = name.replace("GigabitEthernet", "Gi")
            oper = "down" if port.shutdown else "static access"
            return self.out(*IOS_SWITCHPORT.format(
                short=short, vlan=port.vlan, vname=_vname(port.vlan), oper=oper).splitlines())
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
        if m and int(m.group(1)) in self.state.vlans:
            with self.state.lock:
                port.vlan = port.vlan if self.state.ignore_changes else int(m.group(1))
            return ""
        if m and not 1 <= int(m.group(1)) <= 4094:
            return self.err(line)
        if m:  # EOS accepts a missing VLAN silently ("inactive"); the port then forwards nothing.
            with self.state.lock:
                port.vlan = int(m.group(1))
            return ""
        return super().if_cmd(port, line)

    def show(self, line: str) -> str:
        if self.state.stall_show:
            raise _Stall
        m = re.fullmatch(r"show interfaces (\S+) switchport \| json", line)
        if m and (name := self.canon(m.group(1))):
            port = self.state.ports[name]
            doc = {"switchports": {name: {"enabled": True, "switchportInfo": {
                "mode": "access", "accessVlanId": port.vlan, "accessVlanName": _vname(port.vlan).upper(),
                "trunkingNativeVlanId": 1, "trunkAllowedVlans": "ALL", "tpid": "0x8100",
                "macLearning": True, "staticTrunkGroups": [], "dynamicTrunkGroups": []}}}}
            return self.out(*json.dumps(doc, indent=2).splitlines())
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
            with self.state.lock:
                port.vlan = port.vlan if self.state.ignore_changes else vlan
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

    def show(self, line: str) -> str:
        if self.state.stall_show:
            raise _Stall
        m = re.fullmatch(r"show running-config interface (\S+)", line)
        if m and (name := self.canon(m.group(1))):
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
        with self.state.lock:
            self.state.vlans.add(vlan)
            if not self.state.ignore_changes:
                self.state.ports[name].vlan = vlan
        return ""

    def config_cmd_line(self, line: str) -> str:
        m = re.fullmatch(r"vlan (\d+) untagged (\S+)", line)
        if m:
            if m.group(2) not in self.state.ports:
                return self.out(f"Module not present for port or invalid port: {m.group(2)}")
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
            return self.config_cmd_line(line)
        if line.startswith("interface ") and self.mode in ("config", "config-if"):
            name = line.split(None, 1)[1]
            if name not in self.state.ports:
                return self.out(f"Module not present for port or invalid port: {name}")
        return super().handle(line)

    def if_cmd(self, port: PortState, line: str) -> str:
        if line in ("disable", "enable"):
            self.set_shutdown(port, line == "disable")
            return ""
        m = re.fullmatch(r"untagged vlan (\d+)", line)
        if m and self.iface:
            return self.move(int(m.group(1)), self.iface)
        return self.err(line)

    def show(self, line: str) -> str:
        if self.state.stall_show:
            raise _Stall
        m = re.fullmatch(r"show vlans ports (\S+) detail", line)
        if m and m.group(1) in self.state.ports:
            vlan = self.state.ports[m.group(1)].vlan
            name = "DEFAULT_VLAN" if vlan == 1 else f"VLAN{vlan}"
            return self.out(
                "", f" Status and Counters - VLAN Information - for ports {m.group(1)}", "",
                "  VLAN ID Name                             | Status     Voice Jumbo Mode    ",
                "  ------- -------------------------------- + ---------- ----- ----- --------",
                f"  {vlan:<7} {name:<32} | Port-based No    No    Untagged", "")
        return self.err(line)


class JuniperJunos(VendorSession):
    """Junos ELS: operational '>' and '[edit]' configuration mode with a candidate and commit."""

    def __init__(self, state: DeviceState) -> None:
        super().__init__(state)
        self.mode = "op"

    def prompt(self) -> str:
        user = f"{self.state.username}@{self.state.hostname}"
        return f"{user}> " if self.mode == "op" else f"\r\n[edit]\r\n{user}# "

    def running(self) -> dict[str, tuple[int, bool]]:
        return {n: (p.vlan, p.shutdown) for n, p in self.state.ports.items()}

    def handle(self, line: str) -> str:
        if not line:
            return ""
        if self.mode == "op":
            return self.op(line)
        return self.conf(line)

    def op(self, line: str) -> str:
        answers = {
            "set cli screen-width 511": "Screen width set to 511",
            "set cli complete-on-space off": "Disabling complete-on-space",
            "set cli screen-length 0": "Screen length set to 0",
        }
        if line in answers:
            return self.out(answers[line])
        if line in ("configure", "configure private"):
            self.mode = "conf"
            with self.state.lock:
                self.state.candidate = self.running()
            return self.out("Entering configuration mode")
        if line == "exit":
            self.closed = True
            return ""
        m = re.fullmatch(r"show configuration interfaces (\S+) \| display set", line)
        if m:
            if self.state.stall_show:
                raise _Stall
            return self.show_set(m.group(1))
        m = re.fullmatch(r"clear dot1x interface (\S+)", line)
        if m and m.group(1) in self.state.ports:
            with self.state.lock:
                self.state.ports[m.group(1)].reauths += 1
            return ""
        return self.out("                 ^", "unknown command.")

    def show_set(self, name: str) -> str:
        port = self.state.ports.get(name)
        if port is None:
            return ""
        base = f"set interfaces {name}"
        lines = [f"{base} disable"] if port.shutdown else []
        lines.append(f"{base} unit 0 family ethernet-switching interface-mode access")
        if port.vlan != 1:
            lines.append(f"{base} unit 0 family ethernet-switching vlan members {port.vlan}")
        return self.out(*lines)

    def conf(self, line: str) -> str:
        cand = self.state.candidate
        m = re.fullmatch(r"(set|delete) interfaces (\S+) (.+)", line)
        if m and m.group(2) in cand:
            verb, name, rest = m.groups()
            vlan, disabled = cand[name]
            if rest == "disable":
                disabled = verb == "set"
            elif rest == "unit 0 family ethernet-switching interface-mode access":
                pass
            elif verb == "delete" and rest == "unit 0 family ethernet-switching vlan members":
                vlan = 1
            elif verb == "set" and (v := re.fullmatch(r"unit 0 family ethernet-switching vlan members (\d+)", rest)):
                vlan = int(v.group(1))
            else:
                return self.out("                 ^", "syntax error.")
            with self.state.lock:
                cand[name] = (vlan, disabled)
            return ""
        if m:
            return self.out("                 ^", "syntax error.")
        if line in ("commit", "commit and-quit"):
            return self.commit(and_quit=line.endswith("and-quit"))
        if line == "rollback 0":
            with self.state.lock:
                self.state.candidate = self.running()
            return self.out("load complete")
        if line == "exit configuration-mode":
            if cand != self.running():
                self.awaiting = self.exit_answer
                return self.out("The configuration has been changed but not committed") + \
                    "Exit with uncommitted changes? [yes,no] (yes) "
            self.mode = "op"
            return self.out("Exiting configuration mode", "")
        return self.out("                 ^", "syntax error.")

    def exit_answer(self, answer: str) -> str:
        if answer.strip() in ("yes", ""):
            self.mode = "op"
            return self.out("Exiting configuration mode", "") + self.prompt()
        return self.prompt()

    def commit(self, and_quit: bool) -> str:
        with self.state.lock:
            failure, self.state.fail_next_commit = self.state.fail_next_commit, None
            bad = [n for n, (v, _) in self.state.candidate.items() if v not in self.state.vlans]
            if failure is None and bad:
                failure = (f"[edit interfaces {bad[0]} unit 0 family ethernet-switching]\r\n  'vlan'\r\n"
                           "    No vlan matches vlan tag 0 for interface\r\nerror: configuration check-out failed")
            if failure is not None:
                return self.out(failure)
            for name, (vlan, disabled) in self.state.candidate.items():
                port = self.state.ports[name]
                if port.shutdown and not disabled:
                    port.bounces += 1
                port.vlan = port.vlan if self.state.ignore_changes else vlan
                port.shutdown = disabled
        if and_quit:
            self.mode = "op"
            return self.out("commit complete", "Exiting configuration mode", "")
        return self.out("commit complete")


SESSIONS: dict[str, type[VendorSession]] = {
    "cisco_ios": CiscoIos,
    "arista_eos": AristaEos,
    "aruba_aoscx": ArubaAosCx,
    "hp_procurve": HpProcurve,
    "juniper_junos": JuniperJunos,
}
