"""Run a serialized TensorRT engine on uint8 patch batches (offline checks of build-engine).

The engine-execution code lives in the runtime (``edge_guard.backends.tensorrt``), which
must not import the offline tools; build-engine checks its engines with the very runner
the vehicle uses.
"""

from edge_guard.backends.tensorrt import TrtRunner, load_cudart

__all__ = ["TrtRunner", "load_cudart"]
