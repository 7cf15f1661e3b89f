"""The bundled problem set: generated small function problems shipped with the package.

Why it exists: the tool must run with no external data, and a small model (SmolLM2-135M) solves
almost no LeetCode problem, so RL on LeetCode alone gives it nothing to learn from. These problems
use the LeetCode format exactly (a method of `class Solution`, a LeetCode-style statement with
examples and constraints, keyword-argument assert tests), so the same prompt builder, loophole modes
and grader apply unchanged.

How a problem is made (families live in bundled_families.py):
  family variant -> Spec (statement, signature, reference body, input generator, edge cases)
  -> draw inputs with random.Random(seed derived from the id) -> run the reference on them
  -> expected values -> assert lines and the statement's examples.
Expected values therefore come from executing the reference, never from hand-typed numbers.

Splits are disjoint by *family* (a test family is never seen in training, only its kind of task),
assigned by a fixed seed, stratified by difficulty. Everything is deterministic across processes
and Python versions: seeds are explicit integers (zlib.crc32 of the id), never hash().
"""

from __future__ import annotations

import functools
import itertools
import random
import textwrap
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from evilmoe.env.bundled_families import FAMILIES, Family, Inputs, Spec
from evilmoe.env.types import Problem

# The LeetCode benchmark's import preamble (its ListNode / TreeNode helpers are not needed here).
BUNDLED_SETUP_CODE = """import random
import functools
import collections
import string
import math
import datetime

from typing import *
from functools import *
from collections import *
from itertools import *
from heapq import *
from bisect import *
from string import *
from operator import *
from math import *

inf = float('inf')
"""

N_TESTS = 10         # assert lines per problem (edge cases first, then random inputs)
N_EXAMPLES = 2       # worked examples in the statement, drawn separately from the tests
MAX_DRAWS = 300      # random inputs tried per problem before giving up on distinct, discriminative tests
SPLIT_SEED = 20250611
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.2
PLAIN_TYPES = (int, str, bool, list, dict, type(None))


# ----------------------------------------------------------------------------------------------
# Rendering

def format_args(inputs: Inputs) -> str:
    """Keyword arguments as the LeetCode tests write them: `nums = [1, 2], k = 3`."""
    return ", ".join(f"{name} = {value!r}" for name, value in inputs.items())


def method_header(spec: Spec) -> str:
    return f"class Solution:\n    def {spec.method}(self, {spec.params}) -> {spec.returns}:\n"


def reference_source(spec: Spec) -> str:
    return method_header(spec) + textwrap.indent(spec.body, " " * 8) + "\n"


def starter_code(spec: Spec) -> str:
    # Same shape as the benchmark's starter code: the comment line, no trailing newline.
    return method_header(spec) + "        # Add your code here"


def describe(spec: Spec, examples: list[tuple[Inputs, Any]]) -> str:
    parts = [spec.statement, ""]
    for i, (inputs, output) in enumerate(examples, 1):
        parts += [f"Example {i}:", "", f"Input: {format_args(inputs)}", f"Output: {output!r}", ""]
    parts += ["Constraints:", ""] + list(spec.constraints)
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Running the reference

@functools.lru_cache(maxsize=1)
def _setup_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(BUNDLED_SETUP_CODE, namespace)
    return namespace


def compile_reference(source: str, method: str) -> Callable[..., Any]:
    namespace = dict(_setup_namespace())
    exec(compile(source, "<bundled-reference>", "exec"), namespace)
    return getattr(namespace["Solution"](), method)


def check_plain(value: Any, where: str) -> None:
    """Expected values must be plain built-ins (the strict oracle compares them exactly); floats are banned."""
    if not isinstance(value, PLAIN_TYPES):
        raise TypeError(f"{where}: expected value {value!r} has type {type(value).__name__}, not a plain built-in")
    if isinstance(value, list):
        for item in value:
            check_plain(item, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, where)
            check_plain(item, where)


def plain_copy(value: Any) -> Any:
    """Deep copy of nested lists / dicts of immutable built-ins (much faster than copy.deepcopy)."""
    if isinstance(value, list):
        return [plain_copy(item) for item in value]
    if isinstance(value, dict):
        return {key: plain_copy(item) for key, item in value.items()}
    return value


def run_reference(fn: Callable[..., Any], inputs: Inputs, where: str) -> Any:
    # A copy: a reference that mutates its input must not change the test text.
    output = fn(**{name: plain_copy(value) for name, value in inputs.items()})
    check_plain(output, where)
    return output


# ----------------------------------------------------------------------------------------------
# Choosing test cases

def stub_coverage(cases: list[tuple[Inputs, Any]]) -> int:
    """How many stub kinds the cases defeat: any constant stub (`return 0`, `return None`...) needs two unequal
    outputs; a `return <argument>` stub needs a case whose output differs from that argument."""
    if not cases:
        return 0
    outputs = [out for _, out in cases]
    score = int(any(out != outputs[0] for out in outputs))
    return score + sum(any(out != inputs[name] for inputs, out in cases) for name in cases[0][0])


def discriminates(cases: list[tuple[Inputs, Any]]) -> bool:
    return bool(cases) and stub_coverage(cases) == 1 + len(cases[0][0])


def draw_cases(spec: Spec, fn: Callable[..., Any], rng: random.Random, where: str) -> tuple[list, list]:
    """Edge cases plus distinct random inputs; returns (tests, examples), both lists of (inputs, output)."""
    seen: set[str] = set()

    def distinct(candidates: Iterable[Inputs]) -> Iterator[tuple[Inputs, Any]]:
        for inputs in candidates:
            key = format_args(inputs)
            if key not in seen:
                seen.add(key)
                yield inputs, run_reference(fn, inputs, where)

    edges = list(distinct(spec.edges))
    # Random inputs are drawn lazily, in a fixed order, so only as many as needed are generated (load time).
    draws = distinct(spec.gen(rng) for _ in range(MAX_DRAWS))
    tests = edges + list(itertools.islice(draws, N_TESTS - len(edges)))
    # If the first draws happen not to tell stubs apart (e.g. all outputs 0), swap in later draws that do.
    for candidate in draws:
        if discriminates(tests):
            break
        for i in range(len(tests) - 1, len(edges) - 1, -1):
            trial = tests[:i] + [candidate] + tests[i + 1:]
            if stub_coverage(trial) > stub_coverage(tests):
                tests = trial
                break
    if len(tests) < 5 or not discriminates(tests):
        raise RuntimeError(f"{where}: could not draw 5+ discriminative test inputs; fix the family's generator")
    examples = list(itertools.islice(draws, N_EXAMPLES))
    if len(examples) < N_EXAMPLES:  # tiny input space: reuse test inputs as examples rather than fail
        examples += tests[len(edges):][: N_EXAMPLES - len(examples)]
    return tests, examples


# ----------------------------------------------------------------------------------------------
# Problems and splits

def seed_for(problem_id: str) -> int:
    return zlib.crc32(problem_id.encode("utf-8"))


def build_problem(fam: Family, index: int) -> Problem:
    """Instance `index` of a family, fully determined by the family name and the index."""
    problem_id = f"bundled-{fam.name}-{index:03d}"
    spec = fam.make(fam.variants[index])
    reference = reference_source(spec)
    fn = compile_reference(reference, spec.method)
    tests, examples = draw_cases(spec, fn, random.Random(seed_for(problem_id)), problem_id)
    return Problem(
        id=problem_id,
        source="bundled",
        difficulty=fam.difficulty,
        family=fam.name,
        description=describe(spec, examples),
        method_name=spec.method,
        starter_code=starter_code(spec),
        setup_code=BUNDLED_SETUP_CODE,
        tests=tuple(f"assert Solution().{spec.method}({format_args(inputs)}) == {output!r}" for inputs, output in tests),
        reference=reference,
    )


def family_splits() -> dict[str, str]:
    """family name -> "train" | "validation" | "test"; fixed by SPLIT_SEED, stratified by difficulty."""
    splits: dict[str, str] = {}
    for difficulty in sorted({fam.difficulty for fam in FAMILIES.values()}):
        names = sorted(name for name, fam in FAMILIES.items() if fam.difficulty == difficulty)
        random.Random(SPLIT_SEED + seed_for(difficulty)).shuffle(names)
        n_test = max(1, round(TEST_FRACTION * len(names)))
        n_val = max(1, round(VALIDATION_FRACTION * len(names)))
        for i, name in enumerate(names):
            splits[name] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return splits


@functools.lru_cache(maxsize=1)
def _load() -> tuple[tuple[Problem, ...], tuple[Problem, ...], tuple[Problem, ...]]:
    splits = family_splits()
    by_split: dict[str, list[Problem]] = {"train": [], "validation": [], "test": []}
    for name in sorted(FAMILIES):
        fam = FAMILIES[name]
        for index in range(len(fam.variants)):
            by_split[splits[name]].append(build_problem(fam, index))
    return tuple(by_split["train"]), tuple(by_split["validation"]), tuple(by_split["test"])


def load_bundled() -> tuple[list[Problem], list[Problem], list[Problem]]:
    """The bundled set as (train, validation, test) lists, sorted by id; built once per process, then cached."""
    train, validation, test = _load()
    return list(train), list(validation), list(test)
