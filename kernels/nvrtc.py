"""Compile the CUDA kernels at run time with NVRTC, cached on disk.

NVRTC comes from cuda-python (``cuda.bindings.nvrtc``, or ``cuda.nvrtc`` in cuda-python
< 12.6) and its library from pip (extra ``kernels``). No GPU is needed to compile, so CI
checks every target architecture.

One NVRTC release cannot target every Jetson: CUDA 13 dropped sm_72 (Xavier). When the
NVRTC behind cuda-python cannot target the requested architecture, an older libnvrtc found
beside it (pip's ``nvidia-cuda-nvrtc-cu12``, or a CUDA toolkit under $CUDA_HOME or
/usr/local/cuda*) is used through ctypes; its C API has not changed since CUDA 11.

Cache: ``$EDGE_GUARD_CACHE/kernels`` or ``~/.cache/edge-guard/kernels``; one file per
(source, name, architecture, options, NVRTC version), keyed by their SHA-256.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import re
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

from edge_guard.errors import MissingDependency, UserError

SOURCES = Path(__file__).resolve().parent
#: The Jetson and datacenter targets CI compiles for: Xavier, Orin, Hopper.
TARGET_ARCHS = ("sm_72", "sm_87", "sm_90")


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel source; the message carries NVRTC's log."""

    def __init__(self, name: str, arch: str, log: str):
        self.log = log
        super().__init__(f"NVRTC failed to compile {name} for {arch}:\n{log.strip()}")


def cuda_module(name: str):
    """``cuda.bindings.<name>`` (cuda-python >= 12.6) or ``cuda.<name>`` (older releases)."""
    import importlib

    for full in (f"cuda.bindings.{name}", f"cuda.{name}"):
        try:
            return importlib.import_module(full)
        except ImportError:
            continue
    raise MissingDependency(
        f"the CUDA kernels need cuda-python ({name}), which is not installed: "
        f"pip install 'edge-guard[kernels]' (or 'edge-guard[gpu]' on the vehicle)")


def cache_dir() -> Path:
    root = os.environ.get("EDGE_GUARD_CACHE")
    if root:
        return Path(root).expanduser() / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-guard" / "kernels"


def parse_arch(arch) -> tuple[int, bool]:
    """'sm_87' -> (87, cubin=True); 'compute_87' -> (87, False, i.e. PTX); 87 -> (87, True)."""
    if isinstance(arch, int):
        return arch, True
    m = re.fullmatch(r"(sm|compute)_(\d+)[a-z]?", str(arch).strip())
    if not m:
        raise UserError(f"unknown GPU architecture {arch!r}: use sm_XY (e.g. sm_87) or compute_XY")
    return int(m.group(2)), m.group(1) == "sm"


# --------------------------------------------------------------------------------------------
# NVRTC implementations


class _BindingsNvrtc:
    """NVRTC through cuda-python."""

    def __init__(self):
        self.mod = cuda_module("nvrtc")
        self.version = tuple(self._ok(self.mod.nvrtcVersion(), "nvrtcVersion"))
        self.archs = tuple(self._ok(self.mod.nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs")[0])
        self.where = "cuda-python"

    def _ok(self, result, what):
        err, *values = result
        if err != self.mod.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"{what} failed: {self.mod.nvrtcGetErrorString(err)[1].decode()}")
        return values

    def compile(self, source: bytes, name: str, options: list[bytes], cubin: bool):
        m = self.mod
        (prog,) = self._ok(m.nvrtcCreateProgram(source, name.encode(), 0, [], []), "nvrtcCreateProgram")
        try:
            (err,) = m.nvrtcCompileProgram(prog, len(options), options)
            (size,) = self._ok(m.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            log = b" " * size
            self._ok(m.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
            log = log.rstrip(b"\0 ").decode(errors="replace")
            if err != m.nvrtcResult.NVRTC_SUCCESS:
                return None, log or m.nvrtcGetErrorString(err)[1].decode()
            get_size, get = ((m.nvrtcGetCUBINSize, m.nvrtcGetCUBIN) if cubin
                             else (m.nvrtcGetPTXSize, m.nvrtcGetPTX))
            (size,) = self._ok(get_size(prog), "nvrtcGet*Size")
            image = b" " * size
            self._ok(get(prog, image), "nvrtcGet*")
            return image, log
        finally:
            m.nvrtcDestroyProgram(prog)


class _LibNvrtc:
    """An NVRTC shared library other than cuda-python's, through ctypes."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        self.lib, self.where = lib, path
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._ok(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)
        n = ctypes.c_int()
        self._ok(lib.nvrtcGetNumSupportedArchs(ctypes.byref(n)), "nvrtcGetNumSupportedArchs")
        archs = (ctypes.c_int * n.value)()
        self._ok(lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
        self.archs = tuple(archs)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _ok(self, err, what):
        if err != 0:
            raise RuntimeError(f"{what} failed: {self.lib.nvrtcGetErrorString(err).decode()}")

    def _bytes(self, prog, get_size, get) -> bytes:
        size = ctypes.c_size_t()
        self._ok(get_size(prog, ctypes.byref(size)), "nvrtcGet*Size")
        buf = ctypes.create_string_buffer(size.value)
        self._ok(get(prog, buf), "nvrtcGet*")
        return buf.raw

    def compile(self, source: bytes, name: str, options: list[bytes], cubin: bool):
        lib = self.lib
        prog = ctypes.c_void_p()
        self._ok(lib.nvrtcCreateProgram(ctypes.byref(prog), source, name.encode(), 0, None, None),
                 "nvrtcCreateProgram")
        try:
            opts = (ctypes.c_char_p * len(options))(*options)
            err = lib.nvrtcCompileProgram(prog, len(options), opts)
            log = self._bytes(prog, lib.nvrtcGetProgramLogSize, lib.nvrtcGetProgramLog)
            log = log.rstrip(b"\0 ").decode(errors="replace")
            if err != 0:
                return None, log or lib.nvrtcGetErrorString(err).decode()
            if cubin:
                image = self._bytes(prog, lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN)
            else:
                image = self._bytes(prog, lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
            return image, log
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _side_library_paths() -> list[str]:
    """libnvrtc.so.N files other than the one cuda-python loads: pip wheels, CUDA toolkits."""
    if not sys.platform.startswith("linux"):
        return []
    roots = []
    try:
        import nvidia  # namespace package of NVIDIA's pip wheels

        roots += [os.path.join(p, "cuda_nvrtc", "lib") for p in nvidia.__path__]
    except ImportError:
        pass
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        roots.append(os.path.join(home, "lib64"))
    roots += sorted(glob.glob("/usr/local/cuda*/lib64"))
    found = []
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "libnvrtc.so.*"))):
            if re.fullmatch(r"libnvrtc\.so\.\d+(\.\d+)*", os.path.basename(path)):
                found.append(path)
    return found


@lru_cache(maxsize=None)
def available_nvrtcs() -> tuple:
    """Every usable NVRTC: cuda-python's first, then side libraries, newest first."""
    primary = _BindingsNvrtc()  # raises MissingDependency without cuda-python
    seen = {primary.version}
    side = []
    for path in _side_library_paths():
        try:
            nv = _LibNvrtc(path)
        except (OSError, AttributeError, RuntimeError):
            continue
        if nv.version not in seen:
            seen.add(nv.version)
            side.append(nv)
    side.sort(key=lambda nv: nv.version, reverse=True)
    return (primary, *side)


def nvrtc_for(cc: int, max_major: int | None = None):
    """The NVRTC to use for compute capability ``cc`` (e.g. 87).

    ``max_major`` (the driver's CUDA major) prefers a compiler no newer than the driver, whose
    output the driver can load.
    """
    nvs = available_nvrtcs()
    fit = [nv for nv in nvs if cc in nv.archs]
    if max_major is not None:
        fit.sort(key=lambda nv: nv.version[0] > max_major)  # stable: keeps the order otherwise
    if not fit:
        have = "; ".join(f"NVRTC {nv.version[0]}.{nv.version[1]} ({nv.where}): "
                         f"sm_{min(nv.archs)}..sm_{max(nv.archs)}" for nv in nvs)
        hint = (" CUDA 13 dropped sm_72 (Jetson Xavier): pip install 'nvidia-cuda-nvrtc-cu12'"
                if cc < 75 else "")
        raise UserError(f"no NVRTC here can compile for sm_{cc} ({have}).{hint}")
    return fit[0]


def target_for(cc: int) -> str:
    """'sm_<cc>' when an NVRTC here can build a cubin for it; otherwise PTX ('compute_XY') for
    the newest older architecture, which the driver compiles for the device when loading."""
    nvs = available_nvrtcs()
    if any(cc in nv.archs for nv in nvs):
        return f"sm_{cc}"
    lower = [a for nv in nvs for a in nv.archs if a <= cc]
    if not lower:
        nvrtc_for(cc)  # raises the UserError that lists what is installed
    return f"compute_{max(lower)}"


# --------------------------------------------------------------------------------------------
# Compilation with the disk cache


def source_path(source_name: str) -> Path:
    name = source_name if source_name.endswith(".cu") else source_name + ".cu"
    path = SOURCES / name
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in SOURCES.glob("*.cu")))
        raise UserError(f"no kernel source {name!r} (shipped: {shipped})")
    return path


def _cache_key(source: bytes, name: str, arch: str, options: list[bytes], version) -> str:
    h = hashlib.sha256()
    for part in (source, name.encode(), arch.encode(), repr(tuple(version)).encode(), *options):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache costs a recompile, not a failure
        warnings.warn(f"cannot cache the compiled kernel in {path.parent}: {exc}")


def compile_source(source: str | bytes, name: str = "kernel.cu", arch="sm_87",
                   options=(), cache: bool = True, max_major: int | None = None) -> bytes:
    """Compile CUDA C ``source`` to a cubin (``arch='sm_XY'``) or PTX (``'compute_XY'``).

    Returns the image as bytes (PTX ends with a NUL byte, as cuModuleLoadData wants).
    Raises KernelCompileError with NVRTC's log when the source does not compile.
    """
    src = source.encode() if isinstance(source, str) else bytes(source)
    cc, cubin = parse_arch(arch)
    arch = f"{'sm' if cubin else 'compute'}_{cc}"
    opts = [o.encode() if isinstance(o, str) else bytes(o) for o in options]
    nv = nvrtc_for(cc, max_major)
    path = None
    if cache:
        key = _cache_key(src, name, arch, opts, nv.version)
        stem = Path(name).stem
        path = cache_dir() / f"{stem}-{arch}-{key[:24]}.{'cubin' if cubin else 'ptx'}"
        try:
            return path.read_bytes()
        except OSError:
            pass
    image, log = nv.compile(src, name, [f"-arch={arch}".encode(), *opts], cubin)
    if image is None:
        raise KernelCompileError(name, arch, log)
    if not cubin and not image.endswith(b"\0"):
        image += b"\0"
    if path is not None:
        _write_atomic(path, image)
    return image


def compile_kernel(source_name: str, arch="sm_87", options=(), cache: bool = True,
                   max_major: int | None = None) -> bytes:
    """Compile a shipped kernel (``'patch_crop'`` or ``'overlap_confusion.cu'``) -> cubin bytes."""
    path = source_path(source_name)
    return compile_source(path.read_bytes(), path.name, arch, options, cache, max_major)
