"""Targeted attacks on segmenters (DAG, Houdini; fixed-budget L-inf SegPGD and masked-CE PGD,
also untargeted) and their adaptive (EOT) variants; adv_lib's dag and alma_prox (plain only,
an optional dependency imported when they run: adv_lib_attacks).

One signature for every attack (adv_lib style)::

    fn(model, images, target, *, mask=None, **hyper) -> AttackResult

images (N, 3, H, W) float in [0, 1]; target (N, H, W) int64 class ids, 255 = ignore;
``model`` returns logits (N, C, H, W).
"""

from .adv_lib_attacks import adv_lib_alma_prox, adv_lib_dag
from .blur import Blurred, gaussian_blur
from .budget import project, quantize
from .dag import dag, dag_loss
from .frame_views import FrameAgreeViews, FrameViews
from .houdini import houdini, houdini_loss
from .maskedce import masked_ce, masked_ce_loss
from .pgd import LINF_PRESETS
from .result import AttackResult
from .segpgd import segpgd, segpgd_lambda, segpgd_loss
from .views import (ADAPTIVE, PAIR_ADAPTIVE, PATCH_ADAPTIVE, BlurViews, PairViews, PatchViews, View, Views,
                    make_views)

ATTACKS = {"dag": dag, "houdini": houdini, "segpgd": segpgd, "maskedce": masked_ce,
           "adv_lib.dag": adv_lib_dag, "adv_lib.alma_prox": adv_lib_alma_prox}
LOSSES = {"dag": dag_loss, "houdini": houdini_loss, "segpgd": segpgd_loss, "maskedce": masked_ce_loss}
#: Attacks with a fixed L-inf budget and step count (their settings' defaults differ).
FIXED_BUDGET = ("segpgd", "maskedce")
#: Attacks of the model alone (adv_lib's, `pip install --no-deps adv-lib`): no adaptive variant.
PLAIN_ONLY = ("adv_lib.dag", "adv_lib.alma_prox")

__all__ = ["ATTACKS", "LOSSES", "ADAPTIVE", "AttackResult", "dag", "dag_loss", "houdini",
           "houdini_loss", "project", "quantize", "gaussian_blur", "Blurred", "View", "Views",
           "BlurViews", "PatchViews", "PairViews", "FrameViews", "FrameAgreeViews", "make_views",
           "PATCH_ADAPTIVE", "PAIR_ADAPTIVE", "segpgd", "segpgd_loss", "segpgd_lambda", "masked_ce",
           "masked_ce_loss", "LINF_PRESETS", "FIXED_BUDGET", "PLAIN_ONLY", "adv_lib_dag", "adv_lib_alma_prox"]
