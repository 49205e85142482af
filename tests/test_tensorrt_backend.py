"""The TensorRT backend and ``auto`` selection, with the fake TensorRT, cuda runtime and kernels.

The fakes run the engine's ONNX graph with ONNX Runtime on host memory (fake_tensorrt.py),
so buffer handling, name-based binding and the fused crop -> engine -> score path are
exercised; the GPU tests at the end check the real engine and kernels against NumPy.
"""

import json

import numpy as np
import pytest
from fake_tensorrt import FakeCudart, fake_kernels, make_fake_trt
from tiny_bundle import PATCH, contrast_labels, make_guard_bundle, write_frames
from trt_fixtures import K, ORIN, fake_runner, noisy_frames, put_engine

from edge_guard.backends import open_runner, select
from edge_guard.backends import tensorrt as trt_backend
from edge_guard.backends.tensorrt import TensorRTRunner, find_engine
from edge_guard.bundle import check_graph, load_bundle
from edge_guard.engine_cache import ONNX_FILES, DeviceInfo, engine_path, precision_record_path, sidecar_path
from edge_guard.errors import MissingDependency, UserError
from edge_guard.guard import Guard

@pytest.fixture
def root(tmp_path):
    return make_guard_bundle(tmp_path / "bundle")


# ---------------------------------------------------------------- the runner


def test_runner_binds_by_name_and_matches_the_graph(root):
    path = put_engine(root)
    bundle = load_bundle(root)
    runner, cudart = fake_runner(bundle)
    with runner:
        exe = runner.exe
        assert runner.engine_file == path and runner.precision == "fp32"
        assert runner.provider == "TensorRT 10.3.0 fp32 on Orin (sm87)"
        spec = lambda t: (t.name, t.dtype, t.shape)  # noqa: E731
        assert [spec(t) for t in runner.inputs] == [("image", "uint8", (None, PATCH, PATCH, 3))]
        assert [spec(t) for t in runner.outputs] == [("labels", "int32", (None, PATCH, PATCH))]
        check_graph(bundle, runner.inputs, runner.outputs, batch=2 * K)
        assert exe.context._addresses == {"image": exe.input_ptr, "labels": exe.output_ptr}
        batch = np.random.default_rng(1).integers(0, 256, (2 * K, PATCH, PATCH, 3), dtype=np.uint8)
        labels = runner.infer(batch)
        assert labels.dtype == np.int32 and np.array_equal(labels, contrast_labels(batch))
        assert exe.context._shapes_set == [("image", (2 * K, PATCH, PATCH, 3))]
        runner.infer(batch[:4])
        assert exe.context._shapes_set[-1] == ("image", (4, PATCH, PATCH, 3))
        assert exe.context._executed == [exe.stream_handle] * 2
        assert runner.supports_device_scoring and runner.device_scoring_note.startswith("on")
    assert not cudart.buffers and not runner.supports_device_scoring


def test_fused_path_gives_the_numpy_verdict_with_one_sync(root):
    put_engine(root)
    bundle = load_bundle(root)
    runner, cudart = fake_runner(bundle)
    reference = Guard.from_function(bundle, contrast_labels, seed=5)
    with Guard(bundle, runner, seed=5) as guard:
        assert guard.device_scoring
        for i, frame in enumerate(noisy_frames()):
            rgb = bool(i % 2)
            syncs = cudart.syncs
            got, want = guard.check(frame, rgb=rgb), reference.check(frame, rgb=rgb)
            assert cudart.syncs == syncs + 1
            assert got.pairs == want.pairs and got.pair_mious == want.pair_mious
            assert got.score == want.score and got.adversarial == want.adversarial
            assert set(got.timings_ms) == {"resize", "sample", "gpu", "total"}
            assert got.backend == "tensorrt"
        crop = runner.kernels.crop
        # BGR frames into the RGB graph: swapped in the crop kernel, not on the host.
        assert len(crop[True].calls) == 2 and len(crop[False].calls) == 1
        assert {c["out"] for c in crop[True].calls} == {runner.exe.input_ptr}
        assert {c["labels"] for c in runner.kernels.score.calls} == {runner.exe.output_ptr}
        assert {c["stream"] for c in runner.kernels.score.calls} == {runner.exe.stream_handle}
        kernels = runner.kernels
    # Closing the Guard gives the kernels' modules and buffers back, not only the engine's.
    assert all(k.closed for k in (*kernels.crop.values(), kernels.score))
    assert reference.check(noisy_frames()[0]).score < 1.0  # the frames do test disagreement


def test_stage_timing_syncs_per_stage_and_host_scoring_matches(root):
    put_engine(root)
    bundle = load_bundle(root)
    frame = noisy_frames(1, seed=2)[0]
    want = Guard.from_function(bundle, contrast_labels, seed=1).check(frame)
    runner, cudart = fake_runner(bundle)
    with Guard(bundle, runner, seed=1, stage_timing=True) as guard:
        got = guard.check(frame)
        assert cudart.syncs == 3
        assert set(got.timings_ms) == {"resize", "sample", "crop", "infer", "consistency", "total"}
        assert got.pair_mious == want.pair_mious
    runner, _ = fake_runner(bundle)
    with Guard(bundle, runner, seed=1, device_scoring=False) as guard:
        assert not guard.device_scoring
        got = guard.check(frame)
        assert got.pair_mious == want.pair_mious and "crop" in got.timings_ms
        assert not runner.kernels.score.calls


def test_logits_engine_scores_on_the_host(tmp_path):
    root = make_guard_bundle(tmp_path / "b", output="logits")
    put_engine(root)
    bundle = load_bundle(root)
    runner, _ = fake_runner(bundle)
    frame = noisy_frames(1)[0]
    with Guard(bundle, runner, seed=0) as guard:
        assert not guard.device_scoring and "logits" in runner.device_scoring_note
        got = guard.check(frame)
    assert got.pair_mious == Guard.from_function(bundle, contrast_labels, seed=0).check(frame).pair_mious
    runner, _ = fake_runner(bundle)
    with pytest.raises(UserError, match="cannot score on the GPU: .*logits"):
        Guard(bundle, runner, device_scoring=True)


def test_kernels_that_cannot_load_fall_back_with_a_note(root):
    put_engine(root)

    def broken(num_classes, label_dtype, **options):
        raise RuntimeError("NVRTC failed to compile patch_crop for sm_87:\nlog line")

    runner, _ = fake_runner(load_bundle(root))
    runner._kernel_factory = broken
    with runner:
        assert not runner.supports_device_scoring
        assert runner.device_scoring_note == ("off: the CUDA kernels cannot load "
                                              "(NVRTC failed to compile patch_crop for sm_87:)")


# ---------------------------------------------------------------- refusals


def _refusal(root, bundle=None, **kw):
    runner, cudart = fake_runner(bundle or load_bundle(root), **kw)
    with pytest.raises(UserError) as err:
        runner.activate()
    assert not runner.is_active and not cudart.buffers
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_engine_is_refused_with_the_build_command(root):
    message = _refusal(root)
    assert "no engine for Orin (sm87, TensorRT 10.3.0)" in message
    assert message.endswith(f"`edge-guard build-engine {root} --precision fp16`")
    assert "--precision int8`" in _refusal(root, precision="int8")
    assert _refusal(root, pairs=60).endswith("--precision fp16 --max-pairs 60`")  # above the default 50


@pytest.mark.parametrize("damage, reason", [
    ("truncate", "truncated"),
    ("onnx_changed", "changed since"),
    ("no_sidecar", "no sidecar"),
    ("other_precision", "is fp16, not fp32"),
])
def test_damaged_or_mismatching_engine_is_refused(root, damage, reason):
    path = put_engine(root)
    bundle = load_bundle(root)  # loaded first: the bundle refuses a changed model.onnx itself
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-7])
    elif damage == "onnx_changed":
        (root / "model.onnx").write_bytes((root / "model.onnx").read_bytes() + b" ")
    elif damage == "no_sidecar":
        sidecar_path(path).unlink()
    elif damage == "other_precision":
        fp16 = put_engine(root, "fp16")
        path.write_bytes(fp16.read_bytes())
        sidecar_path(path).write_text(sidecar_path(fp16).read_text())
        fp16.unlink()
    message = _refusal(root, bundle)
    assert reason in message and "build-engine" in message and "--precision fp32`" in message


def test_engine_too_small_for_k_is_refused(root):
    put_engine(root, max_pairs=4)
    assert "larger --max-pairs" in _refusal(root)
    runner, _ = fake_runner(load_bundle(root), pairs=4)  # K=4 fits the engine
    with runner:
        assert runner.exe.max_batch == 8


def test_precision_order_and_explicit_precision(root):
    bundle = load_bundle(root)
    put_engine(root, "fp32")
    assert find_engine(bundle, ORIN, 2 * K).precision == "fp32"
    put_engine(root, "int8")
    assert find_engine(bundle, ORIN, 2 * K).precision == "int8"
    put_engine(root, "fp16")
    assert find_engine(bundle, ORIN, 2 * K).precision == "fp16"
    assert find_engine(bundle, ORIN, 2 * K, "fp32").precision == "fp32"
    other = DeviceInfo("Orin", (8, 7), "10.4.0")
    assert find_engine(bundle, other, 2 * K).path is None


def test_engine_of_a_model_onnx_replaced_since_is_refused(root):
    # Re-export + recalibrate replace model.onnx and guard.json; an fp16 engine built from the
    # old model.fp16.onnx still matches that file, but not the bundle's model.
    bundle = load_bundle(root)
    put_engine(root, "fp16")
    assert find_engine(bundle, ORIN, 2 * K, "fp16").precision == "fp16"
    precision_record_path(root / ONNX_FILES["fp16"]).write_text(json.dumps({"source_sha256": "0" * 64}))
    choice = find_engine(bundle, ORIN, 2 * K, "fp16")
    assert choice.path is None and "model.fp16.onnx was made from another model.onnx" in choice.reason


def test_undeserializable_engine_is_refused(root):
    put_engine(root, garbage=True)
    assert "cannot deserialize" in _refusal(root)


def test_explicit_tensorrt_without_tensorrt_names_the_extra(root):
    with pytest.raises(MissingDependency, match=r"edge-guard\[gpu\]"):
        open_runner(load_bundle(root), "tensorrt")


# ---------------------------------------------------------------- auto selection


def _probes(monkeypatch, installed, gpu, engine, ort_cuda):
    monkeypatch.setattr(select, "tensorrt_installed", lambda: installed)
    monkeypatch.setattr(select, "cuda_python_installed", lambda: True)
    monkeypatch.setattr(select, "gpu_present", lambda: gpu)
    monkeypatch.setattr(select, "ort_cuda_offered", lambda: ort_cuda)

    def cached(bundle, batch, precision=None, graph="patch"):
        assert installed and gpu, "the engine is looked for only with TensorRT and a GPU"
        return find_engine(bundle, ORIN, batch, precision, graph)

    monkeypatch.setattr(select, "cached_engine", cached)


@pytest.mark.parametrize("installed, gpu, engine, ort_cuda, backend, note", [
    (True, True, True, False, "tensorrt", "auto: tensorrt (fp32 engine model.fp32.sm87.trt10.3.0.orin.engine)"),
    (True, True, False, True, "onnxruntime", "auto: onnxruntime CUDA; passed over tensorrt: no engine for "
                                             "Orin (sm87, TensorRT 10.3.0) in {root}/engines (build it: "
                                             "`edge-guard build-engine {root} --precision fp16`)"),
    (False, True, True, True, "onnxruntime", "auto: onnxruntime CUDA; passed over tensorrt: not installed "
                                             "(pip install 'edge-guard[gpu]')"),
    (True, False, True, False, "onnxruntime-cpu", "auto: onnxruntime CPU; passed over tensorrt: no CUDA GPU "
                                                  "found; onnxruntime CUDA: this onnxruntime has no "
                                                  "CUDAExecutionProvider (pip install 'edge-guard[gpu]')"),
    (False, False, False, False, "onnxruntime-cpu", "auto: onnxruntime CPU; passed over tensorrt: not installed"),
])
def test_auto_selection(root, monkeypatch, installed, gpu, engine, ort_cuda, backend, note):
    if engine:
        put_engine(root)
    _probes(monkeypatch, installed, gpu, engine, ort_cuda)
    choice = select.select_backend(load_bundle(root))
    assert choice.backend == backend
    assert choice.note.startswith(note.format(root=root))
    assert (choice.engine is not None) == (backend == "tensorrt")


def test_auto_without_cuda_python_says_so(root, monkeypatch):
    _probes(monkeypatch, True, True, True, False)
    monkeypatch.setattr(select, "cuda_python_installed", lambda: False)
    note = select.select_backend(load_bundle(root)).note
    assert note.startswith("auto: onnxruntime CPU; passed over tensorrt: cuda-python is not installed")


def test_auto_runs_tensorrt_end_to_end(root, monkeypatch):
    """auto with every probe real except the hardware: the engine is found, run and scored."""
    import edge_guard.engine_cache as engine_cache

    put_engine(root)
    trt = make_fake_trt("10.3.0")
    monkeypatch.setattr(select, "tensorrt_installed", lambda: True)
    monkeypatch.setattr(select, "cuda_python_installed", lambda: True)
    monkeypatch.setattr(select, "gpu_present", lambda: True)
    monkeypatch.setattr(engine_cache, "current_device", lambda version, index=0: ORIN)
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_backend, "load_cudart", FakeCudart)
    monkeypatch.setattr(trt_backend, "default_kernels", fake_kernels)
    frame = noisy_frames(1)[0]
    with Guard.load(root, backend="auto", seed=4) as guard:
        assert guard.backend == "tensorrt" and guard.device_scoring
        assert guard.selection.startswith("auto: tensorrt (fp32 engine")
        got = guard.check(frame)
    want = Guard.from_function(load_bundle(root), contrast_labels, seed=4).check(frame)
    assert got.score == want.score and got.pair_mious == want.pair_mious


def test_auto_falls_back_when_the_engine_will_not_start(root, monkeypatch):
    put_engine(root, garbage=True)  # validates (sidecar matches) but does not deserialize
    _probes(monkeypatch, True, True, True, False)
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: make_fake_trt("10.3.0"))
    monkeypatch.setattr(trt_backend, "load_cudart", FakeCudart)
    with Guard.load(root, backend="auto", threads=1) as guard:
        assert guard.backend == "onnxruntime" and guard.provider == "CPUExecutionProvider"
        assert guard.selection.startswith("auto: onnxruntime CPU; passed over tensorrt: failed to start "
                                          "(TensorRT cannot deserialize")


def test_explicit_backend_note_and_check_header(root, tmp_path, capsys):
    import cv2

    from edge_guard.cli import main

    with open_runner(load_bundle(root), "onnxruntime-cpu", threads=1) as runner:
        assert runner.selection == "onnxruntime-cpu (asked for)"
    image = tmp_path / "f.png"
    cv2.imwrite(str(image), noisy_frames(1)[0])
    main(["check", "--bundle", str(root), "--threads", "1", str(image)])
    header = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# backend choice")]
    assert len(header) == 1 and header[0].startswith("# backend choice: auto: onnxruntime")


# ---------------------------------------------------------------- on a GPU with TensorRT


@pytest.fixture
def gpu_engine(tmp_path):
    pytest.importorskip("tensorrt")
    from edge_guard.engines.trt_build import build_engine

    root = make_guard_bundle(tmp_path / "bundle", frame=(48, 64))
    frames = write_frames(tmp_path / "frames", count=3, size=(48, 64))
    build_engine(root, "fp32", calib_frames=frames, calib_count=3, calib_pairs=2, max_pairs=K,
                 log=lambda *a: None)
    return root


@pytest.mark.gpu
def test_gpu_tensorrt_and_kernels_give_the_numpy_verdict(gpu_engine):
    bundle = load_bundle(gpu_engine)
    frames = noisy_frames(4, seed=7)
    reference = Guard.from_function(bundle, contrast_labels, seed=11)
    with Guard.load(gpu_engine, backend="tensorrt", seed=11) as guard:
        assert guard.device_scoring, guard.runner.device_scoring_note
        for frame in frames:
            got, want = guard.check(frame), reference.check(frame)
            assert got.pairs == want.pairs
            assert got.pair_mious == want.pair_mious and got.score == want.score


@pytest.mark.gpu
def test_gpu_device_scoring_equals_host_scoring_on_the_same_engine(gpu_engine):
    frames = noisy_frames(3, seed=8)
    with Guard.load(gpu_engine, backend="tensorrt", seed=3, stage_timing=True) as fused, \
            Guard.load(gpu_engine, backend="tensorrt", seed=3, device_scoring=False) as host:
        for frame in frames:
            a, b = fused.check(frame, rgb=True), host.check(frame, rgb=True)
            assert a.pair_mious == b.pair_mious and a.score == b.score
            assert {"crop", "infer", "consistency"} <= set(a.timings_ms)


@pytest.mark.gpu
def test_gpu_auto_picks_tensorrt_with_a_built_engine(gpu_engine):
    with Guard.load(gpu_engine, backend="auto") as guard:
        assert guard.backend == "tensorrt", guard.selection
        assert guard.selection.startswith("auto: tensorrt (fp32 engine")


def test_explicit_backend_builds_a_missing_engine_on_first_use(root, monkeypatch):
    """`--backend tensorrt` without a cached engine: built (and checked) once, then reused."""
    lines = []
    trt = make_fake_trt("10.3.0")
    cudart = FakeCudart()
    runner = TensorRTRunner(load_bundle(root), trt=trt, cudart=cudart, device_info=ORIN,
                            kernels=fake_kernels, precision="fp32", build=True, log=lines.append)
    with runner:
        assert runner.engine_file == engine_path(root, "fp32", ORIN) and runner.engine_file.is_file()
        frame = noisy_frames(1)[0]
        ref = Guard.from_function(load_bundle(root), contrast_labels, seed=3).check(frame)
        assert Guard(load_bundle(root), runner, seed=3).check(frame).score == pytest.approx(ref.score)
    assert lines[0].startswith("edge-guard: no engine file model.fp32.sm87") and "on first use" in lines[0]
    assert any(line.startswith("wrote ") for line in lines)
    built = trt.calls.builds
    runner = TensorRTRunner(load_bundle(root), trt=trt, cudart=cudart, device_info=ORIN,
                            kernels=fake_kernels, precision="fp32", build=True, log=lines.append)
    with runner:
        assert trt.calls.builds == built   # cached: not rebuilt
    # open_runner asks for a build only when the backend is named, never for `auto`
    made = []

    def record(self, *args, **kw):
        made.append(kw["build"])
        raise UserError("recorded")

    monkeypatch.setattr(trt_backend.TensorRTRunner, "__init__", record)
    with pytest.raises(UserError, match="recorded"):
        open_runner(load_bundle(root), "tensorrt")
    assert made == [True]
