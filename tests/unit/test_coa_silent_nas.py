"""A NAS that never answers must not lose a quarantine: the CoA driver gives up within its own small budget with
``NoAnswer`` (so the worker falls back to the switch), a NAK stays a NAK, and many sessions go out at once with one
result each. Against the fake NAS on a loopback UDP port, with budgets of a fraction of a second."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from switch_drivers.base import Target
from switch_drivers.coa import CoaDriver, CoaOptions
from switch_drivers.errors import CoANak, DriverTimeout, InvalidArgument, NoAnswer
from trustport_lab.fakes.coa_nas import CoaNas

SECRET = "testing123"
FAST = {"timeout": 0.3, "retries": 3}  # a 0.9 s budget


@pytest.fixture
def nas() -> Iterator[CoaNas]:
    fake = CoaNas(sessions={"AA-BB-CC-00-11-22", "sess-0001", *(f"sess-{n:04d}" for n in range(100))}).start()
    yield fake
    fake.stop()


def _driver(port: int, **options: Any) -> CoaDriver:
    return CoaDriver(Target("fake-nas", "127.0.0.1", port),
                     CoaOptions(secret=SECRET, vendor="cisco", **{**FAST, **options}))  # type: ignore[arg-type]


def test_default_budget_is_small_and_explicit() -> None:
    options = CoaOptions(secret="s")  # type: ignore[arg-type]
    assert (options.timeout, options.retries) == (2.0, 3)
    assert options.budget_seconds == 6.0 < 10


def test_silent_nas_raises_no_answer_within_the_budget(nas: CoaNas) -> None:
    nas.silent = True
    with _driver(nas.port) as driver:
        started = time.monotonic()
        with pytest.raises(NoAnswer) as info:
            driver.reauthenticate("AA-BB-CC-00-11-22")
        elapsed = time.monotonic() - started
    assert type(info.value) is NoAnswer  # the specific signal, not any DriverTimeout
    assert isinstance(info.value, DriverTimeout)  # ... which old callers still catch
    assert 0.85 <= elapsed < 1.5  # 3 tries x 0.3 s, not the worker's 8 x 37 s
    assert nas.received == 3
    message = str(info.value)
    assert "no answer to CoA-Request after 3 tries over 0.9 s" in message
    assert f"NAS at 127.0.0.1:{nas.port}" in message
    assert "fake-nas port AA-BB-CC-00-11-22" in message
    assert "enforce on the switch" in message
    assert SECRET not in message


def test_disconnect_to_a_silent_nas_is_no_answer_too(nas: CoaNas) -> None:
    nas.silent = True
    with _driver(nas.port, retries=1) as driver, \
            pytest.raises(NoAnswer, match=re.escape("no answer to Disconnect-Request after 1 try over 0.3 s")):
        driver.disconnect("acct-session-id=sess-0001")
    assert nas.received == 1


def test_a_nak_stays_a_nak(nas: CoaNas) -> None:
    with _driver(nas.port) as driver, pytest.raises(CoANak) as info:
        driver.reauthenticate("AA-BB-CC-99-99-99")
    assert not isinstance(info.value, NoAnswer)
    assert info.value.error_cause == 503


def test_a_lost_request_is_covered_by_the_retries(nas: CoaNas) -> None:
    nas.drop_first = 2
    with _driver(nas.port) as driver:
        driver.reauthenticate("AA-BB-CC-00-11-22")
    assert nas.received == 3
    assert len(nas.requests) == 1


def test_partial_nas_gives_one_result_per_session(nas: CoaNas) -> None:
    """40 sessions at once: 10 ignored by the NAS, 5 unknown to it, 1 malformed; all within one budget."""
    good = [f"acct-session-id=sess-{n:04d}" for n in range(24)]
    ignored = [f"acct-session-id=sess-{n:04d}" for n in range(50, 60)]
    unknown = [f"acct-session-id=gone-{n}" for n in range(5)]
    selectors = [*good[:12], *ignored, *unknown, "user-name=bad\nname", *good[12:]]
    nas.ignored = {s.split("=")[1] for s in ignored}
    with _driver(nas.port) as driver:
        started = time.monotonic()
        outcomes = driver.reauthenticate_many(selectors)
        elapsed = time.monotonic() - started
    assert [o.port for o in outcomes] == selectors
    by_port = {o.port: o for o in outcomes}
    assert all(by_port[s].ok for s in good)
    assert all(type(by_port[s].error) is NoAnswer for s in ignored)
    assert all(isinstance(by_port[s].error, CoANak) for s in unknown)
    assert isinstance(by_port["user-name=bad\nname"].error, InvalidArgument)
    assert elapsed < 1.5  # concurrent: one 0.9 s budget, not 10 of them
    assert len(nas.requests) == 24 + 5  # answered: ACKed or NAKed
    assert nas.received == 24 + 5 + 10 * 3  # the ignored ones were sent 3 times each


def test_many_sessions_with_a_small_window(nas: CoaNas) -> None:
    selectors = [f"acct-session-id=sess-{n:04d}" for n in range(30)]
    with _driver(nas.port, max_in_flight=4) as driver:
        outcomes = driver.disconnect_many(selectors)
    assert [o.error for o in outcomes] == [None] * 30
    assert [r["kind"] for r in nas.requests] == ["disconnect"] * 30


def test_a_session_named_twice_is_sent_once(nas: CoaNas) -> None:
    with _driver(nas.port) as driver:
        outcomes = driver.reauthenticate_many(["AA-BB-CC-00-11-22", "aa:bb:cc:00:11:22", "sess-0001",
                                               "AA-BB-CC-00-11-22"])
    assert [o.port for o in outcomes] == ["AA-BB-CC-00-11-22", "aa:bb:cc:00:11:22", "sess-0001", "AA-BB-CC-00-11-22"]
    assert [o.ok for o in outcomes] == [True, True, False, True]  # the same MAC spelt two ways: one request
    assert isinstance(outcomes[2].error, InvalidArgument)  # not a selector at all
    assert len(nas.requests) == 1
    nas.ignored = {"AA-BB-CC-00-11-22"}
    with _driver(nas.port, retries=1) as driver:
        outcomes = driver.reauthenticate_many(["AA-BB-CC-00-11-22", "aa:bb:cc:00:11:22"])
    assert [type(o.error) for o in outcomes] == [NoAnswer, NoAnswer]
    assert nas.received == 2


def _forging_nas(stop: threading.Event) -> tuple[socket.socket, threading.Thread]:
    """Answers every request at once with a CoA-ACK that is not signed with the shared secret."""
    from pyrad import packet

    from switch_drivers.coa import _dictionary

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            request = packet.CoAPacket(secret=b"not-the-secret", dict=_dictionary(), packet=data)
            reply = request.CreateReply()
            reply.add_message_authenticator()
            sock.sendto(reply.ReplyPacket(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock, thread


def test_forged_replies_are_ignored_and_end_as_no_answer() -> None:
    stop = threading.Event()
    sock, thread = _forging_nas(stop)
    try:
        with _driver(sock.getsockname()[1]) as driver, pytest.raises(NoAnswer):
            driver.reauthenticate("AA-BB-CC-00-11-22")
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()
