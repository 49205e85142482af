"""What an attack is (``edge-guard attack``'s settings): AttackSettings, the detector geometry
its patches default to, and which settings a given attack does not read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

from edge_guard.errors import UserError

from .. import targets as target_maps
from . import ATTACKS, FIXED_BUDGET, PLAIN_ONLY
from .maskedce import DEFAULT_ITER as MASKEDCE_ITER, STEP_FRACTION as MASKEDCE_STEP
from .pgd import DEFAULT_LINF
from .segpgd import DEFAULT_ITER as SEGPGD_ITER, STEP_FRACTION as SEGPGD_STEP
from .views import ADAPTIVE, PAIR_ADAPTIVE, PATCH_ADAPTIVE

#: The paper's L2 bound (RMS on [0, 1] images) for adaptive DAG / Houdini attacks (§5.4).
ADAPTIVE_L2 = 0.06
#: adv_lib.dag's step is its gamma (as our DAG's); adv_lib.alma_prox has none (its lr is adv_lib's default).
DEFAULT_STEP = {"dag": 0.5 / 255, "houdini": 1.0 / 255, "adv_lib.dag": 0.5 / 255, "adv_lib.alma_prox": None}
#: Fixed-budget attacks: their step (SegPGD's alpha, masked-CE's first step) as a fraction of --linf.
STEP_FRACTION = {"segpgd": SEGPGD_STEP, "maskedce": MASKEDCE_STEP}
DEFAULT_MAX_ITER = {"dag": 200, "houdini": 200, "segpgd": SEGPGD_ITER, "maskedce": MASKEDCE_ITER,
                    "adv_lib.dag": 200, "adv_lib.alma_prox": 500}
#: Early stop at this fraction of pixels on target; None (fixed-budget attacks): every step runs.
DEFAULT_THRESHOLD = {"dag": 0.99, "houdini": 0.99, "segpgd": None, "maskedce": None,
                     "adv_lib.dag": 0.99, "adv_lib.alma_prox": 0.99}


@dataclass
class AttackSettings:
    """Everything that decides what the attack writes (``limit`` and device do not)."""

    method: str
    target: str
    adaptive: Optional[str] = None
    k_attack: int = 10
    # None: the paper's geometry (s=512, b in [32, 64) on 1024-high Cityscapes frames) scaled
    # to the attacked frames' height, which is what `edge-guard calibrate` uses by default.
    patch_size: Optional[int] = None
    b_low: Optional[int] = None
    b_high: Optional[int] = None
    blur_stds: tuple = (0.5, 3.0, 5.0)
    pair_weight: float = 1.0
    agree_weight: float = 1.0  # frame-agree: weight of the patches' agreement with the frame
    # None: ADAPTIVE_L2 for adaptive DAG / Houdini, else unbounded (fixed-budget attacks: --linf bounds)
    l2: Optional[float] = None
    linf: Optional[float] = None  # None: unbounded, or DEFAULT_LINF (8/255) for a fixed-budget attack
    max_iter: Optional[int] = None  # None: DEFAULT_MAX_ITER[method]
    # None: DEFAULT_STEP[method] (DAG's gamma, Houdini's Adam rate), or STEP_FRACTION[method] * linf
    step: Optional[float] = None
    threshold: Optional[float] = None  # None: DEFAULT_THRESHOLD[method] (None there: no early stop)
    seed: int = 0
    size: Optional[tuple] = None  # (H, W) frames are resized to before the attack
    text: str = "ECCV 2018"
    # Frames attacked together. Plain attacks give the same frames at any batch (each image
    # has its own step and stopping; up to the model's float rounding in another batch shape).
    # Adaptive ones now draw each image's views from its own seed too, but folders made before
    # that at a batch above 1 drew every image's views from the first frame's seed; keeping
    # the batch in their key keeps those frames apart.
    batch: int = 1

    def identity(self) -> dict:
        """The settings that decide the frames written (a resolved instance's). A plain attack
        writes the same frames at any batch, so its batch is left out: a folder begun one
        frame at a time on a CPU can be finished 50 at a time on a GPU, and the reverse."""
        fields = asdict(self)
        if self.adaptive is None:
            del fields["batch"]
        # Added with frame-agree: left out elsewhere, so every older folder keeps its key
        # (evaluate names its folders by a digest of these).
        if self.adaptive != "frame-agree":
            del fields["agree_weight"]
        return fields

    @property
    def draws_patches(self) -> bool:
        """Whether the attack crops detector patches (a spatial or frame attack with K_attack >
        0): only then do the patch size and the frame height matter."""
        return self.adaptive in PATCH_ADAPTIVE and self.k_attack > 0

    @property
    def draws_pairs(self) -> bool:
        """Whether it draws them with the pair sampler: only then do the displacements matter."""
        return self.adaptive in PAIR_ADAPTIVE and self.k_attack > 0

    def resolved(self) -> "AttackSettings":
        if self.method not in ATTACKS:
            raise UserError(f"unknown attack method {self.method!r}: choose one of {', '.join(ATTACKS)}")
        if self.target not in target_maps.TARGETS:
            raise UserError(f"unknown target {self.target!r}: choose one of {', '.join(target_maps.TARGETS)}")
        if self.adaptive not in (None, "none") + ADAPTIVE:
            raise UserError(f"unknown adaptive attack {self.adaptive!r}: choose one of {', '.join(ADAPTIVE)}")
        adaptive = None if self.adaptive in (None, "none") else self.adaptive
        if adaptive and self.method in PLAIN_ONLY:
            raise UserError(f"--adaptive {adaptive}: adv_lib's attacks attack the model only: no adaptive "
                            f"variant of {self.method} (run it plain)")
        if self.method == "adv_lib.alma_prox" and self.step is not None:
            raise UserError("--step: adv_lib.alma_prox has no step (its learning rate is adv_lib's default): "
                            "leave it out")
        if self.k_attack < 0:
            raise UserError(f"--k-attack must be >= 0, got {self.k_attack}")
        if self.batch < 1:
            raise UserError(f"--batch must be >= 1, got {self.batch}")
        if not (self.agree_weight >= 0 and math.isfinite(self.agree_weight)):
            raise UserError(f"--agree-weight must be a finite number >= 0, got {self.agree_weight}")
        for option, value in (("--l2", self.l2), ("--linf", self.linf)):
            if value is not None and not (0 < value <= 1):
                raise UserError(f"{option} {value} must be in (0, 1] on [0, 1] images (leave it out for no bound)")
        if self.linf is not None and self.linf * 255 < 1 - 1e-6:
            raise UserError(f"--linf {self.linf} is below one 8-bit level (give at least 1/255 = 0.00393): "
                            "the saved frames could not change at all")
        fixed = self.method in FIXED_BUDGET
        l2 = self.l2 if self.l2 is not None else (ADAPTIVE_L2 if adaptive and not fixed else None)
        linf = self.linf if self.linf is not None else (DEFAULT_LINF if fixed else None)
        if self.step is not None:
            step = self.step
        else:
            step = linf * STEP_FRACTION[self.method] if fixed else DEFAULT_STEP[self.method]
        max_iter = self.max_iter if self.max_iter is not None else DEFAULT_MAX_ITER[self.method]
        threshold = self.threshold if self.threshold is not None else DEFAULT_THRESHOLD[self.method]
        size = tuple(int(v) for v in self.size) if self.size else None
        return AttackSettings(**{**asdict(self), "adaptive": adaptive, "l2": l2, "linf": linf, "step": step,
                                 "max_iter": max_iter, "threshold": threshold, "size": size,
                                 "blur_stds": tuple(self.blur_stds)})


def detector_geometry(height: int, patch_size=None, b_low=None, b_high=None) -> tuple[int, int, int]:
    """(s, b_low, b_high): given values, else the paper's 512/32/64 per 1024 rows of frame."""
    s = patch_size or max(2, round(height / 2))
    lo = b_low if b_low is not None else max(1, round(height / 32))
    hi = b_high or max(lo + 1, round(height / 16))
    return s, lo, hi


def unused_settings(s: AttackSettings) -> set:
    """Settings the attack ``s`` does not read: they may differ when a folder resumes."""
    unused = set()
    if s.adaptive not in PATCH_ADAPTIVE:
        unused.add("k_attack")
    if not s.draws_patches:
        unused.add("patch_size")
    if not s.draws_pairs:
        unused |= {"b_low", "b_high"}
    if s.adaptive != "scale":
        unused.add("blur_stds")
    if not (s.draws_patches and s.adaptive == "spatial-pairs"):
        unused.add("pair_weight")
    if not (s.draws_patches and s.adaptive == "frame-agree"):
        unused.add("agree_weight")
    if s.target != "text":
        unused.add("text")
    return unused
