"""TensorRT engines from a bundle's ONNX graphs, built and checked on the vehicle itself.

``edge-guard build-engine`` and the TensorRT backend's first use build here, without PyTorch:
``trt_build`` (the build and its checks: fp16/int8 graphs under ONNX Runtime, then the engine
on the GPU against the fp32 graph), ``trt_frame`` (the same for the full-frame graph),
``precision`` (fp16 conversion, int8 Q/DQ quantisation), ``trt_compat`` (the graph's ops
against onnx-tensorrt's table), ``parity`` (label and score agreement), ``frames`` (the
calibration frames: a folder, or generated streets), ``ort_predict`` and ``bundle_info``.
The offline export (``edge_guard.export``) checks its graphs with the same code.
"""
