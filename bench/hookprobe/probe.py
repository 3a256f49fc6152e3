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
# probe_steps = "no": only the entry points are timed (the headline figure, without the step timers' own cost)
if str(radiusd.config.get("probe_steps", "yes")) != "no":
    RECORDER.install_steps()  # before the real module builds its Hook

from radius_hooks import freeradius as _real  # noqa: E402

_out = Path(str(radiusd.config.get("probe_out", "/tmp/hookprobe.json")))


def _dump() -> None:
    RECORDER.dump(_out)
    with contextlib.suppress(Exception):  # the cache counters since start, next to the events
        _runtime_stats()


def _runtime_stats() -> None:
    import dataclasses
    import json

    runtime = _real._hook.runtime
    cache = runtime.cache if runtime is not None else None
    journal = runtime.journal if runtime is not None else None
    _out.with_suffix(".cache.json").write_text(json.dumps({
        "cache": dataclasses.asdict(cache.stats) if cache is not None else None,
        "journal": str(journal.directory) if journal is not None else None,
    }))


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
    with contextlib.suppress(Exception):  # before detach closes the runtime
        _runtime_stats()
    result = _real_detach(p)
    RECORDER.dump(_out)
    return result
