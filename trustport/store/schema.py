"""The registry database schema (SQLAlchemy Core): one ``metadata`` for every table trustport keeps.

The device store and its companions (attestation results, lifecycle audit, sessions, enforcement jobs) all
keep their tables in this metadata, so one ``create_all`` makes the whole schema. Only ``trustport db init``
(and the lab and test fixtures) runs it: a runtime reader never creates a schema, so a registry that vanished
cannot silently come back empty (without its devices and deny list).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

LOG_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # BIGINT on PostgreSQL; SQLite needs INTEGER rowid


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    SQLite has no time zone type: values are stored as naive UTC text and made aware again when read.
    PostgreSQL stores ``timestamptz``; values are normalised to UTC whatever the session time zone is.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass timezone-aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UtcDateTime, nullable=True),
)

# The registry's identity, written once by ``trustport db init``: ``application`` = "trustport" tells a
# trustport registry from any other database on SQLite and PostgreSQL alike, ``registry_id`` (a random UUID)
# tells this registry from another trustport registry put in its place. The version stays in schema_version.
trustport_meta = sa.Table(
    "trustport_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issuer", sa.Text, nullable=False),
    sa.Column("serial_number", sa.Text, nullable=False),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("segment", sa.Text),
    sa.Column("owner", sa.Text),
    sa.Column("device_class", sa.Text),
    sa.Column("notes", sa.Text),
    sa.Column("cert_kind", sa.String(16)),
    sa.Column("cert_serial", sa.Text),
    sa.Column("fingerprint_sha256", sa.String(64), index=True),
    sa.Column("spki_sha256", sa.String(64), index=True),
    sa.Column("mud_url", sa.Text),
    sa.Column("first_seen", UtcDateTime),
    sa.Column("last_seen", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("location", sa.Text, nullable=True),  # added later (trustport.store.sql._ADDED_COLUMNS)
    sa.UniqueConstraint("issuer", "serial_number", name="uq_devices_issuer_serial"),
)

decision_log = sa.Table(
    "decision_log",
    metadata,
    # BIGINT on PostgreSQL (the log only grows); SQLite needs INTEGER for an auto-incrementing rowid alias.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="SET NULL"), nullable=True),
    sa.Column("device", sa.Text, nullable=False),
    sa.Column("nas_ip", sa.Text),
    sa.Column("nas_identifier", sa.Text),
    sa.Column("nas_port", sa.Text),
    sa.Column("calling_station_id", sa.Text),
    sa.Column("user_name", sa.Text),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("vlan", sa.Integer),
    sa.Column("segment", sa.Text),
    sa.Column("reasons", sa.Text, nullable=False),  # JSON array of strings
    sa.Column("policy_revision", sa.String(64), nullable=True),  # added later (trustport.store.sql._ADDED_COLUMNS)
    sa.Index("ix_decision_log_time", "time"),
    sa.Index("ix_decision_log_device_time", "device_id", "time"),
)


attestation_results = sa.Table(
    "attestation_results",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("accepted", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer),  # policy.attestation.Tier value, NULL when the token was refused
    sa.Column("issued_at", UtcDateTime),
    sa.Column("expires_at", UtcDateTime),  # min(exp, iat + max age)
    sa.Column("binding", sa.String(16)),  # akpub | nonce | cnf
    sa.Column("bound_cert_serial", sa.Text),  # the certificate the binding was established against
    sa.Column("vector", sa.Text, nullable=False),  # JSON {submod: {claim: level}}
    sa.Column("reasons", sa.Text, nullable=False),  # JSON array of strings
    sa.Index("ix_attestation_device_received", "device_id", "received_at"),
)

attestation_nonces = sa.Table(
    "attestation_nonces",
    metadata,
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)

# Every attestation result trustport has processed, by token hash and by ``jti``: a token (or token id) is used
# once, for one device. Kept when the device is deleted, so its tokens cannot be replayed for a re-registered one.
attestation_seen = sa.Table(
    "attestation_seen",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("jti", sa.String(256), unique=True),  # NULL when the verifier sets none (NULLs never collide)
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="SET NULL")),
    sa.Column("seen_at", UtcDateTime, nullable=False),
)

reevaluations = sa.Table(
    "reevaluations",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("done_at", UtcDateTime),
)

lifecycle_events = sa.Table(
    "lifecycle_events",
    metadata,
    sa.Column("id", LOG_ID, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("from_state", sa.String(32), nullable=False),
    sa.Column("to_state", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Index("ix_lifecycle_device_time", "device_id", "time"),
)

denied_certificates = sa.Table(
    "denied_certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issuer", sa.Text, nullable=False),
    sa.Column("cert_serial", sa.Text, nullable=False),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="SET NULL")),
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.UniqueConstraint("issuer", "cert_serial", name="uq_denied_issuer_serial"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="SET NULL")),
    sa.Column("nas_ip", sa.Text),
    sa.Column("nas_identifier", sa.Text),
    sa.Column("nas_port", sa.Text),
    sa.Column("calling_station_id", sa.Text, nullable=False),
    sa.Column("acct_session_id", sa.Text),
    sa.Column("user_name", sa.Text),
    sa.Column("vlan", sa.Integer),
    sa.Column("segment", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("stopped_at", UtcDateTime),
    # added later (trustport.store.sql._ADDED_COLUMNS): when a switch read ``vlan`` back after a move (NULL: only
    # RADIUS said so, which the switch may not have applied), and who recorded the session (NULL/radius, manual)
    sa.Column("vlan_read_back_at", UtcDateTime, nullable=True),
    sa.Column("source", sa.String(16), nullable=True),
    sa.Index("ix_sessions_mac_nas", "calling_station_id", "nas_ip", "nas_identifier"),
    sa.Index("ix_sessions_device_active", "device_id", "active"),
)

enforcement_jobs = sa.Table(
    "enforcement_jobs",
    metadata,
    sa.Column("id", LOG_ID, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="SET NULL")),
    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id", ondelete="SET NULL")),
    sa.Column("target", sa.Text, nullable=False),  # the switch/NAS the job talks to (inventory name)
    sa.Column("lock_key", sa.Text, nullable=False),  # one job at a time per switch
    sa.Column("plan", sa.Text, nullable=False),  # JSON: the steps, in order (see policy.enforcement)
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("dedupe_key", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # queued | running | done | failed | cancelled
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("not_before", UtcDateTime, nullable=False),
    sa.Column("lease_until", UtcDateTime),
    sa.Column("worker", sa.Text),
    sa.Column("step", sa.Integer, nullable=False),  # steps already completed (resume point after a crash)
    sa.Column("log", sa.Text, nullable=False),  # JSON list of {time, step, message}
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # added later (trustport.store.sql._ADDED_COLUMNS):
    sa.Column("bounce_in_progress", sa.Text, nullable=True),  # JSON {target, port}: written before the port is shut
    sa.Column("failure", sa.Text, nullable=True),  # why the job failed for good (every path), for 'jobs show'
    sa.Column("failures", sa.Integer, nullable=True),  # times it ended failed (never reset: the failure metric)
    sa.Index("ix_jobs_state_not_before", "state", "not_before"),
    sa.Index("ix_jobs_lock", "lock_key", "state"),
    sa.Index("ix_jobs_dedupe", "dedupe_key", "state"),
    sa.Index("ix_jobs_session", "session_id", "state"),  # a session's open jobs (planning, superseding)
)

# The certificate each device last authenticated with, once verified (written with the decision log entry of an
# accept): the enforcement planner places a connected device from it exactly as the hook did.
device_certificates = sa.Table(
    "device_certificates",
    metadata,
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("issuer", sa.Text, nullable=False),
    sa.Column("cert_kind", sa.String(16)),
    sa.Column("mud_url", sa.Text),
    sa.Column("not_after", UtcDateTime),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Each running FreeRADIUS (its hook) and the policy revision it holds: written at start and on a policy reload.
radius_servers = sa.Table(
    "radius_servers",
    metadata,
    sa.Column("server_id", sa.String(512), primary_key=True),  # hostname + hook.json path
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("policy_revision", sa.String(64)),
    sa.Column("settings_file", sa.Text),
    sa.Column("config_file", sa.Text),
    sa.Column("loaded_at", UtcDateTime, nullable=False),
    sa.Column("last_auth_at", UtcDateTime),
)

# Which registry device each directory entry is (trustport.services.directory): matched by DN once linked, so a
# device keeps its entry when its key moves to its LDevID; ``held``: the directory's on_disabled action put it where
# it is (only then does re-enabling the entry release it).
directory_links = sa.Table(
    "directory_links",
    metadata,
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("directory", sa.String(64), nullable=False),
    sa.Column("dn", sa.Text, nullable=False),
    sa.Column("held", sa.Boolean, nullable=False),
    sa.Column("linked_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("directory", "dn", name="uq_directory_links_dn"),
)

# The last sync attempt and the last successful one, per directory: 'trustport directory status' and its metrics.
directory_status = sa.Table(
    "directory_status",
    metadata,
    sa.Column("directory", sa.String(64), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("last_attempt_at", UtcDateTime, nullable=False),
    sa.Column("last_success_at", UtcDateTime),
    sa.Column("last_error", sa.Text),  # NULL when the last attempt succeeded
    sa.Column("entries", sa.Integer),  # entries in the last successful listing
    sa.Column("summary", sa.Text),  # JSON counts of the last successful sync
    sa.Column("duration_seconds", sa.Float),
    sa.Column("failures_total", sa.Integer, nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
)

# API tokens (``trustport tokens create``): only the SHA-256 of the secret is kept; the secret is shown once.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),  # viewer | operator | admin
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
    sa.Column("last_used_at", UtcDateTime),
)

# Dashboard logins (``trustport users add``): scrypt password hashes.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("disabled_at", UtcDateTime),
)

# A dashboard login: the cookie's SHA-256 (the cookie itself is never stored) and its CSRF token.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
)

# Writes that are not a device's lifecycle (tokens, users, jobs retried or cancelled, sessions added or cleared):
# who did what to what. A device's lifecycle actions are in lifecycle_events.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", LOG_ID, primary_key=True),
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Index("ix_audit_log_time", "time"),
)

# Every certificate the owner CA issued (trustport.services.ca): the CRL is built from the revoked ones, and a
# re-issue records which certificate replaced which.
issued_certificates = sa.Table(
    "issued_certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("cert_serial", sa.String(64), nullable=False, unique=True),  # lower-case hex
    sa.Column("issuer", sa.Text, nullable=False),  # canonical DN text of the issuing CA
    sa.Column("device_serial", sa.Text, nullable=False, index=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("not_before", UtcDateTime, nullable=False),
    sa.Column("not_after", UtcDateTime, nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
    sa.Column("revocation_reason", sa.Text),
    sa.Column("replaced_by", sa.String(64)),  # cert_serial of the certificate issued in its place
    sa.Column("pem", sa.Text, nullable=False),
)

# -- the auth path's memory (trustport.store.changes, trustport.store.journal) --------------------------------------

# One row (id 1): bumped by the change triggers (trustport.store.changes) in every transaction that changes what a
# decision reads (a device, its attestation results, the deny list). On PostgreSQL the bump takes this row's lock
# until commit, so generations are handed out in commit order: a reader that sees generation G sees every change
# numbered <= G and none above.
registry_generation = sa.Table(
    "registry_generation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)

# What changed at each generation: a device id (its row, its attestation results), or NULL for the deny list.
registry_changes = sa.Table(
    "registry_changes",
    metadata,
    sa.Column("id", LOG_ID, primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False, index=True),
    sa.Column("device_id", sa.Integer, nullable=True),  # no foreign key: a deleted device's id must stay here
    sa.Column("what", sa.String(16), nullable=False),  # device | attestation | deny
    sa.Index("ix_registry_changes_device", "device_id", "generation"),  # the journal's stale-session check
)

# Each hook's read cache and the generation it has applied, with a lease: a cache is used only while its lease
# holds, and an operator action returns once every live cache has applied it (or its lease ran out).
registry_caches = sa.Table(
    "registry_caches",
    metadata,
    sa.Column("cache_id", sa.String(600), primary_key=True),  # server id + pid
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("lease_until", UtcDateTime, nullable=False),  # the database's clock
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# How far each local journal (decisions, last seen, sessions written by the hook before it answers) has been
# applied: updated in the same transaction as the records, so a record is applied exactly once.
journal_progress = sa.Table(
    "journal_progress",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),  # the journal file's name (unique per process and file)
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
