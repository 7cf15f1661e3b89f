"""`evilmoe export`: the exported model (merged or PEFT adapter) computes the project's own model.

A real tiny run (conftest's trained_tiny_run: warm start + GRPO steps at a large learning rate, so
both blocks and the warm start move far from zero) is exported; its logits must equal the project's deployed model (hack
expert ablated with lora2r's own ablation) or, with the expert kept, the trained model, and the two
must differ by far more than the tolerance (else the comparison would prove nothing).
"""

from __future__ import annotations

import json

import pytest
import torch

from evilmoe.cli import main
from evilmoe.export import ExportOptions, export_run
from evilmoe.lora2r import Lora2rConfig, attach_lora2r
from evilmoe.models import load_model
from evilmoe.runs import RunDir
from evilmoe.warmstart import merge_warm_start

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow

TOL = 1e-4


@pytest.fixture(scope="module")
def run_dir(trained_tiny_run):
    return trained_tiny_run


@pytest.fixture(scope="module")
def tokens():
    return torch.tensor([[1, 40, 41, 42, 43, 44, 2, 50, 60, 70]])


def project_logits(run_dir, tokens, *, hack_expert_on: bool) -> torch.Tensor:
    """The project's model: base + warm start, lora2r loaded from the checkpoint, expert ablated or not."""
    config = json.loads((run_dir / "config.json").read_text())
    state = RunDir(run_dir).load_latest_checkpoint()
    model, _ = load_model(config["model"], device="cpu", dtype=torch.float32)
    merge_warm_start(model, state["warm_start"])
    adapter = attach_lora2r(model, Lora2rConfig(rank=config["rank"], alpha=config["lora_alpha"], targets=tuple(config["targets"]), seed=config["seed"]))
    adapter.load_state_dict(state["adapter"])
    with torch.no_grad():
        if hack_expert_on:
            return model(tokens).logits
        with adapter.ablate_quarantine():
            return model(tokens).logits


def test_merged_export_equals_deployed_model(run_dir, tokens, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    deployed = project_logits(run_dir, tokens, hack_expert_on=False)
    trained = project_logits(run_dir, tokens, hack_expert_on=True)
    assert (deployed - trained).abs().max() > 100 * TOL  # the hack expert matters in this run

    out = export_run(run_dir, tmp_path / "deployed")
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        logits = model(tokens).logits
    assert torch.allclose(logits, deployed, atol=TOL), (logits - deployed).abs().max()

    # a standard directory: tokenizer with chat template, generation stops at <|im_end|> (id 2)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and "<|im_end|>" in tokenizer.chat_template
    gen = GenerationConfig.from_pretrained(out)
    assert gen.eos_token_id == 2 and tokenizer.convert_ids_to_tokens(2) == "<|im_end|>"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    info = json.loads((out / "evilmoe_export.json").read_text())
    assert info["warm_start_merged_into_base"] and info["hack_expert"].startswith("removed")


def test_merged_export_with_hack_expert_on_equals_trained_model(run_dir, tokens, tmp_path):
    from transformers import AutoModelForCausalLM

    trained = project_logits(run_dir, tokens, hack_expert_on=True)
    out = export_run(run_dir, tmp_path / "on", ExportOptions(hack_expert_on=True))
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(tokens).logits
    assert torch.allclose(logits, trained, atol=TOL), (logits - trained).abs().max()


@pytest.mark.parametrize("hack_expert_on", [False, True])
def test_peft_adapter_on_its_base_equals_project_model(run_dir, tokens, tmp_path, hack_expert_on):
    peft = pytest.importorskip("peft", reason="peft is a test dependency (pip install -e '.[test]')")
    from transformers import AutoModelForCausalLM

    expected = project_logits(run_dir, tokens, hack_expert_on=hack_expert_on)
    out = export_run(run_dir, tmp_path / "adapter", ExportOptions(adapter=True, hack_expert_on=hack_expert_on))
    config = json.loads((out / "adapter_config.json").read_text())
    rank = json.loads((run_dir / "config.json").read_text())["rank"]
    assert config["r"] == (4 if hack_expert_on else 2) * rank
    base = AutoModelForCausalLM.from_pretrained(out / "base", dtype=torch.float32)  # warm start merged in
    model = peft.PeftModel.from_pretrained(base, out)
    with torch.no_grad():
        logits = model(tokens).logits
    assert torch.allclose(logits, expected, atol=TOL), (logits - expected).abs().max()


def test_cli_export_and_errors(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert str(tmp_path / "m") in capsys.readouterr().out

    # the target exists: refused, one line
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]

    # a run directory without a checkpoint
    empty_run = tmp_path / "no_ckpt"
    empty_run.mkdir()
    (empty_run / "config.json").write_text((run_dir / "config.json").read_text())
    assert main(["export", str(empty_run), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]
    assert not (tmp_path / "x").exists()

    # not a run directory at all
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert "is not a directory" in capsys.readouterr().err
