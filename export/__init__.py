"""Export of the segmentation net to ONNX and TensorRT (offline)."""
