"""With its default options the CoA driver gives a NAS that never answers 3 tries over 6 s, then NoAnswer: the
switch fallback starts within seconds (the worker used to retry the silent NAS for 37 s and fail the job)."""

from __future__ import annotations

import time

from switch_drivers.base import Target
from switch_drivers.coa import CoaDriver, CoaOptions
from switch_drivers.errors import NoAnswer
from trustport_lab.fakes.coa_nas import CoaNas


def test_silent_nas_with_default_options_is_no_answer_in_6_seconds() -> None:
    nas = CoaNas(silent=True).start()
    try:
        driver = CoaDriver(Target("nas-1", "127.0.0.1", nas.port),
                           CoaOptions(secret="testing123", vendor="cisco"))  # type: ignore[arg-type]
        started = time.monotonic()
        try:
            with driver:
                driver.reauthenticate("AA-BB-CC-00-11-22")
        except NoAnswer as exc:
            message = str(exc)
        else:
            raise AssertionError("a silent NAS was taken for an answer")
        elapsed = time.monotonic() - started
    finally:
        nas.stop()
    assert 5.9 <= elapsed < 7.0  # well under 10 s
    assert nas.received == 3
    assert "no answer to CoA-Request after 3 tries over 6 s" in message
