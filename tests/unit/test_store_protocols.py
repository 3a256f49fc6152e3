"""Every SQL repository matches its Protocol exactly: the same public methods, each with the same signature.

mypy only proves that an implementation has at least what its Protocol declares; this also fails on a public method
the Protocol forgot (callers would start depending on the concrete class again) and on a signature that drifted in
names, kinds or defaults, which structural typing can let through. The unit-of-work statics (``*_in(conn, ...)``,
called on the SQL classes inside a caller's transaction) are the one declared exception.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, Protocol

import pytest
from sqlalchemy.engine import Connection

from policy.store import DeviceStore
from trustport.store import protocols
from trustport.store.attestation import SqlAttestationStore
from trustport.store.issued import SqlIssuedStore
from trustport.store.lifecycle import LifecycleEvent, SqlLifecycleStore
from trustport.store.protocols import (
    AttestationRepository,
    IssuedCertificateRepository,
    JobQueue,
    LifecycleRepository,
    SessionRepository,
)
from trustport.store.queue import SqlJobQueue
from trustport.store.sessions import SqlSessionStore
from trustport.store.sql import SqlDeviceStore

UNIT_OF_WORK_STATICS: dict[type, frozenset[str]] = {
    SqlLifecycleStore: frozenset({"record_in", "standing_for_update", "active_session_ids_in", "set_state_in",
                                  "deny_in", "move_binding_in", "denied_index_in"}),
    SqlJobQueue: frozenset({"enqueue_in", "lock"}),
    SqlSessionStore: frozenset({"authenticated_in", "authenticated_many_in"}),
    SqlAttestationStore: frozenset(),
    SqlIssuedStore: frozenset(),
}

REPOSITORIES: list[tuple[type, type]] = [
    (LifecycleRepository, SqlLifecycleStore),
    (JobQueue, SqlJobQueue),
    (SessionRepository, SqlSessionStore),
    (AttestationRepository, SqlAttestationStore),
    (IssuedCertificateRepository, SqlIssuedStore),
]


def _public_members(cls: type) -> dict[str, Any]:
    """Public methods (and properties) defined by ``cls`` and its bases, as stored (staticmethod objects kept)."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, Protocol, Generic):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and (inspect.isfunction(value)
                                             or isinstance(value, (staticmethod, classmethod, property))):
                found[name] = value
    return found


def _signature(member: Any) -> inspect.Signature:
    target = member.fget if isinstance(member, property) else member
    assert callable(target)
    return inspect.signature(target, eval_str=True)


def mismatches(protocol: type, impl: type, statics: frozenset[str] = frozenset(), *,
               exact: bool = True) -> list[str]:
    """What keeps ``impl`` from matching ``protocol``; empty when it matches. ``exact=False``: ``impl`` may have
    more public methods (the Database that also serves as the device repository)."""
    declared = _public_members(protocol)
    implemented = _public_members(impl)
    problems = [f"{impl.__name__}.{name} is not implemented" for name in sorted(declared.keys() - implemented.keys())]
    if exact:
        problems += [f"{impl.__name__}.{name} is public but missing from {protocol.__name__}"
                     for name in sorted(implemented.keys() - declared.keys() - statics)]
    problems += [f"{impl.__name__}.{name} is a unit-of-work static but {protocol.__name__} declares it"
                 for name in sorted(declared.keys() & statics)]
    for name in sorted(declared.keys() & implemented.keys()):
        if isinstance(implemented[name], (staticmethod, classmethod)):
            problems.append(f"{impl.__name__}.{name} is a {type(implemented[name]).__name__}, declared as a method")
            continue
        want, got = _signature(declared[name]), _signature(implemented[name])
        if want != got:
            problems.append(f"{impl.__name__}.{name}{got} differs from {protocol.__name__}.{name}{want}")
    return problems


@pytest.mark.parametrize(("protocol", "impl"), REPOSITORIES, ids=[p.__name__ for p, _ in REPOSITORIES])
def test_repository_matches_its_protocol_exactly(protocol: type, impl: type) -> None:
    assert mismatches(protocol, impl, UNIT_OF_WORK_STATICS[impl]) == []


def test_device_store_implements_every_declared_method() -> None:
    # SqlDeviceStore is also the Database (transaction, ping, schema, RADIUS servers): extra methods are allowed
    assert mismatches(DeviceStore, SqlDeviceStore, exact=False) == []


EXEMPTED: list[tuple[type, str]] = [(impl, name) for impl, names in UNIT_OF_WORK_STATICS.items()
                                     for name in sorted(names)]


@pytest.mark.parametrize(("impl", "name"), EXEMPTED, ids=[f"{impl.__name__}.{name}" for impl, name in EXEMPTED])
def test_exempted_statics_are_unit_of_work_functions(impl: type, name: str) -> None:
    """The exemption cannot hide an instance method: each exempted name is a static taking the caller's Connection."""
    member = inspect.getattr_static(impl, name)
    assert isinstance(member, staticmethod)
    first = next(iter(_signature(member.__func__).parameters.values()))
    assert (first.name, first.annotation) == ("conn", Connection)


def test_every_repository_interface_is_exported_in_one_place() -> None:
    assert set(protocols.__all__) == {"AttestationRepository", "DeviceStore", "IssuedCertificateRepository",
                                      "JobQueue", "LifecycleRepository", "SessionRepository"}
    assert protocols.DeviceStore is DeviceStore


# The check itself, attacked: implementations that drift in each way must be reported.

class _Complete:
    def record(self, event: LifecycleEvent) -> None: ...

    def events(self, device_id: int, limit: int = 50) -> Sequence[LifecycleEvent]:
        raise NotImplementedError

    def deny(self, issuer: str, cert_serial: str, *, device_id: int | None, time: datetime, actor: str,
             reason: str | None) -> bool:
        raise NotImplementedError

    def denied_index(self) -> dict[tuple[str, str], str]:
        raise NotImplementedError


class _MissingMethod:
    def record(self, event: LifecycleEvent) -> None: ...


class _ExtraPublicMethod(_Complete):
    def purge(self) -> None: ...


class _RenamedParameter(_Complete):
    def record(self, entry: LifecycleEvent) -> None: ...


class _OtherDefault(_Complete):
    def events(self, device_id: int, limit: int = 10) -> Sequence[LifecycleEvent]:
        raise NotImplementedError


class _NarrowerReturn(_Complete):
    def events(self, device_id: int, limit: int = 50) -> list[LifecycleEvent]:
        raise NotImplementedError


class _KeywordBecamePositional(_Complete):
    def deny(self, issuer: str, cert_serial: str, device_id: int | None, time: datetime, actor: str,
             reason: str | None) -> bool:
        raise NotImplementedError


class _StaticInsteadOfMethod(_Complete):
    @staticmethod
    def denied_index() -> dict[tuple[str, str], str]:
        raise NotImplementedError


@pytest.mark.parametrize(("impl", "expected"), [
    (_MissingMethod, "is not implemented"),
    (_ExtraPublicMethod, "is public but missing from LifecycleRepository"),
    (_RenamedParameter, "_RenamedParameter.record"),
    (_OtherDefault, "_OtherDefault.events"),
    (_KeywordBecamePositional, "_KeywordBecamePositional.deny"),
    (_StaticInsteadOfMethod, "is a staticmethod"),
    (_NarrowerReturn, "_NarrowerReturn.events"),  # compatible for mypy, but no longer the declared interface
], ids=lambda value: getattr(value, "__name__", "expected"))
def test_drift_is_reported(impl: type, expected: str) -> None:
    problems = mismatches(LifecycleRepository, impl)
    assert any(expected in p for p in problems), problems


def test_a_faithful_copy_is_not_reported() -> None:
    # what the drifted classes above differ from; without this, they could be reported for the wrong reason
    assert mismatches(LifecycleRepository, _Complete) == []


def _type_checked_only(db: SqlDeviceStore) -> None:
    """Never called: mypy --strict rejects these assignments if an implementation stops satisfying its Protocol."""
    devices: DeviceStore = db
    lifecycle: LifecycleRepository = SqlLifecycleStore(db)
    queue: JobQueue = SqlJobQueue(db)
    sessions: SessionRepository = SqlSessionStore(db)
    attestation: AttestationRepository = SqlAttestationStore(db)
    del devices, lifecycle, queue, sessions, attestation
