"""rlm_python3 module for the bench only: every entry point FreeRADIUS calls, doing nothing but answer (the
VLAN reply in check_eap_tls), each timed. What rlm_python3 itself costs for the same calls."""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

import radiusd

from hookprobe.timing import Recorder

RECORDER = Recorder()
_out = Path(str(radiusd.config.get("probe_out", "/tmp/hookprobe-empty.json")))
_REPLY = (("Tunnel-Type", ":=", "VLAN"), ("Tunnel-Medium-Type", ":=", "IEEE-802"),
          ("Tunnel-Private-Group-Id", ":=", "30"))


def _dump() -> None:
    RECORDER.dump(_out)


atexit.register(_dump)


def _instantiate(p: Any) -> int:
    return 0


def _noop(p: Any) -> int:
    return int(radiusd.RLM_MODULE_NOOP)


def _check(p: Any) -> Any:
    return radiusd.RLM_MODULE_UPDATED, {"reply": _REPLY}


def _ok(p: Any) -> int:
    return int(radiusd.RLM_MODULE_OK)


instantiate = RECORDER.wrap("entry:instantiate", _instantiate)
authorize = RECORDER.wrap("entry:authorize", _noop)
check_eap_tls = RECORDER.wrap("entry:check_eap_tls", _check)
post_auth = RECORDER.wrap("entry:post_auth", _noop)
accounting = RECORDER.wrap("entry:accounting", _ok)


def detach(p: Any) -> int:
    _dump()
    return 0
