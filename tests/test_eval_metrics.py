"""`edge-guard evaluate`'s metrics, plan, options and readings, on hand-made cases (the
end-to-end run: test_evaluate.py).

The AUC sanity check (one distribution against itself gives 0.5) lives in
tests/test_calibrate.py::test_auc_is_chance_for_one_distribution_and_one_for_separated_sets.
"""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from edge_guard.calibration import evaluate as ev  # noqa: E402
from edge_guard.calibration.report import paper_auc  # noqa: E402
from edge_guard.calibration.transfer import cross_metrics  # noqa: E402
from edge_guard.cli import build_parser  # noqa: E402
from edge_guard.consistency import mean_score  # noqa: E402
from edge_guard.paths import DEFAULT_MODEL  # noqa: E402
from cli_run import run_cli  # noqa: E402

FRAME = (64, 128)
KS, STDS, K_ATTACK = (1, 2), (0.5, 3.0), (0, 1)
BENIGN, ADVERSARIAL = 3, 2



# ---------------------------------------------------------------- metrics

def test_detection_cell_on_separated_and_overlapping_scores():
    rng = np.random.default_rng(0)
    cell = ev.detection_cell(rng.uniform(0.7, 1.0, 120), rng.uniform(0.0, 0.5, 30))
    assert cell["auc"] == 1.0 and cell["tpr_at_fpr"] == {"0.01": 1.0, "0.05": 1.0}
    for rule in ("min-benign", "fpr-0.01"):
        assert cell["detection"][rule]["detection_rate"] == 1.0
    assert cell["detection"]["min-benign"]["benign_fpr"] == 0.0
    assert cell["detection"]["fpr-0.01"]["benign_fpr"] <= 0.01
    # Too few benign frames for a 1% rule: said, not guessed.
    small = ev.detection_cell([0.9, 0.8, 0.95], [0.1, 0.85])
    assert "cannot resolve" in small["detection"]["fpr-0.01"]["error"]
    assert small["auc"] == pytest.approx(5 / 6)
    # min-benign threshold = 0.8: only 0.1 is below it.
    assert small["detection"]["min-benign"]["detection_rate"] == 0.5


def test_tpr_at_fpr_reads_the_roc():
    benign = np.linspace(0.5, 1.0, 100)           # lowest benign 0.5, next 0.505...
    adversarial = np.array([0.1, 0.2, 0.502, 0.9])
    assert ev.tpr_at_fpr(benign, adversarial, 0.0) == 0.5        # below every benign score
    assert ev.tpr_at_fpr(benign, adversarial, 0.01) == 0.75      # one benign frame may go
    assert ev.tpr_at_fpr(benign, adversarial, 1.0) == 1.0


def test_spatial_scores_at_k_are_the_runtime_mean_of_the_first_k_pairs():
    pairs = [[1.0, 0.5, 0.25, 0.0], [0.2, 0.4, 0.6, 0.8]]
    assert ev.spatial_at(pairs, 1).tolist() == [1.0, pytest.approx(0.2)]
    assert ev.spatial_at(pairs, 3)[1] == mean_score([0.2, 0.4, 0.6])
    assert ev.spatial_at(pairs, 4)[0] == 0.4375


def test_fig7_rows_run_from_the_smallest_defender_k_whatever_the_order_given():
    # The report reads the last row as "the largest defender K".
    s = ev.EvalSettings(data="d", out="o", model="m", methods=("dag",), targets=("pure",),
                        ks=(50, 1), k_attack=(5, 0))
    benign = {"spatial": [[0.9] * 50, [0.8] * 50]}
    adv = {"dag_pure_plain": {"spatial": [[0.85] + [0.1] * 49]},
           "dag_pure_spatial5": {"spatial": [[0.1] * 50]}}
    f7 = ev.fig7(s, benign, adv)["dag_pure"]
    assert f7["k_defender"] == [1, 50] and f7["k_attack"] == [0, 5]
    # K=1 sees one pair: 0.85 sits between the benign scores (AUC 0.5); K=50 separates all.
    assert f7["auc"] == [[0.5, 1.0], [1.0, 1.0]]


def test_paper_table1_lookup():
    assert paper_auc("scale", 3, "dag", "emblem", True) == 0.0          # Kitty, adaptive
    assert paper_auc("scale", 5.0, "houdini", "pure", True) == 0.71
    assert paper_auc("spatial", 1, "houdini", "pure", False) == 0.94
    assert paper_auc("spatial", 50, "dag", "emblem", True) == 1.0
    assert paper_auc("spatial", 2, "dag", "pure", False) is None         # not a paper K
    assert paper_auc("spatial", 1, "dag", "strip", False) is None        # not a paper target


def test_transfer_entries_name_the_architecture_of_official_checkpoints():
    from edge_guard.calibration.transfer import transfer_entry

    assert transfer_entry("dla34=w/dla34.pth", None) == ("dla34", Path("w/dla34.pth"))
    assert transfer_entry("w/ours.pt", "drn_d_22") == ("drn_d_22", Path("w/ours.pt"))
    assert transfer_entry("runs/lr=0.1/m.pt", None) == (None, Path("runs/lr=0.1/m.pt"))  # a path, not ARCH=


def test_cross_metrics_exclude_pixels_already_on_target():
    target = np.array([[1, 1, 2, 255]], np.uint8)
    clean = np.array([[1, 0, 0, 0]], np.uint8)      # pixel 0 is already the target: excluded
    pred = np.array([[1, 1, 0, 2]], np.uint8)
    m = cross_metrics(pred, target, clean, 19)
    assert m["pixels"] == 2 and m["success"] == 0.5
    # over pixels 1, 2: pred (1, 0) vs target (1, 2): IoU_1 = 1, IoU_0 = 0, IoU_2 = 0
    assert m["miou"] == pytest.approx(1 / 3)


def test_plan_covers_plain_scale_and_every_k_attack():
    s = ev.EvalSettings(data="d", out="o", model="m", methods=("dag",), targets=("pure", "emblem"),
                        ks=(1, 5), k_attack=(0, 1, 10))
    names = [a.name for a in ev.plan_attacks(s)]
    assert names == ["dag_pure_plain", "dag_emblem_plain", "dag_pure_scale", "dag_emblem_scale",
                     "dag_pure_spatial1", "dag_pure_spatial10", "dag_emblem_spatial1", "dag_emblem_spatial10",
                     # the frame detector's adaptive attacks at their default K_attack = 5
                     "dag_pure_frame5", "dag_emblem_frame5", "dag_pure_agree5", "dag_emblem_agree5"]
    s.k_agree = (0,)
    assert [a.name for a in ev.plan_attacks(s) if a.kind.startswith("frame")] == ["dag_pure_frame5", "dag_emblem_frame5"]
    s.skip = ("fig7",)     # Table 1 still needs K_attack = K where both grids have it
    assert [a.name for a in ev.plan_attacks(s) if a.kind == "spatial"] == ["dag_pure_spatial1", "dag_emblem_spatial1"]
    s.skip = ("adaptive",)
    assert [a.name for a in ev.plan_attacks(s)] == ["dag_pure_plain", "dag_emblem_plain"]


def test_a_plain_attack_key_does_not_depend_on_the_batch():
    def key(a, batch):
        s = ev.EvalSettings(data="d", out="o", model="m", batch=batch)
        return ev.setting_key(a, ev.attack_settings(s, a), "sha")

    plain, scale = ev.AttackSet("dag", "pure"), ev.AttackSet("dag", "pure", "scale")
    assert key(plain, 1) == key(plain, 50) and key(plain, 1).startswith("dag_pure_plain_")
    assert key(scale, 1) != key(scale, 50)
    assert key(plain, 1) != ev.setting_key(plain, ev.attack_settings(
        ev.EvalSettings(data="d", out="o", model="m", max_iter=100), plain), "sha")


def test_reached_cell_scores_only_the_frames_that_reached_the_target():
    benign = [0.8, 0.9, 1.0]
    cell = ev.reached_cell(benign, [0.1, 0.85, 0.95], success=[1.0, 0.5, 0.95])
    # frames 0 and 2: 0.1 ranks below all three benign scores, 0.95 below one of them: 4 of 6
    assert cell == {"min_success": 0.9, "frames": 2, "auc": pytest.approx(4 / 6)}
    assert ev.reached_cell(benign, [0.1], success=[0.3]) == {"min_success": 0.9, "frames": 0, "auc": None}


def test_reading_compares_the_frames_that_reached_the_target_with_all():
    from edge_guard.calibration.report import reading

    def row(auc, reached_auc, reached_frames):
        return {"detector": "spatial", "param": 5, "method": "dag", "target": "pure", "adaptive": False,
                "auc": auc, "paper_auc": None, "adversarial_frames": 10,
                "reached": {"min_success": 0.9, "frames": reached_frames, "auc": reached_auc}}

    def lines(*rows):
        return [line for line in reading({"sample_sizes": {"benign": 100, "adversarial": 10},
                                          "table1": list(rows), "settings": {},
                                          "attacks": {"dag_pure_plain": {"mean": {"success": 0.8}}}})
                if "reached >= 90%" in line]

    (line,) = lines(row(0.78, 0.68, 6))
    assert "in the 1 cell(s) where some did not: mean AUC 0.680 against 0.780" in line
    assert "lowest: 0.680 on 6 frames, K=5 dag pure" in line
    assert lines(row(1.0, 1.0, 10)) == []        # every frame reached its target: nothing to compare
    assert lines(row(0.9, None, 0)) == []


def test_attack_stop_reaches_the_attack_and_its_cache_key():
    from edge_guard.cli.evaluate import settings_from_args

    args = ["evaluate", "--data", ".", "--out", "o", "--attack-stop", "1"]
    s = settings_from_args(build_parser().parse_args(args))
    scale = ev.AttackSet("houdini", "pure", "scale")
    assert s.attack_stop == 1.0 and ev.attack_settings(s, scale).threshold == 1.0
    default = ev.EvalSettings(data="d", out="o", model="m")
    assert default.attack_stop == 0.99 and ev.attack_settings(default, scale).threshold == 0.99
    # an earlier 99% cache is neither reused for nor overwritten by a 100% run
    assert ev.setting_key(scale, ev.attack_settings(s, scale), "sha") != \
        ev.setting_key(scale, ev.attack_settings(default, scale), "sha")


def test_quick_preset_and_explicit_flags():
    from edge_guard.cli.evaluate import settings_from_args

    parser = build_parser()
    s = settings_from_args(parser.parse_args(["evaluate", "--data", ".", "--out", "o", "--quick"]))
    assert (s.benign, s.adversarial, s.frame, s.patch, s.max_iter) == (8, 4, (128, 256), 96, 20)
    assert s.ks == (1, 5) and s.targets == ("pure",) and "fig8" in s.skip and s.k_pairs == (0,)
    assert [a for a in ev.plan_attacks(s) if a.kind == "spatial-pairs"] == []
    s.check()
    s = settings_from_args(parser.parse_args(["evaluate", "--data", ".", "--out", "o", "--quick",
                                              "--benign", "12", "--fig8", "--ks", "1,5,10"]))
    assert s.benign == 12 and s.ks == (1, 5, 10) and "fig8" not in s.skip
    s = settings_from_args(parser.parse_args(["evaluate", "--data", ".", "--out", "o"]))
    assert (s.benign, s.adversarial, s.frame, s.patch, s.b_low, s.b_high) == (100, 50, (512, 1024), 256, 16, 32)
    assert s.ks == (1, 5, 10, 50) and s.stds == (0.5, 3.0, 5.0) and s.k_attack == (0, 1, 5, 10, 50)
    assert s.k_pairs == (5,) and ev.AttackSet("dag", "pure", "spatial-pairs", 5) in ev.plan_attacks(s)
    assert (s.transfer_steps, s.transfer_crop) == (2000, 512)
    s = settings_from_args(parser.parse_args(["evaluate", "--data", ".", "--out", "o", "--transfer-crop", "384",
                                              "--transfer-steps", "900"]))
    assert (s.transfer_steps, s.transfer_crop) == (900, 384)


@pytest.mark.parametrize("extra, message", [
    (["--methods", "fgsm"], "--methods fgsm"),
    (["--targets", "kitty"], "--targets kitty"),
    (["--skip", "fig9"], "--skip fig9"),
    (["--ks", "1,x"], "comma-separated"),
    (["--frame", "64x64", "--patch", "60"], "too small"),
    (["--fig8", "--transfer-models", "a.pt"], "at least 2"),
    (["--fig8", "--transfer-models", f"{DEFAULT_MODEL},gone.pt"], "--transfer-models: gone.pt does not exist"),
    (["--fig8", "--transfer-models", f"{DEFAULT_MODEL},drn_d_99={DEFAULT_MODEL}"],
     "unknown architecture 'drn_d_99'"),
    (["--attack-stop", "1.5"], "--attack-stop 1.5 must be in (0, 1]"),
    (["--k-pairs", "-1"], "--k-pairs needs counts >= 0"),
])
def test_user_mistakes_exit_2_in_one_line(tmp_path, extra, message):
    rc, _, stderr = run_cli(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                          "--quick", "--quiet", *extra])
    assert rc == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("edge-guard evaluate: error:")
    assert message in stderr


def test_fig8_without_training_frames_is_refused_before_any_attack(tmp_path):
    from edge_guard.calibration.data.layout import write_split

    write_split(tmp_path / "data", split="val", frames=2, size=FRAME, seed=3, progress=False)
    out = tmp_path / "o"
    rc, _, stderr = run_cli(["evaluate", "--data", str(tmp_path / "data"), "--out", str(out), "--quick",
                             "--quiet", "--fig8", "--frame", "64x128", "--patch", "32", "--b-low", "4",
                             "--b-high", "8", "--benign", "2", "--adversarial", "1"])
    assert rc == 2 and stderr.count("\n") == 1 and "Fig. 8 trains its models on split 'train'" in stderr
    assert not (out / "attacks").exists()  # found in seconds, not after Table 1's attacks


def test_fig8_clean_miou_is_none_for_a_layout_without_labels(tmp_path):
    import shutil

    from edge_guard.calibration.data.layout import write_split
    from edge_guard.calibration.transfer import _clean_miou

    write_split(tmp_path / "data", split="val", frames=1, size=FRAME, seed=3, progress=False)
    shutil.rmtree(tmp_path / "data" / "gtFine")  # images only: Fig. 8 with --transfer-models needs no labels
    s = ev.EvalSettings(data=str(tmp_path / "data"), out="o", model="m")
    assert _clean_miou(["a model"], s, 1, "cpu", False) == [None]


def test_reading_points_at_the_stop_rule_only_where_the_scale_detector_survives():
    from edge_guard.calibration.report import reading

    def results(adaptive_auc, stop):
        rows = [{"detector": "scale", "std": 3.0, "method": "dag", "target": "pure", "adaptive": adaptive,
                 "auc": auc, "paper_auc": None} for adaptive, auc in ((False, 1.0), (True, adaptive_auc))]
        return {"sample_sizes": {"benign": 100, "adversarial": 50}, "table1": rows,
                "attacks": {"dag_pure_scale": {"mean": {"success": 0.99}}},
                "settings": {"attack_stop": stop}}

    def says(r):
        return any("`--attack-stop 1`" in line for line in reading(r))

    assert says(results(0.99, 0.99))
    assert not says(results(0.40, 0.99))     # broken anyway: the stop rule explains nothing
    assert not says(results(0.99, 1.0))      # already run to every pixel
    assert says({**results(0.99, 0.99), "settings": {}})   # results.json from before the option


def test_tpr_at_fpr_keeps_points_on_a_straight_stretch_of_the_roc():
    # Flagging below 0.2 flags 2 of 6 benign frames (FPR 1/3) and 3 of 5 adversarial ones.
    # Ties between the two sets make diagonal ROC steps; with drop_intermediate, sklearn
    # dropped that point as collinear and the reading was 0.4.
    benign = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.4])
    adversarial = np.array([0.0, 0.0, 0.1, 0.2, 0.5])
    assert ev.tpr_at_fpr(benign, adversarial, 1 / 3) == 0.6


def test_closed_form_auc_and_tpr_equal_sklearns_roc_with_ties():
    """detection_auc and tpr_at_fpr are closed forms (fast enough to bootstrap): they equal
    sklearn's roc_auc_score and every point of roc_curve, ties inside and across included."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from edge_guard.calibration.threshold import detection_auc

    rng = np.random.default_rng(0)
    for _ in range(20):
        b = np.round(rng.normal(0.9, 0.05, 150), 2)           # rounded: ties inside and across
        a = np.round(rng.normal(0.8, 0.1, 40), 2)
        truth = np.r_[np.zeros(b.size), np.ones(a.size)]
        assert detection_auc(b, a) == pytest.approx(roc_auc_score(truth, -np.r_[b, a]), abs=1e-12)
        f, t, _ = roc_curve(truth, -np.r_[b, a], drop_intermediate=False)
        for fpr in (0.0, 0.01, 0.05):
            assert ev.tpr_at_fpr(b, a, fpr) == float(t[f <= fpr + 1e-12].max())
