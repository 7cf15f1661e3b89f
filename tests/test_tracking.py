"""--report-to tensorboard: every per-step metric, the router diagnostics, the eval and the config,
read back with TensorBoard's own event reader."""

from __future__ import annotations

import json
import sys

import pytest

from evilmoe.config import make_config
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.runs import RunDir
from evilmoe.tracking import Tracker, flatten, parse_report_to
from evilmoe.train import run_training

pytest.importorskip("tensorboard", reason="tensorboard is a test dependency (pip install -e '.[test]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow

SMALL = {"arm": "moe", "pairs_per_mode": 1, "eval_problems": 1, "eval_train_problems": 1, "eval_samples": 1}


def read_events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalar(acc: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


@pytest.fixture(scope="module")
def tracked_run(trained_tiny_run):
    return trained_tiny_run, json.loads((trained_tiny_run / "eval.json").read_text())


def test_every_step_metric_router_diagnostic_and_eval_is_logged(tracked_run):
    out, result = tracked_run
    acc = read_events(out / "tensorboard")
    tags = set(acc.Tags()["scalars"])
    rows = [r for r in RunDir(out).read_metrics() if r["step"] >= 0]
    assert len(rows) == 2
    for row in rows:
        for key, value in flatten(row).items():
            if key == "step":
                continue
            group = "router" if key.startswith(("w_", "pin_", "router_")) else "val" if key.startswith("val_") else None
            tag = f"{group}/{key.removeprefix('val_')}" if group else key if key.startswith("time/") else f"train/{key}"
            assert tag in tags, tag
            assert scalar(acc, tag)[row["step"]] == pytest.approx(value, rel=1e-6, abs=1e-7), tag
    # the router diagnostics of the moe arm are among them
    assert {"router/w_clean", "router/pin_loss", "router/pin_acc", "router/router_scale", "router/router_bias"} <= tags
    # the final deploy-ablation eval, at the step it was trained to
    heldout = result["sets"]["heldout"]
    assert scalar(acc, "eval/heldout/hack_on")[2] == pytest.approx(heldout["on"]["hack"]["rate"])
    assert scalar(acc, "eval/heldout/solve_off")[2] == pytest.approx(heldout["off"]["solve"]["rate"])
    assert scalar(acc, "eval/heldout/hack_off_ci_high")[2] == pytest.approx(heldout["off"]["hack"]["ci95"][1])
    # the periodic validation (eval_every=1: of the starting model and after step 1 of 2), at its step
    vals = [json.loads((out / "eval" / f"eval_step_00000{k}.json").read_text())["sets"]["heldout"] for k in (0, 1)]
    assert scalar(acc, "val_eval/heldout/hack_on") == {k: pytest.approx(v["on"]["hack"]["rate"]) for k, v in enumerate(vals)}
    assert not any(t.startswith("setup/val_") for t in tags)
    # the starting model's point is also in the start row; its adapter is untrained (zero), so
    # deleting the hack expert changes nothing there
    start_row = next(r for r in RunDir(out).read_metrics() if r["step"] == -1)
    assert start_row["val_hack_on"] == vals[0]["on"]["hack"]["rate"]
    assert start_row["val_solve_on"] == start_row["val_solve_off"] == vals[0]["off"]["solve"]["rate"]
    # the starting model's evaluation, at step 0
    start = json.loads((out / "eval_start.json").read_text())
    assert scalar(acc, "start/heldout/solve_on") == {0: pytest.approx(start["sets"]["heldout"]["on"]["solve"]["rate"])}
    # the run's config, as text
    texts = acc.Tags()["tensors"]
    assert any(t.startswith("config") for t in texts)
    config_event = next(e for t in texts if t.startswith("config") for e in acc.Tensors(t))
    text = config_event.tensor_proto.string_val[0].decode()
    assert json.loads(text.replace("\n    ", "\n").strip())["report_to"] == "tensorboard"


def test_resume_may_change_report_to_and_purges_recomputed_steps(tmp_path):
    problems = load_problem_set("bundled")
    out = tmp_path / "run"
    # first part untracked, stopped after step 1 by a deadline in the past
    run_training(make_config("tiny", dict(SMALL, steps=2)), str(out), problems=problems, progress=False, deadline=0.0)
    assert not (out / "tensorboard").exists()
    # the resume turns tracking on: an execution-only field, so the same run directory is accepted
    run_training(make_config("tiny", dict(SMALL, steps=2, report_to="tensorboard")), str(out), problems=problems, progress=False)
    acc = read_events(out / "tensorboard")
    assert sorted(scalar(acc, "train/reward_mean")) == [1]  # only the step computed in this process
    assert json.loads((out / "config.json").read_text())["report_to"] == "none"  # the stored config is the first one


def test_unknown_or_missing_tracker_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown tracker"):
        make_config("tiny", {"report_to": "mlflow"})
    assert parse_report_to("none") == () and parse_report_to("tensorboard,wandb") == ("tensorboard", "wandb")
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed
    with pytest.raises(UserError, match="pip install wandb"):
        Tracker.open("wandb", tmp_path, {})


def test_wandb_backend_calls_the_wandb_api(tmp_path, monkeypatch):
    """wandb is an optional extra, not installed for the tests: a recording stand-in module checks
    what the backend sends (the same rows as TensorBoard, the config, one resumable run id)."""
    import types

    calls: dict = {"init": [], "log": [], "finish": 0}
    ids = iter(["first-id", "second-id"])

    class Run:
        def __init__(self):
            self.summary: dict = {}

        def log(self, values, step):
            calls["log"].append((step, values))

        def finish(self):
            calls["finish"] += 1

    fake = types.SimpleNamespace(init=lambda **kw: calls["init"].append(kw) or Run(), util=types.SimpleNamespace(generate_id=lambda: next(ids)))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    tracker = Tracker.open("wandb", tmp_path, {"arm": "moe"})
    tracker.log_metrics({"step": 3, "reward_mean": 1.5, "w_clean": 0.25, "time": {"total": 2.0}, "policy_hack_rate": None})
    tracker.close()
    init = calls["init"][0]
    assert init["config"] == {"arm": "moe"} and init["id"] == "first-id" and init["resume"] == "allow"
    assert calls["log"] == [(3, {"train/reward_mean": 1.5, "router/w_clean": 0.25, "time/total": 2.0})]
    assert calls["finish"] == 1
    Tracker.open("wandb", tmp_path, {"arm": "moe"}).close()  # a resume continues the same wandb run
    assert calls["init"][1]["id"] == "first-id"
