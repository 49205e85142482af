"""Offline tools (PyTorch): data, models, training, attacks, evaluation, calibration. Never imported by the runtime."""
