"""report.md of ``edge-guard evaluate``: tables, figures, settings and a reading generated
from the numbers (never a canned conclusion), with the paper's Table 1 beside ours."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

#: Xiao et al., ECCV 2018, Table 1: detection AUC on Cityscapes against DRN-D-22 (16.4M
#: parameters, 66.7 mIoU). Columns: DAG Pure, DAG Kitty, Houdini Pure, Houdini Kitty; our
#: ``emblem`` target stands in for "Kitty". "Detection Adap" is the adaptive attack: on the
#: blurs for the scale detector, on K random patches (K_attack = the defender's K) for the
#: spatial one.
PAPER_DRN_CITYSCAPES = {
    ("scale", 0.5): {"plain": (1.00, 0.95, 1.00, 0.99), "adaptive": (1.00, 0.67, 1.00, 0.78)},
    ("scale", 3.0): {"plain": (1.00, 1.00, 1.00, 1.00), "adaptive": (1.00, 0.00, 0.97, 0.00)},
    ("scale", 5.0): {"plain": (1.00, 1.00, 1.00, 1.00), "adaptive": (1.00, 0.00, 0.71, 0.00)},
    ("spatial", 1): {"plain": (0.91, 0.91, 0.94, 0.92), "adaptive": (0.98, 0.94, 0.92, 0.94)},
    ("spatial", 5): {"plain": (1.00, 1.00, 1.00, 1.00), "adaptive": (1.00, 1.00, 1.00, 1.00)},
    ("spatial", 10): {"plain": (1.00, 1.00, 1.00, 1.00), "adaptive": (1.00, 1.00, 1.00, 1.00)},
    ("spatial", 50): {"plain": (1.00, 1.00, 1.00, 1.00), "adaptive": (1.00, 1.00, 1.00, 1.00)},
}
_COLUMNS = {("dag", "pure"): 0, ("dag", "emblem"): 1, ("houdini", "pure"): 2, ("houdini", "emblem"): 3}
#: The attacks' stop fraction of a results.json written before `--attack-stop` existed.
EARLIER_ATTACK_STOP = 0.99
#: |ours - paper| at most this counts as matching the paper.
MATCH = 0.05
#: Sample sizes below which the report says the numbers are not yet a report.
MIN_BENIGN, MIN_ADVERSARIAL = 100, 50


def paper_auc(detector: str, param, method: str, target: str, adaptive: bool):
    """The paper's AUC for a Table 1 cell, or None where the paper has no such cell."""
    key = (detector, float(param) if detector == "scale" else int(param))
    col = _COLUMNS.get((method, target))
    if key not in PAPER_DRN_CITYSCAPES or col is None:
        return None
    return PAPER_DRN_CITYSCAPES[key]["adaptive" if adaptive else "plain"][col]


def _f(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _param(row) -> str:
    return f"std={row['param']:g}" if row["detector"] == "scale" else f"K={row['param']}"


def _detectors(settings: dict, rows: list) -> list:
    """[(detector, params)] in table order, the frame detector where the rows have it."""
    out = [("scale", settings["stds"]), ("spatial", settings["ks"])]
    if any(r["detector"] == "frame" for r in rows):
        out.append(("frame", settings["ks"]))
    return out


def _table1(rows: list, settings: dict) -> list:
    # The rows' methods: --methods with a fixed-budget one per --linf (segpgd4, segpgd8)
    attacks = [(m, t) for m in dict.fromkeys(r["method"] for r in rows) for t in settings["targets"]]
    # --skip adaptive: no column of n/a cells
    kinds = (False,) if "adaptive" in settings.get("skip", ()) else (False, True)
    head = ["detector"] + [f"{m} {t}{' (adaptive)' if a else ''}" for a in kinds for m, t in attacks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    index = {(r["detector"], r["param"], r["method"], r["target"], r["adaptive"]): r for r in rows}
    for det, params in _detectors(settings, rows):
        for p in params:
            p = float(p) if det == "scale" else int(p)
            cells = [f"{det} {'std' if det == 'scale' else 'K'}={p:g}"]
            for adaptive in kinds:
                for m, t in attacks:
                    r = index[(det, p, m, t, adaptive)]
                    paper = f" ({_f(r['paper_auc'])})" if r["paper_auc"] is not None else ""
                    cells.append(f"{_f(r.get('auc'))}{paper}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _rates(rows: list) -> list:
    from .evaluate import REACHED

    reached = next((r["reached"]["min_success"] for r in rows if r.get("reached")), REACHED)
    lines = ["| detector | attack | adaptive | AUC [95% CI] | TPR@1% FPR [95% CI] | TPR@5% FPR | rate @ min-benign "
             "(benign FPR) | rate @ fpr 0.01 (benign FPR) | benign / adv frames | AUC on frames "
             f">= {reached:.0%} on target (n) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("auc") is None:
            continue
        det = r["detection"]

        def rate(name):
            d = det[name]
            if "error" in d:
                return "n/a (too few benign frames)"
            return f"{_f(d['detection_rate'])} ({_f(d['benign_fpr'])})"

        lines.append(f"| {r['detector']} {_param(r)} | {r['method']} {r['target']} | "
                     f"{'yes' if r['adaptive'] else 'no'} | {_f(r['auc'], 3)}{_ci(r.get('auc_ci'))} | "
                     f"{_f(r['tpr_at_fpr']['0.01'])}{_ci(r.get('tpr_1pct_ci'))} | {_f(r['tpr_at_fpr']['0.05'])} | "
                     f"{rate('min-benign')} | {rate('fpr-0.01')} | "
                     f"{r['benign_frames']} / {r['adversarial_frames']} | {_reached(r)} |")
    return lines


def _ci(interval) -> str:
    return "" if not interval else f" [{_f(interval[0])}, {_f(interval[1])}]"


def _reached(row) -> str:
    reached = row.get("reached")
    return "n/a" if reached is None else f"{_f(reached['auc'], 3)} ({reached['frames']})"


def _attacks(attacks: dict) -> list:
    lines = ["| attack | frames | mean pixel success | reached threshold | mean L2 (RMS) | mean Linf (x255) | "
             "mean iterations | s / frame | attack wall time (s) | cache / frame (KB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in attacks.items():
        m = a["mean"]
        per = a.get("seconds_per_frame", m["seconds"])
        size = a.get("cache_bytes_per_frame")
        lines.append(f"| {name} | {a['frames']} | {_f(m['success'], 3)} | {_f(a['reached_threshold'], 0)} | "
                     f"{_f(m['l2'], 4)} | {_f(m['linf'] * 255, 1)} | {m['iterations']:.0f} | {per:.2f} | "
                     f"{a.get('attack_seconds', per * a['frames']):.0f} | "
                     f"{'n/a' if size is None else f'{size / 1024:.0f}'} |")
    return lines


def reading(results: dict) -> list:
    """Sentences generated from the numbers: sample sizes, attack strength, where we match
    the paper (|delta AUC| <= MATCH) and where not, adaptive vs plain per detector, Fig. 8."""
    out = []
    n_b, n_a = results["sample_sizes"]["benign"], results["sample_sizes"]["adversarial"]
    if n_b < MIN_BENIGN or n_a < MIN_ADVERSARIAL:
        out.append(f"- **Sample sizes are below a report's minimum** ({n_b} benign, {n_a} adversarial "
                   f"frames per cell; at least {MIN_BENIGN} and {MIN_ADVERSARIAL} are needed): every "
                   "number here is a smoke test, not a measurement.")
    weak = [(n, a["mean"]["success"]) for n, a in results["attacks"].items() if a["mean"]["success"] < 0.9]
    if weak:
        listed = ", ".join(f"{n} ({s:.2f})" for n, s in weak[:6])
        out.append(f"- {len(weak)} of {len(results['attacks'])} attacks reached less than 90% of the "
                   f"target's pixels on average ({listed}{', ...' if len(weak) > 6 else ''}); the "
                   f"paper's adversarial examples reach their target, so those cells compare "
                   "detection of weaker (partial) attacks.")
    else:
        out.append(f"- Every attack reached at least 90% of its target's pixels on average "
                   f"({len(results['attacks'])} attack settings).")
    rows = [r for r in results["table1"] if r.get("auc") is not None]
    compared = [r for r in rows if r["paper_auc"] is not None]
    if compared:
        match = [r for r in compared if abs(r["auc"] - r["paper_auc"]) <= MATCH]
        out.append(f"- Table 1: {len(match)} of {len(compared)} cells with a paper value lie within "
                   f"{MATCH} AUC of the paper's DRN-D-22 Cityscapes numbers.")
        off = sorted((r for r in compared if r not in match), key=lambda r: -abs(r["auc"] - r["paper_auc"]))
        for r in off[:8]:
            side = "below" if r["auc"] < r["paper_auc"] else "above"
            out.append(f"  - {r['detector']} {_param(r)}, {r['method']} {r['target']}"
                       f"{' adaptive' if r['adaptive'] else ''}: ours {r['auc']:.3f}, paper "
                       f"{r['paper_auc']:.2f} ({side} by {abs(r['auc'] - r['paper_auc']):.2f}).")
        if len(off) > 8:
            out.append(f"  - ... and {len(off) - 8} more (results.json, table1).")
    else:
        out.append("- No cell of this grid has a value in the paper's Table 1 to compare with.")
    for det in ("scale", "spatial", "frame"):
        partial = [r for r in rows if r["detector"] == det and r.get("reached")
                   and r["reached"]["auc"] is not None and r["reached"]["frames"] < r["adversarial_frames"]]
        if partial:
            low = min(partial, key=lambda r: r["reached"]["auc"])
            out.append(f"- {det} detector on the frames whose attack reached >= "
                       f"{partial[0]['reached']['min_success']:.0%} of its target, in the {len(partial)} "
                       f"cell(s) where some did not: mean AUC {np.mean([r['reached']['auc'] for r in partial]):.3f} "
                       f"against {np.mean([r['auc'] for r in partial]):.3f} on all their frames (lowest: "
                       f"{low['reached']['auc']:.3f} on {low['reached']['frames']} frames, {_param(low)} "
                       f"{low['method']} {low['target']}{' adaptive' if low['adaptive'] else ''}); lower "
                       "means the misses are not only the attacks that failed.")
    for det in ("scale", "spatial", "frame"):
        plain = [r["auc"] for r in rows if r["detector"] == det and not r["adaptive"]]
        adap = [r["auc"] for r in rows if r["detector"] == det and r["adaptive"]]
        if plain and adap:
            p, a = float(np.mean(plain)), float(np.mean(adap))
            change = "drops" if a < p - MATCH else ("rises" if a > p + MATCH else "stays within 0.05")
            paper = {"scale": " The paper reports the scale detector broken by adaptive attacks (AUC "
                               "down to 0.00).",
                     "spatial": " The paper reports the spatial detector at 0.92-1.00 under adaptive "
                                "attacks."}.get(det, "")
            out.append(f"- {det} detector: mean AUC {p:.3f} against plain attacks, {a:.3f} against "
                       f"adaptive ones ({change}; lowest adaptive cell {min(adap):.3f}).{paper}")
            stop = results["settings"].get("attack_stop", EARLIER_ATTACK_STOP)
            if det == "scale" and stop < 1 and change != "drops":
                out.append(f"  - These attacks stopped at {stop:.0%} of pixels on target; the stray pixels "
                           "left fall in several classes, each of which the paper's mIoU counts with "
                           "IoU 0, which lowers the adversarial scale score. `--attack-stop 1` runs "
                           "them to every pixel, the stronger adaptive attack on this detector.")
    own = [r for r in results.get("own_adversary") or [] if r.get("auc") is not None]
    if own:
        worst = min(own, key=lambda r: r["auc"])
        both = [r for r in own if r["auc_patches_adversary"] is not None]
        lower = sum(r["auc"] < r["auc_patches_adversary"] - MATCH for r in both)
        higher = sum(r["auc"] > r["auc_patches_adversary"] + MATCH for r in both)
        out.append(f"- Our own adversary (K_pairs overlapping pairs, consistent on their overlaps): "
                   f"lowest AUC {worst['auc']:.3f} ({worst['method']} {worst['target']}, K_pairs="
                   f"{worst['k_pairs']}, defender K={worst['k_defender']}); against the paper's "
                   f"adaptive adversary (K_attack = K patches) it detects worse in {lower}, better in "
                   f"{higher} and within {MATCH} in {len(both) - lower - higher} of {len(both)} cells.")
    fig7 = results.get("fig7")
    if fig7:
        for attack, d in fig7.items():
            grid = np.array(d["auc"])
            worst = np.unravel_index(np.argmin(grid), grid.shape)
            out.append(f"- Fig. 7 {attack}: AUC {grid.min():.3f} at its lowest (defender K="
                       f"{d['k_defender'][worst[0]]}, K_attack={d['k_attack'][worst[1]]}), "
                       f"{grid[-1].min():.3f} at the largest defender K={d['k_defender'][-1]}.")
    fig8 = results.get("fig8")
    if fig8:
        quality = [m["clean_miou"] for m in fig8["models"] if m.get("clean_miou") is not None]
        models = (f"; the models here segment clean frames at mIoU {min(quality):.2f}-{max(quality):.2f}"
                  if quality else "")
        for method, d in fig8["methods"].items():
            s = np.array(d["success"])
            diag = float(np.nanmean(np.diag(s)))
            offd = float(np.nanmean(s[~np.eye(len(s), dtype=bool)]))
            if diag < 0.5:
                verdict = ("the white-box attack itself mostly failed, so transfer cannot be judged "
                           "from these frames")
            elif offd < 0.5 * diag:
                verdict = "by this measure the attack transfers little"
            else:
                verdict = "by this measure the attack transfers substantially"
            out.append(f"- Fig. 8 {method}: pixel success {diag:.3f} on the attacked model (diagonal), "
                       f"{offd:.3f} on the others; {verdict} (the paper reports low transfer{models}).")
    return out


def _onnx_note(onnx: dict) -> str:
    """How a user's ONNX graph was attacked: converted to PyTorch, fed and read as recorded."""
    cut = (f"; its output `{onnx['output']}` is labels, so the attacks use the logits before its ArgMax "
           f"(`{onnx['logits']}`)" if onnx.get("cut_before_argmax") else "")
    return (f"The model is your ONNX graph `{onnx['file']}`, converted to PyTorch (onnx2torch) for the "
            f"white-box attacks and fed {onnx['formula']}{cut}; logits below the frame's size are "
            f"upsampled ({onnx['upsample']}).")


def write_report(results: dict, out) -> Path:
    out = Path(out)
    s = results["settings"]
    fig = results.get("figures", {})
    h, w = s["frame"]
    lines = ["# edge-guard evaluation: spatial vs scale consistency (Xiao et al., ECCV 2018)", "",
             f"Model `{Path(results['model']['path']).name}` ({results['model']['arch']}, "
             f"{results['model']['parameters'] / 1e6:.2f}M parameters, sha256 "
             f"{results['model']['sha256'][:12]}...), data `{s['data']}` split `{s['split']}`, "
             f"frames resized to {h}x{w}; patch s={s['patch']}, displacement b in [{s['b_low']}, "
             f"{s['b_high']}); {results['sample_sizes']['benign']} benign and "
             f"{results['sample_sizes']['adversarial']} adversarial frames per cell; attacks "
             f"{s['max_iter']} iterations, stopping at {s.get('attack_stop', EARLIER_ATTACK_STOP):.0%} of "
             f"pixels on target; seed {s['seed']}; device {results['device']}; "
             f"{results['seconds']:.0f} s{' (--quick)' if s['quick'] else ''}.", ""]
    if results["model"].get("onnx"):
        lines += [_onnx_note(results["model"]["onnx"]), ""]
    if results.get("cached_only"):
        lines += ["Assembled with `--cached-only` from attacks and scores made earlier (possibly on "
                  "several machines): the seconds above are the assembly's, the attacks' own are in "
                  "the Attacks table.", ""]
    lines += ["## Reading", ""] + reading(results)
    lines += ["", "## Table 1: detection AUC, ours (paper's DRN-D-22 Cityscapes value)", "",
              "Detectors: scale (the paper's baseline), spatial (the paper's pairs: K overlapping "
              "patch pairs, mIoU on their overlaps) and frame (ours: K patches, each against the "
              f"frame's own labels, statistic `{s.get('statistic', 'agreement')}`"
              + (f" >= {s.get('min_pixels')} px" if s.get("statistic") == "miou-min" else "") + "). "
              "Adaptive: the scale detector against the attack on its blurs (all stds at once, L2 "
              "<= 0.06); the spatial detector at K against the attack on K random patches "
              "(K_attack = K, L2 <= 0.06); the frame detector at K against the frame and K random "
              "patches pushed to the target together. The paper's \"Kitty\" target is our `emblem`.", ""]
    lines += _table1(results["table1"], s)
    missing = [r for r in results["table1"] if r.get("auc") is None]
    if missing:
        lines += ["", f"n/a: {missing[0]['missing']} ({len(missing)} cells)."]
    for name in ("roc_frame", "roc_spatial", "roc_scale"):
        if name in fig:
            lines += ["", f"![{name}]({fig[name]})"]
    lines += ["", "## Operating points", "",
              "TPR at a false-positive rate is read off the ROC of these frames; the detection rates "
              "use a threshold picked on the benign scores by `pick_threshold` (min-benign: the "
              "paper's lowest benign score; fpr 0.01 needs at least 100 benign frames).", ""]
    lines += _rates(results["table1"])
    lines += ["", "## Benign scores", "", "| detector | min | 1% | 5% | median | max |", "|---|---|---|---|---|---|"]
    for det, name in (("frame", "K"), ("spatial", "K"), ("scale", "std")):
        for p, d in results["benign"].get(det, {}).items():
            q = d["quantiles"]
            lines.append(f"| {det} {name}={p} | {d['min']:.3f} | {q['0.01']:.3f} | {q['0.05']:.3f} | "
                         f"{q['0.5']:.3f} | {d['max']:.3f} |")
    lines += ["", "## Attacks", ""] + _attacks(results["attacks"])
    if results.get("fig7"):
        lines += ["", "## Fig. 7: AUC of the spatial detector, defender K x attacker K_attack", ""]
        for attack, d in results["fig7"].items():
            lines += [f"{attack}:", "", "| K \\ K_attack | " + " | ".join(map(str, d["k_attack"])) + " |",
                      "|---|" + "---|" * len(d["k_attack"])]
            for k, row in zip(d["k_defender"], d["auc"]):
                lines.append(f"| {k} | " + " | ".join(_f(v, 3) for v in row) + " |")
            lines.append("")
        if "fig7" in fig:
            lines.append(f"![fig7]({fig['fig7']})")
    if results.get("own_adversary"):
        lines += ["", "## Our own adaptive adversary against the spatial detector", "",
                  "Each step draws K_pairs overlapping patch pairs with the detector's own sampler; "
                  "both patches of a pair are pushed toward the matching crop of the target, and a "
                  "symmetric KL term makes their predictions agree on the overlap (what the "
                  "detector compares), on top of the full-frame loss (L2 <= 0.06). Beside it: the "
                  "paper's adaptive adversary (K_attack = K random patches), where it was run.", "",
                  "| attack | K_pairs | defender K | AUC | AUC vs K_attack = K patches | TPR@5% FPR |",
                  "|---|---|---|---|---|---|"]
        for r in results["own_adversary"]:
            lines.append(f"| {r['method']} {r['target']} | {r['k_pairs']} | {r['k_defender']} | "
                         f"{_f(r.get('auc'), 3)} | {_f(r['auc_patches_adversary'], 3)} | "
                         f"{_f(r['tpr_at_fpr']['0.05'])} |")
    if results.get("adaptive_matrix"):
        lines += ["", "## Adaptive attacks on the spatial detectors: every attack against both", "",
                  "spatial{K}: the paper's (the frame and K_attack random patches toward the target, "
                  "patches drawn as the pair detector draws them); pairs{K}: ours against the pair "
                  "detector; frame{K}: the frame and K_attack patches drawn as the frame detector "
                  "draws them, toward the target; agree{K}: the frame toward the target while "
                  "K_attack random patches are made to agree with its prediction. AUC (TPR at 1% "
                  "FPR).", "", "| attack | frames | detector | " + " | ".join(
                      f"K={k}" for k in s["ks"]) + " |", "|---|---|---|" + "---|" * len(s["ks"])]
        by = {}
        for r in results["adaptive_matrix"]:
            by.setdefault((r["attack"], r["detector"]), {})[r["k_defender"]] = r
        for (attack, det), cells in by.items():
            n = next(iter(cells.values()))["adversarial_frames"]
            lines.append(f"| {attack} | {n} | {det} | " + " | ".join(
                f"{_f(cells[k]['auc'], 3)} ({_f(cells[k]['tpr_at_fpr']['0.01'])})" if k in cells else "n/a"
                for k in s["ks"]) + " |")
    if results.get("fig3"):
        f3 = results["fig3"]
        lines += ["", f"## Fig. 3: vote entropy of frame {f3['frame']} over {f3['patches']} random patches", "",
                  "| version | mean entropy (nats) | pixels covered |", "|---|---|---|"]
        for label, m in f3["maps"].items():
            lines.append(f"| {label} | {m['mean_entropy']:.4f} | {m['covered_fraction']:.3f} |")
        lines += ["", f"![fig3]({f3['png']})"]
    if results.get("fig8"):
        f8 = results["fig8"]
        labels = [m["label"] for m in f8["models"]]
        lines += ["", f"## Fig. 8: transferability (target {f8['target']}, {f8['frames']} frames; "
                      f"models {f8['source']})", "", f"Cell (i, j): {f8['convention'].split(': ', 1)[1]}.", ""]
        models = f8["models"]
        if any(m.get("clean_miou") is not None for m in models):
            lines += ["Clean mIoU of each model on the evaluated frames (against their labels): "
                      + ", ".join(f"{m['label']} {_f(m['clean_miou'], 3)}" for m in models) + ".", ""]
        if len({m.get("arch") for m in models}) > 1:
            lines += ["Architectures: " + ", ".join(f"{m['label']} {m['arch']}" for m in models) + ".", ""]
        for method, d in f8["methods"].items():
            for metric, title in (("miou", "normalised mIoU"), ("success", "pixel success")):
                lines += [f"{method}, {title}:", "", "| i \\ j | " + " | ".join(labels) + " |",
                          "|---|" + "---|" * len(labels)]
                for lab, row in zip(labels, d[metric]):
                    lines.append(f"| {lab} | " + " | ".join(_f(v, 3) for v in row) + " |")
                lines.append("")
        if "fig8" in fig:
            lines.append(f"![fig8]({fig['fig8']})")
    lines += ["", "## Settings", "", "```json", json.dumps(s, indent=1), "```", "",
              "Every number above is in `results.json`, and every frame's scores in `scores/`. "
              "Scores: the runtime's spatial-consistency code (sampling, crop, confusion and "
              "statistic, with the PyTorch model); pairs and patches of each image set drawn from "
              "SeedSequence([seed, crc32(set name)]) (patches: [seed, crc32, 1]). Paper: Table 1 of Xiao et al., ECCV 2018 "
              "(DRN-D-22 on Cityscapes)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
