"""The REST API's bounds over real HTTP: a uvicorn server as ``trustport api serve`` configures it, on a loopback
port chosen at run time, spoken to with raw sockets and http.client (TestClient would hide what the wire does).

Chunked bodies, sized bodies, stalled and half-sent requests, hostile device ids, lone surrogates, broken JSON,
and a registry that cannot be opened: each answered with a 4xx/503 problem and a reason, never a 500, never
the request echoed back, and never by reading more than the limit.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import uvicorn
import yaml
from click.testing import CliRunner
from fastapi import FastAPI

from tests.attest_env import API_TOKEN, AttestEnv
from trustport.api import MAX_BODY_BYTES, ApiLimits, HeadDeadlineProtocol, create_app, server_config
from trustport.cli.main import cli
from trustport.settings.config import load_config
from trustport_lab.fake_verifier import mint

LIMITS = ApiLimits(body_timeout_s=1.0, header_timeout_s=1.0, keep_alive_s=2)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
CHUNKED = b"Transfer-Encoding: chunked\r\n\r\n"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


POST_HEAD = b"POST /v1/attestation-results HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
AUTH_HEAD = POST_HEAD + f"Authorization: Bearer {API_TOKEN}\r\n".encode()


@dataclass
class Served:
    port: int
    env: AttestEnv

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def http(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = self.http()
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
            reply = conn.getresponse()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
        finally:
            conn.close()


def _serve(env: AttestEnv, config_path: Path | None = None) -> Iterator[Served]:
    config = load_config(config_path) if config_path else env.config
    app = create_app(config, limits=LIMITS)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, "127.0.0.1", listener.getsockname()[1], LIMITS,
                                          log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Served(listener.getsockname()[1], env)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture
def served(env: AttestEnv) -> Iterator[Served]:
    yield from _serve(env)


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (sized body) off a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket, timeout: float = 3.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def chunk(size: int) -> bytes:
    return f"{size:x}\r\n".encode() + b"x" * size + b"\r\n"


def problem(body: bytes) -> dict[str, Any]:
    detail = json.loads(body)["detail"]
    assert set(detail) == {"reason", "message"} and detail["message"], detail
    return detail  # type: ignore[no-any-return]


# -- authentication before the body ---------------------------------------------------------------------------

def test_unauthenticated_chunked_mebibyte_is_refused_from_the_headers(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(POST_HEAD + CHUNKED + chunk(64 * 1024))
        code, headers, body = read_response(sock)  # answered with 64 KiB of the 1 MiB sent
        assert code == 401 and headers["www-authenticate"] == "Bearer"
        assert problem(body)["reason"] == "unauthenticated"
        assert headers["connection"] == "close" and closed_by_server(sock)  # the other 960 KiB are never read


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-token-wrong-token-wrong", f"Basic {API_TOKEN}", API_TOKEN, f"Bearer {API_TOKEN} extra",
    f"Bearer {API_TOKEN[:-1]}", "Bearer ", f"Bearer\t{API_TOKEN}x",
])
def test_bad_credentials_with_a_huge_content_length_get_401_not_413(served: Served, authorization: str | None) -> None:
    with served.connect() as sock:
        auth = f"Authorization: {authorization}\r\n".encode() if authorization is not None else b""
        sock.sendall(POST_HEAD + auth + b"Content-Length: 104857600\r\n\r\n")
        code, _headers, body = read_response(sock)
        assert code == 401 and problem(body)["reason"] == "unauthenticated"


def test_two_authorization_headers_are_refused(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(POST_HEAD + b"Authorization: Bearer nope\r\n" + f"Authorization: Bearer {API_TOKEN}\r\n".encode()
                     + b"Content-Length: 2\r\n\r\n{}")
        assert read_response(sock)[0] == 401


# -- body size on the bytes read --------------------------------------------------------------------------------

def test_authenticated_chunked_oversize_body_gets_413(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(AUTH_HEAD + CHUNKED)
        sent, answered = 0, False
        while sent < 1024 * 1024 and not answered:
            sock.sendall(chunk(16 * 1024))
            sent += 16 * 1024
            answered = bool(select.select([sock], [], [], 1.0 if sent > MAX_BODY_BYTES else 0.01)[0])
        assert answered and sent <= MAX_BODY_BYTES + 16 * 1024, f"no answer after {sent} bytes"
        code, headers, body = read_response(sock)
        assert code == 413 and problem(body)["reason"] == "too-large"
        assert headers["connection"] == "close" and closed_by_server(sock)


def test_chunked_body_just_under_the_limit_is_read(served: Served) -> None:
    """The control: a chunked body within the limit reaches the route (and is refused there, for its content)."""
    payload = json.dumps({"token": "a.b.c", "certificate": "x" * 1000}).encode()
    with served.connect() as sock:
        sock.sendall(AUTH_HEAD + CHUNKED
                     + f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n")
        code, _headers, body = read_response(sock)
    assert code == 422 and problem(body)["reason"] == "malformed"


def test_content_length_oversize_gets_413_before_the_body(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(AUTH_HEAD + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        code, _headers, body = read_response(sock)  # nothing of the body was sent
        assert code == 413 and problem(body)["reason"] == "too-large" and closed_by_server(sock)


@pytest.mark.parametrize("length", ["\u00b2", "1e3", "-1", "0x10", "99999999999999999999999"])
def test_content_length_that_is_not_a_plain_number(served: Served, length: str) -> None:
    with served.connect() as sock:
        sock.sendall(AUTH_HEAD + f"Content-Length: {length}\r\n\r\n".encode())
        code = read_response(sock)[0]
    assert code in (400, 413)


# -- timeouts -------------------------------------------------------------------------------------------------

def test_headers_then_a_stalled_body_get_408(served: Served) -> None:
    with served.connect() as sock:
        started = time.monotonic()
        sock.sendall(AUTH_HEAD + b"Content-Length: 100\r\n\r\n{\"to")
        code, _headers, body = read_response(sock)
        elapsed = time.monotonic() - started
        assert code == 408 and problem(body)["reason"] == "timeout"
        assert LIMITS.body_timeout_s * 0.8 <= elapsed < LIMITS.body_timeout_s + 2
        assert closed_by_server(sock)


def test_chunked_body_that_stops_gets_408(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(AUTH_HEAD + CHUNKED
                     + chunk(10))
        assert read_response(sock)[0] == 408


@pytest.mark.parametrize("sent", [b"", b"POST /v1/attestation-re", POST_HEAD])
def test_half_sent_request_head_is_cut_off(served: Served, sent: bytes) -> None:
    with served.connect() as sock:
        started = time.monotonic()
        sock.sendall(sent)
        sock.settimeout(LIMITS.header_timeout_s + 3)
        answer = b""
        try:
            while piece := sock.recv(4096):
                answer += piece
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - started
    assert elapsed < LIMITS.header_timeout_s + 2, "the half-sent request was not timed out"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")


def test_slow_drip_head_is_cut_off_at_the_deadline(served: Served) -> None:
    """A byte every 0.2 s keeps the connection busy but does not move the deadline."""
    with served.connect() as sock:
        started = time.monotonic()
        cut = False
        for byte in POST_HEAD * 4:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            if select.select([sock], [], [], 0.2)[0]:
                cut = True
                break
        assert cut and time.monotonic() - started < LIMITS.header_timeout_s + 2


def test_keep_alive_still_serves_several_requests(served: Served) -> None:
    """The control for the deadlines: a well-behaved client reuses its connection."""
    conn = served.http()
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            reply = conn.getresponse()
            assert (reply.status, json.loads(reply.read())) == (200, {"status": "ok"})
            time.sleep(0.3)
    finally:
        conn.close()


# -- hostile input: 4xx with a reason, never 500 --------------------------------------------------------------

@pytest.mark.parametrize("ref", ["\u00b2", "\u0661\u0662", "1\u00b2", "99999999999999999999999", "9223372036854775808",
                                 "-1", "+1", "0", "9" * 5000])
def test_hostile_device_ids_in_the_path(served: Served, ref: str) -> None:
    code, _headers, body = served.request("GET", f"/v1/devices/{quote(ref)}/attestation-results", headers=AUTH)
    assert code == 422 and problem(body)["reason"] == "bad-device-ref"
    code, _headers, body = served.request("POST", f"/v1/devices/{quote(ref)}/attestation-nonce", headers=AUTH)
    assert code == 422 and problem(body)["reason"] == "bad-device-ref"


def test_largest_device_id_is_a_plain_not_found(served: Served) -> None:
    code, _headers, body = served.request("GET", "/v1/devices/9223372036854775807/attestation-results", headers=AUTH)
    assert code == 404 and problem(body)["reason"] == "unknown-device"


@pytest.mark.parametrize("ref", ["\u00b2", "99999999999999999999999", "-1", "SN\u0000", "\ud800"])
def test_hostile_device_ids_in_the_body(served: Served, env: AttestEnv, ref: str) -> None:
    env.register("ldevid-ok", _now())
    token = mint(env.verifier, status="affirming", now=_now(), akpub=env.akpub("ldevid-ok"))
    body = json.dumps({"token": token, "device": ref}).encode()  # ensure_ascii: "\ud800" travels as an escape
    code, _headers, answer = served.request("POST", "/v1/attestation-results", body, headers=AUTH)
    assert code == 422 and problem(answer)["reason"] in ("bad-device-ref", "invalid-request")


@pytest.mark.parametrize("raw", [
    b'{"token": "\\ud800"}', b'{"token": "a.b.c", "certificate": "\\udfff"}', b'{"token": "\\ud800\\u0041.b.c"}',
])
def test_lone_surrogates_are_refused(served: Served, raw: bytes) -> None:
    code, _headers, body = served.request("POST", "/v1/attestation-results", raw, headers=AUTH)
    assert code == 422 and problem(body)["reason"] == "invalid-request"


@pytest.mark.parametrize(("raw", "codes"), [
    (b'{"token": ', (400, 422)), (b"\xff\x00{", (400, 422)), (b"[1, 2", (400, 422)), (b"", (400, 422)),
    (b'{"token": NaN}', (400, 422)), (b"null", (422,)), (b'"token"', (422,)), (b"[" * 100_000, (400, 422)),
])
def test_malformed_json_is_a_4xx_problem(served: Served, raw: bytes, codes: tuple[int, ...]) -> None:
    code, _headers, body = served.request("POST", "/v1/attestation-results", raw, headers=AUTH)
    assert code in codes and problem(body)["reason"] in ("bad-request", "invalid-request")


@pytest.mark.parametrize("payload", [
    {"token": 12345, "certificate": "MARKER-7f3a" * 100},
    {"token": "MARKER-7f3a" * 6000},
    {"token": ["MARKER-7f3a"]},
    {"token": "a.b.c", "device": "MARKER-7f3a" * 20},
    {"MARKER-7f3a": "MARKER-7f3a"},
])
def test_422_does_not_echo_the_request(served: Served, payload: dict[str, Any]) -> None:
    code, _headers, body = served.request("POST", "/v1/attestation-results", json.dumps(payload).encode(),
                                          headers=AUTH)
    assert code == 422 and b"MARKER-7f3a" not in body and len(body) < 2048
    assert problem(body)["reason"] == "invalid-request"


def test_a_genuine_result_is_still_accepted(served: Served, env: AttestEnv) -> None:
    device = env.register("ldevid-ok", _now())
    token = mint(env.verifier, status="affirming", now=_now(), akpub=env.akpub("ldevid-ok"))
    code, _headers, body = served.request("POST", "/v1/attestation-results", json.dumps({"token": token}).encode(),
                                          headers=AUTH)
    assert code == 201 and json.loads(body)["device_id"] == device.id


# -- the registry down ------------------------------------------------------------------------------------------

@pytest.fixture
def served_without_store(env: AttestEnv, tmp_path: Path) -> Iterator[Served]:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be\n")
    data = yaml.safe_load(env.config_path.read_text())
    data["database"] = {"url": f"sqlite:///{blocker}/registry.sqlite"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data))
    yield from _serve(env, broken)


def test_database_unavailable_is_503_with_retry_after(served_without_store: Served, env: AttestEnv) -> None:
    token = mint(env.verifier, status="affirming", now=_now(), akpub=env.akpub("ldevid-ok"))
    for method, path, body in (("POST", "/v1/attestation-results", json.dumps({"token": token}).encode()),
                               ("GET", "/healthz", None), ("GET", "/v1/devices/1/attestation-results", None),
                               ("POST", "/v1/devices/SN-0002/attestation-nonce", None)):
        code, headers, answer = served_without_store.request(method, path, body, headers=AUTH)
        assert code == 503, (path, answer)
        assert int(headers["retry-after"]) > 0 and problem(answer)["reason"] == "store-unavailable"


# -- what `trustport api serve` runs ------------------------------------------------------------------------------

def test_api_serve_runs_uvicorn_with_the_bounds(env: AttestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: seen.append(self.config))
    result = CliRunner().invoke(cli, ["api", "serve", "--config", str(env.config_path), "--request-timeout", "2.5",
                                      "--max-connections", "10"])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert isinstance(config.http, type) and issubclass(config.http, HeadDeadlineProtocol)
    assert config.http.header_timeout_s == 2.5
    assert (config.timeout_keep_alive, config.limit_concurrency, config.h11_max_incomplete_event_size) == (5, 10,
                                                                                                            16384)
    assert isinstance(config.app, FastAPI)
    guard = config.app.state.limits
    assert (guard.body_timeout_s, guard.max_body_bytes) == (2.5, MAX_BODY_BYTES)


@pytest.mark.parametrize("option", [["--request-timeout", "0"], ["--request-timeout", "-1"],
                                    ["--max-connections", "0"], ["--keep-alive", "0"]])
def test_api_serve_refuses_unbounded_settings(env: AttestEnv, option: list[str]) -> None:
    result = CliRunner().invoke(cli, ["api", "serve", "--config", str(env.config_path), *option])
    assert result.exit_code == 2 and "Invalid value" in result.output
