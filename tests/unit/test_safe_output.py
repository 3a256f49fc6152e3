"""Hostile text in the registry (serials, notes, owners, NAS names, ports, MACs, reasons) reaches the operator's
terminal escaped: no newline that forges a row, no ESC that clears the screen, no CR that overwrites a serial, no
bidi override that reorders it. ``--json`` keeps the exact string (JSON escapes control characters itself)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from policy.model import DecisionLogEntry, DeviceKey, LifecycleState, NetworkContext, Outcome
from policy.text import safe_text
from tests.pki_fixtures import DevicePki
from trustport.cli import base as cli_base
from trustport.cli.main import cli
from trustport.settings.config import load_config
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CLEAR = "\x1b[2J\x1b[31m"
SERIAL = f"SN-1{CLEAR}\nerror: forged row\rSN-9\u202eTIBE"
ISSUER = "/CN=Evil\x1b]0;owned\x07 CA"
OWNER = "ops\r\x85\x9b2J\u2066"
NOTES = "line one\nline two\x7f\u200b\u2028"
NAS_ID = "sw\x1b[1Aup\u202e"
PORT = "Gi1/0/1\r\x1b[K"
MAC = f"02-00\x1b[8m-{CLEAR}hidden"
ACCT = "acct\n\u2029id"
REASON = "odd\x1b[2Jtraffic\n\u202eesrever"
HOSTILE = (SERIAL, ISSUER, OWNER, NOTES, NAS_ID, PORT, MAC, ACCT, REASON)


def assert_clean(output: str) -> None:
    """No raw control character except the newline between lines; no DEL, C1, bidi or zero-width character."""
    bad = [hex(ord(c)) for c in output
           if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c in "\u061c\u200b\u200c\u200d\u200e"
           "\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"]
    assert not bad, (bad, output)


@pytest.fixture
def config_file(pki: DevicePki, tmp_path: Path) -> Path:
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({"switches": {
        "nas-coa": {"driver": "coa", "address": "127.0.0.1", "port": 3799,
                    "options": {"secret_env": "TP_TEST_COA_SECRET", "vendor": "cisco"}}}}))
    data = {
        "radius": {"server_certificate": str(pki.cert_path("server")), "server_key": str(pki.key_path("server")),
                   "run_as_user": None, "reject_delay": 0,
                   "clients": [{"name": "sw", "address": "127.0.0.1", "secret": "safe-output-test-secret"}]},
        "trust_anchors": [{"name": "acme", "role": "idevid", "file": str(pki.cert_path("idevid-ca"))}],
        "revocation": {"crl_dir": str(pki.root / "crl")},
        "segments": {"production": 30, "quarantine": 999},
        "policy": {"default_segment": "production"},
        "database": {"url": "sqlite:///registry.sqlite"},
        "enforcement": {"inventory": "inventory.yaml", "nas": [{"nas_ip": "127.0.0.1", "coa": "nas-coa"}]},
    }
    path = tmp_path / "trustport.yaml"
    path.write_text(yaml.safe_dump(data))
    assert CliRunner().invoke(cli, ["db", "init", "--config", str(path)]).exit_code == 0
    return path


@pytest.fixture
def hostile_device(config_file: Path) -> int:
    """A device whose every field is hostile, with a decision logged and two sessions open: one on a NAS with an
    enforcement entry (a job gets queued), one on a NAS without (planning fails, naming it)."""
    store = SqlDeviceStore(load_config(config_file, check_files=False).database_url(), create=True)
    try:
        device = store.add_device(DeviceKey(ISSUER, SERIAL), state=LifecycleState.OPERATIONAL, now=NOW,
                                  segment="production", owner=OWNER, notes=NOTES)
        store.append_decision(DecisionLogEntry(NOW, device.id, f"{ISSUER} {SERIAL}",
                                               NetworkContext(nas_ip="127.0.0.1", nas_identifier=NAS_ID,
                                                              nas_port=PORT, calling_station_id=MAC),
                                               Outcome.ACCEPT, 30, "production", (REASON, f"serial {SERIAL}")))
        sessions = SqlSessionStore(store)
        sessions.authenticated(device.id, NetworkContext(nas_ip="127.0.0.1", nas_port=PORT, calling_station_id=MAC),
                               30, "production", NOW, acct_session_id=ACCT)
        sessions.authenticated(device.id, NetworkContext(nas_identifier=NAS_ID, nas_port=PORT,
                                                         calling_station_id="02:00:00:00:00:02"), 30, "production",
                               NOW)
        return device.id
    finally:
        store.close()


def invoke(config_file: Path, *args: str, exit_code: int = 0) -> Result:
    result = CliRunner().invoke(cli, [*args, "--config", str(config_file)])
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.parametrize("args", [
    ("devices", "list"),
    ("devices", "list", "--state", "operational"),
    ("devices", "show", "1"),
    ("sessions",),
])
def test_listings_show_hostile_fields_escaped(config_file: Path, hostile_device: int, args: tuple[str, ...]) -> None:
    output = invoke(config_file, *args).output
    assert_clean(output)
    if args[0] == "devices":
        assert safe_text(SERIAL) in output
        assert safe_text(ISSUER) in output
    else:
        assert safe_text(NAS_ID) in output and safe_text(PORT) in output and safe_text(MAC) in output


def test_table_rows_stay_one_line_each(config_file: Path, hostile_device: int) -> None:
    lines = invoke(config_file, "devices", "list").output.rstrip("\n").split("\n")
    assert len(lines) == 3  # header, rule, the one device: the serial's newline did not forge a row
    assert not any(line.startswith("error:") for line in lines)
    assert "SN-1\\x1b[2J\\x1b[31m\\x0aerror: forged row\\x0dSN-9\\u202eTIBE" in lines[2]


def test_show_escapes_every_field_and_log(config_file: Path, hostile_device: int) -> None:
    output = invoke(config_file, "devices", "show", str(hostile_device)).output
    for value in (OWNER, NOTES, PORT, MAC, REASON):  # (the decision table shows the NAS IP, not its name)
        assert safe_text(value) in output, value
    assert "\nerror: forged row" not in output


def test_lifecycle_action_and_jobs(config_file: Path, hostile_device: int) -> None:
    result = invoke(config_file, "devices", "quarantine", str(hostile_device), "--reason", REASON,
                    "--actor", f"bob{CLEAR}")
    assert_clean(result.output)
    assert f"device #{hostile_device} {safe_text(SERIAL)}: operational -> quarantined" in result.output
    assert safe_text(NAS_ID) in result.output  # "no enforcement.nas entry for NAS ..." names the hostile NAS
    assert "queued -> VLAN 999" in result.output
    jobs = invoke(config_file, "jobs", "list").output
    assert_clean(jobs)
    assert safe_text(MAC) in jobs and safe_text(REASON) in jobs
    shown = invoke(config_file, "devices", "show", str(hostile_device)).output
    assert_clean(shown)
    assert safe_text(REASON) in shown and safe_text(f"bob{CLEAR}") in shown


def test_unknown_hostile_serial_is_escaped_in_the_error(config_file: Path, hostile_device: int) -> None:
    result = invoke(config_file, "devices", "show", f"SN-{CLEAR}\nerror: fake\u202e", exit_code=2)
    assert_clean(result.output)
    assert "no device with id or serial" in result.output
    assert "\\x1b[2J" in result.output and "\nerror: fake" not in result.output


def test_error_line_escapes_the_exception_message(monkeypatch: pytest.MonkeyPatch, config_file: Path,
                                                  hostile_device: int) -> None:
    """Messages built without repr() (e.g. a driver's) still cannot forge lines: the error line is escaped."""
    from policy.errors import DeviceNotFound
    from trustport.cli import commands as cli_commands

    def hostile(_store: object, ref: str) -> None:
        raise DeviceNotFound(f"switch said: {ref}")

    monkeypatch.setattr(cli_commands, "resolve_device", hostile)
    result = invoke(config_file, "devices", "show", f"x\ny{CLEAR}", exit_code=2)
    assert result.output == f"error: switch said: {safe_text(f'x{chr(10)}y{CLEAR}')}\n"


@pytest.mark.parametrize(("args", "pick"), [
    (("devices", "list", "--json"), lambda doc: (doc[0]["key"]["serial_number"], doc[0]["key"]["issuer"],
                                                  doc[0]["owner"], doc[0]["notes"])),
    (("devices", "show", "1", "--json"), lambda doc: (doc["device"]["key"]["serial_number"],
                                                       doc["decisions"][0]["context"]["nas_port"],
                                                       doc["decisions"][0]["reasons"][0])),
    (("sessions", "--json"), lambda doc: (doc[0]["nas_port"], doc[0]["calling_station_id"],
                                          doc[0]["acct_session_id"], doc[1]["nas_identifier"])),
])
def test_json_round_trips_the_exact_strings(config_file: Path, hostile_device: int, args: tuple[str, ...],
                                             pick: object) -> None:
    output = invoke(config_file, *args).output
    assert_clean(output.replace("\n", ""))  # JSON's own escapes: nothing raw, not even DEL, C1 or bidi
    assert callable(pick)
    values = pick(json.loads(output))
    assert all(value in HOSTILE for value in values), values
    assert len(set(values)) == len(values)


def test_emit_json_escapes_every_control_character(capsys: pytest.CaptureFixture[str]) -> None:
    text = "".join(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]) + "\u202e\u2028\u200b\ufeff\ud800 ü 中"
    cli_base.emit_json({"value": text})
    out = capsys.readouterr().out
    assert_clean(out.replace("\n", ""))
    assert out.isascii()
    assert json.loads(out) == {"value": text}


def test_table_escapes_every_cell() -> None:
    rendered = cli_base.table(("h\x1b", "b"), [(SERIAL, None), (1, "\u202e")])
    assert_clean(rendered)
    assert rendered.split("\n")[0].startswith("h\\x1b")
    assert len(rendered.split("\n")) == 4
    assert re.search(r"^1\s+\\u202e$", rendered.split("\n")[3])


def test_switch_results_and_failures_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from switch_drivers import CommandFailed, SwitchResult
    from trustport.cli.switch import _report

    results: list[SwitchResult[object]] = [
        SwitchResult("access-1", 30, None, 0.1),
        SwitchResult("access-2", None, CommandFailed(f"switch said: % Invalid{CLEAR}\nERROR forged"), 0.1)]
    with pytest.raises(SystemExit):
        _report(results, False, lambda vlan: f"{PORT} is in VLAN {vlan}")
    captured = capsys.readouterr()
    assert_clean(captured.out + captured.err)
    assert captured.out == f"access-1: {safe_text(PORT)} is in VLAN 30\n"
    assert captured.err.count("\n") == 1 and "\\x0aERROR forged" in captured.err


def test_hook_log_lines_are_escaped_and_bounded() -> None:
    from radius_hooks.hook import Hook

    lines: list[str] = []

    class Radiusd:
        L_AUTH = 2

        def radlog(self, _level: int, message: str) -> None:
            lines.append(message)

    hook = Hook(Radiusd())  # type: ignore[arg-type]  # only radlog and L_AUTH are used
    hook.log(Radiusd.L_AUTH, f"accept {SERIAL} mac={MAC}")
    hook.log(Radiusd.L_AUTH, "x" * 5000)
    assert lines[0] == f"trustport: accept {safe_text(SERIAL)} mac={safe_text(MAC)}"
    assert_clean("".join(lines))
    assert lines[1].endswith("…(+3000 chars)") and len(lines[1]) < 2100


def test_cli_logging_goes_through_the_safe_formatter(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from policy.text import SafeFormatter

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    cli_base.install_safe_logging()
    assert isinstance(root.handlers[0].formatter, SafeFormatter)
    url = f"https://x/{CLEAR}\nforged"
    logging.getLogger("trustport.services.mud_lookup").warning("MUD lookup for %s failed", url)
    stamp, line = capsys.readouterr().err.split(" ", 1)  # logs.configure: a UTC timestamp comes first
    assert stamp.endswith("Z")
    assert line == f"WARNING trustport.services.mud_lookup: MUD lookup for {safe_text(url)} failed\n"
