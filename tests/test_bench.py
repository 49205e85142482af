"""`edge-guard bench`: figures are computed right and the command runs (speed is never asserted)."""

import json

import numpy as np
import onnx
import pytest
from benchmark_scripts import load_benchmark
from cli_run import run_cli
from tiny_bundle import PATCH, make_bundle, make_frame_bundle, make_guard_bundle, tiny_patch_model

from edge_guard.bench import markdown_table, open_bundle, pixel_floor, run_bench, summarise
from edge_guard.bundle import BundleError, load_bundle
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError
from edge_guard.paths import DEFAULT_BUNDLE

FRAME = (48, 64)


def test_summary_of_hand_computed_timings():
    s = summarise([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["mean"] == pytest.approx(22.0)
    assert s["p50"] == pytest.approx(3.0)
    assert s["p99"] == pytest.approx(4.0 + 0.96 * 96.0)  # linear interpolation between 4 and 100
    assert summarise([]) == {"mean": None, "p50": None, "p99": None}


def test_pixel_floor_is_the_papers_and_ours():
    assert pixel_floor(5, 512, (1024, 2048)) == pytest.approx(1.25)   # the paper's setting
    assert pixel_floor(5, 256, (512, 1024)) == pytest.approx(1.25)    # the shipped bundle
    assert pixel_floor(1, 256, (512, 1024)) == pytest.approx(0.25)


def _with_segment(root, frame=FRAME):
    """Add a full-frame graph and its export.json section to a tiny bundle."""
    onnx.save_model(tiny_patch_model(spatial=frame), str(root / "segment.onnx"))
    path = root / "export.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record["segment"] = {"file": "segment.onnx", "sha256": sha256_file(root / "segment.onnx"),
                         "frame_size": list(frame)}
    path.write_text(json.dumps(record))
    return root


GUARD_STAGES = {"resize", "sample", "crop", "infer", "consistency", "total"}  # labels given: no "segment"


def _check_rows(doc, detectors, ks):
    """Every row: the guard's extra (labels given), segmentation + guard, and their ratios."""
    seg = doc["segmentation"]["total"]["mean"]
    assert [(r["detector"], r["k"]) for r in doc["runs"]] == [(d, k) for d in detectors for k in ks]
    for run in doc["runs"]:
        total = run["stages"]["total"]
        assert set(run["stages"]) == GUARD_STAGES
        assert 0 < total["p50"] <= total["p99"] and run["fps"] == pytest.approx(1e3 / total["mean"])
        assert run["overhead"] == pytest.approx(total["mean"] / seg)
        one_call = run["check"]["stages"]
        assert set(one_call) == GUARD_STAGES | {"segment"} and one_call["segment"]["mean"] > 0
        assert run["combined_fps"] == pytest.approx(1e3 / one_call["total"]["mean"])
        per_k = 1 if run["detector"] == "frame" else 2
        assert run["patches"] == per_k * run["k"]
        assert run["pixel_floor"] == pytest.approx(per_k * run["k"] * PATCH ** 2 / (FRAME[0] * FRAME[1]))
        assert 0 < run["consistency_share"] < 1 and run["host_peak_rss_mb"] > 0


def test_bench_of_a_calibrated_bundle_times_both_detectors_and_the_baseline(tmp_path):
    """An older bundle: guard.json names no full-frame graph, export.json's segment record does."""
    root = _with_segment(make_guard_bundle(tmp_path / "b", frame=FRAME))
    lines = []
    doc = run_bench(root, backend="onnxruntime-cpu", pairs=(2, 1), iters=3, warmup=1, threads=1,
                    log=lines.append).as_dict()
    assert doc["settings"]["calibrated"] and doc["segmentation"]["provider"] == "CPUExecutionProvider"
    assert doc["settings"]["detectors"] == ["frame", "pairs"] and doc["notes"] == []
    _check_rows(doc, ["frame", "pairs"], [1, 2])
    # The bundle's own detector keeps its settings; the other is timed uncalibrated on the same model.
    assert [(r["detector"], r["calibrated"], r["statistic"]) for r in doc["runs"][::2]] == [
        ("frame", False, "miou"), ("pairs", True, "miou")]
    assert any(line.startswith("pairs  K=2") and "x segmentation" in line and "segmentation + guard" in line
               for line in lines)
    assert any(line.startswith("frame  K=1") for line in lines)
    table = markdown_table(doc)
    assert table.count("\n| ") == 5 and "| pairs (miou) | 2 | onnxruntime (CPUExecutionProvider)" in table
    assert "| frame (miou) | 1 |" in table


def test_bench_of_a_frame_bundle_uses_its_full_frame_graph(tmp_path):
    """guard.json's model.frame_graph (no export.json at all) is the baseline and the guard's."""
    root = make_frame_bundle(tmp_path / "f", frame=FRAME, k=4, statistic="agreement")
    assert not (root / "export.json").exists()
    doc = run_bench(root, backend="onnxruntime-cpu", pairs=[1, 3], iters=2, warmup=0, threads=1,
                    log=lambda _: None).as_dict()
    _check_rows(doc, ["frame", "pairs"], [1, 3])
    assert [(r["detector"], r["calibrated"], r["statistic"]) for r in doc["runs"][::2]] == [
        ("frame", True, "agreement"), ("pairs", False, "agreement")]
    assert (doc["settings"]["b_low"], doc["settings"]["b_high"]) == (1, 2)   # the paper's, scaled to s=16
    only = run_bench(root, backend="onnxruntime-cpu", pairs=[2], iters=1, warmup=0, threads=1,
                     detectors="frame", log=lambda _: None).as_dict()
    assert [r["detector"] for r in only["runs"]] == ["frame"] and only["settings"]["b_low"] is None


def _export_only(root):
    """A calibrated tiny bundle turned into an export folder: model.onnx + export.json."""
    make_guard_bundle(root, frame=FRAME)
    guard = root / "guard.json"
    (root / "export.json").write_text(json.dumps({"model": json.loads(guard.read_text())["model"]}))
    guard.unlink()
    return root


def test_uncalibrated_export_is_timed_with_the_papers_geometry(tmp_path):
    root = _export_only(tmp_path / "export")
    with pytest.raises(UserError, match="--frame"):
        open_bundle(root)
    bundle = open_bundle(root, frame=FRAME)
    assert (bundle.patch_size, bundle.b_low, bundle.b_high, bundle.frame_size) == (PATCH, 1, 2, FRAME)
    assert bundle.threshold == 0
    lines = []
    doc = run_bench(root, backend="onnxruntime-cpu", frame=FRAME, pairs=[3], iters=2, warmup=0,
                    log=lines.append).as_dict()
    assert not doc["settings"]["calibrated"] and doc["segmentation"] is None
    assert "--frame 48x64" in doc["segmentation_note"] and doc["runs"][0]["overhead"] is None
    assert any(line.startswith("note: no plain-segmentation baseline") for line in lines)
    # No full-frame graph: the pairs detector's extra alone, and a note for the frame detector.
    assert [r["detector"] for r in doc["runs"]] == ["pairs"] and doc["runs"][0]["check"] is None
    assert doc["settings"]["detectors"] == ["pairs"] and "frame detector needs the full-frame graph" in doc["notes"][0]
    with pytest.raises(UserError, match="nothing to time: the frame detector needs the full-frame graph"):
        run_bench(root, backend="onnxruntime-cpu", frame=FRAME, pairs=[1], iters=1, detectors="frame",
                  log=lambda _: None)


def test_segment_graph_of_another_frame_size_is_not_used(tmp_path):
    root = _with_segment(make_guard_bundle(tmp_path / "b", frame=FRAME), frame=(32, 64))
    doc = run_bench(root, backend="onnxruntime-cpu", pairs=[1], iters=1, warmup=0, log=lambda _: None)
    assert doc.segmentation is None and "re-export with --frame" in doc.segmentation_note


@pytest.mark.parametrize("record, words", [
    ([], "must hold a JSON object"),
    ({"segment": "segment.onnx"}, "segment record is malformed"),
    ({"segment": {"frame_size": [48, 64]}}, "segment record is malformed"),
])
def test_malformed_export_json_is_one_line(tmp_path, record, words):
    root = make_guard_bundle(tmp_path / "b", frame=FRAME)
    (root / "export.json").write_text(json.dumps(record))
    if isinstance(record, list):
        with pytest.raises(BundleError, match=words):
            run_bench(root, backend="onnxruntime-cpu", pairs=[1], iters=1, warmup=0, log=lambda _: None)
        return
    doc = run_bench(root, backend="onnxruntime-cpu", pairs=[1], iters=1, warmup=0, log=lambda _: None)
    assert doc.segmentation is None and words in doc.segmentation_note


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(BundleError, match="neither guard.json nor export.json"):
        open_bundle(tmp_path)
    with pytest.raises(BundleError, match="model lacks the key .class_names."):
        open_bundle(make_bundle(tmp_path / "incomplete"), frame=FRAME)  # its model section lacks fields
    with pytest.raises(UserError, match="does not exist"):
        open_bundle(tmp_path / "missing")
    rc, _, err = run_cli(["bench", "--pairs", "0,5"])
    assert rc == 2 and "K values (patches or pairs) must be positive" in err
    rc, out, err = run_cli(["bench", "--bundle", tmp_path / "missing"])
    assert rc == 2 and err.count("\n") == 1 and "does not exist" in err and out == ""
    rc, out, err = run_cli(["bench", "--bundle", tmp_path])   # a folder, but no bundle: nothing printed first
    assert rc == 2 and err.count("\n") == 1 and "neither guard.json" in err and out == ""
    (tmp_path / "file").write_text("")
    rc, out, err = run_cli(["bench", "--json", tmp_path / "file" / "bench.json"])
    assert rc == 2 and "cannot write --json" in err and "K=" not in out   # refused before timing


def test_bench_command_on_the_shipped_bundle_at_a_tiny_size(tmp_path):
    """What CI runs: the real command end to end (it must not fail; speed is not checked)."""
    out_json = tmp_path / "bench.json"
    rc, out, err = run_cli(["bench", "--pairs", "1,2", "--iters", "2", "--warmup", "1", "--threads", "1",
                            "--frame", "240x320", "--json", out_json])
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    assert doc["settings"]["camera_frame"] == [240, 320] and doc["settings"]["frame_size"] == [512, 1024]
    assert doc["segmentation"] is not None, doc["segmentation_note"]   # the shipped bundle has segment.onnx
    assert [(r["detector"], r["k"]) for r in doc["runs"]] == [("frame", 1), ("frame", 2), ("pairs", 1), ("pairs", 2)]
    assert "pairs  K=2" in out and "frame  K=1" in out and "peak host memory" in out


def test_bench_command_detector_and_k_options(tmp_path):
    root = make_frame_bundle(tmp_path / "f", frame=FRAME)
    out_json = tmp_path / "bench.json"
    rc, out, err = run_cli(["bench", "--bundle", root, "--detector", "pairs", "--k", "2", "--iters", "1",
                            "--warmup", "0", "--threads", "1", "--backend", "onnxruntime-cpu", "--json", out_json])
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    assert [(r["detector"], r["k"]) for r in doc["runs"]] == [("pairs", 2)] and "pairs  K=2" in out
    rc, _, err = run_cli(["bench", "--detector", "scale"])
    assert rc == 2 and "invalid choice: 'scale'" in err


def test_full_frame_engine_runs_through_the_tensorrt_runner(tmp_path):
    """The baseline's engine has H != W: TrtRunner sizes its buffers by height and width."""
    import onnxruntime as ort
    from fake_tensorrt import FakeCudart, write_fake_engine

    from edge_guard.backends.tensorrt import TrtRunner

    model = tiny_patch_model(spatial=FRAME)
    path = tmp_path / "segment.engine"
    trt = write_fake_engine(path, model, [(1, *FRAME, 3)] * 3)
    frames = np.random.default_rng(0).integers(0, 256, (2, *FRAME, 3), dtype=np.uint8)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"image": frames})[0]
    with TrtRunner(path, trt=trt, cudart=FakeCudart()) as runner:
        assert (runner.height, runner.width) == FRAME
        assert np.array_equal(runner(frames), ref)


def test_shipped_bundle_carries_its_full_frame_graph():
    record = json.loads((DEFAULT_BUNDLE / "export.json").read_text())
    seg = record["segment"]
    assert seg["frame_size"] == [512, 1024] and (DEFAULT_BUNDLE / seg["file"]).is_file()
    assert seg["verification"]["label_agreement"] >= 0.999


def test_benchmark_grid_script_writes_results_table_and_plot(tmp_path):
    """benchmarks/bench_grid.py at a tiny size, as CI runs it (figures are not checked)."""
    grid = load_benchmark("bench_grid")
    assert grid.main(["--out", str(tmp_path), "--k", "1,2", "--iters", "1", "--warmup", "0",
                      "--no-kernels"]) == 0
    docs = json.loads((tmp_path / "results.json").read_text())
    assert docs[0]["label"].startswith("edge_small, ONNX Runtime CPU") and len(docs[0]["runs"]) == 4
    table = (tmp_path / "table.md").read_text()
    stat = load_bundle(DEFAULT_BUNDLE).statistic   # the shipped bundle's, which both detectors are timed with
    assert f"| frame ({stat}) | 2 | onnxruntime" in table and f"| pairs ({stat}) | 2 | onnxruntime" in table
    assert (tmp_path / "latency_vs_k.png").stat().st_size > 1000


def test_run_fps_script_streams_a_generated_clip(tmp_path, capsys):
    """benchmarks/run_fps.py: `edge-guard run` on a rendered clip, one summary line per K."""
    script = load_benchmark("run_fps")
    out = tmp_path / "run_fps.json"
    assert script.main(["--frames", "3", "--k", "1", "2", "--size", "128", "256",
                        "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["k"] for r in rows] == [1, 2] and all(r["frames_checked"] == 3 for r in rows)
    assert all(r["fps_checked"] > 0 and r["latency_ms"]["p50"] > 0 for r in rows)
    shipped = load_bundle(DEFAULT_BUNDLE)
    assert all((r["detector"], r["segments"]) == (shipped.method, shipped.frame_graph_path is not None)
               for r in rows)
    assert f"{shipped.method} K=2" in capsys.readouterr().out
    # A frame-detector bundle: the guard segments the frame in the same call.
    bundle = make_frame_bundle(tmp_path / "f", frame=FRAME)
    assert script.main(["--frames", "2", "--k", "3", "--size", "96", "128", "--threads", "1",
                        "--bundle", str(bundle), "--json", str(out)]) == 0
    row, = json.loads(out.read_text())
    assert (row["detector"], row["statistic"], row["segments"], row["k"]) == ("frame", "agreement", True, 3)
    assert "frame K=3" in capsys.readouterr().out and row["frames_flagged"] == 0


def test_attack_table_fills_evaluates_folders_in_rounds(tmp_path, capsys):
    """benchmarks/attack_table.py: every cell gets its frames round by round, into the folders
    an evaluation of the same settings uses, and a second run attacks nothing."""
    pytest.importorskip("torch")
    from edge_guard.calibration.data.layout import write_split
    from edge_guard.calibration.evaluate import AttackSet, EvalSettings, attack_settings, setting_key
    from edge_guard.calibration.models import build_segmenter
    from edge_guard.calibration.models.checkpoint import save_checkpoint
    from edge_guard.engine_cache import sha256_file

    write_split(tmp_path / "data", split="val", frames=2, size=(64, 128), seed=3, progress=False)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_segmenter("edge_small", width=16, dilations=(1,)))
    table = load_benchmark("attack_table")
    args = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "eval"), "--model", str(ckpt),
            "--frames", "2", "--round", "1", "--targets", "pure,strip", "--adaptive", "plain,scale",
            "--k-attack", "2", "--frame", "64x128", "--max-iter", "2", "--quiet"]
    assert table.main(args) == 0
    out = capsys.readouterr()
    assert out.err.count("round 1:") == 8 and out.err.count("round 2:") == 8
    rows = [line for line in out.out.splitlines() if line.startswith("| dag") or line.startswith("| houdini")]
    assert len(rows) == 8 and all(line.split("|")[4].strip() == "2" for line in rows)
    assert "| houdini | strip | scale | 2 |" in out.out

    s = EvalSettings(data="d", out="o", model="m", frame=(64, 128), patch=32, b_low=2, b_high=4, max_iter=2)
    for a in (AttackSet("dag", "pure"), AttackSet("houdini", "strip", "scale")):
        folder = tmp_path / "eval" / "attacks" / setting_key(a, attack_settings(s, a), sha256_file(ckpt))
        assert len(json.loads((folder / "manifest.json").read_text())["images"]) == 2
    manifests = {p: p.read_text() for p in (tmp_path / "eval").rglob("manifest.json")}
    assert table.main(args) == 0                                   # resumes: nothing left to attack
    assert {p: p.read_text() for p in manifests} == manifests
    assert "| frames >= 99% |" in capsys.readouterr().out

    # another stop threshold is another setting: its cells are not filled by the 99% ones
    assert table.main([*args, "--attack-stop", "1", "--report-only"]) == 0
    out = capsys.readouterr().out
    assert "| frames >= 100% |" in out and out.count("| 0 | not run |") == 8
    with pytest.raises(UserError) as bad:
        table.main([*args, "--attack-stop", "0"])
    assert "--attack-stop 0.0 must be in (0, 1]" in str(bad.value)


@pytest.mark.parametrize("extra,message", [
    (("--targets", "kitty"), "--targets 'kitty': choose among"),
    (("--adaptive", "none"), "--adaptive 'none': choose among"),
    (("--methods", ""), "--methods '': choose among"),
])
def test_attack_table_names_what_it_does_not_know(tmp_path, extra, message):
    pytest.importorskip("torch")
    table = load_benchmark("attack_table")
    with pytest.raises(UserError, match=message):  # before any attack or "not run" row
        table.main(["--out", str(tmp_path), "--report-only", *extra])


@pytest.mark.parametrize("extra,message", [
    (("--round", "0", "--report-only"), "--round: '0' must be > 0"),
    (("--frame", "512", "--report-only"), "'512' is not a size"),
    (("--k-attack", "0", "--report-only"), "--k-attack: '0' must be > 0"),
    (("--model", "/nonexistent.pt", "--report-only"), "/nonexistent.pt does not exist"),
    ((), "--data is needed to attack"),
])
def test_attack_table_refuses_bad_numbers_and_paths(tmp_path, capsys, extra, message):
    """A zero round attacked nothing without a word; '512' was an unpacking traceback;
    attacking without --data is refused (only --report-only does without it)."""
    pytest.importorskip("torch")
    table = load_benchmark("attack_table")
    with pytest.raises(SystemExit) as exit_:
        table.main(["--out", str(tmp_path), *extra])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_benchmark_scripts_report_user_mistakes_in_one_line(tmp_path):
    """The scripts share the CLI's rule: a user mistake is one line on stderr and status 2."""
    import subprocess
    import sys

    script = load_benchmark("attack_table").__file__
    proc = subprocess.run([sys.executable, script, "--data", str(tmp_path / "nowhere"), "--out",
                           str(tmp_path / "eval"), "--frames", "1", "--targets", "pure", "--methods", "dag",
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("round ")]
    assert errors == [f"attack_table.py: error: data folder {tmp_path / 'nowhere'} does not exist"]
