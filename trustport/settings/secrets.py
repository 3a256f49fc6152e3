"""Secrets in the config: a string, ``{env: NAME}`` or ``{file: PATH}`` (relative to the config's directory).

``SECRET_BASE`` holds the directory relative secret files resolve against while one config is being validated
(``check_config`` sets it); every section with a secret (RADIUS clients, database, API tokens, directory bind)
resolves through ``resolve_secret``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from trustport.settings import safe_yaml

MAX_SECRET_BYTES = 64 * 1024


def resolve_secret(value: Any, base: Path) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        if not value:
            raise ValueError("secret is empty")
        return SecretStr(value)
    if isinstance(value, dict) and set(value) == {"env"}:
        name = str(value["env"])
        if name not in os.environ or not os.environ[name]:
            raise ValueError(f"environment variable {name} is not set")
        return SecretStr(os.environ[name])
    if isinstance(value, dict) and set(value) == {"file"}:
        path = base / str(value["file"])
        try:
            text = safe_yaml.read_regular_file(path, MAX_SECRET_BYTES, "secret file").decode("utf-8").strip()
        except OSError as exc:
            raise ValueError(str(exc.strerror or exc)) from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"secret file {path} is not UTF-8 text") from exc
        if not text:
            raise ValueError(f"secret file {path} is empty")
        return SecretStr(text)
    raise ValueError("a secret is a string, {env: NAME} or {file: PATH}")


class SecretBase:
    """The directory relative secret files resolve against, while one config is being validated."""

    def __init__(self) -> None:
        self._value = Path()

    def get(self) -> Path:
        return self._value

    def set(self, value: Path) -> None:
        self._value = value


SECRET_BASE = SecretBase()
