"""The rlm_python3 entry points' logic, independent of the ``radiusd`` module (injected) so it can be tested.

Rules (see docs/freeradius.md): the decision is taken once, in ``check_eap_tls``; any exception there becomes a
reject (never fail open); ``post_auth`` never authorizes, and in ``Post-Auth-Type REJECT`` it treats the
certificate attributes as unverified and only logs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from policy.errors import StoreError
from policy.model import Decision, DecisionLogEntry, NetworkContext, Outcome, RadiusServerRecord
from policy.text import safe_text
from radius_hooks.attributes import (
    CONTEXT_ATTRIBUTES,
    FactsCache,
    Pairs,
    RequestError,
    first_value,
    network_context,
    normalise_serial,
    request_pairs,
)
from trustport.app import build_authorizer
from trustport.observability.hook_counters import HookCounters
from trustport.services.auth_path import HookRuntime
from trustport.services.authorize import Authorizer, device_label
from trustport.settings.hook import HookSettings
from trustport.store.sessions import ACCT_KINDS

ReplyPairs = tuple[tuple[str, str, str], ...]
DEDUP_SECONDS = 30.0
RELOAD_CHECK_SECONDS = 1.0  # how often the auth path stats the YAML config (and policy file) for a change
TOUCH_SECONDS = 60.0  # how often radius_servers.last_auth_at is written (never on every authentication)

# what post_auth reads of an accept's request (the session it opens): the rest of the list is skipped
SESSION_ATTRIBUTES = CONTEXT_ATTRIBUTES | {"TLS-Client-Cert-Serial", "Acct-Session-Id"}

_Stamp = tuple[tuple[str, int, int, int] | None, ...]


def _stamp(paths: tuple[Path, ...]) -> _Stamp:
    """(path, inode, size, mtime) of each watched file; None for one that cannot be read."""
    out: list[tuple[str, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class RadiusdModule(Protocol):
    RLM_MODULE_REJECT: int
    RLM_MODULE_OK: int
    RLM_MODULE_UPDATED: int
    RLM_MODULE_NOOP: int
    RLM_MODULE_FAIL: int
    L_INFO: int
    L_ERR: int
    L_AUTH: int
    L_WARN: int

    def radlog(self, level: int, message: str) -> None: ...


def vlan_reply(decision: Decision) -> ReplyPairs:
    """RFC 3580 VLAN attributes for an accept or quarantine."""
    if decision.vlan is None:
        return ()
    pairs: ReplyPairs = (
        ("Tunnel-Type", ":=", "VLAN"),
        ("Tunnel-Medium-Type", ":=", "IEEE-802"),
        ("Tunnel-Private-Group-Id", ":=", str(decision.vlan)),
    )
    if decision.filter_id:
        pairs += (("Filter-Id", ":=", decision.filter_id),)
    return pairs


def _serial_of(pairs: Pairs) -> str:
    """The certificate serial as check_eap_tls keyed it ('' when absent or not hex)."""
    try:
        return normalise_serial(pairs.first("TLS-Client-Cert-Serial") or "")
    except RequestError:
        return ""


# What a bare TLS alert means for a client certificate under the rendered tls-config (sigalgs_list, groups).
_ALERT_HINTS = (
    ("handshake failure", "the client could not sign with an accepted algorithm (a DSA key, or SHA-1/SHA-224 only)"),
    ("illegal parameter", "the client's EC key is on a curve other than P-256/P-384/P-521"),
)


def _failure_summary(messages: tuple[str, ...]) -> list[str]:
    """The few Module-Failure-Messages that say why (OpenSSL's verdict first), not the whole cascade."""
    telling = [m for m in messages if "OpenSSL says" in m or "Alert" in m] or list(messages)
    summary = [m[:300] for m in telling[:3]] or ["TLS handshake or EAP failed"]
    if not any("OpenSSL says" in m for m in summary):
        summary += [hint for alert, hint in _ALERT_HINTS if any(alert in m for m in summary)]
    return summary


class RadlogHandler(logging.Handler):
    """Python logging inside radiusd (trust material, MUD lookup, ...) goes to radiusd's log through ``Hook.log``
    (escaped, one line), instead of raw to radiusd's stderr."""

    def __init__(self, hook: Hook) -> None:
        super().__init__(logging.INFO)
        self.hook = hook

    def emit(self, record: logging.LogRecord) -> None:
        radiusd = self.hook.radiusd
        level = (radiusd.L_ERR if record.levelno >= logging.ERROR
                 else radiusd.L_WARN if record.levelno >= logging.WARNING else radiusd.L_INFO)
        with contextlib.suppress(Exception):
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            self.hook.log(level, f"{record.name}: {text}")


class Hook:
    def __init__(self, radiusd: RadiusdModule, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.radiusd = radiusd
        self.clock = clock
        self.authorizer: Authorizer | None = None
        self.runtime: HookRuntime | None = None  # the registry, its cache and the journal this hook uses
        self._facts = FactsCache()
        self.startup_error: str | None = None
        self._decided: dict[tuple[str, str], float] = {}  # (cert serial, MAC) -> monotonic time of our reject
        # (cert serial, MAC) -> (monotonic time, device id, decision, registry generation it was decided on) of our
        # accept, for post_auth's session record
        self._accepted: dict[tuple[str, str], tuple[float, int | None, Decision, int]] = {}
        self.monotonic: Callable[[], float] = time.monotonic
        self._settings_path: Path | None = None
        self._config_file: Path | None = None  # the YAML the policy comes from (hook.json's config_file)
        self._watched: tuple[Path, ...] = ()
        self._stamp: _Stamp = ()
        self._next_check = 0.0
        self._failed_stamp: _Stamp | None = None  # a broken edit already reported (logged once)
        self._next_touch = 0.0
        self._reload_lock = threading.Lock()
        self.loaded_at: datetime | None = None
        self.counters: HookCounters | None = None  # None: metrics off (settings.metrics_dir None)

    def log(self, level: int, message: str) -> None:
        """One radiusd log line; serials, subjects, MACs and User-Names in ``message`` are shown escaped."""
        with contextlib.suppress(Exception):  # logging must never break authentication
            self.radiusd.radlog(level, "trustport: " + safe_text(message, limit=2000))

    def instantiate(self, config: Any) -> int:
        """Load settings, anchors, CRLs and open the registry. Returns 0, or -1 to stop radiusd from starting."""
        for name in ("policy", "radius_hooks", "trustport"):  # one hook per radiusd: the latest gets them
            logger = logging.getLogger(name)
            for old in [h for h in logger.handlers if isinstance(h, RadlogHandler)]:
                logger.removeHandler(old)
            logger.addHandler(RadlogHandler(self))
        try:
            path = config.get("settings") if isinstance(config, dict) else None
            if not path:
                raise ValueError("python3 module config lacks 'settings = \"/path/hook.json\"'")
            settings = HookSettings.load(Path(path))
            self._settings_path = Path(path).resolve()
            self._config_file = settings.config_file
            self.runtime = self._new_runtime(settings)
            self.authorizer = build_authorizer(settings, runtime=self.runtime)
            self._configure_metrics(settings)
            for message in self.authorizer.trust.errors:
                self.log(self.radiusd.L_WARN, message)
            self.log(self.radiusd.L_INFO, f"loaded {len(self.authorizer.trust.anchors)} trust anchor CA(s), "
                                          f"{len(self.authorizer.trust.crls)} CRL(s)")
            self._log_registry_health(self.authorizer)
            self.loaded_at = self.clock()
            if self._config_file is None:
                self.log(self.radiusd.L_WARN, f"{path} does not name the trustport config file: the policy is the "
                                              "one rendered into it; re-render to have policy edits picked up")
            else:
                self._watched = (self._config_file,)
                self._reload()  # the YAML on disk is the policy, whatever was rendered into hook.json
            self.log(self.radiusd.L_INFO, f"policy revision {self.authorizer.policy_revision}")
            self._record_server()
            return 0
        except Exception as exc:
            self.startup_error = f"{type(exc).__name__}: {exc}"
            self.log(self.radiusd.L_ERR, f"cannot start: {self.startup_error}")
            return -1

    def _new_runtime(self, settings: HookSettings) -> HookRuntime:
        runtime = HookRuntime(settings, server_id=self.server_id(),
                              report=lambda message: self.log(self.radiusd.L_WARN, message))
        runtime.start()
        options = settings.auth_path
        self.log(self.radiusd.L_INFO, "registry reads: " + (
            f"cached (feed read every {options.refresh_seconds:g} s, lease {options.lease_seconds:g} s)"
            if options.cache else "from the registry on every authentication") + "; decisions and sessions: " + (
            f"journaled in {options.journal_dir}" if options.journal_dir else "written before answering"))
        return runtime

    def _configure_metrics(self, settings: HookSettings) -> None:
        """Counters on (kept across a reload that moves their directory) or off; never stops the hook."""
        try:
            old = self.counters
            if settings.metrics_dir is None:
                self.counters = None
                return
            if old is not None and old.directory == settings.metrics_dir \
                    and old.flush_seconds == settings.metrics_flush_seconds:
                return
            counters = HookCounters(settings.metrics_dir, settings.metrics_flush_seconds, self.server_id(),
                                    report=lambda message: self.log(self.radiusd.L_WARN, message))
            if old is not None:  # same process: the counts go on in the new file
                counters.started_at, counters.authentications, counters.latency = \
                    old.started_at, old.authentications, old.latency
                counters.registry_errors, counters.failed_closed = old.registry_errors, old.failed_closed
            self.counters = counters
            counters.flush()  # the process is visible at once (and an unwritable directory is reported at start)
        except Exception as exc:
            self.log(self.radiusd.L_WARN, f"metrics off: {type(exc).__name__}: {exc}")

    def _count(self, outcome: str, segment: str | None = None, *, closed: bool = False,
               registry: bool = False) -> None:
        """One authentication's outcome (and why it failed closed) in the metrics counters."""
        counters = self.counters
        if counters is None:
            return
        with contextlib.suppress(Exception):  # metrics never affect the authentication
            if outcome:
                counters.authentication(outcome, segment)
            if closed:
                counters.failed_closed += 1
            if registry:
                counters.registry_errors += 1

    def _log_registry_health(self, authorizer: Authorizer) -> None:
        """Say at start whether the registry is usable. A damaged or missing one does not stop radiusd: the
        store refuses it, so every authentication is rejected until it is healthy again (no restart needed);
        the hook never creates one (that is ``trustport db init``)."""
        ping = getattr(authorizer.store, "ping", None)
        if not callable(ping):
            return
        try:
            ping()
        except Exception as exc:
            self.log(self.radiusd.L_ERR, f"registry unusable, every authentication will be rejected until it is "
                                         f"fixed: {type(exc).__name__}: {exc}")
        else:
            self.log(self.radiusd.L_INFO, f"registry {getattr(authorizer.store, 'display_url', '?')} is healthy")

    # -- one policy at run time --------------------------------------------------------------------------------

    def server_id(self) -> str:
        return f"{socket.gethostname()}:{self._settings_path or '?'}"

    def _record_server(self) -> None:
        """Say in the registry which policy revision this radiusd holds (at start and on reload; best effort)."""
        authorizer = self.authorizer
        record = getattr(authorizer.store, "record_radius_server", None) if authorizer is not None else None
        if authorizer is None or not callable(record) or self.loaded_at is None:
            return
        try:
            record(RadiusServerRecord(self.server_id(), os.getpid(), authorizer.policy_revision, self.loaded_at,
                                      settings_file=str(self._settings_path) if self._settings_path else None,
                                      config_file=str(self._config_file) if self._config_file else None))
        except Exception as exc:
            self.log(self.radiusd.L_WARN, f"cannot record this server's policy revision in the registry "
                                          f"('trustport radius status' will not show it): {type(exc).__name__}: {exc}")

    def _touch_server(self) -> None:
        now_m = self.monotonic()
        if now_m < self._next_touch or self.authorizer is None:
            return
        self._next_touch = now_m + TOUCH_SECONDS
        touch = getattr(self.authorizer.store, "touch_radius_server", None)
        if callable(touch):
            with contextlib.suppress(Exception):  # bookkeeping: never affects the authentication
                touch(self.server_id(), self.clock())

    def check_policy(self) -> None:
        """At most once per second: stat the YAML config (and its policy_file); reload when either changed. Only
        one thread checks; the others go on with the policy they have."""
        if self._config_file is None or self.monotonic() < self._next_check:
            return
        if not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._next_check = self.monotonic() + RELOAD_CHECK_SECONDS
            if _stamp(self._watched) != self._stamp:
                self._reload()
        finally:
            self._reload_lock.release()

    def _reload(self) -> None:
        """Re-read the policy through the loader ``trustport decide`` and the worker use. A config that does not
        load or validate keeps the policy in force (a validated one) and is reported once; never fails open."""
        assert self._config_file is not None
        assert self.authorizer is not None
        path = self._config_file
        stamp = _stamp(self._watched)
        old = self.authorizer
        try:
            from trustport.settings.config import load_config  # the app's loader: only imported when there is a YAML

            config = load_config(path)
            settings = config.hook_settings()  # names its config file: the loader records it
            watched = (path, *((config.path(config.policy_file),) if config.policy_file is not None else ()))
            same_db = settings.database_url == old.settings.database_url
            keep = self.runtime is not None and self.runtime.same_as(settings)
            runtime = self.runtime if keep and self.runtime is not None else self._new_runtime(settings)
            try:
                new = build_authorizer(settings, runtime=runtime)
            except Exception:
                if runtime is not self.runtime:
                    runtime.close()
                raise
        except Exception as exc:
            self._stamp = stamp
            if self._failed_stamp != stamp:
                self._failed_stamp = stamp
                self.log(self.radiusd.L_ERR, f"policy reload from {path} failed; keeping policy revision "
                                             f"{old.policy_revision}: {type(exc).__name__}: {exc}")
            return
        self._failed_stamp = None
        self._watched = watched
        self._stamp = _stamp(watched) if watched != (path,) else stamp
        if new.policy_revision == old.policy_revision and same_db and self.loaded_at is not None \
                and new.settings == old.settings:
            return  # touched, not changed
        self.authorizer = new
        self._configure_metrics(new.settings)
        if runtime is not self.runtime:
            old_runtime, self.runtime = self.runtime, runtime
            if old_runtime is not None:
                with contextlib.suppress(Exception):
                    old_runtime.close()
        self.loaded_at = self.clock()
        for message in new.trust.errors:
            self.log(self.radiusd.L_WARN, message)
        if old.policy_revision != new.policy_revision:
            self.log(self.radiusd.L_INFO, f"policy reloaded from {path}: revision {old.policy_revision} -> "
                                          f"{new.policy_revision}")
        else:
            self.log(self.radiusd.L_INFO, f"settings reloaded from {path} (policy revision {new.policy_revision})")
        self._record_server()

    def authorize(self, p: Any) -> int:
        """Called on every EAP round: certificates are not visible yet, so nothing to decide."""
        return self.radiusd.RLM_MODULE_NOOP

    def check_eap_tls(self, p: Any) -> int | tuple[int, dict[str, ReplyPairs]]:
        """The decision, once per EAP-TLS authentication, after OpenSSL verified the chain."""
        counters = self.counters
        started = counters.clock() if counters is not None else 0.0
        try:
            try:
                return self._check_eap_tls(p)
            except StoreError as exc:
                self._count(Outcome.REJECT.value, closed=True, registry=True)
                why = f"registry unusable, failing closed: {exc}"
            except Exception as exc:
                self._count(Outcome.REJECT.value, closed=True)
                why = f"internal error, failing closed: {type(exc).__name__}: {exc}"
            self.log(self.radiusd.L_ERR, f"reject ({why})")
            with contextlib.suppress(Exception):  # our own reject: post_auth must not log it as a TLS failure
                pairs = request_pairs(p)
                context = network_context(pairs)
                self._remember_reject(_serial_of(pairs), context)
                self._journal_failed_closed(pairs, context, why)
            return self.radiusd.RLM_MODULE_REJECT
        finally:
            if counters is not None:
                with contextlib.suppress(Exception):  # latency, and the snapshot when one is due
                    counters.done("check_eap_tls", started)

    def _check_eap_tls(self, p: Any) -> int | tuple[int, dict[str, ReplyPairs]]:
        if self.authorizer is None:
            self.log(self.radiusd.L_ERR, f"reject: hook not initialised ({self.startup_error})")
            self._count(Outcome.REJECT.value, closed=True)
            return self.radiusd.RLM_MODULE_REJECT
        try:
            self.check_policy()
        except Exception as exc:  # the policy in force stays: it is a validated one
            self.log(self.radiusd.L_ERR, f"policy change check failed: {type(exc).__name__}: {exc}")
        pairs = request_pairs(p)
        context = network_context(pairs)
        now = self.clock()
        try:
            facts = self._facts.facts(pairs)
        except RequestError as exc:
            self.log(self.radiusd.L_AUTH, f"reject {context.calling_station_id}: {exc}")
            self.authorizer.record(now, None, f"malformed request from {context.calling_station_id}", context,
                                   Decision(Outcome.REJECT, None, None, (f"request: {exc}",)))
            self._remember_reject(_serial_of(pairs), context)  # post_auth must not log it again as a TLS failure
            self._count(Outcome.REJECT.value)
            return self.radiusd.RLM_MODULE_REJECT
        decided_at = self.runtime.generation() if self.runtime is not None else -1  # what follows reads at least this
        result = self.authorizer.authorize(facts, context, now)
        self._touch_server()
        decision = result.decision
        self.log(self.radiusd.L_AUTH, f"{decision.outcome.value} {device_label(facts)} "
                                      f"mac={context.calling_station_id} vlan={decision.vlan}: "
                                      + "; ".join(decision.reasons))
        if decision.outcome is Outcome.REJECT:
            self._remember_reject(facts.cert_serial, context)
            self._count(Outcome.REJECT.value)
            return self.radiusd.RLM_MODULE_REJECT
        now_m = time.monotonic()
        self._accepted = {k: v for k, v in self._accepted.items() if now_m - v[0] < DEDUP_SECONDS}
        self._accepted[(facts.cert_serial, context.calling_station_id or "")] = (
            now_m, result.device.id if result.device else None, decision, decided_at)
        reply = vlan_reply(decision)
        self._count(decision.outcome.value, decision.segment)
        return self.radiusd.RLM_MODULE_UPDATED, {"reply": reply}

    def _journal_failed_closed(self, pairs: Pairs, context: NetworkContext, why: str) -> None:
        """A reject the registry could not record (it is down or damaged) still gets its decision-log entry, through
        the journal, once the registry takes it (a journal that cannot be written either: only radiusd's log)."""
        runtime, authorizer = self.runtime, self.authorizer
        if runtime is None or runtime.journal is None or authorizer is None:
            return
        try:
            label = device_label(self._facts.facts(pairs))
        except RequestError:
            label = f"unparsed request from {context.calling_station_id}"
        runtime.journal.decision(DecisionLogEntry(
            time=self.clock(), device_id=None, device=label, context=context, outcome=Outcome.REJECT, vlan=None,
            segment=None, reasons=(why,), policy_revision=authorizer.policy_revision))

    def _remember_reject(self, serial: str, context: NetworkContext) -> None:
        now = time.monotonic()
        self._decided = {k: t for k, t in self._decided.items() if now - t < DEDUP_SECONDS}
        self._decided[(serial, context.calling_station_id or "")] = now

    def post_auth(self, p: Any) -> int:
        """Never authorizes. In Post-Auth-Type REJECT, logs a reject that our policy did not take (TLS failure)."""
        counters = self.counters
        started = counters.clock() if counters is not None else 0.0
        try:
            return self._post_auth(p)
        finally:
            if counters is not None:
                with contextlib.suppress(Exception):
                    counters.done("post_auth", started)

    def _post_auth(self, p: Any) -> int:
        try:
            if not self._is_reject(p):
                self._record_session(p)
                return self.radiusd.RLM_MODULE_NOOP
            pairs = request_pairs(p)
            context = network_context(pairs)
            recent = self._decided.get((_serial_of(pairs), context.calling_station_id or ""))
            if recent is not None and time.monotonic() - recent < DEDUP_SECONDS:
                return self.radiusd.RLM_MODULE_NOOP  # our own reject, already logged with its reasons
            subject = (pairs.first("TLS-Client-Cert-Subject") or "no certificate")[:300]
            issuer = (pairs.first("TLS-Client-Cert-Issuer") or "?")[:300]
            why = _failure_summary(pairs.all("Module-Failure-Message"))
            reasons = ("rejected by FreeRADIUS before policy: " + "; ".join(why),
                       f"unverified certificate subject {subject} issuer {issuer}")
            self.log(self.radiusd.L_AUTH, f"reject mac={context.calling_station_id}: " + "; ".join(reasons))
            self._count(Outcome.REJECT.value)  # an authentication rejected before policy (TLS): counted here
            if self.authorizer is not None:
                self.authorizer.record(self.clock(), None, f"unverified: {subject}", context,
                                       Decision(Outcome.REJECT, None, None, reasons))
        except Exception as exc:
            self._count("", registry=isinstance(exc, StoreError))
            self.log(self.radiusd.L_ERR, f"post_auth logging failed: {type(exc).__name__}: {exc}")
        return self.radiusd.RLM_MODULE_NOOP

    def _record_session(self, p: Any) -> None:
        """Accept: remember where the device is connected (NAS, port, MAC), for later enforcement."""
        if self.authorizer is None or self.authorizer.sessions is None:
            return
        pairs = request_pairs(p, only=SESSION_ATTRIBUTES)
        context = network_context(pairs)
        accepted = self._accepted.pop((_serial_of(pairs), context.calling_station_id or ""), None)
        if accepted is None:
            return  # not an authentication this process decided (nothing verified to record)
        _, device_id, decision, decided_at = accepted
        if self.runtime is not None:
            self.runtime.session_opened(device_id, context, decision.vlan, decision.segment, self.clock(),
                                        pairs.first("Acct-Session-Id"), decided_at)

    def accounting(self, p: Any) -> int:
        """RADIUS accounting (Start/Interim-Update/Stop/On/Off) keeps the session table current.
        A failure to record returns fail, so the NAS retransmits instead of the record being lost."""
        try:
            if self.authorizer is None or self.authorizer.sessions is None:
                return self.radiusd.RLM_MODULE_FAIL
            pairs = request_pairs(p)
            kind = pairs.first("Acct-Status-Type") or ""
            if kind not in ACCT_KINDS:
                self.log(self.radiusd.L_WARN, f"accounting: ignoring Acct-Status-Type {kind[:40]!r}")
                return self.radiusd.RLM_MODULE_OK
            acct_id = pairs.first("Acct-Session-Id")
            self.authorizer.sessions.accounting(kind, network_context(pairs), acct_id[:253] if acct_id else None,
                                                self.clock())
            return self.radiusd.RLM_MODULE_OK
        except Exception as exc:
            self._count("", registry=isinstance(exc, StoreError))
            self.log(self.radiusd.L_ERR, f"accounting not recorded (NAS will retransmit): {type(exc).__name__}: {exc}")
            return self.radiusd.RLM_MODULE_FAIL
        finally:
            if self.counters is not None:
                with contextlib.suppress(Exception):  # accounting has no latency metric; a due snapshot only
                    self.counters.tick()

    @staticmethod
    def _is_reject(p: Any) -> bool:
        if (first_value(p, "config", "Post-Auth-Type") or "").lower() == "reject":
            return True
        return (first_value(p, "reply", "EAP-Message") or "").lower().startswith("0x04")

    def settle(self) -> None:
        """Apply what the journal holds and read the change feed now (tests and benches that read the registry
        right after an authentication; radiusd never calls this)."""
        if self.runtime is not None:
            self.runtime.settle()

    def detach(self, p: Any) -> int:
        if self.counters is not None:
            with contextlib.suppress(Exception):  # the last counts of this process
                self.counters.flush()
        try:
            if self.runtime is not None:
                self.runtime.close()  # the journal drained as far as the registry takes it; the rest stays on disk
        except Exception as exc:
            self.log(self.radiusd.L_WARN, f"closing the registry failed: {exc}")
        return self.radiusd.RLM_MODULE_OK

