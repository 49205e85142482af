"""The demo's adversarial frames on disk: perturbations of a re-rendered clip, not frames.

A folder (the attack cache in ``--out``, or the frames shipped in ``assets/demo``)::

    manifest.json     {"format": "edge-guard-demo-frames", "version": 1,
                       "settings": {seed, frames, size, target, iters, step, threshold,
                                    model_sha256, ...},
                       "frames": {"16": {"file", "clean_sha256", "success", "linf", ...}, ...}}
    delta_0016.xz     adversarial - clean + 128: the (H, W, 3) uint8 RGB bytes, xz-compressed
    clean_0016.png, attacked_0016.png, target_0016.png
                      optional label maps (train ids, 8-bit PNG): the model's prediction on
                      the clean and the attacked frame, and the attack's target

Why perturbations: a generated 512x1024 frame carries sensor noise and is ~0.8 MB as PNG,
but the clip re-renders byte for byte from its seed and a DAG perturbation is mostly 0 and
+-1: xz squeezes one to ~0.5 MB (a third less than PNG would). ``clean_sha256`` tells whether the frame
rendered here is the one that was attacked (a different OpenCV could draw it differently).
The shift by 128 is exact while the perturbation stays within +-127 (L-inf < 0.5).
"""

from __future__ import annotations

import hashlib
import json
import lzma
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError

LABEL_MAPS = ("clean", "attacked", "target")

FORMAT = "edge-guard-demo-frames"
VERSION = 1
MANIFEST = "manifest.json"


def frame_sha256(image: np.ndarray) -> str:
    """sha256 of an (H, W, 3) uint8 frame's shape and bytes."""
    h = hashlib.sha256(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def encode_delta(clean: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: adv - clean + 128; ValueError when a change exceeds +-127."""
    delta = adv.astype(np.int16) - clean.astype(np.int16)
    if delta.size and np.abs(delta).max() > 127:
        raise ValueError("a perturbation larger than 127 levels cannot be stored as a delta")
    return (delta + 128).astype(np.uint8)


def decode_delta(clean: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """clean + delta - 128, clipped to uint8."""
    if delta.shape != clean.shape:
        raise UserError(f"a stored perturbation is {delta.shape[1]}x{delta.shape[0]}, the frame "
                        f"{clean.shape[1]}x{clean.shape[0]}: the demo folder is damaged")
    return np.clip(clean.astype(np.int16) + delta.astype(np.int16) - 128, 0, 255).astype(np.uint8)


def read_manifest(folder) -> dict | None:
    """The folder's manifest, or None when it has none (or one that is not ours)."""
    path = Path(folder) / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return None
    if not isinstance(doc.get("settings"), dict) or not isinstance(doc.get("frames"), dict):
        return None
    return doc


class FrameStore:
    """Adversarial frames of one clip and one attack setting, kept as perturbations.

    ``FrameStore(folder, settings)`` opens the folder as a cache: frames stored with other
    settings are forgotten (they are overwritten as new ones are saved). ``FrameStore.open``
    opens an existing folder read-only with whatever settings it has.
    """

    def __init__(self, folder, settings: dict, frames: dict | None = None, writable: bool = True):
        self.folder = Path(folder)
        self.settings = json.loads(json.dumps(settings))  # as it reads back from JSON
        self.frames = dict(frames or {})
        self.writable = writable
        if writable and frames is None:
            doc = read_manifest(self.folder)
            if doc is not None and doc["settings"] == self.settings:
                self.frames = dict(doc["frames"])

    @classmethod
    def open(cls, folder) -> "FrameStore":
        doc = read_manifest(folder)
        if doc is None:
            raise UserError(f"{folder} holds no demo frames (no readable {MANIFEST})")
        return cls(folder, doc["settings"], doc["frames"], writable=False)

    def indices(self) -> list[int]:
        return sorted(int(i) for i in self.frames)

    def has(self, index: int) -> bool:
        rec = self.frames.get(str(int(index)))
        return bool(rec) and (self.folder / rec["file"]).is_file()

    def load(self, index: int, clean: np.ndarray) -> tuple[np.ndarray, dict]:
        """(adversarial RGB frame, its record + ``clean_match``) for frame ``index`` of the clip."""
        rec = dict(self.frames[str(int(index))])
        path = self.folder / rec["file"]
        try:
            delta = np.frombuffer(lzma.decompress(path.read_bytes()), np.uint8)
            delta = delta.reshape(tuple(rec["shape"]))
        except (OSError, lzma.LZMAError, ValueError, KeyError, TypeError):
            raise UserError(f"cannot read the perturbation {path}: the demo folder is damaged") from None
        adv = decode_delta(clean, delta)
        rec["clean_match"] = rec.get("clean_sha256") == frame_sha256(clean)
        return adv, rec

    def label_maps(self, index: int) -> dict:
        """{name: (H, W) uint8 train ids} of the label maps stored with frame ``index``
        (LABEL_MAPS; those missing or unreadable are left out)."""
        rec = self.frames.get(str(int(index))) or {}
        out = {}
        for name, file in (rec.get("label_maps") or {}).items():
            labels = cv2.imread(str(self.folder / file), cv2.IMREAD_UNCHANGED)
            if labels is not None and labels.ndim == 2:
                out[name] = labels
        return out

    def save(self, index: int, clean: np.ndarray, adv: np.ndarray, record: dict,
             label_maps: dict | None = None) -> None:
        """Store frame ``index``'s perturbation, record and optional label maps ({name in
        LABEL_MAPS: (H, W) uint8}); the manifest is rewritten at once, so an interrupted
        attack keeps the frames it finished."""
        if not self.writable:
            raise RuntimeError("this FrameStore is read-only")
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"delta_{int(index):04d}.xz"
        delta = encode_delta(clean, adv)
        try:
            (self.folder / name).write_bytes(lzma.compress(delta.tobytes(), preset=9))
        except OSError as exc:
            raise UserError(f"cannot write {self.folder / name}: {exc.strerror or exc}") from None
        maps = {}
        for key, labels in (label_maps or {}).items():
            if key not in LABEL_MAPS:
                raise ValueError(f"unknown label map {key!r}: one of {', '.join(LABEL_MAPS)}")
            file = f"{key}_{int(index):04d}.png"
            if not cv2.imwrite(str(self.folder / file), np.asarray(labels, np.uint8)):
                raise UserError(f"cannot write {self.folder / file}")
            maps[key] = file
        self.frames[str(int(index))] = {**record, "file": name, "shape": list(delta.shape),
                                        "clean_sha256": frame_sha256(clean), "label_maps": maps}
        self.write()

    def write(self) -> None:
        doc = {"format": FORMAT, "version": VERSION, "settings": self.settings,
               "frames": {k: self.frames[k] for k in sorted(self.frames, key=int)}}
        tmp = self.folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(self.folder / MANIFEST)
