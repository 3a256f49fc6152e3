"""MUD profiles on the RADIUS path: read from the local directory only, verified, parsed and cached per URL.

Nothing here fetches: ``trustport mud fetch`` fills the directory out of band. A lookup never raises; any problem
gives ``hint=None`` with a status and a detail that names the file and what to do, and the policy rules then treat
the device as having no MUD. A cache hit reads no file and, inside ``refresh_seconds``, does not even stat one;
after that the files are statted once and re-read only when their (mtime, size, inode) changed. Failures are
retried at each re-stat, because some depend on the time (a signer not valid yet) rather than on the bytes.
"""

from __future__ import annotations

import logging
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509

from policy.errors import CertificateError, ConfigError
from policy.mud import MAX_MUD_BYTES, MudError, MudHint, MudSignatureError, policy_hint
from policy.mud_signature import MAX_SIGNATURE_BYTES, load_mud, local_file_names, local_signature_name
from policy.x509facts import load_pem_certificates

log = logging.getLogger(__name__)
MAX_CACHED_URLS = 4096  # URLs come from device certificates; bound the memory a flood of them can take


class MudLookupStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"  # no file for the URL in the directory (or no directory)
    UNREADABLE = "unreadable"  # the file or its signature exists but cannot be read
    UNSIGNED = "unsigned"  # signatures are required and none sits beside the file
    BAD_SIGNATURE = "bad-signature"  # forged, tampered, untrusted or expired signer, or not the device's signer
    EXPIRED = "expired"  # older than its cache-validity: fetch it again
    INVALID = "invalid"  # not a valid MUD file, too large, or its mud-url is another URL
    ERROR = "error"  # unexpected failure (a bug): logged with its traceback


@dataclass(frozen=True)
class MudLookupResult:
    hint: MudHint | None  # None whenever status is not OK
    detail: str
    status: MudLookupStatus
    path: Path | None = None  # the MUD file used, when one was found
    signer: x509.Certificate | None = None  # None when unsigned files are allowed and this one is
    expires_at: datetime | None = None  # file mtime + cache-validity

    @property
    def ok(self) -> bool:
        return self.hint is not None


@dataclass
class MudLookupStats:
    lookups: int = 0
    hits: int = 0  # answered from the cache without reading a file
    loads: int = 0  # files read, verified and parsed
    stat_checks: int = 0  # directory checks (at most one per URL per refresh_seconds)


_FileKey = tuple[str, int, int, int]  # name, mtime_ns, size, inode
_FilesKey = tuple[_FileKey, _FileKey | None] | None  # None: no file for the URL


@dataclass
class _Entry:
    key: _FilesKey
    checked_at: float
    result: MudLookupResult


@dataclass(frozen=True)
class _Found:
    key: _FilesKey
    mud_path: Path | None
    signature_path: Path | None
    error: str | None = None


def load_signers(files: Iterable[Path]) -> tuple[x509.Certificate, ...]:
    """Trusted MUD signers (or their CAs) from PEM files; a ``ConfigError`` names the file that failed."""
    certs: list[x509.Certificate] = []
    for path in files:
        try:
            certs.extend(load_pem_certificates(path.read_bytes(), f"MUD signer file {path}"))
        except OSError as exc:
            raise ConfigError(f"MUD signer file {path}: cannot read: {exc.strerror or exc}") from exc
        except CertificateError as exc:
            raise ConfigError(str(exc)) from exc
    return tuple(certs)


def _regular(path: Path) -> _FileKey | None:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (path.name, st.st_mtime_ns, st.st_size, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _read_capped(path: Path, max_bytes: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MudError(f"{path}: file too large: more than {max_bytes} bytes")
    return data


class MudLookup:
    """The MUD hint for a device's MUD URL, from ``directory``; one instance per process, safe across threads."""

    def __init__(self, directory: Path, signers: tuple[x509.Certificate, ...], require_signature: bool,
                 refresh_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.signers = signers
        self.require_signature = require_signature
        self.refresh_seconds = refresh_seconds
        self.stats = MudLookupStats()
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def hint(self, url: str, now: datetime, *, expected_signer: x509.Name | None = None) -> MudLookupResult:
        """What the profile for ``url`` implies at ``now``; never raises.

        ``expected_signer`` is the device certificate's id-pe-mudsigner Name (``mud_signer_name``): when given, the
        file must be signed by exactly that subject.
        """
        try:
            return self._hint(url, now, expected_signer)
        except Exception as exc:  # MUD must never break authentication: no MUD is a defined outcome
            log.exception("MUD lookup for %s failed", url)
            return MudLookupResult(None, f"{url}: internal error in the MUD lookup ({type(exc).__name__}: {exc}); "
                                         "see the log", MudLookupStatus.ERROR)

    def _hint(self, url: str, now: datetime, expected_signer: x509.Name | None) -> MudLookupResult:
        self.stats.lookups += 1
        tick = self._clock()
        entry = self._cache.get(url)
        if entry is not None and tick - entry.checked_at < self.refresh_seconds:
            self.stats.hits += 1
        else:
            self.stats.stat_checks += 1
            try:
                found = self._find(url)
            except OSError as exc:  # e.g. the directory is not searchable by radiusd's user
                found = _Found(None, None, None, f"{exc.filename or self.directory}: cannot look up {url}: "
                                                 f"{exc.strerror or exc}")
            if entry is not None and entry.key == found.key and entry.result.ok:
                entry.checked_at = tick
                self.stats.hits += 1
            else:
                entry = _Entry(found.key, tick, self._load(url, found, now))
                self._store(url, entry)
        return self._judge(entry.result, url, now, expected_signer)

    def _store(self, url: str, entry: _Entry) -> None:
        with self._lock:
            if url not in self._cache and len(self._cache) >= MAX_CACHED_URLS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[url] = entry

    def _find(self, url: str) -> _Found:
        for name in local_file_names(url):
            mud_key = _regular(self.directory / name)
            if mud_key is not None:
                signature_path = self.directory / local_signature_name(name)
                signature_key = _regular(signature_path)
                return _Found((mud_key, signature_key), self.directory / name,
                              signature_path if signature_key is not None else None)
        return _Found(None, None, None)

    def _load(self, url: str, found: _Found, now: datetime) -> MudLookupResult:
        if found.error is not None:
            return MudLookupResult(None, found.error, MudLookupStatus.UNREADABLE)
        if found.mud_path is None:
            where = (f"MUD directory {self.directory} does not exist" if not self.directory.is_dir()
                     else f"no file for it in {self.directory} (looked for {', '.join(local_file_names(url))})")
            return MudLookupResult(None, f"{url}: {where}; run 'trustport mud fetch {url}' or copy the file and its "
                                         ".p7s there", MudLookupStatus.MISSING)
        path = found.mud_path
        self.stats.loads += 1
        try:
            mud = _read_capped(path, MAX_MUD_BYTES)
            signature = (_read_capped(found.signature_path, MAX_SIGNATURE_BYTES)
                         if found.signature_path is not None else None)
        except OSError as exc:
            return MudLookupResult(None, f"{exc.filename or path}: cannot read: {exc.strerror or exc}",
                                   MudLookupStatus.UNREADABLE, path)
        except MudError as exc:
            return MudLookupResult(None, str(exc), MudLookupStatus.INVALID, path)
        if signature is None and self.require_signature:
            return MudLookupResult(None, f"{path}: unsigned: no {local_signature_name(path.name)} beside it, and MUD "
                                         "signatures are required (mud.require_signature)", MudLookupStatus.UNSIGNED,
                                   path)
        try:
            verified = load_mud(mud, signature, source=str(path), url=url, trusted_signers=list(self.signers),
                                now=now, require_signature=self.require_signature)
        except MudSignatureError as exc:
            return MudLookupResult(None, str(exc), MudLookupStatus.BAD_SIGNATURE, path)
        except MudError as exc:
            return MudLookupResult(None, str(exc), MudLookupStatus.INVALID, path)
        assert found.key is not None
        expires_at = verified.profile.expires_at(datetime.fromtimestamp(found.key[0][1] / 1e9, UTC))
        hint = policy_hint(verified.profile)
        who = (f"signed by {verified.signer.subject.rfc4514_string()}" if verified.signer is not None
               else "unsigned (signatures not required)")
        return MudLookupResult(hint, f"{path}: {hint.classification.value}, {who}", MudLookupStatus.OK, path,
                               verified.signer, expires_at)

    def _judge(self, result: MudLookupResult, url: str, now: datetime,
               expected_signer: x509.Name | None) -> MudLookupResult:
        """The time- and device-dependent checks, redone on every lookup because they cost nothing."""
        if not result.ok:
            return result
        signer, path = result.signer, result.path
        if result.expires_at is not None and now > result.expires_at:
            return MudLookupResult(None, f"{path}: expired at {result.expires_at.isoformat()} (file time + "
                                         f"cache-validity); refresh it with 'trustport mud fetch {url}'",
                                   MudLookupStatus.EXPIRED, path, signer, result.expires_at)
        if signer is not None and not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
            return MudLookupResult(None, f"{path}: signer certificate {signer.subject.rfc4514_string()} is valid only "
                                         f"{signer.not_valid_before_utc.isoformat()} to "
                                         f"{signer.not_valid_after_utc.isoformat()}",
                                   MudLookupStatus.BAD_SIGNATURE, path, signer, result.expires_at)
        if expected_signer is not None and (signer is None or signer.subject != expected_signer):
            actual = "the file is unsigned" if signer is None else f"it is signed by {signer.subject.rfc4514_string()}"
            return MudLookupResult(None, f"{path}: the device certificate names MUD signer "
                                         f"{expected_signer.rfc4514_string()} (id-pe-mudsigner), but {actual}",
                                   MudLookupStatus.BAD_SIGNATURE, path, signer, result.expires_at)
        return result
