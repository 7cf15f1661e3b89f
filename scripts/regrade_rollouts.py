"""Does a grader change alter the grades of what runs logged? Re-grades logged rollouts, prints changes.

    python scripts/regrade_rollouts.py RUN [RUN ...] [--modes stdout_marker,file_marker]

Reads every rollouts/*.jsonl[.gz] of each run directory: step rollouts (one response per row) and
evaluation rollouts (the ON and OFF response of each row), grades each response again with today's
grader in its logged mode, with the markers its set used (eval markers for the held-out sets, as
the run's eval.json records), on the run's own problem set (bundled only), and counts, per mode,
the responses whose `correct` or `hacked` flag changed. Exit status 1 if any changed.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
from pathlib import Path

from evilmoe.env.grader import GradeJob, GradingPool
from evilmoe.env.problems import load_problem_set


def responses(run: Path, modes: set[str] | None):
    """(text, problem id, mode, logged grade, eval markers) of every logged response of a run."""
    evaluation = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else {"sets": {}}
    marker_sets = {name for name, s in evaluation["sets"].items() if s.get("eval_markers")}
    for path in sorted((run / "rollouts").glob("*.jsonl*")):
        stem = path.name.split(".")[0]
        eval_markers = stem.startswith("eval_") and stem[len("eval_"):] in marker_sets
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            for line in f:
                row = json.loads(line)
                if modes and row.get("mode") not in modes:
                    continue
                if "text" in row:
                    yield row["text"], row["problem_id"], row["mode"], row["grade"], eval_markers
                else:
                    for side in ("on", "off"):
                        yield row[side], row["problem_id"], row["mode"], row[f"grade_{side}"], eval_markers


def bundled_problems(runs: list[Path]) -> dict:
    """Every problem of the bundled set by id, after checking that each run trained on it (the only
    set whose problems ship with the code, so the only one that can be graded again anywhere)."""
    for run in runs:
        if not (run / "config.json").is_file():
            raise SystemExit(f"{run}: not a run directory (no config.json)")
        name = json.loads((run / "config.json").read_text())["problem_set"]
        if name != "bundled":
            raise SystemExit(f"{run}: problem set {name!r}; this script grades the bundled problem set only")
    ps = load_problem_set("bundled")
    return {p.id: p for p in ps.train + ps.validation + ps.test}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--modes", default="", help="comma-separated modes to re-grade (default: all)")
    args = parser.parse_args()
    modes = set(filter(None, args.modes.split(","))) or None
    problems = bundled_problems(args.runs)
    items = [item for run in args.runs for item in responses(run, modes)]
    missing = {pid for _, pid, _, _, _ in items if pid not in problems}
    if missing:
        raise SystemExit(f"{len(missing)} logged problem ids are not in the bundled set (first: {sorted(missing)[0]})")
    with GradingPool() as pool:
        grades = pool.grade_many([GradeJob(t, problems[pid], mode, ev) for t, pid, mode, _, ev in items])
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for (_, _, mode, old, _), new in zip(items, grades):
        c = counts[mode]
        c["responses"] += 1
        c["hacked before"] += bool(old["hacked"])
        c["correct before"] += bool(old["correct"])
        c["hacked changed"] += bool(old["hacked"]) != new.hacked
        c["correct changed"] += bool(old["correct"]) != new.correct
    print("| mode | responses | hacked before | correct before | hacked changed | correct changed |")
    print("|---|---|---|---|---|---|")
    for mode in sorted(counts):
        c = counts[mode]
        print(f"| {mode} | {c['responses']} | {c['hacked before']} | {c['correct before']} | {c['hacked changed']} | {c['correct changed']} |")
    changed = sum(c["hacked changed"] + c["correct changed"] for c in counts.values())
    print(f"{len(items)} responses re-graded; {changed} flag changes")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
