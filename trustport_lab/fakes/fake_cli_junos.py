"""The Junos ELS dialect of the fake SSH switches: operational and configuration mode, candidate and commit, and the
real quirk that the configuration accepts interfaces the switch does not have."""

from __future__ import annotations

import re

from .fake_cli import DeviceState, PortState, VendorSession, _Stall


def _oper_up(port: PortState) -> bool:
    return port.link and not port.shutdown


_JUNOS_IFACE = re.compile(r"(?:ge|xe|et|mge|fe)-\d{1,2}/\d{1,2}/\d{1,3}")


class JuniperJunos(VendorSession):
    """Junos ELS: operational '>' and '[edit]' configuration mode with a candidate and commit. Like real Junos, the
    configuration accepts interfaces that do not exist (they stay in the configuration and do nothing)."""

    def __init__(self, state: DeviceState) -> None:
        super().__init__(state)
        self.mode = "op"

    def prompt(self) -> str:
        user = f"{self.state.username}@{self.state.hostname}"
        return f"{user}> " if self.mode == "op" else f"\r\n[edit]\r\n{user}# "

    def running(self) -> dict[str, tuple[int, bool]]:
        return {**{n: (p.vlan, p.shutdown) for n, p in self.state.ports.items()}, **self.state.phantom}

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
        if line.startswith("show ") and self.state.stall_show:
            raise _Stall
        if line == "show configuration vlans | display set":
            return self.out(*(f"set vlans {'default' if v == 1 else f'v{v}'} vlan-id {v}"
                              for v in sorted(self.state.vlans)))
        m = re.fullmatch(r"show configuration interfaces(?: (\S+))? \| display set", line)
        if m:
            names = [m.group(1)] if m.group(1) else list(self.running())
            return self.out(*(text for name in names for text in self.show_set(name)))
        m = re.fullmatch(r"show interfaces(?: (\S+))? terse", line)
        if m and m.group(1) and m.group(1) not in self.state.ports:
            return self.out(f"error: device {m.group(1)} not found")
        if m:
            return self.terse([m.group(1)] if m.group(1) else list(self.state.ports))
        m = re.fullmatch(r"clear dot1x interface (\S+)", line)
        if m and m.group(1) in self.state.ports:
            with self.state.lock:
                self.state.ports[m.group(1)].reauths += 1
            return ""
        return self.out("                 ^", "unknown command.")

    def terse(self, names: list[str]) -> str:
        lines = ["Interface               Admin Link Proto    Local                 Remote"]
        for name in names:
            port = self.state.ports[name]
            admin, link = "down" if port.shutdown else "up", "up" if _oper_up(port) else "down"
            lines += [f"{name:<23} {admin:<5} {link:<4}", f"{name + '.0':<23} up    {link:<4} eth-switch"]
        return self.out(*lines)

    def show_set(self, name: str) -> list[str]:
        config = self.running().get(name)
        if config is None:
            return []
        vlan, disabled = config
        base = f"set interfaces {name}"
        lines = [f"{base} disable"] if disabled else []
        lines.append(f"{base} unit 0 family ethernet-switching interface-mode access")
        if vlan != 1:
            lines.append(f"{base} unit 0 family ethernet-switching vlan members {vlan}")
        return lines

    def conf(self, line: str) -> str:
        cand = self.state.candidate
        m = re.fullmatch(r"(set|delete) interfaces (\S+) (.+)", line)
        if m and (m.group(2) in cand or _JUNOS_IFACE.fullmatch(m.group(2))):
            verb, name, rest = m.groups()
            vlan, disabled = cand.get(name, (1, False))
            if rest == "disable":
                disabled = verb == "set"
            elif name in self.state.refuse_ports:
                return self.out("error: interface-range or interface is not permitted here", "syntax error.")
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
                port = self.state.ports.get(name)
                if port is None:  # configuration of an interface the switch does not have: kept, does nothing
                    self.state.phantom[name] = (vlan, disabled)
                    continue
                down = port.shutdown if not disabled and self.state.ignore_enable else disabled
                if port.shutdown and not down:
                    port.bounces += 1
                port.vlan = port.vlan if self.state.ignores(name) else vlan
                port.shutdown = down
        if and_quit:
            self.mode = "op"
            return self.out("commit complete", "Exiting configuration mode", "")
        return self.out("commit complete")
