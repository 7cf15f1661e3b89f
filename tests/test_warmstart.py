"""The capability warm start (cache by content hash: reuse and invalidation), the training split,
the testbed's config fields, and a run that shares its warm start and start evaluation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from evilmoe.config import make_config
from evilmoe.env.modes import assign_modes
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.models import end_of_turn_ids, load_model
from evilmoe.policy import Policy
from evilmoe.runs import RunDir
from evilmoe.splits import family_of, split_training
from evilmoe.train import run_training
from evilmoe.warmstart import obtain_warm_start

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problems():
    return load_problem_set("bundled")


# --- the training split ------------------------------------------------------------------------
def test_split_is_disjoint_fixed_and_by_family(problems):
    train = problems.train
    split = split_training(train, warm_start=True, warm_start_families=0.5, skill_holdout=0.3)
    again = split_training(list(reversed(train)), warm_start=True, warm_start_families=0.5, skill_holdout=0.3)
    ids = lambda ps: {p.id for p in ps}  # noqa: E731
    assert ids(split.warm_start) == ids(again.warm_start) and ids(split.skill) == ids(again.skill)  # order-free
    assert not ids(split.warm_start) & ids(split.rl) and not ids(split.rl) & ids(split.skill)
    assert not ids(split.warm_start) & ids(split.skill)
    assert ids(split.warm_start) | ids(split.rl) | ids(split.skill) == ids(train)
    ws_families, rl_families = {family_of(p) for p in split.warm_start}, {family_of(p) for p in split.rl}
    assert not ws_families & rl_families  # RL never trains on a family the warm start saw
    n_families = len({family_of(p) for p in train})
    assert len(ws_families) == round(0.5 * n_families)
    # every RL family keeps problems to train on and gives some to the skill set
    assert {family_of(p) for p in split.skill} <= rl_families
    for fam in rl_families:
        n = sum(family_of(p) == fam for p in train)
        k = sum(family_of(p) == fam for p in split.skill)
        assert 1 <= k < n
    test_ids = ids(problems.test) | ids(problems.validation)
    assert not test_ids & (ids(split.warm_start) | ids(split.rl) | ids(split.skill))


def test_split_without_warm_start_keeps_every_problem_for_rl_in_order(problems):
    split = split_training(problems.train, warm_start=False, warm_start_families=1.0, skill_holdout=0.0)
    assert split.warm_start == [] and split.skill == [] and split.rl == list(problems.train)
    shared = split_training(problems.train, warm_start=True, warm_start_families=1.0, skill_holdout=0.2)
    assert {family_of(p) for p in shared.warm_start} == {family_of(p) for p in shared.rl}  # same families
    assert not {p.id for p in shared.warm_start} & {p.id for p in shared.skill}  # never the skill problems


def test_split_with_rl_on_all_families(problems):
    """rl_families='all': the warm start keeps its half of the families; RL trains on every family,
    the warm-started problems included; the skill set draws from every family and stays unseen."""
    split = split_training(problems.train, warm_start=True, warm_start_families=0.5, skill_holdout=0.3, rl_families="all")
    rest = split_training(problems.train, warm_start=True, warm_start_families=0.5, skill_holdout=0.3)
    ids = lambda ps: {p.id for p in ps}  # noqa: E731
    families = {family_of(p) for p in problems.train}
    assert {family_of(p) for p in split.warm_start} == {family_of(p) for p in rest.warm_start}
    assert {family_of(p) for p in split.rl} == families and {family_of(p) for p in split.skill} == families
    assert ids(split.warm_start) <= ids(split.rl)
    assert not ids(split.skill) & (ids(split.warm_start) | ids(split.rl))
    assert ids(split.rl) | ids(split.skill) == ids(problems.train)
    with pytest.raises(ValueError, match="rl_families"):
        split_training(problems.train, warm_start=True, warm_start_families=0.5, skill_holdout=0.3, rl_families="most")


def test_split_refuses_to_leave_rl_nothing(problems):
    one = [p for p in problems.train if family_of(p) == family_of(problems.train[0])][:1]
    with pytest.raises(ValueError, match="leaves RL no problems"):
        split_training(one, warm_start=True, warm_start_families=0.5, skill_holdout=0.0)


# --- config validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(warm_start_families=0.0, warm_start_steps=2), "warm_start_families"),
        (dict(warm_start_families=1.5, warm_start_steps=2), "warm_start_families"),
        (dict(warm_start_families=0.5), "set warm_start_steps > 0"),
        (dict(rl_families="most"), "rl_families"),
        (dict(skill_holdout=1.0), "skill_holdout"),
        (dict(skill_holdout=-0.1), "skill_holdout"),
        (dict(warm_start_batch=0), "warm_start_batch"),
        (dict(warm_start_steps=-1), "warm_start_steps"),
        (dict(warm_start_lr=0.0), "warm_start_lr"),
    ],
)
def test_testbed_fields_are_validated(overrides, message):
    with pytest.raises(UserError, match=message):
        make_config("tiny", overrides)


def test_testbed_preset_is_valid():
    config = make_config("gpu-testbed")
    assert config.warm_start_steps > 0 and config.warm_start_hack_frac == 0 and config.warm_start_families < 1
    assert config.skill_holdout > 0 and config.eval_start and config.eval_loophole_free and config.kl_coef > 0


def test_chosen_testbed_preset_is_the_setting_its_runs_used():
    """`gpu-testbed-intact` names the setting whose three `none` seeds are in docs/results.md, which
    were launched as `gpu-testbed` plus flags (scripts/testbed_additive_none.txt): the preset must
    give exactly that config, so those runs and a run of the preset are one setting."""
    from pathlib import Path

    from evilmoe.cli import _overrides, build_parser
    from evilmoe.env.loopholes import INTACT_MODES

    runs_file = Path(__file__).resolve().parents[1] / "scripts" / "testbed_additive_none.txt"
    lines = [line.split() for line in runs_file.read_text().splitlines() if line.strip()]
    assert len(lines) == 3
    for name, *flags in lines:
        args = build_parser().parse_args(["train", "--out", name, *flags])
        assert args.preset == "gpu-testbed"
        launched = make_config(args.preset, _overrides(args))
        per_run = {"arm": launched.arm, "seed": launched.seed, "grading_workers": launched.grading_workers}
        chosen = make_config("gpu-testbed-intact", per_run)
        assert dataclasses.asdict(launched) == dataclasses.asdict(chosen)
    chosen = make_config("gpu-testbed-intact")
    assert chosen.modes == ("gt_only", *INTACT_MODES) and set(INTACT_MODES) < set(make_config("gpu-testbed").modes)


# --- the cache ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    model, tokenizer = load_model("tiny-llama", device=torch.device("cpu"), dtype=torch.float32)
    return model, tokenizer


def _obtain(tiny_model, problems, config):
    model, tokenizer = tiny_model
    split = split_training(problems.train, warm_start=True, warm_start_families=config.warm_start_families, skill_holdout=config.skill_holdout)
    modes = assign_modes([p.id for p in problems.train], config.modes, config.mode_seed)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = obtain_warm_start(
        model, tokenizer, end_of_turn_ids(tokenizer)[0], split.warm_start, modes, config, torch.device("cpu"), torch.float32, split.describe()
    )
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model is left as it was
    return got


def test_cache_reuses_and_invalidates(tmp_path, tiny_model, problems):
    cache = str(tmp_path / "cache")
    base = make_config("tiny", dict(warm_start_steps=2, warm_start_batch=2, warm_start_hack_frac=0.0, warm_start_cache=cache))
    first = _obtain(tiny_model, problems, base)
    assert not first["cached"] and len(first["losses"]) == 2
    entries = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert [p.name for p in entries] == [first["key"]]
    assert {"factors.safetensors", "key.json", "meta.json"} <= {f.name for f in entries[0].iterdir()}

    second = _obtain(tiny_model, problems, base)  # same inputs: read back, bit for bit
    assert second["cached"] and second["key"] == first["key"] and second["losses"] == first["losses"]
    assert (second["rank"], second["scaling"]) == (first["rank"], first["scaling"]) == (base.rank, base.lora_alpha / base.rank)
    assert set(second["factors"]) == set(first["factors"])
    assert all(torch.equal(first["factors"][k], second["factors"][k]) for k in first["factors"])

    # any input the deltas depend on gives a new entry: settings, seed, which families, the problems
    for change in (dict(warm_start_lr=2e-4), dict(warm_start_seed=1), dict(warm_start_families=0.5), dict(warm_start_steps=3)):
        other = _obtain(tiny_model, problems, dataclasses.replace(base, **change))
        assert not other["cached"] and other["key"] != first["key"], change
    edited = dataclasses.replace(problems, train=[dataclasses.replace(problems.train[0], tests=problems.train[0].tests[:-1])] + list(problems.train[1:]))
    assert not _obtain(tiny_model, edited, base)["cached"]
    # ... but a setting that only says how the run is executed does not
    assert _obtain(tiny_model, problems, dataclasses.replace(base, microbatch=3, grading_workers=1))["cached"]


def test_cache_off_and_tampered_entries(tmp_path, tiny_model, problems):
    off = make_config("tiny", dict(warm_start_steps=1, warm_start_batch=2, warm_start_cache="none"))
    assert not _obtain(tiny_model, problems, off)["cached"]
    cache = tmp_path / "cache"
    config = dataclasses.replace(off, warm_start_cache=str(cache))
    key = _obtain(tiny_model, problems, config)["key"]
    key_file = cache / key / "key.json"
    stored = json.loads(key_file.read_text())
    stored["config"]["warm_start_lr"] = 123.0
    key_file.write_text(json.dumps(stored))
    with pytest.raises(UserError, match="holds another warm start"):
        _obtain(tiny_model, problems, config)


# --- a run: shared warm start and start evaluation, the testbed's eval sets ----------------------
def test_runs_share_the_warm_start_and_the_start_eval(tmp_path, problems, capsys):
    overrides = dict(
        arm="none", steps=1, pairs_per_mode=1, warm_start_steps=2, warm_start_batch=2, warm_start_hack_frac=0.0,
        warm_start_families=0.5, skill_holdout=0.3, eval_start=True, eval_loophole_free=True,
        eval_problems=2, eval_train_problems=2, eval_samples=1, warm_start_cache=str(tmp_path / "cache"),
    )
    results = []
    for arm in ("none", "absorb"):
        config = make_config("tiny", {**overrides, "arm": arm})
        results.append(run_training(config, str(tmp_path / arm), problems=problems, progress=False))
    starts = [json.loads((tmp_path / arm / "eval_start.json").read_text()) for arm in ("none", "absorb")]
    assert starts[0] == starts[1]  # one start evaluation, read back from the cache by the second run
    assert len(list((tmp_path / "cache" / "start-evals").glob("*.json"))) == 1
    for res in starts[0]["sets"].values():  # the rows, for lifts paired with the final eval's
        assert len(res["rows"]["correct"]) == len(res["rows"]["problems"]) * res["samples_per_problem"] == res["on"]["solve"]["n"]
        assert sum(res["rows"]["correct"]) == res["on"]["solve"]["k"] and sum(res["rows"]["hacked"]) == res["on"]["hack"]["k"]
    # the report pairs them with the final eval's rows (same problems, in order): the paired mean is the lift
    import importlib.util

    spec = importlib.util.spec_from_file_location("testbed_report", Path(__file__).resolve().parents[1] / "scripts" / "testbed_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    for name, res in starts[0]["sets"].items():
        paired = report.paired_lift(tmp_path / "none", name, res)
        assert paired is not None, name
        lift = results[0]["sets"][name]["off"]["solve"]["rate"] - res["on"]["solve"]["rate"]
        assert paired["mean"] == pytest.approx(lift)
    # other generation calls draw other samples: a start evaluation of its own, not the cached one
    run_training(make_config("tiny", {**overrides, "eval_rows_per_call": 1}), str(tmp_path / "calls"), problems=problems, progress=False)
    assert len(list((tmp_path / "cache" / "start-evals").glob("*.json"))) == 2
    first_rows = [RunDir(tmp_path / arm).read_metrics()[0] for arm in ("none", "absorb")]
    assert first_rows[0]["warm_start_key"] == first_rows[1]["warm_start_key"] is not None
    split = first_rows[0]["training_split"]
    assert split["warm_start_families"] + split["rl_families"] == len({family_of(p) for p in problems.train})
    for result in results:
        assert set(result["sets"]) == {"heldout", "heldout_clean", "skill", "train_dist"}
        assert result["sets"]["skill"]["n_problems"] == split["skill_problems"]
        for name in ("skill", "heldout_clean"):  # loophole-free: only true correctness pays, no hack possible
            assert set(result["sets"][name]["on"]["per_mode"]) == {"gt_only"}
    for res in starts[0]["sets"].values():  # at the start the adapter's delta is zero: ON and OFF are one model
        assert res["on"]["solve"] == res["off"]["solve"] and res["on"]["hack"] == res["off"]["hack"]
    captured = capsys.readouterr()
    # the first run evaluated the start, the others read it (each says which, with its time)
    assert "start: skill" in captured.out and "start: evaluation done here in" in captured.out
    assert "start: evaluation read from the cache in" in captured.out
    # the first run trained the warm start, the others read it (each says so, with its time)
    assert "warm start trained (" in captured.err and "warm start read from the cache in" in captured.err
    # the training distribution is evaluated in the modes it trained in (RL trains on a subset here)
    training = Policy.mode_partition(make_config("tiny", overrides), problems)
    rows = [json.loads(line) for line in (tmp_path / "none" / "rollouts" / "eval_train_dist.jsonl").read_text().splitlines()]
    assert rows and all(r["mode"] == training[r["problem_id"]] for r in rows)


def test_a_run_made_before_a_field_existed_resumes(tmp_path):
    config = make_config("tiny", {})
    run = RunDir.open(tmp_path / "r", config)
    stored = json.loads((run.path / "config.json").read_text())
    del stored["skill_holdout"]  # a field added later: its default is what the run did
    (run.path / "config.json").write_text(json.dumps(stored))
    RunDir.open(tmp_path / "r", config)
    with pytest.raises(UserError, match="skill_holdout"):
        RunDir.open(tmp_path / "r", dataclasses.replace(config, skill_holdout=0.3))


# --- the warm start kept as factors ------------------------------------------------------------
def dense_delta_as_before(adapter) -> dict[str, torch.Tensor]:
    """The dense deltas the warm start kept before it kept factors: `merged_delta(1.0)` as it was
    written then, inline here so that a change to the shared arithmetic (lora2r.factor_delta) cannot
    move the reference along with it."""
    r, out = adapter.rank, {}
    with torch.no_grad():
        for name, m in adapter.modules.items():
            A, B, A0, B0 = (t.float() for t in (m.A, m.B, m.A0, m.B0))
            dA, dB = A - A0, B - B0
            dep = B[:, :r] @ dA[:r] + dB[:, :r] @ A0[:r]
            quar = B[:, r:] @ dA[r:] + dB[:, r:] @ A0[r:]
            out[name] = m.scaling * (dep + 1.0 * quar)
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_factors_merge_into_the_same_weights_as_the_dense_deltas(dtype, problems, monkeypatch):
    """A real warm start (a few steps at a large lr, so every factor moves), kept as factors and merged
    with merge_warm_start, gives bit for bit the weights that merging its dense delta gave; float32 is
    the CPU default, bfloat16 the GPU's."""
    import evilmoe.warmstart as warmstart

    model, tokenizer = load_model("tiny-llama", device=torch.device("cpu"), dtype=dtype)
    # alpha 24: a scaling of 12, not a power of two, so a reordered product would round differently
    config = make_config(
        "tiny", dict(warm_start_steps=3, warm_start_batch=2, warm_start_lr=0.05, warm_start_hack_frac=0.0, warm_start_cache="none", lora_alpha=24.0)
    )
    split = split_training(problems.train, warm_start=True, warm_start_families=1.0, skill_holdout=0.0)
    modes = assign_modes([p.id for p in problems.train], config.modes, config.mode_seed)
    dense: dict[str, torch.Tensor] = {}
    remove = warmstart.remove_adapter

    def keep_the_dense_delta(model, adapter):  # the adapter as trained, just before it is dropped
        dense.update(dense_delta_as_before(adapter))
        assert all(p.dtype == torch.promote_types(dtype, torch.float32) for p in adapter.parameters())
        remove(model, adapter)

    monkeypatch.setattr(warmstart, "remove_adapter", keep_the_dense_delta)
    low_rank, _ = warmstart.train_warm_start(model, tokenizer, end_of_turn_ids(tokenizer)[0], split.warm_start, modes, config, torch.device("cpu"))
    base = {k: v.clone() for k, v in model.state_dict().items()}

    warmstart.merge_warm_start(model, low_rank)
    from_factors = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(base)
    warmstart.merge_warm_start(model, {"deltas": dense, "losses": [], "key": "k"})  # a checkpoint written before
    from_dense = model.state_dict()

    assert set(dense) == {k.rpartition(".")[0] for k in low_rank["factors"]} and len(dense) == 2 * 7  # 2 layers x 7 targets
    for k in base:
        assert torch.equal(from_factors[k], from_dense[k]), k
    moved = [k for k in base if not torch.equal(from_factors[k], base[k])]
    assert sorted(moved) == sorted(f"{name}.weight" for name in dense)  # every targeted weight changed, nothing else
    # what is kept: 4 factors of 2r rows or columns per module instead of a d_out x d_in matrix
    r = config.rank
    assert low_rank["rank"] == r and low_rank["scaling"] == config.lora_alpha / r
    for name, delta in dense.items():
        d_out, d_in = delta.shape
        assert low_rank["factors"][f"{name}.A"].shape == low_rank["factors"][f"{name}.A0"].shape == (2 * r, d_in)
        assert low_rank["factors"][f"{name}.B"].shape == low_rank["factors"][f"{name}.B0"].shape == (d_out, 2 * r)


def _tiny_warm_start(seed: int = 3):
    """A tiny model and a warm start's factors for it (the factors moved off their init)."""
    from evilmoe.lora2r import Lora2rConfig, attach_lora2r
    from evilmoe.warmstart import remove_adapter

    model, _ = load_model("tiny-llama", device=torch.device("cpu"), dtype=torch.float32)
    adapter = attach_lora2r(model, Lora2rConfig(rank=2, alpha=4.0, seed=seed))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p += 0.05 * torch.randn(p.shape, generator=gen)
    low_rank = {"factors": adapter.state_dict(), "rank": 2, "scaling": 2.0, "losses": [1.0], "key": "k"}
    remove_adapter(model, adapter)
    return model, low_rank


def test_a_saved_warm_start_that_does_not_fit_fails_loudly_and_merges_nothing():
    from evilmoe.warmstart import merge_warm_start

    model, good = _tiny_warm_start()
    name = "model.layers.1.mlp.down_proj"
    factors = good["factors"]
    other_model_factors = {k.replace("model.layers.1.", "model.layers.7."): v for k, v in factors.items()}
    wider = dict(factors, **{f"{name}.A": torch.zeros(4, 999), f"{name}.A0": torch.zeros(4, 999)})
    cases = [
        ({k: v for k, v in good.items() if k != "factors"}, "neither factors nor deltas"),
        ({**good, "factors": {k: v for k, v in factors.items() if k != f"{name}.B0"}}, f"lacks B0 of {name}"),
        ({**good, "rank": 3}, "do not fit its rank 3"),
        ({**good, "rank": "2"}, "rank '2'"),
        ({**good, "factors": {**factors, f"{name}.C": factors[f"{name}.A"]}}, "keys other than A/B/A0/B0"),
        ({**good, "factors": other_model_factors}, "model.layers.7.self_attn.q_proj, which this model does not have"),
        ({**good, "factors": wider}, f"factors of {name} make a"),
    ]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for saved, message in cases:
        with pytest.raises(UserError, match=message):
            merge_warm_start(model, saved)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), message  # never a partial merge
    merge_warm_start(model, good)
    assert not torch.equal(before[f"{name}.weight"], model.state_dict()[f"{name}.weight"])


def test_a_cache_entry_of_dense_deltas_is_trained_again_as_factors(tmp_path, tiny_model, problems):
    """An entry written when the cache kept dense deltas counts as missing: the warm start is trained
    again (the same one: the procedure is seeded) and its factors written beside the old file, which
    stays for older code sharing the cache."""
    from safetensors.torch import save_file

    from evilmoe.lora2r import factor_delta

    config = make_config("tiny", dict(warm_start_steps=2, warm_start_batch=2, warm_start_hack_frac=0.0, warm_start_cache=str(tmp_path / "cache")))
    first = _obtain(tiny_model, problems, config)
    folder = tmp_path / "cache" / first["key"]
    f = first["factors"]
    names = sorted({k.rpartition(".")[0] for k in f})
    dense = {n: factor_delta(f[f"{n}.A"], f[f"{n}.B"], f[f"{n}.A0"], f[f"{n}.B0"], first["rank"], first["scaling"]) for n in names}
    save_file(dense, str(folder / "deltas.safetensors"))
    (folder / "factors.safetensors").unlink()

    again = _obtain(tiny_model, problems, config)
    assert not again["cached"] and again["key"] == first["key"]
    assert (folder / "deltas.safetensors").is_file() and (folder / "factors.safetensors").is_file()
    assert set(again["factors"]) == set(f) and all(torch.equal(again["factors"][k], f[k]) for k in f)
    assert _obtain(tiny_model, problems, config)["cached"]  # and from now on read from the cache

    # a factors file that is not one (a hand-made or truncated entry) is an error, not a warm start
    save_file({"x": torch.zeros(1)}, str(folder / "factors.safetensors"))
    with pytest.raises(UserError, match="is not a warm start's factors"):
        _obtain(tiny_model, problems, config)
