"""Fixtures shared by the unit tests: a hook on a fresh registry (``hook``), an attestation setup (``env``)."""

from tests.attest_env import env  # noqa: F401
from tests.support.hook_env import hook  # noqa: F401
