"""CUDA kernels (.cu sources) and their NVRTC loader.

cuda-python is imported only when a kernel is compiled or launched, so this package imports
without it (MissingDependency names the extra to install).
"""

from .device import CudaError, DeviceBuffer, KernelModule, device_arch, gpu_count, synchronize
from .nvrtc import KernelCompileError, TARGET_ARCHS, compile_kernel, compile_source
from .ops import FrameConfusionKernel, OverlapConfusionKernel, PatchCropKernel

__all__ = [
    "CudaError", "DeviceBuffer", "FrameConfusionKernel", "KernelCompileError", "KernelModule",
    "OverlapConfusionKernel", "PatchCropKernel", "TARGET_ARCHS", "compile_kernel", "compile_source",
    "device_arch", "gpu_count", "synchronize",
]
