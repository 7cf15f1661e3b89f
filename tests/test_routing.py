"""Each routing arm on its own: the registry, what every arm decides, and what each placebo or
ablation arm changes relative to its parent arm (and that nothing else changes).

The arms are built on the pairs of a tiny random model (one Trainer's PairProbe, shared by the
module); each test builds fresh arms on it, so no arm sees another's state.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from evilmoe import arms
from evilmoe.config import ARMS, make_config
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.router import haar_direction, pin_loss, routeA_scores
from evilmoe.routing import PLACEBO_DIRECTION_PURPOSE, FixedArm, RouterArm, ScoreGateArm, make_arm
from evilmoe.seeding import derive_seed

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[1] / "src" / "evilmoe"
# the fields that make an arm what it is (name and doc only describe it)
BEHAVIOUR_FIELDS = {f.name for f in dataclasses.fields(arms.ArmSpec)} - {"name", "doc"}


def _config(arm: str, **overrides):
    # one pair per mode: every arm's direction is a forward over the pairs, and 6 carry every mode
    return make_config("tiny", dict(arm=arm, pairs_per_mode=1, **overrides))


@pytest.fixture(scope="module")
def trainer():
    from evilmoe.train import Trainer

    trainer = Trainer(_config("none"), None, problems=load_problem_set("bundled"))
    try:
        yield trainer
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def probe(trainer):
    return trainer.probe


@pytest.fixture
def features(probe):
    """Pooled features of 12 rollouts: the hack and clean sides of the 6 pairs (one per mode)."""
    hack, clean = probe.features()
    assert len(hack) == len(clean) == 6
    return torch.cat([hack, clean])


def _perturb_deployed(probe, seed: int = 0) -> dict:
    """Move the deployed block (as training does) and return the adapter state to restore."""
    saved = {k: v.clone() for k, v in probe.adapter.state_dict().items()}
    r, g = probe.rank, torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in probe.adapter.modules.values():
            m.A[:r] += 0.5 * torch.randn(m.A[:r].shape, generator=g, dtype=m.A.dtype)
    return saved


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
def test_the_registry_is_the_one_arm_list():
    assert ARMS == tuple(arms.ARM_REGISTRY) == ("none", "absorb", "routeA", "routeA-placebo", "moe", "moe-placebo", "moe-nopin")
    with pytest.raises(ValueError, match="already registered"):
        arms.register_arm("moe", arms.ROUTER, "again")
    with pytest.raises(ValueError, match="direction"):
        arms.ArmSpec("x", arms.ROUTER, "bad direction", direction="up")


def test_every_arm_builds_its_registered_class(probe):
    kinds = {arms.FIXED: FixedArm, arms.GATE: ScoreGateArm, arms.ROUTER: RouterArm}
    for name in ARMS:
        arm = make_arm(_config(name), probe)
        assert type(arm) is kinds[arms.ARM_REGISTRY[name].kind] and arm.name == name
    with pytest.raises(UserError, match="unknown arm 'bogus'"):
        make_arm(dataclasses.replace(_config("moe"), arm="bogus"), probe)


@pytest.mark.parametrize(
    "child, parent, differs",
    [
        ("absorb", "none", {"label"}),
        ("routeA-placebo", "routeA", {"direction", "refresh_v_act"}),  # a random direction is never re-extracted
        ("moe-placebo", "moe", {"direction"}),  # the pin stays on
        ("moe-nopin", "moe", {"pin"}),
    ],
)
def test_a_derived_arm_differs_from_its_parent_in_its_options_only(child, parent, differs):
    a, b = arms.ARM_REGISTRY[child], arms.ARM_REGISTRY[parent]
    assert a.kind == b.kind
    assert {f for f in BEHAVIOUR_FIELDS if getattr(a, f) != getattr(b, f)} == differs


def test_the_training_loop_names_no_arm():
    """Arm behaviour lives in the arms: the loop and the update never branch on an arm's name."""
    names = "|".join(re.escape(n) for n in ARMS + ("placebo", "nopin"))
    quoted = re.compile(rf"""["']({names})["']""")
    for module in ("train.py", "trainer.py", "update.py", "policy.py", "records.py"):
        path = SRC / module
        if path.exists():
            assert not quoted.findall(path.read_text()), f"{module} names an arm: {quoted.findall(path.read_text())}"


# --------------------------------------------------------------------------------------------
# the fixed masks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, label, q", [("none", "keep", 0.0), ("absorb", "absorb", 1.0)])
def test_fixed_arms_give_every_rollout_one_label(name, label, q, probe, features):
    arm = make_arm(_config(name), probe)
    routing = arm.decide(features, step=0)
    assert routing.labels == [label] * len(features) and routing.scores is None
    rows = torch.tensor([1, 4, 7])
    qs, gs = arm.control(routing, features[rows], rows)
    assert torch.equal(qs, torch.full((3,), q)) and torch.equal(gs, torch.ones(3))
    # they train the forward they sampled with: no importance weight, no parameters, no router loss
    assert arm.trains_sampling_forward
    assert arm.param_groups() == [] and list(arm.named_parameters()) == []
    assert arm.router_loss(0, features, torch.ones(len(features), dtype=torch.bool)).loss is None
    assert torch.isnan(arm.rollout_weights(features)).all()
    assert arm.step_metrics(routing, [float("nan")] * len(features), [False] * len(features), [], {}) == {}
    v_pairs, _, _ = probe.direction()
    assert torch.equal(arm.v_act, v_pairs)
    state = arm.state_dict()
    assert state["router"] is None and state["route_buffer"] is None and torch.equal(state["v_act"], v_pairs)


# --------------------------------------------------------------------------------------------
# the vGROUT score gate
# --------------------------------------------------------------------------------------------
def test_routeA_labels_by_the_buffer_quantiles_of_its_direction(probe, features):
    arm = make_arm(_config("routeA", route_warmup=4, route_tail_q=0.25), probe)
    assert not arm.trains_sampling_forward and arm.param_groups() == []
    routing = arm.decide(features, step=0)
    scores = routeA_scores(features, arm.v_act)
    assert torch.equal(routing.scores, scores)
    low, high = arm.buffer.thresholds(arm.v_act, 0)  # the step's rows joined the buffer first
    expect = ["keep" if s <= low else "route" if s > high else "absorb" for s in scores.tolist()]
    assert routing.labels == expect and {"keep", "route"} <= set(expect)
    table = {"keep": (0.0, 1.0), "absorb": (1.0, 1.0), "route": (1.0, 0.0)}
    assert routing.quarantine_weight.tolist() == [table[x][0] for x in expect]
    assert routing.deployed_grad_scale.tolist() == [table[x][1] for x in expect]
    m = arm.step_metrics(routing, [float("nan")] * 12, [i < 6 for i in range(12)], [], {})
    assert m["zone_keep"] + m["zone_absorb"] + m["zone_route"] == pytest.approx(1.0)
    assert 0.0 <= m["score_auroc"] <= 1.0


def test_routeA_absorbs_everything_until_the_buffer_is_warm(probe, features):
    arm = make_arm(_config("routeA", route_warmup=20), probe)
    assert arm.decide(features, step=0).labels == ["absorb"] * 12  # 12 rows < 20
    assert "keep" in arm.decide(features, step=1).labels  # 24 rows


def test_routeA_placebo_is_routeA_on_a_fixed_random_direction(probe, features):
    real = make_arm(_config("routeA"), probe)
    placebo = make_arm(_config("routeA-placebo"), probe)
    v_pairs, _, _ = probe.direction()
    haar = haar_direction(probe.n_modules, probe.rank, seed=derive_seed(0, 0, PLACEBO_DIRECTION_PURPOSE))
    assert torch.equal(real.v_act, v_pairs)
    assert torch.equal(placebo.v_act, haar) and not torch.allclose(placebo.v_act, v_pairs)
    # the same gate: with the real direction swapped in, the placebo decides exactly as routeA does
    placebo.v_act = real.v_act.clone()
    a, b = real.decide(features, 0), placebo.decide(features, 0)
    assert a.labels == b.labels and torch.equal(a.scores, b.scores)
    assert vars(real.buffer).keys() == vars(placebo.buffer).keys()
    assert all(torch.equal(x, y) if torch.is_tensor(x) else x == y for x, y in zip(vars(real.buffer).values(), vars(placebo.buffer).values()))


def test_only_routeA_re_extracts_its_direction(probe):
    every = 2
    built = {name: make_arm(_config(name, vact_refresh_every=every), probe) for name in ARMS}
    start = {name: arm.v_act.clone() for name, arm in built.items()}
    saved = _perturb_deployed(probe)
    try:
        moved, _, _ = probe.direction()
        for name, arm in built.items():
            arm.begin_step(every - 1)  # not a refresh step
            assert torch.equal(arm.v_act, start[name]), name
            arm.begin_step(every)
        for name, arm in built.items():
            if name == "routeA":
                assert torch.equal(arm.v_act, moved) and not torch.allclose(arm.v_act, start[name])
            else:
                assert torch.equal(arm.v_act, start[name]), name
        # vact_refresh_every = 0 turns the refresh off for routeA too
        off = make_arm(_config("routeA", vact_refresh_every=0), probe)
        before = off.v_act.clone()
        off.begin_step(10)
        assert torch.equal(off.v_act, before)
    finally:
        probe.adapter.load_state_dict(saved)


# --------------------------------------------------------------------------------------------
# the learned router
# --------------------------------------------------------------------------------------------
def test_moe_control_is_the_router_weight_with_its_gradient(probe, features):
    arm = make_arm(_config("moe", hard_detach_threshold=0.6), probe)
    assert not arm.trains_sampling_forward
    routing = arm.decide(features, 0)
    assert routing.labels is None and routing.quarantine_weight is None
    rows = torch.arange(12)
    q, g = arm.control(routing, features, rows)
    w = arm.router(features)
    assert torch.allclose(q, w) and q.requires_grad and not g.requires_grad
    assert torch.allclose(g, torch.where(w > 0.6, torch.zeros_like(w), 1 - w).detach())
    q.sum().backward()
    assert arm.router.u.grad is not None and arm.router.u.grad.abs().sum() > 0
    assert torch.allclose(arm.rollout_weights(features), w.detach())
    [group] = arm.param_groups()
    assert group["name"] == "router" and group["lr"] == arm.config.router_lr
    assert [id(p) for p in group["params"]] == [id(p) for p in arm.router.parameters()]


def _router_loss(name: str, probe, features, **overrides):
    arm = make_arm(_config(name, **overrides), probe)
    live = torch.tensor([True] * 6 + [False] * 6)
    out = arm.router_loss(1, features, live)
    out.loss.backward()
    return arm, out


def test_moe_router_loss_is_the_pin_on_sampled_pairs(probe, features):
    arm, out = _router_loss("moe", probe, features, pin_batch=4, pin_coef=0.5)
    rows = arm.pin_rows(1)
    assert rows is not None and len(rows) == 4 and torch.equal(rows, arm.pin_rows(1))  # seeded per step
    fresh = make_arm(_config("moe", pin_batch=4, pin_coef=0.5), probe)
    hack, clean = probe.features(rows)
    m = fresh.config.center_momentum
    fresh.router.set_center(m * fresh.router.center + (1 - m) * torch.cat([hack, clean]).mean(0))
    pin, acc = pin_loss(fresh.router, hack, clean)
    assert out.loss.item() == pytest.approx(0.5 * pin.item(), rel=1e-6)
    assert out.stats == {"pin_loss": pytest.approx(pin.item(), rel=1e-6), "pin_acc": acc}
    assert torch.equal(arm.router.center, fresh.router.center)  # the center tracked the pairs' mean


def _each_side_alone(probe, rows=None):
    """The pairs' features from one pass over each side: what the pin loss read before both sides
    shared one pass."""
    hack, clean = probe.hack, probe.clean
    if rows is not None:
        hack, clean = hack.rows(rows).trimmed(), clean.rows(rows).trimmed()
    return probe.pooled(hack), probe.pooled(clean)


@pytest.mark.parametrize("rows", [None, [0, 2, 3, 5]], ids=["all-pairs", "pin-sample"])
def test_both_sides_in_one_sorted_pass_give_each_pairs_own_features(probe, rows):
    """features() forwards hack and clean rows together, sorted by length: in float64 each row's
    feature is the one a pass over its own side gives, to rounding; in float32 too, to its rounding."""
    rows = None if rows is None else torch.tensor(rows)
    n = len(probe) if rows is None else len(rows)
    assert len(probe.both) == 2 * len(probe) and probe.both.prompt_width == probe.hack.prompt_width
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        probe.model.to(dtype)  # float32 <-> float64 round trips exactly: the shared fixture is unchanged
        try:
            one = probe.features(rows)
            alone = _each_side_alone(probe, rows)
        finally:
            probe.model.float()
        for got, want in zip(one, alone):
            assert got.shape == (n, probe.n_modules * probe.rank)
            assert float((got - want).abs().max()) <= tol * float(want.abs().max()), dtype
        assert not torch.allclose(one[0], one[1])  # the two sides are not swapped or merged


def test_the_sorted_pass_runs_fewer_padded_tokens_in_fewer_forwards(probe, monkeypatch):
    import evilmoe.router as router

    seen = []
    original = router.right_aligned

    def spy(ids, mask, *rest):
        out = original(ids, mask, *rest)
        seen.append(out[0].shape)
        return out

    monkeypatch.setattr(router, "right_aligned", spy)
    probe.features()
    together, seen[:] = list(seen), []
    _each_side_alone(probe)
    apart = list(seen)
    tokens = lambda shapes: sum(b * t for b, t in shapes)  # noqa: E731
    assert sum(b for b, _ in together) == sum(b for b, _ in apart) == 2 * len(probe)
    assert len(together) <= len(apart) and tokens(together) < tokens(apart)


def test_moe_prepare_does_the_pin_forwards_router_loss_would_do(probe, features, monkeypatch):
    """prepare(step) runs the pin pairs' forwards before the grades; router_loss then uses them, and
    gives exactly what it gives computing them itself. A prepare of another step is never used."""
    live = torch.tensor([True] * 6 + [False] * 6)
    calls = []
    original = type(probe).features
    monkeypatch.setattr(type(probe), "features", lambda self, rows=None: calls.append(rows) or original(self, rows))
    results = []
    for prepared in (None, 1, 0):
        arm = make_arm(_config("moe", pin_batch=4, load_balance_coef=0.5), probe)
        calls.clear()
        if prepared is not None:
            arm.prepare(prepared)
            assert len(calls) == 1
        out = arm.router_loss(1, features, live)
        out.loss.backward()
        # one pair pass for the step: prepare's, or router_loss's own when prepare was for another step
        assert len(calls) == (1 if prepared in (None, 1) else 2)
        assert torch.equal(calls[-1], arm.pin_rows(1))
        results.append((out, arm))
        assert arm.pair_features(1) is not None and len(calls) == (2 if prepared in (None, 1) else 3)  # used once
    (ref, ref_arm), *others = results
    for out, arm in others:
        assert out.loss.item() == ref.loss.item() and out.stats == ref.stats
        assert torch.equal(arm.router.center, ref_arm.router.center)
        for p, q in zip(arm.router.parameters(), ref_arm.router.parameters()):
            assert torch.equal(p.grad, q.grad)


def test_moe_placebo_is_moe_started_on_a_random_direction(probe, features):
    real, real_out = _router_loss("moe", probe, features)
    placebo, placebo_out = _router_loss("moe-placebo", probe, features)
    v_pairs, _, pair_mean = probe.direction()
    haar = haar_direction(probe.n_modules, probe.rank, seed=derive_seed(0, 0, PLACEBO_DIRECTION_PURPOSE))
    assert torch.equal(real.v_act, v_pairs) and torch.equal(placebo.v_act, haar)
    # u starts from the respective directions (the pin moved neither: no optimizer step was taken)
    assert torch.allclose(placebo.router.u, haar) and not torch.allclose(placebo.router.u, v_pairs)
    # everything else is the same: center, scale, bias, pin weight, learning rate
    assert torch.equal(placebo.router.center, real.router.center)
    assert placebo.router.log_scale.item() == real.router.log_scale.item() and placebo.router.bias.item() == real.router.bias.item()
    assert placebo.pin_coef == real.pin_coef == real.config.pin_coef
    assert placebo.param_groups()[0]["lr"] == real.param_groups()[0]["lr"]
    assert placebo_out.loss.item() == pytest.approx(real.config.pin_coef * placebo_out.stats["pin_loss"])
    assert placebo.router.u.grad.abs().sum() > 0  # the pin trains the placebo router too


def test_moe_nopin_is_moe_with_the_pin_weighted_zero(probe, features):
    real, real_out = _router_loss("moe", probe, features)
    nopin, nopin_out = _router_loss("moe-nopin", probe, features)
    assert nopin.pin_coef == 0.0 and real.pin_coef == real.config.pin_coef > 0
    # the same router, center and direction; the pin is computed and logged alike, but not trained on
    assert torch.equal(nopin.v_act, real.v_act) and torch.equal(nopin.router.u, real.router.u)
    assert torch.equal(nopin.router.center, real.router.center)
    assert nopin_out.stats == real_out.stats
    assert nopin_out.loss.item() == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in nopin.router.parameters())
    assert any(p.grad.any() for p in real.router.parameters())
    # with load balancing on, nopin keeps exactly that term
    real, real_out = _router_loss("moe", probe, features, load_balance_coef=0.5)
    nopin, nopin_out = _router_loss("moe-nopin", probe, features, load_balance_coef=0.5)
    assert nopin_out.loss.item() == pytest.approx(real_out.loss.item() - real.config.pin_coef * real_out.stats["pin_loss"], abs=1e-6)
    assert any(p.grad.any() for p in nopin.router.parameters())


def test_moe_diagnostics_read_the_grader_flags_only_there(probe, features):
    arm = make_arm(_config("moe"), probe)
    w = arm.rollout_weights(features).tolist()
    hacked = [i % 3 == 0 for i in range(12)]
    policy = [0, 1, 2, 3]
    m = arm.step_metrics(arm.decide(features, 0), w, hacked, policy, {"pin_loss": 0.7, "pin_acc": 0.5})
    assert m["w_hacked"] == pytest.approx(sum(w[i] for i in range(12) if hacked[i]) / 4)
    assert m["w_live_hacked"] == pytest.approx((w[0] + w[3]) / 2) and m["w_live_clean"] == pytest.approx((w[1] + w[2]) / 2)
    assert (m["pin_loss"], m["pin_acc"]) == (0.7, 0.5)
    assert m["router_scale"] == pytest.approx(8.0) and m["router_bias"] == 0.0


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ARMS)
def test_arm_state_round_trips_with_one_key_layout(name, probe, features):
    arm = make_arm(_config(name), probe)
    arm.decide(features, step=0)
    if isinstance(arm, RouterArm):
        with torch.no_grad():
            arm.router.bias += 0.25
    arm.v_act = arm.v_act.flip(0)
    state = arm.state_dict()
    assert set(state) == {"v_act", "router", "route_buffer"}
    fresh = make_arm(_config(name), probe)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.v_act, arm.v_act)
    again = fresh.state_dict()
    for key in ("router", "route_buffer"):
        assert (state[key] is None) == (again[key] is None)
        for k, v in (state[key] or {}).items():
            assert torch.equal(v, again[key][k]) if torch.is_tensor(v) else v == again[key][k], (key, k)


def test_the_checkpoint_layout_is_the_one_runs_were_written_with(trainer):
    """Resuming reads these keys; the arm's entries sit at the top level, None where it has none."""
    state = trainer.state()
    assert set(state) == {"step", "adapter", "optimizer", "schedule", "warm_start", "v_act", "router", "route_buffer"}
    assert state["router"] is None and state["route_buffer"] is None
    assert [g["name"] for g in trainer.optimizer.param_groups] == ["adapter"]
