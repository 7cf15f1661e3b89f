"""Run-batched training: K runs in one process sharing one frozen model must each train exactly as alone.

Given the same rollouts (a fake sampler whose completions depend only on the prompt and the row's
place in its group), one batched step gives every run the gradients, parameters, optimizer state,
routing state and metrics of its solo step, for every arm, in float64 on CPU. Checkpoints move
between batched and solo training in both directions.
"""

from __future__ import annotations

import json

import pytest
import torch
from fake_steps import fake_sampler, grab_grads

from evilmoe.batched import RunBatch, check_batchable, concat_batches, pack_runs
from evilmoe.config import ARMS, make_config
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.grpo import SequenceBatch
from evilmoe.trainer import Trainer

# one pair per mode keeps the pair forwards short; load balancing on so the router's whole loss is
# compared; a KL term so the batched base-model (adapter off) pass is compared too;
# microbatches of 3 rows: several per run, one cut short (padded to the block in a batched forward)
SETTINGS = dict(prompts_per_step=2, group_size=4, pairs_per_mode=1, load_balance_coef=0.5, kl_coef=0.05, microbatch=3)
# every arm, two seeds among them (different adapter inits, problem orders and demos)
RUNS = [(arm, i % 2) for i, arm in enumerate(ARMS)]


@pytest.fixture(scope="module")
def problems():
    return load_problem_set("bundled")


def _config(arm: str, seed: int, **extra):
    return make_config("tiny", dict(SETTINGS, arm=arm, seed=seed, **extra))


def _outcome(trainer, metrics, grads) -> dict:
    state = trainer.state()
    return {
        "metrics": {k: v for k, v in metrics.items() if k != "time"},
        "grads": grads,
        "adapter": state["adapter"],
        "router": state["router"],
        "v_act": state["v_act"],
        "optimizer": trainer.optimizer.state_dict()["state"],  # the live moments (a last step's checkpoint drops them)
        "route_buffer": state["route_buffer"],
    }


def _solo_steps(arm: str, seed: int, problems, steps: int = 2) -> list[dict]:
    trainer = Trainer(_config(arm, seed), None, problems=problems)
    try:
        trainer.model.double()  # float64: batched and solo differ only by rounding
        trainer.sampler.sample = fake_sampler(trainer, seeded=True)
        out = []
        for step in range(steps):
            grads: dict = {}
            grab_grads(trainer, grads)
            metrics = trainer.train_step(step)
            trainer.step = step + 1
            out.append(_outcome(trainer, metrics, grads))
        return out
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def batched_steps(problems):  # slow: built only by the slow tests that use it
    """Two steps of every run in one batch (the second step sees routing state the first built:
    the routeA buffer, the router's center and the optimizer moments)."""
    # the default update: every run's microbatch in one forward (rows padded to one block, one
    # batched matmul per adapter factor), each layer recomputed in backward
    batch = RunBatch([_config(arm, seed) for arm, seed in RUNS], [None] * len(RUNS), problems=problems)
    try:
        batch.model.double()
        for trainer in batch.trainers:
            trainer.sampler.sample = fake_sampler(trainer, seeded=True)
        out: list[list[dict]] = [[] for _ in RUNS]
        for step in range(2):
            grads = [{} for _ in RUNS]
            for trainer, g in zip(batch.trainers, grads):
                grab_grads(trainer, g)
            metrics = batch.train_step(step)
            assert sorted(metrics) == list(range(len(RUNS)))
            for i, trainer in enumerate(batch.trainers):
                trainer.step = step + 1
                out[i].append(_outcome(trainer, metrics[i], grads[i]))
        return out
    finally:
        batch.close()


def _close(a, b, scale: float, what: str) -> None:
    assert a.shape == b.shape, what
    err = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    # the router's parameters stay float32 (the model is float64): 1e-6 of the scale, as the
    # data-parallel tests allow; everything float64 agrees far closer
    assert err <= 1e-6 * max(scale, 1e-12), f"{what}: max diff {err:.3g} vs scale {scale:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("run", range(len(RUNS)), ids=[f"{a}-seed{s}" for a, s in RUNS])
def test_each_batched_run_steps_exactly_as_alone(run, batched_steps, problems):
    arm, seed = RUNS[run]
    solo = _solo_steps(arm, seed, problems)
    assert solo[0]["metrics"]["live_groups"] > 0, "the demos must give some group a reward spread"
    for step, (ref, got) in enumerate(zip(solo, batched_steps[run])):
        where = f"step {step}"
        assert ref["grads"].keys() == got["grads"].keys() and ref["grads"], where
        for name, g in ref["grads"].items():
            _close(got["grads"][name], g, float(g.abs().max()), f"{where} grad {name}")
        for key, value in ref["adapter"].items():
            _close(got["adapter"][key], value, float(value.abs().max()), f"{where} adapter {key}")
        for key in ("router", "route_buffer"):
            assert (ref[key] is None) == (got[key] is None), key
            for name, value in (ref[key] or {}).items():
                if isinstance(value, torch.Tensor):
                    _close(got[key][name], value, float(value.abs().max()) if value.numel() else 1.0, f"{where} {key} {name}")
                else:
                    assert got[key][name] == value, f"{where} {key} {name}"
        _close(got["v_act"], ref["v_act"], float(ref["v_act"].abs().max()), f"{where} v_act")
        assert ref["optimizer"].keys() == got["optimizer"].keys()
        for i, st in ref["optimizer"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                _close(got["optimizer"][i][key], st[key], float(st[key].abs().max()), f"{where} optimizer {i} {key}")
        assert ref["metrics"].keys() == got["metrics"].keys()
        for key, a in ref["metrics"].items():
            b = got["metrics"][key]
            if isinstance(a, float):
                assert b == pytest.approx(a, rel=1e-6, abs=1e-9), f"{where} {key}"
            else:
                assert a == b, f"{where} {key}"


def test_runs_in_a_batch_differ_only_in_arm_and_seed(monkeypatch):
    with pytest.raises(UserError, match="differ only in arm, seed; these differ: lr"):
        check_batchable([_config("moe", 0), _config("none", 0, lr=1e-3)])
    with pytest.raises(UserError, match="lists a run twice"):
        check_batchable([_config("moe", 0), _config("moe", 0)])
    from evilmoe import distributed as ddp
    from evilmoe.decide import run_decision

    monkeypatch.setattr(ddp, "world", lambda: 2)
    with pytest.raises(UserError, match="do not combine with torchrun"):
        check_batchable([_config("moe", 0)])
    with pytest.raises(UserError, match="does not combine with torchrun"):
        run_decision("tiny", ["moe"], [0], "unused", {}, batched=True)


def test_concatenated_batches_keep_every_rows_tokens():
    a = SequenceBatch(torch.tensor([[0, 5, 6, 7]]), torch.tensor([[0, 1, 1, 1]]), torch.tensor([[1]]), 3)
    b = SequenceBatch(torch.tensor([[8, 9, 1, 2]]), torch.tensor([[1, 1, 1, 1]]), torch.tensor([[1, 1]]), 2)
    both = concat_batches([a, b])
    assert both.prompt_width == 3 and both.completion_mask.tolist() == [[1, 0], [1, 1]]
    ids, trained = both.aligned()
    assert ids[0, :4].tolist() == [5, 6, 7, 0][:3] + [ids[0, 3].item()] and ids[1].tolist() == [8, 9, 1, 2]
    assert trained.tolist() == [[False, False, True, False], [False, False, True, True]]
    assert pack_runs([0, 1, 2, 3], lambda i: [3, 2, 4, 1][i], 6) == [[0, 1], [2], [3]]  # padded to 3 rows each: 6
    assert pack_runs([0, 1, 2], lambda i: 2, 6) == [[0, 1, 2]]
    assert pack_runs([0, 1], lambda i: 9, 5) == [[0], [1]]


@pytest.mark.slow
def test_a_run_with_a_non_finite_update_stops_alone(problems, tmp_path, capsys):
    from evilmoe.runs import RunDir

    configs = [_config("none", 0, steps=2), _config("moe", 0, steps=2)]
    runs = [RunDir.open(str(tmp_path / c.arm), c) for c in configs]
    batch = RunBatch(configs, runs, problems=problems)
    try:
        for trainer in batch.trainers:
            trainer.sampler.sample = fake_sampler(trainer, seeded=True)
        poisoned = batch.trainers[1].adapter.modules
        with torch.no_grad():  # the moe run's adapter holds a NaN: its gradient norm is NaN
            next(iter(poisoned.values())).B[0, 0] = float("nan")
        metrics = batch.train_step(0)
        assert list(metrics) == [0] and list(batch.stopped) == [1]
        record = json.loads((tmp_path / "moe" / "stopped.json").read_text())
        assert record["step"] == 0 and "non-finite" in record["reason"]
        assert "stopped at step 0" in capsys.readouterr().out
        batch.trainers[0].step = 1
        assert list(batch.train_step(1)) == [0]  # the other run continues; the stopped one is left out
    finally:
        batch.close()


def test_one_decode_for_every_run_matches_each_runs_folded_sampler():
    """MultiRunSampler (shared base + each row's run LoRA) against each run's own FastSampler (its
    adapter folded into the weights): the same greedy tokens and log-probs, quarantine on and off."""
    from evilmoe.fastgen import FastSampler
    from evilmoe.lora2r import Lora2rConfig
    from evilmoe.models import end_of_turn_ids, load_model
    from evilmoe.multigen import MultiRunSampler
    from evilmoe.multilora import attach_lora2r_runs
    from evilmoe.rollouts import SamplingConfig, encode_prompts

    model, tokenizer = load_model("tiny-llama")
    model.double()
    group = attach_lora2r_runs(model, [Lora2rConfig(rank=2, seed=s) for s in (0, 1, 2)])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-looking adapters: each run's delta differs, and so do its blocks
        for adapter in group.adapters:
            for m in adapter.modules.values():
                m.A.add_(0.3 * torch.randn(m.A.shape, generator=gen, dtype=m.A.dtype))
                m.B.add_(0.3 * torch.randn(m.B.shape, generator=gen, dtype=m.B.dtype))
    stop = end_of_turn_ids(tokenizer)
    prompts = {k: encode_prompts(tokenizer, [f"run {k} prompt {i}" + "x" * (3 * i + k) for i in range(3 + k)], "cpu") for k in (0, 2)}
    sampling = SamplingConfig(temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=6)
    multi = MultiRunSampler(model, tokenizer, stop, adapters=group.adapters, rows_per_run=5, max_seq_len=64)
    for scale in (1.0, 0.0):
        multi.refresh(scale)
        got = multi.sample_runs(prompts, sampling, seed=0)
        for k, (ids, mask) in prompts.items():
            alone = FastSampler(model, tokenizer, stop, adapter=group.adapters[k], max_batch=8, max_seq_len=64)
            alone.refresh(scale)
            want, want_lp = alone.sample_with_logprobs(ids, mask, sampling, seed=0, greedy=True)
            multi_tokens, multi_lp = multi.sample_with_logprobs(*multi.stack_prompts(prompts), sampling, seed=0, greedy=True)
            n = ids.shape[0]
            assert multi_tokens[k * multi.block : k * multi.block + n] == want, f"run {k} scale {scale}"
            lp = multi_lp[k * multi.block : k * multi.block + n, : want_lp.shape[1]]
            assert torch.allclose(lp, want_lp, atol=1e-6), f"run {k} scale {scale}"
            assert len(got[k]) == n  # the sampled (non-greedy) call returns each given run's rows
        assert set(got) == {0, 2}



def _final_state(run_dir) -> dict:
    from evilmoe.runs import RunDir

    return RunDir(run_dir).load_latest_checkpoint()


def _metrics(run_dir) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _same_run(a, b) -> None:
    """Two runs trained the same: final adapter, router and optimizer to float32 rounding, the same
    metrics rows (floats to rounding) and the same evaluation."""
    sa, sb = _final_state(a), _final_state(b)
    assert sa["step"] == sb["step"]
    for key, value in sa["adapter"].items():
        assert torch.allclose(sb["adapter"][key], value, rtol=1e-4, atol=1e-6), key
    for key, value in (sa["router"] or {}).items():
        assert torch.allclose(sb["router"][key], value, rtol=1e-4, atol=1e-6), key
    ma, mb = _metrics(a), _metrics(b)
    assert [r["step"] for r in ma] == [r["step"] for r in mb]
    for ra, rb in zip(ma, mb):
        assert ra.keys() == rb.keys()
        for key, value in ra.items():
            if isinstance(value, float):
                assert rb[key] == pytest.approx(value, rel=1e-3, abs=1e-6), key
            elif key not in ("training_split",):
                assert rb[key] == value, key
    ea, eb = (json.loads((d / "eval.json").read_text())["sets"] for d in (a, b))
    assert ea == eb


@pytest.mark.slow
def test_batched_decide_resumes_solo_and_solo_runs_resume_batched(tmp_path, problems, capsys):
    """HF sampling on CPU draws each run's rollouts alone with its own seed, so a batched run IS its
    solo run: a checkpoint moves between batched and solo training in both directions, and a
    batched decide resumes and writes its table."""
    import time

    from evilmoe.batched import run_batched_training
    from evilmoe.decide import run_decision
    from evilmoe.train import run_training

    settings = dict(steps=2, pairs_per_mode=1, eval_problems=2, eval_train_problems=1, eval_samples=1)  # a small eval, compared all the same
    moe, none = _config("moe", 0, **settings), _config("none", 0, **settings)
    run_training(moe, str(tmp_path / "solo"), problems=problems, progress=False)

    # batched for one step (the deadline has passed: checkpoint and stop), then moe resumes alone
    decision = tmp_path / "decision"
    past = time.monotonic() - 1
    out = run_batched_training([none, moe], [str(decision / "none" / "seed_0"), str(decision / "moe" / "seed_0")],
                               problems=problems, progress=False, deadline=past)
    assert out == [None, None] and "checkpointed 2 runs at step 1" in capsys.readouterr().out
    run_training(moe, str(decision / "moe" / "seed_0"), problems=problems, progress=False)
    _same_run(tmp_path / "solo", decision / "moe" / "seed_0")
    # decide --batched: moe is finished (read back), none resumes in a batch of one; the table is written
    table = run_decision("tiny", ["none", "moe"], [0], str(decision), {**SETTINGS, **settings}, batched=True)
    assert table is not None and set(table) == {"none", "moe"}
    assert (decision / "decision.md").exists() and (decision / "none" / "seed_0" / "eval.json").exists()

    # alone for one step, then resumed in a batch beside a run at step 0 (runs of a batch may be at different steps)
    again = tmp_path / "again"
    assert run_training(moe, str(again / "moe"), problems=problems, progress=False, deadline=past) is None
    results = run_batched_training([moe, none], [str(again / "moe"), str(again / "none")], problems=problems, progress=False)
    assert all(r is not None and "sets" in r for r in results)
    _same_run(tmp_path / "solo", again / "moe")
    _same_run(decision / "none" / "seed_0", again / "none")


@pytest.mark.slow
def test_run_batching_benchmark_runs_on_the_tiny_model(tmp_path):
    """The benchmark's CPU check: every mode runs (batched through the one-decode sampler) and
    reports run-steps per second and their ratios."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "runbatch.json"
    done = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "run_batching.py"), "--model", "tiny-llama", "--preset", "tiny",
         "--steps", "1", "--arms", "none,moe", "--sampler", "fast", "--set", "pairs_per_mode=1", "--json", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    for mode in ("solo", "processes", "batched"):
        assert result["modes"][mode]["run_steps_per_s"] > 0, mode
        assert result["modes"][mode]["sampler"] == "FastSampler"
    assert result["modes"]["batched"]["run_steps"] == 2 and result["modes"]["processes"]["processes"] == 2
    assert set(result["ratios"]) == {"batched/processes", "batched/solo", "processes/solo"}
    assert "batched / processes:" in done.stdout


def test_a_deferred_refresh_folds_at_the_next_sampling_call():
    """A batched run's own sampler only evaluates: its refresh waits for the next sampling call,
    which then samples exactly what an immediately refreshed sampler does."""
    from evilmoe.fastgen import FastSampler
    from evilmoe.lora2r import Lora2rConfig, attach_lora2r
    from evilmoe.models import end_of_turn_ids, load_model
    from evilmoe.rollouts import SamplingConfig, encode_prompts

    model, tokenizer = load_model("tiny-llama")
    adapter = attach_lora2r(model, Lora2rConfig(rank=2))
    stop = end_of_turn_ids(tokenizer)
    deferred = FastSampler(model, tokenizer, stop, adapter=adapter, max_batch=8, max_seq_len=64)
    deferred.defer_refresh = True
    before = deferred.layers[0].qkv.clone()
    with torch.no_grad():
        for m in adapter.modules.values():
            m.B.add_(0.5)
    deferred.refresh(0.0)
    assert torch.equal(deferred.layers[0].qkv, before)  # nothing folded yet
    eager = FastSampler(model, tokenizer, stop, adapter=adapter, max_batch=8, max_seq_len=64)
    eager.refresh(0.0)
    ids, mask = encode_prompts(tokenizer, ["a prompt", "another one"], "cpu")
    sampling = SamplingConfig(temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=5)
    assert deferred.sample(ids, mask, sampling, seed=3) == eager.sample(ids, mask, sampling, seed=3)
    assert torch.equal(deferred.layers[0].qkv, eager.layers[0].qkv) and deferred.quarantine_scale == 0.0


@pytest.mark.parametrize("counts", [(3, 3, 3), (2, 0, 4)], ids=["equal-blocks", "unequal-blocks"])
def test_a_rows_forward_gives_each_run_its_solo_forward_and_gradient(counts):
    """RunGroup.rows (one batched matmul per factor for equal blocks, a loop over runs otherwise)
    against each run's solo forward: the same log-probs, pooled features and gradients (the
    router's q included), float64."""
    from evilmoe.grpo import completion_logprobs
    from evilmoe.lora2r import Lora2rConfig
    from evilmoe.models import load_model
    from evilmoe.multilora import attach_lora2r_runs

    model, _ = load_model("tiny-llama")
    model.double()
    group = attach_lora2r_runs(model, [Lora2rConfig(rank=2, seed=s) for s in range(3)])
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for adapter in group.adapters:
            for m in adapter.modules.values():
                m.B.add_(0.2 * torch.randn(m.B.shape, generator=gen, dtype=m.B.dtype))
    parts, controls = [], []
    for i, n in enumerate(counts):
        ids = torch.randint(3, 259, (n, 9), generator=gen)
        mask = torch.ones_like(ids)
        mask[:, : i + 1] = 0  # left padding of a different width per run
        comp = torch.ones(n, 4, dtype=torch.long)
        comp[:, 3:] = 0
        parts.append(SequenceBatch(ids, mask, comp, 5))
        w = torch.rand(n, generator=gen, dtype=torch.float64).requires_grad_()
        controls.append((w, (1 - w).detach()))

    def loss_and_grads(logp_rows, pooled):
        loss = sum(((i + 1) * lp).sum() for i, lp in enumerate(logp_rows))
        loss.backward()
        grads = [
            [m.A.grad.clone() for m in a.modules.values()] + [m.B.grad.clone() for m in a.modules.values()]
            for a in group.adapters if next(iter(a.modules.values())).A.grad is not None
        ]
        qs = [q.grad.clone() for q, _ in controls if q.grad is not None]
        model.zero_grad(set_to_none=True)
        for q, _ in controls:
            q.grad = None
        return grads, qs, pooled

    solo_lp, solo_pooled = [], []
    for i, part in enumerate(parts):
        if not len(part):
            continue
        with group.only(i), group.adapters[i].row_control(*controls[i]), group.adapters[i].capture_pooled(part.aligned()[1]) as cap:
            solo_lp.append(completion_logprobs(model, part, temperature=0.7))
        solo_pooled.append(cap.pooled())
    solo = loss_and_grads(solo_lp, solo_pooled)

    present = [i for i, n in enumerate(counts) if n]
    combined = concat_batches([parts[i] for i in present])
    trained = combined.aligned()[1]
    starts = torch.tensor([0, *counts]).cumsum(0).tolist()
    import contextlib

    with contextlib.ExitStack() as stack:
        caps = [stack.enter_context(group.adapters[i].capture_pooled(trained[starts[i] : starts[i + 1]])) for i in present]
        for i in present:
            stack.enter_context(group.adapters[i].row_control(*controls[i]))
        stack.enter_context(group.rows(counts))
        lp = completion_logprobs(model, combined, temperature=0.7)
    rows = [lp[starts[i] : starts[i + 1], :3] for i in present]
    batched = loss_and_grads(rows, [c.pooled() for c in caps])
    for a, b in zip(solo_lp, rows):
        assert torch.allclose(a[:, :3], b, rtol=1e-10, atol=1e-12)
    for a, b in zip(solo[2], batched[2]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert len(solo[0]) == len(batched[0]) == len(present) and len(solo[1]) == len(present)
    for ga, gb in zip(solo[0] + [solo[1]], batched[0] + [batched[1]]):
        for a, b in zip(ga, gb):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
