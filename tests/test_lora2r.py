"""The two-block adapter: identity at init, exact gradient routing, ablation, capture, folding, save/load.

Tiny random models on CPU. Gradient tests run in float64 so "equal" can mean equal to ~1e-12.
"""

from __future__ import annotations

import copy

import pytest
import torch

from evilmoe.errors import UserError
from evilmoe.lora2r import (
    DEFAULT_TARGETS,
    Lora2rConfig,
    Lora2rLinear,
    attach_lora2r,
    moe_control,
    read_lora2r_metadata,
    split_factors,
    two_block_delta,
    vgrout_control,
)
from evilmoe.models import tiny_model

R = 4
VOCAB = 384


def make(arch: str = "llama", dtype=torch.float64, rank: int = R):
    """(model with adapter, untouched copy of the base model, adapter)."""
    model = tiny_model(arch).to(dtype)
    base = copy.deepcopy(model)
    adapter = attach_lora2r(model, Lora2rConfig(rank=rank, seed=1))
    return model, base, adapter


def batch(n: int = 3, t: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, t), generator=g)


def loss_fn(logits: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A fixed random linear readout of the logits: every row and position gets distinct gradient."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(logits.shape, generator=g, dtype=logits.dtype)
    return (logits * weights).sum() / logits.shape[1]


def perturb(adapter, block: str, seed: int = 0, size: float = 0.3) -> None:
    """Move one block ("deployed" | "quarantine" | "both") of every module away from its init."""
    r = adapter.rank
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in adapter.modules.values():
            rows = {"deployed": slice(0, r), "quarantine": slice(r, 2 * r), "both": slice(0, 2 * r)}[block]
            m.A[rows] += size * torch.randn(m.A[rows].shape, generator=g, dtype=m.A.dtype) / m.A.shape[1] ** 0.5
            m.B[:, rows] += size * torch.randn(m.B[:, rows].shape, generator=g, dtype=m.B.dtype)


def grads(adapter) -> dict[str, dict[str, torch.Tensor]]:
    """Deployed / quarantine slices of every A and B gradient (zeros where .grad is None)."""
    r, out = adapter.rank, {"dep": {}, "quar": {}}
    for name, m in adapter.modules.items():
        gA = m.A.grad if m.A.grad is not None else torch.zeros_like(m.A)
        gB = m.B.grad if m.B.grad is not None else torch.zeros_like(m.B)
        out["dep"][name + ".A"], out["quar"][name + ".A"] = gA[:r].clone(), gA[r:].clone()
        out["dep"][name + ".B"], out["quar"][name + ".B"] = gB[:, :r].clone(), gB[:, r:].clone()
    return out


def zero_grads(adapter) -> None:
    for p in adapter.parameters():
        p.grad = None


def total_sq(d: dict[str, torch.Tensor]) -> float:
    return float(sum(v.square().sum() for v in d.values()))


def assert_grads_close(a: dict, b: dict, rtol=1e-9, atol=1e-12) -> None:
    for block in ("dep", "quar"):
        for key in a[block]:
            torch.testing.assert_close(a[block][key], b[block][key], rtol=rtol, atol=atol, msg=f"{block} {key}")


# -----------------------------------------------------------------------------
# structure and identity


def test_attach_wraps_every_target_and_freezes_the_base():
    model, _, adapter = make("qwen3")
    # 2 layers x 7 targets, in model order, names still addressable
    assert adapter.n_modules == 14 and adapter.feature_dim == 14 * R
    names = list(adapter.modules)
    assert names[0] == "model.layers.0.self_attn.q_proj" and names[-1] == "model.layers.1.mlp.down_proj"
    assert all(model.get_submodule(n) is m for n, m in adapter.modules.items())
    assert {n.rsplit(".", 1)[-1] for n in names} == set(DEFAULT_TARGETS)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in adapter.parameters()}
    m = adapter.modules[names[0]]
    assert m.A.shape == (2 * R, m.in_features) and m.B.shape == (m.out_features, 2 * R)
    assert torch.equal(m.A, m.A0) and torch.equal(m.B, m.B0) and m.A.abs().min() > 0 and m.B.abs().min() > 0


def test_split_factors_gives_every_module_its_four_factors_and_refuses_a_mismatch():
    _, _, adapter = make()
    state = adapter.state_dict()
    modules = split_factors(state, R)
    assert list(modules) == list(adapter.modules)  # model order, as saved
    for name, factors in modules.items():
        assert all(t is state[f"{name}.{k}"] for t, k in zip(factors, ("A", "B", "A0", "B0")))
    name = next(iter(modules))
    with pytest.raises(UserError, match=f"the adapter state lacks A0 of {name}"):
        split_factors({k: v for k, v in state.items() if k != f"{name}.A0"}, R)
    with pytest.raises(UserError, match="keys other than A/B/A0/B0"):
        split_factors({**state, f"{name}.bias": state[f"{name}.A"]}, R)
    with pytest.raises(UserError, match=f"factors of {name} .* do not fit its rank {R + 1}"):
        split_factors(state, R + 1)


def test_attach_rejects_unknown_targets_and_double_attach():
    with pytest.raises(UserError, match="no_such_proj"):
        attach_lora2r(tiny_model("llama"), Lora2rConfig(rank=2, targets=("q_proj", "no_such_proj")))
    model, _, _ = make()
    with pytest.raises(RuntimeError, match="already"):
        attach_lora2r(model, Lora2rConfig(rank=2))


def test_subset_of_targets():
    model = tiny_model("llama")
    adapter = attach_lora2r(model, Lora2rConfig(rank=2, targets=("q_proj", "down_proj")))
    assert adapter.n_modules == 4 and adapter.feature_dim == 8
    assert not isinstance(model.model.layers[0].self_attn.k_proj, Lora2rLinear)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_identity_at_init(arch, dtype):
    model, base, _ = make(arch, dtype)
    ids = batch()
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # a padded row too
    with torch.no_grad():
        want = base(ids, attention_mask=mask).logits
        got = model(ids, attention_mask=mask).logits
    assert got.dtype == dtype
    # the delta is computed as two bitwise-identical products subtracted: exactly zero
    assert torch.equal(got, want)


def test_init_is_seeded_and_the_same_on_every_call():
    a = attach_lora2r(tiny_model("llama"), Lora2rConfig(rank=2, seed=5))
    b = attach_lora2r(tiny_model("llama"), Lora2rConfig(rank=2, seed=5))
    c = attach_lora2r(tiny_model("llama"), Lora2rConfig(rank=2, seed=6))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa[next(iter(sa))], sc[next(iter(sc))])


# -----------------------------------------------------------------------------
# gradient routing


@pytest.mark.parametrize("label,dep_trains,quar_trains", [("keep", True, False), ("route", False, True), ("absorb", True, True)])
def test_vgrout_labels_route_gradient(label, dep_trains, quar_trains):
    model, _, adapter = make()
    perturb(adapter, "both")  # so both blocks have a non-trivial forward
    with adapter.row_control(*vgrout_control([label] * 3)):
        loss_fn(model(batch()).logits).backward()
    g = grads(adapter)
    assert (total_sq(g["dep"]) > 0) == dep_trains
    assert (total_sq(g["quar"]) > 0) == quar_trains
    dep_sq, quar_sq = adapter.block_grad_sq_norms()
    assert dep_sq == pytest.approx(total_sq(g["dep"])) and quar_sq == pytest.approx(total_sq(g["quar"]))


def test_w0_forward_is_the_deployment_forward_and_w1_detaches_deployed():
    model, _, adapter = make()
    perturb(adapter, "both")
    ids = batch()
    with torch.no_grad(), adapter.ablate_quarantine():
        deployed = model(ids).logits
    with torch.no_grad():
        trained = model(ids).logits
    assert not torch.allclose(deployed, trained)  # the planted quarantine matters
    with torch.no_grad(), adapter.row_control(*moe_control(torch.zeros(3))):
        w0 = model(ids).logits
    assert torch.equal(w0, deployed)

    with adapter.row_control(*moe_control(torch.ones(3))):
        loss_fn(model(ids).logits).backward()
    g = grads(adapter)
    assert total_sq(g["dep"]) == 0.0 and total_sq(g["quar"]) > 0


def test_at_init_gradients_scale_linearly_in_w():
    """Quarantine output is 0 at init, so the forward is w-independent and gradients are (1-w)x and wx."""
    model, _, adapter = make()
    ids = batch()

    def run(w: float):
        zero_grads(adapter)
        with adapter.row_control(*moe_control(torch.full((3,), w, dtype=torch.float64))):
            loss_fn(model(ids).logits).backward()
        return grads(adapter)

    g0, g1 = run(0.0), run(1.0)
    assert total_sq(g0["dep"]) > 0 and total_sq(g1["quar"]) > 0
    for w in (0.25, 0.7):
        gw = run(w)
        for key in gw["dep"]:
            torch.testing.assert_close(gw["dep"][key], (1 - w) * g0["dep"][key], rtol=1e-10, atol=1e-14)
            torch.testing.assert_close(gw["quar"][key], w * g1["quar"][key], rtol=1e-10, atol=1e-14)


def test_hard_detach_above_threshold():
    w = torch.tensor([0.2, 0.6, 0.9])
    q, g = moe_control(w, hard_detach_threshold=0.5)
    assert torch.equal(q, w)
    torch.testing.assert_close(g, torch.tensor([0.8, 0.0, 0.0]))
    q, g = moe_control(w)
    torch.testing.assert_close(g, 1 - w)


def test_router_gets_exactly_zero_task_gradient_at_init():
    model, _, adapter = make()
    w = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    perturb(adapter, "deployed")  # deployed block moved; quarantine still at init
    with adapter.row_control(*moe_control(w)):
        loss_fn(model(batch()).logits).backward()
    assert torch.equal(w.grad, torch.zeros(3, dtype=torch.float64))
    assert total_sq(grads(adapter)["dep"]) > 0


# -- an independent reference: a fresh base model plus forward hooks written from scratch --------


def reference_grads(base, adapter, ids, mask, q_vals, g_vals, loss_seed=0):
    """Gradients of the same loss computed without any adapter code.

    Each target Linear of an unwrapped copy gets a forward hook that adds, row by row with explicit
    matmuls, scaling * (dep + q_b * quar); the deployed gradient scale is a tensor hook on dep.
    Returns (grads in the layout of grads(), dL/dq).
    """
    base = copy.deepcopy(base)
    r, scaling = adapter.rank, adapter.config.scaling
    leaves, handles = {}, []
    q = q_vals.clone().requires_grad_(True)
    for name, m in adapter.modules.items():
        A = m.A.detach().clone().requires_grad_(True)
        B = m.B.detach().clone().requires_grad_(True)
        A0, B0 = m.A0.clone(), m.B0.clone()
        leaves[name] = (A, B)

        def hook(module, inputs, output, A=A, B=B, A0=A0, B0=B0):
            x = inputs[0]
            deps, quars = [], []
            for b in range(x.shape[0]):
                xb = x[b]  # [T, d_in]
                deps.append(xb @ A[:r].T @ B[:, :r].T - xb @ A0[:r].T @ B0[:, :r].T)
                quars.append(xb @ A[r:].T @ B[:, r:].T - xb @ A0[r:].T @ B0[:, r:].T)
            dep, quar = torch.stack(deps), torch.stack(quars)
            dep.register_hook(lambda grad: grad * g_vals.view(-1, 1, 1))
            return output + scaling * (dep + q.view(-1, 1, 1) * quar)

        handles.append(base.get_submodule(name).register_forward_hook(hook))
    loss_fn(base(ids, attention_mask=mask).logits, loss_seed).backward()
    for h in handles:
        h.remove()
    out = {"dep": {}, "quar": {}}
    for name, (A, B) in leaves.items():
        out["dep"][name + ".A"], out["quar"][name + ".A"] = A.grad[:r], A.grad[r:]
        out["dep"][name + ".B"], out["quar"][name + ".B"] = B.grad[:, :r], B.grad[:, r:]
    return out, q.grad


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_gradients_match_independent_reference_after_perturbation(arch):
    model, base, adapter = make(arch)
    perturb(adapter, "both", seed=3)
    ids = batch(4)
    mask = torch.ones_like(ids)
    mask[1, -4:] = 0
    w = torch.tensor([0.0, 0.3, 0.8, 1.0], dtype=torch.float64, requires_grad=True)
    q, g = moe_control(w, hard_detach_threshold=0.75)  # rows: soft, soft, hard-detached, w=1
    with adapter.row_control(q, g):
        loss_fn(model(ids, attention_mask=mask).logits).backward()
    want, want_dq = reference_grads(base, adapter, ids, mask, w.detach(), g)
    assert_grads_close(grads(adapter), want)
    assert w.grad.abs().sum() > 0  # the router does get task gradient once the quarantine moved
    torch.testing.assert_close(w.grad, want_dq, rtol=1e-9, atol=1e-12)


def test_mixed_batch_equals_rows_one_at_a_time():
    """Different controls per row and right-padded rows: batched gradients == sum of single-row runs."""
    model, _, adapter = make("qwen3")
    perturb(adapter, "both", seed=7)
    lengths = [9, 6, 4, 7]
    ids = batch(4, 9, seed=2)
    mask = torch.zeros_like(ids)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    # per-row controls: keep, route, absorb, soft w (router w carries autograd)
    w_soft = torch.tensor(0.35, dtype=torch.float64, requires_grad=True)
    q = torch.stack([torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
                     torch.tensor(1.0, dtype=torch.float64), w_soft])
    g = torch.tensor([1.0, 0.0, 1.0, 0.65], dtype=torch.float64)
    readout = torch.randn(4, 9, VOCAB, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def row_loss(logits, rows, n_tokens):
        # only real tokens count: padded positions must not leak into anything
        return sum((logits[i, :n_tokens[i]] * readout[b, :n_tokens[i]]).sum() for i, b in enumerate(rows))

    with adapter.row_control(q, g):
        row_loss(model(ids, attention_mask=mask).logits, range(4), lengths).backward()
    batched, batched_dw = grads(adapter), w_soft.grad.clone()

    zero_grads(adapter)
    w_soft.grad = None
    for b, n in enumerate(lengths):
        with adapter.row_control(q[b:b + 1], g[b:b + 1]):
            row_loss(model(ids[b:b + 1, :n]).logits, [b], [n]).backward()
    one_by_one = grads(adapter)
    assert_grads_close(batched, one_by_one, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(batched_dw, w_soft.grad, rtol=1e-9, atol=1e-12)
    assert batched_dw != 0


def test_row_control_checks_shapes_and_does_not_nest():
    model, _, adapter = make()
    with pytest.raises(RuntimeError, match="rows"), adapter.row_control(*vgrout_control(["keep"] * 2)):
        model(batch(3))
    with pytest.raises(RuntimeError, match="do not nest"):
        with adapter.quarantine_scale(0.0), adapter.row_control(*vgrout_control(["keep"])):
            pass
    with pytest.raises(ValueError, match="unknown vGROUT labels"):
        vgrout_control(["keep", "rout"])
    # the control is cleared after an exception, so later forwards are plain again
    with adapter.row_control(*vgrout_control(["keep"] * 3)):
        pass
    assert adapter._control.mode == "plain"


# -----------------------------------------------------------------------------
# ablation, generation scale, folding


def test_ablation_noop_at_init_removes_planted_quarantine_and_restores():
    model, _, adapter = make()
    ids = batch()
    with torch.no_grad():
        at_init = model(ids).logits
        with adapter.ablate_quarantine():
            assert torch.equal(model(ids).logits, at_init)

    perturb(adapter, "deployed", seed=1)
    with torch.no_grad():
        deployed_only = model(ids).logits
    perturb(adapter, "quarantine", seed=2)
    trained = {k: v.clone() for k, v in adapter.state_dict().items()}
    with torch.no_grad():
        with_quar = model(ids).logits
        assert not torch.allclose(with_quar, deployed_only)
        with adapter.ablate_quarantine():
            # the quarantine output is bitwise zero after ablation: exactly the deployed-only output
            assert torch.equal(model(ids).logits, deployed_only)
        assert torch.equal(model(ids).logits, with_quar)
    after = adapter.state_dict()
    assert all(torch.equal(after[k], trained[k]) for k in trained)

    with pytest.raises(ZeroDivisionError):
        with adapter.ablate_quarantine():
            _ = 1 / 0
    after = adapter.state_dict()
    assert all(torch.equal(after[k], trained[k]) for k in trained)

    deployed_state = adapter.deployed_state()
    m = adapter.modules[next(iter(adapter.modules))]
    name = next(iter(adapter.modules))
    assert torch.equal(deployed_state[name + ".A"][R:], m.A0[R:]) and torch.equal(deployed_state[name + ".A"][:R], m.A[:R])


def test_quarantine_at_init_sees_any_change_to_the_quarantine_block_only():
    """The check that lets the final eval reuse ON for OFF: true only while deletion changes no weight."""
    _, _, adapter = make()
    assert adapter.quarantine_at_init()
    perturb(adapter, "deployed", seed=1)
    assert adapter.quarantine_at_init()  # the deployed block is kept at deployment: not its business
    with adapter.ablate_quarantine():
        assert adapter.quarantine_at_init()
    name, m = next(iter(adapter.modules.items()))
    for tensor, index in ((m.A, (R, 0)), (m.B, (0, R))):  # one element of one module's quarantine A, then B
        with torch.no_grad():
            old = tensor[index].clone()
            tensor[index] += 1e-12
        assert not adapter.quarantine_at_init(), name
        with torch.no_grad():
            tensor[index] = old
        assert adapter.quarantine_at_init()


def test_disabled_is_exactly_the_base_model():
    model, base, adapter = make()
    perturb(adapter, "both")
    ids = batch()
    with torch.no_grad():
        want = base(ids).logits
        assert not torch.allclose(model(ids).logits, want)
        with adapter.disabled():
            assert torch.equal(model(ids).logits, want)
        assert not torch.allclose(model(ids).logits, want)  # back on after the block
    with pytest.raises(RuntimeError, match="do not nest"), adapter.disabled(), adapter.quarantine_scale(0.0):
        pass


def test_quarantine_scale_matches_ablation_and_folding_matches_forward():
    model, base, adapter = make("qwen3")
    perturb(adapter, "both", seed=5)
    ids = batch()
    with torch.no_grad():
        plain = model(ids).logits
        with adapter.ablate_quarantine():
            ablated = model(ids).logits
        for s, want in ((0.0, ablated), (1.0, plain)):
            with adapter.quarantine_scale(s):
                assert torch.equal(model(ids).logits, want)  # both make the quarantine output bitwise 0 / unchanged
        for s in (0.0, 0.5, 1.0):
            with adapter.quarantine_scale(s):
                want = model(ids).logits
            folded = copy.deepcopy(base)
            for name, delta in adapter.merged_delta(s).items():
                folded.get_submodule(name).weight += delta.to(torch.float64)
            torch.testing.assert_close(folded(ids).logits, want, rtol=1e-6, atol=1e-6)
    assert adapter.merged_delta(1.0)[next(iter(adapter.modules))].dtype == torch.float32


# -----------------------------------------------------------------------------
# capture of routing features


def test_capture_pooled_is_the_masked_mean_of_the_deployed_bottleneck():
    model, _, adapter = make()
    perturb(adapter, "both")
    ids = batch(3, 8)
    completion = torch.zeros_like(ids)
    completion[0, 3:] = 1
    completion[1, 5:7] = 1  # row 2 has no completion tokens: pools to zero
    inputs = {}
    hooks = [m.base.register_forward_hook(lambda mod, inp, out, n=n: inputs.__setitem__(n, inp[0].detach()))
             for n, m in adapter.modules.items()]
    with torch.no_grad(), adapter.capture_pooled(completion) as feats:
        model(ids)
    for h in hooks:
        h.remove()
    pooled = feats.pooled()
    assert pooled.shape == (3, adapter.feature_dim) and pooled.dtype == torch.float32
    assert not pooled.requires_grad
    for i, (name, m) in enumerate(adapter.modules.items()):
        act = inputs[name] @ m.A[:R].detach().T  # [B, T, r]
        for b in range(3):
            sel = completion[b].bool()
            want = act[b, sel].mean(0) if sel.any() else torch.zeros(R, dtype=act.dtype)
            torch.testing.assert_close(pooled[b, i * R:(i + 1) * R], want.float(), rtol=1e-5, atol=1e-6)


def test_capture_pooled_errors_are_loud():
    model, _, adapter = make()
    ids = batch(3, 8)
    with pytest.raises(ValueError, match="mask"), adapter.capture_pooled(torch.ones(3, 5)):
        model(ids)
    with pytest.raises(RuntimeError, match="second forward"), adapter.capture_pooled(torch.ones(3, 8)):
        model(ids)
        model(ids)
    with adapter.capture_pooled(torch.ones(3, 8)) as feats:
        pass
    with pytest.raises(RuntimeError, match="no forward"):
        feats.pooled()
    assert adapter._control.capture is None


# -----------------------------------------------------------------------------
# diagnostics and save/load


def test_block_delta_sq_norms():
    _, _, adapter = make()
    assert adapter.block_delta_sq_norms() == (0.0, 0.0)
    perturb(adapter, "quarantine")
    dep, quar = adapter.block_delta_sq_norms()
    assert dep == 0.0 and quar > 0


def test_save_load_round_trip(tmp_path):
    model, _, adapter = make("qwen3", torch.float32)
    perturb(adapter, "both", seed=9)
    ids = batch()
    with torch.no_grad():
        want = model(ids).logits
    path = tmp_path / "ckpt" / "adapter.safetensors"
    adapter.save(path, extra_config={"arm": "moe", "step": 3})
    config, extra, names, has_router = read_lora2r_metadata(path)
    assert config == adapter.config and extra == {"arm": "moe", "step": 3}
    assert names == list(adapter.modules) and has_router is False

    fresh_model = tiny_model("qwen3")
    fresh = attach_lora2r(fresh_model, config)
    with torch.no_grad():
        assert not torch.allclose(fresh_model(ids).logits, want)
    assert fresh.load(path) == {"arm": "moe", "step": 3}
    with torch.no_grad():
        assert torch.equal(fresh_model(ids).logits, want)

    other = attach_lora2r(tiny_model("qwen3"), Lora2rConfig(rank=R + 1, seed=1))
    with pytest.raises(UserError, match="differs"):
        other.load(path)
    with pytest.raises(UserError, match="not found"):
        fresh.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("layout", ["solo", "tokens-only", "stacked runs", "per-row factors"])
def test_gated_two_block_delta_matches_gating_the_output_gradient(layout):
    """two_block_delta under a gradient gate (the per-row g of the routed update, taken on the
    rank-sized bottleneck) against the plain formula with the deployed block's [..., d_out] output
    gradient scaled by g: same value, same gradients for A, B and the router's q, in float64, for a
    solo adapter, 2-D input, several runs' stacked factors and a factor per row (the general sum)."""
    r, d_in, d_out, scaling = 3, 5, 7, 1.7
    gen = torch.Generator().manual_seed(11)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    x_shape, lead, rows = {
        "solo": ((4, 6, d_in), (), (4, 1, 1)),
        "tokens-only": ((4, d_in), (), (4, 1)),
        "stacked runs": ((3, 2, 6, d_in), (3, 1), (3, 2, 1, 1)),
        "per-row factors": ((3, 2, 6, d_in), (3, 2), (3, 2, 1, 1)),
    }[layout]
    x = rand(*x_shape)
    A0, B0 = rand(*lead, 2 * r, d_in), rand(*lead, d_out, 2 * r)
    g = torch.rand(*rows, generator=gen, dtype=torch.float64)
    readout = rand(*x_shape[:-1], d_out)

    def run(gated: bool):
        A = (A0 + 0.3 * rand(*A0.shape)).requires_grad_()
        B = (B0 + 0.3 * rand(*B0.shape)).requires_grad_()
        q = torch.rand(*rows, generator=gen, dtype=torch.float64).requires_grad_()
        if gated:
            y = two_block_delta(x, A, A0, B, B0, r, scaling, quar_weight=q, dep_grad=g)
        else:
            block = lambda s: (x @ A[..., s, :].mT) @ B[..., s].mT - (x @ A0[..., s, :].mT) @ B0[..., s].mT  # noqa: E731
            dep = scaling * block(slice(0, r))
            dep = dep.detach() + (dep - dep.detach()) * g  # value dep; gradient g * upstream
            y = dep + q * scaling * block(slice(r, 2 * r))
        (y * readout).sum().backward()
        return y.detach(), A.grad, B.grad, q.grad

    gen_state = gen.get_state()
    got = run(gated=True)
    gen.set_state(gen_state)  # the same A, B and q for the reference
    want = run(gated=False)
    for name, a, b in zip(("value", "A", "B", "q"), got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
