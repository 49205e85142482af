"""A stand-in for the ``tensorrt`` module and cuda-python's runtime, for tests without a GPU.

It implements only the calls edge-guard makes (the TensorRT 10/11 Python API), records
them, and "builds" an engine that is the ONNX file behind a small header, executed with
ONNX Runtime. Device pointers are addresses of host buffers, so the runner's copies are
real memmoves: the buffer handling of TrtRunner is exercised, not mocked away.
``fake_kernels`` stands in for the CUDA crop and scoring kernels (pairs and patch-vs-frame)
the same way: they read and write those host addresses with the NumPy references (the GPU
tests check the real ones), with top-lefts given as host arrays or 'device pointers'.
"""

from __future__ import annotations

import ctypes
import json
from types import SimpleNamespace

import numpy as np
import onnx

from edge_guard.consistency import frame_scores, mean_score, pair_scores
from edge_guard.crop import crop_tops

MAGIC = b"FAKE-TRT-ENGINE\n"


UINT8, INT32, INT64, FLOAT = (SimpleNamespace(name=n) for n in ("UINT8", "INT32", "INT64", "FLOAT"))
_ONNX_TO_DTYPE = {onnx.TensorProto.UINT8: UINT8, onnx.TensorProto.INT32: INT32,
                  onnx.TensorProto.INT64: INT64, onnx.TensorProto.FLOAT: FLOAT}


def make_fake_trt(version="10.3.0", fail_parse=False, fail_build=False):
    """A module-like namespace; ``.calls`` records what the builder was asked to do. Names,
    parameters and enum values are TensorRT's (tests/test_trt_stubs.py checks them against its
    stubs); a name starting with ``_`` is the fake's own, for tests."""
    calls = SimpleNamespace(builds=0, network_flags=[], workspace=[], profiles=[], cleared=[],
                            timing_in=[], ignore_mismatch=[])

    class Logger:
        WARNING = 2

        def __init__(self, min_severity=None):
            self.min_severity = min_severity

    class ITensor:
        def __init__(self, name):
            self.name = name

    class INetworkDefinition:
        def __init__(self, flags):
            self.flags = flags
            self._model = None
            self._raw = b""

        @property
        def num_inputs(self):
            return len(self._model.graph.input)

        def get_input(self, index):
            return ITensor(self._model.graph.input[index].name)

    class ParserError:
        def __init__(self, text):
            self._text = text

        def __str__(self):
            return self._text

    class OnnxParser:
        def __init__(self, network, logger):
            self._network = network
            self._errors = []

        def parse_from_file(self, model):
            if fail_parse:
                self._errors.append(ParserError("In node 3 (Unique): UNSUPPORTED_NODE"))
                return False
            with open(model, "rb") as f:
                self._network._raw = f.read()
            self._network._model = onnx.load_from_string(self._network._raw)
            return True

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, index):
            return self._errors[index]

    class IOptimizationProfile:
        def __init__(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 (TensorRT's parameter names)
            self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class ITimingCache:
        def __init__(self, data):
            self._data = data

        def serialize(self):
            return b"timing-cache:" + bytes(self._data)

    class IBuilderConfig:
        def __init__(self):
            self._profiles = []
            self._cache = None

        def set_memory_pool_limit(self, pool, pool_size):
            calls.workspace.append((pool, pool_size))

        def clear_flag(self, flag):
            calls.cleared.append(flag)

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache):
            calls.timing_in.append(bytes(serialized_timing_cache))
            return ITimingCache(serialized_timing_cache)

        def set_timing_cache(self, cache, ignore_mismatch):
            self._cache = cache
            calls.ignore_mismatch.append(ignore_mismatch)
            return True

        def get_timing_cache(self):
            return self._cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            calls.network_flags.append(flags)
            return INetworkDefinition(flags)

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            calls.builds += 1
            calls.profiles.append(config._profiles[0]._shapes)
            if fail_build:
                return None
            (name, shapes), = config._profiles[0]._shapes.items()
            header = json.dumps({"input": name, "profile": shapes}).encode()
            return MAGIC + len(header).to_bytes(4, "little") + header + network._raw

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            data = serialized_engine
            if not data.startswith(MAGIC):
                return None
            n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 4], "little")
            header = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + n])
            return ICudaEngine(header, data[len(MAGIC) + 4 + n:])

    class ICudaEngine:
        def __init__(self, header, model_bytes):
            import onnxruntime as ort

            self._session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
            model = onnx.load_from_string(model_bytes)
            self._inp, self._out = model.graph.input[0], model.graph.output[0]
            assert header["input"] == self._inp.name
            self._profile = header["profile"]
            self._names = [self._inp.name, self._out.name]

        @property
        def num_io_tensors(self):
            return 2

        def get_tensor_name(self, index):
            return self._names[index]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == self._inp.name else TensorIOMode.OUTPUT

        def get_tensor_profile_shape(self, name, profile_index):
            assert name == self._inp.name and profile_index == 0
            return tuple(tuple(s) for s in self._profile)

        def _vi(self, name):
            return self._inp if name == self._inp.name else self._out

        def get_tensor_dtype(self, name):
            return _ONNX_TO_DTYPE[self._vi(name).type.tensor_type.elem_type]

        def get_tensor_shape(self, name):
            return tuple(d.dim_value if d.HasField("dim_value") else -1
                         for d in self._vi(name).type.tensor_type.shape.dim)

        def create_execution_context(self):
            return IExecutionContext(self)

    class IExecutionContext:
        def __init__(self, engine):
            self.engine = engine
            self._addresses = {}
            self._shape = None
            self._shapes_set = []   # (name, shape) of every set_input_shape call
            self._executed = []     # the stream handle of every execute_async_v3 call

        def set_tensor_address(self, name, memory):
            self._addresses[name] = int(memory)
            return True

        def set_input_shape(self, name, shape):
            self._shapes_set.append((name, tuple(shape)))
            if name != self.engine._inp.name:
                return False
            lo, _, hi = self.engine._profile
            if not lo[0] <= shape[0] <= hi[0] or tuple(shape[1:]) != tuple(hi[1:]):
                return False
            self._shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            out = self.engine.get_tensor_shape(name)
            return (self._shape[0],) + tuple(out[1:])

        def execute_async_v3(self, stream_handle):
            self._executed.append(stream_handle)
            assert isinstance(stream_handle, int)
            engine, n = self.engine, int(np.prod(self._shape))
            x = np.frombuffer((ctypes.c_uint8 * n).from_address(self._addresses[engine._inp.name]),
                              np.uint8).reshape(self._shape).copy()
            y = np.ascontiguousarray(engine._session.run(None, {engine._inp.name: x})[0])
            ctypes.memmove(self._addresses[engine._out.name], y.ctypes.data, y.nbytes)
            return True

    # Enum members: TensorRT's values where the code does arithmetic on them, else their names.
    TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    return SimpleNamespace(
        __version__=version, Logger=Logger, Builder=Builder, OnnxParser=OnnxParser, Runtime=Runtime,
        ITensor=ITensor, INetworkDefinition=INetworkDefinition, ParserError=ParserError,
        IOptimizationProfile=IOptimizationProfile, ITimingCache=ITimingCache, IBuilderConfig=IBuilderConfig,
        ICudaEngine=ICudaEngine, IExecutionContext=IExecutionContext,
        DataType=SimpleNamespace(UINT8=UINT8, INT32=INT32, INT64=INT64, FLOAT=FLOAT),
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1),
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        BuilderFlag=SimpleNamespace(TF32="TF32"), TensorIOMode=TensorIOMode, calls=calls)


class FakeCudart:
    """cuda-python runtime calls on host memory: a 'device pointer' is a host address."""

    class cudaMemcpyKind:  # noqa: N801 (mirrors cuda-python's name)
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self):
        self.buffers = {}
        self.freed = []
        self.syncs = 0

    def cudaStreamCreate(self):
        return 0, 7

    def cudaStreamDestroy(self, stream):
        return (0,)

    def cudaMalloc(self, nbytes):
        buf = np.zeros(nbytes, np.uint8)
        self.buffers[buf.ctypes.data] = buf
        return 0, buf.ctypes.data

    def cudaFree(self, ptr):
        self.freed.append(ptr)
        self.buffers.pop(ptr)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        ctypes.memmove(int(dst), int(src), int(nbytes))
        return (0,)

    def cudaStreamSynchronize(self, stream):
        self.syncs += 1
        return (0,)


def host_view(ptr, shape, dtype) -> np.ndarray:
    """A writable NumPy view of the host memory a fake 'device pointer' addresses."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer((ctypes.c_uint8 * nbytes).from_address(int(ptr)), dtype).reshape(shape)


def _rows(rows, n, width):
    """Top-lefts or pairs given as a host array, or as a 'device pointer' with their count."""
    if isinstance(rows, (int, np.integer)):
        assert n is not None, "a device pointer needs its row count"
        return host_view(rows, (int(n), width), np.int32).copy()
    return np.asarray(rows).reshape(-1, width)


class FakeCropKernel:
    """PatchCropKernel('nhwc_u8') on host addresses, through edge_guard.crop.crop_tops."""

    def __init__(self, swap_rb):
        self.swap_rb = swap_rb
        self.calls = []
        self.closed = False

    def close(self):
        self.closed = True

    def crop_tops(self, frame_ptr, height, width, tops, size, out_ptr, stream=None, n=None, pitch=None):
        ph, pw = (size, size) if isinstance(size, (int, np.integer)) else size
        tops = _rows(tops, n, 2)
        self.calls.append({"frame": int(frame_ptr), "out": int(out_ptr), "stream": stream,
                           "shape": (height, width), "size": (ph, pw), "n": len(tops)})
        frame = host_view(frame_ptr, (height, width, 3), np.uint8)
        out = host_view(out_ptr, (len(tops), ph, pw, 3), np.uint8)
        if (ph, pw) == (height, width):  # a whole frame (crop_tops takes square patches)
            assert not tops.any()
            out[0] = frame[:, :, ::-1] if self.swap_rb else frame
        else:
            assert ph == pw
            crop_tops(frame, tops, ph, out=out, swap_rb=self.swap_rb)

    def __call__(self, frame_ptr, height, width, pairs, size, out_ptr, stream=None, k=None, pitch=None):
        self.crop_tops(frame_ptr, height, width, _rows(pairs, k, 4).reshape(-1, 2), size, out_ptr, stream)


class FakeScoreKernel:
    """OverlapConfusionKernel on host addresses, through edge_guard.consistency."""

    def __init__(self, num_classes, label_dtype, statistic="miou", min_pixels=0):
        self.num_classes, self.label_dtype = num_classes, label_dtype
        self.statistic, self.min_pixels = statistic, min_pixels
        self.calls = []
        self.closed = False

    def close(self):
        self.closed = True

    def __call__(self, labels_ptr, pairs, size, out_ptr, stream=None, k=None):
        self.calls.append({"labels": int(labels_ptr), "out": int(out_ptr), "stream": stream})
        pairs = _rows(pairs, k, 4)
        k = len(pairs)
        labels = host_view(labels_ptr, (2 * k, size, size), self.label_dtype)
        scores = pair_scores(labels, pairs, self.num_classes, self.statistic, self.min_pixels)
        out = host_view(out_ptr, (k + 1,), np.float32)
        out[:k] = scores
        out[k] = mean_score(scores)


class FakeFrameScoreKernel:
    """FrameConfusionKernel on host addresses, through edge_guard.consistency."""

    def __init__(self, num_classes, label_dtype, frame_dtype, statistic="miou", min_pixels=0):
        self.num_classes, self.label_dtype, self.frame_dtype = num_classes, label_dtype, frame_dtype
        self.statistic, self.min_pixels = statistic, min_pixels
        self.calls = []
        self.closed = False

    def close(self):
        self.closed = True

    def __call__(self, labels_ptr, frame_ptr, height, width, tops, size, out_ptr, stream=None, k=None):
        self.calls.append({"labels": int(labels_ptr), "frame": int(frame_ptr), "out": int(out_ptr),
                           "stream": stream})
        tops = _rows(tops, k, 2)
        k = len(tops)
        labels = host_view(labels_ptr, (k, size, size), self.label_dtype)
        frame = host_view(frame_ptr, (height, width), self.frame_dtype)
        scores = frame_scores(labels, frame, tops, self.num_classes, self.statistic, self.min_pixels)
        out = host_view(out_ptr, (k + 1,), np.float32)
        out[:k] = scores
        out[k] = mean_score(scores)


def fake_kernels(num_classes, label_dtype, method="pairs", statistic="miou", min_pixels=0, frame_dtype=None):
    """The ``kernels`` factory of TensorRTRunner, on host memory."""
    from edge_guard.backends.tensorrt import DeviceKernels

    if method == "frame":
        score = FakeFrameScoreKernel(num_classes, label_dtype, frame_dtype or label_dtype, statistic, min_pixels)
    else:
        score = FakeScoreKernel(num_classes, label_dtype, statistic, min_pixels)
    return DeviceKernels(crop={False: FakeCropKernel(False), True: FakeCropKernel(True)}, score=score)


def write_fake_engine(path, model, shapes, trt=None):
    """Serialise ``model`` (an ONNX ModelProto) as a fake engine at ``path``; ``shapes``: the
    (min, opt, max) input shapes of its one profile. Returns the fake module it was built with."""
    trt = trt or make_fake_trt()
    builder = trt.Builder(None)
    net = builder.create_network(0)
    net._raw = model.SerializeToString()
    config = builder.create_builder_config()
    prof = builder.create_optimization_profile()
    prof.set_shape(model.graph.input[0].name, *shapes)
    config.add_optimization_profile(prof)
    path.write_bytes(builder.build_serialized_network(net, config))
    return trt
