"""`edge-guard evaluate` end to end on a tiny grid: every cell, the report, resume, cached-only,
Fig. 8 training (the metrics on hand-made cases: test_eval_metrics.py)."""

import json
from pathlib import Path
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from edge_guard.calibration import evaluate as ev  # noqa: E402
from cli_run import run_cli  # noqa: E402

FRAME = (64, 128)
KS, STDS, K_ATTACK = (1, 2), (0.5, 3.0), (0, 1)
BENIGN, ADVERSARIAL = 3, 2



# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split
    from edge_guard.calibration.models import build_segmenter, create_model
    from edge_guard.calibration.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("evaluate")
    ckpts = []
    for seed in range(3):
        torch.manual_seed(seed)
        ckpts.append(save_checkpoint(root / f"tiny{seed}.pt",
                                     build_segmenter("edge_small", width=16, dilations=(1, 2))))
    # Fig. 8 across architectures: an official (raw state_dict) DRN-D-22 beside our checkpoints.
    torch.manual_seed(3)
    torch.save(create_model("drn_d_22", num_classes=19).state_dict(), root / "drn_raw.pth")
    write_split(root / "data", split="val", frames=BENIGN, size=FRAME, seed=5, progress=False)
    write_split(root / "data", split="train", frames=2, size=FRAME, seed=6, progress=False)
    return {"root": root, "ckpts": ckpts, "data": root / "data"}


def _args(ws, out):
    return ["evaluate", "--model", str(ws["ckpts"][0]), "--data", str(ws["data"]), "--out", str(out),
            "--frame", f"{FRAME[0]}x{FRAME[1]}", "--patch", "48", "--b-low", "4", "--b-high", "8",
            "--ks", ",".join(map(str, KS)), "--stds", ",".join(map(str, STDS)),
            "--k-attack", ",".join(map(str, K_ATTACK)), "--k-pairs", "1", "--k-frame", "1", "--k-agree", "2",
            "--methods", "dag,houdini", "--targets", "pure",
            "--max-iter", "3", "--benign", str(BENIGN), "--adversarial", str(ADVERSARIAL),
            "--entropy-patches", "6", "--transfer-models",
            ",".join([str(ws["ckpts"][0]), str(ws["ckpts"][1]), f"drn_d_22={ws['root'] / 'drn_raw.pth'}"]),
            "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def evaluated(workspace):
    out = workspace["root"] / "eval"
    t0 = time.perf_counter()
    rc, stdout, stderr = run_cli(_args(workspace, out))
    first = time.perf_counter() - t0
    assert rc == 0, stderr
    return out, stdout, first


def test_results_have_every_cell(evaluated):
    out, stdout, _ = evaluated
    assert "report.md" in stdout and "Table 1" in stdout
    res = json.loads((out / "results.json").read_text())
    assert res["format"] == "edge-guard-evaluate" and res["sample_sizes"] == {"benign": BENIGN, "adversarial": ADVERSARIAL}
    rows = res["table1"]
    # params (stds, pairs' K, frame's K) x methods x targets x adaptive
    assert len(rows) == (len(STDS) + 2 * len(KS)) * 2 * 1 * 2
    for r in rows:
        if r["detector"] == "spatial" and r["adaptive"] and r["param"] not in K_ATTACK:
            assert r["auc"] is None and "K_attack=2" in r["missing"]
            continue
        if r["detector"] == "frame" and r["adaptive"] and r["param"] != 1:   # --k-frame 1
            assert r["auc"] is None and "--k-frame" in r["missing"]
            continue
        assert 0.0 <= r["auc"] <= 1.0
        assert set(r["tpr_at_fpr"]) == {"0.01", "0.05"}
        assert r["benign_frames"] == BENIGN and r["adversarial_frames"] == ADVERSARIAL
        assert "threshold" in r["detection"]["min-benign"] and "error" in r["detection"]["fpr-0.01"]
        reached = r["reached"]
        success = np.array(res["attacks"][r["attack"]]["success"])
        assert len(success) == ADVERSARIAL and reached["frames"] == int((success >= 0.9).sum())
        assert (reached["auc"] is None) == (reached["frames"] == 0)
    by = {(r["detector"], r["param"], r["method"], r["adaptive"]): r for r in rows}
    assert by[("spatial", 1, "dag", False)]["paper_auc"] == 0.91
    assert by[("scale", 3.0, "houdini", True)]["paper_auc"] == 0.97
    assert set(res["attacks"]) == {f"{m}_pure_{k}" for m in ("dag", "houdini")
                                   for k in ("plain", "scale", "spatial1", "pairs1", "frame1", "agree2")}
    assert res["attacks"]["dag_pure_agree2"]["settings"]["adaptive"] == "frame-agree"
    # Every adaptive attack on a spatial detector against both of them, at every defender K.
    matrix = {(r["attack"], r["detector"], r["k_defender"]) for r in res["adaptive_matrix"]}
    assert matrix == {(f"{m}_pure_{k}", d, kd) for m in ("dag", "houdini") for k in ("spatial1", "pairs1", "frame1", "agree2")
                      for d in ("spatial", "frame") for kd in KS}
    assert res["benign"]["frame"]["1"]["max"] <= 1.0 and set(res["benign"]) >= {"spatial", "frame", "scale"}
    own = res["own_adversary"]
    assert [(r["k_defender"], r["method"], r["k_pairs"]) for r in own] == \
        [(k, m, 1) for k in KS for m in ("dag", "houdini")]
    for r in own:
        assert 0 <= r["auc"] <= 1 and r["adversarial_frames"] == ADVERSARIAL
        # the paper's adversary beside it where it ran (K_attack = K = 1), not at K = 2
        assert (r["auc_patches_adversary"] is None) == (r["k_defender"] not in K_ATTACK)
    assert res["attacks"]["dag_pure_pairs1"]["settings"]["adaptive"] == "spatial-pairs"
    for a in res["attacks"].values():
        assert a["frames"] == ADVERSARIAL and 0 <= a["mean"]["success"] <= 1
    for attack in ("dag_pure", "houdini_pure"):
        f7 = res["fig7"][attack]
        assert f7["k_attack"] == [0, 1] and f7["k_defender"] == [1, 2]
        assert np.array(f7["auc"]).shape == (2, 2)
    # Fig. 7's K_attack = 0 column is Table 1's plain attack at the same K.
    assert res["fig7"]["dag_pure"]["auc"][0][0] == by[("spatial", 1, "dag", False)]["auc"]
    f8 = res["fig8"]
    assert [m["label"] for m in f8["models"]] == ["A", "B", "C"] and f8["target"] == "pure"
    for m in ("dag", "houdini"):
        assert np.array(f8["methods"][m]["success"]).shape == (3, 3)
        assert np.array(f8["methods"][m]["miou"]).shape == (3, 3)
    assert all(0 <= m["clean_miou"] <= 1 for m in f8["models"])  # the generated frames are labelled
    assert [m["arch"] for m in f8["models"]] == ["edge_small", "edge_small", "drn_d_22"]
    assert res["fig3"]["patches"] == 6 and set(res["fig3"]["maps"]) == {"benign", "dag_pure", "houdini_pure"}
    assert len(res["roc"]) == sum(r["auc"] is not None for r in rows)
    for name in ("roc_frame.png", "roc_spatial.png", "roc_scale.png", "fig7_k_attack.png", "fig3_entropy.png",
                 "fig8_transfer.png"):
        assert (out / name).stat().st_size > 1000, name
    assert set(res["figures"].values()) >= {"roc_spatial.png", "fig7_k_attack.png", "fig8_transfer.png"}


def test_report_is_generated_from_the_numbers(evaluated):
    out, _, _ = evaluated
    report = (out / "report.md").read_text()
    res = json.loads((out / "results.json").read_text())
    assert "## Reading" in report and "below a report's minimum" in report
    assert "## Table 1" in report and "## Fig. 7" in report and "## Fig. 3" in report and "## Fig. 8" in report
    assert "## Our own adaptive adversary" in report and "| dag pure | 1 | 2 |" in report
    assert "## Adaptive attacks on the spatial detectors" in report and "| dag_pure_agree2 | 2 | frame |" in report
    assert "statistic `miou-min`" in report and "| frame K=1 |" in report
    assert "AUC on frames >= 90% on target (n) |" in report
    assert any(line.startswith("- Our own adversary") for line in report.splitlines())
    for png in ("roc_spatial.png", "fig7_k_attack.png", "fig3_entropy.png", "fig8_transfer.png"):
        assert f"]({png})" in report
    a = res["fig8"]["models"][0]
    assert f"Clean mIoU of each model on the evaluated frames (against their labels): A {a['clean_miou']:.3f}, B " in report
    assert "Architectures: A edge_small, B edge_small, C drn_d_22." in report
    lo = min(m["clean_miou"] for m in res["fig8"]["models"])
    fig8_line = next(line for line in report.splitlines() if line.startswith("- Fig. 8 dag:"))
    assert f"the models here segment clean frames at mIoU {lo:.2f}-" in fig8_line
    cell = next(r for r in res["table1"] if r["detector"] == "spatial" and r["param"] == 1 and not r["adaptive"])
    assert f"{cell['auc']:.2f} (0.91)" in report
    compared = [r for r in res["table1"] if r.get("auc") is not None and r["paper_auc"] is not None]
    near = sum(abs(r["auc"] - r["paper_auc"]) <= 0.05 for r in compared)
    assert f"{near} of {len(compared)} cells" in report


def test_a_second_run_reuses_attacks_and_scores(evaluated, workspace):
    out, _, first = evaluated
    before = {p: p.stat().st_mtime_ns for p in (out / "attacks").rglob("*.png")}
    before.update({p: p.stat().st_mtime_ns for p in (out / "attacks").rglob("*.xz")})
    before.update({p: p.stat().st_mtime_ns for p in (out / "scores").glob("*.json")})
    auc_before = [r.get("auc") for r in json.loads((out / "results.json").read_text())["table1"]]
    t0 = time.perf_counter()
    rc, _, stderr = run_cli(_args(workspace, out))
    second = time.perf_counter() - t0
    assert rc == 0, stderr
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before                                  # no frame re-attacked, no score recomputed
    results = json.loads((out / "results.json").read_text())
    assert results["attacked"] == 0 and results["cache"]["bytes_per_frame"] > 0
    assert [r.get("auc") for r in results["table1"]] == auc_before
    assert second < first


def test_cached_only_rebuilds_the_results_without_the_images(evaluated, workspace, tmp_path):
    """What comes back from a GPU lease (manifests, scores, figures; no adversarial frames)
    is enough to rebuild the report, and a missing setting is named."""
    import shutil

    out, _, _ = evaluated
    merged = tmp_path / "merged"
    shutil.copytree(out, merged, ignore=lambda d, names: [n for n in names if n.endswith((".png", ".xz"))
                                                          and Path(d) != out])
    assert not list((merged / "attacks").rglob("*.xz")) and (merged / "fig3_entropy.png").is_file()
    args = [a if a != str(out) else str(merged) for a in _args(workspace, out)]
    rc, _, stderr = run_cli(args + ["--cached-only", "--skip", "fig8"])
    assert rc == 0, stderr
    original = json.loads((out / "results.json").read_text())
    rebuilt = json.loads((merged / "results.json").read_text())
    assert rebuilt["cached_only"] is True and original["cached_only"] is False
    assert [r.get("auc") for r in rebuilt["table1"]] == [r.get("auc") for r in original["table1"]]
    assert rebuilt["fig7"] == original["fig7"] and rebuilt["fig3"] == original["fig3"]
    assert "fig8" not in rebuilt and "Assembled with `--cached-only`" in (merged / "report.md").read_text()

    # the plain rows alone need no adaptive folder (a CPU's first reading)
    rc, _, stderr = run_cli(args + ["--cached-only", "--skip", "adaptive,fig8"])
    assert rc == 0, stderr
    plain_only = json.loads((merged / "results.json").read_text())
    assert "fig7" not in plain_only and "own_adversary" not in plain_only
    assert set(plain_only["attacks"]) == {"dag_pure_plain", "houdini_pure_plain"}
    assert [r["auc"] for r in plain_only["table1"] if not r["adaptive"]] == \
        [r["auc"] for r in original["table1"] if not r["adaptive"]]
    assert all(r["auc"] is None and "--skip adaptive" in r["missing"]
               for r in plain_only["table1"] if r["adaptive"])
    report = (merged / "report.md").read_text()
    assert "| detector | dag pure | houdini pure |\n" in report and "(adaptive) |" not in report

    gone = next((merged / "attacks").glob("houdini_pure_scale_*"))
    shutil.rmtree(gone)
    rc, _, stderr = run_cli(args + ["--cached-only", "--skip", "fig8"])
    assert rc == 2 and stderr.count("\n") == 1
    assert "1 cached result(s) missing" in stderr and f"attacks/{gone.name}" in stderr


def test_fig8_trains_its_models_when_none_are_given(workspace, tmp_path):
    from edge_guard.calibration.models.checkpoint import load_segmenter
    from edge_guard.calibration.transfer import _train_models

    s = ev.EvalSettings(data=str(workspace["data"]), out=str(tmp_path), model=str(workspace["ckpts"][0]),
                        transfer_steps=2, transfer_crop=32, quick=True)
    _, meta = load_segmenter(workspace["ckpts"][0])
    paths = _train_models(s, meta, progress=False, log=lambda *a: None)
    seeds = [load_segmenter(p)[1]["train"]["config"]["seed"] for p in paths]
    assert [p.name for p in paths] == ["model_A.pt", "model_B.pt", "model_C.pt"] and seeds == [1, 2, 3]
    assert load_segmenter(paths[0])[1]["model_kwargs"] == meta["model_kwargs"]
    stamp = [p.stat().st_mtime_ns for p in paths]
    _train_models(s, meta, progress=False, log=lambda *a: None)      # trained already: reused
    assert [p.stat().st_mtime_ns for p in paths] == stamp


def test_fig8_resumes_a_model_whose_training_was_interrupted(workspace, tmp_path, monkeypatch):
    from edge_guard.calibration import train as train_mod
    from edge_guard.calibration import transfer
    from edge_guard.calibration.models.checkpoint import load_segmenter

    s = ev.EvalSettings(data=str(workspace["data"]), out=str(tmp_path), model=str(workspace["ckpts"][0]),
                        transfer_steps=4, transfer_crop=32, quick=True)
    _, meta = load_segmenter(workspace["ckpts"][0])
    monkeypatch.setattr(transfer, "SAVE_EVERY", 1)
    poly_lr = train_mod.poly_lr

    def interrupted(base, step, steps):
        if step == 3:
            raise KeyboardInterrupt
        return poly_lr(base, step, steps)

    monkeypatch.setattr(train_mod, "poly_lr", interrupted)
    with pytest.raises(KeyboardInterrupt):
        transfer._train_models(s, meta, progress=False, log=lambda *a: None)
    path = tmp_path / "transfer" / "models" / "model_A.pt"
    assert load_segmenter(path)[1]["train"]["step"] == 3
    monkeypatch.setattr(train_mod, "poly_lr", poly_lr)
    said = []
    paths = transfer._train_models(s, meta, progress=False, log=said.append)
    assert "Fig. 8: resuming model A at step 3 (seed 1, 4 steps)" in said[0]
    state = load_segmenter(paths[0])[1]["train"]
    assert state["step"] == 4 and [h["from_step"] for h in state["history"]] == [0, 3]
    # Another run's checkpoint (here: another step count) is not resumed but trained afresh.
    s.transfer_steps = 2
    said.clear()
    transfer._train_models(s, meta, progress=False, log=said.append)
    assert "training model A" in said[0]
    state = load_segmenter(paths[0])[1]["train"]
    assert state["step"] == 2 and [h["from_step"] for h in state["history"]] == [0]
