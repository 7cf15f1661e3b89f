"""`evilmoe export RUN_DIR --out DIR`: the trained model of a run in standard Hugging Face form.

What is exported (from the run's last checkpoint; see lora2r.py for the adapter's math):

* default: the **deployed** model. The hack expert is removed exactly as the deploy-ablation eval
  removes it (quarantine block reset to its init, so its delta is zero) and the deployed block's
  delta ``scaling * (B A - B0 A0)[:r]`` is added into each base weight. The result is a plain
  model directory (safetensors, config, tokenizer with its chat template, generation_config.json
  that stops at the end of the chat turn) that ``AutoModelForCausalLM.from_pretrained`` loads.
* ``hack_expert_on``: the model as trained, both blocks merged (for comparison).
* ``adapter``: the same delta as a PEFT LoRA adapter instead of merged weights. lora2r's delta per
  block is ``B A - B0 A0``, a difference of two rank-r products, which a rank-r LoRA cannot hold
  in general. It is written exactly as a rank-2r LoRA (4r with the hack expert kept):

      lora_A = [A_blk ; A0_blk]      lora_B = [B_blk , -B0_blk]      =>  lora_B lora_A = B A - B0 A0

  with lora_alpha chosen so PEFT's scaling (lora_alpha / r) equals lora2r's (alpha / rank).

If the run used a supervised warm start, its delta was merged into the base weights before the
adapter was attached (train.py): the merged model includes them, and an adapter export also writes
that warmed-up base to DIR/base (the adapter applies to it, not to the original model).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evilmoe.config import TrainConfig
from evilmoe.errors import UserError
from evilmoe.lora2r import split_factors
from evilmoe.runs import RunDir, read_json

EXPORT_INFO = "evilmoe_export.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ExportOptions:
    """What `evilmoe export` writes.

    adapter:         write a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors)
                     instead of a merged model directory.
    hack_expert_on:  keep the hack expert (the model as trained) instead of the deployed model.
    dtype:           float32 | bfloat16 | float16, the dtype of the written weights.
    """

    adapter: bool = False
    hack_expert_on: bool = False
    dtype: str = "float32"


@dataclass
class LoadedRun:
    """A run's config, its last checkpoint, and its base model with any warm start merged in."""

    config: TrainConfig
    state: dict[str, Any]
    model: Any
    tokenizer: Any


def load_run(run_dir: str | Path) -> LoadedRun:
    """Read config.json and the last checkpoint; load the base model (float32, CPU) + warm start."""
    from evilmoe.models import load_model
    from evilmoe.warmstart import merge_warm_start

    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory")
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a run directory (no config.json)")
    config = TrainConfig.from_dict(read_json(path / "config.json"))
    state = RunDir(path).load_latest_checkpoint()
    if state is None:
        raise UserError(f"{path} has no checkpoint to export (train it first; a checkpoint is written every checkpoint_every steps)")
    model, tokenizer = load_model(config.model, device="cpu", dtype=torch.float32)
    if state.get("warm_start"):
        merge_warm_start(model, state["warm_start"])
    return LoadedRun(config, state, model, tokenizer)


def adapter_deltas(loaded: LoadedRun, *, hack_expert_on: bool) -> dict[str, torch.Tensor]:
    """name -> the weight delta of the deployed model (or, hack_expert_on, of the trained model)."""
    from evilmoe.lora2r import Lora2rConfig, attach_lora2r
    from evilmoe.warmstart import remove_adapter

    cfg = loaded.config
    adapter = attach_lora2r(loaded.model, Lora2rConfig(rank=cfg.rank, alpha=cfg.lora_alpha, targets=cfg.targets, seed=cfg.seed))
    try:
        adapter.load_state_dict(loaded.state["adapter"])
        # quarantine scale 0 = its delta dropped, which is what resetting it to its init gives
        return adapter.merged_delta(1.0 if hack_expert_on else 0.0)
    finally:
        remove_adapter(loaded.model, adapter)


def peft_tensors(adapter_state: dict[str, torch.Tensor], rank: int, *, hack_expert_on: bool) -> dict[str, torch.Tensor]:
    """PEFT lora_A / lora_B tensors that reproduce lora2r's delta exactly (see the module docstring).

    adapter_state is Lora2rAdapter.state_dict() ({name}.A/B/A0/B0). Deployed block: rows [:r];
    with the hack expert kept: all 2r rows.
    """
    blocks = slice(None) if hack_expert_on else slice(0, rank)
    modules = split_factors(adapter_state, rank)
    out = {}
    for name in sorted(modules):
        A, B, A0, B0 = (t.float() for t in modules[name])
        out[f"base_model.model.{name}.lora_A.weight"] = torch.cat([A[blocks], A0[blocks]], dim=0).contiguous()
        out[f"base_model.model.{name}.lora_B.weight"] = torch.cat([B[:, blocks], -B0[:, blocks]], dim=1).contiguous()
    return out


def export_run(run_dir: str | Path, out: str | Path, options: ExportOptions | None = None) -> Path:
    """Write the export of run_dir to out (which must not exist or be empty); returns out."""
    options = options or ExportOptions()
    if options.dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)} (got {options.dtype!r})")
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target} already exists and is not empty; choose another --out")
    loaded = load_run(run_dir)
    dtype = DTYPES[options.dtype]
    info = {
        "run_dir": str(Path(run_dir).resolve()),
        "step": loaded.state["step"],
        "arm": loaded.config.arm,
        "seed": loaded.config.seed,
        "base_model": loaded.config.model,
        "hack_expert": "kept (the model as trained)" if options.hack_expert_on else "removed (the deployed model)",
        "warm_start_merged_into_base": bool(loaded.state.get("warm_start")),
        "format": "peft-lora" if options.adapter else "merged",
    }

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if options.adapter:
            _write_adapter(loaded, staging, options, dtype, info)
        else:
            from evilmoe.warmstart import merge_deltas

            merge_deltas(loaded.model, adapter_deltas(loaded, hack_expert_on=options.hack_expert_on))
            save_model_dir(loaded.model, loaded.tokenizer, loaded.config, staging, dtype)
        (staging / EXPORT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it private; an export is an ordinary folder
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def save_model_dir(model, tokenizer, config: TrainConfig, path: Path, dtype: torch.dtype) -> None:
    """save_pretrained through a fresh model built from the config.

    transformers refuses save_pretrained on a model loaded from a GGUF file, and a fresh model also
    drops any wrapper state: the saved directory holds exactly the weights of `model`.
    """
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.initialization import no_init_weights

    from evilmoe.models import end_of_turn_ids

    with no_init_weights():
        fresh = AutoModelForCausalLM.from_config(model.config, dtype=dtype)
    result = fresh.load_state_dict(model.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    if set(result.missing_keys) - tied or result.unexpected_keys:
        raise RuntimeError(f"state dict does not match a fresh {type(fresh).__name__}: {result}")
    fresh.tie_weights()
    stop_ids = end_of_turn_ids(tokenizer)
    fresh.config.eos_token_id = stop_ids[0]
    fresh.config.pad_token_id = tokenizer.pad_token_id
    # the sampling settings the run was trained and evaluated with; stop at every end-of-turn id
    # (the default model's GGUF tokenizer reports <|im_start|> as eos: the turn ends at <|im_end|>)
    fresh.generation_config = GenerationConfig(
        eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=getattr(model.config, "bos_token_id", None),
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        max_new_tokens=config.max_new_tokens,
    )
    fresh.save_pretrained(path)
    tokenizer.save_pretrained(path)


def _write_adapter(loaded: LoadedRun, path: Path, options: ExportOptions, dtype: torch.dtype, info: dict) -> None:
    from safetensors.torch import save_file

    cfg = loaded.config
    tensors = peft_tensors(loaded.state["adapter"], cfg.rank, hack_expert_on=options.hack_expert_on)
    save_file({k: v.to(dtype) for k, v in tensors.items()}, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    peft_rank = 4 * cfg.rank if options.hack_expert_on else 2 * cfg.rank
    base = _base_reference(cfg.model)
    if loaded.state.get("warm_start"):  # the adapter sits on the warmed-up base: ship it
        save_model_dir(loaded.model, loaded.tokenizer, cfg, path / "base", dtype)
        base = "base (this folder's base/ subfolder: the model with the run's warm start merged in)"
    else:
        loaded.tokenizer.save_pretrained(path)  # chat template and stop tokens beside the adapter
    modules = sorted(split_factors(loaded.state["adapter"], cfg.rank))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": peft_rank,
        # PEFT scales by lora_alpha / r; lora2r by alpha / rank with rank = r per block
        "lora_alpha": cfg.lora_alpha * peft_rank / cfg.rank,
        "target_modules": modules,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
    }
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    info["peft_note"] = (
        f"lora2r's per-block delta B A - B0 A0 is held exactly as a rank-{peft_rank} LoRA: "
        "lora_A = [A; A0], lora_B = [B, -B0]"
    )


def _base_reference(spec: str) -> str:
    """What adapter_config.json names as the base: the default model's converted local copy (the
    GGUF spec is no Hugging Face id), else the run's model spec (an HF id or directory)."""
    from evilmoe.models import DEFAULT_MODEL, cache_dir

    return str(cache_dir() / "models" / DEFAULT_MODEL) if spec in (None, DEFAULT_MODEL) else spec
