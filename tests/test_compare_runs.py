"""scripts/compare_runs.py: two run directories' numbers, key by key, within a tolerance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_dir(path: Path, *, reward: float = 0.5, wall: float = 1.0, text: str = "a", step_time: float = 3.0) -> Path:
    path.mkdir(parents=True)
    rows = [
        {"step": -1, "prompt_width": 40},
        {"step": 0, "reward_mean": reward, "rollout_sources": {"policy": 2}, "time": {"total": step_time}, "w_auroc": None},
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "eval.json").write_text(json.dumps({"sets": {"heldout": {"on": {"hack": {"rate": 0.25, "ci95": [0.1, 0.4]}}}}}))
    (path / "rollouts").mkdir()
    (path / "rollouts" / "step_000000.jsonl").write_text(json.dumps({"text": text, "grade": {"extra": {"wall_seconds": wall}}}) + "\n")
    return path


def _compare(a: Path, b: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare_runs.py"), str(a), str(b), *extra], capture_output=True, text=True, timeout=120
    )


def test_runs_differing_only_in_timings_are_the_same(tmp_path):
    proc = _compare(_run_dir(tmp_path / "a"), _run_dir(tmp_path / "b", wall=9.0, step_time=7.0))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("SAME") and "0 differ at all" in proc.stdout


@pytest.mark.slow
def test_a_number_beyond_the_tolerance_or_a_changed_text_fails(tmp_path):
    a = _run_dir(tmp_path / "a")
    near = _compare(a, _run_dir(tmp_path / "near", reward=0.5 * (1 + 1e-7)))
    assert near.returncode == 0 and "metrics:reward_mean" in near.stdout  # differs, within rtol 1e-5
    far = _compare(a, _run_dir(tmp_path / "far", reward=0.6))
    assert far.returncode == 1 and "metrics:reward_mean" in far.stdout and "MISMATCH" in far.stdout
    assert _compare(a, _run_dir(tmp_path / "far2", reward=0.6), "--rtol", "0.5").returncode == 0
    assert _compare(a, tmp_path / "far2", "--ignore", "reward_mean").returncode == 0
    text = _compare(a, _run_dir(tmp_path / "text", text="b"))
    assert text.returncode == 1 and "step_000000.jsonl:0.text" in text.stdout


def test_a_missing_step_or_run_is_reported(tmp_path):
    a = _run_dir(tmp_path / "a")
    b = _run_dir(tmp_path / "b")
    with (a / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 1, "reward_mean": 0.5}) + "\n")
    proc = _compare(a, b)
    assert proc.returncode == 1 and "metrics:steps" in proc.stdout
    assert _compare(a, tmp_path / "nowhere").returncode == 2


def test_two_runs_that_failed_before_their_first_step_are_not_the_same(tmp_path):
    runs = [_run_dir(tmp_path / name) for name in ("a", "b")]
    for run in runs:  # the set-up row only, as a run that crashed (e.g. out of memory) leaves it
        (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    proc = _compare(*runs)
    assert proc.returncode == 2 and "no training step" in proc.stderr and "SAME" not in proc.stdout


def test_added_ok_accepts_a_field_only_the_newer_run_has_and_nothing_else(tmp_path):
    old = _run_dir(tmp_path / "old")
    new = _run_dir(tmp_path / "new")
    row = json.loads((new / "rollouts" / "step_000000.jsonl").read_text())
    (new / "rollouts" / "step_000000.jsonl").write_text(json.dumps({**row, "sample": 0}) + "\n")
    assert _compare(old, new).returncode == 1  # by default an added key is a mismatch
    added = _compare(old, new, "--added-ok")
    assert added.returncode == 0 and "rollouts/step_000000.jsonl:sample" in added.stdout and "only in" in added.stdout
    assert _compare(new, old, "--added-ok").returncode == 1  # a key the newer run lost is still a mismatch
