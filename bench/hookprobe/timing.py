"""Wrap the hook's entry points and the steps inside them with ``time.perf_counter_ns`` (bench only).

Every timed call appends ``(name, start_ns, duration_ns, thread_id)`` to ``Recorder.events``. ``perf_counter_ns``
is CLOCK_MONOTONIC on Linux, so the bench can assign radiusd's events to the eapol_test run they fall into.
Names: ``entry:<function>`` (what FreeRADIUS calls), ``step:<what>`` (inside; steps nest, e.g. ``sql:commit`` is
inside ``step:append_decision``), ``sql:*`` (SQLAlchemy dialect calls, both backends), ``sqlite:*`` (statements
SQLite itself ran, from its trace callback: BEGIN / COMMIT / ROLLBACK, recorded with duration 0).
"""

from __future__ import annotations

import functools
import inspect
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Event = tuple[str, int, int, int]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []  # list.append is atomic under the GIL
        self.installed = False

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        events = self.events
        clock = time.perf_counter_ns
        ident = threading.get_ident

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                events.append((name, start, clock() - start, ident()))

        return timed

    def mark(self, name: str) -> None:
        self.events.append((name, time.perf_counter_ns(), 0, threading.get_ident()))

    def patch(self, owner: Any, attribute: str, name: str) -> None:
        wrapped = self.wrap(name, getattr(owner, attribute))
        if isinstance(inspect.getattr_static(owner, attribute), staticmethod):
            setattr(owner, attribute, staticmethod(wrapped))
        else:
            setattr(owner, attribute, wrapped)

    def dump(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.events))
        tmp.replace(path)

    def install_steps(self) -> None:
        """Patch the steps of check_eap_tls / post_auth where they are looked up (module globals, classes).
        Call before the Hook builds its Authorizer (DenyList.reason is bound at build time)."""
        if self.installed:
            return
        self.installed = True
        from sqlalchemy.engine import Engine
        from sqlalchemy.engine.default import DefaultDialect

        import radius_hooks.hook as hook_module
        import trustport.services.authorize as authorize_module
        from radius_hooks.attributes import FactsCache
        from radius_hooks.hook import Hook
        from trustport.observability.hook_counters import HookCounters
        from trustport.services.attestation_gate import AttestationGate
        from trustport.services.auth_path import CachedAttestations, HookReads
        from trustport.services.registry_cache import RegistryCache
        from trustport.services.trust import TrustMaterial
        from trustport.store.attestation import SqlAttestationStore
        from trustport.store.journal import Journal
        from trustport.store.sessions import SqlSessionStore
        from trustport.store.sql import SqlDeviceStore

        for attribute in ("request_pairs", "network_context"):
            self.patch(hook_module, attribute, f"step:{attribute}")
        self.patch(FactsCache, "facts", "step:facts_from_pairs")  # parsed once per certificate, then from memory
        for attribute in ("check_policy", "log", "_touch_server", "_count", "_record_session", "_is_reject",
                          "_remember_reject"):
            self.patch(Hook, attribute, f"step:{attribute.lstrip('_')}")
        for attribute in ("validate_certificate", "check_binding", "place"):
            self.patch(authorize_module, attribute, f"step:{attribute}")
        self.patch(authorize_module.Authorizer, "evaluate", "step:evaluate")
        self.patch(authorize_module.DenyList, "reason", "step:deny_list")
        self.patch(authorize_module.PlacementService, "for_authentication", "step:attestation_and_mud")
        self.patch(AttestationGate, "standing", "step:attestation_standing")
        self.patch(AttestationGate, "claims", "step:attestation_token")
        self.patch(SqlAttestationStore, "latest_accepted", "step:registry_attestation_read")
        self.patch(TrustMaterial, "refresh", "step:trust_refresh")
        # the hook's repositories (trustport.services.auth_path): cache reads, journal writes; and what they fall
        # back to (a cache miss, the registry when the cache is off)
        self.patch(HookReads, "find_device", "step:find_device")
        self.patch(HookReads, "append_decision", "step:append_decision")
        self.patch(Journal, "session", "step:session_write")
        self.patch(CachedAttestations, "latest_accepted", "step:attestation_read")
        self.patch(SqlDeviceStore, "find_device", "step:registry_find_device")
        self.patch(SqlDeviceStore, "append_decision", "step:registry_append_decision")
        self.patch(RegistryCache, "denied", "step:deny_list")
        self.patch(SqlDeviceStore, "touch_radius_server", "step:touch_radius_server")
        self.patch(SqlDeviceStore, "ensure_schema", "step:ensure_schema")
        self.patch(SqlSessionStore, "authenticated", "step:registry_session_write")
        self.patch(HookCounters, "done", "step:metrics_done")
        self.patch(Engine, "connect", "sql:checkout")
        self.patch(DefaultDialect, "do_commit", "sql:commit")
        self.patch(DefaultDialect, "do_rollback", "sql:rollback")
        self.patch(DefaultDialect, "do_execute", "sql:execute")
        self.patch(DefaultDialect, "do_execute_no_params", "sql:execute")
        real_connect = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn: sqlite3.Connection = real_connect(*args, **kwargs)

            def trace(statement: str) -> None:
                word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
                if word in ("BEGIN", "COMMIT", "ROLLBACK"):
                    self.mark(f"sqlite:{word}")

            conn.set_trace_callback(trace)
            return conn

        sqlite3.connect = connect  # type: ignore[assignment]
