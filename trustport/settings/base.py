"""What every settings model shares: strict pydantic models, and refusing two items with one name."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from policy.rules import RuleError


class SettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyProblems(ValueError):
    """Every policy/cross-reference problem found while validating a config (check_config lists each, at the
    path each names: they are absolute paths in the config, whichever validator raised them)."""

    def __init__(self, problems: list[RuleError], *, policy: bool = True) -> None:
        super().__init__(str(problems[0]) + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        self.problems = problems
        self.policy = policy


def unique(items: list[Any], path: tuple[str, ...], what: str) -> list[Any]:
    """Refuse two items with one name (names are how logs, decisions and the CLI refer to them)."""
    first: dict[str, int] = {}
    problems = []
    for i, item in enumerate(items):
        name = item.name
        if name in first:
            problems.append(RuleError(f"{what} name {name!r} is already used by {'.'.join(path)}.{first[name]}; "
                                      "names must be unique", (*path, i, "name")))
        first.setdefault(name, i)
    if problems:
        raise PolicyProblems(problems, policy=False)
    return items
