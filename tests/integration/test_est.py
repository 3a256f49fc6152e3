"""EST (RFC 7030) end to end: the real server on a loopback port, curl as the client (TLS client certificate),
CSRs made by ``openssl req``, answers read back with ``openssl pkcs7``; the issued LDevID then judged by the same
path RADIUS uses. Every refusal is checked for its status and its reason, never a 500 or a traceback."""

from __future__ import annotations

import base64
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from policy.model import CertKind, DeviceKey, LifecycleState, Outcome
from tests.pki_fixtures import DevicePki
from tests.support.est_env import EstEnv, build_est_env
from trustport.est.server import EstServer, build_server, start_in_thread
from trustport.services.chain import pem_facts
from trustport.settings.enrollment import EnrollmentConfig
from trustport.store.issued import SqlIssuedStore
from trustport.store.lifecycle import SqlLifecycleStore

pytestmark = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")),
                                reason="needs the curl and openssl command-line tools")
EST = "/.well-known/est"
ACME = "/C=DE/O=Acme Devices/CN=Acme Manufacturer IDevID CA"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    curl_exit: int
    seconds: float

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def est(pki: DevicePki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EstEnv, EstServer]]:
    env = build_est_env(pki, tmp_path_factory.mktemp("est"))
    server = build_server(env.app, EnrollmentConfig(retry_after_seconds=120), listen="127.0.0.1", port=0)
    thread = start_in_thread(server)
    yield env, server
    server.shutdown()
    server.server_close()
    thread.join(5)
    env.close()


def curl(server: EstServer, env: EstEnv, op: str, *, cert: tuple[Path, Path] | None = None,
         body: Path | None = None, content_type: str = "application/pkcs10", extra: tuple[str, ...] = ()) -> Reply:
    port = server.server_address[1]
    out, head = env.root / "reply.bin", env.root / "reply.head"
    for stale in (out, head):
        stale.unlink(missing_ok=True)
    args = ["curl", "-sS", "--max-time", "20", "--cacert", str(env.pki.cert_path("server-ca")),
            "--resolve", f"radius.test:{port}:127.0.0.1", "-o", str(out), "-D", str(head), "-w", "%{http_code}"]
    if cert is not None:
        args += ["--cert", str(cert[0]), "--key", str(cert[1])]
    if body is not None:
        args += ["--data-binary", f"@{body}", "-H", f"Content-Type: {content_type}"]
    started = time.perf_counter()
    done = subprocess.run([*args, *extra, f"https://radius.test:{port}{EST}/{op}"], capture_output=True, text=True,
                          timeout=30, check=False)
    seconds = time.perf_counter() - started
    headers: dict[str, str] = {}
    if head.exists():
        for line in head.read_text("latin-1").splitlines()[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
    status = int(done.stdout[-3:]) if done.stdout[-3:].isdigit() else 0
    return Reply(status, headers, out.read_bytes() if out.exists() else b"", done.returncode, seconds)


def make_csr(env: EstEnv, name: str, *, subject: str = "/CN=whatever/serialNumber=SN-EVIL",
             key: str = "ec", pem: bool = False) -> tuple[Path, Path]:
    """``openssl req`` as a device would run it: a new key and a CSR; returns (body file, key file)."""
    key_file, der = env.root / f"{name}.csr-key", env.root / f"{name}.csr.der"
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else ["-newkey", key]
    subprocess.run(["openssl", "req", "-new", *newkey, "-nodes", "-keyout", str(key_file), "-subj", subject,
                    "-outform", "PEM" if pem else "DER", "-out", str(der)], check=True, capture_output=True)
    if pem:
        return der, key_file
    body = env.root / f"{name}.csr.b64"
    body.write_bytes(base64.encodebytes(der.read_bytes()))  # 76-character lines: line breaks must be tolerated
    return body, key_file


def certificates(reply: Reply, env: EstEnv) -> list[x509.Certificate]:
    """The PKCS#7 answer, read by openssl (the reference client) and by cryptography."""
    assert reply.status == 200, (reply.status, reply.text())
    assert reply.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    der = base64.b64decode(b"".join(reply.body.split()), validate=True)
    (env.root / "reply.p7").write_bytes(der)
    shown = subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-in", str(env.root / "reply.p7"),
                            "-print_certs", "-noout"], capture_output=True, text=True, check=True)
    assert "subject=" in shown.stdout
    return pkcs7.load_der_pkcs7_certificates(der)


def ldevid_files(env: EstEnv, cert: x509.Certificate, key_file: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization

    path = env.root / f"{name}.ldevid.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key_file


def no_traceback(reply: Reply) -> None:
    assert reply.status != 500
    assert b"Traceback" not in reply.body and b"File \"" not in reply.body


def radius_view(env: EstEnv, cert: x509.Certificate) -> tuple[bool, Outcome]:
    """What the RADIUS path (pem_facts + Authorizer.evaluate) makes of a certificate now."""
    now = datetime.now(UTC)
    authorizer = env.app.authorizer
    facts, chain = pem_facts(cert, [], authorizer.trust, now)
    result = authorizer.evaluate(facts, now, extra_checks=(chain,))
    return result.verdict.valid, result.decision.outcome


def test_cacerts_without_a_client_certificate_and_enrol_refused(est: tuple[EstEnv, EstServer]) -> None:
    env, server = est
    reply = curl(server, env, "cacerts")
    [ca] = certificates(reply, env)
    assert ca == env.ca.certificate
    body, _ = make_csr(env, "anon")
    refused = curl(server, env, "simpleenroll", body=body)
    no_traceback(refused)
    assert refused.status in (401, 403) and "client certificate is required" in refused.text()
    attrs = curl(server, env, "csrattrs")
    assert attrs.status == 200 and attrs.headers["content-type"] == "application/csrattrs"


def test_untrusted_client_certificate_is_refused(est: tuple[EstEnv, EstServer], pki: DevicePki) -> None:
    env, server = est
    body, _ = make_csr(env, "rogue")
    reply = curl(server, env, "simpleenroll", body=body,
                 cert=(pki.cert_path("rogue"), pki.key_path("rogue")))
    # OpenSSL refuses the handshake (unknown CA) -- or, had it passed, the RADIUS checks answer 403
    print(f"untrusted client certificate: curl exit {reply.curl_exit}, HTTP {reply.status}")
    assert reply.curl_exit != 0 or reply.status == 403, (reply.curl_exit, reply.status, reply.text())
    assert reply.status != 200
    assert env.app.store.find_device(DeviceKey("/C=DE/O=Evil/CN=Rogue CA", "SN-0014")) is None


def test_enrolment_issues_the_idevid_serial_whatever_the_csr_claims(est: tuple[EstEnv, EstServer]) -> None:
    env, server = est
    idevid = env.idevid("SN-7101")
    env.register(idevid[0], LifecycleState.ONBOARDING)
    body, _ = make_csr(env, "claims-other", subject="/O=Evil/CN=admin/serialNumber=SN-0002")
    reply = curl(server, env, "simpleenroll", body=body, cert=idevid)
    [ldevid] = certificates(reply, env)
    serials = [a.value for a in ldevid.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]
    assert serials == ["SN-7101"]
    assert ldevid.issuer == env.ca.certificate.subject
    assert "admin" not in ldevid.subject.rfc4514_string() and "Evil" not in ldevid.subject.rfc4514_string()
    owner_issuer = env.ca.issuer
    device = env.app.store.find_device(DeviceKey(owner_issuer, "SN-7101"))
    assert device is not None and device.cert_kind is CertKind.LDEVID
    assert device.cert_serial == format(ldevid.serial_number, "x")
    events = [e.action for e in SqlLifecycleStore(env.app.store).events(device.id)]
    assert "ldevid-enrolled" in events
    valid, outcome = radius_view(env, ldevid)  # RADIUS accepts the new LDevID as this device
    assert valid and outcome is not Outcome.REJECT
    # the IDevID cannot get a second LDevID
    again = curl(server, env, "simpleenroll", body=body, cert=idevid)
    no_traceback(again)
    assert again.status == 403 and "already has an LDevID" in again.text()


def test_weak_key_is_refused_with_the_reason(est: tuple[EstEnv, EstServer]) -> None:
    env, server = est
    idevid = env.idevid("SN-7102")
    env.register(idevid[0], LifecycleState.ONBOARDING)
    body, _ = make_csr(env, "weak", key="rsa:1024")
    reply = curl(server, env, "simpleenroll", body=body, cert=idevid)
    no_traceback(reply)
    assert reply.status == 400 and "RSA 1024" in reply.text(), reply.text()


def test_unknown_device_is_pending_with_retry_after(est: tuple[EstEnv, EstServer]) -> None:
    env, server = est
    idevid = env.idevid("SN-7103")
    body, _ = make_csr(env, "pending")
    for _ in range(2):
        reply = curl(server, env, "simpleenroll", body=body, cert=idevid)
        assert reply.status == 202, reply.text()
        assert reply.headers["retry-after"] == "120"
        assert "pending approval" in reply.text()
    device = env.app.store.find_device(DeviceKey(ACME, "SN-7103"))
    assert device is not None and device.state is LifecycleState.PENDING
    env.cli("devices", "onboard", "SN-7103")
    [ldevid] = certificates(curl(server, env, "simpleenroll", body=body, cert=idevid), env)
    assert ldevid.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "SN-7103"


def test_decommissioned_and_quarantined_devices_are_refused(est: tuple[EstEnv, EstServer]) -> None:
    env, server = est
    body, _ = make_csr(env, "gone")
    for serial, state, words in (("SN-7104", LifecycleState.DECOMMISSIONED, "decommissioned"),
                                 ("SN-7105", LifecycleState.QUARANTINED, "quarantined")):
        idevid = env.idevid(serial)
        env.register(idevid[0], state)
        reply = curl(server, env, "simpleenroll", body=body, cert=idevid)
        no_traceback(reply)
        assert reply.status == 403 and words in reply.text(), reply.text()
        device = env.app.store.find_device(DeviceKey(ACME, serial))
        assert device is not None
        assert "est-refused" in [e.action for e in SqlLifecycleStore(env.app.store).events(device.id)]


def test_csr_whose_signature_does_not_match_its_key(est: tuple[EstEnv, EstServer]) -> None:
    env, server = est
    idevid = env.idevid("SN-7106")
    env.register(idevid[0], LifecycleState.ONBOARDING)
    body, _ = make_csr(env, "tampered", subject="/CN=AAAAAAAA")
    der = base64.b64decode(body.read_bytes())
    assert der.count(b"AAAAAAAA") == 1
    body.write_bytes(base64.b64encode(der.replace(b"AAAAAAAA", b"BBBBBBBB")))  # still DER, signature now wrong
    reply = curl(server, env, "simpleenroll", body=body, cert=idevid)
    no_traceback(reply)
    assert reply.status == 400 and "signature does not verify" in reply.text(), reply.text()


def test_bad_bodies_are_refused_cleanly(est: tuple[EstEnv, EstServer]) -> None:
    env, server = est
    idevid = env.idevid("SN-7107")
    env.register(idevid[0], LifecycleState.ONBOARDING)
    junk = env.root / "junk.b64"
    cases: list[tuple[bytes, str, tuple[str, ...], int]] = [
        (b"not base64 at all!!", "application/pkcs10", (), 400),
        (base64.b64encode(b"\x30\x03\x02\x01\x00"), "application/pkcs10", (), 400),
        (b"A" * 40000, "application/pkcs10", (), 413),
        (b"MIIB", "text/plain", (), 415),
        (b"MIIBAAAA", "application/pkcs10", ("-H", "Transfer-Encoding: chunked"), 411),
    ]
    for data, content_type, extra, expected in cases:
        junk.write_bytes(data)
        reply = curl(server, env, "simpleenroll", body=junk, cert=idevid, content_type=content_type, extra=extra)
        no_traceback(reply)
        assert reply.status == expected, (data[:20], reply.status, reply.text())
    pem_body, _ = make_csr(env, "pem-human", pem=True)  # a PEM CSR is accepted too
    assert curl(server, env, "simpleenroll", body=pem_body, cert=idevid, content_type="application/x-pem-file"
                ).status == 200
    wrong = curl(server, env, "simpleenroll", cert=idevid)  # GET
    assert wrong.status == 405
    assert curl(server, env, "nothing-here").status == 404


def test_reenrolment_with_the_ldevid_revokes_the_old_and_moves_the_binding(est: tuple[EstEnv, EstServer]) -> None:
    env, server = est
    idevid = env.idevid("SN-7108")
    env.register(idevid[0], LifecycleState.OPERATIONAL)
    body, key = make_csr(env, "first")
    [first] = certificates(curl(server, env, "simpleenroll", body=body, cert=idevid), env)
    first_files = ldevid_files(env, first, key, "first")
    # the LDevID may not use simpleenroll, the IDevID not simplereenroll
    assert curl(server, env, "simpleenroll", body=body, cert=first_files).status == 403
    assert curl(server, env, "simplereenroll", body=body, cert=idevid).status == 403
    body2, _ = make_csr(env, "second")
    [second] = certificates(curl(server, env, "simplereenroll", body=body2, cert=first_files), env)
    assert second.serial_number != first.serial_number
    assert second.subject == first.subject
    device = env.app.store.find_device(DeviceKey(env.ca.issuer, "SN-7108"))
    assert device is not None and device.cert_serial == format(second.serial_number, "x")
    assert device.state is LifecycleState.OPERATIONAL
    record = SqlIssuedStore(env.app.store).get(format(first.serial_number, "x"))
    assert record is not None and record.revoked_at is not None
    crl = x509.load_pem_x509_crl(env.ca.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(first.serial_number) is not None
    events = [e.action for e in SqlLifecycleStore(env.app.store).events(device.id)]
    assert "ldevid-renewed" in events
    # the old LDevID is finished: no re-enrolment, and RADIUS rejects it; the new one is accepted
    old_again = curl(server, env, "simplereenroll", body=body2, cert=first_files)
    assert old_again.status == 403, old_again.text()
    assert radius_view(env, first)[1] is Outcome.REJECT
    valid, outcome = radius_view(env, second)
    assert valid and outcome is Outcome.ACCEPT


def test_enrolment_latency(est: tuple[EstEnv, EstServer], capsys: pytest.CaptureFixture[str]) -> None:
    env, server = est
    body, _ = make_csr(env, "latency")
    seconds = []
    for i in range(20):
        idevid = env.idevid(f"SN-76{i:02d}")
        env.register(idevid[0], LifecycleState.ONBOARDING)
        reply = curl(server, env, "simpleenroll", body=body, cert=idevid)
        assert reply.status == 200, reply.text()
        seconds.append(reply.seconds)
    median = statistics.median(seconds) * 1000
    # same-run baseline: the same curl, TLS handshake with the same client certificate, answering /cacerts
    # (no validation, no issuing): what the enrolment costs on top of starting curl and TLS
    base = [curl(server, env, "cacerts", cert=idevid).seconds for _ in range(20)]
    baseline = statistics.median(base) * 1000
    with capsys.disabled():
        print(f"\nEST enrolment latency (curl request -> LDevID, 20 devices): median {median:.1f} ms, "
              f"min {min(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms; baseline curl + TLS "
              f"/cacerts median {baseline:.1f} ms (enrolment adds {median - baseline:.1f} ms)")
    assert median < 2000


def test_trustport_est_serve_command(est: tuple[EstEnv, EstServer]) -> None:
    """The CLI serves with the RADIUS server certificate (no enrollment: section) and stops on SIGINT."""
    import signal
    import sys

    env, _ = est
    exe = Path(sys.executable).with_name("trustport")
    proc = subprocess.Popen([str(exe), "est", "serve", "--listen", "127.0.0.1", "--port", "0", "--config",
                             str(env.config_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        line = proc.stdout.readline()
        assert "EST listening on https://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        done = subprocess.run(["curl", "-sS", "--cacert", str(env.pki.cert_path("server-ca")), "--resolve",
                               f"radius.test:{port}:127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}",
                               f"https://radius.test:{port}{EST}/cacerts"], capture_output=True, text=True,
                              timeout=20, check=False)
        assert done.stdout == "200", done.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0


def test_parallel_enrolments_of_one_device_issue_one_ldevid(est: tuple[EstEnv, EstServer]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    env, server = est
    idevid = env.idevid("SN-7109")
    env.register(idevid[0], LifecycleState.ONBOARDING)
    bodies = [make_csr(env, f"race-{i}")[0] for i in range(6)]

    def one(body: Path) -> Reply:
        out = env.root / f"{body.name}.out"
        port = server.server_address[1]
        done = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(env.pki.cert_path("server-ca")),
                               "--resolve", f"radius.test:{port}:127.0.0.1", "--cert", str(idevid[0]), "--key",
                               str(idevid[1]), "-H", "Content-Type: application/pkcs10", "--data-binary",
                               f"@{body}", "-o", str(out), "-w", "%{http_code}",
                               f"https://radius.test:{port}{EST}/simpleenroll"],
                              capture_output=True, text=True, timeout=30, check=False)
        return Reply(int(done.stdout or 0), {}, out.read_bytes(), done.returncode, 0.0)

    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(one, bodies))
    assert sorted(r.status for r in replies) == [200] + [403] * 5, [(r.status, r.text()) for r in replies]
    assert len(SqlIssuedStore(env.app.store).list("SN-7109")) == 1


def test_hostile_requests_on_the_raw_socket(est: tuple[EstEnv, EstServer]) -> None:
    """What curl would never send: broken request lines, header floods, bad lengths, a body that never comes, and
    a client that connects and says nothing (the handshake times out in its own thread; others are served)."""
    import socket
    import ssl

    env, _ = est
    server = build_server(env.app, EnrollmentConfig(timeout_seconds=1), listen="127.0.0.1", port=0)
    thread = start_in_thread(server)
    port = server.server_address[1]
    context = ssl.create_default_context(cafile=str(env.pki.cert_path("server-ca")))
    context.check_hostname = False

    def exchange(raw: bytes) -> bytes:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                 server_hostname="radius.test") as tls:
            tls.sendall(raw)
            out = b""
            while chunk := tls.recv(4096):
                out += chunk
            return out

    enroll = b"POST /.well-known/est/simpleenroll HTTP/1.1\r\n"
    cases = [
        (b"GARBAGE\r\n\r\n", b"Bad request syntax"),
        (b"GET /.well-known/est/cacerts HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b" 431 "),
        (enroll + b"Content-Length: -5\r\n\r\n", b" 400 "),
        (enroll + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", b" 400 "),
        (enroll + b"Content-Length: 100\r\nContent-Type: application/pkcs10\r\n\r\nabc", b" 408 "),
        (b"BREW /.well-known/est/cacerts HTTP/1.1\r\n\r\n", b" 501 "),
        (b"GET /.well-known/est/\xff%00 HTTP/1.1\r\n\r\n", b" 404 "),
    ]
    try:
        silent = socket.create_connection(("127.0.0.1", port))  # never sends a ClientHello
        for raw, expected in cases:
            answer = exchange(raw)
            assert expected in answer, (raw[:40], answer[:200])
            assert b"Traceback" not in answer and b" 500 " not in answer
            assert b"GARBAGE" not in answer  # the request is not echoed back
        silent.settimeout(5)
        assert silent.recv(10) == b""  # closed after the handshake timeout
        silent.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

