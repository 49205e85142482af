"""Export of the segmentation net to ONNX (offline, PyTorch); its checks and the TensorRT
engine build are the runtime's own (edge_guard.engines)."""
