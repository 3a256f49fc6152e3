"""Getting MUD files: the local directory, and HTTPS against a server on 127.0.0.1 with a run-time certificate."""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from policy.mud import MAX_MUD_BYTES, MudFetchError
from policy.mud_signature import load_mud
from tests.support.https_site import Site, serve_https
from trustport.services.mud_fetch import (
    LocalMudDirectory,
    fetch_mud,
    fetch_mud_and_signature,
    fetch_mud_signature,
    https_opener,
)
from trustport_lab.pki import Issued, issue_device, make_ca

NOW = datetime.now(UTC)


def mud_document(url: str) -> bytes:
    return json.dumps({
        "ietf-mud:mud": {"mud-version": 1, "mud-url": url, "last-update": "2026-01-28T11:20:51+01:00",
                         "is-supported": True,
                         "from-device-policy": {"access-lists": {"access-list": [{"name": "fr"}]}}},
        "ietf-access-control-list:acls": {"acl": [{"name": "fr", "aces": {"ace": [
            {"name": "cloud", "matches": {"ipv4": {"ietf-acldns:dst-dnsname": "cloud.example.com"}},
             "actions": {"forwarding": "accept"}}]}}]},
    }).encode()


# --- local directory --------------------------------------------------------------------------------------------

URL = "https://lighting.example.com/mud/lightbulb2000.json"


def test_candidates_are_sha256_then_last_segment() -> None:
    digest = hashlib.sha256(URL.encode()).hexdigest()
    assert LocalMudDirectory("/x").candidates(URL) == [f"{digest}.json", "lightbulb2000.json"]
    bare = "https://lighting.example.com/mud/lightbulb2000"
    assert LocalMudDirectory("/x").candidates(bare)[1:] == ["lightbulb2000", "lightbulb2000.json"]


@pytest.mark.parametrize("url", ["https://evil.example/..", "https://evil.example/", "https://evil.example/.hidden",
                                 "https://evil.example/a%2F..%2Fb"])
def test_unsafe_last_segments_are_not_tried(url: str) -> None:
    assert len(LocalMudDirectory("/x").candidates(url)) == 1


@pytest.mark.parametrize(("name", "signature_name"), [
    (hashlib.sha256(URL.encode()).hexdigest() + ".json", hashlib.sha256(URL.encode()).hexdigest() + ".p7s"),
    ("lightbulb2000.json", "lightbulb2000.p7s"),
])
def test_local_lookup_finds_file_and_signature(tmp_path: Path, name: str, signature_name: str) -> None:
    (tmp_path / name).write_bytes(mud_document(URL))
    (tmp_path / signature_name).write_bytes(b"0\x00")
    found = LocalMudDirectory(tmp_path).find(URL)
    assert found is not None
    assert found.mud_path == tmp_path / name
    assert found.signature_path == tmp_path / signature_name and found.signature == b"0\x00"
    assert found.mud == mud_document(URL)


def test_local_lookup_prefers_sha256_name_and_tolerates_missing_signature(tmp_path: Path) -> None:
    digest_name = hashlib.sha256(URL.encode()).hexdigest() + ".json"
    (tmp_path / digest_name).write_bytes(b"by digest")
    (tmp_path / "lightbulb2000.json").write_bytes(b"by segment")
    found = LocalMudDirectory(tmp_path).find(URL)
    assert found is not None and found.mud == b"by digest"
    assert found.signature is None and found.signature_path is None


def test_local_lookup_without_json_suffix(tmp_path: Path) -> None:
    url = "https://lighting.example.com/lightbulb2000"
    (tmp_path / "lightbulb2000.json").write_bytes(b"{}")
    (tmp_path / "lightbulb2000.p7s").write_bytes(b"sig")
    found = LocalMudDirectory(tmp_path).find(url)
    assert found is not None and found.signature == b"sig"


def test_local_lookup_missing_and_oversize(tmp_path: Path) -> None:
    assert LocalMudDirectory(tmp_path).find(URL) is None
    (tmp_path / "lightbulb2000.json").write_bytes(b" " * (MAX_MUD_BYTES + 1))
    with pytest.raises(MudFetchError, match=r"lightbulb2000\.json: file too large: more than 262144 bytes"):
        LocalMudDirectory(tmp_path).find(URL)


# --- HTTPS ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def https_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Site, ssl.SSLContext, Issued]]:
    with serve_https(tmp_path_factory.mktemp("https")) as (base, site, ca):
        yield base, site, ssl.create_default_context(cadata=ca.cert_pem().decode()), ca


MUD_TYPE = {"Content-Type": "application/mud+json"}


def test_fetch_mud_over_https(https_site: tuple[str, Site, ssl.SSLContext, Issued]) -> None:
    base, site, context, _ = https_site
    body = mud_document(f"{base}/bulb.json")
    site.routes["/bulb.json"] = (200, {**MUD_TYPE, "Content-Length": str(len(body))}, body, 0.0)
    fetched = fetch_mud(f"{base}/bulb.json", timeout_s=5, opener=https_opener(context, proxies={}))
    assert fetched.body == body
    assert fetched.content_type == "application/mud+json"
    assert abs((fetched.fetched_at - datetime.now(UTC)).total_seconds()) < 60


def test_http_is_refused_before_connecting() -> None:
    class Exploding:
        def open(self, fullurl: Any, data: None = None, timeout: float | None = None) -> Any:
            raise AssertionError("must not connect")

    with pytest.raises(MudFetchError, match=r"http://127\.0\.0\.1:9/x: only https:// URLs are fetched"):
        fetch_mud("http://127.0.0.1:9/x", opener=Exploding())
    with pytest.raises(MudFetchError, match="only https"):
        fetch_mud("file:///etc/passwd", opener=Exploding())


def test_redirects_stay_on_https(https_site: tuple[str, Site, ssl.SSLContext, Issued]) -> None:
    base, site, context, _ = https_site
    body = mud_document(f"{base}/target.json")
    site.routes["/target.json"] = (200, MUD_TYPE, body, 0.0)
    site.routes["/moved.json"] = (302, {"Location": f"{base}/target.json"}, b"", 0.0)
    site.routes["/downgrade.json"] = (302, {"Location": "http://127.0.0.1:9/target.json"}, b"", 0.0)
    opener = https_opener(context, proxies={})
    assert fetch_mud(f"{base}/moved.json", timeout_s=5, opener=opener).body == body
    with pytest.raises(MudFetchError, match=re.escape("redirected to a non-https URL 'http://127.0.0.1:9/target.json'")):
        fetch_mud(f"{base}/downgrade.json", timeout_s=5, opener=opener)


@pytest.mark.parametrize(("headers", "body", "message"), [
    ({"Content-Type": "application/mud+json", "Content-Length": "300000"}, b"", "too large: Content-Length 300000"),
    ({"Content-Type": "application/mud+json"}, b"x" * (MAX_MUD_BYTES + 10), "too large: more than 262144 bytes"),
    ({"Content-Type": "text/html"}, b"<html>", "unexpected Content-Type 'text/html'"),
    ({}, b"{}", "unexpected Content-Type '(none)'"),
])
def test_size_cap_and_content_type(https_site: tuple[str, Site, ssl.SSLContext, Issued],
                                   headers: dict[str, str], body: bytes, message: str) -> None:
    base, site, context, _ = https_site
    site.routes["/bad.json"] = (200, headers, body, 0.0)
    with pytest.raises(MudFetchError, match=re.escape(message)):
        fetch_mud(f"{base}/bad.json", timeout_s=5, opener=https_opener(context, proxies={}))


def test_json_content_type_with_parameters_is_accepted(https_site: tuple[str, Site, ssl.SSLContext, Issued]) -> None:
    base, site, context, _ = https_site
    site.routes["/plain.json"] = (200, {"Content-Type": "application/json; charset=utf-8"}, b"{}", 0.0)
    assert fetch_mud(f"{base}/plain.json", timeout_s=5, opener=https_opener(context, proxies={})).body == b"{}"


def test_timeout(https_site: tuple[str, Site, ssl.SSLContext, Issued]) -> None:
    base, site, context, _ = https_site
    site.routes["/slow.json"] = (200, MUD_TYPE, b"{}", 1.5)
    started = time.monotonic()
    with pytest.raises(MudFetchError, match=r"/slow\.json: timed out after 0\.3 s"):
        fetch_mud(f"{base}/slow.json", timeout_s=0.3, opener=https_opener(context, proxies={}))
    assert time.monotonic() - started < 1.4


def test_http_error_status(https_site: tuple[str, Site, ssl.SSLContext, Issued]) -> None:
    base, _, context, _ = https_site
    with pytest.raises(MudFetchError, match=r"/nowhere\.json: HTTP 404"):
        fetch_mud(f"{base}/nowhere.json", timeout_s=5, opener=https_opener(context, proxies={}))


def test_untrusted_server_certificate(https_site: tuple[str, Site, ssl.SSLContext, Issued]) -> None:
    base, site, _, _ = https_site
    site.routes["/bulb2.json"] = (200, MUD_TYPE, b"{}", 0.0)
    with pytest.raises(MudFetchError, match=r"cannot fetch: .*CERTIFICATE_VERIFY_FAILED"):
        fetch_mud(f"{base}/bulb2.json", timeout_s=5, opener=https_opener(ssl.create_default_context(), proxies={}))


def test_fetch_file_and_signature_then_verify(https_site: tuple[str, Site, ssl.SSLContext, Issued]) -> None:
    base, site, context, _ = https_site
    url = f"{base}/signed/bulb.json"
    signing_ca = make_ca("MUD signing CA", "Example Lighting", now=NOW)
    signer = issue_device(signing_ca, cn="mud-signer", serial_number=None, now=NOW, eku=None)
    body = mud_document(url)
    signature = (pkcs7.PKCS7SignatureBuilder().set_data(body).add_signer(signer.cert, signer.key, hashes.SHA256())
                 .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.DetachedSignature]))
    site.routes["/signed/bulb.json"] = (200, MUD_TYPE, body, 0.0)
    site.routes["/signed/bulb.p7s"] = (200, {"Content-Type": "application/pkcs7-signature"}, signature, 0.0)
    mud, sig = fetch_mud_and_signature(url, timeout_s=5, opener=https_opener(context, proxies={}))
    assert sig.body == signature
    verified = load_mud(mud.body, sig.body, source=url, url=url, trusted_signers=[signing_ca.cert], now=NOW)
    assert verified.signer == signer.cert
    assert verified.profile.expires_at(mud.fetched_at) == mud.fetched_at + timedelta(hours=48)
    site.routes["/sig-as-html.p7s"] = (200, {"Content-Type": "text/html"}, signature, 0.0)
    with pytest.raises(MudFetchError, match="unexpected Content-Type 'text/html'"):
        fetch_mud_signature(f"{base}/sig-as-html.p7s", timeout_s=5, opener=https_opener(context, proxies={}))
