"""The speed benchmarks' own logic on CPU: random-init shapes, the update's model FLOPs, and smoke runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import eval_rows  # noqa: E402
import generation  # noqa: E402
import grpo_step  # noqa: E402
import localize  # noqa: E402
from random_models import build_config, random_model  # noqa: E402

from evilmoe.fastgen import FastSampler  # noqa: E402
from evilmoe.models import end_of_turn_ids, tiny_model, tiny_tokenizer  # noqa: E402
from evilmoe.rollouts import SamplingConfig  # noqa: E402


@pytest.mark.parametrize("name,published", [("smollm2-135m", 134.5e6), ("qwen3-1.7b", 1.72e9), ("qwen3-4b", 4.02e9)])
def test_random_shapes_have_the_published_parameter_counts(name, published):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(build_config(name))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(published, rel=0.01)
    assert model.config.tie_word_embeddings


def test_a_random_model_never_stops_and_every_sampled_id_decodes():
    tokenizer = tiny_tokenizer()
    model = random_model("tiny-llama", tokenizer, "cpu", torch.float32)
    stop = end_of_turn_ids(tokenizer)
    sampler = FastSampler(model, tokenizer, stop, max_batch=8, max_seq_len=64)
    ids = torch.randint(3, len(tokenizer), (8, 8))
    rows = sampler.sample(ids, torch.ones_like(ids), SamplingConfig(0.7, 0.95, 20, 32), seed=0)
    assert all(len(r) == 32 for r in rows)  # nobody stopped
    assert all(0 <= t < len(tokenizer) and t not in stop for r in rows for t in r)


def test_update_flops_equal_the_flop_counter_on_a_frozen_model():
    """2 x (projections + LM head on completion positions) + 3 x causal attention, as documented.

    The counter sees eager attention, which multiplies the full L x L score matrix; the documented
    count is causal, so the difference is added back."""
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny_model("llama").double().requires_grad_(False)
    model.config._attn_implementation = "eager"
    length, completion = 12, 5
    ids = torch.randint(3, 300, (1, length))
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)  # gradients of activations only
    with FlopCounterMode(display=False) as counter:
        hidden = model.get_decoder()(inputs_embeds=embeds).last_hidden_state
        logits = model.get_output_embeddings()(hidden[:, length - 1 - completion : length - 1])
        logits.log_softmax(-1).sum().backward()
    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads
    masked_half = 4 * c.num_hidden_layers * c.num_attention_heads * head_dim * (length * length - length * (length + 1) / 2)
    ours = grpo_step.update_flops(c, torch.ones(1, length), torch.ones(1, completion))
    assert ours + 3 * masked_half == counter.get_total_flops()


def test_generation_benchmark_runs_and_writes_every_number(tmp_path, capsys):
    out = tmp_path / "gen.json"
    trace = tmp_path / "trace.json"
    code = generation.main(["--device", "cpu", "--threads", "1", "--random-init", "tiny-llama", "--batch-sizes", "2,4",
                            "--prompt-lens", "12", "--new-tokens", "6", "--hf-new-tokens", "3", "--profile-batch", "4",
                            "--trace", str(trace), "--checks", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "profile: 5 eager decode steps + sampling, batch 4 (4 rows)" in printed
    assert "aten::mm" in printed and "sampling" in printed  # the kernel table
    data = json.loads(out.read_text())
    assert [r["batch"] for r in data["results"]] == [2, 4]
    for r in data["results"]:
        assert r["hf_new_tokens"] == 3 and r["new_tokens"] == 6
        assert r["step_ms"] > 0 and r["sample_ms"] > 0 and 0 < r["bound_fraction"]
        assert r["speedup"] == pytest.approx(r["fast_tokens_per_s"] / r["hf_tokens_per_s"])
    assert data["checks"]["greedy_rows_identical_to_hf"] == data["checks"]["greedy_rows"]  # fp32 on CPU: exact
    assert data["checks"]["logprob_max_abs_diff"] < 1e-4
    assert json.loads(trace.read_text())["traceEvents"]


def test_generation_benchmark_can_skip_plain_generate(tmp_path):
    out = tmp_path / "gen.json"
    generation.main(["--device", "cpu", "--threads", "1", "--random-init", "tiny-qwen3", "--batch-sizes", "2",
                     "--prompt-lens", "8", "--new-tokens", "4", "--hf-new-tokens", "0", "--no-checks", "--json", str(out)])
    (row,) = json.loads(out.read_text())["results"]
    assert "hf_tokens_per_s" not in row and "speedup" not in row and row["fast_tokens_per_s"] > 0


@pytest.mark.slow
def test_grpo_step_benchmark_reports_update_flops_and_mfu(tmp_path):
    out = tmp_path / "step.json"
    code = grpo_step.main(["--preset", "tiny", "--random-init", "tiny-llama", "--model", "tiny-llama", "--steps", "2",
                           "--peak-tflops", "1", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["header"]["random_init"] == "tiny-llama" and data["failure"] is None
    for step in data["steps"]:
        assert step["update_tflop"] > 0
        assert step["update_mfu"] == pytest.approx(step["update_tflop"] * 1e12 / step["time"]["update"] / 1e12)
    assert data["summary"]["update_mfu"] == data["steps"][1]["update_mfu"]  # the one timed step


def test_activation_memory_counts_one_layer_and_checkpointing_keeps_less(capsys):
    import activation_memory

    common = ["--shape", "tiny-llama", "--dtype", "float32", "--rows", "2", "--prompt", "8", "--completion", "8"]
    activation_memory.main(common)
    plain = capsys.readouterr().out
    activation_memory.main([*common, "--gradient-checkpointing"])
    checkpointed = capsys.readouterr().out

    def per_layer(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith("per token:"))
        return float(line.split()[2])

    # without checkpointing a layer keeps at least its MLP's gate and up outputs (2 x 128 fp32 per token)
    assert per_layer(plain) * 1e3 >= 2 * 128 * 4
    # with it, a layer keeps its input (64 fp32 per token) and little else
    assert per_layer(checkpointed) * 1e3 < per_layer(plain) * 1e3 / 4
    assert "extrapolated: microbatch 64 rows x 550 tokens, 2 layers" in plain


def test_adapter_overhead_times_every_control_against_the_base_forward(capsys):
    import adapter_overhead

    adapter_overhead.main(["--shape", "tiny-llama", "--layers", "1", "--rows", "2", "--tokens", "16", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    rows = {line[:32].strip(): line[32:].split() for line in lines[2:]}
    assert list(rows) == ["base (adapter off), forward", "plain, forward + backward", "rows, forward + backward", "rows, forward (no_grad)"]
    assert rows["base (adapter off), forward"][1] == "1.00"  # the baseline of the ratios
    assert all(float(seconds) > 0 and float(ratio) > 0 for seconds, ratio in rows.values())


def test_eval_rows_benchmark_times_every_value_on_the_same_rows(capsys):
    times = eval_rows.main(["--rows", "3,8", "--problems", "4", "--samples", "2", "--repeats", "1"])
    assert set(times) == {3, 8} and all(len(v) == 1 and v[0] > 0 for v in times.values())
    lines = capsys.readouterr().out.splitlines()
    assert "= 8 rows" in lines[0]
    assert lines[2].split("|")[:2] == ["            3 ", "     3 "] and lines[3].split("|")[1] == "     1 "  # calls: ceil(8 / rows)


def test_localize_benchmark_gives_the_plain_measurements_rates_with_fewer_rows(capsys):
    """Both ways measure every condition on the same prompts and seeds: the same rates; localize
    samples the slices' ends once (5 scales + 2 slices instead of 5 + 2 + 2 conditions)."""
    got = localize.main(["--problems", "3", "--draws", "2", "--samples", "1", "--sets", "heldout"])
    assert got["mismatched"] == [] and got["sampled_rows"] == 7 * 3
    assert all(v > 0 for v in got["seconds"].values())
    out = capsys.readouterr().out
    assert "localize / plain:" in out and "rates identical: True" in out and "27 rows sampled and graded" in out


def test_arm_update_times_each_arms_phases_on_the_same_rollouts(tmp_path, capsys):
    import arm_update

    out = tmp_path / "arms.json"
    arm_update.main(["--model", "tiny-llama", "--preset", "tiny", "--arms", "absorb,moe", "--repeats", "1",
                     "--completion-tokens", "4", "--json", str(out)])
    data = json.loads(out.read_text())
    absorb, moe = data["medians"]["absorb"], data["medians"]["moe"]
    assert list(absorb) == list(arm_update.PHASES)
    # only the learned router forwards the pairs (in prepare, before the grades) and has a router loss
    assert absorb["(pair fwd)"] == 0.0 and absorb["prepare"] < moe["prepare"]  # absorb's are empty calls
    assert 0 < moe["(pair fwd)"] <= moe["prepare"]
    assert all(v >= 0 for v in moe.values()) and moe["update"] > 0 and absorb["update"] > 0
    assert set(data["pair_pass"]) == {"one sorted pass", "a pass per side"} and all(v > 0 for v in data["pair_pass"].values())
    text = capsys.readouterr().out
    assert "update x absorb" in text and "pair forwards, median of 1" in text


def test_share_prompt_benchmark_measures_less_kept_for_the_backward_only_where_rows_share(tmp_path, capsys):
    import share_prompt

    common = ["--prompts", "2", "--group-size", "4", "--microbatch", "8", "--prompt-tokens", "60", "--completion-tokens", "8", "--repeats", "1"]
    medians = {}
    for arm in ("none", "moe"):
        out = tmp_path / f"{arm}.json"
        assert share_prompt.main([*common, "--arm", arm, "--json", str(out)]) == 0
        medians[arm] = json.loads(out.read_text())["median"]
    assert "update activations saved, MB" in capsys.readouterr().out
    # none: a group's 4 rows share one ~60-token prompt (completions <= 8): far less is kept
    assert medians["none"]["on"]["saved_mb"] < 0.6 * medians["none"]["off"]["saved_mb"]
    # moe: every row its own router w, nothing shares in the update: the very same forwards
    assert medians["moe"]["on"]["saved_mb"] == medians["moe"]["off"]["saved_mb"] > 0
    assert all(m[s]["update_s"] > 0 and m[s]["behaviour_s"] > 0 for m in medians.values() for s in ("on", "off"))
