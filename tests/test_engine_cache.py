"""Engine naming, sidecars, cache invalidation and the build-engine flow with a fake TensorRT."""

import json
from pathlib import Path

import numpy as np
import pytest
from fake_tensorrt import FakeCudart, make_fake_trt, write_fake_engine
from tiny_bundle import CLASSES, PATCH, make_bundle, make_frame_bundle, tiny_patch_model, write_frames

from edge_guard.engine_cache import (DeviceInfo, engine_filename, engine_path, frame_profile, onnx_name,
                                     profile_shapes, sanitize_gpu_name, sidecar_path, timing_cache_path,
                                     validate_engine, write_sidecar)
from edge_guard.errors import UserError

ORIN = DeviceInfo("Orin", (8, 7), "10.3.0")
H100 = DeviceInfo("NVIDIA H100 80GB HBM3", (9, 0), "11.1.0")


# ---------------------------------------------------------------- naming


def test_engine_name_carries_precision_sm_trt_and_gpu():
    assert engine_filename("fp16", ORIN) == "model.fp16.sm87.trt10.3.0.orin.engine"
    assert engine_filename("int8", H100) == "model.int8.sm90.trt11.1.0.h100-80gb-hbm3.engine"
    assert sanitize_gpu_name("Orin (nvgpu)") == "orin-nvgpu"
    assert sanitize_gpu_name("NVIDIA GeForce RTX 4090") == "rtx-4090"
    assert sanitize_gpu_name("../../etc/passwd") == "etc-passwd"
    p = engine_path("/b", "fp32", ORIN)
    assert str(p) == "/b/engines/model.fp32.sm87.trt10.3.0.orin.engine"
    assert sidecar_path(p).name == p.name + ".json"
    # The full-frame graph's engines live beside the patch graph's under their own name.
    assert engine_filename("fp16", ORIN, "frame") == "segment.fp16.sm87.trt10.3.0.orin.engine"
    assert onnx_name("fp32", "segment.onnx") == "segment.onnx"
    assert onnx_name("int8", "segment.onnx") == "segment.int8.onnx"
    assert onnx_name("fp16", "model.onnx") == "model.fp16.onnx"
    with pytest.raises(UserError, match="unknown graph 'frames'"):
        engine_filename("fp16", ORIN, "frames")
    assert timing_cache_path("/b", ORIN).name == "timing.sm87.trt10.3.0.orin.cache"
    with pytest.raises(UserError, match="precision"):
        engine_filename("bf16", ORIN)


def test_frame_detector_and_frame_graph_profiles():
    assert profile_shapes(64, max_pairs=8, opt_pairs=5, per_k=1) == {
        "min": [1, 64, 64, 3], "opt": [5, 64, 64, 3], "max": [8, 64, 64, 3]}
    assert frame_profile(48, 64) == {"min": [1, 48, 64, 3], "opt": [1, 48, 64, 3], "max": [1, 48, 64, 3]}


def test_profile_shapes():
    prof = profile_shapes(512, max_pairs=50, opt_pairs=10)
    assert prof == {"min": [2, 512, 512, 3], "opt": [20, 512, 512, 3], "max": [100, 512, 512, 3]}
    assert profile_shapes(64, 8, 50)["opt"][0] == 16  # opt clamped to max
    with pytest.raises(UserError):
        profile_shapes(64, 0, 1)


# ---------------------------------------------------------------- sidecar / validation


@pytest.fixture
def built(tmp_path):
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx-bytes")
    eng = engine_path(tmp_path, "fp16", ORIN)
    eng.parent.mkdir()
    eng.write_bytes(b"E" * 1000)
    write_sidecar(eng, onnx_path=onnx_path, precision="fp16", device=ORIN, input_name="image",
                  profile=profile_shapes(PATCH, 50, 10), verification={"label_agreement": 1.0})
    return eng, onnx_path


def test_valid_engine_passes(built):
    eng, onnx_path = built
    check = validate_engine(eng, onnx_path, ORIN, "fp16", batch=100, patch=PATCH)
    assert check.ok, check.reason
    assert check.sidecar["verification"]["label_agreement"] == 1.0


@pytest.mark.parametrize("damage, reason", [
    ("truncate", "truncated"),
    ("flip", "sha256"),
    ("no_sidecar", "no sidecar"),
    ("bad_sidecar", "unreadable"),
    ("onnx_changed", "changed since"),
    ("no_engine", "no engine file"),
])
def test_damaged_engine_is_refused(built, damage, reason):
    eng, onnx_path = built
    if damage == "truncate":
        eng.write_bytes(eng.read_bytes()[:500])
    elif damage == "flip":
        eng.write_bytes(b"F" + eng.read_bytes()[1:])
    elif damage == "no_sidecar":
        sidecar_path(eng).unlink()
    elif damage == "bad_sidecar":
        sidecar_path(eng).write_text("{not json")
    elif damage == "onnx_changed":
        onnx_path.write_bytes(b"other onnx")
    elif damage == "no_engine":
        eng.unlink()
    check = validate_engine(eng, onnx_path, ORIN, "fp16")
    assert not check.ok and reason in check.reason


@pytest.mark.parametrize("profile", ["fp16", [2, 64], {"min": [2, 64], "max": [2]}, {"max": ["2", 64]}])
def test_sidecar_with_a_malformed_profile_is_refused_not_raised(built, profile):
    eng, onnx_path = built
    meta = json.loads(sidecar_path(eng).read_text())
    meta["profile"] = profile
    sidecar_path(eng).write_text(json.dumps(meta))
    check = validate_engine(eng, onnx_path, ORIN, "fp16", batch=10, patch=PATCH)
    assert not check.ok and "no valid input profile" in check.reason


def test_engine_for_other_device_precision_or_batch_is_refused(built):
    eng, onnx_path = built
    assert "built for" in validate_engine(eng, onnx_path, DeviceInfo("Orin", (8, 7), "10.4.0")).reason
    assert "not int8" in validate_engine(eng, onnx_path, ORIN, "int8").reason
    assert "larger --max-pairs" in validate_engine(eng, onnx_path, ORIN, batch=102).reason
    assert "patches" in validate_engine(eng, onnx_path, ORIN, patch=2 * PATCH).reason
    assert validate_engine(eng, onnx_path, ORIN, batch=2).ok


# ---------------------------------------------------------------- build-engine with a fake TensorRT


@pytest.fixture
def bundle(tmp_path):
    root = make_bundle(tmp_path / "bundle", guard={"detector": {"k": 3, "b_low": 1, "b_high": 3,
                                                                "threshold": 0.5},
                                                   "frame": {"height": 24, "width": 40}})
    frames = write_frames(tmp_path / "frames", count=3)
    return root, frames


def _build(root, frames, trt, precision="fp16", runner_factory=None, **kw):
    from edge_guard.engines.trt_build import build_engine
    from edge_guard.backends.trt_engine import TrtRunner

    if runner_factory is None:
        runner_factory = lambda p, t: TrtRunner(p, trt=t, cudart=FakeCudart())  # noqa: E731
    kw.setdefault("max_pairs", 4)
    return build_engine(root, precision, calib_frames=frames, calib_count=3, calib_pairs=2,
                        trt=trt, device=ORIN, runner_factory=runner_factory, log=lambda *a: None, **kw)


def test_build_engine_writes_checked_engine_sidecar_and_timing_cache(bundle):
    root, frames = bundle
    trt = make_fake_trt("10.3.0")
    summary = _build(root, frames, trt, "fp16", workspace_mib=256)
    eng = root / "engines" / "model.fp16.sm87.trt10.3.0.orin.engine"
    assert summary["engine"] == str(eng) and eng.is_file()
    assert (root / "model.fp16.onnx").is_file() and (root / "model.fp16.json").is_file()
    side = json.loads(sidecar_path(eng).read_text())
    assert side["onnx_file"] == "model.fp16.onnx" and side["precision"] == "fp16"
    assert side["profile"] == {"min": [2, PATCH, PATCH, 3], "opt": [6, PATCH, PATCH, 3],
                               "max": [8, PATCH, PATCH, 3]}
    assert side["verification"]["passed"] and side["verification"]["label_agreement"] >= 0.99
    # What the builder was asked: strongly typed network (TensorRT 10), workspace, profile.
    assert trt.calls.network_flags == [1 << 1]   # STRONGLY_TYPED is 1 (0 is EXPLICIT_BATCH)
    assert trt.calls.workspace == [("WORKSPACE", 256 << 20)]
    assert trt.calls.profiles == [{"image": ((2, PATCH, PATCH, 3), (6, PATCH, PATCH, 3), (8, PATCH, PATCH, 3))}]
    assert trt.calls.ignore_mismatch == [False]
    assert timing_cache_path(root, ORIN).read_bytes().startswith(b"timing-cache:")
    assert validate_engine(eng, root / "model.fp16.onnx", ORIN, "fp16", batch=8, patch=PATCH).ok

    # Cached and valid: no rebuild.
    again = _build(root, frames, trt, "fp16")
    assert again["cached"] and trt.calls.builds == 1
    # Truncated engine: detected and rebuilt, with the saved timing cache fed back in.
    eng.write_bytes(eng.read_bytes()[:-10])
    _build(root, frames, trt, "fp16")
    assert trt.calls.builds == 2 and trt.calls.timing_in[-1].startswith(b"timing-cache:")
    assert validate_engine(eng, root / "model.fp16.onnx", ORIN, "fp16").ok


def test_tensorrt_11_network_has_no_typing_flag_and_fp32_clears_tf32(bundle):
    root, frames = bundle
    trt = make_fake_trt("11.1.0")
    device = DeviceInfo("Orin", (8, 7), "11.1.0")
    from edge_guard.engines.trt_build import build_engine
    from edge_guard.backends.trt_engine import TrtRunner

    build_engine(root, "fp32", calib_frames=frames, calib_count=3, calib_pairs=2, max_pairs=4,
                 trt=trt, device=device, log=lambda *a: None,
                 runner_factory=lambda p, t: TrtRunner(p, trt=t, cudart=FakeCudart()))
    assert trt.calls.network_flags == [0] and trt.calls.cleared == ["TF32"]
    assert (root / "engines" / "model.fp32.sm87.trt11.1.0.orin.engine").is_file()


def test_engine_that_disagrees_with_fp32_is_refused_and_not_kept(bundle):
    root, frames = bundle
    from edge_guard.engines.trt_build import EngineCheckError

    def wrong(path, trt):
        return lambda patches: np.full(patches.shape[:3], 1, np.int32)

    with pytest.raises(EngineCheckError, match="refused") as err:
        _build(root, frames, make_fake_trt(), "fp16", runner_factory=wrong)
    assert "labels agree" in str(err.value) and "\n" not in str(err.value)
    assert not list((root / "engines").glob("*.engine*"))


@pytest.mark.parametrize("trt_kwargs, message", [
    ({"version": "8.6.1"}, "too old"),
    ({"fail_parse": True}, "parser rejects model.onnx: In node 3"),
    ({"fail_build": True}, "could not build"),
])
def test_build_failures_are_one_line_user_errors(bundle, trt_kwargs, message):
    root, frames = bundle
    with pytest.raises(UserError, match=message):
        _build(root, frames, make_fake_trt(**trt_kwargs), "fp32")
    assert not list((root / "engines").glob("*.engine"))


def test_an_engine_is_built_only_from_the_graph_the_bundle_names(tmp_path):
    """A swapped model.onnx, or a guard.json naming a file outside the bundle, is refused
    before any build (one line), as the runtime refuses them at load."""
    import onnx

    from edge_guard.engines.bundle_info import read_bundle

    root = make_bundle(tmp_path / "b", guard={"detector": {}})
    assert read_bundle(root).onnx_path == root / "model.onnx"
    onnx.save_model(tiny_patch_model(PATCH, CLASSES + 1), str(root / "model.onnx"))
    with pytest.raises(UserError, match="is not the model guard.json was calibrated for"):
        read_bundle(root)
    doc = json.loads((root / "guard.json").read_text())
    doc["model"]["file"] = "../elsewhere.onnx"
    (root / "guard.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="only a file name inside the bundle"):
        read_bundle(root)


def test_read_only_bundle_is_refused_before_building(bundle, monkeypatch):
    from edge_guard.engines import trt_build

    root, frames = bundle
    real_access = trt_build.os.access
    monkeypatch.setattr(trt_build.os, "access", lambda path, mode: False if mode == trt_build.os.W_OK
                        else real_access(path, mode))  # (root may write anywhere: simulate a RO mount)
    with pytest.raises(UserError, match="cannot write into .*copy the bundle to a writable folder"):
        _build(root, frames, make_fake_trt(), "fp16")
    assert not (root / "model.fp16.onnx").exists()


def test_max_pairs_below_bundle_k_is_refused(bundle):
    root, frames = bundle
    with pytest.raises(UserError, match="below the bundle's K"):
        _build(root, frames, make_fake_trt(), "fp32", max_pairs=2)


def test_runner_batches_pads_and_matches_onnxruntime(tmp_path):
    """TrtRunner over the fake engine: chunks above the profile max, pads below its min."""
    import onnxruntime as ort

    from edge_guard.backends.trt_engine import TrtRunner

    model = tiny_patch_model()
    path = tmp_path / "e.engine"
    trt = write_fake_engine(path, model, [(2, PATCH, PATCH, 3), (4, PATCH, PATCH, 3), (4, PATCH, PATCH, 3)])
    cudart = FakeCudart()
    patches = np.random.default_rng(0).integers(0, 256, (9, PATCH, PATCH, 3), dtype=np.uint8)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"image": patches})[0]
    with TrtRunner(path, trt=trt, cudart=cudart) as runner:
        assert (runner.min_batch, runner.max_batch, runner.patch) == (2, 4, PATCH)
        out = runner(patches)          # 4 + 4 + 1 (padded to 2)
        assert out.dtype == np.int32 and np.array_equal(out, ref)
        with pytest.raises(UserError, match="patches must be"):
            runner(patches[:, :8])
    assert len(cudart.freed) == 2 and not cudart.buffers
    assert out.max() < CLASSES


def test_first_use_engine_build_needs_no_offline_code(tmp_path):
    """build-engine and the TensorRT backend's first use run on the vehicle (JetPack): the
    engine is built and checked here (on the fake TensorRT) with PyTorch and the offline
    packages (calibration, export) unimportable."""
    from blocked_imports import run_without

    proc = run_without(["torch", "edge_guard.calibration", "edge_guard.export"], f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from fake_tensorrt import FakeCudart, fake_kernels, make_fake_trt
        from tiny_bundle import make_guard_bundle
        from trt_fixtures import ORIN
        from edge_guard.backends.tensorrt import TensorRTRunner
        from edge_guard.bundle import load_bundle
        from edge_guard.cli import build_parser

        root = make_guard_bundle(Path({str(tmp_path / "bundle")!r}))
        runner = TensorRTRunner(load_bundle(root), trt=make_fake_trt("10.3.0"), cudart=FakeCudart(),
                                device_info=ORIN, kernels=fake_kernels, precision="fp32", build=True,
                                log=lambda *a: None)
        with runner:
            assert runner.engine_file.is_file()
        build_parser()
        offline = [m for m in sys.modules if m.split(".")[0] == "torch"
                   or m.startswith(("edge_guard.calibration", "edge_guard.export"))]
        assert not offline, offline
    """)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- a bundle with a full-frame graph


@pytest.fixture
def frame_bundle(tmp_path):
    root = make_frame_bundle(tmp_path / "fb", model="contrast")  # frame detector, K = 4
    return root, write_frames(tmp_path / "frames", count=3, size=(48, 64))


def test_build_engine_builds_the_full_frame_engine_too(frame_bundle):
    from edge_guard.backends.trt_cache import find_engine
    from edge_guard.bundle import load_bundle

    root, frames = frame_bundle
    trt = make_fake_trt("10.3.0")
    summary = _build(root, frames, trt, "fp32")
    patch, frame = (root / "engines" / f"{stem}.fp32.sm87.trt10.3.0.orin.engine" for stem in ("model", "segment"))
    assert summary["engine"] == str(patch) and summary["frame"]["engine"] == str(frame)
    assert trt.calls.builds == 2
    # The frame detector's patch engine runs K patches, not 2K; the frame engine one frame.
    assert trt.calls.profiles == [{"image": ((1, PATCH, PATCH, 3), (4, PATCH, PATCH, 3), (4, PATCH, PATCH, 3))},
                                  {"image": ((1, 48, 64, 3),) * 3}]
    side = json.loads(sidecar_path(frame).read_text())
    assert side["graph"] == "frame" and side["onnx_file"] == "segment.onnx"
    assert side["verification"]["passed"] and side["verification"]["label_agreement"] == 1.0
    assert side["verification"]["frames"] == 3
    bundle = load_bundle(root)
    assert find_engine(bundle, ORIN, 4, graph="frame").path == frame
    assert find_engine(bundle, ORIN, 4).path == patch
    assert not validate_engine(frame, root / "segment.onnx", ORIN, batch=1, frame=(64, 48)).ok
    again = _build(root, frames, trt, "fp32")
    assert again["frame"]["cached"] and again["cached"] and trt.calls.builds == 2


def test_build_engine_fp16_makes_and_checks_segment_fp16(frame_bundle):
    from edge_guard.backends.trt_cache import find_engine
    from edge_guard.bundle import load_bundle
    from edge_guard.engine_cache import made_from, sha256_file

    root, frames = frame_bundle
    summary = _build(root, frames, make_fake_trt("10.3.0"), "fp16")
    assert summary["frame"]["onnx"] == str(root / "segment.fp16.onnx")
    assert summary["frame"]["onnx_check"]["passed"]
    assert made_from(root / "segment.fp16.onnx") == sha256_file(root / "segment.onnx")
    record = json.loads((root / "segment.fp16.json").read_text())
    assert record["source_file"] == "segment.onnx" and record["onnxruntime_check"]["passed"]
    assert find_engine(load_bundle(root), ORIN, 4, "fp16", graph="frame").precision == "fp16"


def test_full_frame_engine_that_disagrees_is_refused_and_not_kept(frame_bundle):
    from edge_guard.engines.trt_build import EngineCheckError
    from edge_guard.backends.trt_engine import TrtRunner

    root, frames = frame_bundle

    def factory(path, trt):
        runner = TrtRunner(path, trt=trt, cudart=FakeCudart())
        if path.name.startswith("segment."):  # the full-frame engine answers class 1 everywhere
            return lambda batch: np.ones_like(runner(batch))
        return runner

    with pytest.raises(EngineCheckError, match="full-frame TensorRT engine .* refused .*labels agree on") as err:
        _build(root, frames, make_fake_trt(), "fp32", runner_factory=factory)
    assert "\n" not in str(err.value)
    # The patch engine passed and stays; the full-frame engine is neither named nor kept.
    assert sorted(p.name for p in (root / "engines").glob("*.engine*")) == [
        "model.fp32.sm87.trt10.3.0.orin.engine", "model.fp32.sm87.trt10.3.0.orin.engine.json"]
