"""Save and load segmenters: edge-guard's own format, or official DRN / DLA checkpoints.

Our format (a dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "edge-guard", "version": 1, "model": name, "num_classes": C,
     "model_kwargs": {...}, "mean": [r, g, b], "std": [r, g, b], "class_names": [...],
     "logit_bias": [C floats] or None, "state_dict": net.state_dict(), "train": train_state or None}

Official checkpoints (fyu/drn ``DRNSeg``, ucbdrive/dla ``DLASeg``) are a bare state_dict or
``{"state_dict": ...}``, possibly with ``module.`` prefixes from DataParallel; they carry no
architecture name, so the caller passes ``arch``.
"""

import contextlib
import math
import pickle
import re
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from edge_guard.errors import UserError

from .registry import create_model, list_models
from .segmenter import CITYSCAPES_MEAN, CITYSCAPES_STD, Segmenter, default_class_names

FORMAT = "edge-guard"
VERSION = 1


def save_checkpoint(path, segmenter: Segmenter, train_state: Optional[dict] = None) -> Path:
    """Write ``segmenter`` (and optional training state: plain python / tensors) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": segmenter.name,
        "num_classes": segmenter.num_classes,
        "model_kwargs": dict(segmenter.model_kwargs),
        "mean": list(segmenter.mean),
        "std": list(segmenter.std),
        "class_names": list(segmenter.class_names),
        "logit_bias": None if segmenter.logit_bias is None else list(segmenter.logit_bias),
        "state_dict": {k: v.detach().cpu() for k, v in segmenter.net.state_dict().items()},
        "train": train_state,
    }
    # Write then rename, so an interrupted save never leaves a truncated checkpoint behind.
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    return path


def load_segmenter(path, arch: Optional[str] = None, num_classes: int = 19, mean=None, std=None,
                   map_location="cpu") -> Tuple[Segmenter, dict]:
    """Load a checkpoint -> (Segmenter in eval mode, meta).

    ``meta`` is our format's dict without ``state_dict`` (``train`` included), or for an
    official checkpoint ``{"format": "official", "model": arch, ...}``. ``arch``,
    ``num_classes``, ``mean`` and ``std`` apply to official checkpoints (mean/std default
    to the DRN repository's Cityscapes statistics); for ours, mean/std override the stored
    values when given.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (or is not a file)")
    obj = _read(path, map_location)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _load_ours(path, obj, arch, mean, std)
    state = _official_state_dict(obj)
    if state is None:
        raise UserError(f"{path} is not a model checkpoint (neither edge-guard's format nor a state_dict)")
    if arch is None:
        hint = f"; the file says arch={obj['arch']!r}" if isinstance(obj, dict) and isinstance(obj.get("arch"), str) else ""
        raise UserError(f"{path} is a raw (official) checkpoint without an architecture name: "
                        f"pass --arch ({', '.join(list_models())}){hint}")
    net = create_model(arch, num_classes=num_classes)
    _load_strict(net, state, path, arch)
    mean = tuple(mean) if mean is not None else CITYSCAPES_MEAN
    std = tuple(std) if std is not None else CITYSCAPES_STD
    seg = Segmenter(net, arch, num_classes, mean, std, {})
    meta = {"format": "official", "model": arch, "num_classes": num_classes, "model_kwargs": {},
            "mean": list(seg.mean), "std": list(seg.std), "class_names": list(seg.class_names),
            "train": None}
    return seg.eval(), meta


def _read(path: Path, map_location):
    try:
        with _numpy_scalars_allowed():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses pickled classes it does not know: loading them could run
        # arbitrary code. Name the class when that is the reason; otherwise it is no checkpoint.
        found = re.search(r"GLOBAL ([\w.]+) was not an allowed global", str(exc))
        if found:
            raise UserError(f"{path} cannot be loaded safely (weights_only): it pickles "
                            f"{found.group(1)}; re-save it as a plain state_dict") from exc
        raise UserError(f"{path} is not a readable PyTorch checkpoint") from exc
    except Exception as exc:  # torch raises RuntimeError / EOFError / ... for other files
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__})") from exc


def _numpy_scalars_allowed():
    """Context that lets weights_only read numpy scalars and dtypes.

    The official DRN / DLA training scripts save ``best_prec1`` as a numpy float next to
    the state_dict. Those classes only rebuild numbers, so allowing them is safe; older
    pickles name the scalar constructor ``numpy.core...``, newer ones ``numpy._core...``.
    """
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5: no allowlist, numpy scalars stay refused
        return contextlib.nullcontext()
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed = [scalar, (scalar, "numpy.core.multiarray.scalar"),
               (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dtypes.__all__ if isinstance(getattr(dtypes, n), type)]
    return safe_globals(allowed)


def _load_ours(path: Path, obj: dict, arch, mean, std):
    version = obj.get("version")
    if version != VERSION:
        raise UserError(f"{path} has checkpoint version {version!r}; this edge-guard reads version {VERSION}")
    missing = [k for k in ("model", "num_classes", "state_dict") if k not in obj]
    if missing:
        raise UserError(f"{path} is a damaged edge-guard checkpoint (no {', '.join(missing)})")
    name = obj["model"]
    if arch is not None and arch != name:
        raise UserError(f"{path} holds a {name!r} model, not {arch!r}: use --arch {name} (or no --arch), "
                        "or pick another file")
    kwargs = dict(obj.get("model_kwargs") or {})
    net = create_model(name, num_classes=obj["num_classes"], **kwargs)
    _load_strict(net, obj["state_dict"], path, name)
    seg = Segmenter(net, name, obj["num_classes"],
                    tuple(mean) if mean is not None else tuple(obj.get("mean", CITYSCAPES_MEAN)),
                    tuple(std) if std is not None else tuple(obj.get("std", CITYSCAPES_STD)),
                    kwargs, obj.get("class_names") or default_class_names(obj["num_classes"]),
                    _logit_bias(path, obj))
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    meta["mean"], meta["std"] = list(seg.mean), list(seg.std)
    return seg.eval(), meta


def _logit_bias(path: Path, obj: dict):
    """The checkpoint's logit_bias (None when absent, as in checkpoints written before it existed)."""
    bias = obj.get("logit_bias")
    if bias is None:
        return None
    if (not isinstance(bias, (list, tuple)) or len(bias) != obj["num_classes"]
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bias)):
        raise UserError(f"{path} is a damaged edge-guard checkpoint (logit_bias is not "
                        f"{obj['num_classes']} finite numbers)")
    return bias


def _official_state_dict(obj) -> Optional[dict]:
    """The tensors of a bare / wrapped official state_dict with ``module.`` stripped, else None."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        return None
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _load_strict(net, state: dict, path: Path, name: str) -> None:
    own = net.state_dict()
    # BatchNorm's step counter arrived in PyTorch 0.4.1, after the official DRN weights were
    # released; it plays no part in eval mode, so a file without it keeps the model's own.
    state = {**{k: v for k, v in own.items() if k.endswith(".num_batches_tracked")}, **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])}; "
                         "is num_classes right?)")
        raise UserError(f"{path} does not fit model {name!r}: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)
