"""Problem sets: which problems exist, how they split into train / validation / test, and why some were dropped.

  bundled            generated in this project (evilmoe.env.bundled); needs no data.
  leetcode-medhard   LeetCodeDataset train, medium + hard, kept where the canonical solution passes the
                     strict oracle; held out: the benchmark's 119 `leetcode_test_medhard` problems.
  leetcode-easy      the same pipeline for easy train problems; held out: the easy problems of
                     LeetCodeDataset's own test file (oracle-filtered too).
  leetcode-all       all difficulties; held out: the union of the two held-out sets.

Held-out problems are split into validation (a third) and test by a seeded shuffle of their ids; each
source is split on its own, so a problem lands in the same split in every set that contains it.

Running ~2,000 canonical solutions through the sandbox takes minutes on 2 cores, so the parsed problems
and each problem's oracle verdict are cached as JSON under $EVILMOE_CACHE (default ~/.cache/evilmoe),
keyed by the data file's sha256 and a hash of the grading code, and written atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evilmoe.env import leetcode
from evilmoe.env.loopholes import ALL_MODES
from evilmoe.env.types import Grade, Problem
from evilmoe.errors import UserError

SET_NAMES: tuple[str, ...] = ("bundled", "leetcode-easy", "leetcode-medhard", "leetcode-all")
_TRAIN_DIFFICULTIES = {
    "leetcode-easy": {"easy"},
    "leetcode-medhard": {"medium", "hard"},
    "leetcode-all": {"easy", "medium", "hard"},
}
SPLIT_SEED = 0  # validation/test split of held-out problems; fixed so every run sees the same split
CACHE_FORMAT = 1
_GRADING_MODULES = ("evilmoe.env.grader", "evilmoe.env.oracle", "evilmoe.env.sandbox", "evilmoe.env.modes")  # code behind a verdict


# ----------------------------------------------------------------------------------------------
# The set itself


@dataclass
class ProblemSet:
    """Problems of one set, split three ways. `dropped` counts problems left out, by "<split>/<reason>"."""

    name: str
    train: list[Problem]
    validation: list[Problem]
    test: list[Problem]
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_ids: dict[str, str] = field(default_factory=dict)  # problem id -> "<split>/<reason>" (oracle drops)

    def __post_init__(self) -> None:
        self._index: dict[str, Problem] = {}
        for split, problems in self.splits().items():
            for p in problems:
                if p.id in self._index:
                    raise ValueError(f"problem set {self.name}: id {p.id} occurs twice (second time in {split})")
                self._index[p.id] = p

    def splits(self) -> dict[str, list[Problem]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def by_id(self, problem_id: str) -> Problem:
        """The problem with this id in any split; UserError if the set has none."""
        try:
            return self._index[problem_id]
        except KeyError:
            raise UserError(
                f"no problem {problem_id!r} in set {self.name} (run `evilmoe problems --set {self.name}` to see it)"
            ) from None

    def __len__(self) -> int:
        return len(self._index)

    def fingerprint(self) -> dict[str, Any]:
        """What makes two machines' copies of this set the same: a sha256 over every kept problem's id,
        split, setup and tests, and the ids the strict oracle dropped (each reference's verdict), with
        the counts beside it for people. Each run records it in its meta.json (`record_problem_set`)."""
        h = hashlib.sha256()
        for split, problems in self.splits().items():
            for p in problems:
                h.update(json.dumps([split, p.id, p.setup_code, list(p.tests)]).encode())
        h.update(json.dumps(sorted(self.dropped_ids.items())).encode())
        return {
            "name": self.name,
            "sha256": h.hexdigest(),
            "counts": {split: len(ps) for split, ps in self.splits().items()},
            "dropped": dict(self.dropped),
            "grading_code_version": grading_code_version()[:16],
        }


# ----------------------------------------------------------------------------------------------
# Where things live


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The LeetCode data folder: the --data-dir flag, else $EVILMOE_DATA, else a UserError naming both."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get("EVILMOE_DATA") or None
        origin = "$EVILMOE_DATA"
    else:
        origin = "--data-dir"
    if data_dir is None:
        raise UserError(
            "the LeetCode problem sets need the data folder: pass --data-dir DIR or set EVILMOE_DATA "
            "(the folder holding leetcodedataset/ and rl_rewardhacking/, see shared/data/README.md); "
            "or use --set bundled, which needs no data"
        )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise UserError(f"data folder {path} (from {origin}) does not exist: pass --data-dir DIR or set EVILMOE_DATA")
    return path


def cache_dir() -> Path:
    """$EVILMOE_CACHE, else ~/.cache/evilmoe."""
    return Path(os.environ.get("EVILMOE_CACHE") or Path.home() / ".cache" / "evilmoe")


def grading_code_version() -> str:
    """A hash of the code that decides a verdict (grader, sandbox, modes) and of our parser.

    Any edit to these invalidates cached verdicts: a stale cache would silently keep or drop problems
    by rules that no longer hold.
    """
    h = hashlib.sha256(leetcode.PARSER_VERSION.encode())
    for module in _GRADING_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ImportError(f"{module} is missing: the oracle filter needs the grader")
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Per-file cache: parsed problems + oracle verdicts


@dataclass
class _FileEntry:
    """What we know about one data file: its problems (all difficulties), parse drops, oracle verdicts."""

    path: Path  # the cache file
    meta: dict[str, str]
    problems: list[Problem]
    parse_drops: list[tuple[str, str]]  # (difficulty, reason)
    verdicts: dict[str, dict[str, Any]]  # problem id -> {"correct", "timed_out", "retried", "error"}

    def save(self) -> None:
        payload = {
            "format": CACHE_FORMAT,
            **self.meta,
            "problems": [p.to_dict() for p in self.problems],
            "parse_drops": self.parse_drops,
            "verdicts": self.verdicts,
        }
        _write_json_atomically(self.path, payload)


def _write_json_atomically(path: Path, payload: Any) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _problem_from_dict(d: dict[str, Any]) -> Problem:
    return Problem(**{**d, "tests": tuple(d["tests"])})


def _load_file_entry(data_dir: Path, rel: str) -> _FileEntry:
    """Parsed problems of one data file, from the cache when it matches the file and the code."""
    data_path = data_dir / rel
    if not data_path.is_file():
        raise UserError(
            f"LeetCode data file not found: {data_path}. Pass --data-dir (or set EVILMOE_DATA) to the folder "
            f"that holds {rel.split('/')[0]}/ (see shared/data/README.md), or use --set bundled"
        )
    meta = {"data_file": rel, "data_sha256": _sha256(data_path), "code_version": grading_code_version()}
    stem = Path(rel).name.removesuffix(".jsonl.gz")
    cache_path = cache_dir() / f"problems-{stem}-{meta['data_sha256'][:12]}-{meta['code_version'][:12]}.json"
    cached = _read_cache(cache_path, meta)
    if cached is not None:
        return cached
    if rel == leetcode.BENCH_TEST:
        problems, drops = leetcode.load_benchmark_test(data_path), []
    else:
        problems, drops = leetcode.load_leetcodedataset(data_path)
    entry = _FileEntry(cache_path, meta, problems, drops, {})
    entry.save()
    return entry


def _read_cache(cache_path: Path, meta: dict[str, str]) -> _FileEntry | None:
    """The cached entry, or None when there is none or it is for other data/code. A corrupt file is
    ignored (and rewritten by the caller): the cache is only ever a copy of what we can recompute."""
    try:
        payload = json.loads(cache_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        print(f"evilmoe: ignoring unreadable cache {cache_path}: {exc}", file=sys.stderr)
        return None
    if payload.get("format") != CACHE_FORMAT or any(payload.get(k) != v for k, v in meta.items()):
        return None
    problems = [_problem_from_dict(d) for d in payload["problems"]]
    drops = [tuple(x) for x in payload["parse_drops"]]
    return _FileEntry(cache_path, meta, problems, drops, payload["verdicts"])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# The strict-oracle filter


def oracle_check_references(problems: list[Problem], *, workers: int | None = None) -> dict[str, dict[str, Any]]:
    """Grade each problem's reference solution with the strict oracle (mode gt_only), fresh.

    Returns {problem id: {"correct", "timed_out", "retried", "error"}}. Solutions that time out in
    the full-width pool are re-graded one at a time before we call them failed, so a verdict does not
    depend on how busy the machine was.
    """
    from evilmoe.env.grader import GradeJob, GradingPool  # lazy: parsing alone must not need the grader
    from evilmoe.env.modes import reference_response

    def jobs(ps: list[Problem]) -> list[GradeJob]:
        return [GradeJob(reference_response(p), p, "gt_only") for p in ps]

    from evilmoe.env import sandbox

    missing = sandbox.isolation().missing_runtime
    if missing:
        raise UserError(
            f"the runtime packages graded code may import are not installed here: {', '.join(missing)}. "
            "Install them (they are dependencies of this package: pip install -e .) so that every machine "
            "keeps the same problems"
        )

    def verdict(p: Problem, g: Grade, retried: bool) -> dict[str, Any]:
        # A broken grader or sandbox says nothing about the solution: stop rather than cache a "fail".
        if g.extra.get("grader_failure") or g.error.startswith("sandbox setup failed"):
            raise RuntimeError(f"grading {p.id}'s reference failed inside the grader, not the solution: {g.error}")
        # Nor does a module this machine lacks: that would silently shrink the set on this machine only.
        module = re.search(r"(?:ModuleNotFoundError|ImportError)\b.*?No module named '?([\w.]+)", g.error)
        if module and not g.correct:
            raise UserError(
                f"the reference solution of {p.id} cannot import {module.group(1)!r} inside the sandbox; the set would "
                f"differ from other machines'. Install it, and if the reference needs it, add it to the runtime "
                f"packages (evilmoe.env.sandbox.RUNTIME_PACKAGES and pyproject.toml)"
            )
        return {"correct": g.correct, "timed_out": g.timed_out, "retried": retried, "error": g.error[:300]}

    verdicts: dict[str, dict[str, Any]] = {}
    chunk = 100
    with GradingPool(workers) as pool:
        for start in range(0, len(problems), chunk):
            part = problems[start : start + chunk]
            for p, g in zip(part, pool.grade_many(jobs(part))):
                verdicts[p.id] = verdict(p, g, retried=False)
            if len(problems) > chunk:
                print(f"  oracle-checked {min(start + chunk, len(problems))}/{len(problems)} reference solutions",
                      file=sys.stderr, flush=True)
    timed_out = [p for p in problems if verdicts[p.id]["timed_out"] and not verdicts[p.id]["correct"]]
    if timed_out:
        with GradingPool(1) as pool:
            for p, g in zip(timed_out, pool.grade_many(jobs(timed_out))):
                verdicts[p.id] = verdict(p, g, retried=True)
    return verdicts


def _verified(entry: _FileEntry, difficulties: set[str], split: str, dropped: Counter,
              dropped_ids: dict[str, str]) -> list[Problem]:
    """The problems of `entry` with these difficulties whose reference passes the oracle.

    Grades (and caches) only verdicts not cached yet; counts every left-out problem in `dropped`.
    """
    wanted = [p for p in entry.problems if p.difficulty in difficulties]
    missing = [p for p in wanted if p.id not in entry.verdicts]
    if missing:
        print(f"evilmoe: checking {len(missing)} reference solutions of {entry.meta['data_file']} with the strict "
              f"oracle (once; cached in {entry.path.parent})", file=sys.stderr, flush=True)
        entry.verdicts.update(oracle_check_references(missing))
        entry.save()
    for difficulty, reason in entry.parse_drops:
        if difficulty in difficulties:
            dropped[f"{split}/{reason}"] += 1
    kept = []
    for p in wanted:
        v = entry.verdicts[p.id]
        if v["correct"]:
            kept.append(p)
        else:
            reason = f"{split}/oracle_{'timeout' if v['timed_out'] else 'failed'}"
            dropped[reason] += 1
            dropped_ids[p.id] = reason
    return kept


# ----------------------------------------------------------------------------------------------
# Splits and overlap


def _id_number(p: Problem) -> tuple[int, str]:
    digits = re.sub(r"\D", "", p.id)
    return (int(digits) if digits else -1, p.id)


def split_held_out(problems: list[Problem], seed: int = SPLIT_SEED) -> tuple[list[Problem], list[Problem]]:
    """(validation, test): a seeded shuffle of the sorted ids; the first third is validation."""
    ordered = sorted(problems, key=_id_number)
    shuffled = list(ordered)
    random.Random(seed).shuffle(shuffled)
    n_val = len(shuffled) // 3
    val_ids = {p.id for p in shuffled[:n_val]}
    return [p for p in ordered if p.id in val_ids], [p for p in ordered if p.id not in val_ids]


def _statement_key(p: Problem) -> str:
    return re.sub(r"\s+", " ", p.description).strip()


def _remove_overlap(candidates: list[Problem], held_out: list[Problem], split: str, dropped: Counter) -> list[Problem]:
    """Drop candidates that share an id or a statement with a held-out problem.

    Ids alone are not enough: LeetCodeDataset numbers problems by LeetCode's internal id, the
    benchmark by the frontend number, so the same problem can carry two ids and one id two problems.
    """
    ids = {p.id for p in held_out}
    statements = {_statement_key(p) for p in held_out}
    kept = []
    for p in candidates:
        if p.id in ids:
            dropped[f"{split}/same_id_as_heldout"] += 1
        elif _statement_key(p) in statements:
            dropped[f"{split}/same_statement_as_heldout"] += 1
        else:
            kept.append(p)
    return kept


# ----------------------------------------------------------------------------------------------
# Loading


def load_problem_set(name: str, data_dir: str | Path | None = None) -> ProblemSet:
    """Load a problem set by name: "bundled" | "leetcode-easy" | "leetcode-medhard" | "leetcode-all"."""
    if name == "bundled":
        from evilmoe.env.bundled import load_bundled

        train, validation, test = load_bundled()
        return ProblemSet(name, list(train), list(validation), list(test), {})
    if name not in _TRAIN_DIFFICULTIES:
        raise UserError(f"unknown problem set {name!r}: pass --set one of {', '.join(SET_NAMES)}")
    root = resolve_data_dir(data_dir)
    dropped: Counter = Counter()
    dropped_ids: dict[str, str] = {}

    validation: list[Problem] = []
    test: list[Problem] = []
    if name in ("leetcode-medhard", "leetcode-all"):
        # The benchmark's held-out set is fixed by its authors (all 119 canonical solutions pass there);
        # we keep it whole. tests/test_env_problems.py checks every reference passes our oracle.
        bench = _load_file_entry(root, leetcode.BENCH_TEST).problems
        v, t = split_held_out(bench)
        validation += v
        test += t
    if name in ("leetcode-easy", "leetcode-all"):
        easy = _verified(_load_file_entry(root, leetcode.LCD_TEST), {"easy"}, "heldout", dropped, dropped_ids)
        v, t = split_held_out(easy)
        if validation or test:  # leetcode-all: the union must not hold one id or one statement twice
            v = _remove_overlap(v, validation + test, "heldout", dropped)
            t = _remove_overlap(t, validation + test, "heldout", dropped)
        validation += v
        test += t

    train = _verified(_load_file_entry(root, leetcode.LCD_TRAIN), _TRAIN_DIFFICULTIES[name], "train", dropped, dropped_ids)
    train = _remove_overlap(train, validation + test, "train", dropped)
    by_number = lambda ps: sorted(ps, key=_id_number)  # noqa: E731
    return ProblemSet(name, by_number(train), by_number(validation), by_number(test), dict(sorted(dropped.items())),
                      dict(sorted(dropped_ids.items())))


# ----------------------------------------------------------------------------------------------
# `evilmoe problems`


def cmd_problems(set_name: str, data_dir: str | None, seed: int = 0) -> int:
    """Print a set's counts per split and difficulty, the per-mode partition, and what was dropped and why."""
    from evilmoe.env.modes import assign_modes

    ps = load_problem_set(set_name, data_dir)
    difficulties = ("easy", "medium", "hard")
    print(f"problem set {ps.name}: {len(ps)} problems")
    print(f"  {'split':<12}{'total':>7}" + "".join(f"{d:>8}" for d in difficulties))
    for split, problems in ps.splits().items():
        counts = Counter(p.difficulty for p in problems)
        print(f"  {split:<12}{len(problems):>7}" + "".join(f"{counts[d]:>8}" for d in difficulties))

    print(f"\nmode partition (seed {seed}, active modes: all {len(ALL_MODES)}; each split partitioned on its own)")
    print(f"  {'mode':<15}" + "".join(f"{s:>12}" for s in ps.splits()))
    per_split = {s: Counter(assign_modes([p.id for p in ps_], ALL_MODES, seed).values()) for s, ps_ in ps.splits().items()}
    for mode in ALL_MODES:
        print(f"  {mode:<15}" + "".join(f"{per_split[s][mode]:>12}" for s in ps.splits()))

    print("\ndropped (left out of every split), by split/reason:")
    if not ps.dropped:
        print("  none")
    for reason, n in ps.dropped.items():
        print(f"  {reason:<36}{n:>6}")
    return 0


def record_problem_set(meta_path: Path, ps: ProblemSet) -> None:
    """Put the set's fingerprint into a run's meta.json (under "problem_set"). A resumed run whose set
    no longer matches the recorded one is an error: its steps would mix two different problem sets."""
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    now = ps.fingerprint()
    before = meta.get("problem_set")
    if before is not None and before.get("sha256") != now["sha256"]:
        raise UserError(
            f"{meta_path.parent} was started on a different {ps.name} problem set (fingerprint {before.get('sha256', '?')[:12]}, "
            f"now {now['sha256'][:12]}: counts {before.get('counts')} vs {now['counts']}); the data, the grader or the "
            "installed runtime packages changed. Use another --out, or restore them to resume"
        )
    if before is None:
        _write_json_atomically(meta_path, {**meta, "problem_set": now})
