"""The command line: every user mistake is one clear line and exit code 2, never a traceback; and
`evilmoe run` picks the job that fits the machine and says so."""

from __future__ import annotations

import json

import pytest

from evilmoe import cli
from evilmoe.config import make_config


def one_line_error(capsys, argv: list[str], expect: str) -> str:
    """Run the CLI in-process; it must fail with exit code 2 and exactly one stderr line."""
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse exits by itself
        rc = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, (rc, captured.err)
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert lines[0].startswith("evilmoe") and "error: " in lines[0]
    assert expect in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--preset", "tiny", "--steps", "many"], "bad value 'many' for steps"),
        (["train", "--preset", "tiny", "--arm", "bogus"], "unknown arm 'bogus'"),
        (["train", "--preset", "tiny", "--report-to", "mlflow"], "unknown tracker mlflow"),
        (["train", "--preset", "tiny", "--top-p", "2"], "top_p must be in (0, 1]"),
        (["train", "--preset", "tiny", "--loophole-free-share", "2"], "loophole_free_share must be in [0, 1]"),
        (["train", "--preset", "tiny", "--loophole-free-share", "0.5", "--modes", "run_tests"], "add gt_only to modes"),
        (["train", "--bogus-flag", "1"], "unrecognized arguments: --bogus-flag"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["decide", "--preset", "tiny", "--out", "x", "--seeds", "a,b"], "--seeds must be comma-separated integers"),
        (["decide", "--preset", "tiny", "--out", "x", "--arms", "none,bogus"], "unknown arm 'bogus'"),
        (["eval", "/nonexistent/run"], "/nonexistent/run is not a run directory"),
        (["report", "/nonexistent/run"], "is not a directory"),
        (["export", "/nonexistent/run", "--out", "/tmp/evilmoe-never-written"], "is not a directory"),
        (["problems", "--set", "leetcode-easy", "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
        (["problems", "--set", "nope"], "unknown problem set 'nope'"),
        (["grade", "--problem-id", "bundled-base_convert-000", "--mode", "run_tests", "/nonexistent/response.md"], "/nonexistent/response.md"),
        (["grade", "--problem-id", "bundled-base_convert-000", "--mode", "nope", "-"], "unknown mode 'nope'"),
        (["model", "info", "--model", "/nonexistent/model.gguf"], "GGUF file not found"),
    ],
)
def test_user_mistakes_are_one_clear_line(argv, expect, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative --out paths land here
    one_line_error(capsys, argv, expect)
    assert list(tmp_path.iterdir()) == []  # a refused command leaves nothing behind


def test_run_dir_of_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(make_config("tiny", {"seed": 1}).to_dict()))
    line = one_line_error(capsys, ["train", "--preset", "tiny", "--out", str(out)], "holds a run with a different config")
    assert "seed" in line  # says which fields differ


def test_unwritable_out_path_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_error(capsys, ["train", "--preset", "tiny", "--out", str(blocker / "run")], str(blocker))


# --- `evilmoe run`: the job that fits the machine ---------------------------------------------
def test_run_on_cuda_runs_the_gpu_experiment_through_decide(monkeypatch, capsys):
    import torch

    from evilmoe import decide

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(decide, "run_decision", lambda *a, **k: calls.append((a, k)) or {"moe": {}})
    assert cli.main(["run", "--seed", "2"]) == 0
    (preset, arms, seeds, out, overrides), _ = calls[0]
    assert (preset, arms, seeds, out) == ("gpu-small", ["moe", "none"], [2], "runs/gpu-small-decision")
    assert "seed" not in overrides
    plan = capsys.readouterr().out
    assert "NVIDIA H100" in plan and "gpu-small" in plan and "moe" in plan and "none" in plan and "minutes" in plan


def test_decide_passes_the_localization_flags(monkeypatch):
    from evilmoe import decide

    calls = []
    monkeypatch.setattr(decide, "run_decision", lambda *a, **k: calls.append(k) or {"moe": {}})
    assert cli.main(["decide", "--preset", "tiny", "--out", "x", "--localize", "--relearn-steps", "7"]) == 0
    assert cli.main(["decide", "--preset", "tiny", "--out", "x"]) == 0
    assert (calls[0]["localize"], calls[0]["relearn_steps"]) == (True, 7)
    assert (calls[1]["localize"], calls[1]["relearn_steps"]) == (False, 20)


def test_run_on_cpu_runs_the_demo(monkeypatch, capsys):
    import torch

    from evilmoe import train

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train, "run_training", lambda config, out, **k: calls.append((config, out)) or {})
    assert cli.main(["run"]) == 0
    config, out = calls[0]
    assert config.arm == "moe" and out == "runs/cpu-demo-moe-s0"
    assert config.steps == make_config("cpu-demo").steps
    plan = capsys.readouterr().out
    assert "no CUDA device" in plan and "preset cpu-demo" in plan and "minutes" in plan


def test_run_with_an_explicit_arm_on_cuda_is_one_run(monkeypatch):
    import torch

    from evilmoe import train

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "GPU")
    monkeypatch.setattr(train, "run_training", lambda config, out, **k: calls.append((config, out)) or {})
    assert cli.main(["run", "--arm", "absorb"]) == 0
    assert calls[0][0].arm == "absorb" and calls[0][1] == "runs/gpu-small-absorb-s0"
