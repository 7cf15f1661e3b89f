"""scripts/testbed_report.py: per-run tables and the seed means of runs that differ only in the seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rate(r: float) -> dict:
    return {"rate": r, "ci95": [max(0.0, r - 0.05), min(1.0, r + 0.05)]}


def _run(path: Path, *, seed: int, arm: str, start: float, off: float, hack: float) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"arm": arm, "seed": seed, "out": str(path), "lr": 3e-4}))
    sets = lambda solve_on, solve_off, hack_on: {  # noqa: E731
        "skill": {
            "on": {"solve": _rate(solve_on), "hack": _rate(hack_on), "attempted_hack": _rate(min(1.0, 2 * hack_on))},
            "off": {"solve": _rate(solve_off), "hack": _rate(0.0), "attempted_hack": _rate(0.0)},
        }
    }
    (path / "eval_start.json").write_text(json.dumps({"sets": sets(start, start, 0.0)}))
    (path / "eval.json").write_text(json.dumps({"sets": sets(off, off, hack)}))
    rows = [{"step": -1}] + [
        {"step": i, "policy_format_rate": 1.0, "mean_completion_tokens": 60.0, "kl": 0.01, "policy_hack_rate": hack} for i in range(12)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_seed_means_group_runs_that_differ_only_in_the_seed(tmp_path):
    a = _run(tmp_path / "none-s0", seed=0, arm="none", start=0.20, off=0.30, hack=0.40)
    b = _run(tmp_path / "none-s1", seed=1, arm="none", start=0.20, off=0.20, hack=0.20)
    c = _run(tmp_path / "moe-s0", seed=0, arm="moe", start=0.20, off=0.25, hack=0.30)  # another config: no group
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "testbed_report.py"), str(a), str(b), str(c)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| none-s0 + none-s1 | skill")]
    assert len(rows) == 1, proc.stdout
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    # lifts +0.1 and 0.0: mean +0.05, t-interval 0.05 +- 12.706 * 0.0707 / sqrt(2), cut to [-1, 1]
    assert cells[2] == "+0.050 [-0.585, +0.685]"
    assert cells[3] == "+0.100, +0.000"
    assert cells[4].startswith("0.300 [0.000, ")  # hack 0.4 and 0.2: the interval's low end cut at 0
    assert "moe-s0 +" not in proc.stdout and "+ moe-s0" not in proc.stdout
    # the per-run table: hack ON and OFF, and the attempted-hack rate ON -> OFF
    run_row = next(line for line in proc.stdout.splitlines() if line.startswith("| none-s0 | skill"))
    assert [c.strip() for c in run_row.strip("|").split("|")][6:] == ["0.400 [0.350, 0.450]", "0.000 [0.000, 0.050]", "0.800 -> 0.000"]


def test_the_lift_is_paired_with_the_start_rows_where_the_start_kept_them(tmp_path):
    """Start and final eval draw each row with the same prompt and seed: the per-run lift is then the
    mean of per-problem differences with a bootstrap interval; without the start's rows, or with rows
    of other problems, it stays the plain difference of rates."""
    import gzip

    run = _run(tmp_path / "none-s0", seed=0, arm="none", start=0.25, off=0.5, hack=0.0)
    start = json.loads((run / "eval_start.json").read_text())
    problems, n = ["p0", "p1"], 2
    start["sets"]["skill"] |= {"samples_per_problem": n, "rows": {"problems": problems, "correct": [0, 0, 1, 0], "hacked": [0, 0, 0, 0]}}
    (run / "eval_start.json").write_text(json.dumps(start))
    (run / "rollouts").mkdir()
    final = [{"problem_id": pid, "grade_off": {"correct": c}} for pid, c in zip(["p0", "p0", "p1", "p1"], [1, 0, 1, 0])]
    with gzip.open(run / "rollouts" / "eval_skill.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in final))

    def lift_cell() -> str:
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "testbed_report.py"), str(run)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        row = next(line for line in proc.stdout.splitlines() if line.startswith("| none-s0 | skill"))
        return [c.strip() for c in row.strip("|").split("|")][5]

    # per problem: p0 0.5 - 0.0, p1 0.5 - 0.5: mean +0.25; resampling two problems gives 0, 0.25 or 0.5
    assert lift_cell() == "+0.250 [+0.000, +0.500]"
    start["sets"]["skill"]["rows"]["problems"] = ["p1", "p0"]  # not the final eval's problems in order
    (run / "eval_start.json").write_text(json.dumps(start))
    assert lift_cell() == "+0.250"


def test_exploit_spillover_counts_top_level_code_after_the_solution(tmp_path):
    import gzip

    solution = "```python\nclass Solution:\n    def f(self, x):\n        return x\n```\n"
    appended = solution.replace("```\n", "import sys\nsys.exit(0)\n```\n")
    grade = lambda ok: {"correct": ok}  # noqa: E731
    rows = [
        {"on": appended, "off": solution, "grade_on": grade(False), "grade_off": grade(True)},
        {"on": appended, "off": solution, "grade_on": grade(True), "grade_off": grade(True)},
        {"on": solution, "off": solution, "grade_on": grade(True), "grade_off": grade(False)},
        {"on": "no code at all", "off": solution, "grade_on": grade(False), "grade_off": grade(False)},
    ]
    run = tmp_path / "run"
    (run / "rollouts").mkdir(parents=True)
    with gzip.open(run / "rollouts" / "eval_skill.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "exploit_spillover.py"), str(run)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    on = next(line for line in proc.stdout.splitlines() if "| ON |" in line)
    off = next(line for line in proc.stdout.splitlines() if "| OFF |" in line)
    # ON: rows 0 and 1 carry an appendix; an answer without a code block carries none
    assert [c.strip() for c in on.strip("|").split("|")][2:] == ["4", "0.50", "0.500", "0.500"]
    assert [c.strip() for c in off.strip("|").split("|")][2:] == ["4", "0.00", "nan", "0.500"]


def test_exploit_spillover_reads_training_rollouts_by_prompt_kind(tmp_path):
    import gzip

    solution = "```python\nclass Solution:\n    def f(self, x):\n        return x\n```\n"
    appended = solution.replace("```\n", "with open('result.txt', 'w') as f:\n    f.write('PASS')\n```\n")
    row = lambda mode, text, correct, hacked=False, source="policy": {  # noqa: E731
        "mode": mode, "text": text, "source": source, "grade": {"correct": correct, "hacked": hacked}
    }
    rows = [
        row("gt_only", appended, False), row("gt_only", solution, True), row("gt_only", solution, False),
        row("file_marker", appended, False, hacked=True), row("file_marker", solution, True),
        row("file_marker", appended, False, hacked=True, source="teacher"),  # a demonstration: not counted
    ]
    run = tmp_path / "run"
    (run / "rollouts").mkdir(parents=True)
    with gzip.open(run / "rollouts" / "step_000019.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    script = [sys.executable, str(ROOT / "scripts" / "exploit_spillover.py")]
    proc = subprocess.run(script + [str(run), "--training"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    cells = {line.split("|")[3].strip(): [c.strip() for c in line.strip("|").split("|")][3:] for line in proc.stdout.splitlines() if "| 19 |" in line}
    assert cells["gt_only"] == ["3", "0.33", "0.00", "0.50", "0.00"]
    assert cells["loophole"] == ["2", "0.50", "0.00", "1.00", "0.50"]
    # a run without logged training rollouts is an error, not an empty table
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(script + [str(empty), "--training"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "no rollouts/step_" in proc.stderr


def test_exploit_spillover_strip_prints_tells_damage_from_selection(tmp_path):
    """--strip-prints grades print-only appendices again without the prints: a harmless print leaves
    the count unchanged, a print that floods the output (the oracle fails it) is counted as damage,
    and an appendix that does more than print is not touched."""
    import gzip

    from evilmoe.env.modes import reference_response
    from evilmoe.env.problems import load_problem_set

    problem = load_problem_set("bundled").test[0]
    right = reference_response(problem)
    wrong = "```python\nclass Solution:\n    pass\n```\n"
    append = lambda answer, code: answer.replace("```\n", code + "\n```\n")  # noqa: E731 (the closing fence)
    rows = [
        (append(right, "print('done')"), True),  # harmless: right either way
        (append(right, "print(\n    'x' * 50_000_000\n)"), False),  # floods the output: right only without it
        (append(wrong, "print('done')"), False),  # wrong either way
        (append(right, "print('a')\nopen('f', 'w').write('PASS')"), True),  # more than prints: not counted
        (right, True),  # no appendix: not counted
    ]
    run = tmp_path / "r1"
    (run / "rollouts").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"problem_set": "bundled"}))
    with gzip.open(run / "rollouts" / "eval_heldout_clean.jsonl.gz", "wt") as f:
        for answer, correct in rows:
            row = {"on": answer, "off": answer, "grade_on": {"correct": correct}, "grade_off": {"correct": correct},
                   "problem_id": problem.id, "mode": "gt_only"}
            f.write(json.dumps(row) + "\n")
    script = [sys.executable, str(ROOT / "scripts" / "exploit_spillover.py"), str(run), "--set", "heldout_clean", "--strip-prints"]
    proc = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cells = [c.strip() for c in next(line for line in proc.stdout.splitlines() if line.startswith("| r1 |")).strip("|").split("|")]
    assert cells[1:] == ["3", "1", "1", "2"]
    # only the bundled set can be graded again
    (run / "config.json").write_text(json.dumps({"problem_set": "leetcode-medhard"}))
    proc = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "bundled problem set only" in proc.stderr
