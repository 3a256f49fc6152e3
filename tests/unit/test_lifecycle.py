from __future__ import annotations

import pytest

from policy.lifecycle import ACTIONS, TransitionRefused, apply_action
from policy.model import LifecycleState as S

ALL = list(S)


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("state", ALL)
def test_every_action_from_every_state(action: str, state: S) -> None:
    spec = ACTIONS[action]
    if state in spec.allowed_from:
        assert apply_action(action, state) is spec.target
    else:
        with pytest.raises(TransitionRefused, match=state.value):
            apply_action(action, state)


def test_decommissioned_is_final() -> None:
    assert all(S.DECOMMISSIONED not in a.allowed_from for a in ACTIONS.values())


def test_unknown_action() -> None:
    with pytest.raises(TransitionRefused, match="unknown action"):
        apply_action("teleport", S.PENDING)
