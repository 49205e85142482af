"""Adversarial targets: the label maps an attacker wants the segmenter to output.

Each is a function of the frame shape and a seed (``remap`` also of the clean prediction,
``scene`` of another frame's labels) and returns (H, W) uint8 train ids
(255 = ignore, not counted by the attack). The paper's targets (§5.1 and supplementary):

- ``pure``: one random class everywhere ("Pure");
- ``emblem``: a cartoon face with ears, eyes, nose, whiskers and a bow, several classes on a
  coloured background; drawn here with OpenCV, standing in for the paper's "Hello Kitty";
- ``scene``: another real frame's labels with every person and vehicle removed and filled
  with what lies behind them ("Scene": an empty road);
- ``remap``: the clean prediction with its classes permuted ("Remapping");
- ``strip``: vertical stripes of classes ("Color strip");
- ``text``: a string written in one class on another ("ECCV 2018").
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import cv2
import numpy as np

from edge_guard.classes import ID, IGNORE, NUM_CLASSES
from edge_guard.errors import UserError

#: Classes the ``scene`` target removes: people and everything on wheels or rails.
MOVABLE = tuple(ID[n] for n in ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"))


def _hw(shape: Sequence[int]) -> tuple:
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise UserError(f"target shape must be positive, got {tuple(shape)}")
    return h, w


def _classes(seed: int, k: int) -> list:
    """k distinct random classes."""
    return [int(c) for c in np.random.default_rng(seed).permutation(NUM_CLASSES)[:k]]


def pure(shape, seed: int) -> np.ndarray:
    """One random class everywhere."""
    h, w = _hw(shape)
    return np.full((h, w), _classes(seed, 1)[0], np.uint8)


def strip(shape, seed: int) -> np.ndarray:
    """4 to 8 vertical stripes of equal width, neighbours of different classes."""
    h, w = _hw(shape)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 9))
    classes = [int(rng.integers(NUM_CLASSES))]
    while len(classes) < n:
        c = int(rng.integers(NUM_CLASSES))
        if c != classes[-1]:
            classes.append(c)
    edges = np.linspace(0, w, n + 1).round().astype(int)
    out = np.empty((h, w), np.uint8)
    for c, a, b in zip(classes, edges[:-1], edges[1:]):
        out[:, a:b] = c
    return out


def _paint(out: np.ndarray, cls: int, draw: Callable) -> None:
    """Run ``draw(mask)`` on a blank 8-bit mask and set ``cls`` where it drew (>= 128):
    OpenCV may anti-alias (its 5.x text does), and a label map must not blend classes."""
    mask = np.zeros(out.shape, np.uint8)
    draw(mask)
    out[mask >= 128] = cls


def text(shape, seed: int, text: str = "ECCV 2018") -> np.ndarray:
    """``text`` in one class, centred, ~80% of the width, on a background class."""
    h, w = _hw(shape)
    if not text.strip():
        raise UserError("the text target needs a non-empty string")
    bg, fg = _classes(seed, 2)
    out = np.full((h, w), bg, np.uint8)
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), base = cv2.getTextSize(text, font, 1.0, 2)
    scale = min(0.8 * w / tw, 0.5 * h / (th + base))
    thick = max(1, int(round(2 * scale)))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    org = (int((w - tw) / 2), int((h + th) / 2))
    _paint(out, fg, lambda m: cv2.putText(m, text, org, font, scale, 255, thick, cv2.LINE_8))
    return out


def emblem(shape, seed: int) -> np.ndarray:
    """A cartoon cat face (ears, eyes, nose, whiskers, bow) of five classes on a background.

    The seed picks the classes and jitters position and size; drawn with OpenCV primitives.
    """
    h, w = _hw(shape)
    rng = np.random.default_rng(seed)
    bg, face, ink, nose, bow, inner = _classes(seed, 6)
    out = np.full((h, w), bg, np.uint8)
    # The figure spans 2.45 r (ear tips to chin) by 3.3 r (whisker to whisker).
    r = min(0.8 * h / 2.45, 0.9 * w / 3.3) * rng.uniform(0.85, 1.0)
    cx = w / 2 + rng.uniform(-0.04, 0.04) * w
    cy = h / 2 + 0.22 * r + rng.uniform(-0.03, 0.03) * h
    line = max(1, int(round(r / 25)))

    def pt(dx, dy):  # face-relative coordinates (units of r) -> pixel
        return int(round(cx + dx * r)), int(round(cy + dy * r))

    def tri(points, cls):
        poly = np.array([pt(*p) for p in points], np.int32)
        _paint(out, cls, lambda m: cv2.fillPoly(m, [poly], 255, cv2.LINE_8))

    def ellipse(dx, dy, ax, ay, cls, thickness=-1):
        axes = (max(1, int(ax * r)), max(1, int(ay * r)))
        _paint(out, cls, lambda m: cv2.ellipse(m, pt(dx, dy), axes, 0, 0, 360, 255, thickness, cv2.LINE_8))

    def stroke(a, b, cls):
        _paint(out, cls, lambda m: cv2.line(m, pt(*a), pt(*b), 255, line, cv2.LINE_8))

    for side in (-1, 1):  # ears, then their insides
        tri([(side * 1.2, -0.3), (side * 1.1, -1.45), (side * 0.3, -0.85)], face)
        tri([(side * 1.03, -0.5), (side * 0.98, -1.2), (side * 0.52, -0.82)], inner)
    ellipse(0, 0, 1.3, 1.0, face)
    ellipse(0, 0, 1.3, 1.0, ink, line)  # outline
    for side in (-1, 1):
        ellipse(side * 0.5, -0.05, 0.12, 0.18, ink)  # eyes
        for dy, slope in ((0.15, -0.12), (0.3, 0.0), (0.45, 0.12)):  # whiskers
            stroke((side * 0.95, dy), (side * 1.65, dy + slope), ink)
    ellipse(0, 0.22, 0.13, 0.09, nose)
    # The bow sits on the left ear: two triangles meeting at a knot.
    bx, by = -0.75, -0.9
    tri([(bx, by), (bx - 0.45, by - 0.3), (bx - 0.45, by + 0.3)], bow)
    tri([(bx, by), (bx + 0.45, by - 0.3), (bx + 0.45, by + 0.3)], bow)
    ellipse(bx, by, 0.12, 0.12, ink)
    return out


def scene(shape, seed: int, source_labels: Optional[np.ndarray] = None) -> np.ndarray:
    """``source_labels`` (another frame's labels), resized to ``shape``, with every person and
    vehicle replaced by the nearest other label (see ``remove_movable``): the road looks empty.
    Without ``source_labels`` the labels of a generated frame (this seed) are used.
    """
    h, w = _hw(shape)
    if source_labels is None:
        from edge_guard.scenes import render_frame

        _, source_labels = render_frame(seed, (h, w))
    src = np.asarray(source_labels)
    if src.ndim != 2:
        raise UserError(f"scene target needs (H, W) source labels, got shape {src.shape}")
    src = src.astype(np.uint8)
    if src.shape != (h, w):
        src = cv2.resize(src, (w, h), interpolation=cv2.INTER_NEAREST)
    return remove_movable(src)


def remove_movable(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels with MOVABLE classes replaced by the nearest (Euclidean) other label:
    road under a car, the building behind a pedestrian. Ignore (255) is never used as a
    filler and stays where it was; a frame with nothing else becomes road."""
    out = labels.copy()
    gone = np.isin(labels, MOVABLE)
    if not gone.any():
        return out
    kept = ~gone & (labels != IGNORE)
    if not kept.any():
        out[gone] = ID["road"]
        return out
    # Each kept pixel gets its own label; every other pixel the label of the nearest kept one.
    _, nearest = cv2.distanceTransformWithLabels(
        (~kept).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(nearest.max()) + 1, np.uint8)
    lut[nearest[kept]] = labels[kept]
    out[gone] = lut[nearest[gone]]
    return out


def remap(clean_pred: np.ndarray, seed: int) -> np.ndarray:
    """The clean prediction with its classes permuted (no class keeps its id); 255 kept."""
    pred = np.asarray(clean_pred)
    if pred.ndim != 2:
        raise UserError(f"remap target needs an (H, W) prediction, got shape {pred.shape}")
    rng = np.random.default_rng(seed)
    while True:  # a random derangement: about e draws on average
        perm = rng.permutation(NUM_CLASSES)
        if not np.any(perm == np.arange(NUM_CLASSES)):
            break
    lut = np.full(256, IGNORE, np.uint8)
    lut[:NUM_CLASSES] = perm
    return lut[pred.astype(np.uint8)]


TARGETS: Dict[str, Callable] = {
    "pure": pure, "emblem": emblem, "scene": scene, "remap": remap, "strip": strip, "text": text,
}


def make_target(name: str, shape, seed: int, clean_pred: Optional[np.ndarray] = None,
                source_labels: Optional[np.ndarray] = None, text: Optional[str] = None) -> np.ndarray:
    """The target ``name`` for a frame of ``shape`` ((H, W) or (H, W, 3)) -> (H, W) uint8.

    ``clean_pred`` is needed by ``remap``; ``source_labels`` is used by ``scene``; ``text``
    replaces the string of ``text``."""
    if name not in TARGETS:
        raise UserError(f"unknown target {name!r}: choose one of {', '.join(TARGETS)}")
    h, w = _hw(shape)
    if name == "remap":
        if clean_pred is None:
            raise UserError("the remap target needs the clean prediction")
        if np.asarray(clean_pred).shape != (h, w):
            raise UserError(f"clean prediction {np.asarray(clean_pred).shape} does not match the frame {(h, w)}")
        return remap(clean_pred, seed)
    if name == "scene":
        return scene((h, w), seed, source_labels)
    if name == "text" and text is not None:
        return TARGETS["text"]((h, w), seed, text)
    return TARGETS[name]((h, w), seed)
