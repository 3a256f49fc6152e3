#!/usr/bin/env python3
"""net-snmp ``pass_persist`` backend emulating one access switch (stdlib only; snmpd runs it).

Serves BRIDGE-MIB dot1dBasePortIfIndex, Q-BRIDGE dot1qPvid + static VLAN table (name, egress, untagged,
row status), IF-MIB ifAdminStatus, ifOperStatus and ifName, CISCO-VLAN-MEMBERSHIP-MIB vmVlan, CISCO-VTP-MIB
vtpVlanState/vtpVlanName and IEEE8021-PAE-MIB dot1xPaePortReauthenticate from a JSON state file that the tests
read. Coupled semantics like a real agent: vmVlan and dot1qPvid are the same value, untagged must be a subset of
egress, a PVID VLAN must exist and keep the port as a member, unknown VLAN -> inconsistent-value, VLAN out of
range -> wrong-value, read-only column -> not-writable, bad type -> wrong-type. ifOperStatus is up when the port
is enabled and has link (``link``). ``auto_create_vlans`` makes it accept (and create) an unknown VLAN, like lax
firmware. A port with ``refuse`` set answers not-writable to every SET of its own objects (a port the switch will
not change) while snmpd still applies the other varbinds of that PDU: per-port isolation tests; ``refuse_lists``
refuses any PortList SET that changes that port's membership.
``ignore_admin_up`` acknowledges ifAdminStatus up(1) and leaves the port down. ``default_state(extra_ports=N)``
adds N access ports Gi2/0/1.. for batch tests.

Usage (from snmpd.conf): ``pass_persist -p 1 <base-oid> /usr/bin/python3 snmp_pass_persist.py STATE BASE``.
Several registrations share the state file, so every request re-reads it under an flock.
"""

from __future__ import annotations

import fcntl
import json
import sys
from pathlib import Path
from typing import Any

BASE_PORT_IFINDEX = (1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2)
PVID = (1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 5, 1, 1)
STATIC = (1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 3, 1)  # .1 name .2 egress .3 forbidden .4 untagged .5 rowstatus
IF_ADMIN = (1, 3, 6, 1, 2, 1, 2, 2, 1, 7)
IF_OPER = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
VM_VLAN_TYPE = (1, 3, 6, 1, 4, 1, 9, 9, 68, 1, 2, 2, 1, 1)
VM_VLAN = (1, 3, 6, 1, 4, 1, 9, 9, 68, 1, 2, 2, 1, 2)
PAE_REAUTH = (1, 0, 8802, 1, 1, 1, 1, 1, 2, 1, 5)
VTP_STATE = (1, 3, 6, 1, 4, 1, 9, 9, 46, 1, 3, 1, 1, 2)  # .<managementDomainIndex 1>.<vlan>
VTP_NAME = (1, 3, 6, 1, 4, 1, 9, 9, 46, 1, 3, 1, 1, 4)
PORTLIST_OCTETS = 8  # the minimum; switches with more bridge ports get longer lists
EXTRA_BRIDGE_PORT_BASE = 64  # bridge port of Gi2/0/N is 64 + N


def default_state(extra_ports: int = 0) -> dict[str, Any]:
    ports: list[dict[str, Any]] = [
        {"ifIndex": 10101, "ifName": "Gi1/0/1", "bridgePort": 1},
        {"ifIndex": 10105, "ifName": "Gi1/0/5", "bridgePort": 5},
        {"ifIndex": 10106, "ifName": "Gi1/0/6", "bridgePort": 6},
    ]
    ports += [{"ifIndex": 20000 + n, "ifName": f"Gi2/0/{n}", "bridgePort": EXTRA_BRIDGE_PORT_BASE + n}
              for n in range(1, extra_ports + 1)]
    for port in ports:
        port.update(admin=1, link=True, refuse=False, bounces=0, reauths=0)
    all_bp = [p["bridgePort"] for p in ports]
    vlans: dict[str, dict[str, Any]] = {
        str(v): {"name": "default" if v == 1 else f"VLAN{v:04d}", "egress": [], "untagged": [], "row_status": 1,
                 "vtp_state": 1}
        for v in (1, 10, 20, 30, 99)}
    vlans["1"]["egress"] = list(all_bp)
    vlans["1"]["untagged"] = list(all_bp)
    return {"ports": ports, "pvid": {str(bp): 1 for bp in all_bp}, "vlans": vlans, "sets": 0}


def portlist_octets(state: dict[str, Any]) -> int:
    return max(PORTLIST_OCTETS, (max((p["bridgePort"] for p in state["ports"]), default=0) + 7) // 8)


def encode_portlist(ports: list[int], octets: int = PORTLIST_OCTETS) -> bytes:
    data = bytearray(octets)
    for p in ports:
        data[(p - 1) // 8] |= 0x80 >> ((p - 1) % 8)
    return bytes(data)


def decode_portlist(data: bytes) -> list[int]:
    return [i * 8 + b + 1 for i, octet in enumerate(data) for b in range(8) if octet & (0x80 >> b)]


def rows(state: dict[str, Any]) -> list[tuple[tuple[int, ...], str, str]]:
    """All (oid, type, value) the agent serves, sorted."""
    out: list[tuple[tuple[int, ...], str, str]] = []
    octets = portlist_octets(state)
    for p in state["ports"]:
        bp, idx = p["bridgePort"], p["ifIndex"]
        pvid = state["pvid"][str(bp)]
        oper = 1 if p["admin"] == 1 and p.get("link", True) else 2
        out += [
            ((*BASE_PORT_IFINDEX, bp), "integer", str(idx)),
            ((*PVID, bp), "gauge", str(pvid)),
            ((*IF_ADMIN, idx), "integer", str(p["admin"])),
            ((*IF_OPER, idx), "integer", str(oper)),
            ((*IF_NAME, idx), "string", p["ifName"]),
            ((*VM_VLAN_TYPE, idx), "integer", "1"),
            ((*VM_VLAN, idx), "integer", str(pvid)),
            ((*PAE_REAUTH, idx), "integer", "2"),
        ]
    for vid, vlan in state["vlans"].items():
        v = int(vid)
        out += [
            ((*STATIC, 1, v), "string", vlan["name"]),
            ((*STATIC, 2, v), "octet", encode_portlist(vlan["egress"], octets).hex(" ")),
            ((*STATIC, 3, v), "octet", encode_portlist([], octets).hex(" ")),
            ((*STATIC, 4, v), "octet", encode_portlist(vlan["untagged"], octets).hex(" ")),
            ((*STATIC, 5, v), "integer", str(vlan.get("row_status", 1))),
            ((*VTP_STATE, 1, v), "integer", str(vlan.get("vtp_state", 1))),
            ((*VTP_NAME, 1, v), "string", vlan["name"]),
        ]
    return sorted(out)


def parse_oid(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.strip().strip(".").split(".") if x)


def parse_octets(value: str) -> bytes | None:
    value = value.strip().strip('"')
    try:
        return bytes.fromhex(value.replace(":", " "))
    except ValueError:
        return None


def add_vlan(state: dict[str, Any], vlan: int) -> None:
    state["vlans"][str(vlan)] = {"name": f"VLAN{vlan:04d}", "egress": [], "untagged": [], "row_status": 1,
                                 "vtp_state": 1}


def do_set(state: dict[str, Any], oid: tuple[int, ...], typ: str, value: str) -> str:
    ports_by_bp = {p["bridgePort"]: p for p in state["ports"]}
    ports_by_if = {p["ifIndex"]: p for p in state["ports"]}
    head, idx = oid[:-1], oid[-1]
    if head in (PVID, VM_VLAN):
        want = "gauge" if head == PVID else "integer"
        if typ != want:
            return "wrong-type"
        port = ports_by_bp.get(idx) if head == PVID else ports_by_if.get(idx)
        if port is None or port.get("refuse"):
            return "not-writable"
        vlan = int(value)
        if not 1 <= vlan <= 4094:
            return "wrong-value"
        if str(vlan) not in state["vlans"] and state.get("auto_create_vlans"):
            add_vlan(state, vlan)  # lax firmware: assigning an unknown VLAN creates it, and says yes
        if str(vlan) not in state["vlans"]:
            return "inconsistent-value"
        bp = port["bridgePort"]
        if head == VM_VLAN:  # Cisco: moving the access VLAN moves the untagged membership too
            for v in state["vlans"].values():
                for key in ("egress", "untagged"):
                    if bp in v[key]:
                        v[key].remove(bp)
            for key in ("egress", "untagged"):
                state["vlans"][str(vlan)][key].append(bp)
        elif bp not in state["vlans"][str(vlan)]["egress"]:
            return "inconsistent-value"  # PVID VLAN must contain the port (add egress first)
        state["pvid"][str(bp)] = vlan
        return "DONE"
    if head[:-1] == STATIC and head[-1] in (2, 4):
        if typ not in ("octet", "string"):
            return "wrong-type"
        if str(idx) not in state["vlans"] and state.get("auto_create_vlans") and 1 <= idx <= 4094:
            add_vlan(state, idx)
        vlan = state["vlans"].get(str(idx))
        data = parse_octets(value)
        if vlan is None:
            return "inconsistent-value"
        if data is None or len(data) > portlist_octets(state):
            return "wrong-length"
        members = [bp for bp in decode_portlist(data) if bp in ports_by_bp]
        key = "egress" if head[-1] == 2 else "untagged"
        if any(ports_by_bp[bp].get("refuse_lists") for bp in set(members) ^ set(vlan[key])):
            return "not-writable"  # this port's VLAN membership is locked
        if key == "untagged" and not set(members) <= set(vlan["egress"]):
            return "inconsistent-value"
        if key == "egress":
            removed = set(vlan["egress"]) - set(members)
            if any(state["pvid"][str(bp)] == idx for bp in removed):
                return "inconsistent-value"  # cannot remove a port from its PVID VLAN
            vlan["untagged"] = [bp for bp in vlan["untagged"] if bp in members]
        vlan[key] = sorted(members)
        return "DONE"
    if head in (IF_ADMIN, PAE_REAUTH):
        if typ != "integer":
            return "wrong-type"
        port = ports_by_if.get(idx)
        if port is None or port.get("refuse"):
            return "not-writable"
        number = int(value)
        if head == PAE_REAUTH:
            if number != 1:
                return "wrong-value"
            port["reauths"] += 1
            return "DONE"
        if number not in (1, 2):
            return "wrong-value"
        if number == 1 and state.get("ignore_admin_up"):
            return "DONE"  # says yes, stays down
        if port["admin"] == 2 and number == 1:
            port["bounces"] += 1
        port["admin"] = number
        return "DONE"
    return "not-writable"


def main() -> None:
    state_path = Path(sys.argv[1])
    base = parse_oid(sys.argv[2])
    lock_path = state_path.with_suffix(".lock")
    stdin, stdout = sys.stdin, sys.stdout

    def load() -> dict[str, Any]:
        state: dict[str, Any] = json.loads(state_path.read_text())
        return state

    while True:
        line = stdin.readline()
        if not line:
            return
        cmd = line.strip().lower()
        if not cmd:
            continue  # snmpd terminates 'set' with an extra blank line: never answer it
        if cmd == "ping":
            stdout.write("PONG\n")
        elif cmd in ("get", "getnext"):
            oid = parse_oid(stdin.readline())
            with lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_SH)
                table = rows(load())
            found = None
            for row in table:
                if row[0][: len(base)] != base:
                    continue
                if (cmd == "get" and row[0] == oid) or (cmd == "getnext" and row[0] > oid):
                    found = row
                    break
            if found is None:
                stdout.write("NONE\n")
            else:
                stdout.write("." + ".".join(map(str, found[0])) + f"\n{found[1]}\n{found[2]}\n")
        elif cmd == "set":
            oid = parse_oid(stdin.readline())
            typ, _, value = stdin.readline().strip().partition(" ")
            with lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                state = load()
                try:
                    # ignore_sets: the agent says DONE but changes nothing (buggy firmware)
                    answer = "DONE" if state.get("ignore_sets") else do_set(state, oid, typ.lower(), value)
                except ValueError:
                    answer = "wrong-value"
                if answer == "DONE":
                    state["sets"] += 1
                    tmp = state_path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(state, indent=1))
                    tmp.replace(state_path)
            stdout.write(answer + "\n")
        else:
            stdout.write("NONE\n")
        stdout.flush()


if __name__ == "__main__":
    main()
