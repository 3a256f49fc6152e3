"""The RADIUS-path MUD lookup: local files only, verified, cached by file stat, and never raising."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from policy.errors import ConfigError
from policy.mud import MAX_MUD_BYTES, MudClass
from policy.mud_signature import local_file_names, local_signature_name
from tests.unit.test_mud import encode, lightbulb, sign
from trustport.services import mud_lookup
from trustport.services.mud_lookup import MudLookup, MudLookupResult, MudLookupStatus, load_signers
from trustport_lab.pki import Issued, issue_device, make_ca

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
URL = "https://lighting.example.com/lightbulb2000.json"
CANONICAL = local_file_names(URL)[0]
MUD_BYTES = encode(lightbulb())


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture(scope="module")
def signing() -> dict[str, Issued]:
    ca = make_ca("Example Lighting MUD CA", "Example Lighting", now=NOW)
    other_ca = make_ca("Mallory MUD CA", "Mallory", now=NOW)
    return {
        "ca": ca,
        "signer": issue_device(ca, cn="mud-signer.lighting.example.com", serial_number=None, now=NOW, eku=None),
        "second": issue_device(ca, cn="mud-signer.other.example", serial_number=None, now=NOW, eku=None),
        "untrusted": issue_device(other_ca, cn="mud-signer.lighting.example.com", serial_number=None, now=NOW,
                                  eku=None),
        "short": issue_device(ca, cn="short-lived-signer", serial_number=None, now=NOW, eku=None,
                              not_after=NOW + timedelta(hours=1)),
    }


def place(directory: Path, mud: bytes, signature: bytes | None, *, name: str = CANONICAL,
          written: datetime = NOW - timedelta(hours=1)) -> Path:
    """Write a MUD file (and its .p7s) as a fetch would, with the file time set to ``written``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(mud)
    stamp = written.timestamp()
    os.utime(path, (stamp, stamp))
    if signature is not None:
        (directory / local_signature_name(name)).write_bytes(signature)
    return path


def lookup(directory: Path, signing: dict[str, Issued], clock: Clock | None = None, *,
           require_signature: bool = True) -> MudLookup:
    return MudLookup(directory, (signing["ca"].cert,), require_signature, 60.0, clock or Clock())


def test_valid_signed_profile(tmp_path: Path, signing: dict[str, Issued]) -> None:
    path = place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]))
    result = lookup(tmp_path, signing).hint(URL, NOW)
    assert result.status is MudLookupStatus.OK and result.ok
    assert result.hint is not None
    assert result.hint.classification is MudClass.INTERNET_ONLY
    assert result.hint.filter_id == "mud-76100-v6fr"
    assert result.signer == signing["signer"].cert
    assert result.path == path
    assert result.expires_at == NOW - timedelta(hours=1) + timedelta(hours=48)
    assert result.detail == f"{path}: internet-only, signed by CN=mud-signer.lighting.example.com,O=Acme Devices,C=DE"


def test_readable_last_segment_name_is_found(tmp_path: Path, signing: dict[str, Issued]) -> None:
    place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]), name="lightbulb2000.json")
    result = lookup(tmp_path, signing).hint(URL, NOW)
    assert result.ok and result.path == tmp_path / "lightbulb2000.json"


Setup = Callable[[Path, dict[str, Issued]], Any]
OTHER_URL_BYTES = MUD_BYTES.replace(URL.encode(), b"https://other.example/lightbulb2000.json")

PROBLEMS: list[tuple[str, Setup, MudLookupStatus, str]] = [
    ("missing", lambda d, s: d.mkdir(exist_ok=True), MudLookupStatus.MISSING,
     f"{URL}: no file for it in"),
    ("no directory", lambda d, s: None, MudLookupStatus.MISSING, "does not exist; run 'trustport mud fetch"),
    ("unsigned when required", lambda d, s: place(d, MUD_BYTES, None), MudLookupStatus.UNSIGNED,
     f"unsigned: no {local_signature_name(CANONICAL)} beside it, and MUD signatures are required"),
    ("tampered", lambda d, s: place(d, MUD_BYTES.replace(b"test.example.com", b"evil.example.com"),
                                    sign(MUD_BYTES, s["signer"])),
     MudLookupStatus.BAD_SIGNATURE, "does not match its signature (message digest differs)"),
    ("untrusted signer", lambda d, s: place(d, MUD_BYTES, sign(MUD_BYTES, s["untrusted"])),
     MudLookupStatus.BAD_SIGNATURE, "does not chain to a trusted MUD signer"),
    ("garbage signature", lambda d, s: place(d, MUD_BYTES, b"not a p7s"), MudLookupStatus.BAD_SIGNATURE,
     "signature is not a DER CMS SignedData"),
    ("parse error", lambda d, s: place(d, b"{not json", sign(b"{not json", s["signer"])), MudLookupStatus.INVALID,
     "(document): invalid JSON"),
    ("another manufacturer's file with the same name", lambda d, s: place(
        d, OTHER_URL_BYTES, sign(OTHER_URL_BYTES, s["signer"]), name="lightbulb2000.json"),
     MudLookupStatus.INVALID, "is not the URL this file was retrieved for"),
    ("oversize", lambda d, s: place(d, b" " * (MAX_MUD_BYTES + 1), None), MudLookupStatus.INVALID,
     "file too large: more than 262144 bytes"),
    ("expired cache-validity", lambda d, s: place(d, MUD_BYTES, sign(MUD_BYTES, s["signer"]),
                                                  written=NOW - timedelta(hours=49)),
     MudLookupStatus.EXPIRED, "expired at 2026-11-27T11:00:00+00:00 (file time + cache-validity); refresh it with "
                              f"'trustport mud fetch {URL}'"),
]


@pytest.mark.parametrize(("setup", "status", "detail"), [(s, st, d) for _, s, st, d in PROBLEMS],
                         ids=[n for n, _, _, _ in PROBLEMS])
def test_problems_give_no_hint_and_a_specific_detail(tmp_path: Path, signing: dict[str, Issued], setup: Setup,
                                                     status: MudLookupStatus, detail: str) -> None:
    directory = tmp_path / "mud"
    setup(directory, signing)
    result = lookup(directory, signing).hint(URL, NOW)
    assert result.hint is None and not result.ok
    assert result.status is status
    assert detail in result.detail


def test_unsigned_file_is_used_when_signatures_are_not_required(tmp_path: Path, signing: dict[str, Issued]) -> None:
    place(tmp_path, MUD_BYTES, None)
    result = lookup(tmp_path, signing, require_signature=False).hint(URL, NOW)
    assert result.ok and result.signer is None
    assert result.detail.endswith("internet-only, unsigned (signatures not required)")


def test_expected_signer_from_the_device_certificate(tmp_path: Path, signing: dict[str, Issued]) -> None:
    place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]))
    finder = lookup(tmp_path, signing)
    assert finder.hint(URL, NOW, expected_signer=signing["signer"].cert.subject).ok
    refused = finder.hint(URL, NOW, expected_signer=signing["second"].cert.subject)
    assert refused.status is MudLookupStatus.BAD_SIGNATURE
    assert "names MUD signer CN=mud-signer.other.example" in refused.detail
    assert "but it is signed by CN=mud-signer.lighting.example.com" in refused.detail
    assert finder.stats.loads == 1  # both answered from one load


def test_cache_hit_reads_no_file(tmp_path: Path, signing: dict[str, Issued]) -> None:
    path = place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]))
    clock = Clock()
    finder = lookup(tmp_path, signing, clock)
    first = finder.hint(URL, NOW)
    path.unlink()  # inside refresh_seconds the files are not even statted
    (tmp_path / local_signature_name(CANONICAL)).unlink()
    for _ in range(3):
        clock.value += 10
        assert finder.hint(URL, NOW) == first
    assert (finder.stats.lookups, finder.stats.hits, finder.stats.loads, finder.stats.stat_checks) == (4, 3, 1, 1)
    clock.value += 60
    assert finder.hint(URL, NOW).status is MudLookupStatus.MISSING


def test_unchanged_files_are_statted_not_reread(tmp_path: Path, signing: dict[str, Issued]) -> None:
    place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]))
    clock = Clock()
    finder = lookup(tmp_path, signing, clock)
    finder.hint(URL, NOW)
    clock.value += 61
    assert finder.hint(URL, NOW).ok
    assert (finder.stats.loads, finder.stats.stat_checks, finder.stats.hits) == (1, 2, 1)


def test_changed_file_is_reread_after_refresh_seconds(tmp_path: Path, signing: dict[str, Issued]) -> None:
    place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]))
    clock = Clock()
    finder = lookup(tmp_path, signing, clock)
    assert finder.hint(URL, NOW).status is MudLookupStatus.OK
    doc = lightbulb()
    for acl in doc["ietf-access-control-list:acls"]["acl"]:
        acl["aces"]["ace"] = [{"name": "lan", "matches": {"ietf-mud:mud": {"local-networks": [None]}},
                               "actions": {"forwarding": "accept"}}]
    local = encode(doc)
    place(tmp_path, local, sign(local, signing["signer"]), written=NOW - timedelta(minutes=5))
    clock.value += 30
    stale = finder.hint(URL, NOW)
    assert stale.hint is not None and stale.hint.classification is MudClass.INTERNET_ONLY  # not re-statted yet
    clock.value += 31
    fresh = finder.hint(URL, NOW)
    assert fresh.hint is not None and fresh.hint.classification is MudClass.LOCAL_ONLY
    assert fresh.expires_at == NOW - timedelta(minutes=5) + timedelta(hours=48)
    assert finder.stats.loads == 2


def test_failures_are_retried_at_the_next_stat_even_if_the_file_did_not_change(tmp_path: Path,
                                                                               signing: dict[str, Issued]) -> None:
    place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]))
    clock = Clock()
    finder = lookup(tmp_path, signing, clock)
    early = finder.hint(URL, NOW - timedelta(hours=2))  # the signer is not valid yet (clock skew)
    assert early.status is MudLookupStatus.BAD_SIGNATURE and "is not valid before" in early.detail
    clock.value += 61
    assert finder.hint(URL, NOW).ok
    assert finder.stats.loads == 2


def test_signer_expiring_while_cached(tmp_path: Path, signing: dict[str, Issued]) -> None:
    place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["short"]))
    finder = lookup(tmp_path, signing)
    assert finder.hint(URL, NOW).ok
    later = finder.hint(URL, NOW + timedelta(hours=2))
    assert later.status is MudLookupStatus.BAD_SIGNATURE
    assert "signer certificate CN=short-lived-signer,O=Acme Devices,C=DE is valid only" in later.detail
    assert finder.stats.loads == 1


def test_never_raises(tmp_path: Path, signing: dict[str, Issued], monkeypatch: pytest.MonkeyPatch,
                      caplog: pytest.LogCaptureFixture) -> None:
    place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(mud_lookup, "load_mud", broken)
    with caplog.at_level(logging.ERROR, logger="trustport.services.mud_lookup"):
        result = lookup(tmp_path, signing).hint(URL, NOW)
    assert result == MudLookupResult(None, f"{URL}: internal error in the MUD lookup (RuntimeError: boom); see the log",
                                     MudLookupStatus.ERROR)
    assert "Traceback" in caplog.text


def test_a_directory_where_the_file_should_be_counts_as_missing(tmp_path: Path, signing: dict[str, Issued]) -> None:
    (tmp_path / CANONICAL).mkdir()
    assert lookup(tmp_path, signing).hint(URL, NOW).status is MudLookupStatus.MISSING


def test_cache_is_bounded(tmp_path: Path, signing: dict[str, Issued], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mud_lookup, "MAX_CACHED_URLS", 2)
    finder = lookup(tmp_path, signing)
    for i in range(5):
        finder.hint(f"https://device{i}.example/mud.json", NOW)
    assert len(finder._cache) == 2


def test_cache_hits_are_fast(tmp_path: Path, signing: dict[str, Issued]) -> None:
    place(tmp_path, MUD_BYTES, sign(MUD_BYTES, signing["signer"]))
    finder = MudLookup(tmp_path, (signing["ca"].cert,), True, 3600.0, time.monotonic)
    finder.hint(URL, NOW)
    started = time.perf_counter()
    for _ in range(10_000):
        finder.hint(URL, NOW)
    assert time.perf_counter() - started < 1.0  # ~microseconds each; generous for a loaded CI machine
    assert finder.stats.loads == 1


def test_load_signers(tmp_path: Path, signing: dict[str, Issued]) -> None:
    good = tmp_path / "signers.pem"
    good.write_bytes(signing["ca"].cert_pem() + signing["signer"].cert_pem())
    assert load_signers([good]) == (signing["ca"].cert, signing["signer"].cert)
    with pytest.raises(ConfigError, match=r"MUD signer file .*missing\.pem: cannot read"):
        load_signers([tmp_path / "missing.pem"])
    bad = tmp_path / "bad.pem"
    bad.write_text(json.dumps({"not": "a certificate"}))
    with pytest.raises(ConfigError, match=r"MUD signer file .*bad\.pem: "):
        load_signers([bad])
