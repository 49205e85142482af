"""The TensorRT backend's full-frame engine and device pipelines, with the fake TensorRT, cuda
runtime and kernels (fake_tensorrt.py): the DeviceFrame and DevicePairs pipelines must give
the host pipelines' verdicts (scores, boxes, the frame's labels) for the same seed, on one
stream, with the syncs and stage timings they promise, and give every buffer back."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fake_tensorrt import FakeCudart, fake_kernels, make_fake_trt
from tiny_bundle import (CLASSES, PATCH, contrast_labels, contrast_patch_model, make_frame_bundle,
                         make_guard_bundle, pixel_labels, tiny_patch_model, write_frames)
from trt_fixtures import FRAME, ORIN, fake_runner, noisy_frames, put_engine

from edge_guard.backends import FunctionRunner, select
from edge_guard.backends import tensorrt as trt_backend
from edge_guard.backends.trt_pipelines import DeviceFrame, DevicePairs, as_label_dtype
from edge_guard.bundle import check_graph, load_bundle, write_guard_json
from edge_guard.consistency import frame_scores
from edge_guard.engine_cache import engine_path, sha256_file
from edge_guard.errors import UserError
from edge_guard.guard import Guard

FK = 4  # make_frame_bundle's K


def frame_bundle(tmp_path, **kw):
    """A frame-detector bundle (contrast model: patches disagree with the frame) with fake
    engines of both graphs; the patch engine takes K patches per check."""
    kw.setdefault("model", "contrast")
    root = make_frame_bundle(tmp_path / "fb", **kw)
    put_engine(root, per_k=1, max_pairs=FK)
    put_engine(root, graph="frame")
    return load_bundle(root)


def runners(bundle, **kw):
    """(patch runner, full-frame runner, their cudarts) over fake engines."""
    runner, cudart = fake_runner(bundle, **kw)
    seg, seg_cudart = fake_runner(bundle, graph="frame", **kw)
    return runner, seg, (cudart, seg_cudart)


def host_guard(bundle, seed, **kw):
    """The host pipeline on the same fake engines: the reference of the device pipeline."""
    runner, seg, _ = runners(bundle)
    return Guard(bundle, runner, seed=seed, segmenter=seg, device_scoring=False, **kw)


def same_verdict(got, want):
    assert got.scores == want.scores and got.score == want.score and got.boxes == want.boxes
    assert got.adversarial == want.adversarial
    assert got.labels.dtype == want.labels.dtype and np.array_equal(got.labels, want.labels)


def test_frame_runner_runs_the_full_frame_engine(tmp_path):
    bundle = frame_bundle(tmp_path)
    runner, cudart = fake_runner(bundle, graph="frame")
    with runner:
        assert runner.engine_file == engine_path(bundle.root, "fp32", ORIN, "frame")
        assert runner.engine_file.name.startswith("segment.fp32.sm87")
        assert runner.batch == 1 and not runner.supports_device_scoring
        assert "patch runner's device pipeline" in runner.device_scoring_note
        check_graph(bundle, runner.inputs, runner.outputs, batch=1, graph="frame")
        frames = np.stack(noisy_frames(2, shape=(*FRAME, 3)))
        session = ort.InferenceSession(str(bundle.root / "segment.onnx"), providers=["CPUExecutionProvider"])
        labels = runner.infer(frames)
        assert labels.dtype == np.int32 and np.array_equal(labels, session.run(None, {"image": frames})[0])
        assert runner.exe.context._shapes_set == [("image", (1, *FRAME, 3))]
        assert len(runner.exe.context._executed) == 2  # one frame at a time
        patch, _ = fake_runner(bundle)
        with patch:  # the two graphs' engines are distinct files of the same precision
            assert patch.engine_file != runner.engine_file and patch.batch == FK
    assert not cudart.buffers


def test_frame_graph_engine_missing_or_stale_is_refused(tmp_path):
    root = make_frame_bundle(tmp_path / "fb")
    put_engine(root, per_k=1, max_pairs=FK)
    runner, _ = fake_runner(load_bundle(root), graph="frame")
    with pytest.raises(UserError, match="no full-frame engine for Orin .*build-engine"):
        runner.activate()
    put_engine(root, graph="frame")
    (root / "segment.onnx").write_bytes((root / "segment.onnx").read_bytes() + b" ")
    runner, _ = fake_runner(_unchecked(root), graph="frame")
    with pytest.raises(UserError, match="segment.onnx changed since segment.fp32"):
        runner.activate()
    with pytest.raises(UserError, match="has no full-frame graph"):
        fake_runner(load_bundle(make_guard_bundle(tmp_path / "pairs")), graph="frame")


def _unchecked(root):
    """The bundle as loaded before segment.onnx was altered (load_bundle refuses it now)."""
    from edge_guard.bundle import Bundle

    return Bundle(root=root, doc=json.loads((root / "guard.json").read_text()))


@pytest.mark.parametrize("statistic, min_pixels", [("miou", 0), ("agreement", 0), ("miou-min", 20)])
def test_device_frame_gives_the_host_verdict_with_one_sync(tmp_path, statistic, min_pixels):
    bundle = frame_bundle(tmp_path, statistic=statistic, min_pixels=min_pixels)
    reference = host_guard(bundle, seed=5)
    runner, seg, (cudart, seg_cudart) = runners(bundle)
    with Guard(bundle, runner, seed=5, segmenter=seg) as guard:
        assert guard.device_scoring and isinstance(guard.pipeline, DeviceFrame)
        assert guard.pipeline.seg_exe is seg.exe  # the frame's labels stay on the GPU
        for i, frame in enumerate(noisy_frames(4)):
            rgb = bool(i % 2)
            syncs = cudart.syncs
            got, want = guard.check(frame, rgb=rgb), reference.check(frame, rgb=rgb)
            assert cudart.syncs == syncs + 1 and seg_cudart.syncs == 0
            same_verdict(got, want)
            assert set(got.timings_ms) == {"resize", "sample", "gpu", "total"}
            assert min(got.scores) < 1.0  # the frames do test disagreement
        kernels = runner.kernels
        stream = runner.exe.stream_handle
        # Both engines and every kernel run on the patch runner's stream.
        assert seg.exe.context._executed == [stream] * 4 and runner.exe.context._executed == [stream] * 4
        assert seg.exe.context._shapes_set == [("image", (1, *FRAME, 3))]
        # BGR frames into the RGB graph: swapped once, whole, into the full-frame engine's input;
        # the patches are cut from that copy without a second swap.
        swaps = kernels.crop[True].calls
        assert len(swaps) == 2 and {c["out"] for c in swaps} == {seg.exe.input_ptr}
        assert {c["size"] for c in swaps} == {FRAME}
        crops = kernels.crop[False].calls
        assert len(crops) == 4 and {(c["frame"], c["out"], c["n"]) for c in crops} == \
            {(seg.exe.input_ptr, runner.exe.input_ptr, FK)}
        scored = kernels.score.calls
        assert {(c["labels"], c["frame"], c["stream"]) for c in scored} == \
            {(runner.exe.output_ptr, seg.exe.output_ptr, stream)}
    reference.close()
    assert all(k.closed for k in (*kernels.crop.values(), kernels.score))
    assert not cudart.buffers and not seg_cudart.buffers  # the pipeline's buffers too


def test_device_frame_stage_timing_syncs_per_stage(tmp_path):
    bundle = frame_bundle(tmp_path)
    frame = noisy_frames(1, seed=2)[0]
    want = host_guard(bundle, seed=1).check(frame)
    runner, seg, (cudart, _) = runners(bundle)
    with Guard(bundle, runner, seed=1, segmenter=seg, stage_timing=True) as guard:
        got = guard.check(frame)
    assert cudart.syncs == 4
    assert list(got.timings_ms) == ["resize", "segment", "sample", "crop", "infer", "consistency", "total"]
    timings = got.timings_ms
    assert abs(sum(v for s, v in timings.items() if s != "total") - timings["total"]) < 1e-6
    same_verdict(got, want)


IGNORED = {"uint8": (255, 200), "int64": (-5, 2**32 + 1), "int16": (-5, 256)}


@pytest.mark.parametrize("dtype", sorted(IGNORED))
def test_device_frame_with_the_callers_labels(tmp_path, dtype):
    """Labels passed to check(): uploaded (in the kernel's type, ids outside [0, C) still
    ignored), the full-frame engine does not run, the verdict carries the caller's array."""
    bundle = frame_bundle(tmp_path, model="pixel")
    rng = np.random.default_rng(3)
    runner, seg, (cudart, _) = runners(bundle)
    reference = Guard.from_function(bundle, pixel_labels, seed=9)
    with Guard(bundle, runner, seed=9, segmenter=seg, stage_timing=True) as guard:
        for frame in noisy_frames(3, seed=4, shape=(*FRAME, 3)):
            labels = pixel_labels(frame[None, :, :, ::-1])[0].astype(np.int64)  # BGR frame, RGB graph
            noise = rng.random(FRAME) < 0.3
            labels[noise] = rng.integers(0, CLASSES, int(noise.sum()))
            # Ignored ids; 2**32 + 1 would become 1 in the kernel's int32 with a plain cast.
            labels[::7], labels[:, ::5] = IGNORED[dtype]
            labels = labels.astype(dtype)
            syncs = cudart.syncs
            got, want = guard.check(frame, labels=labels), reference.check(frame, labels=labels)
            assert got.labels is labels and cudart.syncs == syncs + 3
            assert got.scores == want.scores and got.score == want.score and got.boxes == want.boxes
            assert 0 < min(got.scores) < 1.0
            assert set(got.timings_ms) == {"resize", "sample", "crop", "infer", "consistency", "total"}
        assert seg.exe.context._executed == []


def test_as_label_dtype_keeps_ignored_ids_ignored():
    labels = np.array([[0, 3, 4, 256, -1, 70000]], np.int64)
    assert as_label_dtype(labels, "uint8", 4).tolist() == [[0, 3, 255, 255, 255, 255]]
    assert as_label_dtype(labels, "int16", 4).tolist() == [[0, 3, -1, -1, -1, -1]]
    same = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert as_label_dtype(same, "int32", 4) is same
    # A plain cast wraps 259 to 3 (uint8) and 2**32 + 1 to 1 (int16, int32): ids that would count.
    patch = np.array([[[0, 1], [1, 2]]], np.int32)
    frame = np.array([[0, 259], [2**32 + 1, 2]], np.int64)
    want = frame_scores(patch, frame, np.array([[0, 0]]), 4)
    assert want.tolist() == [1.0]
    for dtype in ("uint8", "int16", "uint16", "int32"):
        got = frame_scores(patch, as_label_dtype(frame, dtype, 4), np.array([[0, 0]]), 4)
        assert got.tolist() == want.tolist(), dtype


def test_device_frame_segments_on_the_host_when_the_engine_labels_do_not_fit(tmp_path):
    """A full-frame engine with int64 labels (the kernel reads the patch engine's int32): it
    runs on the host and its labels are uploaded; the verdict is unchanged."""
    root = make_frame_bundle(tmp_path / "fb")
    int64_labels = tiny_patch_model(PATCH, CLASSES, output_int32=False, spatial=FRAME)
    onnx.save_model(int64_labels, str(root / "segment.onnx"))
    doc = json.loads((root / "guard.json").read_text())
    doc["model"]["frame_graph"]["sha256"] = sha256_file(root / "segment.onnx")
    write_guard_json(root, doc)
    put_engine(root, per_k=1, max_pairs=FK)
    put_engine(root, graph="frame")
    bundle = load_bundle(root)
    runner, seg, (cudart, seg_cudart) = runners(bundle)
    reference = host_guard(bundle, seed=2)
    with Guard(bundle, runner, seed=2, segmenter=seg) as guard:
        assert seg.exe.out_dtype == np.int64 and guard.pipeline.seg_exe is None
        for frame in noisy_frames(2, seed=6):
            got, want = guard.check(frame), reference.check(frame)
            same_verdict(got, want)
            assert got.labels.dtype == np.int32
        assert seg.exe.context._executed == [seg.exe.stream_handle] * 2  # its own host path
    reference.close()
    assert not cudart.buffers and not seg_cudart.buffers


def test_device_frame_with_a_host_segmenter(tmp_path):
    bundle = frame_bundle(tmp_path)
    runner, _ = fake_runner(bundle)
    # The contrast model's oracle for patches and frames (patches of 16x16 are exact in it).
    reference = Guard.from_function(bundle, contrast_labels, seed=8)
    with Guard(bundle, runner, seed=8, segmenter=FunctionRunner(contrast_labels)) as guard:
        assert isinstance(guard.pipeline, DeviceFrame) and guard.pipeline.seg_exe is None
        for i, frame in enumerate(noisy_frames(2, seed=1)):
            got, want = guard.check(frame, rgb=bool(i)), reference.check(frame, rgb=bool(i))
            assert got.scores == want.scores and np.array_equal(got.labels, want.labels)


def test_device_frame_needs_the_frames_labels(tmp_path):
    bundle = frame_bundle(tmp_path)
    runner, _ = fake_runner(bundle)
    with Guard(bundle, runner, seed=0) as guard:
        with pytest.raises(UserError, match="needs the frame's labels"):
            guard.check(noisy_frames(1)[0])


def test_device_pipeline_of_another_detector_or_k_is_refused(tmp_path):
    bundle = frame_bundle(tmp_path)
    runner, _ = fake_runner(bundle)
    with runner:
        with pytest.raises(UserError, match="set up for the frame detector, not pairs"):
            runner.device_pipeline("pairs", k=FK)
        with pytest.raises(UserError, match="runs 1..4 patches, K=5 needs 5"):
            runner.device_pipeline("frame", k=5)


def test_frame_bundle_patch_engine_follows_k_not_2k(tmp_path):
    bundle = frame_bundle(tmp_path)
    runner, _ = fake_runner(bundle)
    with runner:
        assert (runner.exe.min_batch, runner.exe.max_batch) == (1, FK)
    put_engine(bundle.root, per_k=1, max_pairs=2)  # a K = 4 guard needs 4 patches
    runner, _ = fake_runner(bundle)
    with pytest.raises(UserError, match="runs batches of 1..2 patches, 4 needed"):
        runner.activate()


# ---------------------------------------------------------------- pairs with a full-frame graph


def pairs_bundle_with_frame_graph(tmp_path):
    root = make_guard_bundle(tmp_path / "pb")
    full = contrast_patch_model(PATCH)
    for t in (*full.graph.input, *full.graph.output):
        dims = t.type.tensor_type.shape.dim
        dims[1].dim_value, dims[2].dim_value = FRAME
    onnx.save_model(full, str(root / "segment.onnx"))
    doc = json.loads((root / "guard.json").read_text())
    doc["model"]["frame_graph"] = {"file": "segment.onnx", "sha256": sha256_file(root / "segment.onnx")}
    write_guard_json(root, doc)
    put_engine(root)
    put_engine(root, graph="frame")
    return load_bundle(root)


@pytest.mark.parametrize("stage_timing", [False, True])
def test_device_pairs_returns_the_frames_labels(tmp_path, stage_timing):
    bundle = pairs_bundle_with_frame_graph(tmp_path)
    reference = host_guard(bundle, seed=4, stage_timing=stage_timing)
    runner, seg, (cudart, _) = runners(bundle)
    with Guard(bundle, runner, seed=4, segmenter=seg, stage_timing=stage_timing) as guard:
        assert isinstance(guard.pipeline, DevicePairs) and guard.pipeline.seg_exe is seg.exe
        for i, frame in enumerate(noisy_frames(3, seed=3)):
            syncs = cudart.syncs
            got, want = guard.check(frame, rgb=bool(i % 2)), reference.check(frame, rgb=bool(i % 2))
            same_verdict(got, want)
            assert cudart.syncs == syncs + (4 if stage_timing else 1)
            assert ("segment" in got.timings_ms) == stage_timing
        assert seg.exe.context._executed == [runner.exe.stream_handle] * 3
        # Labels given: the frame is not segmented, the verdict carries them.
        labels = np.zeros(FRAME, np.int32)
        assert guard.check(noisy_frames(1)[0], labels=labels).labels is labels
        assert len(seg.exe.context._executed) == 3
    reference.close()
    assert not cudart.buffers


# ---------------------------------------------------------------- auto selection


def _probes(monkeypatch):
    import edge_guard.engine_cache as engine_cache

    trt = make_fake_trt("10.3.0")
    monkeypatch.setattr(select, "tensorrt_installed", lambda: True)
    monkeypatch.setattr(select, "cuda_python_installed", lambda: True)
    monkeypatch.setattr(select, "gpu_present", lambda: True)
    monkeypatch.setattr(select, "ort_cuda_offered", lambda: False)
    monkeypatch.setattr(engine_cache, "current_device", lambda version, index=0: ORIN)
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_backend, "load_cudart", FakeCudart)
    monkeypatch.setattr(trt_backend, "default_kernels", fake_kernels)


def test_auto_needs_both_engines_for_a_frame_bundle(tmp_path, monkeypatch):
    _probes(monkeypatch)
    root = make_frame_bundle(tmp_path / "fb", model="contrast")
    put_engine(root, per_k=1, max_pairs=FK)
    bundle = load_bundle(root)
    for graph in ("patch", "frame"):
        choice = select.select_backend(bundle, graph=graph)
        assert choice.backend == "onnxruntime-cpu"
        assert "passed over tensorrt: no full-frame engine for Orin (sm87, TensorRT 10.3.0)" in choice.note
    put_engine(root, graph="frame")
    choice = select.select_backend(bundle, graph="frame")
    assert choice.backend == "tensorrt"
    assert choice.note == ("auto: tensorrt (fp32 engines model.fp32.sm87.trt10.3.0.orin.engine, "
                           "segment.fp32.sm87.trt10.3.0.orin.engine)")
    assert choice.engine.path.name.startswith("model.") and choice.frame_engine.path.name.startswith("segment.")


def test_auto_runs_a_frame_bundle_on_the_gpu_end_to_end(tmp_path, monkeypatch):
    _probes(monkeypatch)
    bundle = frame_bundle(tmp_path)
    frames = noisy_frames(2, seed=5)
    with Guard.load(bundle.root, backend="onnxruntime-cpu", seed=6, threads=1) as reference:
        want = [reference.check(f) for f in frames]
    with Guard.load(bundle.root, backend="auto", seed=6) as guard:
        assert guard.backend == "tensorrt" and guard.segmenter.name == "tensorrt"
        assert isinstance(guard.pipeline, DeviceFrame) and guard.pipeline.seg_exe is guard.segmenter.exe
        for frame, w in zip(frames, want):
            same_verdict(guard.check(frame), w)


def test_the_full_frame_runner_builds_both_engines_on_first_use(tmp_path):
    from edge_guard.backends.tensorrt import TensorRTRunner

    root = make_frame_bundle(tmp_path / "fb", model="contrast")
    bundle, trt, lines = load_bundle(root), make_fake_trt("10.3.0"), []
    made = dict(trt=trt, cudart=FakeCudart(), device_info=ORIN, kernels=fake_kernels, precision="fp32",
                build=True, log=lines.append)
    with TensorRTRunner(bundle, graph="frame", **made) as seg:
        assert seg.engine_file == engine_path(root, "fp32", ORIN, "frame") and seg.engine_file.is_file()
    assert lines[0].startswith("edge-guard: no engine file segment.fp32.sm87") and trt.calls.builds == 2
    with TensorRTRunner(bundle, **made) as runner:  # the patch engine was built in the same go
        assert runner.engine_file == engine_path(root, "fp32", ORIN) and runner.exe.max_batch == 50
    assert trt.calls.builds == 2


# ---------------------------------------------------------------- on a GPU with TensorRT


@pytest.mark.gpu
@pytest.mark.parametrize("statistic", ["miou", "agreement"])
def test_gpu_device_frame_equals_host_scoring_on_the_same_engines(tmp_path, statistic):
    pytest.importorskip("tensorrt")
    from edge_guard.engines.trt_build import build_engine

    root = make_frame_bundle(tmp_path / "fb", model="contrast", statistic=statistic)
    frames = write_frames(tmp_path / "frames", count=3, size=FRAME)
    build_engine(root, "fp32", calib_frames=frames, calib_count=3, calib_pairs=2, max_pairs=FK,
                 log=lambda *a: None)
    with Guard.load(root, backend="tensorrt", seed=3) as fused, \
            Guard.load(root, backend="tensorrt", seed=3, device_scoring=False) as host:
        assert isinstance(fused.pipeline, DeviceFrame), fused.runner.device_scoring_note
        assert fused.pipeline.seg_exe is fused.segmenter.exe
        for i, frame in enumerate(noisy_frames(4, seed=9)):
            same_verdict(fused.check(frame, rgb=bool(i % 2)), host.check(frame, rgb=bool(i % 2)))
        labels = np.zeros(FRAME, np.uint8)
        frame = noisy_frames(1, seed=10)[0]
        a, b = fused.check(frame, labels=labels), host.check(frame, labels=labels)
        assert a.scores == b.scores and a.labels is labels
