"""The grid of issue 23: AUC intervals (by hand and against the scalar metrics), the attack
cache of perturbations, the plan printed before a grid, the fixed-budget cells per budget."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge_guard.calibration.eval_tables import auc_interval, tpr_at_fpr
from edge_guard.calibration.threshold import detection_auc
from edge_guard.errors import DataError


# ---------------------------------------------------------------- intervals

def test_interval_of_a_perfect_separation_is_a_point():
    ci = auc_interval([0.8, 0.9, 0.95], [0.1, 0.2])
    assert ci["auc_ci"] == [1.0, 1.0] and ci["tpr_1pct_ci"] == [1.0, 1.0]


def test_interval_by_hand():
    # benign {0, 1} resampled: both 0 (p 1/4, AUC 0), mixed (1/2, AUC 0.5), both 1 (1/4, AUC 1);
    # the adversarial 0.5 is always itself: the 95% interval spans [0, 1].
    ci = auc_interval([0.0, 1.0], [0.5], resamples=4000)
    assert ci["auc_ci"] == [0.0, 1.0]
    # ties count half: equal scores everywhere are chance, in every resample
    assert auc_interval([0.3, 0.3], [0.3, 0.3])["auc_ci"] == [0.5, 0.5]


def test_interval_resamples_equal_the_scalar_metrics():
    """The vectorised bootstrap is the scalar AUC and TPR@1% on each resample."""
    rng = np.random.default_rng(3)
    b, a = rng.normal(1, 1, 120), rng.normal(0, 1, 9)
    ci = auc_interval(b, a, resamples=300, seed=5)
    draw = np.random.default_rng(5)
    bi, ai = draw.integers(0, b.size, (300, b.size)), draw.integers(0, a.size, (300, a.size))
    aucs = [detection_auc(b[i], a[j]) for i, j in zip(bi, ai)]
    tprs = [tpr_at_fpr(b[i], a[j], 0.01) for i, j in zip(bi, ai)]
    assert ci["auc_ci"] == pytest.approx(list(np.percentile(aucs, [2.5, 97.5])))
    assert ci["tpr_1pct_ci"] == pytest.approx(list(np.percentile(tprs, [2.5, 97.5])))
    assert ci["auc_ci"][0] < detection_auc(b, a) < ci["auc_ci"][1]
    # the same scores from 8x the frames: the same AUC, a narrower interval
    narrow = auc_interval(b, np.tile(a, 8), resamples=300)["auc_ci"]
    assert narrow[1] - narrow[0] < (ci["auc_ci"][1] - ci["auc_ci"][0]) / 2


# ---------------------------------------------------------------- the cache of perturbations

def _frame(tmp_path, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    src = tmp_path / f"clean{seed}.png"
    cv2.imwrite(str(src), cv2.cvtColor(clean, cv2.COLOR_RGB2BGR))
    return src, clean


def test_a_perturbation_rebuilds_the_frame_bit_for_bit(tmp_path):
    from edge_guard.calibration.attacks.store import read_adversarial, write_adversarial
    from edge_guard.calibration.attacks.manifest import frame_sha256

    src, clean = _frame(tmp_path)
    rng = np.random.default_rng(1)
    adv = np.clip(clean.astype(int) + rng.integers(-8, 9, clean.shape), 0, 255).astype(np.uint8)
    rec = write_adversarial(tmp_path / "out", Path("a/f.png"), clean, adv, "delta")
    assert rec["stored"] == "delta" and rec["adversarial"] == "a/f.delta.xz"
    rec.update(source=str(src), source_sha256=frame_sha256(src))
    assert np.array_equal(read_adversarial(tmp_path / "out", rec), adv)
    # the clean frame changed: refused in one line, not a wrong frame
    import cv2

    cv2.imwrite(str(src), cv2.cvtColor(255 - clean, cv2.COLOR_RGB2BGR))
    with pytest.raises(DataError, match="is not the frame") as err:
        read_adversarial(tmp_path / "out", rec)
    assert "\n" not in str(err.value)
    src.unlink()
    with pytest.raises(DataError, match="which is gone"):
        read_adversarial(tmp_path / "out", rec)


def test_a_perturbation_beyond_127_levels_is_kept_whole(tmp_path):
    from edge_guard.calibration.attacks.store import read_adversarial, write_adversarial

    src, clean = _frame(tmp_path)
    adv = clean.copy()
    adv[0, 0, 0] = 0 if clean[0, 0, 0] >= 128 else 255  # a change of >= 128 levels
    rec = write_adversarial(tmp_path / "out", Path("f.png"), clean, adv, "delta")
    assert rec == {"adversarial": "f.png", "stored": "png"}
    assert np.array_equal(read_adversarial(tmp_path / "out", rec), adv)


# ---------------------------------------------------------------- the plan, budgets, one grid

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split
    from edge_guard.calibration.models import build_segmenter
    from edge_guard.calibration.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("grid")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_segmenter("edge_small", width=16, dilations=(1, 2)))
    write_split(root / "data", split="val", frames=3, size=(64, 128), seed=5, progress=False)
    return root, ckpt


def _grid(root, ckpt, out, *extra):
    return ["evaluate", "--model", str(ckpt), "--data", str(root / "data"), "--out", str(out),
            "--frame", "64x128", "--patch", "48", "--b-low", "4", "--b-high", "8", "--ks", "1,2",
            "--stds", "3", "--k-attack", "0", "--k-pairs", "0", "--k-frame", "0", "--k-agree", "0",
            "--methods", "dag,segpgd", "--linf", "4/255,8/255", "--targets", "pure", "--max-iter", "3",
            "--benign", "3", "--adversarial", "2", "--skip", "fig3,fig8", "--device", "cpu", "--quiet", *extra]


def test_plan_prints_every_cell_and_attacks_nothing(tiny):
    from cli_run import run_cli

    root, ckpt = tiny
    out = root / "planned"
    rc, stdout, stderr = run_cli(_grid(root, ckpt, out, "--plan"))
    assert rc == 0, stderr
    cells = ["dag_pure_plain", "segpgd4_pure_plain", "segpgd8_pure_plain", "dag_pure_scale",
             "segpgd4_pure_scale", "segpgd8_pure_scale"]
    assert f"plan: {len(cells)} cells x 2 frames at 64x128, 3 benign frames" in stdout
    assert all(f"  {c} " in stdout for c in cells) and "estimate:" in stdout
    assert not (out / "attacks").exists() and not (out / "results.json").exists()
    timed = json.loads((out / "plan.json").read_text())["timed"]
    assert set(timed["plain"]) == {"dag", "segpgd"} and all(v > 0 for v in timed["plain"].values())


def test_grid_runs_its_budgets_and_resumes_from_its_cache(tiny):
    from cli_run import run_cli

    root, ckpt = tiny
    out = root / "grid"
    rc, stdout, stderr = run_cli(_grid(root, ckpt, out))
    assert rc == 0, stderr
    res = json.loads((out / "results.json").read_text())
    assert res["attacked"] == 6 * 2 and len(res["plan"]["cells"]) == 6
    for name, budget in (("segpgd4_pure_plain", 4), ("segpgd8_pure_plain", 8)):
        cell = res["attacks"][name]
        assert cell["settings"]["linf"] == pytest.approx(budget / 255) and cell["stored"] == ["delta"]
        assert cell["mean"]["linf"] * 255 <= budget + 1e-4  # float32 and cell["attack_seconds"] > 0
    rows = [r for r in res["table1"] if r["auc"] is not None]
    assert {r["method"] for r in rows} == {"dag", "segpgd4", "segpgd8"}
    assert all(r["auc_ci"][0] <= r["auc"] <= r["auc_ci"][1] for r in rows)
    assert "[" in (out / "report.md").read_text().split("AUC [95% CI]")[1]
    # a second run over the same grid attacks nothing, and says so in its plan
    rc, stdout, stderr = run_cli(_grid(root, ckpt, out, "--plan"))
    assert "6 cell(s) cached, 0 frame attacks to run" in stdout
    rc, _, stderr = run_cli(_grid(root, ckpt, out))
    again = json.loads((out / "results.json").read_text())
    assert rc == 0 and again["attacked"] == 0
    assert [r["auc"] for r in again["table1"]] == [r["auc"] for r in res["table1"]]


def test_bad_budgets_are_one_line_errors(tiny):
    from cli_run import run_cli

    root, ckpt = tiny
    for bad in ("8/0", "x", "0.5/255"):
        rc, _, stderr = run_cli(_grid(root, ckpt, root / "bad", "--linf", bad, "--plan"))
        assert rc == 2 and stderr.count("\n") == 1 and "--linf" in stderr, (bad, stderr)


def test_plain_only_methods_get_plain_cells_and_no_adaptive_tables():
    """adv_lib's attacks have no adaptive variant: the plan, Fig. 7, our adversary's table and
    Table 1 leave them out of the adaptive cells (and say why) instead of failing on them."""
    from edge_guard.calibration.eval_plan import EvalSettings, plan_attacks
    from edge_guard.calibration.eval_tables import fig7, own_adversary, table1

    s = EvalSettings(data="d", out="o", model="m", methods=("dag", "adv_lib.dag"), targets=("pure",),
                     ks=(1,), stds=(3.0,), k_attack=(0, 1), k_pairs=(1,), k_frame=(), k_agree=())
    s.check()
    names = [a.name for a in plan_attacks(s)]
    assert names == ["dag_pure_plain", "adv_lib.dag_pure_plain", "dag_pure_scale", "dag_pure_spatial1",
                     "dag_pure_pairs1"]
    benign = {"names": ["a", "b"], "spatial": [[0.9], [0.8]], "scale": {"3": [0.9, 0.8]}}
    adv = {n: {"spatial": [[0.1]], "scale": {"3": [0.1]}} for n in names}
    assert list(fig7(s, benign, adv)) == ["dag_pure"]
    assert {r["method"] for r in own_adversary(s, benign, adv)} == {"dag"}
    rows = [r for r in table1(s, benign, adv) if r["method"] == "adv_lib.dag"]
    assert [r["auc"] for r in rows if not r["adaptive"]] == [1.0, 1.0]
    assert all(r["auc"] is None and "no adaptive variant" in r["missing"] for r in rows if r["adaptive"])
