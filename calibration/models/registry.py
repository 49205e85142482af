"""Name -> network factory registry (timm style).

Every factory takes ``num_classes`` and keyword options and returns the RAW network:
normalised (N, 3, H, W) float in, logits (N, C, H, W) at input resolution out.
Normalisation belongs to :class:`~edge_guard.calibration.models.segmenter.Segmenter`.
"""

from typing import Callable, Dict

from torch import nn

from edge_guard.errors import UserError

_FACTORIES: Dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] = None, *, name: str = None):
    """Decorator adding a factory under its function name (or ``name``).

    Use as ``@register_model`` or ``@register_model(name="x")``.
    """
    def add(f):
        key = name or f.__name__
        if key in _FACTORIES and _FACTORIES[key] is not f:
            raise ValueError(f"model {key!r} is registered twice")
        _FACTORIES[key] = f
        return f

    return add(fn) if fn is not None else add


def list_models() -> list:
    """Sorted names of every registered model."""
    _load_builtin()
    return sorted(_FACTORIES)


def create_model(name: str, num_classes: int = 19, **kwargs) -> nn.Module:
    """Build the raw network ``name`` with ``num_classes`` output channels."""
    _load_builtin()
    if name not in _FACTORIES:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(sorted(_FACTORIES))}")
    if int(num_classes) < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    try:
        return _FACTORIES[name](num_classes=int(num_classes), **kwargs)
    except TypeError as exc:
        # A misspelt option reaches the factory as an unexpected keyword.
        raise UserError(f"bad options for model {name!r} {kwargs}: {exc}") from exc


def _load_builtin():
    # The built-in architectures register themselves on import; importing here (not at
    # module top) keeps registry.py free of import cycles with the model modules.
    from . import dla, drn, edge_small  # noqa: F401
