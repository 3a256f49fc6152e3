"""FreeRADIUS value-pair tuples -> typed request data.

rlm_python3 hands us ``(name, value)`` string tuples (values printed into a 1024-byte buffer, so anything of
1023+ characters may be cut). Nothing here trusts the shape of its input: malformed pairs are counted, at most
``MAX_PAIRS`` are read (a longer list is refused as a whole, so a conflicting repeat cannot hide behind filler),
and missing, repeated-with-another-value or truncated certificate attributes raise ``RequestError``.
Names are parsed by ``policy.dn`` (strict: an ambiguous one-line DN is refused, never guessed).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from policy.dn import DnError, parse_dn
from policy.model import CertificateFacts, IssuerCertificate, NetworkContext
from policy.x509facts import MUD_URL_OID, parse_mud_url

TRUNCATION_LIMIT = 1023  # rlm_python3 prints each value into char[1024]
MAX_PAIRS = 1000
CERT = "TLS-Client-Cert-"
ISSUER_CERT = "TLS-Cert-"  # the certificate at depth 1: the one that signed the client's
MUD_ATTRIBUTE = CERT + MUD_URL_OID
_CERT_PREFIXES = (CERT, ISSUER_CERT)
_TIME = re.compile(r"^(\d{12}|\d{14})Z$")


class RequestError(ValueError):
    """The request's attributes cannot be turned into certificate facts."""


@dataclass(frozen=True)
class Pairs:
    """All values per attribute name (attributes may repeat), plus how many malformed pairs were dropped."""

    values: Mapping[str, tuple[str, ...]]
    dropped: int
    overflow: bool = False  # more than MAX_PAIRS pairs: not all were read

    def first(self, name: str) -> str | None:
        found = self.values.get(name)
        return found[0] if found else None

    def all(self, name: str) -> tuple[str, ...]:
        return self.values.get(name, ())


def _pairs_of(source: object) -> Iterable[object]:
    if isinstance(source, tuple | list):
        return source
    return ()


def request_pairs(p: object, section: str = "request", only: frozenset[str] | None = None) -> Pairs:
    """Extract one list from what rlm_python3 passed: a dict of lists (pass_all_vps_dict) or a bare tuple.
    ``only``: just these attributes (the others are neither kept nor counted as malformed)."""
    raw = p.get(section, ()) if isinstance(p, dict) else (p if section == "request" else ())
    items: Sequence[object] = raw if isinstance(raw, tuple | list) else ()
    values: dict[str, list[str]] = {}
    dropped = 0
    for pair in items[:MAX_PAIRS]:
        # what rlm_python3 passes: a 2-tuple of str (checked by exact type: the fast path of every request)
        if type(pair) is tuple and len(pair) == 2:
            name, value = pair
            if only is not None and name not in only:
                continue
            if type(name) is str and type(value) is str and name and "\x00" not in name:
                found = values.get(name)
                if found is None:
                    values[name] = [value]
                else:
                    found.append(value)
                continue
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            dropped += 1
            continue
        name, value = pair
        if only is not None and name not in only:
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(name, str) or not isinstance(value, str) or not name or "\x00" in name:
            dropped += 1
            continue
        values.setdefault(name, []).append(value)
    return Pairs({k: tuple(v) for k, v in values.items()}, dropped, len(items) > MAX_PAIRS)


def _single(pairs: Pairs, name: str) -> str | None:
    """The one value of a single-valued certificate attribute; conflicting repeats are refused, not guessed."""
    values = pairs.all(name)
    if len(set(values)) > 1:
        raise RequestError(f"attribute {name} appears {len(values)} times with different values")
    return values[0] if values else None


def _required(pairs: Pairs, name: str) -> str:
    value = _single(pairs, name)
    if value is None or not value.strip():
        raise RequestError(f"attribute {name} is missing (is this request from the check-eap-tls server?)")
    return _not_truncated(name, value)


def _not_truncated(name: str, value: str) -> str:
    if len(value) >= TRUNCATION_LIMIT:
        raise RequestError(f"attribute {name} is {len(value)} characters, cut by FreeRADIUS at {TRUNCATION_LIMIT}")
    return value


def _optional(pairs: Pairs, name: str) -> str | None:
    value = _single(pairs, name)
    return _not_truncated(name, value) if value is not None else None


def parse_asn1_time(value: str) -> datetime:
    """UTCTime 'YYMMDDHHMMSSZ' or GeneralizedTime 'YYYYMMDDHHMMSSZ' as FreeRADIUS exports them."""
    if not _TIME.match(value):
        raise RequestError(f"time {value[:40]!r} is neither UTCTime nor GeneralizedTime")
    digits = value[:-1]
    if len(digits) == 12:
        year = int(digits[:2])
        digits = ("20" if year < 50 else "19") + digits
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise RequestError(f"time {value!r} is not a valid date: {exc}") from exc


def normalise_serial(value: str) -> str:
    digits = value.strip().lower().replace(":", "")
    if not digits or any(ch not in "0123456789abcdef" for ch in digits):
        raise RequestError(f"certificate serial {value[:60]!r} is not hex")
    return digits.lstrip("0") or "0"


def _dn(pairs: Pairs, name: str, what: str) -> str:
    try:
        return parse_dn(_required(pairs, name), what).text
    except DnError as exc:
        raise RequestError(str(exc)) from exc


def issuer_certificate(pairs: Pairs) -> IssuerCertificate | None:
    """The depth-1 certificate FreeRADIUS exported as ``TLS-Cert-*`` (None when it sent none)."""
    if _single(pairs, ISSUER_CERT + "Subject") is None:
        return None
    expiration = _optional(pairs, ISSUER_CERT + "Expiration")
    return IssuerCertificate(
        subject=_dn(pairs, ISSUER_CERT + "Subject", "issuing CA subject"),
        issuer=_dn(pairs, ISSUER_CERT + "Issuer", "issuing CA issuer"),
        serial=normalise_serial(_required(pairs, ISSUER_CERT + "Serial")),
        not_after=parse_asn1_time(expiration) if expiration else None,
    )


def facts_from_pairs(pairs: Pairs) -> CertificateFacts:
    if pairs.overflow:
        raise RequestError(f"request has more than {MAX_PAIRS} attributes; refusing to read part of it")
    if pairs.dropped:
        raise RequestError(f"request has {pairs.dropped} malformed attribute pair(s)")
    subject_text = _required(pairs, CERT + "Subject")
    try:
        subject = parse_dn(subject_text, "certificate subject")
        device_serial = subject.single("serialNumber", "certificate subject")
    except DnError as exc:
        raise RequestError(str(exc)) from exc
    issuer = _dn(pairs, CERT + "Issuer", "certificate issuer")
    basic = _optional(pairs, CERT + "X509v3-Basic-Constraints")
    key_usage = _optional(pairs, CERT + "X509v3-Key-Usage")
    eku: tuple[str, ...] | None = None
    eku_values = pairs.all(CERT + "X509v3-Extended-Key-Usage-OID")
    if eku_values or pairs.first(CERT + "X509v3-Extended-Key-Usage") is not None:
        eku = tuple(o for v in eku_values for o in re.split(r"[,\s]+", _not_truncated("EKU", v)) if o)
    mud_url = mud_error = None
    mud_raw = _optional(pairs, MUD_ATTRIBUTE)
    if mud_raw is not None:
        try:
            if not mud_raw.startswith("0x"):
                raise ValueError("not an octets value")
            mud_url = parse_mud_url(bytes.fromhex(mud_raw[2:]))
        except ValueError as exc:
            mud_error = str(exc)
    not_before = _optional(pairs, CERT + "Valid-Since")
    not_after = _optional(pairs, CERT + "Expiration")
    return CertificateFacts(
        source="radius",
        subject=subject.text,
        issuer=issuer,
        cert_serial=normalise_serial(_required(pairs, CERT + "Serial")),
        device_serial=device_serial or None,
        common_name=subject.first("CN"),
        not_before=parse_asn1_time(not_before) if not_before else None,
        not_after=parse_asn1_time(not_after) if not_after else None,
        is_ca=basic is not None and "CA:TRUE" in basic.upper(),
        key_usage=tuple(s.strip() for s in key_usage.split(",") if s.strip()) if key_usage is not None else None,
        eku_oids=eku,
        subject_alt_name=_optional(pairs, CERT + "X509v3-Subject-Alternative-Name"),
        authority_key_id=_optional(pairs, CERT + "X509v3-Authority-Key-Identifier"),
        mud_url=mud_url,
        mud_url_error=mud_error,
        issuer_certificate=issuer_certificate(pairs),
    )


class FactsCache:
    """``facts_from_pairs`` once per distinct set of certificate attributes (a device re-authenticating presents
    the same ones): parsing the names is most of the hook's own work. The key is every ``TLS-Client-Cert-*`` and
    ``TLS-Cert-*`` value as received, plus the dropped/overflow counts, so any difference parses afresh; a refusal
    is cached too (its message). Nothing here depends on the time: validity is checked on every authentication."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[object, CertificateFacts | str] = OrderedDict()
        self.hits = 0

    @staticmethod
    def key(pairs: Pairs) -> object:
        return (pairs.dropped, pairs.overflow,
                tuple(item for item in pairs.values.items() if item[0].startswith(_CERT_PREFIXES)))

    def facts(self, pairs: Pairs) -> CertificateFacts:
        key = self.key(pairs)
        found = self._entries.get(key)
        if found is None:
            try:
                found = facts_from_pairs(pairs)
            except RequestError as exc:
                found = str(exc)
            self._entries[key] = found
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self.hits += 1
        if isinstance(found, str):
            raise RequestError(found)
        return found


def first_value(p: object, section: str, name: str) -> str | None:
    """``request_pairs(p, section).first(name)`` without building the whole list (post_auth's two checks)."""
    raw = p.get(section, ()) if isinstance(p, dict) else (p if section == "request" else ())
    for count, pair in enumerate(_pairs_of(raw)):
        if count >= MAX_PAIRS:
            return None
        if not (isinstance(pair, tuple | list) and len(pair) == 2) or pair[0] != name:
            continue
        value = pair[1]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            return value
    return None


CONTEXT_ATTRIBUTES = frozenset({"NAS-IP-Address", "NAS-IPv6-Address", "NAS-Identifier", "NAS-Port-Id", "NAS-Port",
                                "Calling-Station-Id", "User-Name"})


def network_context(pairs: Pairs) -> NetworkContext:
    def short(name: str) -> str | None:
        value = pairs.first(name)
        return value[:253] if value else None

    return NetworkContext(
        nas_ip=short("NAS-IP-Address") or short("NAS-IPv6-Address"),
        nas_identifier=short("NAS-Identifier"),
        nas_port=short("NAS-Port-Id") or short("NAS-Port"),
        calling_station_id=short("Calling-Station-Id"),
        user_name=short("User-Name"),
    )
