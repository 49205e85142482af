"""Attack every frame of a data split and write the adversarial set (``edge-guard attack``).

Output folder::

    OUT/<input path relative to the data root, as .png>   adversarial frame, 8-bit RGB
        (a Cityscapes input gives OUT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png, so
        OUT opens with the same loaders: open_dataset(OUT, split, labeled=False)); with
        store="delta" (evaluate's cache) <name>.delta.xz, the 8-bit perturbation (store.py)
    OUT/targets/<same folders>/<name>_target.png         target train ids (255 = ignore)
    OUT/targets/<same folders>/<name>_target_color.png   the target in the Cityscapes palette
    OUT/manifest.json                                     settings, summary, one record per frame
    OUT/.lock                                             held by the run writing OUT

manifest.json: ``settings`` (every AttackSettings field, data, split, model and its sha256,
arch, quantize, edge_guard and torch versions), ``summary`` (means, seconds per frame, frames
that reached the threshold) and ``images``: per frame its paths, ``source`` and
``source_sha256`` (the clean frame), seed, device, clean_success, success, miou, l2, linf,
iterations, seconds (+ batch, batch_first, batch_seconds when frames shared a batch;
scene_source for the scene target). Settings the attack does not read (k_attack of a plain
attack, ...) are recorded at their defaults and ignored on resume.

The manifest is rewritten after every frame, so an interrupted run resumes where it
stopped. A record counts for the frame with its sha256: a frame changed in place since is
attacked anew, the same frame under another path (the data moved) resumes, and another frame
under a record's name is refused. A run with other settings into the same folder is refused.
"""

from __future__ import annotations

import math
import os
import sys
import zlib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from edge_guard.classes import NUM_CLASSES, colorize
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import DataError, UserError
from edge_guard.patches import check_geometry, check_patch_geometry

from .. import targets as target_maps
from ..models.segmenter import labels_of
from .manifest import FORMAT, VERSION, Manifest, frame_sha256, seconds_per_frame, summarize
from .settings import ADAPTIVE_L2, DEFAULT_STEP, AttackSettings, detector_geometry, unused_settings
from .pool import SerialPool, attack_batch
from .store import STORES, write_adversarial
from .views import make_views

# Importers of this module read the settings' and the manifest's names here too.
__all__ = ["AttackSettings", "run_attacks", "unused_settings", "detector_geometry", "load_attack_model",
           "image_seed", "ADAPTIVE_L2", "DEFAULT_STEP", "FORMAT", "VERSION", "Manifest", "frame_sha256",
           "seconds_per_frame", "summarize"]


def load_attack_model(model_path, arch=None, device="cpu", onnx: Optional[dict] = None, log=None):
    """(Segmenter in eval mode on `device` with frozen weights and its BNs folded, meta) for
    attacking.

    ``onnx``: ``model_path`` is a user's ONNX graph and this dict its convention options (the
    CLI's onnx_options, plus ``classes``); its BNs stay as the exporter wrote them (usually
    folded), and meta holds ``model`` "onnx" (no architecture; a renamed file stays the same
    model) and ``onnx`` (models/onnx_model.describe). The targets are Cityscapes train ids,
    so a model with another class count is refused.
    """
    from edge_guard.calibration.models.checkpoint import load_segmenter
    from edge_guard.calibration.models.fusion import fuse_segmenter

    model_path = Path(model_path).expanduser()
    if onnx is not None:
        from edge_guard.calibration.models.onnx_model import describe, load_onnx

        segmenter = load_onnx(model_path, onnx, log=log or (lambda *a: None))
        meta = {"model": "onnx", "onnx": describe(segmenter)}
    else:
        segmenter, meta = load_segmenter(model_path, arch=arch, map_location=device)
    if segmenter.num_classes != NUM_CLASSES:
        raise UserError(f"{model_path} predicts {segmenter.num_classes} classes, but the targets "
                        f"and data use the {NUM_CLASSES} Cityscapes train ids")
    if onnx is not None:
        return segmenter.to(device).eval(), meta
    return fuse_segmenter(segmenter.to(device)), meta


def onnx_identity(described: dict) -> dict:
    """An ONNX model's description without what may differ between identical runs (its file
    name: the sha256 is compared; where each convention came from): what a manifest compares."""
    conventions = {k: v for k, v in described["conventions"].items() if k != "sources"}
    return {**{k: v for k, v in described.items() if k not in ("conventions", "formula", "file")},
            "conventions": conventions}


def image_seed(seed: int, name: str) -> int:
    """A per-frame seed: the same frame gets the same target in every run and order."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0])


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise UserError(f"cannot write {path}")


def _resize(image, labels, size):
    if size is None or image.shape[:2] == tuple(size):
        return image, labels
    h, w = size
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if labels is not None:
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    return image, labels


def _to_tensor(image: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255).to(device)


def _scene_source(frames, name: str, seed: int, size):
    """Labels of another labelled frame of the split (picked by seed), or None (a generated
    frame's labels will do)."""
    if not getattr(frames, "labeled", False):
        return None, None
    index = frames.names.index(name) if name in frames.names else None
    choices = len(frames) - (index is not None)
    if choices < 1:
        return None, None
    rng = np.random.default_rng(seed)
    j = int(rng.integers(choices))
    if index is not None:
        j += j >= index  # never the attacked frame itself
    _, labels, name = frames[j]
    if size is not None:
        labels = cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return labels, name


def run_attacks(model_path, data, split: str, settings: AttackSettings, out, *, arch: Optional[str] = None,
                limit: Optional[int] = None, device: str = "cpu", progress: bool = True,
                onnx: Optional[dict] = None, log=None, store: str = "png", pool=None) -> dict:
    """Attack the first ``limit`` frames of ``data``/``split`` into ``out``; returns the
    manifest's summary and ``attacked`` (frames attacked by this call). See the module docstring
    for the layout. ``onnx``: ``model_path`` is a user's ONNX graph with these convention options
    (load_attack_model); ``log`` takes its loader's notes (None: quiet). ``store``: "png" (whole
    frames) or "delta" (perturbations, store.py). ``pool``: where batches run (pool.py; None: here)."""
    from edge_guard.calibration.data.folders import ImageFolder, open_dataset

    s = settings.resolved()
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}: one of {', '.join(STORES)}")
    data = Path(data).expanduser()
    if not data.exists():
        raise DataError(f"data folder {data} does not exist")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder: the attack writes a folder of frames")
    # Every frame of the split is attacked, labelled or not (the frames evaluate lists); the
    # scene target draws its labels from the labelled ones.
    frames = open_dataset(data, split, labeled=False)
    sources = open_dataset(data, split, labeled=True) if s.target == "scene" else None
    if len(frames) == 0:
        raise DataError(f"{data} has no frames in split {split!r}")
    # The outputs keep the inputs' relative paths: into the data folder itself they overwrite
    # the clean frames; inside a plain image folder (listed recursively) they are re-read.
    image_folder = isinstance(frames, ImageFolder)
    same = out.resolve() == data.resolve()
    if same or (image_folder and data.resolve() in out.resolve().parents):
        raise UserError(f"--out {out} is {'--data' if same else 'inside --data'} {data}: the attack would "
                        "overwrite or re-read its own frames; choose a folder outside")
    count = len(frames) if limit is None else min(int(limit), len(frames))
    seen = {}
    for i, name in enumerate(frames.names[:count]):
        if name in seen:
            first, second = (os.path.relpath(frames.image_paths[j], data) for j in (seen[name], i))
            raise DataError(f"{first} and {second} are both "
                            f"frame {name!r}: their outputs would overwrite each other; rename one")
        seen[name] = i
    model_path = Path(model_path).expanduser()
    segmenter, meta = load_attack_model(model_path, arch=arch, device=device, onnx=onnx, log=log)
    height, width = s.size if s.size else frames[0][0].shape[:2]
    s = replace(s, **dict(zip(("patch_size", "b_low", "b_high"),
                              detector_geometry(height, s.patch_size, s.b_low, s.b_high))))
    # Settings that every frame would refuse: one line now, not under the progress bar.
    if s.target == "text" and not str(s.text or "").strip():
        raise UserError("--text is empty: the text target needs a string to draw")
    if s.target == "text" and not str(s.text).isascii():
        raise UserError(f"--text {s.text!r}: OpenCV's fonts draw ASCII only; write it in ASCII letters")
    if s.draws_pairs:
        check_geometry(height, width, s.patch_size, s.b_low, s.b_high)
    elif s.draws_patches:
        check_patch_geometry(height, width, s.patch_size)
    if s.target == "scene" and not getattr(sources, "labeled", False):
        print(f"warning: {data} has no labels: each scene target is a generated street's labels",
              file=sys.stderr)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    lock = _lock(out)  # two runs into one folder would attack the same frames
    try:
        from edge_guard import __version__

        record_settings = {
            **asdict(s), "data": str(data.resolve()), "split": split, "model": str(model_path.resolve()),
            "model_sha256": sha256_file(model_path), "arch": meta.get("model"), "quantize": True,
            "edge_guard": __version__, "torch": torch.__version__,
        }
        if "onnx" in meta:  # how the graph is fed and read is part of the model attacked
            record_settings["onnx"] = onnx_identity(meta["onnx"])
        # The model is its sha256: the same file elsewhere (another checkout, a GPU machine's copy)
        # resumes the folder; its path is recorded, the newest kept. The data folder may move too
        # (a GPU lease's scenes come back elsewhere): each record is checked against its frame.
        free = (set(asdict(s)) - set(s.identity())) | {"model", "data", "edge_guard", "torch"} | unused_settings(s)
        if image_folder:
            free.add("split")  # a plain image folder has no splits
        manifest = Manifest(out, record_settings, free=free)
        views = make_views(s.adaptive, s.k_attack, s.patch_size, s.b_low, s.b_high, s.blur_stds, s.pair_weight,
                           s.agree_weight)
        # Paths inside the folder as the loader lists them, not resolved: a symlinked split
        # (e.g. leftImg8bit/train -> elsewhere) would leave the folder.
        root = Path(os.path.abspath(data))
        source_sha = {i: frame_sha256(frames.image_paths[i]) for i in range(count)}
        todo = _pending(manifest, frames, source_sha, data, out)
        _check_frames(frames, todo, height if s.draws_patches and s.size is None else None)
        kind = f" ({s.adaptive})" if s.adaptive else ""
        bar = _progress(len(todo), f"{s.method} -> {s.target}{kind}", progress)
        pool = pool or SerialPool()
        batches = ([_prepare(frames, i, s, segmenter, device, sources) for i in chunk]
                   for chunk in _batches(todo, s.batch, lambda i: s.size or frames[i][0].shape[:2]))
        try:
            for prepared, results in pool.imap(attack_batch, (segmenter, s, views), batches):
                for p, (adv, metrics, batch_seconds) in zip(prepared, results):
                    i, name, target = p["index"], p["name"], p["target"]
                    rel = Path(os.path.abspath(frames.image_paths[i])).relative_to(root).with_suffix(".png")
                    tdir = Path("targets") / rel.parent
                    stem = Path(name).name  # an image folder's names hold their subfolder, rel.parent too
                    paths = {"target": str(tdir / f"{stem}_target.png"),
                             "target_color": str(tdir / f"{stem}_target_color.png")}
                    stored = write_adversarial(out, rel, p["image"], adv, store)
                    _write_png(out / paths["target"], target)
                    _write_png(out / paths["target_color"], cv2.cvtColor(colorize(target), cv2.COLOR_RGB2BGR))
                    record = {"source": str(frames.image_paths[i].resolve()), "source_sha256": source_sha[i],
                              **stored, **paths, "seed": p["seed"], "device": str(device),
                              "clean_success": p["clean_success"], **metrics}
                    if len(prepared) > 1:  # "seconds" is then the batch's time until this frame stopped
                        record.update(batch=len(prepared), batch_first=prepared[0]["name"],
                                      batch_seconds=batch_seconds)
                    if s.target == "scene":
                        record["scene_source"] = p["scene_source"] or "generated"
                    manifest.add(name, record)
                    bar.set_postfix(success=f"{record['success']:.3f}", iters=record["iterations"])
                    bar.update(1)
        except KeyboardInterrupt:
            bar.close()
            kept = len(manifest.images)
            print(f"stopped: {kept} frame{'' if kept == 1 else 's'} kept in {out}; run the same command to resume",
                  file=sys.stderr)
            raise
        finally:
            bar.close()  # before any error, so that it has its own line
        manifest.write()
        return {**manifest.summary(), "attacked": len(todo)}
    finally:
        lock.close()


def _pending(manifest: Manifest, frames, source_sha: dict, data: Path, out: Path) -> list:
    """Indices of the frames (of ``source_sha``'s) still to attack. Refuses a folder whose
    records are of other frames, or of a data set none of whose frames are here; records that
    matched their frame under a new path are written back first."""
    states = {i: manifest.check(frames.names[i], str(frames.image_paths[i].resolve()), sha)
              for i, sha in source_sha.items()}
    clash = next((i for i, (state, _) in states.items() if state == "other"), None)
    if clash is not None:
        raise UserError(f"{out} already holds an attack of a frame named {frames.names[clash]!r}, not "
                        f"{data}'s: {states[clash][1]}, or choose another --out")
    moved_from = manifest.previous.get("data")
    if moved_from not in (None, manifest.settings["data"]) and manifest.images and not any(
            state == "done" for state, _ in states.values()):
        raise UserError(f"{out} holds attacks of {moved_from}, and none of them is of a frame in {data}: "
                        "choose another --out for these frames")
    if manifest.changed:
        manifest.write()
    return [i for i, (state, _) in states.items() if state != "done"]


def _check_frames(frames, todo: list, height: Optional[int] = None) -> None:
    """Every frame to attack decodes (and is ``height`` pixels high, when given: a spatial
    attack's patches are sized for one height), found now rather than hours into the run:
    one decode per frame, against minutes of attack each."""
    from edge_guard.calibration.data.folders import read_image

    for i in todo:
        image = read_image(frames.image_paths[i])
        if height is not None and image.shape[0] != height:
            raise DataError(f"{frames.names[i]} is {image.shape[0]} pixels high, the first frame {height}: "
                            "the detector's patches are sized for one height; pass --size HxW")


def _lock(out: Path):
    """An exclusive lock on OUT/.lock, or a UserError when another run holds it."""
    import fcntl

    try:
        handle = open(out / ".lock", "w")
    except OSError as exc:
        raise UserError(f"cannot write into --out {out}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"another attack is writing {out} now: wait for it, or choose another --out") from None
    except OSError as exc:  # a file system without locks (some network mounts)
        print(f"warning: cannot lock {out} ({exc.strerror or exc}): make sure no other attack writes it "
              "now", file=sys.stderr)
    return handle


def _batches(todo: list, size: int, shape_of) -> list:
    """``todo`` cut into runs of at most ``size`` consecutive frames of one shape."""
    out, shape = [], None
    for i in todo:
        h_w = tuple(shape_of(i)) if size > 1 else None
        if out and len(out[-1]) < size and h_w == shape:
            out[-1].append(i)
        else:
            out.append([i])
        shape = h_w
    return out


def _prepare(frames, i: int, s: AttackSettings, segmenter, device, sources=None) -> dict:
    """One frame's tensor (1,3,H,W), target, seed and clean success, ready to attack."""
    image, labels, name = frames[i]
    image, labels = _resize(image, labels, s.size)
    seed = image_seed(s.seed, name)
    x = _to_tensor(image, device)
    with torch.no_grad():
        clean_pred = labels_of(segmenter(x))[0].cpu().numpy().astype(np.uint8)
    source_labels, source_name = (None, None)
    if s.target == "scene":
        source_labels, source_name = _scene_source(sources, name, seed, image.shape[:2])
    target = target_maps.make_target(s.target, image.shape[:2], seed, clean_pred=clean_pred,
                                     source_labels=source_labels, text=s.text)
    valid = target != 255
    clean_success = float((clean_pred[valid] == target[valid]).mean()) if valid.any() else math.nan
    return {"index": i, "name": name, "image": image, "x": x, "target": target, "seed": seed,
            "clean_success": clean_success, "scene_source": source_name}


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True)
