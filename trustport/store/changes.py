"""The registry's change feed: what lets the hook serve reads from memory without ever deciding on data an operator
has already changed.

* **Triggers** (installed by ``trustport db init``, checked by the registry health check) bump
  ``registry_generation`` and add a ``registry_changes`` row in every transaction that changes what a decision
  reads: a device row (any column but last_seen/first_seen/updated_at), its attestation results, the deny list.
  They are in the database, so every writer is covered: the CLI, the API, the directory sync, the worker, and a
  hand-written ``UPDATE``. On PostgreSQL the bump takes the one generation row's lock until commit, so
  generations are committed in order: a reader that sees generation G sees every change numbered <= G.
* **Caches** (``trustport.services.registry_cache``, in each hook) read the feed every ``refresh_seconds`` and
  acknowledge the generation they have applied in ``registry_caches`` with a lease (the database's clock). A cache
  whose lease ran out is not used: its hook reads the registry directly.
* **The barrier** (``wait_for_caches``): after a transaction that changed the feed, the store that committed it
  waits until every cache with a live lease has applied that generation, or until that lease has run out. So when an
  operator's action (quarantine, decommission, revoke, an attestation result ...) returns, no hook decides from
  data older than it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trustport.store.schema import reevaluations, registry_caches, registry_changes, registry_generation

# The device columns a decision reads (DeviceRecord but first_seen/last_seen; updated_at is bookkeeping).
DEVICE_COLUMNS: Final = ("issuer", "serial_number", "state", "segment", "owner", "device_class", "notes", "cert_kind",
                         "cert_serial", "fingerprint_sha256", "spki_sha256", "mud_url", "location")
TRACKED_TABLES: Final = ("devices", "attestation_results", "denied_certificates")
# A statement that may change a tracked table (the store's own SQL and any raw SQL it runs).
_TRACKED_DML: Final = re.compile(
    r"^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+\"?(devices|attestation_results|"
    r"denied_certificates)\"?[\s(]", re.IGNORECASE)
MAX_LEASE_S: Final = 5.0  # the longest lease a cache may take (the hook settings refuse more)
KEEP_CHANGES: Final = 100_000  # feed rows kept behind the newest generation (a cache further behind starts afresh)


def is_tracked_dml(statement: str) -> bool:
    return _TRACKED_DML.match(statement) is not None


# -- the triggers ----------------------------------------------------------------------------------------------

_WHAT = {"devices": "device", "attestation_results": "attestation", "denied_certificates": "deny"}
_DEVICE_ID = {"devices": "id", "attestation_results": "device_id", "denied_certificates": None}


def _changed(old: str, new: str, same: str) -> str:
    return " OR ".join(f"{old}.{c} {same} {new}.{c}" for c in DEVICE_COLUMNS)


def _sqlite_triggers() -> list[tuple[str, str]]:
    out = []
    for table, what in _WHAT.items():
        for op in ("INSERT", "UPDATE", "DELETE"):
            row = "OLD" if op == "DELETE" else "NEW"
            column = _DEVICE_ID[table]
            device = f"{row}.{column}" if column else "NULL"
            when = f" WHEN {_changed('OLD', 'NEW', 'IS NOT')}" if table == "devices" and op == "UPDATE" else ""
            name = f"trustport_{table}_{op.lower()}"
            # DDL from this module's constants only (table and column names), never from input
            body = (f"UPDATE registry_generation SET generation = generation + 1 WHERE id = 1; "  # noqa: S608
                    f"INSERT INTO registry_changes (generation, device_id, what) "
                    f"SELECT generation, {device}, '{what}' FROM registry_generation WHERE id = 1;")
            if table == "attestation_results" and op == "UPDATE":  # a result moved to another device: both
                body += (" INSERT INTO registry_changes (generation, device_id, what) "
                         "SELECT generation, OLD.device_id, 'attestation' FROM registry_generation WHERE id = 1;")
            out.append((name, f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {op} ON {table} FOR EACH ROW{when} "
                              f"BEGIN {body} END"))
    return out


def _postgres_triggers() -> list[tuple[str, str]]:
    out = []
    for table, what in _WHAT.items():
        column = _DEVICE_ID[table]
        function = f"trustport_{table}_changed"
        device = f"CASE WHEN TG_OP = 'DELETE' THEN OLD.{column} ELSE NEW.{column} END" if column else "NULL"
        extra = ""
        if table == "attestation_results":
            extra = ("IF TG_OP = 'UPDATE' AND OLD.device_id IS DISTINCT FROM NEW.device_id THEN "
                     "INSERT INTO registry_changes (generation, device_id, what) VALUES (g, OLD.device_id, "
                     "'attestation'); END IF; ")
        out.append((function, (  # DDL from this module's constants only
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "  # noqa: S608
            f"DECLARE g bigint; BEGIN "
            f"UPDATE registry_generation SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO g; "
            f"INSERT INTO registry_changes (generation, device_id, what) VALUES (g, {device}, '{what}'); "
            f"{extra}RETURN NULL; END $$")))
        for op in ("INSERT", "UPDATE", "DELETE"):
            name = f"trustport_{table}_{op.lower()}"
            when = f" WHEN ({_changed('OLD', 'NEW', 'IS DISTINCT FROM')})" if table == "devices" and op == "UPDATE" \
                else ""
            out.append((name, f"CREATE OR REPLACE TRIGGER {name} AFTER {op} ON {table} FOR EACH ROW{when} "
                              f"EXECUTE FUNCTION {function}()"))
    return out


def trigger_names() -> frozenset[str]:
    return frozenset(f"trustport_{table}_{op}" for table in _WHAT for op in ("insert", "update", "delete"))


def install(conn: Connection) -> None:
    """Create the generation row and the change triggers (idempotent; inside ``db init``'s transaction)."""
    if conn.execute(sa.select(registry_generation.c.id).where(registry_generation.c.id == 1)).first() is None:
        conn.execute(registry_generation.insert().values(id=1, generation=0))
    statements = _postgres_triggers() if conn.dialect.name == "postgresql" else _sqlite_triggers()
    for _, ddl in statements:
        conn.exec_driver_sql(ddl)


def missing_triggers(conn: Connection) -> list[str]:
    """The change triggers this registry lacks (a registry made before they existed: ``db init`` adds them)."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(sa.text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
    else:
        rows = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    present = {str(r[0]) for r in rows}
    return sorted(trigger_names() - present)


# -- reading the feed ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    generation: int
    device_id: int | None
    what: str  # device | attestation | deny


def generation(conn: Connection) -> int:
    value = conn.execute(sa.select(registry_generation.c.generation).where(registry_generation.c.id == 1)).scalar()
    if value is None:
        raise LookupError("the registry has no generation row (run 'trustport db init')")
    return int(value)


def changes(conn: Connection, after: int, upto: int) -> tuple[Sequence[Change], bool]:
    """The changes numbered after ``after`` up to ``upto``, and whether the feed still reaches back to ``after``
    (False: rows were pruned since; the reader must drop everything it holds)."""
    if after >= upto:
        return (), True  # nothing new: the one statement a quiet cycle costs is the generation read
    oldest = conn.execute(sa.select(sa.func.min(registry_changes.c.generation))).scalar()
    complete = oldest is not None and int(oldest) <= after + 1
    rows = conn.execute(sa.select(registry_changes.c.generation, registry_changes.c.device_id,
                                  registry_changes.c.what)
                        .where(registry_changes.c.generation > after, registry_changes.c.generation <= upto)
                        .order_by(registry_changes.c.generation))
    return [Change(int(g), d, str(w)) for g, d, w in rows], complete


def reevaluate_if_changed_since(conn: Connection, device_id: int, generation: int, now: datetime) -> bool:
    """A session opened by a decision taken on generation ``generation``: if the device (or its attestation) changed
    after it, queue a re-evaluation, so the enforcement of that change reaches this session (the action planned
    its jobs from the sessions it saw when it committed). True when one was queued."""
    latest = conn.execute(sa.select(sa.func.max(registry_changes.c.generation))
                          .where(registry_changes.c.device_id == device_id,
                                 registry_changes.c.what.in_(("device", "attestation")))).scalar()
    if latest is None or int(latest) <= generation:
        return False
    conn.execute(reevaluations.insert().values(
        device_id=device_id, created_at=now,
        reason=f"a session opened on a decision taken before the device changed (registry generation "
               f"{generation} < {int(latest)})"))
    return True


def prune(conn: Connection, newest: int, keep: int = KEEP_CHANGES) -> int:
    """Drop feed rows more than ``keep`` generations behind ``newest``."""
    return int(conn.execute(registry_changes.delete().where(registry_changes.c.generation <= newest - keep)).rowcount)


def db_now(conn: Connection) -> datetime:
    if conn.dialect.name == "postgresql":
        value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC)  # type: ignore[no-any-return]
    text = conn.execute(sa.text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
    return datetime.fromisoformat(str(text)).replace(tzinfo=UTC)


def register(conn: Connection, cache_id: str, applied: int, lease_seconds: float) -> None:
    """Take a lease for cache ``cache_id`` (again), saying it has applied ``applied``: from this commit on, every
    barrier waits for it. A cache reads the feed only after this, so nothing it reads predates the lease."""
    now = db_now(conn)
    values: dict[str, Any] = {"generation": applied, "lease_until": now + timedelta(seconds=lease_seconds),
                              "updated_at": now}
    done = conn.execute(registry_caches.update().where(registry_caches.c.cache_id == cache_id).values(**values))
    if done.rowcount == 0:
        conn.execute(registry_caches.insert().values(cache_id=cache_id, **values))


def renew(conn: Connection, cache_id: str, applied: int, lease_seconds: float) -> bool:
    """Acknowledge ``applied`` and extend the lease, only if it still holds (the database's clock). False: it ran
    out, so a barrier may have gone past this cache; what it read since is not to be trusted: it registers again
    and reads the feed after that."""
    now = db_now(conn)
    done = conn.execute(registry_caches.update()
                        .where(registry_caches.c.cache_id == cache_id, registry_caches.c.lease_until > now)
                        .values(generation=applied, lease_until=now + timedelta(seconds=lease_seconds),
                                updated_at=now))
    return bool(done.rowcount == 1)


def release(conn: Connection, cache_id: str) -> None:
    conn.execute(registry_caches.delete().where(registry_caches.c.cache_id == cache_id))


@dataclass(frozen=True)
class CacheView:
    cache_id: str
    generation: int
    lease_until: datetime


@dataclass(frozen=True)
class BarrierResult:
    generation: int
    waited_s: float
    lapsed: tuple[str, ...]  # caches that did not confirm; their leases ran out instead (so they read the registry)
    error: str | None = None  # the caches could not be read: waited the longest lease instead


def _behind(conn: Connection, target: int) -> tuple[datetime, list[CacheView]]:
    now = db_now(conn)
    rows = conn.execute(sa.select(registry_caches).where(registry_caches.c.generation < target))
    views = [CacheView(r.cache_id, int(r.generation), r.lease_until) for r in rows]
    return now, views


def wait_for_caches(connect: Callable[[], Any], *, max_lease_s: float = MAX_LEASE_S, poll_s: float = 0.01,
                    sleep: Callable[[float], None] = time.sleep,
                    monotonic: Callable[[], float] = time.monotonic) -> BarrierResult:
    """Block until every cache has applied the registry's current generation or its lease has run out.

    ``connect`` opens a connection (``engine.connect``). A database that cannot be read is waited out: after
    ``max_lease_s`` (the longest lease a hook may take) no lease taken before this call can still hold."""
    started = monotonic()
    target = -1
    lapsed: tuple[str, ...] = ()
    first: datetime | None = None
    try:
        with connect() as conn:
            target = generation(conn)
        give_up = started + 3 * max_lease_s  # a cache that renews its lease but never catches up is a bug: say so
        while True:
            with connect() as conn:
                now, behind = _behind(conn, target)
            first = first or now
            live = [view for view in behind if view.lease_until > now]
            # behind, lease run out while we waited (one that lapsed before is long gone: not worth a word)
            lapsed = tuple(sorted(view.cache_id for view in behind if first < view.lease_until <= now))
            if not live:
                return BarrierResult(target, monotonic() - started, lapsed)
            if monotonic() >= give_up:
                return BarrierResult(target, monotonic() - started, lapsed,
                                     error="cache(s) " + ", ".join(sorted(v.cache_id for v in live))
                                     + " renew their lease without applying the change")
            # the leases as the database sees them now: one renewed by a cache that read before the change counts
            left = max((view.lease_until - now).total_seconds() for view in live)
            sleep(max(0.0, min(poll_s, left)))
    except Exception as exc:  # the change is committed; only its confirmation is unknown: outwait every lease
        left = started + max_lease_s - monotonic()
        if left > 0:
            sleep(left)
        return BarrierResult(target, monotonic() - started, lapsed, error=f"{type(exc).__name__}: {exc}")


def caches(conn: Connection) -> tuple[int, datetime, list[CacheView]]:
    """The registry's generation, the database's now, and every cache that acknowledged (``trustport radius
    caches``)."""
    rows = conn.execute(sa.select(registry_caches).order_by(registry_caches.c.cache_id))
    views = [CacheView(r.cache_id, int(r.generation), r.lease_until) for r in rows]
    return generation(conn), db_now(conn), views
