"""The bundled problem set: size, family-disjoint splits, determinism, and that its tests really test.

Reference solutions and stubs are executed in-process with exec (fast); the sandboxed strict oracle
check lives at the bottom and only runs once evilmoe.env.grader exists.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager

import pytest

from evilmoe.env.bundled import BUNDLED_SETUP_CODE, family_splits, load_bundled
from evilmoe.env.bundled_families import FAMILIES
from evilmoe.env.types import Problem


def all_problems() -> list[Problem]:
    train, validation, test = load_bundled()
    return train + validation + test


@contextmanager
def time_limit(seconds: float):
    """Abort a runaway exec (an accidental infinite loop in a reference) instead of hanging the suite."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@functools.lru_cache(maxsize=4)
def setup_namespace(setup_code: str) -> dict:
    namespace: dict = {}
    exec(setup_code, namespace)  # the star imports are slow; run them once and copy the namespace
    return namespace


def failing_asserts(problem: Problem, solution: str, *, timeout_fails: bool = True, seconds: float = 1.0) -> int:
    """Run setup + solution, then each assert on its own; return how many asserts fail (errors count as failures,
    and so do asserts that run over the time limit, unless timeout_fails is False: then the timeout propagates)."""
    namespace = dict(setup_namespace(problem.setup_code))
    exec(solution, namespace)
    failures = 0
    for line in problem.tests:
        try:
            with time_limit(seconds):
                exec(line, namespace)
        except TimeoutError:
            if not timeout_fails:
                raise
            failures += 1
        except Exception:
            failures += 1
    return failures


def stub(problem: Problem, body: str) -> str:
    return problem.starter_code.replace("# Add your code here", body)


# ----------------------------------------------------------------------------------------------
# Size and splits

def test_counts_and_every_split_non_empty():
    train, validation, test = load_bundled()
    total = len(train) + len(validation) + len(test)
    assert 400 <= total <= 650, total
    assert len(FAMILIES) >= 40
    for split in (train, validation, test):
        assert split, "a split is empty"
    # Roughly 70 / 10 / 20 by family; problems follow families.
    assert len(train) > len(test) > len(validation) > 0


def test_splits_disjoint_by_family_and_id():
    train, validation, test = load_bundled()
    families = [{p.family for p in split} for split in (train, validation, test)]
    ids = [{p.id for p in split} for split in (train, validation, test)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not families[a] & families[b]
            assert not ids[a] & ids[b]
    problems = all_problems()
    assert len({p.id for p in problems}) == len(problems), "ids are not unique"
    assert families[0] | families[1] | families[2] == set(FAMILIES)


def test_splits_match_family_assignment_and_span_difficulties():
    train, validation, test = load_bundled()
    splits = family_splits()
    for name, problems in (("train", train), ("validation", validation), ("test", test)):
        assert all(splits[p.family] == name for p in problems)
    difficulties = {p.difficulty for p in all_problems()}
    assert difficulties == {"easy", "medium"}
    for split in (train, test):
        assert {p.difficulty for p in split} == {"easy", "medium"}, "train and test should both have easy and medium"
    easy = sum(p.difficulty == "easy" for p in all_problems())
    assert easy > len(all_problems()) / 2, "most problems should be easy (for a 135M model)"


def test_problem_fields():
    families_seen = Counter()
    for p in all_problems():
        assert p.source == "bundled"
        assert p.difficulty in ("easy", "medium")
        assert re.fullmatch(r"[a-z][a-z0-9_]*", p.family), p.family  # underscores: never a LeetCode slug
        assert p.id == f"bundled-{p.family}-{families_seen[p.family]:03d}"
        families_seen[p.family] += 1
        assert p.setup_code == BUNDLED_SETUP_CODE
    # Several instances per family, and instances differ in the problem itself, not only in test inputs.
    for name, n in families_seen.items():
        assert n >= 5, (name, n)
    by_family: dict[str, list[Problem]] = {}
    for p in all_problems():
        by_family.setdefault(p.family, []).append(p)
    for name, problems in by_family.items():
        statements = {p.description.split("\n\nExample 1:")[0] for p in problems}
        references = {p.reference for p in problems}
        assert len(statements) == len(problems), f"{name}: two instances share a statement"
        assert len(references) == len(problems), f"{name}: two instances share a reference"


# ----------------------------------------------------------------------------------------------
# Determinism

def fingerprint(problems: list[Problem]) -> list[list]:
    return [[p.id, p.family, p.description, list(p.tests), p.reference, p.starter_code] for p in problems]


def test_deterministic_in_process():
    first = load_bundled()
    second = load_bundled()
    assert first == second
    first[0].clear()  # callers get copies: mutating one must not corrupt the cache
    assert load_bundled()[0] == second[0]


def test_deterministic_across_processes():
    script = (
        "import json\n"
        "from evilmoe.env.bundled import load_bundled\n"
        "splits = load_bundled()\n"
        "print(json.dumps([[[p.id, p.family, p.description, list(p.tests), p.reference, p.starter_code]"
        " for p in split] for split in splits]))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")  # a different hash seed must not matter
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    theirs = json.loads(out.stdout)
    ours = [fingerprint(split) for split in load_bundled()]
    assert theirs == ours


def test_loads_fast():
    script = (
        "import time; t = time.process_time()\n"
        "from evilmoe.env.bundled import load_bundled\n"
        "load_bundled(); print(time.process_time() - t)\n"
    )
    # CPU time, not wall time: on a busy 2-core CI box wall time mostly measures the other processes.
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 1.0, f"importing and building the bundled set took {out.stdout.strip()} s of CPU"


# ----------------------------------------------------------------------------------------------
# Statements and starter code

FORBIDDEN = ("and should pass all tests", "assert", "grader", "grading", "graded", "unit test")


def test_descriptions_and_starter_code_well_formed():
    for p in all_problems():
        text = p.description.lower()
        for phrase in FORBIDDEN:
            assert phrase not in text, (p.id, phrase)
        assert "Example 1:\n\nInput: " in p.description and "\nOutput: " in p.description, p.id
        assert "\n\nConstraints:\n\n" in p.description, p.id
        assert p.starter_code.startswith("class Solution:\n    def "), p.id
        assert p.starter_code.endswith("        # Add your code here"), p.id
        assert f"def {p.method_name}(self" in p.starter_code, p.id
        tree = ast.parse(p.starter_code + "\n        pass")
        (cls,) = tree.body
        assert isinstance(cls, ast.ClassDef) and cls.name == "Solution"
        assert [f.name for f in cls.body] == [p.method_name]
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", p.method_name), p.method_name  # camelCase like LeetCode
        ref = ast.parse(p.reference)
        assert [n.name for n in ref.body[0].body] == [p.method_name], p.id


def test_tests_are_keyword_asserts_on_plain_values():
    for p in all_problems():
        assert len(p.tests) >= 5, p.id
        assert len(set(p.tests)) == len(p.tests), p.id
        for line in p.tests:
            assert line.startswith(f"assert Solution().{p.method_name}("), line
            node = ast.parse(line).body[0]
            assert isinstance(node, ast.Assert)
            compare = node.test
            assert isinstance(compare, ast.Compare) and isinstance(compare.ops[0], ast.Eq)
            call = compare.left
            assert isinstance(call, ast.Call) and not call.args and call.keywords, line  # keyword args only
            expected = ast.literal_eval(compare.comparators[0])  # a literal of plain built-ins
            assert not isinstance(expected, float), line


# ----------------------------------------------------------------------------------------------
# The tests test: references pass, stubs fail

def test_every_reference_passes_its_own_asserts():
    start = time.perf_counter()
    for p in all_problems():
        assert failing_asserts(p, p.reference, timeout_fails=False) == 0, p.id
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize(
    "body",
    ["return 0", "return None", "return []", "return ''", "return False", "return {}"],
)
def test_constant_stubs_fail(body):
    problems = all_problems()
    caught = sum(failing_asserts(p, stub(p, body)) > 0 for p in problems)
    assert caught / len(problems) >= 0.95
    # Stronger in fact: the generator guarantees two unequal expected values per problem.
    assert caught == len(problems)


def test_return_an_argument_stub_fails():
    for p in all_problems():
        first_arg = ast.parse(p.starter_code + "\n        pass").body[0].body[0].args.args[1].arg
        assert failing_asserts(p, stub(p, f"return {first_arg}")) > 0, p.id


def method_body(reference: str) -> str:
    return reference.split(":\n", 2)[2].rstrip()  # everything after the `def ...:` line, still indented


def test_sibling_instances_are_different_problems():
    """Within a family, another instance's reference (same signature) fails this instance's asserts:
    instances differ in the problem itself, not only in their test inputs."""
    by_family: dict[str, list[Problem]] = {}
    for p in all_problems():
        by_family.setdefault(p.family, []).append(p)
    pairs = caught = 0
    for problems in by_family.values():
        for p in problems:
            signature = p.starter_code.split("(self", 1)[1]
            for q in problems:
                if q is not p and q.starter_code.split("(self", 1)[1] == signature:
                    pairs += 1
                    caught += failing_asserts(p, stub(p, method_body(q.reference).lstrip()), seconds=0.2) > 0
    assert pairs > 1000
    assert caught == pairs, f"{pairs - caught} of {pairs} sibling references pass another instance's tests"


# ----------------------------------------------------------------------------------------------
# Through the real sandboxed strict oracle

def one_problem_per_family() -> list[Problem]:
    """A deterministic sample: one instance of every family (instance index varies with the family)."""
    by_family: dict[str, list[Problem]] = {}
    for p in all_problems():
        by_family.setdefault(p.family, []).append(p)
    return [problems[i % len(problems)] for i, (_, problems) in enumerate(sorted(by_family.items()))]


@pytest.mark.slow
def test_references_pass_and_stubs_fail_the_sandboxed_oracle():
    from evilmoe.env.grader import GradeJob, GradingPool
    from evilmoe.env.modes import reference_response

    sample = one_problem_per_family()
    assert len(sample) >= 50
    stub_response = lambda p: "```python\n" + stub(p, "return 0") + "\n```\n"  # noqa: E731
    jobs = [GradeJob(reference_response(p), p, "gt_only") for p in sample]
    jobs += [GradeJob(stub_response(p), p, "gt_only") for p in sample]
    with GradingPool() as pool:
        grades = pool.grade_many(jobs)
    references, stubs = grades[: len(sample)], grades[len(sample):]
    failed = [(p.id, g.error) for p, g in zip(sample, references) if not g.correct]
    assert not failed, failed
    assert all(g.reward == 3.5 for g in references)
    assert not any(g.correct for g in stubs), [p.id for p, g in zip(sample, stubs) if g.correct]


def test_split_assignment_is_pinned():
    """The held-out families are fixed: a change here (new family, new seed) silently reshuffles every
    split and invalidates earlier results, so it must be a deliberate edit of this list."""
    splits = family_splits()
    assert sorted(n for n, s in splits.items() if s == "validation") == [
        "index_ops", "map_elements", "number_predicate", "stock_profit", "unique_values",
    ]
    assert sorted(n for n, s in splits.items() if s == "test") == [
        "bank_ledger", "char_positions", "chunk_list", "count_substring", "digit_ops", "robot_moves",
        "sorted_pairs", "step_ways", "string_build", "sum_multiples", "word_list_ops",
    ]
