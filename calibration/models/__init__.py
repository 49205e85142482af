"""Segmentation networks (edge_small, DRN-D-22, DLA-34), their registry and checkpoints."""

from .checkpoint import load_segmenter, save_checkpoint
from .registry import create_model, list_models, register_model
from .segmenter import CITYSCAPES_MEAN, CITYSCAPES_STD, Segmenter, build_segmenter, labels_of

__all__ = ["create_model", "list_models", "register_model", "Segmenter", "build_segmenter",
           "labels_of", "load_segmenter", "save_checkpoint", "CITYSCAPES_MEAN", "CITYSCAPES_STD"]
