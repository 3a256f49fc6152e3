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
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import click

from policy.errors import TrustportError
from policy.text import SafeFormatter, safe_text

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


def install_safe_logging(level: int = logging.WARNING) -> None:
    """Send Python logging (drivers, trust store, MUD lookup) to stderr through ``SafeFormatter``, unless the
    root logger already has a handler; without one, logging's last-resort handler would print messages raw."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def now_utc() -> datetime:
    return datetime.now(UTC)
