"""Structured logs (``trustport.logs``): timestamps and levels on every line, ``--log-format json`` as one JSON
object per line, untrusted text escaped in both formats (also uvicorn's access lines), and the CLI options."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from policy.text import safe_text
from tests.enforce_env import ENV, EnforceEnv, coa_nas, fake_switch
from tests.pki_fixtures import DevicePki
from trustport import logs
from trustport.cli.main import cli

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
HOSTILE = [
    "\x1b[2J\x1b[Hscreen cleared",  # ANSI: clear the screen
    'x\n{"time": "2026-01-01T00:00:00.000Z", "level": "ERROR", "logger": "trustport", "message": "forged"}',
    'x", "level": "DEBUG", "logger": "fake',  # fake keys inside the string value
    "abc\u202edcba\u2066",  # bidi overrides
    "lone \udcff surrogate",  # surrogateescape decoding
    "cr\rover\x00nul\x7fdel\x85nel\u2028ls",
]


@pytest.fixture(autouse=True)
def _fresh_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with a root logger of its own; whatever it installs goes away afterwards."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if not isinstance(h, logs.LogHandler)])
    monkeypatch.setattr(root, "level", root.level)


def assert_terminal_safe(text: str) -> None:
    for char in text:
        assert char == "\n" or not (ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F), repr(text)
    assert "\u202e" not in text and "\u2066" not in text and "\u2028" not in text and "\udcff" not in text


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- text ------------------------------------------------------------------------------------------------------

def test_text_lines_have_an_utc_timestamp_a_level_and_the_logger() -> None:
    out = io.StringIO()
    logs.configure("text", "INFO", out)
    logging.getLogger("trustport.worker").info("job #%d done", 7)
    logging.getLogger("trustport.worker").debug("not shown at info")
    line = out.getvalue()
    assert re.fullmatch(rf"{TIME} INFO trustport\.worker: job #7 done\n", line), line
    stamp = datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_configure_replaces_its_own_handler_and_leaves_others() -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    logs.configure("text", "INFO", first)
    logs.configure("json", "warning", second)
    logs.configure("json", "warning", second)
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs.LogHandler)]
    assert len(ours) == 1 and other in logging.getLogger().handlers
    logging.getLogger("x").info("dropped at warning")
    logging.getLogger("x").warning("kept")
    assert first.getvalue() == "" and [r["message"] for r in records(second)] == ["kept"]


def test_the_default_stream_is_the_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("text", "INFO")
    logging.getLogger("trustport.est").info("listening")
    assert re.fullmatch(rf"{TIME} INFO trustport\.est: listening\n", capsys.readouterr().err)


@pytest.mark.parametrize("message", HOSTILE)
def test_text_escapes_hostile_messages(message: str) -> None:
    out = io.StringIO()
    logs.configure("text", "INFO", out)
    logging.getLogger("trustport.worker").warning("device said %s", message)
    text = out.getvalue()
    assert text.count("\n") == 1, text  # one record, one line: no forged second record
    assert_terminal_safe(text)
    assert text.rstrip("\n").endswith(f"WARNING trustport.worker: device said {safe_text(message)}")


def test_text_escapes_exception_lines() -> None:
    out = io.StringIO()
    logs.configure("text", "INFO", out)
    try:
        raise RuntimeError("boom\n2026-01-01T00:00:00.000Z INFO trustport: forged \x1b[31m")
    except RuntimeError:
        logging.getLogger("trustport.worker").exception("worker thread failed")
    lines = out.getvalue().splitlines()
    assert re.match(rf"{TIME} ERROR trustport\.worker: worker thread failed$", lines[0])
    assert all(line.startswith("    ") for line in lines[1:]), lines  # traceback lines indented: no fake records
    assert_terminal_safe(out.getvalue())


# -- json ------------------------------------------------------------------------------------------------------

def test_json_lines_carry_time_level_logger_message_and_extra_fields() -> None:
    out = io.StringIO()
    logs.configure("json", "INFO", out)
    logging.getLogger("trustport.worker").info("job #%d done", 3, extra={
        "job_id": 3, "device": "SN-1", "outcome": "done", "at": datetime(2026, 12, 1, tzinfo=UTC), "level": "x"})
    (entry,) = records(out)
    assert re.fullmatch(TIME, entry["time"])
    assert entry["level"] == "INFO" and entry["logger"] == "trustport.worker" and entry["message"] == "job #3 done"
    assert entry["job_id"] == 3 and entry["device"] == "SN-1" and entry["outcome"] == "done"
    assert entry["at"] == "2026-12-01T00:00:00+00:00"
    assert entry["extra.level"] == "x"  # an extra field never overwrites the record's own keys
    assert "exc" not in entry and "args" not in entry and "msg" not in entry


def test_json_carries_the_exception() -> None:
    out = io.StringIO()
    logs.configure("json", "INFO", out)
    try:
        raise ValueError("bad \x1b[2J value\nnext")
    except ValueError:
        logging.getLogger("trustport.api").exception("request failed")
    text = out.getvalue()
    assert text.count("\n") == 1
    (entry,) = records(out)
    assert entry["level"] == "ERROR" and "ValueError: bad \x1b[2J value\nnext" in entry["exc"]
    assert_terminal_safe(text)


@pytest.mark.parametrize("message", HOSTILE)
def test_json_messages_are_one_string_value(message: str) -> None:
    out = io.StringIO()
    logs.configure("json", "INFO", out)
    logging.getLogger("trustport.worker").info("device said %s", message, extra={"device": message})
    text = out.getvalue()
    assert text.count("\n") == 1 and text.isascii(), text  # ensure_ascii: every control character escaped
    assert_terminal_safe(text)
    (entry,) = records(out)
    assert entry["level"] == "INFO" and entry["logger"] == "trustport.worker"  # no injected keys won
    assert entry["message"] == f"device said {message}" and entry["device"] == message  # exact, just escaped
    assert set(entry) == {"time", "level", "logger", "message", "device"}


def test_unknown_format_and_level_are_errors() -> None:
    with pytest.raises(ValueError, match="log format"):
        logs.configure("xml", "INFO", io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level"):
        logs.configure("text", "loud", io.StringIO())
    assert logs.parse_level("debug") == logging.DEBUG and logs.parse_level(30) == logging.WARNING


# -- uvicorn ---------------------------------------------------------------------------------------------------

@pytest.fixture
def uvicorn_loggers() -> Iterator[None]:
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.level, logger.propagate = handlers, level, propagate


HOSTILE_PATH = "/devices/\x1b[2J\x1b]0;pwned\x07%1b\n127.0.0.1 - \"GET / HTTP/1.1\" 200"


def access(path: str) -> None:  # what uvicorn's h11/httptools protocols log for each request
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "10.0.0.5:41000", "GET", path, "1.1", 404)


@pytest.mark.usefixtures("uvicorn_loggers")
def test_uvicorn_text_access_lines_escape_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(logs.uvicorn_log_config("text", "info"))
    access(HOSTILE_PATH)
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:8000")
    logging.getLogger("uvicorn.error").debug("not at info")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert re.match(rf'{TIME} INFO uvicorn\.access: 10\.0\.0\.5:41000 - "GET /devices/\\x1b\[2J', lines[0])
    assert "\\x0a" in lines[0] and "%1b" in lines[0]
    assert re.fullmatch(rf"{TIME} INFO uvicorn\.error: Uvicorn running on http://127\.0\.0\.1:8000", lines[1])
    assert_terminal_safe(err)


@pytest.mark.usefixtures("uvicorn_loggers")
def test_uvicorn_json_access_lines_have_the_request_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(logs.uvicorn_log_config("json", logging.INFO))
    access(HOSTILE_PATH)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.isascii()
    assert_terminal_safe(err)
    entry = json.loads(err)
    assert entry["logger"] == "uvicorn.access" and entry["level"] == "INFO" and re.fullmatch(TIME, entry["time"])
    assert entry["path"] == HOSTILE_PATH and entry["method"] == "GET" and entry["status"] == 404
    assert entry["client"] == "10.0.0.5:41000"


@pytest.mark.usefixtures("uvicorn_loggers")
def test_uvicorn_accepts_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never served
        return None

    uvicorn.Config(app, log_config=logs.uvicorn_log_config("json", "warning"))  # runs the dictConfig
    assert isinstance(logging.getLogger("uvicorn.access").handlers[0].formatter, logs.JsonFormatter)
    access("/x")  # below warning
    logging.getLogger("uvicorn.error").warning("shutting down \x1b[2J")
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["message"] == "shutting down \x1b[2J" and line.isascii()


# -- the command line ------------------------------------------------------------------------------------------

def test_one_shot_commands_log_at_warning_and_long_running_ones_at_info(tmp_path: Path) -> None:
    from trustport.cli import base as cli_base

    seen: dict[str, int] = {}

    import click

    @click.group(cls=cli_base.TrustportGroup)
    @click.option("--log-format", default="text")
    @click.option("--log-level")
    @click.pass_context
    def group(ctx: click.Context, log_format: logs.LogFormat, log_level: str | None) -> None:
        cli_base.setup_logging(ctx, log_format, log_level)

    @group.command("worker")
    def worker() -> None:
        cli_base.install_safe_logging()  # a long-running command's name: info
        seen["worker"] = logging.getLogger().level

    @group.command("list")
    def listing() -> None:
        cli_base.install_safe_logging()
        seen["list"] = logging.getLogger().level

    runner = CliRunner()
    assert runner.invoke(group, ["worker"]).exit_code == 0
    assert runner.invoke(group, ["list"]).exit_code == 0
    assert seen == {"worker": logging.INFO, "list": logging.WARNING}
    assert runner.invoke(group, ["--log-level", "error", "worker"]).exit_code == 0
    assert seen["worker"] == logging.ERROR


def test_serve_logging_returns_what_uvicorn_needs(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from trustport.cli import base as cli_base

    got: list[cli_base.LogSettings] = []

    @cli.command("fake-serve", hidden=True)
    def fake_serve() -> None:
        got.append(cli_base.serve_logging())
        logging.getLogger("trustport.api").info("serving")

    try:
        result = CliRunner(env={"TRUSTPORT_LOG_FORMAT": "json"}).invoke(cli, ["fake-serve"])
        assert result.exit_code == 0, result.output
        assert got == [cli_base.LogSettings("json", "info")]
        assert json.loads(result.stderr)["message"] == "serving"
        result = CliRunner(env={"TRUSTPORT_LOG_LEVEL": "ERROR"}).invoke(cli, ["fake-serve"])
        assert got[-1] == cli_base.LogSettings("text", "error") and result.stderr == ""
        assert logs.uvicorn_log_config(got[-1].fmt, got[-1].level)["loggers"]["uvicorn"]["level"] == logging.ERROR
    finally:
        assert isinstance(cli, click.Group)
        cli.commands.pop("fake-serve")


def test_log_options_are_in_the_help_and_read_from_the_environment() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "--log-format" in result.output and "--log-level" in result.output
    bad = CliRunner().invoke(cli, ["--log-format", "xml", "db", "--help"])
    assert bad.exit_code == 2
    env = CliRunner(env={"TRUSTPORT_LOG_FORMAT": "yaml"}).invoke(cli, ["db", "--help"])
    assert env.exit_code == 2 and "yaml" in env.output, env.output


@pytest.fixture
def enforce_env(tmp_path: Path, pki: DevicePki) -> Iterator[EnforceEnv]:
    mac = "02-00-00-00-10-01"
    nas = coa_nas({mac})
    try:
        with fake_switch() as switch:
            environment = EnforceEnv(tmp_path, pki, switch.ports["cisco_ios"], nas.port,
                                     host_key_lines=switch.known_hosts_lines())
            environment.write(coa=False)
            environment.connected_device("ldevid-ok", "3", mac)
            yield environment
            environment.store.close()
    finally:
        nas.stop()


def test_worker_logs_json_lines_with_timestamps_on_stderr(enforce_env: EnforceEnv) -> None:
    from trustport.services.lifecycle import LifecycleService

    service = LifecycleService(enforce_env.config, enforce_env.store)
    (device,) = enforce_env.store.list_devices()
    service.act(device, "quarantine", actor="test", reason="suspicious \x1b[2J", now=datetime.now(UTC))
    done = subprocess.run([sys.executable, "-m", "trustport.cli.main", "--log-format", "json", "worker", "--drain",
                           "--config", str(enforce_env.config_path)], env={**os.environ, **ENV}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("queue: done 1"), done.stdout  # the summary stays on stdout
    assert "job #" not in done.stdout
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # every stderr line is a JSON object
    assert entries and all(re.fullmatch(TIME, e["time"]) for e in entries)
    assert not [e for e in entries if e["level"] == "DEBUG"]  # info: paramiko's chatter (demoted) stays out
    *_, finished = [e for e in entries if e.get("state") == "done"]
    assert finished["level"] == "INFO" and finished["logger"] == "trustport.worker"
    assert finished["job_id"] == 1 and finished["device"] == device.id and finished["finished"] == 1
    assert finished["reason"] == "quarantine by test: suspicious \x1b[2J"
    assert "\x1b" not in done.stderr  # escaped by json.dumps
    assert finished["message"].endswith("done: Gi1/0/3: bounced, up in VLAN 999 (read back)")


def test_worker_text_logs_by_default(enforce_env: EnforceEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from trustport.services.lifecycle import LifecycleService

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    service = LifecycleService(enforce_env.config, enforce_env.store)
    (device,) = enforce_env.store.list_devices()
    service.act(device, "quarantine", actor="test", reason="suspicious", now=datetime.now(UTC))
    result = CliRunner().invoke(cli, ["worker", "--drain", "--config", str(enforce_env.config_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("queue: done 1")
    done = rf"^{TIME} INFO trustport\.worker: \[1 finished\] job #1 \(quarantine by test: suspicious\): done: "
    assert re.search(done, result.stderr, re.MULTILINE), result.stderr
