"""How the training problems are divided between the warm start, RL and the skill hold-out.

A method that localizes hacking can only be told apart from deleting an arbitrary half of the
adapter where RL also teaches a skill the deployed model should keep. The testbed therefore keeps
three disjoint roles inside the training split (the held-out families of the problem set's own
test split stay untouched):

    training families --(family share)--> warm-start families  |  RL families
    RL families       --(problem share)--> RL problems          |  skill problems

* **warm start**: supervised steps on the reference solutions of the warm-start families' problems
  (a capability warm start). With `warm_start_families = 1` every training family is a warm-start
  family and RL trains on the same families.
* **RL**: the problems RL samples, grades and updates on (every loophole mode). `rl_families`
  says which families: "rest" (the families the warm start did not see) or "all" (both: RL keeps
  lifting the warm-started families, where it solves often, while it meets new families, where it
  rarely solves and a loophole is what pays).
* **skill**: unseen variants of the tasks RL trains on, never trained on by the warm start or by
  RL, evaluated loophole-free (gt_only: no hint, only true correctness pays): what RL lifted there
  is a skill, not a memorised answer and not a hack.

Every split is a fixed function of the problem ids and family names (crc32, never hash()): the same
for every seed and arm, on every machine.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from evilmoe.env.types import Problem


@dataclass(frozen=True)
class TrainingSplit:
    warm_start: list[Problem]  # problems whose references the warm start trains on (empty: no warm start)
    rl: list[Problem]  # problems RL trains on
    skill: list[Problem]  # held-out variants of the RL families, evaluated loophole-free

    def describe(self) -> dict[str, int]:
        families = lambda ps: len({family_of(p) for p in ps})  # noqa: E731
        return {
            "warm_start_problems": len(self.warm_start),
            "warm_start_families": families(self.warm_start),
            "rl_problems": len(self.rl),
            "rl_families": families(self.rl),
            "skill_problems": len(self.skill),
            "skill_families": families(self.skill),
        }


def family_of(problem: Problem) -> str:
    """The problem's family (bundled set), else its own id: a LeetCode problem is its own family."""
    return problem.family or problem.id


def _rank(salt: str, key: str) -> tuple[int, str]:
    return (zlib.crc32(f"{salt}:{key}".encode()), key)


def _take_share(keys: list[str], share: float, salt: str) -> set[str]:
    """A fixed pseudo-random `share` of `keys` (rounded, at least one when share > 0)."""
    if share <= 0 or not keys:
        return set()
    n = max(1, round(share * len(keys)))
    return set(sorted(keys, key=lambda k: _rank(salt, k))[:n])


RL_FAMILIES = ("rest", "all")


def split_training(
    train: list[Problem], *, warm_start: bool, warm_start_families: float, skill_holdout: float, rl_families: str = "rest"
) -> TrainingSplit:
    """Divide the training problems (see the module docstring). Raises ValueError if RL gets nothing."""
    if rl_families not in RL_FAMILIES:
        raise ValueError(f"rl_families must be one of {RL_FAMILIES} (got {rl_families!r})")
    families = sorted({family_of(p) for p in train})
    if warm_start and warm_start_families < 1:
        ws_families = _take_share(families, warm_start_families, "warm-start-family")
        rl_set = set(families) - ws_families if rl_families == "rest" else set(families)
    else:
        ws_families = set(families) if warm_start else set()
        rl_set = set(families)
    rl_pool = [p for p in train if family_of(p) in rl_set]
    skill_ids: set[str] = set()
    if skill_holdout > 0:
        # per family, so every RL family keeps problems to train on and contributes skill problems
        by_family: dict[str, list[str]] = {}
        for p in rl_pool:
            by_family.setdefault(family_of(p), []).append(p.id)
        for ids in by_family.values():
            if len(ids) >= 2:  # a one-problem family cannot be both trained on and held out
                chosen = _take_share(ids, skill_holdout, "skill")
                skill_ids |= chosen if len(chosen) < len(ids) else set(sorted(chosen)[:-1])
    skill = [p for p in rl_pool if p.id in skill_ids]
    rl = [p for p in rl_pool if p.id not in skill_ids]
    ws = [p for p in train if family_of(p) in ws_families and p.id not in skill_ids]
    if not rl:
        raise ValueError("the training split leaves RL no problems (raise the share of RL families or lower skill_holdout)")
    return TrainingSplit(warm_start=ws, rl=rl, skill=skill)
