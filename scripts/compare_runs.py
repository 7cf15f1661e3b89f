"""Do two run directories hold the same numbers? A check that a code change left training unchanged.

    python scripts/compare_runs.py RUN_A RUN_B [--rtol 1e-5] [--atol 1e-8] [--ignore KEY_PART ...]

Compares metrics.jsonl step by step (every numeric value, nested ones by dotted key such as
rollout_sources.policy; timings are left out: `time` entries and `*_seconds` values), the
evaluations (eval.json, eval_start.json and the periodic ones in eval/, where present) and every
file of rollouts/ row by row (texts, grades, advantages, w, route labels). Prints, per key, the
largest relative difference over all steps, then one verdict line. Two values agree when
|a - b| <= atol + rtol * max(|a|, |b|); a value present on one side only, a None against a number,
a differing string, or a differing set of steps counts as a mismatch. --added-ok lists, and does not
count, the keys that only RUN_B has (a field the newer code records in addition). --ignore leaves out every key
containing the given text (e.g. `oracle_returncode`: a grading subprocess killed at its time limit on
a loaded machine in one run and not the other, with the same grade).

Exit status: 0 when everything agrees within the tolerance, 1 otherwise, 2 on a missing file or a
run without a training step (one that failed before it).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evilmoe.runs import RunDir


def timing(key: str) -> bool:
    """Wall-clock and CPU timings differ from run to run by nature: the step's `time` entries and
    every `*_seconds` value (e.g. a grade's sandbox wall_seconds)."""
    return key == "time" or key.endswith("_seconds")


def leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every scalar inside nested dicts and lists."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if timing(str(key)):
                continue
            yield from leaves(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from leaves(inner, f"{prefix}[{i}]")
    else:
        yield prefix, value


def relative_difference(a: Any, b: Any) -> float:
    """0 when equal; |a - b| / max(|a|, |b|) for two numbers; inf for anything else that differs."""
    if a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        return 0.0
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if not numbers:
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


class Comparison:
    """Running record of the worst difference per key and whether every value agreed."""

    def __init__(self, rtol: float, atol: float, ignore: tuple[str, ...] = (), added_ok: bool = False):
        self.rtol, self.atol, self.ignore, self.added_ok = rtol, atol, ignore, added_ok
        self.worst: dict[str, float] = {}
        self.failures: dict[str, str] = {}
        self.added: set[str] = set()  # keys only run B has (with added_ok)

    def add(self, key: str, a: Any, b: Any, where: str) -> None:
        if any(part in key for part in self.ignore):
            return
        rel = relative_difference(a, b)
        self.worst[key] = max(self.worst.get(key, 0.0), rel)
        if rel == 0.0:
            return
        numbers = math.isfinite(rel)
        if not numbers or abs(a - b) > self.atol + self.rtol * max(abs(a), abs(b)):
            self.failures.setdefault(key, f"{where}: {a!r} vs {b!r}")

    def add_tree(self, a: Any, b: Any, section: str, where: str) -> None:
        left, right = dict(leaves(a)), dict(leaves(b))
        for key in sorted(set(left) | set(right)):
            missing = "<absent>"
            if self.added_ok and key not in left:
                self.added.add(f"{section}:{_generic(key)}")
                continue
            self.add(f"{section}:{key}", left.get(key, missing), right.get(key, missing), where)


def _generic(key: str) -> str:
    """A dotted key with its list indices and row numbers folded, to list an added field once."""
    return re.sub(r"\[\d+\]", "[]", re.sub(r"^\d+\.", "", key))


def by_step(run: Path) -> dict[int, dict[str, Any]]:
    rows = RunDir(run).read_metrics()
    if not rows:
        raise FileNotFoundError(f"{run / 'metrics.jsonl'} is missing or empty")
    if not any(row["step"] >= 0 for row in rows):
        # only the set-up row (step -1): the run stopped before its first step, so two failed runs
        # would otherwise "agree" on their set-up alone
        raise FileNotFoundError(f"{run / 'metrics.jsonl'} has no training step: did the run fail?")
    return {row["step"]: row for row in rows}  # a resumed run's rewritten step: the last row wins


def compare(run_a: Path, run_b: Path, rtol: float, atol: float, ignore: tuple[str, ...] = (), added_ok: bool = False) -> Comparison:
    result = Comparison(rtol, atol, ignore, added_ok)
    steps_a, steps_b = by_step(run_a), by_step(run_b)
    if set(steps_a) != set(steps_b):
        result.failures["metrics:steps"] = f"{sorted(steps_a)} vs {sorted(steps_b)}"
    for step in sorted(set(steps_a) & set(steps_b)):
        result.add_tree(steps_a[step], steps_b[step], "metrics", f"step {step}")
    evals = {p.relative_to(run).as_posix() for run in (run_a, run_b) for p in [*run.glob("eval*.json"), *(run / "eval").glob("*.json")]}
    for name in sorted(evals | {"eval.json"}):
        a, b = run_a / name, run_b / name
        if not a.is_file() or not b.is_file():
            if a.is_file() or b.is_file():
                result.failures[name] = f"present in only one run ({a if a.is_file() else b})"
            continue
        result.add_tree(json.loads(a.read_text()), json.loads(b.read_text()), name, name)
    names = {p.name for run in (run_a, run_b) for p in (run / "rollouts").glob("*.jsonl")}
    for name in sorted(names):
        a, b = (_rows(run / "rollouts" / name) for run in (run_a, run_b))
        if a is None or b is None:
            result.failures[f"rollouts/{name}"] = "present in only one run"
            continue
        # a row's position in the file is part of its key: rows must match one for one
        result.add_tree({str(i): row for i, row in enumerate(a)}, {str(i): row for i, row in enumerate(b)}, f"rollouts/{name}", name)
    return result


def _rows(path: Path) -> list[Any] | None:
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (default 1e-5)")
    parser.add_argument("--atol", type=float, default=1e-8, help="absolute tolerance for values near 0 (default 1e-8)")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY_PART", help="leave out keys containing this text")
    parser.add_argument("--added-ok", action="store_true", help="keys only RUN_B has are listed, not mismatches")
    parser.add_argument("--all", action="store_true", help="print every key, not only those that differ at all")
    args = parser.parse_args()
    try:
        result = compare(args.run_a, args.run_b, args.rtol, args.atol, tuple(args.ignore), args.added_ok)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    differing = {k: v for k, v in result.worst.items() if v > 0}
    for key in sorted(result.added):
        print(f"{key:60s} only in {args.run_b}")
    for key, worst in sorted(result.worst.items() if args.all else differing.items()):
        flag = "  MISMATCH" if key in result.failures else ""
        print(f"{key:60s} max rel diff {worst:.3e}{flag}")
    for key, detail in result.failures.items():
        if key not in result.worst:
            print(f"{key:60s} MISMATCH {detail}")
    print(
        f"{len(result.worst)} keys compared, {len(differing)} differ at all, {len(result.failures)} beyond "
        f"rtol={args.rtol} atol={args.atol}: " + ("SAME" if not result.failures else "DIFFERENT")
    )
    for key, detail in list(result.failures.items())[:20]:
        print(f"  first mismatch of {key}: {detail}")
    return 0 if not result.failures else 1


if __name__ == "__main__":
    sys.exit(main())
