"""Data parallelism on CPU: 2 gloo ranks x B/2 prompts must update like 1 rank x B prompts.

The rollouts are made identical in both setups by a fake sampler whose completions depend only on
the prompt and the sample's place in its group (real sampling draws one batched random stream per
rank, see Trainer.collect); teacher demos are drawn in global row order by design. What is tested is
the rest: sharding, the gathered rewards and routing features (routeA buffer and thresholds, router
diagnostics), the global Dr.GRPO normaliser, the gradient sum that does not count the pin loss twice,
and that every rank ends the step with the same parameters and optimizer state.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from fake_steps import fake_sampler, grab_grads

from evilmoe.config import make_config
from evilmoe.env.problems import load_problem_set

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow

ARMS = ("none", "routeA", "moe")
# 2 prompts x 4 samples (one group per rank) (2 template demos per group give the reward spread a random model lacks);
# one pair per mode keeps the pair forwards short; load balancing on so its global mean is tested too
SETTINGS = dict(prompts_per_step=2, group_size=4, pairs_per_mode=1, load_balance_coef=0.5)


def _config(arm: str):
    return make_config("tiny", dict(SETTINGS, arm=arm))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_step(arm: str, problems) -> dict:
    """One train_step in float64 with fake rollouts; the gradients the optimizer saw and the state after."""
    from evilmoe.train import Trainer

    trainer = Trainer(_config(arm), None, problems=problems)
    try:
        trainer.model.double()  # float64: the 1-rank and 2-rank sums differ only by rounding
        trainer.sampler.sample = fake_sampler(trainer, seeded=False)
        before = {k: v.clone() for k, v in trainer.state()["adapter"].items()}
        grads: dict[str, torch.Tensor] = {}
        grab_grads(trainer, grads)
        metrics = trainer.train_step(0)
        state = trainer.state()
        return {
            "metrics": {k: v for k, v in metrics.items() if k != "time"},
            "grads": grads,
            "before": before,
            "adapter": state["adapter"],
            "router": state["router"],
            "optimizer": trainer.optimizer.state_dict()["state"],
            "route_buffer": state["route_buffer"],
        }
    finally:
        trainer.close()


def _set_env(rank: int, world: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)


def _step_worker(rank: int, world: int, port: int, out: str) -> None:
    from evilmoe import distributed as ddp

    _set_env(rank, world, port)
    ddp.init()
    try:
        problems = load_problem_set("bundled")
        torch.save({arm: _one_step(arm, problems) for arm in ARMS}, Path(out) / f"rank{rank}.pt")
    finally:
        ddp.shutdown()


def _close(a, b, scale: float, what: str) -> None:
    assert a.shape == b.shape, what
    err = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    assert err <= 1e-6 * max(scale, 1e-12), f"{what}: max diff {err:.3g} vs scale {scale:.3g}"


@pytest.fixture(scope="module")
def two_rank_steps(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_step_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method="spawn")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("arm", ARMS)
def test_two_ranks_update_like_one_process(arm, two_rank_steps):
    ref = _one_step(arm, load_problem_set("bundled"))
    ddp0, ddp1 = two_rank_steps[0][arm], two_rank_steps[1][arm]
    assert ref["metrics"]["live_groups"] > 0, "the demos must give some group a reward spread"

    # the gradients the optimizer saw: same set, same values (global normaliser, pin loss counted once)
    assert ref["grads"].keys() == ddp0["grads"].keys() == ddp1["grads"].keys() and ref["grads"]
    for name, g in ref["grads"].items():
        scale = float(g.abs().max())
        _close(ddp0["grads"][name], g, scale, f"grad {name}")
        _close(ddp1["grads"][name], ddp0["grads"][name], scale, f"grad {name} rank 1")

    # parameters after the step: changed, and equal (to rounding) on both ranks and to one process
    moved = max(float((ref["adapter"][k] - ref["before"][k]).abs().max()) for k in ref["adapter"])
    assert moved > 0, "the step did not change the adapter: the test would be vacuous"
    for key, value in ref["adapter"].items():
        _close(ddp0["adapter"][key], value, moved, f"adapter {key}")
        _close(ddp1["adapter"][key], value, moved, f"adapter {key} rank 1")
    if arm == "moe":
        for key, value in ref["router"].items():
            scale = float(value.abs().max())
            _close(ddp0["router"][key], value, scale, f"router {key}")
            _close(ddp1["router"][key], value, scale, f"router {key} rank 1")
    # AdamW moments (every parameter's exp_avg / exp_avg_sq)
    assert ref["optimizer"].keys() == ddp0["optimizer"].keys() == ddp1["optimizer"].keys()
    for i, st in ref["optimizer"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            scale = float(st[key].abs().max())
            _close(ddp0["optimizer"][i][key], st[key], scale, f"optimizer {i} {key}")
            _close(ddp1["optimizer"][i][key], st[key], scale, f"optimizer {i} {key} rank 1")

    # routing state and the step's metrics read like one process's
    if arm == "routeA":
        for d in (ddp0, ddp1):
            _close(d["route_buffer"]["features"], ref["route_buffer"]["features"], float(ref["route_buffer"]["features"].abs().max()), "buffer")
        assert len(ref["route_buffer"]["features"]) == 8
    m_ref, m0 = ref["metrics"], ddp0["metrics"]
    for key in m_ref:
        if key in ("clip_frac", "ratio_mean"):  # means over microbatches, which are cut differently
            continue
        a, b = m_ref[key], m0[key]
        if isinstance(a, float):
            assert b == pytest.approx(a, rel=1e-6, abs=1e-9), key
        else:
            assert a == b, key
    if arm == "routeA":
        assert m_ref["zone_absorb"] < 1, "the buffer's thresholds must be active (not every rollout absorbs)"
    if arm == "moe":
        assert m_ref["w_auroc"] is not None or m_ref["w_clean"] is not None


def test_uneven_prompt_split_is_a_clear_error(monkeypatch):
    from evilmoe import distributed as ddp
    from evilmoe.errors import UserError
    from evilmoe.train import Trainer

    monkeypatch.setattr(ddp, "world", lambda: 3)
    with pytest.raises(UserError, match="multiple of the number of ranks"):
        Trainer(_config("none"), None)


def _e2e_config():
    return make_config("tiny", dict(SETTINGS, arm="moe", steps=3, eval_problems=2, eval_train_problems=0))


def _train_worker(rank: int, world: int, port: int, out: str, crash_at: int) -> None:
    """run_training on 2 ranks, killed (on both) before step `crash_at`, as a crash would."""
    from evilmoe import distributed as ddp
    from evilmoe.train import Trainer, run_training

    _set_env(rank, world, port)
    ddp.init()
    original = Trainer.train_step

    def crash(self, step):
        if step == crash_at:
            raise KeyboardInterrupt("simulated kill")
        return original(self, step)

    Trainer.train_step = crash
    try:
        run_training(_e2e_config(), out, problems=load_problem_set("bundled"), progress=False)
    except KeyboardInterrupt:
        pass
    finally:
        ddp.shutdown()


def test_two_rank_run_then_resume_on_one(tmp_path, capsys):
    """2 ranks train steps 0-1 of a 3-step run (only rank 0 writes), one process resumes and finishes."""
    from evilmoe.train import run_training

    run = tmp_path / "run"
    mp.start_processes(_train_worker, args=(2, _free_port(), str(run), 2), nprocs=2, join=True, start_method="spawn")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [-1, 0, 1]  # one row per step: rank 1 wrote nothing
    assert (run / "command.txt").read_text().count("\n") == 1  # only rank 0 opened the run directory
    assert sorted(p.name for p in (run / "rollouts").glob("step_*")) == ["step_000000.jsonl", "step_000001.jsonl"]
    assert len((run / "rollouts" / "step_000000.jsonl").read_text().splitlines()) == 8  # both ranks' rows
    assert (run / "checkpoints" / "LATEST").read_text().strip() == "step_000002"

    result = run_training(_e2e_config(), str(run), problems=load_problem_set("bundled"), progress=False)
    assert "resumed" in capsys.readouterr().out
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [-1, 0, 1, 2]
    assert result["steps_trained"] == 3 and (run / "eval.json").is_file()
