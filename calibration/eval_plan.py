"""What an evaluation runs: its settings, and the attack settings it plans from them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Optional

from edge_guard.errors import UserError
from edge_guard.patches import check_full_range

FORMAT = "edge-guard-evaluate"
VERSION = 1
FIGURES = ("fig3", "fig7", "fig8")
#: What --skip accepts: the figures, and the adaptive attacks (Table 1's plain rows only, no
#: Fig. 7): a first reading on a CPU, where an adaptive step costs 2.7-3.7x a plain one (K_attack=5).
SKIPPABLE = FIGURES + ("adaptive", "scale-adaptive")
#: Pixel success from which an attack counts as having reached its target (the paper's
#: adversarial examples do; a partial attack that the detector misses changed little).
REACHED = 0.9


@dataclass
class EvalSettings:
    """Everything that decides the numbers. Geometry defaults: the paper's s = 512, b in
    [32, 64) on 1024x2048 frames, halved for 512x1024 frames."""

    data: str
    out: str
    model: str
    arch: Optional[str] = None
    split: str = "val"
    benign: int = 100
    adversarial: int = 50
    methods: tuple = ("dag", "houdini")
    # The L-inf budgets of the fixed-budget methods (SegPGD, masked CE), on [0, 1] images: one
    # cell per budget, named e.g. segpgd4 / segpgd8 (method_labels).
    linf: tuple = (8 / 255,)
    targets: tuple = ("pure", "emblem")
    ks: tuple = (1, 5, 10, 50)
    stds: tuple = (0.5, 3.0, 5.0)
    k_attack: tuple = (0, 1, 5, 10, 50)
    # Our own adaptive adversary (spatial-pairs): K overlapping pairs per step, each patch
    # toward the target and the two consistent on their overlap. 0: not run.
    k_pairs: tuple = ()
    # The frame detector's statistic, and its adaptive attacks (0 or empty: not run): the
    # frame with K_attack random patches toward the target (frame), and the frame toward the
    # target with K_attack patches made to agree with its prediction (frame-agree).
    statistic: str = "miou-min"
    min_pixels: int | None = None  # miou-min's class size; None: 0.1% of the patch
    k_frame: tuple = (5,)
    k_agree: tuple = (5,)
    frame: tuple = (512, 1024)
    patch: int = 256
    b_low: int = 16
    b_high: int = 32
    max_iter: int = 200
    # Attacks stop once this fraction of a frame's valid pixels is on target. 0.99 leaves
    # ~1% stray pixels, which the scale detector's mIoU counts class by class: 1.0 is the
    # stronger adaptive attack on it (the original DAG runs until no pixel is left).
    attack_stop: float = 0.99
    batch: int = 1
    seed: int = 0
    entropy_patches: int = 50
    skip: tuple = ()
    transfer_models: tuple = ()
    transfer_steps: int = 2000
    transfer_split: str = "train"
    transfer_crop: int = 512
    quick: bool = False
    # The model is a user's ONNX graph (``model`` its path): its convention options as the
    # CLI gives them (None where not given; ``classes``: --classes FILE|N). None: a checkpoint.
    onnx: Optional[dict] = None

    def check(self) -> None:
        """UserError (one line) for settings that cannot work, before anything is computed."""
        from .attacks import ATTACKS
        from .targets import TARGETS

        h, w = (int(v) for v in self.frame)
        check_full_range(h, w, self.patch, self.b_low, self.b_high)
        for name, values, known in (("--methods", self.methods, ATTACKS), ("--targets", self.targets, TARGETS)):
            bad = [v for v in values if v not in known]
            if not values or bad:
                raise UserError(f"{name} {','.join(values) or '(empty)'}: choose from {', '.join(known)}")
        if not self.linf or not all(1 / 255 - 1e-6 <= v <= 1 for v in self.linf):
            raise UserError(f"--linf needs budgets between 1/255 and 1, got {list(self.linf)}")
        if not self.ks or min(self.ks) < 1:
            raise UserError(f"--ks needs positive pair counts, got {list(self.ks)}")
        if not self.stds or min(self.stds) <= 0:
            raise UserError(f"--stds needs positive blur stds, got {list(self.stds)}")
        if not self.k_attack or min(self.k_attack) < 0:
            raise UserError(f"--k-attack needs counts >= 0, got {list(self.k_attack)}")
        for name, values in (("--k-pairs", self.k_pairs), ("--k-frame", self.k_frame), ("--k-agree", self.k_agree)):
            if any(k < 0 for k in values):
                raise UserError(f"{name} needs counts >= 0, got {list(values)}")
        from edge_guard.consistency import check_statistic, resolve_min_pixels

        self.min_pixels = resolve_min_pixels(self.statistic, self.min_pixels, self.patch)
        check_statistic(self.statistic, self.min_pixels)
        if not 0 < self.attack_stop <= 1:
            raise UserError(f"--attack-stop {self.attack_stop} must be in (0, 1]: the fraction of pixels on target")
        if self.benign < 2 or self.adversarial < 1:
            raise UserError("evaluation needs at least 2 benign and 1 adversarial frame")
        bad = [s for s in self.skip if s not in SKIPPABLE]
        if bad:
            raise UserError(f"--skip {','.join(bad)}: choose from {', '.join(SKIPPABLE)}")
        if "fig8" not in self.skip and self.transfer_models:
            self._check_transfer_models()
        elif "fig8" not in self.skip and self.onnx is not None:
            raise UserError("Fig. 8 trains three models of the evaluated architecture, which an ONNX "
                            "graph does not name: pass --transfer-models CKPT,CKPT,CKPT or --skip fig8")

    def _check_transfer_models(self) -> None:
        # Now, not after the hours of attacks that come before Fig. 8.
        from .models.registry import list_models
        from .transfer import transfer_entry

        if len(self.transfer_models) < 2:
            raise UserError("--transfer-models needs at least 2 checkpoints (the paper uses 3)")
        for arch, path in (transfer_entry(e, self.arch) for e in self.transfer_models):
            if not path.is_file():
                raise UserError(f"--transfer-models: {path} does not exist")
            if arch is not None and arch not in list_models():
                raise UserError(f"--transfer-models: unknown architecture {arch!r} for {path}: "
                                f"choose one of {', '.join(list_models())}")

    def record(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @property
    def method_labels(self) -> list:
        """The grid's attack methods: --methods, a fixed-budget one once per --linf budget
        (segpgd4, segpgd8: the budget in 8-bit levels)."""
        from .attacks import FIXED_BUDGET

        return [f"{m}{round(v * 255)}" if m in FIXED_BUDGET else m
                for m in self.methods for v in (self.linf if m in FIXED_BUDGET else (None,))]

    @property
    def pair_counts(self) -> list:
        """The spatial-pairs adversary's K_pairs to run (none under --skip adaptive)."""
        return self._counts(self.k_pairs)

    def _counts(self, values) -> list:
        return [] if "adaptive" in self.skip else sorted({k for k in values if k > 0})


@dataclass(frozen=True)
class AttackSet:
    """One attack setting: ``kind`` is plain, scale (adaptive), spatial (adaptive, k_attack
    patches), spatial-pairs (our own adaptive adversary, k_attack overlapping pairs), frame
    or frame-agree (adaptive on the frame detector, k_attack patches)."""

    method: str
    target: str
    kind: str = "plain"
    k_attack: int = 0

    @property
    def name(self) -> str:
        tail = {"spatial": f"spatial{self.k_attack}", "spatial-pairs": f"pairs{self.k_attack}",
                "frame": f"frame{self.k_attack}", "frame-agree": f"agree{self.k_attack}"}.get(self.kind, self.kind)
        return f"{self.method}_{self.target}_{tail}"


def parse_label(label: str) -> tuple:
    """(attack method, L-inf budget or None) of a method label (EvalSettings.method_labels)."""
    from .attacks import FIXED_BUDGET

    for m in FIXED_BUDGET:
        if label.startswith(m) and label[len(m):].isdigit():
            return m, int(label[len(m):]) / 255
    return label, None


def has_adaptive(label: str) -> bool:
    """Whether a method has adaptive variants (adv_lib's attack the model only)."""
    from .attacks import PLAIN_ONLY

    return parse_label(label)[0] not in PLAIN_ONLY


def plan_attacks(s: EvalSettings) -> list:
    """Every attack setting the evaluation needs, plain ones first."""
    labels = s.method_labels
    plain = [AttackSet(m, t) for m in labels for t in s.targets]
    if "adaptive" in s.skip:
        return plain
    labels = [m for m in labels if has_adaptive(m)]
    # scale-adaptive: the adaptive attacks on the spatial detectors without the scale one's
    # (2 s per step on a CPU, 4x a plain step), for a CPU reading of the spatial detectors.
    scale = ([] if "scale-adaptive" in s.skip else
             [AttackSet(m, t, "scale") for m in labels for t in s.targets])
    ks = sorted({k for k in s.k_attack if k > 0})
    if "fig7" in s.skip:  # Table 1 still needs the adaptive attack at the defender's K
        ks = [k for k in ks if k in s.ks]
    spatial = [AttackSet(m, t, "spatial", k) for m in labels for t in s.targets for k in ks]
    own = [AttackSet(m, t, kind, k) for kind, ks in (("spatial-pairs", s.pair_counts),
                                                      ("frame", s._counts(s.k_frame)),
                                                      ("frame-agree", s._counts(s.k_agree)))
           for m in labels for t in s.targets for k in ks]
    return plain + scale + spatial + own


def attack_settings(s: EvalSettings, a: AttackSet):
    """A cell's attack. A fixed-budget attack (SegPGD, masked CE) runs its own step count (at
    most the grid's --max-iter, so --quick stays quick) and no early stop: its budget is the point."""
    from .attacks import FIXED_BUDGET
    from .attacks.run import AttackSettings
    from .attacks.settings import DEFAULT_MAX_ITER

    method, linf = parse_label(a.method)
    fixed = method in FIXED_BUDGET
    return AttackSettings(method=method, target=a.target, linf=linf,
                          adaptive=None if a.kind == "plain" else a.kind, k_attack=a.k_attack,
                          patch_size=s.patch, b_low=s.b_low, b_high=s.b_high, blur_stds=tuple(s.stds),
                          max_iter=min(s.max_iter, DEFAULT_MAX_ITER[method]) if fixed else s.max_iter,
                          threshold=None if fixed else s.attack_stop, seed=s.seed, size=tuple(s.frame),
                          batch=s.batch).resolved()


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def setting_key(a: AttackSet, settings, model_sha: str) -> str:
    """Folder name under OUT/attacks: readable, plus a digest of every setting (other
    settings never collide with, nor are refused by, an existing folder; a plain attack's
    batch is not among them, see AttackSettings.identity)."""
    return f"{a.name}_{_digest([settings.identity(), model_sha])}"
