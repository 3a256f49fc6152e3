"""rlm_python3 module: ``module = radius_hooks.freeradius``. The only file that imports ``radiusd``.

radiusd.config must carry ``settings = "/path/to/hook.json"`` (written by ``trustport radius render``).
"""

from __future__ import annotations

from typing import Any

import radiusd

from radius_hooks.hook import Hook

_hook = Hook(radiusd)


def instantiate(p: Any) -> int:
    return _hook.instantiate(radiusd.config)


def authorize(p: Any) -> int:
    return _hook.authorize(p)


def check_eap_tls(p: Any) -> Any:
    return _hook.check_eap_tls(p)


def post_auth(p: Any) -> int:
    return _hook.post_auth(p)


def accounting(p: Any) -> int:
    return _hook.accounting(p)


def detach(p: Any) -> int:
    return _hook.detach(p)
