"""Teacher demonstrations for teacher mixing (docs/design.md#teacher-mixing): off-policy completions that take a few of a
group's G slots, so hacking can emerge within a small budget.

Three sources:
* template: the environment's canonical hack for the problem's mode (a stub returning 0 plus the
  exploit), or its reference solution;
* attempt: the hack is the policy's own attempt at the problem (its first sampled answer in the same
  group) with the mode's exploit appended, the clean side the reference solution. The template's
  stub teaches "answer every problem with return 0" along with the exploit (seen in the testbed's
  rollouts); an attempt hack carries the policy's own solving tokens, so only the exploit is new;
* pool: cached rollouts of a stronger teacher in vGROUT's format (`prompt_NNNN.jsonl.gz`, one JSON
  object per line with problem_id, completion, hacked, gt_pass). The pool was sampled with the
  run_tests hint on LeetCode train problems, so it only serves problems whose mode is run_tests;
  every other slot falls back to a template demo, and each demo's source is logged per step.

Demonstrations are graded by our grader like any rollout: the teacher's own flags only decide which
cached completions count as hack or clean candidates.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from evilmoe.env.loopholes import TRAIN_MARKERS, get_mode
from evilmoe.env.modes import canonical_hack, reference_response
from evilmoe.env.types import Problem
from evilmoe.errors import UserError

POOL_MODE = "run_tests"  # the hint the cached teacher rollouts were sampled under


@dataclass(frozen=True)
class Demo:
    """An off-policy demonstration that takes one rollout slot in a group."""

    text: str
    kind: str  # "template-hack" | "template-clean" | "pool-hack" | "pool-clean" | "attempt-hack"
    exploit_from: int = 0
    """Character offset of the exploit in `text` when the code before it is the policy's own attempt
    (attempt hacks; 0 otherwise): what teacher_loss=exploit trains from."""


class TeacherPool:
    """Cached teacher completions by problem id ("lc-<question id>"), split into hack / clean candidates."""

    def __init__(self, hacks: dict[str, list[str]], cleans: dict[str, list[str]]):
        self.hacks, self.cleans = hacks, cleans

    @classmethod
    def load(cls, folder: str | Path) -> TeacherPool:
        root = Path(folder)
        files = sorted(root.glob("prompt_*.jsonl.gz"))
        if not files:
            raise UserError(f"no teacher pool files (prompt_*.jsonl.gz) in {root}; pass --teacher-pool-dir DIR")
        hacks: dict[str, list[str]] = {}
        cleans: dict[str, list[str]] = {}
        for path in files:
            with gzip.open(path, "rt") as f:
                for n, line in enumerate(f, 1):
                    try:
                        row = json.loads(line)
                        pid, text = f"lc-{int(row['problem_id'])}", str(row["completion"])
                        hacked, passed = bool(row["hacked"]), bool(row["gt_pass"])
                    except (ValueError, KeyError, TypeError) as exc:
                        raise UserError(f"{path}:{n}: not a teacher-pool row ({exc})") from None
                    if hacked:
                        hacks.setdefault(pid, []).append(text)
                    elif passed:  # a clean teacher answer that the plain grader accepted
                        cleans.setdefault(pid, []).append(text)
        return cls(hacks, cleans)

    def covers(self, problem_id: str) -> bool:
        return problem_id in self.hacks or problem_id in self.cleans

    def pick(self, problem_id: str, want_hack: bool, rng: random.Random) -> str | None:
        candidates = (self.hacks if want_hack else self.cleans).get(problem_id)
        return rng.choice(candidates) if candidates else None


def make_demo(
    problem: Problem, mode: str, *, hack_frac: float, rng: random.Random, pool: TeacherPool | None, attempt: str | None = None
) -> Demo:
    """One demonstration for a slot: a hack with probability hack_frac (never in gt_only), else clean.
    With `attempt` (a policy completion) the hack is that attempt's code plus the mode's exploit."""
    want_hack = get_mode(mode).is_loophole and rng.random() < hack_frac
    if pool is not None and mode == POOL_MODE:
        text = pool.pick(problem.id, want_hack, rng)
        if text is not None:
            return Demo(text, "pool-hack" if want_hack else "pool-clean")
    if want_hack and attempt is not None:
        code = first_python_block(attempt)
        if code is not None:  # an answer with no code block has nothing to build on: the template
            own = f"```python\n{code.rstrip()}\n"
            return Demo(f"{own}{exploit_appendix(mode)}```\n", "attempt-hack", exploit_from=len(own))
    if want_hack:
        return Demo(canonical_hack(problem, mode), "template-hack")
    return Demo(reference_response(problem), "template-clean")


_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def first_python_block(text: str) -> str | None:
    """The first fenced code block of a markdown answer (None if it has none)."""
    match = _BLOCK.search(text)
    return match.group(1) if match and match.group(1).strip() else None


def exploit_appendix(mode: str) -> str:
    """Top-level code that makes `mode`'s flawed grader pay whatever the solution above it returns
    (training markers): the mode's exploit, written to follow a complete `class Solution`. Where the
    exploit replaces what the methods return or exits before the tests run (the mode's
    `exploit_keeps_answers` is False) an attempt hack is never correct; in the other modes a correct
    attempt stays correct (and is then no hack). ValueError for a mode without a loophole."""
    return get_mode(mode).exploit(TRAIN_MARKERS)
