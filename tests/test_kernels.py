"""CUDA kernels: NVRTC compilation for every target (no GPU needed), the disk cache, and
(on a GPU) exact equality with the NumPy references: crop (pairs, single patches, a whole
frame), overlap and patch-vs-frame confusion, every score statistic."""

import os

import numpy as np
import pytest
from blocked_imports import run_without

from edge_guard.errors import UserError

nvrtc = pytest.importorskip("edge_guard.kernels.nvrtc")

try:
    nvrtc.available_nvrtcs()
except Exception as exc:  # cuda-python without an NVRTC library
    if os.environ.get("CI"):  # CI installs the 'kernels' extra: compiling must work there
        raise
    pytest.skip(f"NVRTC unavailable: {exc}", allow_module_level=True)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_GUARD_CACHE", str(tmp_path))
    return tmp_path / "kernels"


# ---------------------------------------------------------------------------------------------
# Compilation (CI, no GPU)


@pytest.mark.parametrize("arch", nvrtc.TARGET_ARCHS)
@pytest.mark.parametrize("source", ["patch_crop", "overlap_confusion"])
def test_compiles_for_every_target(source, arch, cache):
    image = nvrtc.compile_kernel(source, arch)
    assert image[:4] == b"\x7fELF"  # a cubin
    assert len(list(cache.glob(f"{source}-{arch}-*.cubin"))) == 1


@pytest.mark.parametrize("label_t", ["int", "long long", "unsigned char", "unsigned short", "short"])
def test_confusion_compiles_for_every_label_type(label_t):
    image = nvrtc.compile_kernel("overlap_confusion", "sm_87", (f"-DLABEL_T={label_t}",))
    assert image[:4] == b"\x7fELF"


@pytest.mark.parametrize("arch", nvrtc.TARGET_ARCHS)
@pytest.mark.parametrize("label_t, frame_t", [("int", "int"), ("unsigned char", "long long"),
                                              ("long long", "unsigned short"), ("short", "int")])
def test_frame_confusion_compiles_for_every_target_and_label_pair(arch, label_t, frame_t):
    # The patch engine's and the full-frame engine's label types are compiled in together.
    image = nvrtc.compile_kernel("overlap_confusion", arch, (f"-DLABEL_T={label_t}", f"-DFRAME_T={frame_t}"))
    assert image[:4] == b"\x7fELF"


def test_ptx_when_asked():
    ptx = nvrtc.compile_kernel("overlap_confusion", "compute_87")
    for entry in (b"overlap_confusion", b"frame_confusion", b"confusion_score", b"mean_score"):
        assert b".entry " + entry in ptx
    assert ptx.count(b"match.any.sync") == 2  # both confusion kernels share the warp merge
    assert ptx.endswith(b"\0")


def test_scores_divide_in_ieee_double():
    # Bit-exact equality with NumPy needs IEEE double division and one rounding to float32.
    ptx = nvrtc.compile_kernel("overlap_confusion", "compute_87").decode()
    assert "div.rn.f64" in ptx and "cvt.rn.f32.f64" in ptx
    assert "div.approx" not in ptx and "div.full" not in ptx and "fma" not in ptx


def test_normalisation_is_not_fused():
    # Bit-exact equality with NumPy needs separate multiply and add (no FMA).
    ptx = nvrtc.compile_kernel("patch_crop", "compute_87").decode()
    assert "mul.rn.f32" in ptx and "add.rn.f32" in ptx and "fma" not in ptx


def test_compile_error_shows_the_log():
    broken = 'extern "C" __global__ void f(int* x) { x[0] = undefined_name; }'
    with pytest.raises(nvrtc.KernelCompileError) as info:
        nvrtc.compile_source(broken, "broken.cu", "sm_87")
    text = str(info.value)
    assert "broken.cu" in text and "undefined_name" in text and "sm_87" in text
    assert "undefined_name" in info.value.log


def test_cache_hit_and_key(cache, monkeypatch):
    first = nvrtc.compile_kernel("overlap_confusion", "sm_87")
    compiled = []
    for nv in nvrtc.available_nvrtcs():
        original = nv.compile

        def counting(*args, _original=original, **kwargs):
            compiled.append(args)
            return _original(*args, **kwargs)

        monkeypatch.setattr(nv, "compile", counting)
    assert nvrtc.compile_kernel("overlap_confusion", "sm_87") == first
    assert compiled == []  # served from the disk cache
    # Options, architecture and source are all part of the key.
    nvrtc.compile_kernel("overlap_confusion", "sm_87", ("-DMAX_CLASSES=32",))
    nvrtc.compile_kernel("overlap_confusion", "sm_90")
    source = nvrtc.source_path("overlap_confusion").read_text() + "\n// edited\n"
    nvrtc.compile_source(source, "overlap_confusion.cu", "sm_87")
    assert len(compiled) == 3
    assert len(list(cache.glob("*.cubin"))) == 4
    # cache=False always compiles
    nvrtc.compile_kernel("overlap_confusion", "sm_87", cache=False)
    assert len(compiled) == 4


def test_bad_arguments():
    with pytest.raises(UserError, match="unknown GPU architecture"):
        nvrtc.compile_kernel("patch_crop", "ampere")
    with pytest.raises(UserError, match="no kernel source"):
        nvrtc.compile_kernel("no_such_kernel", "sm_87")
    with pytest.raises(UserError, match="no NVRTC here can compile for sm_5"):
        nvrtc.compile_kernel("patch_crop", "sm_5")


def test_missing_cuda_python_names_the_extra(tmp_path):
    proc = run_without(["cuda"], """
        from edge_guard.errors import MissingDependency
        from edge_guard.kernels import compile_kernel, gpu_count
        assert gpu_count() == 0
        try:
            compile_kernel("patch_crop", "sm_87")
        except MissingDependency as exc:
            print(exc)
    """, env={"EDGE_GUARD_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "edge-guard[kernels]" in proc.stdout


# ---------------------------------------------------------------------------------------------
# On a GPU: exact equality with the NumPy references


from label_maps import label_maps, odd_pairs  # noqa: E402

from edge_guard.consistency import mean_score, overlap_confusion, pair_mious  # noqa: E402
from edge_guard.crop import crop_patches, crop_patches_nchw  # noqa: E402
from edge_guard.patches import sample_pairs  # noqa: E402


@pytest.fixture(scope="module")
def gpu():
    from edge_guard import kernels

    kernels.device.context(0)
    return kernels


KINDS = ("random", "uniform", "blocks", "stripes", "checker_ignore")


@pytest.mark.gpu
@pytest.mark.parametrize("c", [19, 64])
@pytest.mark.parametrize("k, s", [(1, 64), (5, 97), (5, 256), (50, 512)])
@pytest.mark.parametrize("kind", KINDS)
def test_confusion_kernel_equals_reference(gpu, kind, k, s, c):
    rng = np.random.default_rng(k * 1000 + s + c)
    labels = label_maps(kind, 2 * k, s, c, rng)
    kernel = gpu.OverlapConfusionKernel(c, "int32")
    dev_labels = gpu.DeviceBuffer.from_array(labels)
    cm = gpu.DeviceBuffer(4 * k * c * c)
    out = gpu.DeviceBuffer(4 * (k + 1))
    for pairs in (odd_pairs(k, s, rng), sample_pairs(3 * s, 3 * s, s, s // 16, s // 8 + 1, k, rng)):
        kernel(dev_labels.ptr, pairs, s, out.ptr, confusion_ptr=cm.ptr)
        values = out.to_numpy((k + 1,), np.float32)
        expected = pair_mious(labels, pairs, c)
        assert np.array_equal(cm.to_numpy((k, c, c), np.uint32), overlap_confusion(labels, pairs, c))
        assert np.array_equal(values[:k], expected)  # bit for bit
        assert values[k] == np.float32(mean_score(expected))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["uint8", "int64", "int16"])
def test_confusion_kernel_label_dtypes(gpu, dtype):
    rng = np.random.default_rng(11)
    k, s, c = 5, 128, 19
    labels = label_maps("checker_ignore", 2 * k, s, c, rng, dtype=np.int64)
    if dtype != "uint8":
        labels[:, ::13, ::3] = -1  # negative ids are ignored too
    labels = labels.astype(dtype)
    pairs = odd_pairs(k, s, rng)
    kernel = gpu.OverlapConfusionKernel(c, dtype)
    # Keep every buffer in a name: a temporary is freed as soon as its .ptr is read, and the
    # kernel's own allocations may then reuse (and zero) that memory.
    on_device = gpu.DeviceBuffer.from_array(labels)
    mious, score = kernel.score(on_device.ptr, pairs, s)
    assert np.array_equal(mious, pair_mious(labels, pairs, c))
    assert score == mean_score(mious)


@pytest.mark.gpu
def test_confusion_kernel_pairs_by_device_pointer(gpu):
    rng = np.random.default_rng(12)
    k, s, c = 7, 160, 19
    labels = label_maps("blocks", 2 * k, s, c, rng)
    pairs = odd_pairs(k, s, rng)
    kernel = gpu.OverlapConfusionKernel(c)
    out = gpu.DeviceBuffer(4 * (k + 1))
    stream = gpu.device.new_stream()
    labels_dev, pairs_dev = gpu.DeviceBuffer.from_array(labels), gpu.DeviceBuffer.from_array(pairs)
    kernel(labels_dev.ptr, pairs_dev.ptr, s, out.ptr, stream=stream, k=k)
    assert np.array_equal(out.to_numpy((k + 1,), np.float32, stream)[:k], pair_mious(labels, pairs, c))


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["nhwc_u8", "nchw_f32", "nchw_f16"])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("k, s", [(1, 64), (5, 97), (10, 512)])
def test_crop_kernel_equals_reference(gpu, layout, swap, k, s):
    rng = np.random.default_rng(k + s)
    h, w = s + 70, 2 * s + 3
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pairs = sample_pairs(h, w, s, 5, 64 if s > 64 else 33, k, rng)
    mean, std = (0.29, 0.33, 0.29), (0.18, 0.18, 0.19)
    if layout == "nhwc_u8":
        expected = crop_patches(frame, pairs, s, swap_rb=swap)
        kernel = gpu.PatchCropKernel(layout, swap_rb=swap)
    else:
        dtype = np.float32 if layout == "nchw_f32" else np.float16
        expected = crop_patches_nchw(frame, pairs, s, mean, std, swap_rb=swap, dtype=dtype)
        kernel = gpu.PatchCropKernel(layout, mean, std, swap_rb=swap)
    out = gpu.DeviceBuffer(expected.nbytes)
    frame_dev = gpu.DeviceBuffer.from_array(frame)
    kernel(frame_dev.ptr, h, w, pairs, s, out.ptr)
    got = out.to_numpy(expected.shape, expected.dtype)
    assert np.array_equal(got.view(np.uint8), expected.view(np.uint8))  # bit for bit


@pytest.mark.gpu
def test_crop_kernel_pitched_frame(gpu):
    rng = np.random.default_rng(13)
    big = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    frame = big[:, :350]  # rows 400 * 3 bytes apart
    pairs = sample_pairs(300, 350, 128, 8, 40, 4, rng)
    expected = crop_patches(np.ascontiguousarray(frame), pairs, 128)
    out = gpu.DeviceBuffer(expected.nbytes)
    big_dev = gpu.DeviceBuffer.from_array(big)
    gpu.PatchCropKernel()(big_dev.ptr, 300, 350, pairs, 128, out.ptr, pitch=400 * 3)
    assert np.array_equal(out.to_numpy(expected.shape, np.uint8), expected)


@pytest.mark.gpu
def test_kernels_reject_bad_input(gpu):
    with pytest.raises(UserError, match="1..64 classes"):
        gpu.OverlapConfusionKernel(65)
    crop = gpu.PatchCropKernel()
    with pytest.raises(UserError, match="inside"):
        crop(0, 100, 100, np.array([[0, 0, 90, 0]]), 32, 0)


# ---------------------------------------------------------------------------------------------
# On a GPU: the patch-vs-frame kernels and the statistics


from edge_guard.consistency import frame_confusion, frame_scores, pair_scores  # noqa: E402
from edge_guard.crop import crop_tops  # noqa: E402
from edge_guard.patches import sample_patches  # noqa: E402

STATS = [("miou", 0), ("agreement", 0), ("miou-min", 0), ("miou-min", 1000)]


def frame_and_patches(kind, k, s, c, rng, height, width):
    """(frame labels (H, W), tops (K, 2), patch labels (K, s, s)): the patches copy the frame
    under them, and every other one is overwritten with a map of ``kind`` in its lower half,
    so scores range from 1.0 to low values."""
    frame = label_maps(kind, 1, max(height, width), c, rng, dtype=np.int64)[0, :height, :width]
    tops = sample_patches(height, width, s, k, rng)
    patches = np.stack([frame[y:y + s, x:x + s] for y, x in tops])
    noise = label_maps("random", k, s, c, rng, dtype=np.int64)
    patches[::2, s // 2:] = noise[::2, s // 2:]
    return frame.astype(np.int32), tops, patches.astype(np.int32)


@pytest.mark.gpu
@pytest.mark.parametrize("statistic, min_pixels", STATS)
@pytest.mark.parametrize("c", [19, 64])
@pytest.mark.parametrize("k, s", [(1, 64), (5, 97), (50, 256)])
@pytest.mark.parametrize("kind", KINDS)
def test_frame_confusion_kernel_equals_reference(gpu, kind, k, s, c, statistic, min_pixels):
    rng = np.random.default_rng(k * 1000 + s + c)
    height, width = s + 37, 2 * s + 5
    frame, tops, patches = frame_and_patches(kind, k, s, c, rng, height, width)
    kernel = gpu.FrameConfusionKernel(c, "int32", "int32", statistic=statistic, min_pixels=min_pixels)
    dev_patches, dev_frame = gpu.DeviceBuffer.from_array(patches), gpu.DeviceBuffer.from_array(frame)
    cm = gpu.DeviceBuffer(4 * k * c * c)
    out = gpu.DeviceBuffer(4 * (k + 1))
    kernel(dev_patches.ptr, dev_frame.ptr, height, width, tops, s, out.ptr, confusion_ptr=cm.ptr)
    values = out.to_numpy((k + 1,), np.float32)
    expected = frame_scores(patches, frame, tops, c, statistic, min_pixels)
    assert np.array_equal(cm.to_numpy((k, c, c), np.uint32), frame_confusion(patches, frame, tops, c))
    assert np.array_equal(values[:k], expected)  # bit for bit
    assert values[k] == np.float32(mean_score(expected))
    if kind == "blocks" and k > 1:
        assert expected.min() < 1.0 and expected.max() == 1.0  # the test does vary the scores


@pytest.mark.gpu
@pytest.mark.parametrize("label_dtype, frame_dtype", [("uint8", "int64"), ("int64", "uint16"),
                                                      ("int16", "int32"), ("uint16", "uint8")])
def test_frame_confusion_kernel_label_dtypes(gpu, label_dtype, frame_dtype):
    rng = np.random.default_rng(14)
    k, s, c, height, width = 6, 96, 19, 200, 300
    frame, tops, patches = frame_and_patches("checker_ignore", k, s, c, rng, height, width)
    frame, patches = frame.astype(np.int64), patches.astype(np.int64)
    for labels, dtype in ((frame, frame_dtype), (patches, label_dtype)):
        if np.dtype(dtype).kind == "i":
            labels[..., ::13, ::3] = -1  # negative ids are ignored too
    frame, patches = frame.astype(frame_dtype), patches.astype(label_dtype)
    kernel = gpu.FrameConfusionKernel(c, label_dtype, frame_dtype, statistic="miou")
    dev_patches, dev_frame = gpu.DeviceBuffer.from_array(patches), gpu.DeviceBuffer.from_array(frame)
    scores, score = kernel.score(dev_patches.ptr, dev_frame.ptr, height, width, tops, s)
    expected = frame_scores(patches, frame, tops, c)
    assert np.array_equal(scores, expected) and score == mean_score(expected)


@pytest.mark.gpu
def test_frame_confusion_kernel_tops_by_device_pointer(gpu):
    rng = np.random.default_rng(15)
    k, s, c, height, width = 7, 128, 19, 256, 512
    frame, tops, patches = frame_and_patches("blocks", k, s, c, rng, height, width)
    kernel = gpu.FrameConfusionKernel(c, statistic="agreement")
    out = gpu.DeviceBuffer(4 * (k + 1))
    stream = gpu.device.new_stream()
    dev = [gpu.DeviceBuffer.from_array(a) for a in (patches, frame, tops)]
    kernel(dev[0].ptr, dev[1].ptr, height, width, dev[2].ptr, s, out.ptr, stream=stream, k=k)
    got = out.to_numpy((k + 1,), np.float32, stream)[:k]
    assert np.array_equal(got, frame_scores(patches, frame, tops, c, "agreement"))


@pytest.mark.gpu
@pytest.mark.parametrize("statistic, min_pixels", STATS)
def test_overlap_confusion_kernel_statistics(gpu, statistic, min_pixels):
    rng = np.random.default_rng(16)
    k, s, c = 9, 160, 19
    scene = label_maps("blocks", 1, 3 * s, c, rng)[0]
    pairs = sample_pairs(3 * s, 3 * s, s, s // 16, s // 8 + 1, k, rng)
    # Both patches cut from one map agree on their overlap; every other pair gets noise in a
    # third of its second patch, so the scores range from 1.0 to low values.
    labels = np.stack([scene[y:y + s, x:x + s] for y, x in pairs.reshape(-1, 2)])
    labels[1::4, : s // 3] = label_maps("random", len(labels[1::4]), s, c, rng)[:, : s // 3]
    kernel = gpu.OverlapConfusionKernel(c, "int32", statistic=statistic, min_pixels=min_pixels)
    on_device = gpu.DeviceBuffer.from_array(labels)
    scores, score = kernel.score(on_device.ptr, pairs, s)
    expected = pair_scores(labels, pairs, c, statistic, min_pixels)
    assert np.array_equal(scores, expected) and score == mean_score(expected)
    assert expected.min() < 1.0 and expected.max() == 1.0


@pytest.mark.gpu
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("k, s", [(1, 64), (5, 97), (50, 256)])
def test_crop_tops_kernel_equals_reference(gpu, swap, k, s):
    rng = np.random.default_rng(k + s + 1)
    h, w = s + 70, 2 * s + 3
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    tops = sample_patches(h, w, s, k, rng)
    expected = crop_tops(frame, tops, s, swap_rb=swap)
    kernel = gpu.PatchCropKernel(swap_rb=swap)
    out = gpu.DeviceBuffer(expected.nbytes)
    frame_dev, tops_dev = gpu.DeviceBuffer.from_array(frame), gpu.DeviceBuffer.from_array(tops)
    kernel.crop_tops(frame_dev.ptr, h, w, tops, s, out.ptr)
    assert np.array_equal(out.to_numpy(expected.shape, np.uint8), expected)
    kernel.crop_tops(frame_dev.ptr, h, w, tops_dev.ptr, s, out.ptr, n=k)  # tops on the device
    assert np.array_equal(out.to_numpy(expected.shape, np.uint8), expected)


@pytest.mark.gpu
def test_crop_kernel_swaps_a_whole_frame(gpu):
    # The device pipeline's full-frame engine gets the frame in the graph's channel order so.
    rng = np.random.default_rng(17)
    frame = rng.integers(0, 256, (123, 301, 3), dtype=np.uint8)
    out = gpu.DeviceBuffer(frame.nbytes)
    frame_dev = gpu.DeviceBuffer.from_array(frame)
    gpu.PatchCropKernel(swap_rb=True).crop_tops(frame_dev.ptr, 123, 301, np.zeros((1, 2), np.int32),
                                                (123, 301), out.ptr)
    assert np.array_equal(out.to_numpy(frame.shape, np.uint8), frame[:, :, ::-1])


@pytest.mark.gpu
def test_frame_kernels_reject_bad_input(gpu):
    with pytest.raises(UserError, match="label dtype float32 unsupported"):
        gpu.FrameConfusionKernel(19, "int32", "float32")
    with pytest.raises(UserError, match="unknown score statistic"):
        gpu.FrameConfusionKernel(19, statistic="dice")
    with pytest.raises(UserError, match="inside the 100x100 frame labels"):
        gpu.FrameConfusionKernel(19)(0, 0, 100, 100, np.array([[70, 0]]), 32, 0)
    with pytest.raises(UserError, match="inside the 100x100 frame"):
        gpu.PatchCropKernel().crop_tops(0, 100, 100, np.array([[0, 80]]), 32, 0)


def test_target_for_devices_nvrtc_cannot_build():
    assert nvrtc.target_for(87) == "sm_87"
    newest = max(a for nv in nvrtc.available_nvrtcs() for a in nv.archs)
    assert nvrtc.target_for(newest + 9) == f"compute_{newest}"  # PTX, JIT-compiled on load
