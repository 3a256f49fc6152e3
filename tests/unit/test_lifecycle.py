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


def test_decommissioned_can_only_be_reonboarded() -> None:
    assert [a.name for a in ACTIONS.values() if S.DECOMMISSIONED in a.allowed_from] == ["reonboard"]


def test_only_revoke_denies_the_certificate() -> None:
    assert [a.name for a in ACTIONS.values() if a.deny_certificate] == ["revoke"]


def test_unknown_action() -> None:
    with pytest.raises(TransitionRefused, match="unknown action"):
        apply_action("teleport", S.PENDING)
