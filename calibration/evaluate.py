"""``edge-guard evaluate``: the paper's experiments (§5, Table 1, Fig. 3, 7, 8) on any model and data.

Output folder::

    OUT/results.json        every number below, the settings, seeds and sample sizes
    OUT/report.md           what a person reads first (tables, figures, an honest reading)
    OUT/*.png               ROC curves, Fig. 7 heat maps, Fig. 3 entropy maps, Fig. 8 matrices
    OUT/attacks/<key>/      one `edge-guard attack` folder per attack setting (resumable)
    OUT/scores/<key>.json   detector scores per image set (reused when the settings match)
    OUT/transfer/           Fig. 8: its models (when trained here) and attacks

Sets: the first ``benign`` frames of the split are the benign set; the first ``adversarial``
frames are attacked once per setting: the plain attack (method x target), the adaptive
attack on the scale detector (all blur stds at once, the paper's L2 bound 0.06) and the
adaptive attack on the spatial detector for every K_attack > 0 of the grid (§5.4). Every
frame is resized to the evaluation frame before it is attacked or scored.

Scores: the spatial detector runs through the runtime's own code
(:func:`edge_guard.calibration.scoring`): K_max = max(ks) pairs per frame; the score at K is
the mean of the first K pair mIoUs. The pairs are drawn independently, so the first K of
K_max pairs are a draw of K pairs, and one inference serves every K. Each set draws its pairs
from ``SeedSequence([seed, crc32(set name)])``: its scores do not depend on the other sets.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edge_guard.classes import NUM_CLASSES
from edge_guard.errors import DataError, UserError
from edge_guard.patches import check_full_range

from . import threshold as thr

FORMAT = "edge-guard-evaluate"
VERSION = 1
FIGURES = ("fig3", "fig7", "fig8")
#: What --skip accepts: the figures, and the adaptive attacks (Table 1's plain rows only, no
#: Fig. 7): a first reading on a CPU, where an adaptive step costs 2.7-3.7x a plain one (K_attack=5).
SKIPPABLE = FIGURES + ("adaptive",)
#: TPR read off the ROC at these false-positive rates.
ROC_FPRS = (0.01, 0.05)
#: Threshold rules whose detection rate is reported: (name, rule, target fpr).
THRESHOLD_RULES = (("fpr-0.01", "fpr", 0.01), ("min-benign", "min-benign", None))
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
    targets: tuple = ("pure", "emblem")
    ks: tuple = (1, 5, 10, 50)
    stds: tuple = (0.5, 3.0, 5.0)
    k_attack: tuple = (0, 1, 5, 10, 50)
    # Our own adaptive adversary (spatial-pairs): K overlapping pairs per step, each patch
    # toward the target and the two consistent on their overlap. 0: not run.
    k_pairs: tuple = ()
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
        if not self.ks or min(self.ks) < 1:
            raise UserError(f"--ks needs positive pair counts, got {list(self.ks)}")
        if not self.stds or min(self.stds) <= 0:
            raise UserError(f"--stds needs positive blur stds, got {list(self.stds)}")
        if not self.k_attack or min(self.k_attack) < 0:
            raise UserError(f"--k-attack needs counts >= 0, got {list(self.k_attack)}")
        if any(k < 0 for k in self.k_pairs):
            raise UserError(f"--k-pairs needs counts >= 0, got {list(self.k_pairs)}")
        if not 0 < self.attack_stop <= 1:
            raise UserError(f"--attack-stop {self.attack_stop} must be in (0, 1]: the fraction of pixels on target")
        if self.benign < 2 or self.adversarial < 1:
            raise UserError("evaluation needs at least 2 benign and 1 adversarial frame")
        bad = [s for s in self.skip if s not in SKIPPABLE]
        if bad:
            raise UserError(f"--skip {','.join(bad)}: choose from {', '.join(SKIPPABLE)}")
        if "fig8" not in self.skip and self.transfer_models:
            self._check_transfer_models()

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
    def pair_counts(self) -> list:
        """The spatial-pairs adversary's K_pairs to run (none under --skip adaptive)."""
        return [] if "adaptive" in self.skip else sorted({k for k in self.k_pairs if k > 0})


@dataclass(frozen=True)
class AttackSet:
    """One attack setting: ``kind`` is plain, scale (adaptive), spatial (adaptive, k_attack
    patches) or spatial-pairs (our own adaptive adversary, k_attack overlapping pairs)."""

    method: str
    target: str
    kind: str = "plain"
    k_attack: int = 0

    @property
    def name(self) -> str:
        tail = {"spatial": f"spatial{self.k_attack}", "spatial-pairs": f"pairs{self.k_attack}"}.get(self.kind, self.kind)
        return f"{self.method}_{self.target}_{tail}"


def plan_attacks(s: EvalSettings) -> list:
    """Every attack setting the evaluation needs, plain ones first."""
    plain = [AttackSet(m, t) for m in s.methods for t in s.targets]
    if "adaptive" in s.skip:
        return plain
    scale = [AttackSet(m, t, "scale") for m in s.methods for t in s.targets]
    ks = sorted({k for k in s.k_attack if k > 0})
    if "fig7" in s.skip:  # Table 1 still needs the adaptive attack at the defender's K
        ks = [k for k in ks if k in s.ks]
    spatial = [AttackSet(m, t, "spatial", k) for m in s.methods for t in s.targets for k in ks]
    pairs = [AttackSet(m, t, "spatial-pairs", k) for m in s.methods for t in s.targets for k in s.pair_counts]
    return plain + scale + spatial + pairs


def attack_settings(s: EvalSettings, a: AttackSet):
    from .attacks.run import AttackSettings

    return AttackSettings(method=a.method, target=a.target,
                          adaptive=None if a.kind == "plain" else a.kind, k_attack=a.k_attack,
                          patch_size=s.patch, b_low=s.b_low, b_high=s.b_high, blur_stds=tuple(s.stds),
                          max_iter=s.max_iter, threshold=s.attack_stop, seed=s.seed, size=tuple(s.frame),
                          batch=s.batch).resolved()


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def setting_key(a: AttackSet, settings, model_sha: str) -> str:
    """Folder name under OUT/attacks: readable, plus a digest of every setting (other
    settings never collide with, nor are refused by, an existing folder; a plain attack's
    batch is not among them, see AttackSettings.identity)."""
    return f"{a.name}_{_digest([settings.identity(), model_sha])}"


# ---------------------------------------------------------------- metrics (pure)

def spatial_at(pair_mious, k: int) -> np.ndarray:
    """(frames,) scores at K: the runtime's mean of the first K pair mIoUs of each frame."""
    from edge_guard.consistency import mean_score

    return np.array([mean_score(np.asarray(p, np.float32)[:k]) for p in pair_mious], np.float64)


def tpr_at_fpr(benign, adversarial, fpr: float) -> float:
    """Largest detection rate on the ROC whose benign false-positive rate is <= ``fpr``."""
    from sklearn.metrics import roc_curve

    truth = np.r_[np.zeros(len(benign)), np.ones(len(adversarial))]
    f, t, _ = roc_curve(truth, -np.r_[benign, adversarial])
    return float(t[f <= fpr + 1e-12].max())


def detection_cell(benign, adversarial) -> dict:
    """AUC, TPR at ROC_FPRS, and the detection rate at thresholds picked on the benign
    scores (THRESHOLD_RULES; a rule that cannot be resolved from too few frames says why)."""
    benign = np.asarray(benign, np.float64)
    adversarial = np.asarray(adversarial, np.float64)
    cell = {"auc": thr.detection_auc(benign, adversarial),
            "tpr_at_fpr": {f"{f:g}": tpr_at_fpr(benign, adversarial, f) for f in ROC_FPRS},
            "benign_frames": int(benign.size), "adversarial_frames": int(adversarial.size),
            "benign_mean": float(benign.mean()), "adversarial_mean": float(adversarial.mean()),
            "detection": {}}
    for name, rule, fpr in THRESHOLD_RULES:
        try:
            choice = thr.pick_threshold(benign, rule, fpr)
        except UserError as exc:
            cell["detection"][name] = {"error": str(exc)}
            continue
        cell["detection"][name] = {"threshold": choice.threshold, "benign_fpr": choice.achieved_fpr,
                                   "detection_rate": thr.flag_rate(adversarial, choice.threshold)}
    return cell


# ---------------------------------------------------------------- scoring with a cache

def to_frame(image: np.ndarray, size) -> np.ndarray:
    """``image`` at the evaluation frame size, resized exactly as the attack resized the frames
    it attacked: benign and adversarial frames must not differ by their resampling."""
    from .attacks.run import _resize

    return _resize(image, None, tuple(size))[0]


class MissingCache(Exception):
    """What a cached-only evaluation lacks (a path under OUT)."""


class Scorer:
    """Spatial and scale scores of image sets, cached in OUT/scores/<set>.json."""

    def __init__(self, s: EvalSettings, segmenter, model_sha: str, device: str, progress: bool,
                 cached_only: bool = False):
        from edge_guard.bundle import uncalibrated_bundle

        from .scoring import torch_segment

        self.s, self.progress, self.cached_only = s, progress, cached_only
        self.segment = torch_segment(segmenter, device)
        self.k_max = max(s.ks)
        # The Guard needs a bundle for its geometry only: no model file, no threshold.
        model = {"file": "model.onnx", "sha256": model_sha, "patch_size": s.patch,
                 "num_classes": segmenter.num_classes, "class_names": list(segmenter.class_names),
                 "input": {"name": "image", "dtype": "uint8", "layout": "NHWC", "channels": "RGB"},
                 "normalization": {"where": "in-graph", "mean": list(segmenter.mean),
                                   "std": list(segmenter.std)},
                 "output": {"name": "labels", "kind": "labels", "dtype": "int32"}}
        self.bundle = uncalibrated_bundle(model, s.frame, s.b_low, s.b_high, self.k_max, root=s.out)
        self.num_classes = segmenter.num_classes
        self.base_key = {"model_sha256": model_sha, "frame": list(s.frame), "patch": s.patch,
                         "b_low": s.b_low, "b_high": s.b_high, "k_max": self.k_max,
                         "stds": [float(v) for v in s.stds], "seed": s.seed}
        self.folder = Path(s.out) / "scores"
        self.folder.mkdir(parents=True, exist_ok=True)

    def scores(self, name: str, frames: list, detectors=("spatial", "scale")) -> dict:
        """``frames``: [(frame name, path)]. Returns {"names", "spatial": (n, K_max) pair
        mIoUs, "scale": {std: (n,) scores}} for the detectors asked (cached)."""
        from tqdm import tqdm

        from edge_guard.calibration.data.folders import read_image
        from edge_guard.guard import Guard

        from .scoring import scale_scores

        path = self.folder / f"{name}.json"
        key = {**self.base_key, "set": name, "detectors": sorted(detectors)}
        if self.cached_only:
            # Scores made on another machine: the frames' files are not here, so the cache
            # matches on everything else and on the frame names, in order.
            try:
                doc = json.loads(path.read_text())
                cached = {k: v for k, v in doc["key"].items() if k != "frames"}
                if cached == key and [f[0] for f in doc["key"]["frames"]] == [n for n, _ in frames]:
                    return doc["scores"]
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                pass
            raise MissingCache(f"scores/{name}.json")
        key["frames"] = [[n, str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for n, p in frames]
        if path.is_file():
            try:
                doc = json.loads(path.read_text())
                if doc.get("key") == key:
                    return doc["scores"]
            except (OSError, ValueError):
                pass  # unreadable cache: recompute
        stream = zlib.crc32(name.encode())
        rng = np.random.default_rng(np.random.SeedSequence([int(self.s.seed), stream]))
        out = {"names": [n for n, _ in frames], "pair_stream": stream}
        if "spatial" in detectors:
            out["spatial"] = []
        if "scale" in detectors:
            out["scale"] = {f"{v:g}": [] for v in self.s.stds}
        guard = Guard.from_function(self.bundle, self.segment, seed=rng)
        with guard, tqdm(total=len(frames), desc=f"scoring {name}", unit="frame",
                         disable=not self.progress, dynamic_ncols=True) as bar:
            for _, p in frames:
                image = to_frame(read_image(p), self.s.frame)
                if "spatial" in detectors:
                    out["spatial"].append([float(v) for v in guard.check(image, rgb=True).pair_mious])
                if "scale" in detectors:
                    for std, v in scale_scores(self.segment, image, self.s.stds, self.num_classes).items():
                        out["scale"][f"{std:g}"].append(float(v))
                bar.update(1)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"key": key, "scores": out}))
        tmp.replace(path)
        return out


# ---------------------------------------------------------------- the run

def _benign_frames(s: EvalSettings) -> tuple:
    from .data.folders import open_dataset

    data = Path(s.data).expanduser()
    if not data.exists():
        raise DataError(f"data folder {data} does not exist (make one with `edge-guard generate`)")
    frames = open_dataset(data, s.split, labeled=False)
    need = max(s.benign, s.adversarial)
    if len(frames) < need:
        raise DataError(f"{data} has {len(frames)} frames in split {s.split!r}, but the evaluation "
                        f"needs {need}: pass smaller --benign/--adversarial or add frames")
    return frames


def _attack_frames(folder: Path, names: list) -> list:
    doc = json.loads((folder / "manifest.json").read_text())
    images = doc["images"]
    missing = [n for n in names if n not in images]
    if missing:
        raise DataError(f"{folder}/manifest.json lacks {missing[0]}: re-run evaluate to resume the attack")
    return [(n, folder / images[n]["adversarial"]) for n in names]


def _attack_record(folder: Path, names: list) -> dict:
    from .attacks.run import summarize

    doc = json.loads((folder / "manifest.json").read_text())
    recs = [doc["images"][n] for n in names]
    return {"frames": len(recs), **summarize(recs, doc["settings"]["threshold"]),
            "success": [float(r["success"]) for r in recs], "settings": doc["settings"]}


def evaluate(s: EvalSettings, device: str = "cpu", progress: bool = True, log=print,
             cached_only: bool = False) -> dict:
    """Run the evaluation per ``s`` into ``s.out``; returns results.json's document.

    ``cached_only``: attack nothing and score nothing; build the results from the manifests
    and scores already under OUT (e.g. several GPU runs' outputs unpacked into one folder,
    without their adversarial images). Fig. 3 and Fig. 8 need the images and are skipped
    (an earlier run's Fig. 3 is kept); a missing setting is a UserError naming it."""
    import time

    from edge_guard.engine_cache import sha256_file

    from .attacks.run import run_attacks
    from .models.checkpoint import load_segmenter
    from .models.complexity import count_parameters

    started = time.perf_counter()
    s.check()
    out = Path(s.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    model_path = Path(s.model).expanduser()
    if not model_path.is_file():
        raise UserError(f"checkpoint {model_path} does not exist")
    frames = _benign_frames(s)
    out.mkdir(parents=True, exist_ok=True)  # after the inputs are known to be usable
    if "fig8" not in s.skip and not s.transfer_models and not cached_only:
        from .transfer import training_frames

        training_frames(s)  # Fig. 8 comes last: find out now that it has no data to train on
    segmenter, meta = load_segmenter(model_path, arch=s.arch)
    if segmenter.num_classes != NUM_CLASSES:
        raise UserError(f"{model_path} predicts {segmenter.num_classes} classes; the attack targets "
                        f"use the {NUM_CLASSES} Cityscapes train ids")
    segmenter = segmenter.to(device).eval()
    model_sha = sha256_file(model_path)
    scorer = Scorer(s, segmenter, model_sha, device, progress, cached_only)

    benign_list = list(zip(frames.names[:s.benign], frames.image_paths[:s.benign]))
    adv_names = list(frames.names[:s.adversarial])
    attacks, adv_scores, missing = {}, {}, []
    try:
        benign = scorer.scores("benign", benign_list)
    except MissingCache as exc:
        missing.append(str(exc))
    for a in plan_attacks(s):
        settings = attack_settings(s, a)
        key = setting_key(a, settings, model_sha)
        folder = out / "attacks" / key
        detectors = {"plain": ("spatial", "scale"), "scale": ("scale",)}.get(a.kind, ("spatial",))
        if not cached_only:
            log(f"attack {a.name} -> {folder.relative_to(out)}")
            run_attacks(model_path, s.data, s.split, settings, folder, arch=s.arch, limit=s.adversarial,
                        device=device, progress=progress)
        try:
            record = _attack_record(folder, adv_names)
            adv_scores[a.name] = scorer.scores(key, _attack_frames(folder, adv_names), detectors)
        except MissingCache as exc:
            missing.append(str(exc))
            continue
        except (OSError, ValueError, KeyError, DataError):
            if not cached_only:
                raise
            missing.append(f"attacks/{key}")  # no manifest, or one without these frames
            continue
        attacks[a.name] = {"folder": str(folder.relative_to(out)), "method": a.method,
                           "target": a.target, "kind": a.kind, "k_attack": a.k_attack, **record}
    if missing:
        raise UserError(f"--cached-only: {len(missing)} cached result(s) missing under {out} "
                        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): "
                        "run those settings (with images) and unpack their output here")

    rows = table1(s, benign, adv_scores, {n: a["success"] for n, a in attacks.items()})
    results = {"format": FORMAT, "version": VERSION, "settings": s.record(), "device": str(device),
               "cached_only": bool(cached_only),
               "model": {"path": str(model_path.resolve()), "sha256": model_sha, "arch": meta.get("model"),
                         "model_kwargs": meta.get("model_kwargs"),
                         "parameters": count_parameters(segmenter)},
               "sample_sizes": {"benign": s.benign, "adversarial": s.adversarial},
               "attacks": attacks,
               "benign": _benign_summary(benign, s),
               "table1": rows,
               "roc": roc_points(rows, benign, adv_scores),
               "figures": {}}
    if "fig7" not in s.skip and "adaptive" not in s.skip:
        results["fig7"] = fig7(s, benign, adv_scores)
    if s.pair_counts:
        results["own_adversary"] = own_adversary(s, benign, adv_scores)
    if cached_only:
        earlier = _earlier_fig3(out)
        if earlier:
            results["fig3"] = earlier
    elif "fig3" not in s.skip:
        results["fig3"] = entropy_maps(s, scorer, benign_list[0], attacks, out)
    if "fig8" not in s.skip and not cached_only:
        from .transfer import transferability

        # Table 1 and Figs. 3/7 are on disk before Fig. 8's training (hours on a CPU) begins.
        results["seconds"] = round(time.perf_counter() - started, 1)
        _write_outputs(results, out)
        results["fig8"] = transferability(s, adv_names, device, progress, log, meta)
    results["seconds"] = round(time.perf_counter() - started, 1)
    _write_outputs(results, out)
    return results


def _benign_summary(benign: dict, s: EvalSettings) -> dict:
    out = {"frames": len(benign["names"]), "first": benign["names"][0], "last": benign["names"][-1],
           "spatial": {}, "scale": {}}
    for k in s.ks:
        scores = spatial_at(benign["spatial"], k)
        out["spatial"][str(k)] = {**thr.summary(scores), "quantiles": thr.quantiles(scores)}
    for std, scores in benign["scale"].items():
        out["scale"][std] = {**thr.summary(scores), "quantiles": thr.quantiles(scores)}
    return out


def _detector_scores(scores: dict, detector: str, param) -> np.ndarray:
    if detector == "spatial":
        return spatial_at(scores["spatial"], int(param))
    return np.asarray(scores["scale"][f"{float(param):g}"], np.float64)


def reached_cell(benign, adversarial, success) -> dict:
    """Detection AUC on the adversarial frames whose attack reached REACHED of its target's
    pixels: is what a detector misses only the attacks that failed?"""
    hit = np.asarray(success, np.float64) >= REACHED
    adversarial = np.asarray(adversarial, np.float64)[hit]
    return {"min_success": REACHED, "frames": int(hit.sum()),
            "auc": thr.detection_auc(benign, adversarial) if hit.any() else None}


def table1(s: EvalSettings, benign: dict, adv: dict, success: Optional[dict] = None) -> list:
    """One row per detector x parameter x method x target x (non-adaptive, adaptive).
    ``success``: attack name -> per-frame pixel success, for each row's ``reached`` cell."""
    from .report import paper_auc

    rows = []
    for detector, params in (("scale", s.stds), ("spatial", s.ks)):
        for p in params:
            b = _detector_scores(benign, detector, p)
            for m in s.methods:
                for t in s.targets:
                    for adaptive in (False, True):
                        if not adaptive:
                            name = AttackSet(m, t).name
                        elif detector == "scale":
                            name = AttackSet(m, t, "scale").name
                        else:
                            name = AttackSet(m, t, "spatial", int(p)).name
                        row = {"detector": detector, "param": float(p) if detector == "scale" else int(p),
                               "method": m, "target": t, "adaptive": adaptive, "attack": name,
                               "paper_auc": paper_auc(detector, p, m, t, adaptive)}
                        if name in adv:
                            scores = _detector_scores(adv[name], detector, p)
                            row.update(detection_cell(b, scores))
                            if success and name in success:
                                row["reached"] = reached_cell(b, scores, success[name])
                        else:
                            row["auc"] = None
                            row["missing"] = ("adaptive attacks skipped (--skip adaptive)"
                                              if "adaptive" in s.skip else
                                              f"no adaptive attack with K_attack={p} (not in --k-attack)")
                        rows.append(row)
    return rows


def fig7(s: EvalSettings, benign: dict, adv: dict) -> dict:
    """{method_target: {k_attack, k_defender, auc[i_defender][j_attack]}} (0 = plain attack)."""
    out = {}
    for m in s.methods:
        for t in s.targets:
            ka = sorted(set(s.k_attack))
            kds = sorted(set(s.ks))  # rows ascending: the report reads the last as the largest K
            grid = []
            for kd in kds:
                b = spatial_at(benign["spatial"], kd)
                row = []
                for k in ka:
                    name = AttackSet(m, t).name if k == 0 else AttackSet(m, t, "spatial", k).name
                    row.append(thr.detection_auc(b, spatial_at(adv[name]["spatial"], kd)))
                grid.append(row)
            out[f"{m}_{t}"] = {"k_attack": ka, "k_defender": kds, "auc": grid}
    return out


def own_adversary(s: EvalSettings, benign: dict, adv: dict) -> list:
    """The spatial detector at each defender K against our spatial-pairs adversary at each
    K_pairs, beside the paper's adaptive adversary (K_attack = K patches) where it was run."""
    rows = []
    for kd in s.ks:
        b = spatial_at(benign["spatial"], kd)
        for m in s.methods:
            for t in s.targets:
                paper_style = adv.get(AttackSet(m, t, "spatial", int(kd)).name)
                for kp in s.pair_counts:
                    name = AttackSet(m, t, "spatial-pairs", kp).name
                    rows.append({"k_defender": int(kd), "method": m, "target": t, "k_pairs": kp,
                                 "attack": name, **detection_cell(b, spatial_at(adv[name]["spatial"], kd)),
                                 "auc_patches_adversary": None if paper_style is None else
                                 thr.detection_auc(b, spatial_at(paper_style["spatial"], kd))})
    return rows


def roc_points(rows: list, benign: dict, adv: dict) -> dict:
    """ROC curves (fpr, tpr lists) of every Table 1 row that has scores, for the figures."""
    from sklearn.metrics import roc_curve

    out = {}
    for row in rows:
        if row.get("auc") is None:
            continue
        b = _detector_scores(benign, row["detector"], row["param"])
        a = _detector_scores(adv[row["attack"]], row["detector"], row["param"])
        truth = np.r_[np.zeros(len(b)), np.ones(len(a))]
        f, t, _ = roc_curve(truth, -np.r_[b, a])
        key = f"{row['detector']}:{row['param']:g}:{row['method']}_{row['target']}:" \
              f"{'adaptive' if row['adaptive'] else 'plain'}"
        out[key] = {"fpr": [float(v) for v in f], "tpr": [float(v) for v in t], "auc": row["auc"]}
    return out


def entropy_maps(s: EvalSettings, scorer: Scorer, benign_frame: tuple, attacks: dict, out: Path) -> dict:
    """Fig. 3: per-pixel vote entropy over random patches of the first benign frame and of
    its plain adversarial versions (the same patch boxes for every version)."""
    from edge_guard.calibration.data.folders import read_image
    from edge_guard.consistency import vote_entropy
    from edge_guard.crop import crop_patches
    from edge_guard.patches import sample_pairs

    name, path = benign_frame
    h, w = s.frame
    rng = np.random.default_rng(np.random.SeedSequence([int(s.seed), zlib.crc32(b"fig3")]))
    pairs = sample_pairs(h, w, s.patch, s.b_low, s.b_high, max(1, math.ceil(s.entropy_patches / 2)), rng)
    boxes = pairs.reshape(-1, 2)[:s.entropy_patches]
    versions = [("benign", path)]
    for aname, rec in attacks.items():
        if rec["kind"] == "plain":
            versions.append((aname.rsplit("_", 1)[0], out / rec["folder"] / _adv_path(out / rec["folder"], name)))
    maps, images, summary = {}, {}, {}
    for label, p in versions:
        image = to_frame(read_image(p), (h, w))
        labels = scorer.segment(crop_patches(image, pairs, s.patch))[:len(boxes)]
        ent = vote_entropy(labels, boxes, (h, w), scorer.num_classes)
        maps[label], images[label] = ent, image
        summary[label] = {"mean_entropy": float(np.nanmean(ent)),
                          "covered_fraction": float(np.isfinite(ent).mean())}
    from .figures import entropy_figure

    png = entropy_figure(images, maps, out / "fig3_entropy.png", name, len(boxes))
    return {"frame": name, "patches": int(len(boxes)), "png": png.name, "maps": summary,
            "units": "nats; max log(19) = 2.94"}


def _earlier_fig3(out: Path):
    """Fig. 3 of an earlier run in ``out`` (its record, if its PNG is still there)."""
    try:
        fig3 = json.loads((out / "results.json").read_text()).get("fig3")
        return fig3 if fig3 and (out / fig3["png"]).is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _adv_path(folder: Path, name: str) -> str:
    return json.loads((folder / "manifest.json").read_text())["images"][name]["adversarial"]


def _write_outputs(results: dict, out: Path) -> None:
    from .figures import write_figures
    from .report import write_report

    results["figures"] = write_figures(results, out)
    if "fig3" in results:
        results["figures"]["fig3"] = results["fig3"]["png"]
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out / "results.json")
    write_report(results, out)


__all__ = ["EvalSettings", "AttackSet", "plan_attacks", "evaluate", "detection_cell", "spatial_at",
           "tpr_at_fpr", "table1", "fig7"]
