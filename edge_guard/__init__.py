"""edge-guard: detect adversarial frames for semantic segmentation at frame rate.

The runtime (this package, minus ``edge_guard.calibration``/``edge_guard.export``) needs
only NumPy, OpenCV and an inference backend; it never imports torch.
"""

__version__ = "0.1.0"
