"""The one training config (TrainConfig) and its named presets.

Every field says what it means and its default. A run directory stores the full resolved config,
so a run is described by `config.json` alone. Presets are plain dicts of overrides on the defaults;
command-line `--field value` overrides go on top of the preset.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any

from evilmoe.arms import ARMS
from evilmoe.env.loopholes import ALL_MODES, INTACT_MODES, LOOPHOLE_MODES, MODE_GROUPS
from evilmoe.errors import UserError


@dataclass
class TrainConfig:
    # --- what to train -------------------------------------------------------------------------
    arm: str = "moe"
    """Routing arm: none | absorb | routeA | routeA-placebo | moe | moe-placebo | moe-nopin (docs/design.md#routing-arms)."""
    model: str = "smollm2-135m-instruct"
    """Model spec: the default SmolLM2-135M-Instruct, a .gguf path, an HF dir or id, tiny-llama / tiny-qwen3."""
    seed: int = 0
    """Seeds everything: adapter init, problem order, sampling, teacher choice, placebo directions."""
    device: str = "auto"
    """auto (cuda when available) | cpu | cuda."""
    dtype: str = "auto"
    """auto (bfloat16 on cuda, float32 on cpu) | float32 | bfloat16."""

    # --- environment ---------------------------------------------------------------------------
    problem_set: str = "bundled"
    """bundled | leetcode-easy | leetcode-medhard | leetcode-all."""
    data_dir: str | None = None
    """Folder with the LeetCode data (else $EVILMOE_DATA). Not needed for the bundled set."""
    modes: tuple[str, ...] = ALL_MODES
    """Active modes; train problems are partitioned evenly among them unless loophole_free_share is
    set (docs/design.md#loophole-modes). On the command line, comma-separated; the groups `all`,
    `loopholes` and `intact` (the loophole modes whose exploit leaves a right answer right) expand
    to their modes."""
    mode_seed: int = 0
    """Seed of the mode partition (fixed across arms and seeds so all arms see the same problems)."""
    loophole_free_share: float | None = None
    """Share of the training problems in gt_only mode (no hint, only true correctness pays); the rest
    are dealt evenly over the other active modes. None = every active mode gets an even share
    (1/7 gt_only with all modes). Needs gt_only among the modes; 1 = every training problem
    loophole-free. The held-out eval sets keep the even partition."""
    grading_workers: int = 0
    """Parallel graders (0 = one per CPU core)."""
    max_prompt_tokens: int = 1536
    """Problems whose prompt (any mode, either marker family) is longer are dropped at start (count logged)."""
    sampler: str = "auto"
    """Rollout sampler: auto (fast on CUDA, HF generate on CPU) | hf | fast (folded weights, static KV cache, CUDA graphs)."""

    # --- adapter -------------------------------------------------------------------------------
    rank: int = 8
    """Rank r of each block (the LoRA has 2r rows: deployed [:r], quarantine [r:])."""
    lora_alpha: float = 16.0
    """Adapter scaling = lora_alpha / rank."""
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    """Names of the nn.Linear modules that get a lora2r adapter."""

    # --- GRPO ----------------------------------------------------------------------------------
    steps: int = 40
    """Optimizer steps (one on-policy batch each). 0 trains nothing and evaluates the starting model
    (the adapter's delta is exactly zero at init, so ON = OFF = the base model): the base rates."""
    prompts_per_step: int = 8
    """Distinct problems per step."""
    group_size: int = 8
    """Samples per problem (G); advantage = reward - group mean."""
    max_new_tokens: int = 256
    """Completion length limit; also the Dr.GRPO constant normaliser (tokens per rollout)."""
    temperature: float = 0.7
    """Sampling temperature (log-probs are computed on logits / temperature, as sampled)."""
    top_p: float = 0.95
    """Nucleus sampling mass (1.0 = off)."""
    top_k: int = 20
    """Top-k sampling (0 = off); top-k 20 mattered for hack emergence in the reference runs."""
    lr: float = 1e-4
    """AdamW learning rate of the adapter."""
    router_lr: float = 1e-2
    """AdamW learning rate of the router (its own group)."""
    weight_decay: float = 0.0
    """AdamW weight decay (adapter and router)."""
    warmup_steps: int = 2
    """Linear learning-rate warm-up steps, then cosine decay to 10% at the last step."""
    grad_clip: float = 1.0
    """Max global gradient norm of adapter + router parameters."""
    clip_eps: float = 0.2
    """PPO ratio clip (token level)."""
    dual_clip: float = 3.0
    """Dual-clip bound (Ye et al. 2020) for negative advantages: a token's loss is at most
    dual_clip * |A|, so a huge importance ratio cannot blow up the update (0 = off). It only acts
    with ratio_against="sampling" where the training forward differs from the sampling policy (moe
    rows, routeA keep rows); there it bounds the update but did not stop the moe collapse on the GPU
    (docs/results.md#is-the-routed-update-stable). With "routed" the ratio is exactly 1 and it never acts."""
    ratio_against: str = "routed"
    """Which log-probs the PPO ratio divides by. "routed" (decoupled PPO, Hilton et al. 2021): the
    routed training forward's own (detached; no extra forward), so the ratio is exactly 1, and the
    sampler mismatch is corrected by the truncated importance weight of `importance_weight_cap`.
    "sampling": the sampling policy's (hack expert fully on), the literal update (docs/design.md#the-routed-ratio); where the training
    forward routes differently (moe: quarantine at w < 1; routeA keep rows: quarantine off) the ratio
    starts away from 1, and the moe arms collapsed so on the GPU (mean ratio > 100, also with
    dual-clip; docs/results.md#is-the-routed-update-stable). The two are the same for none and absorb,
    whose training forward is the sampling forward (they keep the sampling log-probs, no weights)."""
    importance_weight_cap: float = 2.0
    """With ratio_against="routed": each token's loss is weighted by min(p_routed / p_sampling, cap)
    (no gradient), the truncated importance sampling of sampler/trainer mismatch (Yao et al. 2025):
    a bounded correction for the rollouts having been sampled with the hack expert fully on.
    0 = no correction (plain policy gradient of the routed model on the sampled rollouts)."""
    kl_coef: float = 0.0
    """Weight of the k3 KL to the starting model (0 = off, no reference forward)."""
    microbatch: int = 16
    """Rollouts per forward/backward chunk (memory knob; does not change the result)."""
    microbatch_tokens: int = 0
    """With > 0, update microbatches are packed by tokens instead: rollouts sorted by length, at most
    `microbatch` rows and this many padded tokens (rows x the longest row) each, so activation memory
    follows the tokens (memory knob; does not change the result). 0 = rows only."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer in the backward pass (memory knob for large models; same result)."""
    share_prompt: bool = False
    """Compute each prompt once per microbatch for the rows that share it (a group's samples) and run
    their completions on its keys and values, in the update and the behaviour pass: on and off give
    the same loss, gradients and log-probs up to floating-point rounding (a speed and memory knob).
    Rows share only under equal routing controls (q, g), which act on the prompt's tokens too: none
    and absorb share whole groups, routeA rows within a label, moe rows (each its own router w)
    never. Microbatches of `microbatch` rows are cut as without it (a multiple of group_size keeps
    groups whole); with microbatch_tokens each prompt's rows are packed together and its tokens
    counted once, so per-microbatch statistics (clip_frac, ...) average over other microbatches.
    Not combined with gradient_checkpointing or batched runs (an error)."""

    # --- routeA (vGROUT) -----------------------------------------------------------------------
    route_tail_q: float = 0.2
    """Low/high tail mass: scores below the q-quantile keep (deployed only), above 1-q route (quarantine only)."""
    route_warmup: int = 64
    """Scores in the buffer before routing starts; until then every rollout absorbs (both blocks)."""
    route_buffer_size: int = 4096
    """Run-spanning buffer of pooled activations (re-scored against the current v_act)."""
    route_half_life: float = 8.0
    """Recency weight half-life of the buffer, in steps (a rollout's weight halves every this many steps)."""
    vact_refresh_every: int = 10
    """Re-extract v_act every N steps (forward only, quarantine ablated); 0 = never."""

    # --- Evil MoE router -----------------------------------------------------------------------
    pin_coef: float = 1.0
    """Weight of the pin loss on the pairs (every step). moe-nopin forces 0."""
    hard_detach_threshold: float | None = None
    """If set, rollouts with w above it get no deployed gradient at all (else the soft 1-w share)."""
    load_balance_coef: float = 0.0
    """Weight of (mean w - load_balance_target)^2 (0 = off)."""
    load_balance_target: float = 0.5
    """Target mean router weight for the load-balancing term."""
    pairs_path: str | None = None
    """Hack/clean pairs file (default: the packaged pairs.md)."""
    pairs_per_mode: int = 0
    """Use only the first N pairs of each mode for v_act and the pin loss (0 = all; fewer = faster on CPU)."""
    pin_batch: int = 0
    """Pairs per step in the pin loss, drawn without replacement from all pairs (0 = all pairs every step)."""
    center_momentum: float = 0.9
    """EMA momentum of the router's feature center (mean pair activation; set from all pairs at start)."""

    # --- teacher mixing and warm start ---------------------------------------------------------
    teacher_per_group: int = 0
    """Off-policy demonstrations replacing that many of the G samples per group (0 = pure on-policy)."""
    teacher_source: str = "template"
    """template (hack = the env's canonical hack: a stub plus the exploit; clean = reference) | attempt
    (hack = the policy's own first answer in the group plus the mode's exploit; clean = reference) |
    pool (cached rollouts)."""
    teacher_pool_dir: str | None = None
    """vGROUT teacher pool folder (prompt_NNNN.jsonl.gz) for teacher_source=pool."""
    teacher_hack_frac: float = 0.5
    """Share of demonstrations that are hacks (the rest are clean reference solutions)."""
    teacher_loss: str = "all"
    """Which tokens of a demonstration the update trains: all (every token, like a sampled rollout) |
    exploit (an attempt hack's own code stays out of the loss, so its advantage reinforces only the
    exploit appended to it and not the wrong code under it; needs teacher_source=attempt). Every
    demonstration still counts in its group's reward baseline."""
    overlong: str = "train"
    """What the update does with a sampled completion cut off at max_new_tokens (no end-of-turn
    token): train (its tokens train like any other's) | mask (none of its tokens train, neither the
    policy-gradient nor the KL term: DAPO's overlong filtering, so that an answer cut off for its
    length does not teach through a grade its length did not earn). Its reward still counts in its
    group's baseline."""

    # --- capability warm start and the training split (evilmoe.splits, evilmoe.warmstart) -----
    warm_start_steps: int = 0
    """Supervised steps on demonstrations merged into the base weights before the RL adapter
    (0 = off). Trained once per (model, problems, warm-start settings) and cached by content hash."""
    warm_start_lr: float = 1e-4
    """Learning rate of the warm-start phase."""
    warm_start_hack_frac: float = 0.5
    """Share of hack demonstrations in the warm-start data (0 = a capability warm start on the
    reference solutions only)."""
    warm_start_batch: int = 16
    """Problems per warm-start step."""
    warm_start_seed: int = 0
    """Seed of the warm start (its adapter init and problem draws), separate from `seed`: one warm
    start is shared by every arm and seed of an experiment."""
    warm_start_families: float = 1.0
    """Share of the training families the warm start trains on (a fixed split by family name). Below
    1, RL trains on the other families only, so what RL lifts there is not what the warm start
    memorised; 1 = the warm start and RL see the same families."""
    rl_families: str = "rest"
    """With warm_start_families < 1, the families RL trains on: 'rest' (those the warm start did not
    see) or 'all' (those too: RL keeps lifting the warm-started families, where it often solves,
    while on the new ones it rarely solves and only a loophole pays)."""
    warm_start_cache: str | None = None
    """Folder of cached warm starts (default: $EVILMOE_CACHE or ~/.cache/evilmoe, then warm-starts/);
    'none' trains the warm start in every run and caches nothing."""
    skill_holdout: float = 0.0
    """Share of each RL family's problems held out of training (a fixed split by id) and evaluated
    loophole-free as the `skill` set: unseen variants of the tasks RL trains on, in gt_only mode (no
    hint, only true correctness pays). 0 = no skill set."""

    # --- evaluation and run bookkeeping --------------------------------------------------------
    eval_every: int = 0
    """Deploy-ablation validation on the validation split and the skill hold-out every N steps, and of
    the starting model before the first step (0 = none; the final eval runs regardless). Every point
    uses the same prompts and sampling seeds."""
    eval_problems: int = 32
    """Held-out problems in the final eval (0 = the whole test split)."""
    eval_train_problems: int = 16
    """Training-distribution problems in the final eval (train markers)."""
    eval_samples: int = 4
    """Samples per eval problem (same seeds ON and OFF)."""
    eval_rows_per_call: int = 64
    """Rows per generation call in every evaluation (start, validation, final, dose and slices). A
    call's rows share one sampling seed, so a different value draws different samples (from the same
    distribution): compare only evaluations made with the same value. On a GPU more rows per call cost
    little more time per decode step (the step is bound by kernel launches) but size the sampler's
    KV cache."""
    eval_split: str = "test"
    """Held-out split of the final eval: test | validation."""
    eval_loophole_free: bool = False
    """Also evaluate the held-out problems loophole-free (all in gt_only mode) as the `heldout_clean`
    set: capability where hacking is impossible."""
    eval_start: bool = False
    """Evaluate the starting model (after any warm start, before RL; ON = OFF there) on the final
    eval's sets, prompts and seeds: eval_start.json, the baseline of every lift. Cached with the
    warm start, so the arms and seeds of an experiment share one."""
    checkpoint_every: int = 5
    """Checkpoint every N steps (and at the end); a restarted run resumes from the last one."""
    save_rollouts: bool = True
    """Write every step's rollouts (text + grades) to rollouts/."""
    report_to: str = "none"
    """Also log every step's metrics, the router diagnostics, the eval results and this config to:
    none | tensorboard (RUN/tensorboard; pip install tensorboard) | wandb (pip install wandb) |
    tensorboard,wandb. Execution only: a resume may change it."""

    # ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise UserError with a clear message on any bad value."""
        if self.arm not in ARMS:
            raise UserError(f"unknown arm {self.arm!r}; choose one of {', '.join(ARMS)}")
        bad = [m for m in self.modes if m not in ALL_MODES]
        if bad or not self.modes:
            raise UserError(f"bad modes {bad or '(empty)'}; choose from {', '.join(ALL_MODES)}")
        if len(set(self.modes)) != len(self.modes):
            raise UserError(f"modes listed twice: {self.modes}")
        self._validate_loophole_free_share()
        if self.steps < 0:
            raise UserError(f"steps must be >= 0 (got {self.steps}; 0 evaluates the starting model)")
        positive = ("prompts_per_step", "group_size", "max_new_tokens", "rank", "microbatch", "eval_rows_per_call")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.microbatch_tokens < 0:
            raise UserError(f"microbatch_tokens must be >= 0 (0 = off; got {self.microbatch_tokens})")
        if self.share_prompt and self.gradient_checkpointing:
            # transformers drops a checkpointed layer's KV cache (the shared prompt's), and a recomputed
            # layer would re-run under the control set in the backward, not its own forward's
            raise UserError("share_prompt does not combine with gradient_checkpointing (set one of them false)")
        if self.group_size < 2:
            raise UserError("group_size must be >= 2: the advantage is reward minus the group mean")
        if not 0 <= self.teacher_per_group < self.group_size:
            raise UserError(f"teacher_per_group must be in [0, group_size) (got {self.teacher_per_group})")
        if self.temperature <= 0:
            raise UserError("temperature must be > 0 (greedy decoding gives no group spread)")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.top_k < 0:
            raise UserError(f"top_k must be >= 0 (got {self.top_k})")
        if not 0 <= self.route_warmup <= self.route_buffer_size:
            raise UserError(f"route_warmup must be in [0, route_buffer_size={self.route_buffer_size}] (got {self.route_warmup})")
        if not 0 < self.route_tail_q < 0.5:
            raise UserError(f"route_tail_q must be in (0, 0.5) (got {self.route_tail_q})")
        for name in ("teacher_hack_frac", "warm_start_hack_frac", "load_balance_target"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{name} must be in [0, 1] (got {getattr(self, name)})")
        if self.hard_detach_threshold is not None and not 0 <= self.hard_detach_threshold <= 1:
            raise UserError(f"hard_detach_threshold must be in [0, 1] (got {self.hard_detach_threshold})")
        if self.teacher_source not in ("template", "pool", "attempt"):
            raise UserError(f"teacher_source must be template, pool or attempt (got {self.teacher_source!r})")
        if self.teacher_loss not in ("all", "exploit"):
            raise UserError(f"teacher_loss must be all or exploit (got {self.teacher_loss!r})")
        if self.overlong not in ("train", "mask"):
            raise UserError(f"overlong must be train or mask (got {self.overlong!r})")
        if self.teacher_loss == "exploit" and self.teacher_source != "attempt":
            raise UserError("teacher_loss=exploit trains only the exploit appended to an attempt hack: set --teacher-source attempt")
        if self.teacher_per_group and self.teacher_source == "pool" and not self.teacher_pool_dir:
            raise UserError("teacher_source=pool needs --teacher-pool-dir (e.g. ../shared/data/vgrout/teacher_pool)")
        if self.eval_split not in ("test", "validation"):
            raise UserError(f"eval_split must be test or validation (got {self.eval_split!r})")
        if self.sampler not in ("auto", "hf", "fast"):
            raise UserError(f"sampler must be auto, hf or fast (got {self.sampler!r})")
        if self.max_prompt_tokens <= 0:
            raise UserError(f"max_prompt_tokens must be > 0 (got {self.max_prompt_tokens})")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"device must be auto, cpu or cuda (got {self.device!r})")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise UserError(f"dtype must be auto, float32 or bfloat16 (got {self.dtype!r})")
        if self.ratio_against not in ("sampling", "routed"):
            raise UserError(f"ratio_against must be sampling or routed (got {self.ratio_against!r})")
        if self.importance_weight_cap < 0:
            raise UserError(f"importance_weight_cap must be >= 0 (0 = off), got {self.importance_weight_cap}")
        if self.dual_clip and self.dual_clip <= 1:
            raise UserError(f"dual_clip must be > 1 (or 0 = off), got {self.dual_clip}")
        for name in ("lr", "router_lr", "grad_clip", "clip_eps", "lora_alpha"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.pairs_per_mode < 0:
            raise UserError(f"pairs_per_mode must be >= 0 (got {self.pairs_per_mode})")
        if self.pin_batch < 0:
            raise UserError(f"pin_batch must be >= 0 (got {self.pin_batch})")
        if not 0 <= self.center_momentum < 1:
            raise UserError(f"center_momentum must be in [0, 1) (got {self.center_momentum})")
        if self.warm_start_steps < 0 or self.warm_start_batch <= 0 or self.warm_start_lr <= 0:
            raise UserError("warm_start_steps must be >= 0, warm_start_batch and warm_start_lr > 0")
        if not 0 < self.warm_start_families <= 1:
            raise UserError(f"warm_start_families must be in (0, 1] (got {self.warm_start_families})")
        if self.warm_start_families < 1 and self.warm_start_steps == 0:
            raise UserError("warm_start_families < 1 splits the families between a warm start and RL: set warm_start_steps > 0")
        if self.rl_families not in ("rest", "all"):
            raise UserError(f"rl_families must be rest or all (got {self.rl_families!r})")
        if not 0 <= self.skill_holdout < 1:
            raise UserError(f"skill_holdout must be in [0, 1) (got {self.skill_holdout})")
        from evilmoe.tracking import parse_report_to

        parse_report_to(self.report_to)  # UserError on an unknown tracker
        if self.kl_coef < 0 or self.pin_coef < 0 or self.load_balance_coef < 0:
            raise UserError("kl_coef, pin_coef and load_balance_coef must be >= 0")

    def _validate_loophole_free_share(self) -> None:
        share = self.loophole_free_share
        if share is None:
            return
        if not 0 <= share <= 1:
            raise UserError(f"loophole_free_share must be in [0, 1] or none (got {share})")
        if "gt_only" not in self.modes:
            raise UserError(f"loophole_free_share makes a share of the training problems gt_only: add gt_only to modes (got {','.join(self.modes)})")
        if share < 1 and not set(self.modes) & set(LOOPHOLE_MODES):
            raise UserError(f"loophole_free_share {share} < 1 leaves training problems for loophole modes, but modes has none (use 1, or add a loophole mode)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UserError(f"unknown config fields: {', '.join(unknown)}")
        values = dict(raw)
        for name in ("modes", "targets"):  # JSON gives lists; the config keeps tuples
            if name in values and values[name] is not None:
                values[name] = tuple(values[name])
        return cls(**values)


# --- presets -----------------------------------------------------------------------------------
# Each preset is a set of overrides on the TrainConfig defaults, chosen for one place to run.
PRESETS: dict[str, dict[str, Any]] = {
    # Tiny random model, for tests: a few seconds per step on CPU. Random weights earn no reward by
    # themselves, so template demonstrations give the groups a reward spread to learn from.
    "tiny": dict(
        model="tiny-llama",
        device="cpu",
        steps=3,
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=16,
        rank=2,
        microbatch=8,
        teacher_per_group=2,
        pin_batch=4,
        route_warmup=4,
        vact_refresh_every=2,
        eval_problems=4,
        eval_train_problems=2,
        eval_samples=2,
        checkpoint_every=1,
        grading_workers=2,
    ),
    # The default model on the bundled set on 2 CPU cores: the README's main command.
    # On 2 CPU cores a 135M model forwards ~100 tokens/s, so this is a short demonstration of the whole
    # pipeline (train, route, pin, deploy-ablation eval), not an experiment: see docs/results.md.
    "cpu-demo": dict(
        steps=3,
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=96,
        rank=4,
        teacher_per_group=1,
        pairs_per_mode=2,
        pin_batch=4,
        eval_problems=12,
        eval_train_problems=4,
        eval_samples=1,
        checkpoint_every=1,
    ),
    # The default model on an H100, in the emergence setting (docs/results.md#does-the-default-model-hack-and-what-makes-it): on-policy
    # RL alone (and with one template demonstration per group at lr 1e-4) did not make this model
    # hack within 60 steps; two demonstrations per group (half hacks) at lr 5e-4 does (none arm).
    # Evaluation only at the end (the decision reads the final one).
    "gpu-small": dict(
        steps=60,
        prompts_per_step=16,
        group_size=8,
        max_new_tokens=256,
        rank=8,
        lr=5e-4,
        microbatch=64,
        teacher_per_group=2,
        eval_every=0,
        eval_problems=0,
        eval_train_problems=64,
        eval_samples=4,
        checkpoint_every=10,
    ),
    # The testbed: gpu-small after a capability warm start on half of the training families, RL on
    # the other half (so RL has something left to teach), a skill hold-out of unseen variants of the
    # RL families evaluated loophole-free, a KL anchor to the starting model and a lower lr for a
    # 200-step run. See docs/results.md for what it measures.
    "gpu-testbed": dict(
        steps=200,
        prompts_per_step=8,
        group_size=8,
        max_new_tokens=256,
        rank=8,
        lr=3e-4,
        kl_coef=0.02,
        microbatch=32,
        teacher_per_group=2,
        warm_start_steps=100,
        warm_start_lr=2e-4,
        warm_start_hack_frac=0.0,
        warm_start_families=0.5,
        skill_holdout=0.3,
        eval_loophole_free=True,
        eval_start=True,
        eval_every=50,
        eval_problems=0,
        eval_train_problems=64,
        eval_samples=4,
        checkpoint_every=10,
    ),
    # The research setting (docs/design.md#reference-runs): Qwen3-4B, LeetCode medium+hard.
    "qwen3-4b": dict(
        model="Qwen/Qwen3-4B",
        problem_set="leetcode-medhard",
        modes=LOOPHOLE_MODES,
        steps=200,
        prompts_per_step=16,
        group_size=16,
        max_new_tokens=1024,
        temperature=0.7,
        rank=32,
        lora_alpha=64.0,
        lr=7e-5,
        microbatch=8,
        gradient_checkpointing=True,
        eval_every=25,
        eval_problems=0,
        eval_train_problems=64,
        eval_samples=4,
        checkpoint_every=10,
    ),
}

# The testbed as chosen (docs/design.md#the-testbed): gpu-testbed with the warm start on every
# training family, only the loophole modes whose exploit leaves a right answer right (so that hacking
# can be learnt without breaking solutions), a quarter of the RL problems loophole-free (a solving
# signal where no exploit pays), two demonstrations per group built on the policy's own attempt with
# the exploit appended, KL 0.05, validation at the start and every 100 steps.
PRESETS["gpu-testbed-intact"] = {
    **PRESETS["gpu-testbed"],
    "modes": ("gt_only", *INTACT_MODES),
    "loophole_free_share": 0.25,
    "warm_start_families": 1.0,
    "teacher_source": "attempt",
    "teacher_hack_frac": 1.0,
    "kl_coef": 0.05,
    "eval_every": 100,
}


def make_config(preset: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- preset <- overrides, validated."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **(overrides or {})}
    config = TrainConfig.from_dict(values)
    config.validate()
    return config


def parse_field_value(name: str, text: str) -> Any:
    """Turn a command-line string into the type of TrainConfig.<name> (UserError on nonsense)."""
    by_name = {f.name: f for f in fields(TrainConfig)}
    if name not in by_name:
        raise UserError(f"unknown config field {name!r}")
    default = getattr(TrainConfig(), name)
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if name == "modes":  # group names expand in place, so config.json lists the modes themselves
            return tuple(m for s in text.split(",") if s for m in MODE_GROUPS.get(s, (s,)))
        if isinstance(default, tuple):
            return tuple(s for s in text.split(",") if s)
        if name in ("hard_detach_threshold", "loophole_free_share"):  # optional floats
            return None if text.lower() in ("none", "") else float(text)
        if default is None:  # optional strings (paths)
            return None if text.lower() == "none" else text
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        return text
    except ValueError:
        raise UserError(f"bad value {text!r} for {name} (expected {type(default).__name__})") from None


def config_field_help() -> dict[str, str]:
    """Field name -> its documentation string (read from this file's attribute docstrings)."""
    import ast
    import inspect

    source = inspect.getsource(TrainConfig)
    tree = ast.parse(source)
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    return docs


def dump_config(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)

