"""rlm_python3 module for the bench only: the real ``radius_hooks.freeradius`` entry points, each timed, plus
the steps inside them (``hookprobe.timing``). The events are written at detach (and at exit) to the file named
by ``probe_out`` in the module's config block."""

from __future__ import annotations

import atexit
import contextlib
from pathlib import Path
from typing import Any

import radiusd

from hookprobe.timing import Recorder

RECORDER = Recorder()
RECORDER.install_steps()  # before the real module builds its Hook

from radius_hooks import freeradius as _real  # noqa: E402

_out = Path(str(radiusd.config.get("probe_out", "/tmp/hookprobe.json")))


def _dump() -> None:
    RECORDER.dump(_out)


atexit.register(_dump)


def _meta() -> None:
    """What interpreter and libraries radiusd's embedded Python runs (next to the events file)."""
    import json
    import sys

    import sqlalchemy

    try:
        from sqlalchemy.util._has_cython import HAS_CYEXTENSION as cython
    except ImportError:
        cython = None

    _out.with_suffix(".meta.json").write_text(json.dumps({
        "version": sys.version, "executable": sys.executable, "prefix": sys.prefix,
        "sqlalchemy": sqlalchemy.__version__, "sqlalchemy_file": sqlalchemy.__file__,
        "sqlalchemy_cython": cython,
        "flags": str(sys.flags), "switch_interval": sys.getswitchinterval(),
    }))


with contextlib.suppress(Exception):  # never stops the module from loading
    _meta()

instantiate = RECORDER.wrap("entry:instantiate", _real.instantiate)
authorize = RECORDER.wrap("entry:authorize", _real.authorize)
check_eap_tls = RECORDER.wrap("entry:check_eap_tls", _real.check_eap_tls)
post_auth = RECORDER.wrap("entry:post_auth", _real.post_auth)
accounting = RECORDER.wrap("entry:accounting", _real.accounting)
_real_detach = RECORDER.wrap("entry:detach", _real.detach)


def detach(p: Any) -> Any:
    result = _real_detach(p)
    _dump()
    return result
