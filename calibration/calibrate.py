"""``edge-guard calibrate``: checkpoint + benign frames -> a bundle with a calibrated threshold.

1. export the model (labels output, patch size s) and its full-frame graph into the bundle
   folder through the exporter, which verifies both against PyTorch and checks TensorRT
   compatibility; guard.json names the full-frame graph with its sha256 (model.frame_graph);
2. score the first N benign frames of the split through the runtime's code
   (:mod:`edge_guard.calibration.scoring`) and choose the threshold (:mod:`.threshold`);
3. measure it on the next M benign frames (held out) and on adversarial sets, if given
   (detection rate at the threshold, ROC AUC);
4. write guard.json with the whole record.

The detector (``method``) is ``frame`` (each patch against the frame's labels; the default) or
``pairs`` (the paper's overlapping pairs), scored with ``statistic``.

Randomness: the patches come from ``SeedSequence([seed, stream])`` generators, one stream
per set (0 calibration, 1 held-out, 2 + i the i-th adversarial set), so a set's scores do not
depend on which other sets were scored.

Several K (``ks``): every set is scored at each K in the same pass and each K gets its own
threshold by the same rule (:mod:`.k_thresholds`); the bundle's own K is scored and chosen
exactly as without them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edge_guard.bundle import METHODS, new_guard_doc, uncalibrated_bundle, write_guard_json
from edge_guard.consistency import DEFAULT_STATISTIC, check_statistic, resolve_min_pixels
from edge_guard.errors import UserError
from edge_guard.limits import MAX_PAIRS, MAX_SIDE
from edge_guard.patches import check_full_range, check_patch_geometry

from . import k_thresholds as kt
from . import threshold as thr
from .image_sets import ImageSet, unique_name, adversarial_set, benign_sets, describe_benign

STREAM_CALIBRATION, STREAM_HOLDOUT, STREAM_ADVERSARIAL = 0, 1, 2
STREAM_CONDITIONS = 1000  # + i: the i-th camera condition (its patches; its noise at + 1000)


@dataclass
class CalibrationSettings:
    """What decides the threshold. Defaults: the frame detector with the mIoU over classes of
    at least 0.1% of a patch (chosen by measurement: reports/2026-12-06-frame-detector); the
    paper's s = 512, b in [32, 64) at
    1024x2048 Cityscapes frames, halved for 512x1024 frames; K = 5; 1% target false-positive
    rate. b_low/b_high apply to the pairs detector only."""

    method: str = "frame"
    statistic: str = DEFAULT_STATISTIC
    min_pixels: int | None = None  # miou-min's class size; None: resolve_min_pixels's default
    frame_size: tuple = (512, 1024)
    patch: int = 256
    b_low: int = 16
    b_high: int = 32
    k: int = 5
    rule: str = "fpr"
    fpr: float | None = 0.01
    calib_frames: int = 200
    holdout_frames: int = 100
    split: str = "val"
    every: int | None = None  # a video's every N-th frame (None: 1; refused with a folder)
    seed: int = 0
    # Camera conditions the threshold must also hold under (calibration/data/conditions.py):
    # the first condition_frames calibration frames (None: all) are scored under each, and the
    # threshold is the lowest of the rule's thresholds on the clean frames and on each
    # condition. Fewer frames than calib_frames make each condition's tail estimate noisier,
    # and the lowest of seven noisy estimates lands low (300 frames gave 0.68 where 1000
    # clean frames give 0.81).
    conditions: tuple = ()
    condition_frames: int | None = None
    # More K to calibrate beside k, each with its own threshold (detector.thresholds_by_k),
    # for a frame-rate budget to pick from; () calibrates k alone.
    ks: tuple = ()

    def all_ks(self) -> tuple:
        """Every K calibrated: ``ks`` and ``k``, sorted."""
        return tuple(sorted({int(v) for v in self.ks} | {int(self.k)}))

    def check(self) -> None:
        """UserError (one line) for settings that cannot work, before anything is computed."""
        h, w = (int(v) for v in self.frame_size)
        if self.method not in METHODS:
            raise UserError(f"unknown detector {self.method!r}: choose {', '.join(METHODS)}")
        self.min_pixels = resolve_min_pixels(self.statistic, self.min_pixels, self.patch)
        check_statistic(self.statistic, self.min_pixels)
        if self.method == "pairs":
            check_full_range(h, w, self.patch, self.b_low, self.b_high)
        else:
            check_patch_geometry(h, w, self.patch)
        if self.k < 1:
            raise UserError(f"K (--k) must be at least 1, got {self.k}")
        if self.k > MAX_PAIRS:  # what guard.json accepts: refused now, not after the calibration
            raise UserError(f"K (--k) is at most {MAX_PAIRS}, got {self.k}")
        kt.check_ks(self.ks)
        if max(h, w, self.patch) > MAX_SIDE:
            raise UserError(f"frame {h}x{w} and patch {self.patch}: at most {MAX_SIDE} pixels a side")
        if self.holdout_frames < 0:
            raise UserError(f"--holdout-frames must be >= 0, got {self.holdout_frames}")
        if self.every is not None and self.every < 1:
            raise UserError(f"--every must be at least 1, got {self.every}")
        thr.check_rule(self.rule, self.fpr, self.calib_frames)
        if self.conditions:
            from .data.conditions import CONDITIONS

            bad = [c for c in self.conditions if c not in CONDITIONS]
            if bad:
                raise UserError(f"unknown camera condition {bad[0]!r}: choose from {', '.join(CONDITIONS)}")
            n = min(self.condition_frames or self.calib_frames, self.calib_frames)
            if self.rule == "fpr" and self.fpr and n * self.fpr < 1 - 1e-9:
                raise UserError(f"--condition-frames {n} cannot resolve a false-positive rate of {self.fpr:g} "
                                f"under each condition: it needs at least {math.ceil(1 / self.fpr - 1e-9)} "
                                "frames (default: all the calibration frames)")


def _generator(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


def _score_set(bundle, segment, images: ImageSet, seed: int, stream: int, progress: bool,
               ks, transform=None) -> dict:
    """{K: the runtime's score of every frame of ``images``} (``transform``: applied to each first)."""
    return kt.score_ks(bundle, segment, images, lambda: _generator(seed, stream), progress, ks, transform)


def _condition_scores(bundle, segment, cal: ImageSet, s: CalibrationSettings, progress: bool, ks) -> dict:
    """{condition: {K: its scores}} on the first condition_frames frames."""
    from .data.conditions import apply_condition

    n = min(s.condition_frames or len(cal), len(cal))
    out = {}
    for i, c in enumerate(s.conditions):
        noise = _generator(s.seed, STREAM_CONDITIONS + 1000 + i)
        sub = replace(cal, name=f"calibration, {c}", paths=cal.paths[:n], names=cal.names[:n])
        out[c] = _score_set(bundle, segment, sub, s.seed, STREAM_CONDITIONS + i, progress, ks,
                            transform=lambda image, c=c, noise=noise: apply_condition(c, image, noise))
    return out


def _benign_record(scores: np.ndarray, threshold: float, images: ImageSet, stream: int) -> dict:
    return {**thr.summary(scores), "achieved_fpr": thr.flag_rate(scores, threshold),
            "quantiles": thr.quantiles(scores), "first_frame": images.names[0],
            "last_frame": images.names[-1], "pair_stream": stream}


@dataclass
class CalibrationResult:
    """What calibrate() wrote (``doc`` = guard.json) and the scores it measured."""

    bundle: Path
    doc: dict
    choice: thr.ThresholdChoice
    calibration_scores: np.ndarray
    holdout_scores: np.ndarray | None
    adversarial_scores: dict
    warnings: list


def calibrate(checkpoint, data, out, settings: CalibrationSettings | None = None, adversarial=(),
              arch: str | None = None, device: str = "cpu", progress: bool = True,
              log=print) -> CalibrationResult:
    """Export ``checkpoint`` into ``out``, calibrate its threshold on ``data`` and write guard.json.

    ``checkpoint``: a checkpoint path, or a :class:`.model_source.OnnxModel` (the user's own
    graph, wrapped instead of exported). ``adversarial``: folders of adversarial frames
    (``edge-guard attack`` outputs) to check the threshold against. Raises UserError (one
    line) for unusable inputs before exporting.
    """
    from .model_source import CheckpointModel, OnnxModel

    s = settings or CalibrationSettings()
    s.check()
    source = checkpoint if isinstance(checkpoint, OnnxModel) else CheckpointModel(checkpoint, arch, device)
    source.check(s)
    cal, held = benign_sets(data, s.split, s.calib_frames, s.holdout_frames, s.every)
    log(describe_benign(cal, held))
    taken: set = set()
    adv_sets = []
    for folder in adversarial:
        adv = adversarial_set(folder, s.split)
        adv.name = unique_name(adv.name, taken)
        adv_sets.append(adv)
    out = Path(out).expanduser()
    record, segment = source.graphs(out, s, cal, log)
    model = dict(record["model"])
    segment_graph = record.get("segment") or {}
    if segment_graph.get("file"):
        model["frame_graph"] = {"file": segment_graph["file"], "sha256": segment_graph["sha256"]}
    bundle = uncalibrated_bundle(model, s.frame_size, s.b_low, s.b_high, s.k, root=out, method=s.method,
                                 statistic=s.statistic, min_pixels=s.min_pixels)

    wrap_warning = ((record.get("verification") or {}).get("wrapped_vs_source") or {}).get("warning")
    warnings = [wrap_warning] if wrap_warning else []
    model_sha = source.sha256
    ks = s.all_ks()
    cal_by_k = _score_set(bundle, segment, cal, s.seed, STREAM_CALIBRATION, progress, ks)
    cal_scores = cal_by_k[s.k]
    choice = thr.pick_threshold(cal_scores, s.rule, s.fpr)
    if choice.warning:
        warnings.append(choice.warning)
    t = choice.threshold
    conditions_by_k = _condition_scores(bundle, segment, cal, s, progress, ks) if s.conditions else {}
    conditions = {c: (by_k[s.k], thr.pick_threshold(by_k[s.k], s.rule, s.fpr))
                  for c, by_k in conditions_by_k.items()}
    t = min([t] + [c.threshold for _, c in conditions.values()])

    held_scores, held_by_k, adv_by_k = None, {}, {}
    evaluation = {"scorer": "pytorch model through Guard.from_function (the runtime's resize, "
                            f"{'patches' if s.method == 'frame' else 'pairs'}, crop and {s.statistic})",
                  "calibration": _benign_record(cal_scores, t, cal, STREAM_CALIBRATION)}
    if held is not None:
        held_by_k = _score_set(bundle, segment, held, s.seed, STREAM_HOLDOUT, progress, ks)
        held_scores = held_by_k[s.k]
        evaluation["holdout"] = _benign_record(held_scores, t, held, STREAM_HOLDOUT)
    adv_scores = {}
    if adv_sets:
        benign = np.concatenate([cal_scores] + ([held_scores] if held_scores is not None else []))
        evaluation["adversarial"] = {}
        evaluation["auc"] = {}
        for i, adv in enumerate(adv_sets):
            stream = STREAM_ADVERSARIAL + i
            adv_by_k[adv.name] = _score_set(bundle, segment, adv, s.seed, stream, progress, ks)
            scores = adv_scores[adv.name] = adv_by_k[adv.name][s.k]
            auc = thr.detection_auc(benign, scores)
            # Frames made against another model measure transferred attacks, not this model's.
            made_for = adv.info.get("attack", {}).get("model_sha256")
            white_box = None if not made_for else made_for == model_sha
            if "attack" not in adv.info:
                warnings.append(f"adversarial set {adv.name} has no attack manifest: its frames are counted "
                                "as adversarial unchecked (an `edge-guard attack` folder records how they were made)")
            if white_box is False:
                warnings.append(f"adversarial set {adv.name} was made against another model (sha256 "
                                f"{str(made_for)[:12]}...): its detection rate and AUC are for transferred "
                                "attacks, not white-box ones on this model")
            evaluation["adversarial"][adv.name] = {
                **thr.summary(scores), "detection_rate": thr.flag_rate(scores, t), "auc": auc,
                "auc_benign_frames": int(benign.size), "pair_stream": stream, "white_box": white_box,
                **adv.info}
            evaluation["auc"][adv.name] = auc

    rule = {"rule": choice.rule, "benign_frames": choice.frames,
            "achieved_fpr": thr.flag_rate(cal_scores, t), "quantiles": thr.quantiles(cal_scores),
            "convention": "adversarial when score < threshold; threshold = the (m+1)-th smallest "
                          "benign calibration score, m = floor(target_fpr * benign_frames) "
                          "(min-benign: m = 0)" + ("; the lowest such threshold over the clean frames "
                                                   "and each camera condition" if conditions else ""),
            "allowed_false_positives": choice.allowed,
            "flagged_frames": int(np.count_nonzero(cal_scores < t))}
    if conditions:
        rule["clean_threshold"] = choice.threshold
        rule["conditions"] = {c: {"frames": int(sc.size), "threshold": ch.threshold,
                                  "achieved_fpr": thr.flag_rate(sc, t), "quantiles": thr.quantiles(sc)}
                              for c, (sc, ch) in conditions.items()}
    if choice.target_fpr is not None:
        rule["target_fpr"] = choice.target_fpr
    if held_scores is not None:
        rule["holdout_frames"] = int(held_scores.size)
        rule["holdout_fpr"] = thr.flag_rate(held_scores, t)
    detector = dict(bundle.detector, threshold=t, threshold_rule=rule)
    by_k = kt.k_thresholds(cal_by_k, conditions_by_k, s.rule, s.fpr) if len(ks) > 1 else {}
    if by_k:
        assert by_k[s.k]["threshold"] == t, "the bundle's K must keep its own threshold"
        detector["thresholds_by_k"] = kt.table(by_k)
    doc = new_guard_doc(model, detector, s.frame_size, evaluation=evaluation)
    if by_k:
        doc["provenance"]["thresholds_by_k"] = kt.record(
            by_k, cal_by_k, held_by_k, adv_by_k, s, how=f"edge-guard calibrate: {kt.SCORING}")
    doc["provenance"]["calibration"] = {
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
        "data": cal.info, "seed": s.seed,
        "pair_streams": "SeedSequence([seed, stream]): 0 calibration, 1 held-out, 2+i adversarial set i",
        "device": str(device), **source.provenance(),
        "export_verification": record.get("verification"),
        "trt_compatible": (record.get("trt_compat") or {}).get("ok"),
        "warnings": warnings}
    write_guard_json(out, doc)
    return CalibrationResult(out, doc, choice, cal_scores, held_scores, adv_scores, warnings)
