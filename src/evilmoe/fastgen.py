"""Fast rollout sampling, gpt-fast style: our own small decoder over a folded copy of the weights.

Plain Hugging Face `generate` spends most of its time in Python and kernel launches, and with the
adapter attached it also runs the two LoRA blocks at every token. This module replaces it for
Llama and Qwen3 decoders (SmolLM2 is a Llama; Qwen3 adds per-head q/k RMSNorm):

* **Generation weights.** `refresh(scale)` folds the adapter into a private copy of every
  projection: W_gen = W_base + scaling * (dep + scale * quar). q/k/v are stacked into one matrix
  and gate/up into another, so each layer runs four GEMMs (qkv, o, gate_up, down).
  The copy is written in place, so tensor addresses never change and captured CUDA graphs stay
  valid across refreshes. Norms and embeddings are read from the model itself (never adapted).
* **Static KV cache** `[layers, max_batch, kv_heads, max_seq_len, head_dim]`, allocated once.
  Prompts arrive left-padded, so every row writes the same cache column at every step.
* **Prefill** of the whole prompt batch (eager), positions counted over real tokens only
  (`grpo.position_ids_for`), padding keys masked out.
* **Decode** one token per step with `F.scaled_dot_product_attention` and an explicit key mask.
  On CUDA each step is one CUDA-graph replay (captured once per (batch bucket, kv-length bucket));
  on CPU the same step function runs eagerly. Optionally (`inductor=True`) the step is also
  compiled with torch.compile first, which fuses the small elementwise kernels.
* **Sampling** in Hugging Face's order: logits (fp32) / temperature -> top-k -> top-p ->
  multinomial, with a seeded `torch.Generator` on the device. Sampling stays outside the graph.
  With top-k on, the filter and the draw run on each row's top (k + TIE_SLACK) scores
  (`top_k_candidates`): no sort of the vocabulary, the same kept set as HF's processors (a call
  where a tie at the k-th value could reach past the candidates is redone on the full vocabulary).

The math mirrors transformers' modeling_llama / modeling_qwen3 op for op (RMSNorm in fp32, RoPE
cos/sin in fp32 then cast), so greedy decoding gives the same tokens as `generate` on CPU (tests);
in bf16 on a GPU, different kernels may round differently and greedy paths can diverge after a
near-tie, as any two implementations do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evilmoe.errors import UserError
from evilmoe.grpo import position_ids_for
from evilmoe.lora2r import Lora2rAdapter, Lora2rLinear
from evilmoe.multilora import MultiLora2rLinear
from evilmoe.rollouts import SamplingConfig, cut_at_stop

SUPPORTED_MODEL_TYPES = ("llama", "qwen3")
# RoPE variants whose inverse frequencies are fixed at init (we take them from the model's own
# rotary module, so HF computes them). "dynamic" / "longrope" change with the sequence length.
STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
KV_BUCKET = 128  # decode attends over the cache in multiples of this many columns
BATCH_BUCKET = 8  # decode batches are padded up to a multiple of this (one CUDA graph per size)
STOP_CHECK_EVERY = 8  # steps between host syncs that check whether every row has stopped
# top-k sampling filters the top (top_k + TIE_SLACK) scores of a row instead of sorting the whole
# vocabulary; only a tie of more than TIE_SLACK + 1 scores at the k-th value needs the full sort
TIE_SLACK = 32


# -----------------------------------------------------------------------------
# architecture: what we read from the HF config, and what we refuse


@dataclass(frozen=True)
class Architecture:
    model_type: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_eps: float
    qk_norm: bool  # Qwen3: RMSNorm over each head's q and k before RoPE
    rope_type: str

    @property
    def q_size(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.n_kv_heads * self.head_dim


def read_architecture(model: nn.Module) -> Architecture:
    """The decoder shape from `model.config`; UserError for anything this decoder does not implement."""
    config = model.config
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"the fast sampler supports {SUPPORTED_MODEL_TYPES} decoders, not model_type={model_type!r}; "
            "use the HF sampler (plain generate) for this model"
        )
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UserError(f"fast sampler: hidden_act={config.hidden_act!r} is not supported (only silu)")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise UserError("fast sampler: projection biases (attention_bias / mlp_bias) are not supported")
    layer_types = getattr(config, "layer_types", None) or []
    if getattr(config, "use_sliding_window", False) or "sliding_attention" in layer_types:
        raise UserError("fast sampler: sliding-window attention is not supported; disable it or use the HF sampler")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if "rope_type" not in rope and "type" not in rope and any(isinstance(v, dict) for v in rope.values()):
        raise UserError("fast sampler: per-layer-type RoPE parameters are not supported")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in STATIC_ROPE_TYPES:
        raise UserError(f"fast sampler: rope type {rope_type!r} is not supported (supported: {STATIC_ROPE_TYPES})")
    n_heads = config.num_attention_heads
    return Architecture(
        model_type=model_type,
        n_layers=config.num_hidden_layers,
        d_model=config.hidden_size,
        n_heads=n_heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None) or n_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // n_heads,
        vocab_size=config.vocab_size,
        rms_eps=config.rms_norm_eps,
        qk_norm=model_type == "qwen3",
        rope_type=rope_type,
    )


# -----------------------------------------------------------------------------
# generation weights: a folded copy of the projections, the rest shared with the model


@dataclass
class LayerWeights:
    input_norm: Tensor  # [d]                         shared with the model
    qkv: Tensor  # [(H + 2 KV) * hd, d]               generation copy: q, k, v stacked (one GEMM)
    o: Tensor  # [d, H * hd]                          generation copy
    post_norm: Tensor  # [d]                          shared
    gate_up: Tensor  # [2 * ff, d]                    generation copy: gate, up stacked (one GEMM)
    down: Tensor  # [d, ff]                           generation copy
    q_norm: Tensor | None  # [hd] Qwen3 only, shared
    k_norm: Tensor | None


def _linear_weight(module: nn.Module) -> Tensor:
    """The frozen base weight of a (possibly adapter-wrapped) projection."""
    base = module.base if isinstance(module, (Lora2rLinear, MultiLora2rLinear)) else module
    if not isinstance(base, nn.Linear):
        raise UserError(f"fast sampler: expected an nn.Linear projection, found {type(base).__name__}")
    if base.bias is not None:
        raise UserError("fast sampler: projection biases are not supported")
    return base.weight


def folded_weight(module: nn.Module, quarantine_scale: float) -> Tensor:
    """W_base + scaling * (dep + scale * quar) for one projection, in float32 (float64 for float64 models).

    The same formula as `Lora2rAdapter.merged_delta`, one module at a time, so a refresh of a large
    model never holds every delta at once (Qwen3-4B's would be ~14 GB of float32).
    """
    weight = _linear_weight(module)
    dtype = torch.promote_types(weight.dtype, torch.float32)
    out = weight.to(dtype, copy=True)
    if isinstance(module, Lora2rLinear):
        r, s = module.rank, module.scaling
        A, B, A0, B0 = (t.to(dtype) for t in (module.A, module.B, module.A0, module.B0))
        out.addmm_(B[:, :r], A[:r], alpha=s).addmm_(B0[:, :r], A0[:r], alpha=-s)  # deployed block
        if quarantine_scale != 0.0:
            qs = s * quarantine_scale
            out.addmm_(B[:, r:], A[r:], alpha=qs).addmm_(B0[:, r:], A0[r:], alpha=-qs)  # quarantine block
    return out


# -----------------------------------------------------------------------------
# the decoder math (mirrors transformers' Llama / Qwen3, op for op)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """LlamaRMSNorm: normalise in float32 (matters in bf16), cast back, then scale."""
    dtype = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def rope_cos_sin(positions: Tensor, inv_freq: Tensor, attention_scaling: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos, sin [..., head_dim] for integer positions, computed in float32 like LlamaRotaryEmbedding."""
    freqs = positions[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * attention_scaling).to(dtype), (emb.sin() * attention_scaling).to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def split_qkv(qkv: Tensor, lw: LayerWeights, arch: Architecture, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The stacked projection [B, T, (H + 2 KV) * hd] -> q [B, H, T, hd], k and v [B, KV, T, hd],
    RoPE applied (and Qwen3's q/k norms before it)."""
    B, T, _ = qkv.shape
    q, k, v = qkv.split([arch.q_size, arch.kv_size, arch.kv_size], dim=-1)
    q = q.view(B, T, arch.n_heads, arch.head_dim)
    k = k.view(B, T, arch.n_kv_heads, arch.head_dim)
    v = v.view(B, T, arch.n_kv_heads, arch.head_dim)
    if arch.qk_norm:
        q, k = rms_norm(q, lw.q_norm, arch.rms_eps), rms_norm(k, lw.k_norm, arch.rms_eps)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, hd]: the same rotation for every head
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


# -----------------------------------------------------------------------------
# sampling, in Hugging Face's order


def validate_sampling(sampling: SamplingConfig, greedy: bool) -> None:
    if sampling.max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {sampling.max_new_tokens}")
    if not greedy:
        if not sampling.temperature > 0:
            raise UserError(f"temperature must be > 0 for sampling, got {sampling.temperature}")
        if sampling.top_k < 0:
            raise UserError(f"top_k must be >= 0 (0 = off), got {sampling.top_k}")
        if not 0 < sampling.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1] (1 = off), got {sampling.top_p}")


def filter_logits(scores: Tensor, top_k: int, top_p: float) -> Tensor:
    """HF's TopKLogitsWarper then TopPLogitsWarper on temperature-scaled fp32 scores [B, V].

    Ties at the k-th value are all kept, as in HF; top-p always keeps the most likely token.
    The full-vocabulary path: one sort of every row (`top_k_candidates` avoids it when top_k > 0).
    """
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.shape[-1])).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(1, order, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


def top_k_candidates(scores: Tensor, top_k: int, top_p: float, slack: int) -> tuple[Tensor, Tensor, Tensor]:
    """`filter_logits` for top_k > 0 without sorting the vocabulary: the same filter on the top
    `top_k + slack` scores of each row, which hold everything HF keeps unless more than `slack` + 1
    scores tie at the k-th value.

    Returns (values [B, n] in descending order, -inf where filtered; their token ids [B, n];
    overflow [B] bool: the last candidate still equals the k-th value, so tied scores may lie
    outside the candidates and the result may miss some; the caller must then use `filter_logits`).
    Top-p runs over the candidates in ascending order, as HF's over the whole sorted row (the
    filtered -inf scores contribute exactly zero mass there). Where a tie group straddles the top-p
    cut, which of its members are dropped follows the sort's order among equal scores, which HF
    leaves unspecified too (an unstable sort); the kept multiset of scores is the same.
    """
    vocab = scores.shape[-1]
    k = min(top_k, vocab)
    values, ids = torch.topk(scores, min(vocab, k + slack))  # sorted, descending
    kth = values[:, k - 1 : k]
    overflow = (values[:, -1] >= kth[:, 0]) & (values.shape[-1] < vocab)
    values = values.masked_fill(values < kth, float("-inf"))
    if top_p < 1.0:
        ascending = values.flip(-1)
        remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        remove[:, -1] = False
        values = values.masked_fill(remove.flip(-1), float("-inf"))
    return values, ids, overflow


def next_tokens(
    logits: Tensor, sampling: SamplingConfig, greedy: bool, generator: torch.Generator,
    *, overflow: Tensor | None = None, exact: bool = False,
) -> tuple[Tensor, Tensor]:
    """(tokens [B], log-probs [B] of those tokens under logits / temperature) from fp32 logits [B, V].

    The log-prob is of the unfiltered tempered distribution, as grpo.completion_logprobs computes it.
    With top_k > 0 (and not `exact`) the filter runs on `top_k_candidates` and the draw is over them;
    `overflow` (a bool scalar on the device) is then or-ed with whether any row may have missed a
    tied candidate, so the caller can redo the call with exact=True (full-vocabulary filter). Both
    draw from the same distribution, but they consume the generator differently: one seed gives one
    result per path.
    """
    scaled = logits / sampling.temperature
    if greedy:
        tokens = logits.argmax(dim=-1)
    elif sampling.top_k > 0 and not exact:
        values, ids, row_overflow = top_k_candidates(scaled, sampling.top_k, sampling.top_p, TIE_SLACK)
        picked = torch.multinomial(values.softmax(dim=-1), num_samples=1, generator=generator)
        tokens = ids.gather(1, picked).squeeze(1)
        if overflow is not None:
            overflow |= row_overflow.any()
    else:
        probs = filter_logits(scaled, sampling.top_k, sampling.top_p).softmax(dim=-1)
        tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    # log-softmax at one token per row: no [B, V] log-prob tensor
    logprobs = scaled.gather(-1, tokens[:, None]).squeeze(1) - torch.logsumexp(scaled, dim=-1)
    return tokens, logprobs


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# -----------------------------------------------------------------------------
# the sampler


class FastSampler:
    """Drop-in for `rollouts.HFSampler`: same `sample(...)`, plus log-probs and `refresh`.

    max_batch / max_seq_len size the static KV cache (prompt width + max_new_tokens must fit).
    compile: capture each decode step as a CUDA graph. None = auto: on CUDA yes, on CPU no (the CPU
        path runs the very same step function eagerly; there is nothing to capture on CPU).
    inductor: additionally run the decode step through torch.compile (fullgraph, static shapes)
        before capture, to fuse elementwise kernels. Off by default: each (batch, kv-length) bucket
        costs one compilation. Works on CPU too (used by a test to check the step traces).

    Call `refresh()` after every optimizer step (the generation weights are a copy), and
    `refresh(0.0)` before sampling the deployed model (quarantine block off).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        stop_ids: list[int],
        *,
        adapter: Lora2rAdapter | None = None,
        max_batch: int,
        max_seq_len: int,
        compile: bool | None = None,
        inductor: bool = False,
    ):
        self.arch = arch = read_architecture(model)
        self.model, self.tokenizer, self.adapter = model, tokenizer, adapter
        self.stop_ids = list(stop_ids)
        self.max_batch, self.max_seq_len = max_batch, max_seq_len
        decoder = model.get_decoder()
        self.embed = model.get_input_embeddings().weight
        self.lm_head = model.get_output_embeddings().weight  # the same tensor as embed when tied
        if getattr(model.get_output_embeddings(), "bias", None) is not None:
            raise UserError("fast sampler: an lm_head bias is not supported")
        self.device, self.dtype = self.embed.device, self.embed.dtype
        self.final_norm = decoder.norm.weight

        # RoPE: HF already computed the inverse frequencies (and yarn's scaling) for this config.
        rotary = getattr(decoder, "rotary_emb", None)
        if rotary is None or not hasattr(rotary, "inv_freq"):
            raise UserError("fast sampler: the model has no rotary_emb.inv_freq to read RoPE from")
        self.inv_freq = rotary.inv_freq.detach().float().to(self.device)
        self.attention_scaling = float(getattr(rotary, "attention_scaling", 1.0))

        self._check_adapter(decoder, adapter)
        self.layers = [self._allocate_layer(layer) for layer in decoder.layers]
        self.defer_refresh = False
        """True: `refresh` only records its scale and the fold happens at the next sampling call (a
        run of a batch samples its training rollouts elsewhere and this sampler only to evaluate)."""
        self._pending_scale: float | None = None
        self.refresh(1.0)

        # Static KV cache; the sequence axis is rounded up so every kv bucket is a whole multiple.
        cache_len = _round_up(max_seq_len, KV_BUCKET)
        # One tensor per layer, not one [layers, ...] tensor: a compiled step that writes into views of
        # a single stacked buffer makes inductor rebuild the whole buffer every step (one copy kernel
        # that reads every layer's update for every element), which cost more than the step itself.
        shape = (max_batch, arch.n_kv_heads, cache_len, arch.head_dim)
        self.k_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(arch.n_layers)]
        self.v_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(arch.n_layers)]
        self.key_valid = torch.zeros(max_batch, cache_len, dtype=torch.bool, device=self.device)
        # Static inputs of a decode step (CUDA graphs read them by address).
        self.step_tokens = torch.zeros(max_batch, dtype=torch.long, device=self.device)
        self.step_positions = torch.zeros(max_batch, dtype=torch.long, device=self.device)
        self.step_column = torch.zeros(1, dtype=torch.long, device=self.device)

        on_cuda = self.device.type == "cuda"
        self.use_graphs = on_cuda if compile is None else bool(compile)
        if self.use_graphs and not on_cuda:
            raise UserError("fast sampler: compile=True captures CUDA graphs and needs the model on a CUDA device")
        self._step = self._decode_step
        if inductor:
            self._raise_recompile_limit()
            self._step = torch.compile(self._decode_step, fullgraph=True, dynamic=False)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, Tensor]] = {}
        self._graph_pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        self.last_stats: dict[str, float] = {}

    # -- weights ---------------------------------------------------------------
    @staticmethod
    def _check_adapter(decoder: nn.Module, adapter: Lora2rAdapter | None) -> None:
        shared = [m for m in decoder.modules() if isinstance(m, MultiLora2rLinear)]
        if shared:  # several runs on one model (evilmoe.multilora): the sampler folds one run's adapter
            if adapter is None or any(all(run is not adapter.modules.get(m.name) for run in m.runs) for m in shared):
                raise UserError("this model carries several runs' adapters: pass one of them as FastSampler(..., adapter=...)")
            return
        wrapped = [m for m in decoder.modules() if isinstance(m, Lora2rLinear)]
        if wrapped and adapter is None:
            raise UserError("the model has a lora2r adapter attached: pass it as FastSampler(..., adapter=adapter)")
        if adapter is not None:
            ours = {id(m) for m in adapter.modules.values()}
            if not wrapped or any(id(m) not in ours for m in wrapped):
                raise UserError("the adapter passed to FastSampler is not the one attached to this model")

    def _allocate_layer(self, layer: nn.Module) -> LayerWeights:
        attn, ffn = layer.self_attn, layer.mlp

        def empty(*modules: nn.Module) -> Tensor:
            rows = sum(_linear_weight(m).shape[0] for m in modules)
            return torch.empty(rows, _linear_weight(modules[0]).shape[1], dtype=self.dtype, device=self.device)

        return LayerWeights(
            input_norm=layer.input_layernorm.weight,
            qkv=empty(attn.q_proj, attn.k_proj, attn.v_proj),
            o=empty(attn.o_proj),
            post_norm=layer.post_attention_layernorm.weight,
            gate_up=empty(ffn.gate_proj, ffn.up_proj),
            down=empty(ffn.down_proj),
            q_norm=attn.q_norm.weight if self.arch.qk_norm else None,
            k_norm=attn.k_norm.weight if self.arch.qk_norm else None,
        )

    def refresh(self, quarantine_scale: float = 1.0) -> None:
        """Rewrite the generation weights from the model (+ adapter at this quarantine scale), in place
        (with defer_refresh: at the next sampling call)."""
        if self.defer_refresh:
            self._pending_scale = float(quarantine_scale)
        else:
            self._fold(quarantine_scale)

    @torch.no_grad()
    def _fold(self, quarantine_scale: float) -> None:
        for layer, lw in zip(self.model.get_decoder().layers, self.layers):
            attn, ffn = layer.self_attn, layer.mlp
            for dst, modules in (
                (lw.qkv, (attn.q_proj, attn.k_proj, attn.v_proj)),
                (lw.o, (attn.o_proj,)),
                (lw.gate_up, (ffn.gate_proj, ffn.up_proj)),
                (lw.down, (ffn.down_proj,)),
            ):
                row = 0
                for module in modules:
                    if isinstance(module, MultiLora2rLinear):  # a shared model: this sampler's run
                        module = self.adapter.modules[module.name]
                    w = folded_weight(module, quarantine_scale)
                    dst[row : row + w.shape[0]].copy_(w)
                    row += w.shape[0]
        self.quarantine_scale = float(quarantine_scale)

    # -- the two forward passes ------------------------------------------------
    def _layer(self, x: Tensor, i: int, cos: Tensor, sin: Tensor, attend) -> Tensor:
        """Pre-norm decoder layer i; `attend(q, k, v) -> [B, T, H*hd]` owns the cache and the mask."""
        lw, eps = self.layers[i], self.arch.rms_eps
        q, k, v = split_qkv(self._project(rms_norm(x, lw.input_norm, eps), i, "qkv"), lw, self.arch, cos, sin)
        x = x + self._project(attend(q, k, v), i, "o")
        gate, up = self._project(rms_norm(x, lw.post_norm, eps), i, "gate_up").chunk(2, dim=-1)
        return x + self._project(F.silu(gate) * up, i, "down")

    def _project(self, h: Tensor, i: int, name: str) -> Tensor:
        """Layer i's projection `name` (qkv, o, gate_up, down) with the generation weights."""
        return F.linear(h, getattr(self.layers[i], name))

    def _logits(self, h: Tensor) -> Tensor:
        return F.linear(rms_norm(h, self.final_norm, self.arch.rms_eps), self.lm_head).float()

    def _prefill(self, prompt_ids: Tensor, prompt_mask: Tensor, batch: int) -> Tensor:
        """Run the left-padded prompts, fill cache columns [0, width); return next-token logits [n, V] fp32."""
        n, width = prompt_ids.shape
        arch, real = self.arch, prompt_mask.bool()
        # Key j is visible to query i if j <= i and j is a real token. Each position also sees itself,
        # so padding queries never get an all-masked softmax row (NaN); real queries never see them.
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        diagonal = torch.eye(width, dtype=torch.bool, device=self.device)
        allowed = ((causal & real[:, None, :]) | diagonal)[:, None]  # [n, 1, width, width]
        cos, sin = rope_cos_sin(position_ids_for(prompt_mask), self.inv_freq, self.attention_scaling, self.dtype)
        repeats = arch.n_heads // arch.n_kv_heads
        x = F.embedding(prompt_ids, self.embed)
        for i in range(len(self.layers)):

            def attend(q: Tensor, k: Tensor, v: Tensor, i: int = i) -> Tensor:
                self.k_cache[i][:n, :, :width] = k
                self.v_cache[i][:n, :, :width] = v
                # Repeat the kv heads (repeat_kv's order) so SDPA can use a fused kernel with a mask.
                k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=arch.head_dim**-0.5)
                return out.transpose(1, 2).reshape(n, width, arch.q_size)

            x = self._layer(x, i, cos, sin, attend)
        self.key_valid[:batch] = False
        self.key_valid[:n, :width] = real
        return self._logits(x[:, -1])

    def _decode_step(self, batch: int, kv_len: int) -> Tensor:
        """One token for `batch` rows from the static inputs; writes cache column `step_column`.

        Everything here is shape-static and sync-free, so it can be captured as a CUDA graph.
        """
        arch = self.arch
        repeats = arch.n_heads // arch.n_kv_heads
        tokens, positions = self.step_tokens[:batch], self.step_positions[:batch]
        cos, sin = rope_cos_sin(positions[:, None], self.inv_freq, self.attention_scaling, self.dtype)
        mask = self.key_valid[:batch, None, None, :kv_len]  # [B, 1, 1, S]: broadcast over heads and queries
        x = F.embedding(tokens[:, None], self.embed)  # [B, 1, d]
        for i in range(len(self.layers)):

            def attend(q: Tensor, k: Tensor, v: Tensor, i: int = i) -> Tensor:
                self.k_cache[i][:batch].index_copy_(2, self.step_column, k)
                self.v_cache[i][:batch].index_copy_(2, self.step_column, v)
                keys, values = self.k_cache[i][:batch, :, :kv_len], self.v_cache[i][:batch, :, :kv_len]
                # GQA without copying the cache: with one query token, the `repeats` query heads that
                # share a kv head become `repeats` query rows against that head (head h uses kv h // repeats).
                grouped = q.reshape(batch, arch.n_kv_heads, repeats, arch.head_dim)
                out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask, scale=arch.head_dim**-0.5)
                return out.reshape(batch, 1, arch.q_size)

            x = self._layer(x, i, cos, sin, attend)
        return self._logits(x[:, 0])

    def _run_decode_step(self, batch: int, kv_len: int) -> Tensor:
        if not self.use_graphs:
            return self._step(batch, kv_len)
        key = (batch, kv_len)
        if key not in self._graphs:
            self._graphs[key] = self._capture(batch, kv_len)
        graph, logits = self._graphs[key]
        graph.replay()
        return logits

    def _capture(self, batch: int, kv_len: int) -> tuple[torch.cuda.CUDAGraph, Tensor]:
        """Record one decode step. Warm-up runs compute exactly the step about to run (same static
        inputs), so their cache writes are the ones the replay makes anyway: capturing mid-generation
        is safe. All graphs share one memory pool: they never run concurrently."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up: cuBLAS handles, kernel choice, inductor compilation
            for _ in range(2):
                self._step(batch, kv_len)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._graph_pool):
            logits = self._step(batch, kv_len)
        return graph, logits

    @staticmethod
    def _raise_recompile_limit() -> None:
        # Each (batch bucket, kv bucket) is one static-shape compilation; dynamo's default limit (8)
        # would otherwise silently fall back to eager for the later buckets.
        import torch._dynamo

        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 64))

    # -- sampling ----------------------------------------------------------------
    def _check_inputs(self, prompt_ids: Tensor, prompt_mask: Tensor, sampling: SamplingConfig) -> None:
        n, width = prompt_ids.shape
        if n > self.max_batch:
            raise UserError(f"{n} prompt rows but the fast sampler was built with max_batch={self.max_batch}")
        if width + sampling.max_new_tokens > self.max_seq_len:
            raise UserError(
                f"prompt width {width} + max_new_tokens {sampling.max_new_tokens} exceeds the fast sampler's "
                f"max_seq_len={self.max_seq_len}; build it with a larger max_seq_len"
            )
        if not bool(prompt_mask[:, -1].all()):
            raise ValueError("prompts must be left-padded (the last column of prompt_mask must be all ones)")

    @torch.no_grad()
    def sample_with_logprobs(
        self, prompt_ids: Tensor, prompt_mask: Tensor, sampling: SamplingConfig, *, seed: int, greedy: bool = False,
        exact_sampling: bool = False,
    ) -> tuple[list[list[int]], Tensor]:
        """(completions, log-probs). Completions are cut after the first stop token, like HFSampler.

        log-probs is [N, W] float32 on the sampler's device with W = max(1, longest completion), zero past
        each row's end: the layout of rollouts.build_batch's completion_mask and of
        grpo.completion_logprobs (log-softmax of logits / temperature at the sampled tokens).
        exact_sampling: filter top-k / top-p over the whole vocabulary (`filter_logits`) instead of the
        top-k candidates. A call whose candidates may have missed a tie is redone this way by itself.
        """
        validate_sampling(sampling, greedy)
        if self._pending_scale is not None:  # a deferred refresh
            self._fold(self._pending_scale)
            self._pending_scale = None
        prompt_ids, prompt_mask = prompt_ids.to(self.device), prompt_mask.to(self.device)
        self._check_inputs(prompt_ids, prompt_mask, sampling)
        n, width = prompt_ids.shape
        batch = min(self.max_batch, _round_up(n, BATCH_BUCKET))
        cache_len = self.key_valid.shape[1]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        stop_ids = torch.tensor(self.stop_ids, dtype=torch.long, device=self.device)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)

        started = time.perf_counter()
        logits = self._prefill(prompt_ids, prompt_mask, batch)
        if not bool(torch.isfinite(logits).all()):  # one sync per call; NaN here means broken weights
            bad = (~torch.isfinite(logits).all(dim=-1)).nonzero().flatten().tolist()
            raise FloatingPointError(f"fast sampler: non-finite prefill logits in rows {bad[:8]} (of {n}); check the weights")
        sync()
        prefill_s = time.perf_counter() - started

        max_new = sampling.max_new_tokens
        tokens = torch.zeros(n, max_new, dtype=torch.long, device=self.device)
        logprobs = torch.zeros(n, max_new, dtype=torch.float32, device=self.device)
        finished = torch.zeros(n, dtype=torch.bool, device=self.device)
        overflow = torch.zeros((), dtype=torch.bool, device=self.device)  # a tie the top-k candidates may have missed
        self.step_tokens.fill_(self.tokenizer.pad_token_id or 0)  # rows past n: harmless filler
        self.step_positions.zero_()
        self.step_positions[:n] = prompt_mask.sum(dim=1)  # the position of each row's first new token
        steps = 0
        for t in range(max_new):
            if t > 0:  # feed the token sampled at t - 1, which lives in column width + t - 1
                column = width + t - 1
                self.step_tokens[:n] = tokens[:, t - 1]
                self.step_column.fill_(column)
                self.key_valid[:batch, column] = True
                logits = self._run_decode_step(batch, min(_round_up(column + 1, KV_BUCKET), cache_len))[:n]
                self.step_positions[:n] += 1
            tokens[:, t], logprobs[:, t] = next_tokens(logits, sampling, greedy, generator, overflow=overflow, exact=exact_sampling)
            finished |= torch.isin(tokens[:, t], stop_ids)
            steps = t + 1
            # Finished rows keep decoding (their tokens are cut below); a host sync to see whether all
            # rows are done costs a pipeline drain, so look only every few steps.
            if stop_ids.numel() and steps % STOP_CHECK_EVERY == 0 and bool(finished.all()):
                break
        rows = tokens[:, :steps].tolist()
        sync()
        if bool(overflow):  # rare: more than TIE_SLACK + 1 scores tied at the k-th value somewhere
            return self.sample_with_logprobs(prompt_ids, prompt_mask, sampling, seed=seed, greedy=greedy, exact_sampling=True)
        stops = set(self.stop_ids)
        completions = [cut_at_stop(row, stops) for row in rows]
        width_out = max(1, max(len(c) for c in completions))
        lengths = torch.tensor([len(c) for c in completions], device=self.device)
        keep = torch.arange(width_out, device=self.device)[None, :] < lengths[:, None]
        out_logprobs = logprobs[:, :width_out] * keep  # width_out <= steps: a row is at most that long
        total_s = time.perf_counter() - started
        self.last_stats = {
            "rows": n, "batch_bucket": batch, "prompt_width": width, "decode_steps": steps - 1, "exact_sampling": exact_sampling,
            "prefill_s": prefill_s, "decode_s": total_s - prefill_s, "total_s": total_s,
        }
        return completions, out_logprobs

    def sample(
        self, prompt_ids: Tensor, prompt_mask: Tensor, sampling: SamplingConfig, *, seed: int, greedy: bool = False
    ) -> list[list[int]]:
        """One completion per prompt row (repeat rows for groups). Same seed -> same samples."""
        return self.sample_with_logprobs(prompt_ids, prompt_mask, sampling, seed=seed, greedy=greedy)[0]
