"""A run's checkpoints: the warm start kept as its factors, the last step's checkpoint without the
optimizer, resuming a run with a warm start exactly as if uninterrupted (from factors, and from a
checkpoint written when the warm start was kept as dense deltas), and every reader of a run's
checkpoint (eval, localize, relearn, export) on both forms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fake_steps import train_until_killed

import evilmoe.train as train_module
import evilmoe.warmstart as warmstart
from evilmoe.cli import main as cli_main
from evilmoe.config import make_config
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.lora2r import factor_delta
from evilmoe.models import load_model
from evilmoe.train import run_training

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problems():
    return load_problem_set("bundled")


def _latest(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "LATEST").read_text().strip() / "state.pt"


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def to_dense_form(run_dir: Path) -> None:
    """Rewrite the run's last checkpoint as it was written when the warm start was kept as dense
    deltas (each module's merged_delta(1.0)); nothing else of the checkpoint changes."""
    path = _latest(run_dir)
    state = _load(path)
    ws = state["warm_start"]
    f = ws["factors"]
    names = list(dict.fromkeys(k.rpartition(".")[0] for k in f))
    dense = {n: factor_delta(f[f"{n}.A"], f[f"{n}.B"], f[f"{n}.A0"], f[f"{n}.B0"], ws["rank"], ws["scaling"]) for n in names}
    state["warm_start"] = {"deltas": dense, "losses": ws["losses"], "key": ws["key"]}
    torch.save(state, path)


# --- what a checkpoint holds ---------------------------------------------------------------------
def test_checkpoints_keep_the_warm_start_as_factors_and_the_last_drops_the_optimizer(trained_tiny_run):
    config = json.loads((trained_tiny_run / "config.json").read_text())
    last, before = _load(_latest(trained_tiny_run)), _load(trained_tiny_run / "checkpoints" / "step_000001" / "state.pt")
    assert last["step"] == config["steps"] == 2 and before["step"] == 1

    ws = last["warm_start"]
    assert set(ws) == {"factors", "rank", "scaling", "losses", "key"}
    r = ws["rank"]
    assert r == config["rank"] and ws["scaling"] == config["lora_alpha"] / config["rank"]
    model, _ = load_model(config["model"], device="cpu", dtype=torch.float32)
    targeted = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in config["targets"]}
    assert {k.rpartition(".")[0] for k in ws["factors"]} == set(targeted)
    for name, linear in targeted.items():
        d_out, d_in = linear.weight.shape
        for key, shape in (("A", (2 * r, d_in)), ("A0", (2 * r, d_in)), ("B", (d_out, 2 * r)), ("B0", (d_out, 2 * r))):
            assert ws["factors"][f"{name}.{key}"].shape == shape, (name, key)
    # the warm start moved off its init (else a lost factor would go unnoticed)
    assert all(not torch.equal(ws["factors"][f"{n}.B"], ws["factors"][f"{n}.B0"]) for n in targeted)
    kept = sum(t.numel() for t in ws["factors"].values())
    assert kept == sum(2 * 2 * r * (m.in_features + m.out_features) for m in targeted.values())  # 2r rows of A, A0; 2r columns of B, B0

    # the optimizer: in every checkpoint a resume may train on from, not in the finished run's last one
    assert last["optimizer"] is None
    moments = before["optimizer"]["state"]
    adapter_numbers = sum(t.numel() for k, t in before["adapter"].items() if k.endswith((".A", ".B")))
    moment_numbers = sum(st["exp_avg"].numel() for st in moments.values())
    assert moment_numbers >= adapter_numbers  # Adam keeps one exp_avg (and one exp_avg_sq) per trained number
    assert _latest(trained_tiny_run).stat().st_size < (trained_tiny_run / "checkpoints" / "step_000001" / "state.pt").stat().st_size


# --- resuming ------------------------------------------------------------------------------------
def _final(run_dir: Path) -> dict:
    return _load(_latest(run_dir))


def _rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path) -> None:
    sa, sb = _final(a), _final(b)
    assert sa["step"] == sb["step"]
    for key in sa["adapter"]:
        assert torch.equal(sa["adapter"][key], sb["adapter"][key]), key
    for key in sa["router"]:
        assert torch.equal(sa["router"][key], sb["router"][key]), key
    assert _rows(a) == _rows(b)
    assert json.loads((a / "eval.json").read_text())["sets"] == json.loads((b / "eval.json").read_text())["sets"]


def test_a_run_with_a_warm_start_resumes_exactly_from_either_form(tmp_path, problems, monkeypatch):
    """Cut off after step 2 of 3, the run resumes from its checkpoint's warm start (never retrained:
    the cache is off and training it again fails here) to the uninterrupted run's adapter, router,
    metrics and evaluation, bit for bit; from the same checkpoint with the warm start as dense deltas
    too. A checkpoint cut off during the final evaluation (the last one, without the optimizer)
    resumes to the same evaluation; one of an earlier step without the optimizer is refused."""
    config = make_config("tiny", dict(
        arm="moe", steps=3, checkpoint_every=1, pairs_per_mode=1, warm_start_steps=1, warm_start_batch=2, warm_start_lr=0.05, warm_start_cache="none",
        eval_problems=1, eval_train_problems=1, eval_samples=1,
    ))
    run_training(config, str(tmp_path / "straight"), problems=problems, progress=False)

    train_until_killed(config, str(tmp_path / "factors"), problems, monkeypatch, at_step=2)
    assert _load(_latest(tmp_path / "factors"))["step"] == 2 and "factors" in _load(_latest(tmp_path / "factors"))["warm_start"]
    for name in ("dense", "no-optimizer"):
        shutil.copytree(tmp_path / "factors", tmp_path / name)
    to_dense_form(tmp_path / "dense")

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed run must merge its checkpoint's warm start, not train one")

    train_warm_start = warmstart.train_warm_start
    monkeypatch.setattr(warmstart, "train_warm_start", no_training)
    for name in ("factors", "dense"):
        run_training(config, str(tmp_path / name), problems=problems, progress=False)
        _assert_same_run(tmp_path / "straight", tmp_path / name)
    assert "deltas" in _final(tmp_path / "dense")["warm_start"]  # a resumed run keeps the form it was given

    state = _load(_latest(tmp_path / "no-optimizer"))
    state["optimizer"] = None
    torch.save(state, _latest(tmp_path / "no-optimizer"))
    with pytest.raises(UserError, match="at step 2 holds no optimizer state"):
        run_training(config, str(tmp_path / "no-optimizer"), problems=problems, progress=False)

    # cut off in the final evaluation: the last checkpoint (no optimizer) is there, eval.json is not
    monkeypatch.setattr(warmstart, "train_warm_start", train_warm_start)  # a new run (cache off) trains its warm start
    final_evaluation = train_module.final_evaluation

    def crash_in_eval(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(train_module, "final_evaluation", crash_in_eval)
    with pytest.raises(KeyboardInterrupt):
        run_training(config, str(tmp_path / "evalcut"), problems=problems, progress=False)
    assert _final(tmp_path / "evalcut")["optimizer"] is None and not (tmp_path / "evalcut" / "eval.json").exists()
    monkeypatch.setattr(train_module, "final_evaluation", final_evaluation)
    run_training(config, str(tmp_path / "evalcut"), problems=problems, progress=False)
    _assert_same_run(tmp_path / "straight", tmp_path / "evalcut")


# --- the readers of a finished run ---------------------------------------------------------------
@pytest.fixture(scope="module")
def both_forms(trained_tiny_run, tmp_path_factory):
    """Two copies of a finished run with a warm start: as written (factors), and its last checkpoint
    rewritten with the warm start as dense deltas."""
    root = tmp_path_factory.mktemp("forms")
    shutil.copytree(trained_tiny_run, root / "factors")
    shutil.copytree(trained_tiny_run, root / "dense")
    to_dense_form(root / "dense")
    return root / "factors", root / "dense"


def test_policy_and_export_read_the_same_model_from_either_form(both_forms):
    """eval and localize build the policy with Policy.from_run_dir, relearn through the Trainer's
    Policy, export with load_run: the same base weights (warm start merged), bit for bit."""
    from evilmoe.export import load_run
    from evilmoe.policy import Policy

    factors, dense = both_forms
    config = json.loads((factors / "config.json").read_text())
    untouched = load_model(config["model"], device="cpu", dtype=torch.float32)[0].state_dict()
    policies = [Policy.from_run_dir(path) for path in (factors, dense)]
    assert policies[0][1] == policies[1][1] == 2
    weights = [{k: v for k, v in p.model.state_dict().items()} for p, _ in policies]
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
    exported = [load_run(path).model.state_dict() for path in (factors, dense)]
    assert exported[0].keys() == untouched.keys()
    for k in untouched:
        assert torch.equal(exported[0][k], exported[1][k]), k
    moved = [k for k in untouched if not torch.equal(exported[0][k], untouched[k])]
    assert moved and all(k.endswith("proj.weight") for k in moved)  # the warm start is merged, into the targets only


def test_eval_localize_relearn_and_export_run_from_either_form(both_forms, tmp_path):
    factors, dense = both_forms
    results = {}
    for path in (factors, dense):
        assert cli_main(["eval", str(path)]) == 0
        assert cli_main(["localize", str(path), "--slices", "2", "--scales", "0,1", "--sets", "heldout", "--grading-workers", "1"]) == 0
        assert cli_main(["relearn", str(path), "--steps", "1", "--grading-workers", "1"]) == 0
        assert cli_main(["export", str(path), "--out", str(tmp_path / path.name)]) == 0
        results[path.name] = {
            "eval": json.loads((path / "eval.json").read_text())["sets"],
            "dose": json.loads((path / "localization.json").read_text())["dose"],
            "relearn": json.loads((path / "relearn-deleted.json").read_text())["hack_curve"],
        }
    assert results["factors"] == results["dense"]
    from safetensors.torch import load_file

    files = [load_file(str(next((tmp_path / name).glob("*.safetensors")))) for name in ("factors", "dense")]
    assert files[0].keys() == files[1].keys() and all(torch.equal(files[0][k], files[1][k]) for k in files[0])
