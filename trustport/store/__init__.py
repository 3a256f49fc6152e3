"""Persistence: the registry database (SQLAlchemy Core; SQLite by default, PostgreSQL for several servers).

``sql.SqlDeviceStore`` is the one ``Database`` (connections, health, transactions); the other modules are the
repositories over it (lifecycle audit and deny list, enforcement queue, sessions, attestation results), each
implementing an interface the pure core declares (``policy.store``). Nothing in ``policy/`` imports this package.
"""
