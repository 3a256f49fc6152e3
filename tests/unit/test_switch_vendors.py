"""Pure vendor tables: interface grammar, command rendering, error patterns, read-back parsers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import trustport_lab.fakes
from switch_drivers.base import Target, check_vlan
from switch_drivers.cli import connection_params
from switch_drivers.errors import CommandFailed, HostKeyError, HostKeyUnknown, InvalidArgument
from switch_drivers.vendors import (
    VENDORS,
    CiscoIosOptions,
    JuniperJunosDriver,
    JuniperJunosOptions,
    check_interface,
    parse_vlan,
    render,
)

OUTPUTS = Path(trustport_lab.fakes.__file__).resolve().parent / "outputs"

VALID = {
    "cisco_ios": ["Gi1/0/5", "GigabitEthernet1/0/48", "Te1/1/1", "Fa0/1", "TwentyFiveGigE1/0/1"],
    "arista_eos": ["Ethernet5", "Et5", "Ethernet1/5", "Ethernet3/1/1"],
    "aruba_aoscx": ["1/1/5", "2/1/48"],
    "hp_procurve": ["5", "A5", "1/5", "2/A12"],
    "juniper_junos": ["ge-0/0/5", "xe-1/0/47", "mge-0/0/1", "et-0/0/48"],
}
INVALID_EVERYWHERE = ["", " ", "Gi1/0/5\nreload", "Gi1/0/5 ", " Gi1/0/5", "1/1/5;reload", "5|include",
                      "ge-0/0/5\rcommit", "Ethernet5\x00", "`id`", "$(reboot)", "Gi1/0/5\u2028", "x" * 300]
INVALID = {
    "cisco_ios": ["Gig 1/0/5", "Vlan1", "Port-channel1", "1/0/5"],
    "arista_eos": ["Eth 5", "Management1", "Port-Channel1"],
    "aruba_aoscx": ["1/1", "lag1", "1/1/5/1", "vlan20"],
    "hp_procurve": ["Trk1 5", "A-5", "5-8", "all"],
    "juniper_junos": ["ge-0/0/5.0", "irb.20", "ge-0/0", "ae0"],
}


@pytest.mark.parametrize(("vendor", "port"), [(v, p) for v, ps in VALID.items() for p in ps])
def test_valid_interface_names_are_accepted(vendor: str, port: str) -> None:
    assert check_interface(VENDORS[vendor], port) == port


@pytest.mark.parametrize(
    ("vendor", "port"),
    [(v, p) for v in VENDORS for p in INVALID_EVERYWHERE] + [(v, p) for v, ps in INVALID.items() for p in ps],
)
def test_invalid_interface_names_are_rejected(vendor: str, port: str) -> None:
    with pytest.raises(InvalidArgument, match="not valid for"):
        check_interface(VENDORS[vendor], port, switch="sw1")


@pytest.mark.parametrize("vlan", [1, 2, 1000, 4094])
def test_vlan_in_range(vlan: int) -> None:
    assert check_vlan(vlan) == vlan


@pytest.mark.parametrize("vlan", [0, 4095, 5000, -1, True, False, "20", 20.0, None])
def test_vlan_out_of_range_or_wrong_type(vlan: object) -> None:
    with pytest.raises(InvalidArgument, match="1-4094"):
        check_vlan(vlan)


@pytest.mark.parametrize(
    ("vendor", "port", "expected"),
    [
        ("cisco_ios", "Gi1/0/5", ["interface Gi1/0/5", "switchport mode access", "switchport access vlan 20"]),
        ("arista_eos", "Ethernet5",
         ["interface Ethernet5", "switchport mode access", "switchport access vlan 20"]),
        ("aruba_aoscx", "1/1/5", ["interface 1/1/5", "no routing", "vlan access 20"]),  # + push_suffix "end"
        ("hp_procurve", "5", ["vlan 20 untagged 5"]),
        ("juniper_junos", "ge-0/0/5", [
            "delete interfaces ge-0/0/5 unit 0 family ethernet-switching vlan members",
            "set interfaces ge-0/0/5 unit 0 family ethernet-switching interface-mode access",
            "set interfaces ge-0/0/5 unit 0 family ethernet-switching vlan members 20",
        ]),
    ],
)
def test_render_set_vlan(vendor: str, port: str, expected: list[str]) -> None:
    assert render(VENDORS[vendor].set_vlan, VENDORS[vendor], port, 20) == expected


def test_aoscx_pushes_always_end_with_end() -> None:
    """netmiko cannot see AOS-CX's (config-if)# context: every push (single port or batch) ends with 'end'."""
    assert VENDORS["aruba_aoscx"].push_suffix == ("end",)


def test_render_refuses_bad_vlan_even_when_port_is_fine() -> None:
    with pytest.raises(InvalidArgument):
        render(VENDORS["cisco_ios"].set_vlan, VENDORS["cisco_ios"], "Gi1/0/5", 5000)


def test_junos_pre_els_uses_port_mode() -> None:
    driver = JuniperJunosDriver(Target("j", "127.0.0.1"), JuniperJunosOptions(
        username="u", password="p", host_key_policy="insecure-ignore", els=False))
    assert any("port-mode access" in t for t in driver._set_templates())


@pytest.mark.parametrize(
    ("vendor", "error_text"),
    [
        ("cisco_ios", "                 ^\n% Invalid input detected at '^' marker."),
        ("cisco_ios", "% Incomplete command."),
        ("cisco_ios", "% Access VLAN does not exist. Creating vlan 77"),
        ("arista_eos", "% Invalid input (at token 3: '5000')"),
        ("aruba_aoscx", "Invalid input: 5000"),
        ("aruba_aoscx", "VLAN 77 should be created before assigning to an interface."),
        ("hp_procurve", "Invalid input: 5000"),
        ("hp_procurve", "Module not present for port or invalid port: 49"),
        ("juniper_junos", "                 ^\nsyntax error."),
        ("juniper_junos", "error: configuration check-out failed"),
    ],
)
def test_error_patterns_match_vendor_error_strings(vendor: str, error_text: str) -> None:
    assert re.search(VENDORS[vendor].error_pattern, error_text, re.M)


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_error_patterns_do_not_match_normal_output(vendor: str) -> None:
    normal = "interface 1/1/5\n    no shutdown\nEnter configuration commands, one per line.  End with CNTL/Z.\n"
    assert not re.search(VENDORS[vendor].error_pattern, normal, re.M)


@pytest.mark.parametrize(
    ("vendor", "fixture", "expected"),
    [
        ("cisco_ios", "cisco_ios__show_interfaces_switchport.txt", 20),
        ("arista_eos", "arista_eos__show_interfaces_switchport_json.txt", 30),
        ("aruba_aoscx", "aruba_aoscx__show_running-config_interface.txt", 99),
        ("hp_procurve", "hp_procurve__show_vlans_ports_detail.txt", 10),
        ("juniper_junos", "juniper_junos__show_configuration_interfaces_display_set.txt", 40),
        ("juniper_junos", "juniper_junos__show_configuration_interfaces_display_set_default.txt", 1),
    ],
)
def test_parse_recorded_output(vendor: str, fixture: str, expected: int) -> None:
    raw = (OUTPUTS / fixture).read_text()
    assert parse_vlan(VENDORS[vendor], raw, switch="sw", port="p") == expected


@pytest.mark.parametrize(
    ("vendor", "raw"),
    [
        ("cisco_ios", "% Invalid input detected at '^' marker."),
        ("arista_eos", "{not json"),
        ("arista_eos", '{"switchports": {}}'),
        ("aruba_aoscx", (OUTPUTS / "aruba_aoscx__show_running-config_interface_routed.txt").read_text()),
        ("hp_procurve", ""),
        ("juniper_junos", (OUTPUTS / "juniper_junos__show_configuration_interfaces_display_set_named.txt").read_text()),
        ("juniper_junos", ""),
    ],
)
def test_parse_unusable_output_raises_command_failed(vendor: str, raw: str) -> None:
    with pytest.raises(CommandFailed, match="could not read the access VLAN"):
        parse_vlan(VENDORS[vendor], raw, switch="sw", port="p")


def test_connection_params_strict_by_default(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    opts = CiscoIosOptions(username="u", password="s3cr3t-value", known_hosts=known)
    params = connection_params(VENDORS["cisco_ios"], Target("sw", "192.0.2.1"), opts)
    assert params["ssh_strict"] is True
    assert params["alt_host_keys"] is True
    assert params["alt_key_file"] == str(known)
    assert params["system_host_keys"] is False
    assert "s3cr3t-value" not in repr(opts)
    assert "s3cr3t-value" not in str(opts)


@pytest.mark.parametrize(
    ("policy", "strict", "loads_file"),
    [("strict", True, True), ("accept-new", False, True), ("insecure-ignore", False, False)],
)
def test_connection_params_host_key_policies(tmp_path: Path, policy: str, strict: bool, loads_file: bool) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    opts = CiscoIosOptions(username="u", password="p", known_hosts=known, host_key_policy=policy)  # type: ignore[arg-type]
    params = connection_params(VENDORS["cisco_ios"], Target("sw", "192.0.2.1"), opts)
    assert params["ssh_strict"] is strict
    assert bool(params.get("alt_host_keys")) is loads_file


def test_connection_params_missing_known_hosts_is_a_host_key_error(tmp_path: Path) -> None:
    opts = CiscoIosOptions(username="u", password="p", known_hosts=tmp_path / "absent")
    with pytest.raises(HostKeyUnknown, match=r"known_hosts file .*absent does not exist.*ssh-keyscan -p 22 192.0.2.1"):
        connection_params(VENDORS["cisco_ios"], Target("sw", "192.0.2.1"), opts)
    without = opts.model_copy(update={"known_hosts": None})
    with pytest.raises(HostKeyError, match="no known_hosts file is configured"):
        connection_params(VENDORS["cisco_ios"], Target("sw", "192.0.2.1"), without)


def test_old_import_locations_still_work() -> None:
    from switch_drivers.cli import CiscoIosDriver as Moved
    from switch_drivers.vendors.cisco_ios import CiscoIosDriver

    assert Moved is CiscoIosDriver


def _read(name: str) -> str:
    return (OUTPUTS / name).read_text()


@pytest.mark.parametrize(
    ("vendor", "fixture", "expected"),
    [
        ("cisco_ios", "cisco_ios__show_vlan_brief.txt", {1, 20, 30, 999, 1002, 1003, 1004, 1005}),
        ("arista_eos", "arista_eos__show_vlan_json.txt", {1, 20, 999}),
        ("aruba_aoscx", "aruba_aoscx__show_vlan.txt", {1, 20, 99, 999}),
        ("hp_procurve", "hp_procurve__show_vlans.txt", {1, 20, 999}),
        ("juniper_junos", "juniper_junos__show_configuration_vlans_display_set.txt", {1, 20, 999}),
    ],
)
def test_parse_recorded_vlan_table(vendor: str, fixture: str, expected: set[int]) -> None:
    assert VENDORS[vendor].parse_vlans(_read(fixture)) == expected


@pytest.mark.parametrize("vendor", list(VENDORS))
@pytest.mark.parametrize("raw", ["", "% Invalid input detected at '^' marker.", "{not json", "VLAN Name Status\n"])
def test_unusable_vlan_table_is_not_an_empty_table(vendor: str, raw: str) -> None:
    """An unreadable table must not look like 'the switch has no VLANs' (everything refused) nor like any table."""
    assert not VENDORS[vendor].parse_vlans(raw)


# (vlan, admin_up, oper_up, mode) per port, as the all-ports status commands report them
PORT_TABLES = {
    "cisco_ios": (["cisco_ios__show_interfaces_status.txt"], {
        "GigabitEthernet1/0/1": (20, True, True, "access"),
        "GigabitEthernet1/0/2": (1, True, False, "access"),  # its description says "disabled by ops"
        "GigabitEthernet1/0/3": (30, False, False, "access"),
        "GigabitEthernet1/0/4": (30, True, False, "access"),  # err-disabled: enabled, but no link
        "GigabitEthernet1/0/48": (None, True, True, "trunk"),
        "TenGigabitEthernet1/1/1": (None, True, False, "routed"),
        "Po1": (None, True, True, "trunk"),
    }),
    "arista_eos": (["arista_eos__show_interfaces_status_json.txt"], {
        "Ethernet1": (20, True, True, "bridged"),
        "Ethernet2": (1, False, False, "bridged"),
        "Ethernet3": (77, True, False, "bridged"),  # an inactive VLAN: EOS accepted a VLAN it does not have
        "Ethernet49/1": (None, True, True, "trunk"),
        "Ethernet50/1": (None, True, True, "routed"),
        "Management1": (None, True, True, "routed"),
    }),
    "aruba_aoscx": (["aruba_aoscx__show_interface_brief.txt"], {
        "1/1/1": (None, True, True, "routed"),
        "1/1/2": (1, False, False, "access"),
        "1/1/5": (20, True, True, "access"),
        "1/1/6": (1, True, False, "access"),
        "1/1/49": (None, True, True, "trunk"),
    }),
    "hp_procurve": (["hp_procurve__show_interfaces_brief.txt", "hp_procurve__show_interfaces_status.txt"], {
        "1": (20, True, True, "access"),
        "2": (1, False, False, "access"),
        "3": (999, True, False, "access"),
        "49": (None, True, True, "tagged-only"),
    }),
    "juniper_junos": (["juniper_junos__show_interfaces_terse.txt",
                       "juniper_junos__show_configuration_interfaces_display_set_all.txt"], {
        "ge-0/0/0": (20, True, True, "access"),
        "ge-0/0/1": (999, False, False, "access"),
        "ge-0/0/2": (None, True, False, "non-access"),  # a named VLAN cannot be compared with an id
        "xe-0/1/0": (None, True, True, "non-access"),  # routed
        # ge-0/0/10 is only in the configuration (Junos accepts absent interfaces): not a port
    }),
}


@pytest.mark.parametrize("vendor", list(PORT_TABLES))
def test_parse_recorded_port_tables(vendor: str) -> None:
    fixtures, expected = PORT_TABLES[vendor]
    rows = VENDORS[vendor].parse_ports([_read(f) for f in fixtures])
    assert {k: (r.vlan, r.admin_up, r.oper_up, r.mode) for k, r in rows.items()} == expected


@pytest.mark.parametrize(
    ("vendor", "names"),
    [("cisco_ios", ["Gi1/0/5", "GigabitEthernet1/0/5"]), ("cisco_ios", ["Te1/1/1", "TenGigabitEthernet1/1/1"]),
     ("arista_eos", ["Et5", "Ethernet5"]), ("arista_eos", ["Et1/5", "Ethernet1/5"])],
)
def test_short_and_long_interface_names_are_one_port(vendor: str, names: list[str]) -> None:
    assert len({VENDORS[vendor].canonical(n) for n in names}) == 1


@pytest.mark.parametrize(
    ("vendor", "answer"),
    [("cisco_ios", "                 ^\n% Invalid input detected at '^' marker."),
     ("arista_eos", "% Interface does not exist"),
     ("aruba_aoscx", "Invalid input: 1/1/49"),
     ("hp_procurve", "Module not present for port or invalid port: 49"),
     ("juniper_junos", "error: device ge-0/0/49 not found")],
)
def test_missing_interface_answers_are_recognised(vendor: str, answer: str) -> None:
    assert re.search(VENDORS[vendor].missing_interface, answer, re.M)
    normal = "Interface               Admin Link Proto\nge-0/0/5                up    up\nVLAN 20 active\n"
    assert not re.search(VENDORS[vendor].missing_interface, normal, re.M)
