"""Shared pieces of the command line: JSON and table output, the error-to-exit-code group, the --config option.

Text for humans goes through ``policy.text.safe_text`` (``table`` cells, ``echo_safe`` lines, the error line):
serials, subjects, switch output and exception messages are untrusted. ``--json`` stays exact; ``json.dumps``
escapes control characters itself.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import click

from policy.errors import TrustportError
from policy.text import safe_text
from trustport import logs

config_option = click.option(
    "--config", "config_file", type=click.Path(path_type=Path), envvar="TRUSTPORT_CONFIG",
    default=Path("trustport.yaml"), show_default=True,
    help="trustport config file (YAML); default: $TRUSTPORT_CONFIG or ./trustport.yaml")


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(value: Any) -> None:
    # ensure_ascii (the default) writes every control and non-ASCII character as \uNNNN: exact and terminal-safe
    click.echo(json.dumps(_jsonable(value), indent=2, sort_keys=False, ensure_ascii=True))


def echo_safe(message: object, *, err: bool = False, limit: int | None = None) -> None:
    """Print one line that contains untrusted text; a newline in it is shown as ``\\x0a``, not obeyed."""
    click.echo(safe_text(message, limit), err=err)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[safe_text(h) for h in headers]] + [["" if c is None else safe_text(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class TrustportGroup(click.Group):
    """Turns trustport's own errors into one clear line and exit code 2, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TrustportError as exc:
            echo_safe(f"error: {exc}", err=True)  # messages quote serials, subjects, switch output
            sys.exit(2)


@dataclass(frozen=True)
class LogSettings:
    """``trustport --log-format/--log-level``; ``level`` None: the command's default (warning, info for the
    long-running ones)."""

    fmt: logs.LogFormat = "text"
    level: str | None = None


LOG_SETTINGS_KEY = "trustport.log_settings"
# commands that run until stopped: they log what they do at info unless --log-level says otherwise. Not the
# one-shot 'directory sync' (its --json goes to scripts); the worker's scheduled sync logs at the worker's level.
LONG_RUNNING = frozenset({"worker", "est serve", "api serve"})


def _log_settings(ctx: click.Context | None) -> LogSettings:
    if ctx is None:
        return LogSettings()
    found = ctx.meta.get(LOG_SETTINGS_KEY)
    return found if isinstance(found, LogSettings) else LogSettings()


def _command_name(ctx: click.Context) -> str:
    """``"est serve"`` for ``trustport est serve``: the command's path without the program's name."""
    names: list[str] = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def setup_logging(ctx: click.Context, fmt: logs.LogFormat = "text", level: str | None = None) -> None:
    """The group's ``--log-format``/``--log-level``: kept for the command (``serve_logging``) and applied now
    with the one-shot default (warning), so anything logged while the command starts is formatted too."""
    settings = LogSettings(fmt, level)
    ctx.meta[LOG_SETTINGS_KEY] = settings
    logs.configure(settings.fmt, settings.level or logging.WARNING)


def serve_logging(ctx: click.Context | None = None) -> LogSettings:
    """For a long-running command (worker, est serve, api serve): logs at info unless ``--log-level`` was given,
    in the chosen format. The settings applied (level resolved), e.g. for ``api serve``:
    ``uvicorn.Config(..., log_config=logs.uvicorn_log_config(settings.fmt, settings.level))``."""
    ctx = ctx if ctx is not None else click.get_current_context(silent=True)
    chosen = _log_settings(ctx)
    level = chosen.level or "info"
    logs.configure(chosen.fmt, level)
    return LogSettings(chosen.fmt, level)


def install_safe_logging(level: int = logging.WARNING) -> None:
    """Send Python logging (drivers, trust store, MUD lookup) to stderr through ``logs.configure`` (timestamps,
    levels, untrusted text escaped by ``SafeFormatter``, or JSON lines), honouring ``--log-format`` and
    ``--log-level``; a long-running command (``LONG_RUNNING``) logs at info by default. Without a handler,
    logging's last-resort handler would print messages raw."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _command_name(ctx) in LONG_RUNNING:
        serve_logging(ctx)
        return
    settings = _log_settings(ctx)
    logs.configure(settings.fmt, settings.level or level)


def now_utc() -> datetime:
    return datetime.now(UTC)
