"""The capability warm start: a supervised phase merged into the base weights before RL.

Why: at 135M parameters RL alone teaches the model almost nothing worth keeping (held-out solve
stays near 0), so deleting any half of the RL adapter "works" and a router cannot be told apart from
a blind split. A few supervised steps on reference solutions (hack_frac 0) lift solving first;
RL then starts from a model that can solve some problems. With hack_frac > 0 the same phase mixes in
each mode's canonical hack (a hack warm start, so a small model starts with a non-zero hack rate).

The phase trains a temporary lora2r adapter (both blocks) on the warm-start problems of the
training split (`evilmoe.splits`: never the held-out families, never the skill hold-out) and adds
its delta into the base weights, so the RL adapter starts from exactly zero delta on top of the
warmed-up model.

What is kept (in the cache and in every checkpoint) is that adapter's factors, not its dense delta:
per module A, B and the init A0, B0 they are measured from, plus the rank and the output scaling,
{"factors": {"NAME.A": ..., "NAME.B": ..., "NAME.A0": ..., "NAME.B0": ...}, "rank": r, "scaling": s}.
For the default model that is ~10M numbers instead of ~106M (and a run's state has to travel back
from a machine that keeps nothing). `merge_warm_start` rebuilds each module's delta with the
adapter's own arithmetic (lora2r.factor_delta) on the weight's device, so the merged weights are
bit for bit what merging the live adapter's `merged_delta(1.0)` gave. Checkpoints written before
hold {"deltas": {NAME: dense delta}}; `merge_warm_start` reads both.

It is trained once per (model, problems, settings) and cached by a content hash: every arm and
seed of a decision run starts from bit-identical weights, and later runs skip the phase. The key
covers everything the warm start depends on (model spec, device type and dtype, the warm-start fields,
adapter shape, completion limit, and every warm-start problem's id, mode, prompt inputs and
reference); change any of them and a new warm start is trained. A lock file makes parallel runs
that want the same warm start train it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from evilmoe import __version__
from evilmoe.env.modes import build_messages
from evilmoe.env.types import Problem
from evilmoe.errors import UserError
from evilmoe.grpo import completion_logprobs
from evilmoe.lora2r import Lora2rConfig, attach_lora2r, factor_delta, split_factors
from evilmoe.models import cache_dir, cache_lock, chat_prompt
from evilmoe.rollouts import build_batch, encode_completion, encode_prompts
from evilmoe.seeding import derive_seed
from evilmoe.teacher import make_demo

# Bump when the warm-start procedure changes in a way the key's fields do not capture.
WARM_START_FORMAT = 2


def train_warm_start(
    model, tokenizer, stop_id: int, problems: list[Problem], modes: dict[str, str], config, device: torch.device
) -> tuple[dict[str, Any], list[float]]:
    """Run the supervised phase; return (the adapter's factors, {"factors", "rank", "scaling"}, to
    merge with `merge_warm_start`; the loss per step).

    The model is left unchanged: the temporary adapter is removed before returning.
    """
    if not problems:
        raise UserError("the warm start has no problems to train on (warm_start_families selects none)")
    seed = config.warm_start_seed
    adapter = attach_lora2r(
        model, Lora2rConfig(rank=config.rank, alpha=config.lora_alpha, targets=config.targets, seed=derive_seed(seed, 17))
    )
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=config.warm_start_lr)
    rng = random.Random(derive_seed(seed, 18))
    losses: list[float] = []
    model.train()
    from tqdm import tqdm

    for _ in tqdm(range(config.warm_start_steps), desc="warm start", leave=False, disable=None):
        chosen = rng.sample(problems, k=min(config.warm_start_batch, len(problems)))
        prompts, completions = [], []
        for p in chosen:
            mode = modes[p.id]
            demo = make_demo(p, mode, hack_frac=config.warm_start_hack_frac, rng=rng, pool=None)
            prompts.append(chat_prompt(tokenizer, build_messages(p, mode)))
            completions.append(encode_completion(tokenizer, demo.text, stop_id)[: config.max_new_tokens])
        ids, mask = encode_prompts(tokenizer, prompts, device)
        batch = build_batch(ids, mask, completions, tokenizer.pad_token_id)
        logp = completion_logprobs(model, batch, temperature=1.0)
        loss = -(logp * batch.completion_mask).sum() / batch.completion_mask.sum()  # mean token NLL
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(adapter.parameters(), config.grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    low_rank = {"factors": adapter.state_dict(), "rank": adapter.rank, "scaling": adapter.config.scaling}
    remove_adapter(model, adapter)
    return low_rank, losses


def remove_adapter(model, adapter) -> None:
    """Put every wrapped Linear's base module back in place (drops the adapter entirely)."""
    for name, module in adapter.modules.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.base)


@torch.no_grad()
def merge_deltas(model, deltas: dict[str, Tensor]) -> None:
    """Add weight deltas into the named base Linear weights (in their dtype)."""
    for name, delta in deltas.items():
        weight = _weight(model, name)
        if weight.shape != delta.shape:
            raise ValueError(f"warm-start delta for {name} has shape {tuple(delta.shape)}, weight {tuple(weight.shape)}")
        weight.add_(delta.to(weight.device, weight.dtype))


@torch.no_grad()
def merge_warm_start(model, saved: dict[str, Any]) -> None:
    """Merge a saved warm start into the model's base weights: its factors (rebuilt module by module
    into the same delta `merged_delta(1.0)` gave, on the weight's device), or the dense deltas of a
    checkpoint written before the factors were kept. Anything else is an error, never a partial merge."""
    if "factors" in saved:
        modules = factor_modules(saved)
        rank, scaling = saved["rank"], saved["scaling"]
        for name, (A, B, _, _) in modules.items():  # every module checked before any weight changes
            weight = _weight(model, name)
            if (B.shape[0], A.shape[1]) != tuple(weight.shape):
                raise UserError(f"warm-start factors of {name} make a {B.shape[0]}x{A.shape[1]} delta, the weight is {tuple(weight.shape)}")
        for name, factors in modules.items():
            weight = _weight(model, name)
            # one module at a time: the dense deltas of the whole model never exist at once
            delta = factor_delta(*(t.to(weight.device) for t in factors), rank, scaling, 1.0)
            weight.add_(delta.to(weight.dtype))
    elif "deltas" in saved:
        merge_deltas(model, saved["deltas"])
    else:
        raise UserError(f"a saved warm start holds neither factors nor deltas (keys: {sorted(saved)}): not a warm start this version can merge")


def factor_modules(saved: dict[str, Any]) -> dict[str, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """name -> (A, B, A0, B0) of a saved warm start's factors, in saved order, after checking that
    every module has all four with matching shapes for its rank (UserError otherwise)."""
    rank, factors = saved.get("rank"), saved["factors"]
    if not isinstance(rank, int) or rank < 1 or not isinstance(saved.get("scaling"), float):
        raise UserError(f"a saved warm start's rank {rank!r} / scaling {saved.get('scaling')!r} are not a rank >= 1 and a float")
    return split_factors(factors, rank, "the saved warm start")


def _weight(model, name: str) -> Tensor:
    try:
        return model.get_submodule(name).weight
    except AttributeError:
        raise UserError(f"the warm start has a delta for {name}, which this model does not have (another model?)") from None


# ----------------------------------------------------------------------------------------------
# the content-hash cache
# ----------------------------------------------------------------------------------------------
KEY_FIELDS = (
    "model",
    "warm_start_steps",
    "warm_start_lr",
    "warm_start_hack_frac",
    "warm_start_batch",
    "warm_start_seed",
    "warm_start_families",
    "rank",
    "lora_alpha",
    "targets",
    "max_new_tokens",
    "grad_clip",
)


def warm_start_key(config, problems: list[Problem], modes: dict[str, str], *, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Everything the warm start depends on, as a JSON-able dict (its sha256 names the cache entry)."""
    model_file = Path(config.model)
    return {
        "format": WARM_START_FORMAT,
        "evilmoe": __version__,
        "torch": torch.__version__.split("+")[0],
        "device": device.type,
        "dtype": str(dtype),
        # a local model file or folder: its size and mtime stand in for its content
        "model_stat": [model_file.stat().st_size, int(model_file.stat().st_mtime)] if model_file.exists() else None,
        "config": {name: list(v) if isinstance(v := getattr(config, name), tuple) else v for name in KEY_FIELDS},
        "problems": [
            [p.id, modes[p.id], hashlib.sha256(json.dumps([p.description, p.starter_code, p.reference, list(p.tests)]).encode()).hexdigest()]
            for p in sorted(problems, key=lambda p: p.id)
        ],
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def warm_start_cache_root(config) -> Path | None:
    """The cache folder, or None when caching is off (warm_start_cache = 'none')."""
    if config.warm_start_cache is None:
        return cache_dir() / "warm-starts"
    if config.warm_start_cache.lower() == "none":
        return None
    return Path(config.warm_start_cache)


# An entry is complete once FACTORS_FILE exists. An entry written before the factors were kept has
# only deltas.safetensors (the dense deltas): it counts as missing, so the warm start is trained
# again (the procedure is unchanged and seeded: the same warm start, now kept as factors) and its
# factors are written beside the old file, which is left for older code sharing the cache.
# Reading the dense file instead would put the ~100M dense numbers back into every checkpoint.
FACTORS_FILE = "factors.safetensors"
FACTORS_TAG = "evilmoe-warm-start-factors-v1"


def load_cached(folder: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The cached warm start in folder, or None. A folder whose key differs is an error (a hash clash
    or a hand-edited cache), never silently used."""
    if not (folder / FACTORS_FILE).exists():
        return None
    stored = json.loads((folder / "key.json").read_text())
    if stored != json.loads(json.dumps(key)):
        raise UserError(f"warm-start cache {folder} holds another warm start (key.json differs); delete the folder")
    meta = json.loads((folder / "meta.json").read_text())
    with safe_open(str(folder / FACTORS_FILE), framework="pt") as f:
        header = f.metadata() or {}
    if header.get("format") != FACTORS_TAG:
        raise UserError(f"{folder / FACTORS_FILE} is not a warm start's factors (format {header.get('format')!r}); delete the folder")
    low_rank = {"factors": load_file(folder / FACTORS_FILE), "rank": json.loads(header["rank"]), "scaling": json.loads(header["scaling"])}
    factor_modules(low_rank)  # complete and consistent, or a UserError now rather than at the merge
    return {**low_rank, "losses": meta["losses"], "key": key_digest(key), "cached": True}


def save_cached(folder: Path, key: dict[str, Any], low_rank: dict[str, Any], losses: list[float], split: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".factors.{os.getpid()}.safetensors"
    header = {"format": FACTORS_TAG, "rank": json.dumps(low_rank["rank"]), "scaling": json.dumps(low_rank["scaling"])}
    save_file({k: v.contiguous().cpu() for k, v in low_rank["factors"].items()}, str(tmp), metadata=header)
    for name, obj in (("key.json", key), ("meta.json", {"losses": losses, "split": split})):
        part = folder / f".{name}.{os.getpid()}"
        part.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
        part.replace(folder / name)
    tmp.replace(folder / FACTORS_FILE)  # last: its presence marks a complete entry


def obtain_warm_start(
    model, tokenizer, stop_id: int, problems: list[Problem], modes: dict[str, str], config, device, dtype, split_summary: dict[str, int]
) -> dict[str, Any]:
    """The warm start ({"factors", "rank", "scaling", "losses", "key", "cached"}): from the cache when
    there, else trained (and cached). Says on stderr which, and how long it took (waiting for another
    process's training included)."""
    started = time.perf_counter()
    key = warm_start_key(config, problems, modes, device=device, dtype=dtype)
    root = warm_start_cache_root(config)
    if root is None:
        low_rank, losses = train_warm_start(model, tokenizer, stop_id, problems, modes, config, device)
        got = {**low_rank, "losses": losses, "key": key_digest(key), "cached": False}
    else:
        folder = root / key_digest(key)
        with cache_lock(folder / ".lock"):  # one process trains a given warm start, the others wait
            got = load_cached(folder, key)
            if got is None:
                low_rank, losses = train_warm_start(model, tokenizer, stop_id, problems, modes, config, device)
                save_cached(folder, key, low_rank, losses, split_summary)
                got = {**low_rank, "losses": losses, "key": key_digest(key), "cached": False}
    how = "read from the cache" if got["cached"] else f"trained ({config.warm_start_steps} steps)"
    print(f"[evilmoe.warmstart] warm start {how} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return got
