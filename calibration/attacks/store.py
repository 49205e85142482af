"""How an attack folder keeps its adversarial frames: whole 8-bit PNGs (``edge-guard attack``,
a folder other tools open as a data set) or 8-bit perturbations (``evaluate``'s attack cache).

A perturbation file ``<frame>.delta.xz`` holds adv - clean + 128 as (H, W, 3) uint8 RGB bytes,
xz-compressed (edge_guard.demo_frames' encoding). The clean frame is the manifest record's
``source`` resized to the record's ``shape`` as the attack resized it; ``clean_sha256`` (of
that resized array) proves it is the frame that was attacked. A perturbation beyond +-127
levels (an unbounded DAG's can be) is kept as a whole PNG instead, for that frame only.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import cv2
import numpy as np

from edge_guard.demo_frames import decode_delta, encode_delta, frame_sha256
from edge_guard.errors import DataError, UserError

STORES = ("png", "delta")
DELTA_SUFFIX = ".delta.xz"


def write_adversarial(out: Path, rel: Path, clean: np.ndarray, adv: np.ndarray, store: str) -> dict:
    """Write frame ``adv`` ((H, W, 3) uint8 RGB, attacked from ``clean``) under ``out``; returns
    the record's fields: ``adversarial`` (its path relative to ``out``), ``stored`` and, for a
    perturbation, ``shape`` and ``clean_sha256``. ``rel``: the frame's path as a .png."""
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}: one of {', '.join(STORES)}")
    if store == "delta":
        try:
            delta = encode_delta(clean, adv)
        except ValueError:
            delta = None  # beyond +-127 levels: this frame is kept whole
        if delta is not None:
            path = rel.with_name(rel.stem + DELTA_SUFFIX)
            _write(out / path, lzma.compress(delta.tobytes(), preset=6))
            return {"adversarial": str(path), "stored": "delta", "shape": list(delta.shape),
                    "clean_sha256": frame_sha256(clean)}
    ok, data = cv2.imencode(".png", cv2.cvtColor(adv, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError(f"cannot encode {out / rel} as PNG")
    _write(out / rel, data.tobytes())
    return {"adversarial": str(rel), "stored": "png"}


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_adversarial(folder: Path, record: dict) -> np.ndarray:
    """(H, W, 3) uint8 RGB adversarial frame of a manifest ``record`` of ``folder``: read, or
    rebuilt from its clean frame and perturbation (DataError, one line, when that frame is gone
    or not the one attacked)."""
    from edge_guard.calibration.data.folders import read_image

    from .run import _resize

    path = Path(folder) / record["adversarial"]
    if record.get("stored", "png") == "png":
        return read_image(path)
    source = Path(record["source"])
    if not source.is_file():
        raise DataError(f"{path} keeps a perturbation of {source}, which is gone: the attack cache "
                        "keeps perturbations, not frames; run with the data folder it was made from")
    h, w = record["shape"][:2]
    clean = _resize(read_image(source), None, (h, w))[0]
    if frame_sha256(clean) != record["clean_sha256"]:
        raise DataError(f"{source} resized to {w}x{h} is not the frame {path} was attacked from (the frame "
                        "changed, or another OpenCV resizes differently): attack it again (remove the file)")
    try:
        delta = np.frombuffer(lzma.decompress(path.read_bytes()), np.uint8).reshape(h, w, 3)
    except (OSError, lzma.LZMAError, ValueError) as exc:
        raise DataError(f"cannot read the perturbation {path} ({type(exc).__name__}): remove it to attack "
                        "the frame again") from None
    return decode_delta(clean, delta)
