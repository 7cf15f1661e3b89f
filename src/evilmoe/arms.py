"""The arm registry: every routing arm's name, the class that implements it and its options.

An arm is registered once, here, with `register_arm`; everything else asks the registry: the config
validates `arm` against `ARMS`, the CLI lists them, and `routing.make_arm` builds the one a run
names. The class is named by its import path ("module:Class", as entry points are), so reading the
registry needs no torch: the CLI's help and the config stay light.

    none            every rollout keeps: the quarantine never trains (the capacity-matched control)
    absorb          every rollout trains both blocks
    routeA          vGROUT score gate on the pairs' v_act, re-extracted every vact_refresh_every steps
    routeA-placebo  the same gate on a seeded Haar-random direction, never re-extracted
    moe             Evil MoE: the learned router, started on the pairs' v_act and pinned to the pairs
    moe-placebo     the same router started on a seeded Haar-random direction (pin unchanged)
    moe-nopin       the same router with the pin loss weighted 0 (everything else unchanged)

docs/design.md describes the arms; src/evilmoe/routing.py implements the three kinds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArmSpec:
    """A registered arm: the class that implements it and the options that make it this arm."""

    name: str
    kind: str
    """The implementing class as "module:Class" (a subclass of evilmoe.routing.Arm)."""
    doc: str
    """One line: what the arm does."""
    direction: str = "pairs"
    """The hack direction it starts from: "pairs" (v_act of the pairs) or "haar" (seeded random)."""
    pin: bool = True
    """Learned router only: train the router with the pin loss (False: the loss is weighted 0)."""
    refresh_v_act: bool = False
    """Re-extract v_act from the pairs every vact_refresh_every steps."""
    label: str | None = None
    """Fixed-mask arms only: the one label every rollout gets (keep or absorb)."""

    def __post_init__(self) -> None:
        if self.direction not in ("pairs", "haar"):
            raise ValueError(f"arm {self.name}: direction must be 'pairs' or 'haar', got {self.direction!r}")
        if ":" not in self.kind:
            raise ValueError(f"arm {self.name}: kind must be 'module:Class', got {self.kind!r}")


ARM_REGISTRY: dict[str, ArmSpec] = {}


def register_arm(name: str, kind: str, doc: str, **options) -> ArmSpec:
    """Make `name` an arm implemented by `kind` ("module:Class") with `options` (ArmSpec fields)."""
    if name in ARM_REGISTRY:
        raise ValueError(f"arm {name!r} is already registered")
    spec = ARM_REGISTRY[name] = ArmSpec(name=name, kind=kind, doc=doc, **options)
    return spec


FIXED, GATE, ROUTER = "evilmoe.routing:FixedArm", "evilmoe.routing:ScoreGateArm", "evilmoe.routing:RouterArm"
register_arm("none", FIXED, "every rollout keeps: the quarantine never trains (capacity-matched control)", label="keep")
register_arm("absorb", FIXED, "every rollout trains both blocks", label="absorb")
register_arm("routeA", GATE, "vGROUT score gate on the pairs' v_act, re-extracted every vact_refresh_every steps", refresh_v_act=True)
register_arm("routeA-placebo", GATE, "the vGROUT gate on a Haar-random direction, never re-extracted", direction="haar")
register_arm("moe", ROUTER, "Evil MoE: the learned router from the pairs' v_act, pinned to the pairs")
register_arm("moe-placebo", ROUTER, "the Evil MoE router started on a Haar-random direction, pinned", direction="haar")
register_arm("moe-nopin", ROUTER, "the Evil MoE router from v_act with the pin loss weighted 0", pin=False)

ARMS: tuple[str, ...] = tuple(ARM_REGISTRY)
"""Every registered arm, in registration order (the order of tables and plots)."""
