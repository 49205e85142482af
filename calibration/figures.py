"""PNG figures of ``edge-guard evaluate`` (matplotlib, Agg backend: no display needed).

Each function takes numbers already in results.json and writes one PNG; it returns the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    from edge_guard.errors import require

    matplotlib = require("matplotlib", "offline", "evaluation figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def roc_figure(roc: dict, detector: str, path: Path) -> Path | None:
    """One panel per attack (method_target): a curve per detector parameter, solid for the
    plain attack, dashed for the adaptive one."""
    plt = _plt()
    curves = {}
    for key, c in roc.items():
        det, param, attack, kind = key.split(":")
        if det == detector:
            curves.setdefault(attack, []).append((param, kind, c))
    if not curves:
        return None
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False)
    name = "std" if detector == "scale" else "K"
    for ax, (attack, items) in zip(axes[0], sorted(curves.items())):
        params = sorted({p for p, _, _ in items}, key=float)
        colours = {p: plt.cm.viridis(i / max(1, len(params) - 1)) for i, p in enumerate(params)}
        for p, kind, c in sorted(items, key=lambda it: (float(it[0]), it[1])):
            ax.step(c["fpr"], c["tpr"], where="post", color=colours[p],
                    linestyle="-" if kind == "plain" else "--",
                    label=f"{name}={p} {'adaptive' if kind != 'plain' else 'plain'} (AUC {c['auc']:.2f})")
        ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
        ax.set_title(f"{detector} detector: {attack}")
        ax.set_xlabel("false-positive rate (benign)")
        ax.set_ylabel("detection rate (adversarial)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def fig7_figure(fig7: dict, path: Path) -> Path:
    """AUC heat maps: defender K (rows) x attacker K_attack (columns), one per attack."""
    plt = _plt()
    n = len(fig7)
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.4), squeeze=False)
    for ax, (attack, d) in zip(axes[0], sorted(fig7.items())):
        grid = np.array(d["auc"], np.float64)
        im = ax.imshow(grid, vmin=min(0.5, float(np.nanmin(grid))), vmax=1.0, cmap="RdYlGn", origin="lower")
        ax.set_xticks(range(len(d["k_attack"])), [str(k) for k in d["k_attack"]])
        ax.set_yticks(range(len(d["k_defender"])), [str(k) for k in d["k_defender"]])
        ax.set_xlabel("K_attack (0 = plain attack)")
        ax.set_ylabel("K (defender)")
        ax.set_title(attack)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="detection AUC")
    return _save(fig, path)


def entropy_figure(images: dict, maps: dict, path: Path, frame: str, patches: int) -> Path:
    """Fig. 3: each version of the frame above its per-pixel vote-entropy map."""
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 4.2), squeeze=False)
    vmax = np.log(19.0)
    cmap = plt.get_cmap("inferno").with_extremes(bad="0.85")  # grey: pixels no patch covered
    for col, label in enumerate(images):
        axes[0, col].imshow(images[label])
        axes[0, col].set_title(label, fontsize=9)
        im = axes[1, col].imshow(maps[label], cmap=cmap, vmin=0, vmax=vmax)
        axes[1, col].set_title(f"mean entropy {np.nanmean(maps[label]):.3f}", fontsize=8)
        for ax in axes[:, col]:
            ax.axis("off")
    fig.colorbar(im, ax=axes[1].tolist(), shrink=0.8, label="self-entropy (nats)")
    fig.suptitle(f"{frame}: vote entropy over {patches} random patches", fontsize=10)
    return _save(fig, path)


def fig8_figure(fig8: dict, path: Path) -> Path:
    """Per method: success-rate and normalised-mIoU matrices, cell (i, j) = attack on j,
    evaluated on i."""
    plt = _plt()
    labels = [m["label"] for m in fig8["models"]]
    methods = sorted(fig8["methods"])
    fig, axes = plt.subplots(len(methods), 2, figsize=(7.5, 3.4 * len(methods)), squeeze=False)
    for r, method in enumerate(methods):
        for c, metric in enumerate(("miou", "success")):
            ax = axes[r, c]
            grid = np.array(fig8["methods"][method][metric], np.float64)
            ax.imshow(grid, vmin=0, vmax=1, cmap="Blues")
            ax.set_xticks(range(len(labels)), labels)
            ax.set_yticks(range(len(labels)), labels)
            ax.set_xlabel("attacked model (j)")
            ax.set_ylabel("evaluated on (i)")
            ax.set_title(f"{method}: {'normalised mIoU' if metric == 'miou' else 'pixel success'}", fontsize=9)
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if v > 0.6 else "black")
    fig.suptitle(f"transferability, target {fig8['target']}", fontsize=10)
    return _save(fig, path)


def write_figures(results: dict, out: Path) -> dict:
    """Every figure results.json has numbers for; {figure: file name}."""
    out = Path(out)
    written = {}
    for det in ("frame", "spatial", "scale"):
        p = roc_figure(results["roc"], det, out / f"roc_{det}.png")
        if p is not None:
            written[f"roc_{det}"] = p.name
    if results.get("fig7"):
        written["fig7"] = fig7_figure(results["fig7"], out / "fig7_k_attack.png").name
    if results.get("fig8"):
        written["fig8"] = fig8_figure(results["fig8"], out / "fig8_transfer.png").name
    return written
