"""The policy revision: a short SHA-256 of the effective policy document, so the hook, ``trustport decide``, the
worker and the decision log can say which policy they used, and ``trustport radius status`` which one each running
FreeRADIUS holds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

REVISION_CHARS = 12


def policy_revision(document: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys, no whitespace) of segments/sites/policy, hashed; stable across YAML formatting,
    key order and comments, changed by any change of meaning."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:REVISION_CHARS]
