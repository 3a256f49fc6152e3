"""Structured logs for every trustport process: a UTC timestamp, a level and the logger on each line, as text
for people or as one JSON object per line for log shippers (``trustport --log-format json``).

Log records carry untrusted text (serials, subjects, switch output, request paths). The text format escapes it
through ``policy.text.SafeFormatter`` (a newline or an ANSI escape is shown as ``\\x0a`` / ``\\x1b``, never
obeyed); the JSON format writes the message as one string value with ``json.dumps(ensure_ascii=True)``, which
writes every control and non-ASCII character as ``\\uNNNN``: a message cannot end the line, start a second
record or add keys of its own.

``configure`` installs one handler on the root logger (calling it again replaces it); ``uvicorn_log_config`` is
the same for uvicorn's ``log_config=`` (``uvicorn.error`` and ``uvicorn.access``, whose request path is
percent-decoded and so untrusted).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TextIO

from policy.text import SafeFormatter

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# the attributes every LogRecord has: anything else on a record came from ``extra=``
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")  # uvicorn.access's args, in order


def iso_time(created: float) -> str:
    """``record.created`` as UTC ISO-8601 with milliseconds and ``Z``: ``2026-12-01T14:37:58.123Z``."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_level(level: str | int) -> int:
    """``"info"``, ``"INFO"``, ``"20"`` or ``logging.INFO`` as ``logging.INFO``; an unknown name is an error."""
    if isinstance(level, int):
        return level
    text = level.strip()
    if text.isdigit():
        return int(text)
    value = logging.getLevelName(text.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}; one of {', '.join(LEVELS)}")
    return value


class TextFormatter(SafeFormatter):
    """``2026-12-01T14:37:58.123Z INFO trustport.worker: message``, the line escaped by ``SafeFormatter``."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: Any = "%",
                 validate: bool = True, **_ignored: Any) -> None:
        # ``**_ignored``: uvicorn's dictConfig may pass ``use_colors``; colours are never used here
        super().__init__(fmt or TEXT_FORMAT, datefmt, style, validate)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the record's ``extra=`` fields,
    ``exc`` (the formatted exception) and ``stack``. ``ensure_ascii`` escapes every control character, so the
    line is terminal-safe and always exactly one line."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: Any = "%",
                 validate: bool = True, **_ignored: Any) -> None:
        super().__init__(None, datefmt, style, validate)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": iso_time(record.created), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            entry.update(zip(_ACCESS_FIELDS, (_jsonable(a) for a in record.args), strict=True))
        for key, value in record.__dict__.items():
            if key in _RECORD_FIELDS or key.startswith("_"):
                continue
            entry[key if key not in entry else f"extra.{key}"] = _jsonable(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, allow_nan=False, default=str)


def formatter(fmt: LogFormat = "text") -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {fmt!r}; one of {', '.join(FORMATS)}")


class LogHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure`` installs. Without a stream of its own it writes to whatever ``sys.stderr`` is
    when a record is emitted (a test runner or click's ``CliRunner`` swaps it), never to a closed one."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)

    def flush(self) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().flush()


def configure(fmt: LogFormat = "text", level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send Python logging to ``stream`` (default: the current ``sys.stderr``) in ``fmt`` at ``level`` and up.

    One root handler: the one an earlier call installed is replaced (handlers of others, e.g. pytest's, stay),
    so calling it again with another level or format is how a command changes them."""
    handler = LogHandler(stream)
    handler.setFormatter(formatter(fmt))
    numeric = parse_level(level)
    handler.setLevel(numeric)  # also for records a filter demoted after the logger let them through
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, LogHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def uvicorn_log_config(fmt: LogFormat = "text", level: str | int | None = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.run(..., log_config=...)`` / ``uvicorn.Config``: uvicorn's
    ``uvicorn.error`` and ``uvicorn.access`` lines in the same format as every other trustport line, on stderr,
    the access line's request path escaped. ``level`` None: info."""
    formatter(fmt)  # an unknown format fails here, not inside uvicorn
    numeric = parse_level(logging.INFO if level is None else level)
    factory = {"()": f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": dict(factory), "access": dict(factory)},
        "handlers": {"default": {"()": f"{__name__}.LogHandler", "formatter": "default"},
                     "access": {"()": f"{__name__}.LogHandler", "formatter": "access"}},
        "loggers": {"uvicorn": {"handlers": ["default"], "level": numeric, "propagate": False},
                    "uvicorn.error": {"level": numeric},
                    "uvicorn.access": {"handlers": ["access"], "level": numeric, "propagate": False}},
    }
