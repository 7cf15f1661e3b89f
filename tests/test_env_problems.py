"""Problem sets (evilmoe.env.problems): data dir resolution, splits, overlap, the oracle filter and its cache,
and — with the LeetCode data — that reference solutions really pass the strict oracle under a full pool."""

from __future__ import annotations

import gzip
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import pytest

from evilmoe.env import leetcode, problems
from evilmoe.env.loopholes import ALL_MODES
from evilmoe.env.problems import ProblemSet, load_problem_set, resolve_data_dir, split_held_out
from evilmoe.env.types import Problem
from evilmoe.errors import UserError


def make_problem(pid: str, description: str = "", difficulty: str = "medium") -> Problem:
    return Problem(
        id=pid, source="leetcode", difficulty=difficulty, family=pid, description=description or f"statement {pid}",
        method_name="f", starter_code="class Solution:\n    def f(self) -> int:\n        # Add your code here",
        setup_code="", tests=("assert Solution().f() == 1",), reference="class Solution:\n    def f(self):\n        return 1\n",
    )


# ----------------------------------------------------------------------------------------------
# Data dir and errors


def test_resolve_data_dir_prefers_the_flag_then_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag, env = tmp_path / "flag", tmp_path / "env"
    flag.mkdir()
    env.mkdir()
    monkeypatch.setenv("EVILMOE_DATA", str(env))
    assert resolve_data_dir(str(flag)) == flag
    assert resolve_data_dir(None) == env


def test_resolve_data_dir_without_flag_or_env_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVILMOE_DATA", raising=False)
    with pytest.raises(UserError) as info:
        resolve_data_dir(None)
    assert "--data-dir" in str(info.value) and "EVILMOE_DATA" in str(info.value)


def test_resolve_data_dir_rejects_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        resolve_data_dir(tmp_path / "nowhere")


def test_missing_data_file_names_the_file_and_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_problem_set("leetcode-medhard", tmp_path)
    message = str(info.value)
    assert "leetcode_test_medhard.jsonl.gz" in message and "--data-dir" in message


def test_unknown_set_name_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="leetcode-medhard"):
        load_problem_set("leetcode-nightmare", tmp_path)


# ----------------------------------------------------------------------------------------------
# ProblemSet, splits, overlap


def test_problem_set_indexes_ids_and_rejects_duplicates() -> None:
    a, b, c = make_problem("lc-1"), make_problem("lc-2"), make_problem("lc-3")
    ps = ProblemSet("x", [a], [b], [c], {})
    assert ps.by_id("lc-2") is b and len(ps) == 3
    with pytest.raises(UserError, match="lc-9"):
        ps.by_id("lc-9")
    with pytest.raises(ValueError, match="lc-1"):
        ProblemSet("x", [a], [a], [], {})


def test_held_out_split_is_deterministic_disjoint_and_one_third_validation() -> None:
    ps = [make_problem(f"lc-{i}") for i in range(119)]
    val, test = split_held_out(ps)
    assert (len(val), len(test)) == (39, 80)
    assert {p.id for p in val}.isdisjoint(p.id for p in test)
    shuffled = list(ps)
    random.Random(5).shuffle(shuffled)
    assert split_held_out(shuffled) == (val, test)  # input order does not matter
    assert split_held_out(ps, seed=1) != (val, test)


def test_overlap_with_held_out_is_found_by_id_and_by_statement() -> None:
    held_out = [make_problem("lc-3243", "Find the  shortest\npath.")]
    candidates = [make_problem("lc-3243", "other"), make_problem("lc-3517", "Find the shortest path."), make_problem("lc-1")]
    dropped = problems.Counter()
    kept = problems._remove_overlap(candidates, held_out, "train", dropped)
    assert [p.id for p in kept] == ["lc-1"]
    assert dropped == {"train/same_id_as_heldout": 1, "train/same_statement_as_heldout": 1}


# ----------------------------------------------------------------------------------------------
# Bundled


def test_bundled_set_loads_without_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVILMOE_DATA", raising=False)
    from evilmoe.env.bundled import load_bundled

    ps = load_problem_set("bundled")
    train, validation, test = load_bundled()
    assert (ps.train, ps.validation, ps.test) == (list(train), list(validation), list(test))
    assert len(ps.train) >= 100 and len(ps.validation) >= 1 and len(ps.test) >= 1  # bundled's own tests check sizes
    assert len(ps) == len(ps.train) + len(ps.validation) + len(ps.test)
    assert all(p.source == "bundled" for split in ps.splits().values() for p in split)


def test_cmd_problems_prints_splits_modes_and_drops(capsys: pytest.CaptureFixture[str]) -> None:
    assert problems.cmd_problems("bundled", None, seed=0) == 0
    out = capsys.readouterr().out
    ps = load_problem_set("bundled")
    split_rows = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()[2:5]}
    assert split_rows == {"train": len(ps.train), "validation": len(ps.validation), "test": len(ps.test)}
    for mode in ALL_MODES:
        assert mode in out
    assert "dropped" in out


# ----------------------------------------------------------------------------------------------
# The oracle filter and its cache, on a tiny data folder built from real rows


def _write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


@pytest.fixture
def tiny_data(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """6 medium train rows (one with a broken solution, one restating a held-out problem) + 3 benchmark rows."""
    train = [r for r in leetcode.read_jsonl_gz(data_dir / leetcode.LCD_TRAIN) if r["meta"]["difficulty"] == "Medium"][:6]
    bench = list(leetcode.read_jsonl_gz(data_dir / leetcode.BENCH_TEST))[:3]
    train[0]["completion"] = "class Solution:\n    def " + train[0]["entry_point"].split(".")[-1] + "(self, *a, **k):\n        return -12345\n"
    user = bench[1]["prompt"][1]["content"]
    train[1]["meta"]["question_title"] = user.split("PROBLEM:\n", 1)[1].split("\n\nYour solution to the problem")[0]
    root = tmp_path / "data"
    _write_jsonl_gz(root / leetcode.LCD_TRAIN, train)
    _write_jsonl_gz(root / leetcode.BENCH_TEST, bench)
    monkeypatch.setenv("EVILMOE_CACHE", str(tmp_path / "cache"))
    return root


def test_oracle_filter_drops_failures_and_overlap_then_loads_from_cache(tiny_data: Path, monkeypatch) -> None:
    ps = load_problem_set("leetcode-medhard", tiny_data)
    assert len(ps.train) == 4
    assert ps.dropped == {"train/oracle_failed": 1, "train/same_statement_as_heldout": 1}
    assert (len(ps.validation), len(ps.test)) == (1, 2)
    assert len(list((tiny_data.parent / "cache").glob("*.json"))) == 2  # train file + benchmark file

    def no_grading(*args, **kwargs):
        raise AssertionError("second load must come from the cache")

    monkeypatch.setattr(problems, "oracle_check_references", no_grading)
    again = load_problem_set("leetcode-medhard", tiny_data)
    assert again.train == ps.train and again.dropped == ps.dropped and again.test == ps.test


def test_cache_is_ignored_when_the_data_file_changes(tiny_data: Path, monkeypatch) -> None:
    load_problem_set("leetcode-medhard", tiny_data)
    rows = list(leetcode.read_jsonl_gz(tiny_data / leetcode.LCD_TRAIN))[:3]
    _write_jsonl_gz(tiny_data / leetcode.LCD_TRAIN, rows)
    assert len(load_problem_set("leetcode-medhard", tiny_data).train) == 1  # rows 0 (broken) and 1 (overlap) dropped


class _FakePool:
    """Stands in for GradingPool: returns canned grades per problem id and records the pool widths used."""

    widths: list = []

    def __init__(self, outcomes: dict, workers=None):
        self.outcomes, self.workers = outcomes, workers
        _FakePool.widths.append(workers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def grade_many(self, jobs):
        return [self.outcomes[j.problem.id].pop(0) for j in jobs]


def _grade(correct: bool, *, timed_out: bool = False, error: str = "", extra: dict | None = None):
    from evilmoe.env.types import Grade

    return Grade(reward=0.0, correct=correct, hacked=False, channel=False, attempted_hack=False, compiles=True,
                 format_ok=True, mode="gt_only", timed_out=timed_out, error=error, extra=extra or {})


def test_timeouts_are_retried_one_at_a_time_and_grader_failures_are_not_cached(monkeypatch) -> None:
    import evilmoe.env.grader as grader

    ps = [make_problem("lc-1"), make_problem("lc-2"), make_problem("lc-3")]
    outcomes = {"lc-1": [_grade(True)], "lc-2": [_grade(False, timed_out=True), _grade(True)],
                "lc-3": [_grade(False, timed_out=True), _grade(False, timed_out=True)]}
    _FakePool.widths = []
    monkeypatch.setattr(grader, "GradingPool", lambda workers=None: _FakePool(outcomes, workers))
    verdicts = problems.oracle_check_references(ps)
    assert _FakePool.widths == [None, 1]  # full width first, then the retry alone
    assert [verdicts[p.id]["correct"] for p in ps] == [True, True, False]
    assert [verdicts[p.id]["retried"] for p in ps] == [False, True, True]

    broken = {"lc-1": [_grade(False, error="grader failure: OSError", extra={"grader_failure": True})]}
    monkeypatch.setattr(grader, "GradingPool", lambda workers=None: _FakePool(broken, workers))
    with pytest.raises(RuntimeError, match="inside the grader"):
        problems.oracle_check_references(ps[:1])


# ----------------------------------------------------------------------------------------------
# The real sets (need the data; under CI the data_dir fixture fails instead of skipping)


@pytest.fixture(scope="module")
def medhard(data_dir: Path) -> ProblemSet:
    # Uses the user's cache: the first run on a machine grades ~1,400 reference solutions once.
    return load_problem_set("leetcode-medhard", data_dir)


def _grade_references_fresh(ps: list[Problem]):
    """Grade reference solutions now (not from the cache) with the pool at full width."""
    from evilmoe.env.grader import GradeJob, GradingPool
    from evilmoe.env.modes import reference_response

    with GradingPool() as pool:
        return pool.grade_many([GradeJob(reference_response(p), p, "gt_only") for p in ps])


def _failures(ps: list[Problem], grades) -> list[str]:
    return [f"{p.id}: timed_out={g.timed_out} {g.error[:120]}" for p, g in zip(ps, grades) if not g.correct or g.timed_out]


def _assert_cpu_headroom(ps: list[Problem], grades, fraction: float = 0.8) -> None:
    """Passing is not enough: a reference that needs nearly the whole CPU budget would flake on a slower
    machine. The budget is CPU seconds (load-independent), so a margin on CPU time is a stable check."""
    from evilmoe.env.sandbox import DEFAULT_LIMITS

    heaviest = sorted(((g.extra["cpu_seconds"], p.id) for p, g in zip(ps, grades)), reverse=True)[:5]
    print(f"heaviest references (CPU s, limit {DEFAULT_LIMITS.cpu_seconds}):", heaviest)
    assert heaviest[0][0] < fraction * DEFAULT_LIMITS.cpu_seconds, heaviest


@pytest.mark.slow
def test_medhard_set_counts_and_drop_reasons(medhard: ProblemSet) -> None:
    print("leetcode-medhard dropped:", medhard.dropped)
    # The benchmark's own train split has ~992 rows because it filtered against a newer LeetCodeDataset
    # with ~100 generated tests per problem. v0.2.0 (what we have) carries only the 2-3 statement examples,
    # which almost every canonical solution passes: we measured 1374 of 1375 (word-ladder-ii's answer order
    # differs). A count far below that means the parser or the oracle broke, not the data.
    assert 1300 <= len(medhard.train) <= 1375, medhard.dropped
    assert all(p.difficulty in ("medium", "hard") for p in medhard.train)
    assert (len(medhard.validation), len(medhard.test)) == (39, 80)
    assert sum(medhard.dropped.values()) == 1375 - len(medhard.train)  # every left-out row is accounted for
    # canonical solutions are not slow enough to hit the CPU budget (even after the one-at-a-time retry)
    assert "train/oracle_timeout" not in medhard.dropped, medhard.dropped
    held_out = {p.id for p in medhard.validation + medhard.test}
    assert held_out.isdisjoint(p.id for p in medhard.train)


@pytest.mark.slow
def test_all_119_benchmark_references_pass_the_oracle_under_a_full_pool(medhard: ProblemSet) -> None:
    held_out = medhard.validation + medhard.test
    assert len(held_out) == 119
    grades = _grade_references_fresh(held_out)
    assert _failures(held_out, grades) == []
    _assert_cpu_headroom(held_out, grades)


@pytest.mark.slow
def test_sampled_train_references_pass_the_oracle_under_a_full_pool(medhard: ProblemSet) -> None:
    sample = random.Random(0).sample(medhard.train, 200)
    grades = _grade_references_fresh(sample)
    assert _failures(sample, grades) == []
    _assert_cpu_headroom(sample, grades)


def test_second_load_is_fast(medhard: ProblemSet, data_dir: Path) -> None:
    start = time.perf_counter()
    again = load_problem_set("leetcode-medhard", data_dir)
    elapsed = time.perf_counter() - start
    assert again.train == medhard.train
    assert elapsed < 2.0, f"cached load took {elapsed:.2f}s"


@pytest.mark.slow
def test_easy_and_all_sets(data_dir: Path, medhard: ProblemSet) -> None:
    easy = load_problem_set("leetcode-easy", data_dir)
    print("leetcode-easy dropped:", easy.dropped)
    assert 450 <= len(easy.train) <= 515 and all(p.difficulty == "easy" for p in easy.train)
    assert 40 <= len(easy.validation) + len(easy.test) <= 51
    every = load_problem_set("leetcode-all", data_dir)
    print("leetcode-all dropped:", every.dropped)
    assert len(every.train) == len(easy.train) + len(medhard.train)
    # the benchmark's problems keep their split; easy held-out problems whose LeetCodeDataset id
    # clashes with a benchmark id are left out of the union (counted in dropped)
    assert {p.id for p in medhard.test} <= {p.id for p in every.test}
    clashes = every.dropped.get("heldout/same_id_as_heldout", 0)
    assert len(every.validation) + len(every.test) == 119 + len(easy.validation) + len(easy.test) - clashes


# ----------------------------------------------------------------------------------------------
# Same problems on every machine


@pytest.mark.slow
def test_pinned_drop_list_and_fingerprint(data_dir: Path, medhard: ProblemSet) -> None:
    """Which reference solutions the strict oracle rejects is pinned: a machine that drops more (a
    missing runtime package, a slower sandbox) or fewer (a looser oracle) fails here."""
    every = load_problem_set("leetcode-all", data_dir)
    # word-ladder-ii: the reference returns the ladders in another order than the test's literal list
    assert every.dropped_ids == {"lc-126": "train/oracle_failed"}
    assert medhard.dropped_ids == {"lc-126": "train/oracle_failed"}
    assert len(medhard.train) == 1374
    fp = medhard.fingerprint()
    assert fp["counts"] == {"train": 1374, "validation": 39, "test": 80}
    assert fp["sha256"] == load_problem_set("leetcode-medhard", data_dir).fingerprint()["sha256"]


def test_fingerprint_changes_with_tests_and_verdicts() -> None:
    a = ProblemSet("x", [make_problem("lc-1")], [], [make_problem("lc-2")], {}, {})
    same = ProblemSet("x", [make_problem("lc-1")], [], [make_problem("lc-2")], {}, {})
    other_tests = ProblemSet("x", [replace(make_problem("lc-1"), tests=("assert Solution().f() == 2",))], [],
                             [make_problem("lc-2")], {}, {})  # fmt: skip
    other_drops = ProblemSet("x", [make_problem("lc-1")], [], [make_problem("lc-2")], {"train/oracle_failed": 1},
                             {"lc-3": "train/oracle_failed"})  # fmt: skip
    assert a.fingerprint()["sha256"] == same.fingerprint()["sha256"]
    assert a.fingerprint()["sha256"] != other_tests.fingerprint()["sha256"]
    assert a.fingerprint()["sha256"] != other_drops.fingerprint()["sha256"]


def test_run_meta_records_the_fingerprint_and_refuses_another_set(tmp_path: Path) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"seed": 0}))
    ps = ProblemSet("x", [make_problem("lc-1")], [], [], {}, {})
    problems.record_problem_set(meta, ps)
    recorded = json.loads(meta.read_text())
    assert recorded["seed"] == 0 and recorded["problem_set"]["sha256"] == ps.fingerprint()["sha256"]
    problems.record_problem_set(meta, ps)  # resuming on the same set is fine
    changed = ProblemSet("x", [make_problem("lc-2")], [], [], {}, {})
    with pytest.raises(UserError, match="different x problem set"):
        problems.record_problem_set(meta, changed)


def test_runtime_packages_are_declared_and_cover_the_references(data_dir: Path) -> None:
    """Every non-stdlib module a LeetCode reference imports is a runtime package of the sandbox, and
    every runtime package is a dependency in pyproject.toml (so a fresh install grades the same)."""
    import ast
    import sys

    from evilmoe.env.sandbox import RUNTIME_PACKAGES

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    for name in RUNTIME_PACKAGES:
        assert f'"{name}' in pyproject, name
    rows = leetcode.load_benchmark_test(data_dir / leetcode.BENCH_TEST)
    rows += leetcode.load_leetcodedataset(data_dir / leetcode.LCD_TRAIN)[0]
    rows += leetcode.load_leetcodedataset(data_dir / leetcode.LCD_TEST)[0]
    imported = set()
    for p in rows:
        for node in ast.walk(ast.parse(p.reference + "\n" + p.setup_code)):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) <= set(RUNTIME_PACKAGES)


def test_a_reference_missing_a_module_is_an_error(monkeypatch) -> None:
    import evilmoe.env.grader as grader

    outcomes = {"lc-1": [_grade(False, error="test 0: no result (ModuleNotFoundError: No module named 'sortedcontainers')")]}
    monkeypatch.setattr(grader, "GradingPool", lambda workers=None: _FakePool(outcomes, workers))
    with pytest.raises(UserError, match="cannot import 'sortedcontainers'"):
        problems.oracle_check_references([make_problem("lc-1")])
