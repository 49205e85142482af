"""CUDA kernels: NVRTC compilation for every target (no GPU needed), the disk cache, and
(on a GPU) exact equality with the NumPy references."""

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


def test_ptx_when_asked():
    ptx = nvrtc.compile_kernel("overlap_confusion", "compute_87")
    assert b".entry overlap_confusion" in ptx and b"match.any.sync" in ptx
    assert ptx.endswith(b"\0")


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


def test_target_for_devices_nvrtc_cannot_build():
    assert nvrtc.target_for(87) == "sm_87"
    newest = max(a for nv in nvrtc.available_nvrtcs() for a in nv.archs)
    assert nvrtc.target_for(newest + 9) == f"compute_{newest}"  # PTX, JIT-compiled on load
