"""The evaluation's tables from per-frame scores (pure functions): Table 1, Fig. 7, our own
adversaries, the adaptive matrix (every adaptive attack against every detector), ROC points.

Detectors: ``scale`` (param: blur std), ``spatial`` (the paper's pairs; param K) and
``frame`` (patch-vs-frame; param K, scored with the settings' statistic).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge_guard.classes import NUM_CLASSES
from edge_guard.errors import UserError

from . import threshold as thr
from .eval_plan import REACHED, AttackSet, has_adaptive
from .eval_scores import frame_at, spatial_at

#: TPR read off the ROC at these false-positive rates.
ROC_FPRS = (0.01, 0.05)
#: Threshold rules whose detection rate is reported: (name, rule, target fpr).
THRESHOLD_RULES = (("fpr-0.01", "fpr", 0.01), ("min-benign", "min-benign", None))


def tpr_at_fpr(benign, adversarial, fpr: float) -> float:
    """Largest detection rate on the ROC whose benign false-positive rate is <= ``fpr``.

    Every ROC point counts (sklearn's drop_intermediate once dropped the one at fpr: 0.45 for
    0.50 on a hand-checked case). In closed form: flag below the (m+1)-th smallest benign
    score, m = floor(fpr * n); no threshold flags fewer benign frames and more attacked ones."""
    b = np.sort(np.asarray(benign, np.float64))
    m = int(np.floor(fpr * b.size + 1e-9))
    if m >= b.size:
        return 1.0
    return float((np.asarray(adversarial, np.float64) < b[m]).mean())


#: Bootstrap resamples behind each interval, and its coverage.
BOOTSTRAP = 2000
INTERVAL = 0.95


def auc_interval(benign, adversarial, resamples: int = BOOTSTRAP, seed: int = 0) -> dict:
    """95% percentile-bootstrap intervals of the AUC and of the TPR at 1% FPR, resampling the
    benign and the adversarial frames apart (frames are the unit: patches of one frame are
    not independent). At a perfect separation every resample is perfect too: the interval
    is then [1, 1] and says only that no frame crossed; ``frames`` tells how much that weighs."""
    b = np.asarray(benign, np.float64).reshape(-1)
    a = np.asarray(adversarial, np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    bs = np.sort(b[rng.integers(0, b.size, (resamples, b.size))], axis=1)
    ad = a[rng.integers(0, a.size, (resamples, a.size))]
    # Per resample, the rank formula of threshold.detection_auc, vectorised over resamples.
    below = (ad[:, :, None] < bs[:, None, :]).sum(axis=2)
    ties = (ad[:, :, None] == bs[:, None, :]).sum(axis=2)
    aucs = (below + 0.5 * ties).sum(axis=1) / (a.size * b.size)
    m = int(np.floor(0.01 * b.size + 1e-9))  # tpr_at_fpr's closed form: below the (m+1)-th benign score
    tprs = (ad < bs[:, m:m + 1]).mean(axis=1)
    q = [50 * (1 - INTERVAL), 100 - 50 * (1 - INTERVAL)]
    return {"auc_ci": [float(v) for v in np.percentile(aucs, q)],
            "tpr_1pct_ci": [float(v) for v in np.percentile(tprs, q)], "resamples": int(resamples)}


def detection_cell(benign, adversarial) -> dict:
    """AUC (with its bootstrap interval), TPR at ROC_FPRS, and the detection rate at thresholds
    picked on the benign scores (THRESHOLD_RULES; a rule that cannot be resolved from too few
    frames says why)."""
    benign = np.asarray(benign, np.float64)
    adversarial = np.asarray(adversarial, np.float64)
    cell = {"auc": thr.detection_auc(benign, adversarial), **auc_interval(benign, adversarial),
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


def benign_summary(benign: dict, s) -> dict:
    """Each detector's benign scores at each of its parameters: summary and quantiles."""
    out = {"frames": len(benign["names"]), "first": benign["names"][0], "last": benign["names"][-1]}
    for det, params in detector_params(s, benign):
        out[det] = {}
        for p in params:
            scores = detector_scores(benign, det, p, s)
            out[det][f"{p:g}"] = {**thr.summary(scores), "quantiles": thr.quantiles(scores)}
    return out


def detector_params(s, scores: dict | None = None) -> list:
    """[(detector, its parameters)] in table order; ``frame`` only where it was scored."""
    out = [("scale", s.stds), ("spatial", s.ks)]
    if scores is None or "frame" in scores:
        out.append(("frame", s.ks))
    return out


def detector_scores(scores: dict, detector: str, param, s) -> np.ndarray:
    """(frames,) scores of one detector at its parameter (K, or the blur std)."""
    if detector == "spatial":
        return spatial_at(scores["spatial"], int(param))
    if detector == "frame":
        return frame_at(scores["frame"], int(param), NUM_CLASSES, s.statistic, s.min_pixels)
    return np.asarray(scores["scale"][f"{float(param):g}"], np.float64)


#: The adaptive attack a detector's Table 1 row is measured against, at its parameter.
ADAPTIVE_OF = {"scale": lambda m, t, p: AttackSet(m, t, "scale"),
               "spatial": lambda m, t, p: AttackSet(m, t, "spatial", int(p)),
               "frame": lambda m, t, p: AttackSet(m, t, "frame", int(p))}


def reached_cell(benign, adversarial, success) -> dict:
    """Detection AUC on the adversarial frames whose attack reached REACHED of its target's
    pixels: is what a detector misses only the attacks that failed?"""
    hit = np.asarray(success, np.float64) >= REACHED
    adversarial = np.asarray(adversarial, np.float64)[hit]
    return {"min_success": REACHED, "frames": int(hit.sum()),
            "auc": thr.detection_auc(benign, adversarial) if hit.any() else None}


def table1(s, benign: dict, adv: dict, success: Optional[dict] = None) -> list:
    """One row per detector x parameter x method x target x (non-adaptive, adaptive).
    ``success``: attack name -> per-frame pixel success, for each row's ``reached`` cell."""
    from .report import paper_auc

    rows = []
    for detector, params in detector_params(s, benign):
        for p in params:
            b = detector_scores(benign, detector, p, s)
            for m in s.method_labels:
                for t in s.targets:
                    for adaptive in (False, True):
                        name = (ADAPTIVE_OF[detector](m, t, p) if adaptive else AttackSet(m, t)).name
                        row = {"detector": detector, "param": float(p) if detector == "scale" else int(p),
                               "method": m, "target": t, "adaptive": adaptive, "attack": name,
                               "paper_auc": paper_auc(detector, p, m, t, adaptive)}
                        if name in adv and detector in adv[name]:
                            scores = detector_scores(adv[name], detector, p, s)
                            row.update(detection_cell(b, scores))
                            if success and name in success:
                                row["reached"] = reached_cell(b, scores, success[name])
                        else:
                            row["auc"] = None
                            row["missing"] = ("adaptive attacks skipped (--skip adaptive)"
                                              if "adaptive" in s.skip else
                                              "no adaptive variant (it attacks the model only)"
                                              if adaptive and not has_adaptive(m) else
                                              f"no adaptive attack with K_attack={p} (not in "
                                              f"{'--k-frame' if detector == 'frame' else '--k-attack'})")
                        rows.append(row)
    return rows


def fig7(s, benign: dict, adv: dict) -> dict:
    """{method_target: {k_attack, k_defender, auc[i_defender][j_attack]}} (0 = plain attack)."""
    out = {}
    for m in filter(has_adaptive, s.method_labels):
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


def own_adversary(s, benign: dict, adv: dict) -> list:
    """The spatial detector at each defender K against our spatial-pairs adversary at each
    K_pairs, beside the paper's adaptive adversary (K_attack = K patches) where it was run."""
    rows = []
    for kd in s.ks:
        b = spatial_at(benign["spatial"], kd)
        for m in filter(has_adaptive, s.method_labels):
            for t in s.targets:
                paper_style = adv.get(AttackSet(m, t, "spatial", int(kd)).name)
                for kp in s.pair_counts:
                    name = AttackSet(m, t, "spatial-pairs", kp).name
                    rows.append({"k_defender": int(kd), "method": m, "target": t, "k_pairs": kp,
                                 "attack": name, **detection_cell(b, spatial_at(adv[name]["spatial"], kd)),
                                 "auc_patches_adversary": None if paper_style is None else
                                 thr.detection_auc(b, spatial_at(paper_style["spatial"], kd))})
    return rows


def roc_points(rows: list, benign: dict, adv: dict, s) -> dict:
    """ROC curves (fpr, tpr lists) of every Table 1 row that has scores, for the figures."""
    from sklearn.metrics import roc_curve

    out = {}
    for row in rows:
        if row.get("auc") is None:
            continue
        b = detector_scores(benign, row["detector"], row["param"], s)
        a = detector_scores(adv[row["attack"]], row["detector"], row["param"], s)
        truth = np.r_[np.zeros(len(b)), np.ones(len(a))]
        f, t, _ = roc_curve(truth, -np.r_[b, a])
        key = f"{row['detector']}:{row['param']:g}:{row['method']}_{row['target']}:" \
              f"{'adaptive' if row['adaptive'] else 'plain'}"
        out[key] = {"fpr": [float(v) for v in f], "tpr": [float(v) for v in t], "auc": row["auc"]}
    return out


#: Adaptive attacks aimed at a spatial detector: (kind, its K setting's name in EvalSettings).
SPATIAL_ADAPTIVE = (("spatial", "k_attack"), ("spatial-pairs", "k_pairs"), ("frame", "k_frame"),
                    ("frame-agree", "k_agree"))


def adaptive_matrix(s, benign: dict, adv: dict) -> list:
    """Both spatial detectors at each defender K against every adaptive attack on them that
    was run (the paper's on K_attack patches, our pairs adversary, and the two aimed at the
    frame detector), with the attack's success: who catches what."""
    rows = []
    for kind, setting in SPATIAL_ADAPTIVE:
        for ka in sorted({k for k in getattr(s, setting, ()) if k > 0}):
            for m in s.method_labels:
                for t in s.targets:
                    name = AttackSet(m, t, kind, ka).name
                    if name not in adv:
                        continue
                    for det in ("spatial", "frame"):
                        if det not in adv[name] or det not in benign:
                            continue
                        for kd in s.ks:
                            b = detector_scores(benign, det, kd, s)
                            a = detector_scores(adv[name], det, kd, s)
                            cell = detection_cell(b, a)
                            rows.append({"attack": name, "kind": kind, "k_attack": ka, "method": m,
                                         "target": t, "detector": det, "k_defender": int(kd),
                                         "auc": cell["auc"], "tpr_at_fpr": cell["tpr_at_fpr"],
                                         "adversarial_frames": cell["adversarial_frames"]})
    return rows
