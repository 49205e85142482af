"""Shared pytest setup: tests marked ``gpu`` are skipped when no CUDA device can be used."""

import pytest


def _gpu_available() -> bool:
    try:
        from edge_guard.kernels.device import gpu_count
    except Exception:
        return False
    return gpu_count() > 0


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _gpu_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU with a working driver (none found)")
        for item in gpu_items:
            item.add_marker(skip)
