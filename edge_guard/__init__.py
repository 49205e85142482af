"""edge-guard: detect adversarial frames for semantic segmentation at frame rate.

The runtime (this package, minus ``edge_guard.calibration``/``edge_guard.export``) needs
only NumPy, OpenCV and an inference backend; it never imports torch.
"""

__version__ = "0.1.0"

__all__ = ["Guard", "SequentialAlarm", "AlarmWindow", "Verdict", "__version__"]


def __getattr__(name):
    # Lazy, so that `import edge_guard` (the offline tools import it too) stays cheap and
    # free of import cycles: `from edge_guard import Guard, Verdict` loads the runtime.
    if name == "Guard":
        from .guard import Guard

        return Guard
    if name == "Verdict":
        from .verdict import Verdict

        return Verdict
    if name in ("SequentialAlarm", "AlarmWindow"):
        from . import alarms

        return getattr(alarms, name)
    raise AttributeError(f"module 'edge_guard' has no attribute {name!r}")
