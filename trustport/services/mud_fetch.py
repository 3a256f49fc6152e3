"""Getting MUD files and their signatures: from a local directory, or over HTTPS out of band.

This is the I/O edge of ``policy.mud``: it returns bytes, and the caller verifies
(``policy.mud_signature.load_mud``). It opens sockets and reads the clock, so it lives in the app and never runs
on the RADIUS path: ``trustport mud fetch`` fills the local directory ahead of time, and
``trustport.services.mud_lookup`` reads only that. The local naming rules are ``policy.mud_signature.local_file_names``
and ``local_signature_name``.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from policy.mud import MAX_MUD_BYTES, MudError, MudFetchError, parse_mud
from policy.mud_signature import MAX_SIGNATURE_BYTES, local_file_names, local_signature_name, signature_url

MUD_CONTENT_TYPES = frozenset({"application/mud+json", "application/json"})
SIGNATURE_CONTENT_TYPES = frozenset({"application/pkcs7-signature", "application/pkcs7-mime",
                                     "application/octet-stream"})
DEFAULT_TIMEOUT_S = 10.0
_CHUNK = 16 * 1024


@dataclass(frozen=True)
class LocalMud:
    """A MUD file found in the local directory, with its signature when one sits beside it."""

    mud_path: Path
    mud: bytes
    signature_path: Path | None
    signature: bytes | None
    modified_at: datetime


def _read_capped(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise MudFetchError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise MudFetchError(f"{path}: file too large: more than {max_bytes} bytes")
    return data


class LocalMudDirectory:
    """MUD files an operator placed (or ``trustport mud fetch`` wrote) in one directory (see ``local_file_names``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def candidates(self, url: str) -> list[str]:
        """File names tried for ``url``, in order."""
        return list(local_file_names(url))

    def find(self, url: str) -> LocalMud | None:
        """The first candidate file that exists, read with the size caps; None when there is none."""
        for name in self.candidates(url):
            mud_path = self.path / name
            if not mud_path.is_file():
                continue
            signature_path = self.path / local_signature_name(name)
            has_signature = signature_path.is_file()
            return LocalMud(mud_path, _read_capped(mud_path, MAX_MUD_BYTES),
                            signature_path if has_signature else None,
                            _read_capped(signature_path, MAX_SIGNATURE_BYTES) if has_signature else None,
                            datetime.fromtimestamp(mud_path.stat().st_mtime, UTC))
        return None


class Opener(Protocol):
    """What ``fetch_mud`` needs from ``urllib.request.OpenerDirector``; tests may pass their own."""

    def open(self, fullurl: urllib.request.Request, data: None = None, timeout: float | None = ...) -> Any: ...


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme != "https":
            raise MudFetchError(f"{req.full_url}: redirected to a non-https URL {newurl[:120]!r}; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def https_opener(context: ssl.SSLContext | None = None, proxies: dict[str, str] | None = None
                 ) -> urllib.request.OpenerDirector:
    """An opener that verifies certificates (system CAs unless ``context``) and follows only https redirects.

    ``proxies=None`` uses the environment's proxy settings; ``{}`` disables proxies.
    """
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPSHandler(context=context or ssl.create_default_context()), _HttpsOnlyRedirects()]
    if proxies is not None:
        handlers.append(urllib.request.ProxyHandler(proxies))
    return urllib.request.build_opener(*handlers)


@dataclass(frozen=True)
class FetchedDocument:
    url: str
    body: bytes
    content_type: str
    fetched_at: datetime


def _fetch(url: str, accepted: frozenset[str], *, timeout_s: float, max_bytes: int, opener: Opener | None,
           accept_header: str) -> FetchedDocument:
    if urlsplit(url).scheme != "https" or not urlsplit(url).hostname:
        raise MudFetchError(f"{url[:120]}: only https:// URLs are fetched")
    # S310: the scheme is checked just above; redirects are limited to https by _HttpsOnlyRedirects.
    request = urllib.request.Request(url, headers={"Accept": accept_header, "User-Agent": "trustport-mud"})  # noqa: S310
    deadline = time.monotonic() + timeout_s
    try:
        response = (opener or https_opener()).open(request, timeout=timeout_s)
        try:
            content_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if content_type not in accepted:
                raise MudFetchError(f"{url}: unexpected Content-Type {content_type or '(none)'!r} "
                                    f"(expected {' or '.join(sorted(accepted))})")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise MudFetchError(f"{url}: too large: Content-Length {declared} > {max_bytes} bytes")
            body = b""
            read = getattr(response, "read1", response.read)  # read1: no waiting for a full chunk
            while chunk := read(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise MudFetchError(f"{url}: too large: more than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError
        finally:
            response.close()
    except urllib.error.HTTPError as exc:
        raise MudFetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise MudFetchError(f"{url}: timed out after {timeout_s:g} s") from exc
        raise MudFetchError(f"{url}: cannot fetch: {exc.reason}") from exc
    except TimeoutError as exc:
        raise MudFetchError(f"{url}: timed out after {timeout_s:g} s") from exc
    except (OSError, ValueError) as exc:
        raise MudFetchError(f"{url}: cannot fetch: {exc}") from exc
    return FetchedDocument(url, body, content_type, datetime.now(UTC))


def fetch_mud(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_bytes: int = MAX_MUD_BYTES,
              opener: Opener | None = None) -> FetchedDocument:
    """GET a MUD file over HTTPS with a size cap, an overall timeout and a Content-Type check (out of band)."""
    return _fetch(url, MUD_CONTENT_TYPES, timeout_s=timeout_s, max_bytes=max_bytes, opener=opener,
                  accept_header="application/mud+json, application/json;q=0.5")


def fetch_mud_signature(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_bytes: int = MAX_SIGNATURE_BYTES,
                        opener: Opener | None = None) -> FetchedDocument:
    """GET a detached ``.p7s`` signature over HTTPS, with the same limits."""
    return _fetch(url, SIGNATURE_CONTENT_TYPES, timeout_s=timeout_s, max_bytes=max_bytes, opener=opener,
                  accept_header="application/pkcs7-signature, application/octet-stream;q=0.5")


def fetch_mud_and_signature(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, opener: Opener | None = None
                            ) -> tuple[FetchedDocument, FetchedDocument]:
    """The MUD file and its signature (``mud-signature``, else ``.json`` -> ``.p7s``); verify with ``load_mud``.

    The file is parsed only to learn the signature's location; callers must still verify before use.
    """
    mud = fetch_mud(url, timeout_s=timeout_s, opener=opener)
    try:
        profile = parse_mud(mud.body, url, expected_url=url)
    except MudError as exc:
        raise MudFetchError(str(exc)) from exc
    return mud, fetch_mud_signature(signature_url(profile), timeout_s=timeout_s, opener=opener)
