"""adv_lib's (Jérôme Rony) two segmentation attacks as attack methods of ours: ``adv_lib.dag``
and ``adv_lib.alma_prox``, with the signature of every attack here (see the package docstring),
run on the same frames, targets and model as ours (``edge-guard attack --method adv_lib.dag``).

adv_lib is an optional dependency (``pip install --no-deps adv-lib``: the ``crosscheck`` extra;
--no-deps keeps its torchvision and visdom out, which break beside torch's CPU build). It is
imported lazily, file by file (load_adv_lib): ``import adv_lib.attacks.segmentation`` would run
adv_lib/attacks/__init__, which imports every attack, among them augmented_lagrangian ->
distances.lpips -> torchvision, and every attack module imports utils.visdom_logger -> visdom.
So dense_adversary.py and alma_prox.py are loaded on their own (under private module names),
with a placeholder ``adv_lib.utils.visdom_logger`` in sys.modules while they load when visdom
is missing (the attacks only name its VisdomLogger, for their unused ``callback``).
alma_prox.py's @torch.compile prox operator runs eager (inspect.unwrap): the same arithmetic,
without an inductor build. The loaded modules are cached (one load per process).

Both attack the model only (no adaptive variant), targeted, on the valid pixels (target != 255,
inside ``mask``). Their float result is projected onto the budgets given (l2 RMS, linf) and,
with ``quantize``, rounded to 8-bit by our budget code (budget.quantize) after the attack, not
at every step as ours do: success and the other figures are measured on that final image.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
import time
import types
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from edge_guard.errors import MissingDependency, UserError

from ..models.segmenter import labels_of
from .budget import check_budget, project, quantize as quantize_8bit
from .engine import check_inputs, clean_inputs
from .result import AttackResult, distances, miou, success_rate

_VISDOM = "adv_lib.utils.visdom_logger"
INSTALL = ("adv_lib is not installed: pip install --no-deps adv-lib "
           "(the crosscheck extra; --no-deps keeps its torchvision and visdom out)")
PLAIN_ONLY_MESSAGE = "adv_lib's attacks attack the model only: no adaptive variant (run it plain)"


def _placeholder_visdom_logger() -> types.ModuleType:
    module = types.ModuleType(_VISDOM, "placeholder (edge_guard.calibration.attacks.adv_lib_attacks): "
                                       "visdom is not installed")

    class VisdomLogger:  # named by the attacks' signatures and isinstance tests only
        def __init__(self, *args, **kwargs):
            raise MissingDependency("adv_lib's VisdomLogger needs visdom, which is not installed")

    module.VisdomLogger = VisdomLogger
    return module


def _load_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_adv_lib() -> dict:
    """{'dag', 'alma_prox', 'difference_of_logits', 'version', 'visdom_placeholder'}: adv_lib's
    two segmentation attacks, loaded file by file (see the module docstring), once per process.
    MissingDependency (one line naming the install) when adv_lib is not installed."""
    try:
        spec = importlib.util.find_spec("adv_lib")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(INSTALL)
    return dict(_load(str(spec.submodule_search_locations[0])))


@functools.lru_cache(maxsize=None)
def _load(package: str) -> dict:
    adv_lib = importlib.import_module("adv_lib")  # its __init__ holds __version__ only
    folder = Path(package) / "attacks" / "segmentation"
    placeholder = None
    try:
        importlib.import_module(_VISDOM)
    except ImportError:  # visdom missing: ModuleNotFoundError from inside visdom_logger.py
        placeholder = _placeholder_visdom_logger()
        sys.modules[_VISDOM] = placeholder
    try:
        dense = _load_file("_adv_lib_dense_adversary", folder / "dense_adversary.py")
        alma = _load_file("_adv_lib_alma_prox", folder / "alma_prox.py")
    finally:
        if placeholder is not None and sys.modules.get(_VISDOM) is placeholder:
            del sys.modules[_VISDOM]
    alma.prox_linf_indicator = inspect.unwrap(alma.prox_linf_indicator)  # eager, not torch.compile
    return {"dag": dense.dag, "alma_prox": alma.alma_prox, "difference_of_logits": dense.difference_of_logits,
            "version": getattr(adv_lib, "__version__", "?"), "visdom_placeholder": placeholder is not None}


class _DagProbe(torch.nn.Module):
    """The model, as adv_lib's dag calls it: on the images still active, in batch order. It
    repeats dag's own stopping test on the logits it returns (the same difference of logits,
    masks and threshold), so it knows which frames each call holds, and keeps per frame the
    last input the model saw, its forward count, whether it reached the threshold and when."""

    def __init__(self, model, clean, labels, masks, threshold, difference_of_logits):
        super().__init__()
        self.model, self.threshold, self.dol = model, threshold, difference_of_logits
        self.labels, self.masks = labels * masks, masks  # as dag's masked_labels
        self.masks_sum = masks.flatten(1).sum(dim=1)
        n = len(clean)
        self.active = torch.arange(n, device=clean.device)
        self.last = clean.clone()
        self.calls = torch.zeros(n, dtype=torch.int64)
        self.reached = torch.zeros(n, dtype=torch.bool)
        self.seconds = torch.zeros(n, dtype=torch.float64)
        self.start = time.perf_counter()

    def forward(self, x):
        logits = self.model(x)
        with torch.no_grad():
            idx = self.active
            dl = -self.dol(logits.detach(), labels=self.labels[idx])  # targeted: multiplier -1
            percent = ((dl < 0) & self.masks[idx]).flatten(1).sum(dim=1) / self.masks_sum[idx]
            is_adv = percent >= self.threshold
            self.last[idx] = x.detach()
            cpu = idx.cpu()
            self.calls[cpu] += 1
            self.seconds[cpu] = time.perf_counter() - self.start
            self.reached[idx[is_adv].cpu()] = True
            self.active = idx[~is_adv]
        return logits


def _prepare(images, target, mask, quantize, l2, linf, threshold, views):
    if views is not None:
        raise UserError(PLAIN_ONLY_MESSAGE)
    check_inputs(images, target, mask)
    check_budget(l2, linf)
    if threshold is None or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return clean_inputs(images, target, mask, quantize)


def _result(model, clean, target, valid, adv, quantize, l2, linf, iterations, seconds) -> AttackResult:
    """adv_lib's float images onto the budgets (and to 8-bit), measured as our attacks measure."""
    adv = adv.detach().to(clean.dtype)
    out = quantize_8bit(clean, adv, l2, linf) if quantize else project(clean, adv, l2, linf)
    with torch.no_grad():
        logits = model(out)
    pred = labels_of(logits)
    l2_d, linf_d = distances(clean, out)
    return AttackResult(images=out.cpu(), prediction=pred.cpu(), success=success_rate(pred, target, valid).cpu(),
                        miou=miou(pred, target, valid, logits.shape[1]).cpu(), l2=l2_d.cpu(), linf=linf_d.cpu(),
                        iterations=iterations, seconds=seconds)


def adv_lib_dag(model, images: torch.Tensor, target: torch.Tensor, *, mask: Optional[torch.Tensor] = None,
                quantize: bool = True, l2: Optional[float] = None, linf: Optional[float] = None,
                max_iter: int = 200, threshold: float = 0.99, views=None,
                seed: Union[int, Sequence[int], None] = None, step: Optional[float] = None) -> AttackResult:
    """adv_lib's dag (targeted, p=inf, γ = ``step``, None: 0.5/255 as our DAG's gamma;
    adv_threshold = ``threshold``; masks = valid pixels). A frame that reached the threshold
    gets dag's image (its first iterate that did); one that did not gets its last iterate, the
    last image the model saw (after max_iter - 1 steps: dag's final step is never evaluated),
    where dag itself returns the clean image. ``iterations``: steps up to the returned iterate
    (max_iter for a miss, every step taken); ``seconds``: until the frame's last forward.
    Deterministic: dag draws no randomness, so ``seed`` is unused. See the module docstring."""
    clean, target, valid = _prepare(images, target, mask, quantize, l2, linf, threshold, views)
    adv = load_adv_lib()
    gamma = 0.5 / 255 if step is None else float(step)
    probe = _DagProbe(model, clean, target, valid, threshold, adv["difference_of_logits"])
    returned = adv["dag"](probe, clean, target, masks=valid, targeted=True, adv_threshold=threshold,
                          max_iter=int(max_iter), γ=gamma, p=float("inf")).detach()
    reached = probe.reached.to(clean.device).view(-1, 1, 1, 1)
    image = torch.where(reached, returned, probe.last)
    iterations = torch.where(probe.reached, probe.calls - 1, probe.calls)
    total = torch.full_like(probe.seconds, time.perf_counter() - probe.start)
    seconds = torch.where(probe.reached, probe.seconds, total)
    return _result(model, clean, target, valid, image, quantize, l2, linf, iterations, seconds)


def adv_lib_alma_prox(model, images: torch.Tensor, target: torch.Tensor, *, mask: Optional[torch.Tensor] = None,
                      quantize: bool = True, l2: Optional[float] = None, linf: Optional[float] = None,
                      max_iter: int = 500, threshold: float = 0.99, views=None,
                      seed: Union[int, Sequence[int], None] = None, step: Optional[float] = None) -> AttackResult:
    """adv_lib's alma_prox, the minimum-norm L-inf attack (targeted, num_steps = ``max_iter``,
    adv_threshold = ``threshold``, masks = valid pixels, every other argument at adv_lib's
    default). It returns the reached iterate of smallest L-inf, else the one of highest success.
    ``step`` is unused (accepted for the common call; its learning rate is adv_lib's lr_init).
    Every step runs: ``iterations`` = max_iter. Frames are attacked one at a time (``seconds``:
    from the batch's start until the frame's own end): in a batch, alma_prox couples them (its
    prox's search length follows the batch's largest perturbation) and fails on frames of
    different valid-pixel counts (adv_lib 0.2.8 gathers index -1 where one frame may discard
    no constraint yet and another may). Deterministic: alma_prox draws no randomness, so
    ``seed`` is unused. See the module docstring."""
    clean, target, valid = _prepare(images, target, mask, quantize, l2, linf, threshold, views)
    if max_iter == 1:  # its constraint-mask decay divides by num_steps - 1
        raise UserError("adv_lib.alma_prox needs --max-iter of at least 2")
    adv = load_adv_lib()
    n = len(clean)
    returned, seconds = clean.clone(), torch.zeros(n, dtype=torch.float64)
    start = time.perf_counter()
    for i in range(n):  # one frame a call: see the docstring
        returned[i:i + 1] = adv["alma_prox"](model, clean[i:i + 1], target[i:i + 1], masks=valid[i:i + 1],
                                             targeted=True, adv_threshold=threshold, num_steps=int(max_iter)).detach()
        seconds[i] = time.perf_counter() - start
    iterations = torch.full((n,), int(max_iter), dtype=torch.int64)
    return _result(model, clean, target, valid, returned, quantize, l2, linf, iterations, seconds)
