"""The frame detector's study scripts (benchmarks/conditions.py, frame_study.py) at a tiny size,
and the camera conditions they and the training augmentation share."""

import gzip
import json

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

from edge_guard.calibration.data.conditions import CONDITIONS, apply_condition, gain, photometric
from tiny_bundle import make_frame_bundle

FRAME = (48, 64)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split

    root = tmp_path_factory.mktemp("scenes")
    write_split(root, split="val", frames=3, size=FRAME, seed=2, progress=False)
    return root


def test_conditions_are_the_named_camera_changes():
    x = np.full((8, 8, 3), 100, np.uint8)
    assert apply_condition("dark0.4", x).max() == 40 and apply_condition("bright1.5", x).min() == 150
    assert apply_condition("dark0.25", x).max() == 25 and apply_condition("clean", x) is x
    assert gain(np.full((2, 2, 3), 200, np.uint8), 1.5).max() == 255           # clipped
    assert np.array_equal(apply_condition("blur7", x), x)                         # flat stays flat
    noisy = apply_condition("noise8", np.full((64, 64, 3), 128, np.uint8), np.random.default_rng(0))
    assert 6 < noisy.astype(float).std() < 10
    assert set(CONDITIONS) == {"jpeg30", "noise8", "dark0.4", "dark0.25", "bright1.5", "blur7"}
    with pytest.raises(ValueError, match="unknown condition 'fog'"):
        apply_condition("fog", x)


def test_photometric_augmentation_is_off_at_zero_and_varies_exposure():
    rng = np.random.default_rng(0)
    x = np.full((16, 16, 3), 120, np.uint8)
    assert photometric(x, rng, 0.0) is x
    means = [photometric(x, rng, 1.0).mean() for _ in range(40)]
    assert min(means) < 60 and max(means) > 150                                   # 0.2x .. 1.6x


def test_scores_at_k_refuse_a_k_above_what_was_scored():
    from edge_guard.calibration.eval_scores import frame_at, spatial_at

    with pytest.raises(ValueError, match="holds 2 comparisons, K=3"):
        spatial_at([[0.5, 0.7]], 3)
    with pytest.raises(ValueError, match="holds 1 comparisons, K=2"):
        frame_at([[[[0, 0, 4]]]], 2, 2)
    assert frame_at([[[[0, 0, 4]], [[0, 1, 4]]]], 2, 2).tolist() == [0.5]


def test_conditions_script_needs_a_bundle_that_segments(scenes, tmp_path):
    from tiny_bundle import make_guard_bundle

    script = load_benchmark("conditions")
    pairs = make_guard_bundle(tmp_path / "p", frame=FRAME)   # no full-frame graph
    with pytest.raises(SystemExit, match="no bundle has a full-frame graph"):
        script.main(["--data", str(scenes), "--split", "val", "--frames", "1", "--bundle", str(pairs)])


def test_conditions_script_counts_false_alarms_per_condition(scenes, tmp_path, capsys):
    script = load_benchmark("conditions")
    bundle = make_frame_bundle(tmp_path / "f", frame=FRAME, threshold=0.99)
    out = tmp_path / "c.json"
    assert script.main(["--data", str(scenes), "--split", "val", "--frames", "3", "--bundle", str(bundle),
                        "--conditions", "dark0.25", "--threads", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    row = doc["summary"]["dark0.25"][f"frame:{bundle}"]
    # the per-pixel model labels patches as it labels the frame: never a false alarm
    assert row == {"flagged": 0, "frames": 3, "false_alarm_rate": 0.0, "median_score": 1.0}
    assert doc["per_frame"]["clean"]["clean_agreement"] == [1.0] * 3
    assert 0 <= doc["summary"]["dark0.25"]["pixel_accuracy"] <= 1
    assert "brightness 0.25x (night)" in capsys.readouterr().out


def test_frame_study_scores_candidates_and_keeps_its_confusions(scenes, tmp_path):
    torch = pytest.importorskip("torch")
    from edge_guard.calibration.models import build_segmenter
    from edge_guard.calibration.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", build_segmenter("edge_small", width=16, dilations=(1, 2)))
    # an "attack" folder: the same frames, inverted, with an attack manifest
    from edge_guard.calibration.data.folders import open_dataset, read_image
    import cv2

    adv = tmp_path / "adv"
    adv.mkdir()
    frames = open_dataset(scenes, "val", labeled=False)
    images = {}
    for name, path in zip(frames.names, frames.image_paths):
        cv2.imwrite(str(adv / f"{name}.png"), 255 - read_image(path)[:, :, ::-1])
        images[name] = {"adversarial": f"{name}.png"}
    (adv / "manifest.json").write_text(json.dumps({"images": images}))
    study = load_benchmark("frame_study")
    out = tmp_path / "study"
    args = ["--model", str(ckpt), "--data", str(scenes), "--benign", "3", "--attacks", str(adv),
            "--conditions", "dark0.4", "--patches", "32,24", "--k", "2", "--k-max", "3",
            "--frame", f"{FRAME[0]}x{FRAME[1]}", "--bootstrap", "5", "--out", str(out)]
    assert study.main(args) == 0
    with gzip.open(out / "confusions.json.gz", "rt") as f:
        doc = json.load(f)
    assert set(doc["sets"]) == {"benign", "benign:dark0.4", "adv"}
    for rec in doc["sets"].values():
        for s in ("32", "24"):
            assert len(rec["confusions"][s]) == 3 and all(len(c) == 3 for c in rec["confusions"][s])
            # every patch's confusion covers its s x s pixels
            assert all(sum(n for _, _, n in patch) == int(s) ** 2 for c in rec["confusions"][s] for patch in c)
    result = json.loads((out / "study.json").read_text())
    assert len(result["rows"]) == 2 * 5 and {r["patch"] for r in result["rows"]} == {32, 24}
    assert all(set(r["attacks"]) == {"adv"} and set(r["conditions"]) == {"dark0.4"} for r in result["rows"])
    before = (out / "confusions.json.gz").read_bytes()
    assert study.main(args[:args.index("--attacks")] + args[args.index("--conditions"):]) == 0
    with gzip.open(out / "confusions.json.gz", "rt") as f:   # the attack set, not asked for, stays
        assert set(json.load(f)["sets"]) == {"benign", "benign:dark0.4", "adv"}
    assert study.main(["--rescore", str(out), "--k", "4"]) == 2   # above K_max
    assert study.main(["--rescore", str(out), "--k", "3", "--bootstrap", "5"]) == 0
    assert json.loads((out / "study.json").read_text())["k"] == 3
    with gzip.open(out / "confusions.json.gz", "rt") as f:
        assert json.load(f)["sets"] == json.loads(gzip.decompress(before))["sets"]


def _demo_folder(root, flagged, alarms):
    root.mkdir()
    events = [{"type": "start", "detector": "frame", "statistic": "miou-min", "k": 2, "threshold": 0.5}]
    events += [{"type": "frame", "frame": i, "score": 0.2 if i in flagged else 0.9, "adversarial": i in flagged,
                "scores": [0.1, 0.3]} for i in range(10)]
    events += [{"type": "alarm", "state": "raised", "frame": a} for a in alarms]
    (root / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return root


def test_demo_runs_counts_flags_and_benign_alarms(tmp_path, capsys):
    demo = load_benchmark("demo_runs")
    a = _demo_folder(tmp_path / "a", flagged={4, 5, 6}, alarms=[6])       # the attack's own alarm
    b = _demo_folder(tmp_path / "b", flagged={1, 5, 6}, alarms=[2, 9])    # 2: before the attack
    out = tmp_path / "runs.json"
    assert demo.main([str(a), str(b), "--attacked", "4-6", "--json", str(out)]) == 0
    s = json.loads(out.read_text())["summary"]
    assert (s["attacked_flagged"], s["attacked_frames"]) == (5, 6)
    assert (s["benign_flagged"], s["benign_frames"]) == (1, 14)
    # 9's window (5-9) holds attacked frames 5 and 6: not benign; 2's (-2..2) holds none.
    assert s["benign_alarms"] == [[2, 2]]
    assert "attacked flagged 5/6" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="events.jsonl not found"):
        demo.main([str(tmp_path / "missing")])


def _scores_cache(path, frames, agree):
    """A fake evaluate score cache: per frame 2 patches whose confusion is `agree` pixels of
    class 0 on class 0 and 100 - agree of class 0 seen as class 1; pair mIoUs equal to agree/100."""
    cm = [[0, 0, agree], [0, 1, 100 - agree]] if agree < 100 else [[0, 0, 100]]
    scores = {"names": [f"f{i}" for i in range(frames)], "frame": [[cm, cm]] * frames,
              "spatial": [[agree / 100, agree / 100]] * frames}
    path.write_text(json.dumps({"key": {}, "scores": scores}))


def test_frame_tables_rank_attacks_below_benign_frames(tmp_path):
    tables = load_benchmark("frame_tables")
    out = tmp_path / "eval"
    (out / "scores").mkdir(parents=True)
    _scores_cache(out / "scores" / "benign.json", 4, 100)
    _scores_cache(out / "scores" / "dag_pure_plain_x.json", 3, 40)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "guard.json").write_text(json.dumps({"model": {"num_classes": 3}, "detector": {
        "method": "frame", "statistic": "agreement", "k": 2, "threshold": 0.5}}))
    md, js, summary = tmp_path / "t.md", tmp_path / "t.json.gz", tmp_path / "s.md"
    assert tables.main([str(out), "--ks", "1,2", "--bundle", str(bundle), "--bootstrap", "20",
                        "--md", str(md), "--json", str(js), "--summary", str(summary)]) == 0
    doc = json.loads(gzip.decompress(js.read_bytes()))
    rows = {(r["detector"], r["statistic"], r["k"]): r for r in doc["rows"]}
    agree = rows[("frame", "agreement", 2)]
    assert agree["auc"] == 1.0 and agree["tpr_1pct"] == 1.0 and agree["bundle_rate"] == 1.0
    assert agree["bundle_benign_rate"] == 0.0 and "bundle_rate" not in rows[("frame", "agreement", 1)]
    # miou: class 0 IoU 0.4, class 1 IoU 0 -> 0.2; benign 1.0.
    assert doc["scores"]["attacks"]["dag_pure_plain_x"]["frame"]["miou"]["2"] == [0.2] * 3
    assert doc["scores"]["benign"]["eval"]["pairs"]["1"] == [1.0] * 4
    assert "| dag_pure_plain_x | 3 | frame | agreement | 2 | 1.000 [1.00, 1.00] |" in md.read_text()
    # The bundle's K is 2; K=4 was not scored and the pairs K defaults to 5: n/a, not an error.
    assert ("| dag_pure_plain_x | 3 | 1.000 [1.00, 1.00] / 1.00, 1.00 at thr | n/a | n/a |"
            in summary.read_text())
    with pytest.raises(SystemExit, match="benign.json not found"):
        tables.main([str(tmp_path / "nothing")])
