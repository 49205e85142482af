"""Attack every frame of a data split and write the adversarial set (``edge-guard attack``).

Output folder::

    OUT/<input path relative to the data root, as .png>   adversarial frame, 8-bit RGB
        (a Cityscapes input gives OUT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png, so
        OUT opens with the same loaders: open_dataset(OUT, split, labeled=False))
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

import functools
import json
import math
import os
import sys
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from edge_guard.classes import NUM_CLASSES, colorize
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import DataError, UserError
from edge_guard.patches import check_geometry

from .. import targets as target_maps
from ..models.segmenter import labels_of
from . import ATTACKS
from .views import ADAPTIVE, make_views

FORMAT = "edge-guard-attack"
VERSION = 1
#: The paper's L2 bound (RMS on [0, 1] images) for adaptive attacks (§5.4).
ADAPTIVE_L2 = 0.06
DEFAULT_STEP = {"dag": 0.5 / 255, "houdini": 1.0 / 255}


@dataclass
class AttackSettings:
    """Everything that decides what the attack writes (``limit`` and device do not)."""

    method: str
    target: str
    adaptive: Optional[str] = None
    k_attack: int = 10
    # None: the paper's geometry (s=512, b in [32, 64) on 1024-high Cityscapes frames) scaled
    # to the attacked frames' height, which is what `edge-guard calibrate` uses by default.
    patch_size: Optional[int] = None
    b_low: Optional[int] = None
    b_high: Optional[int] = None
    blur_stds: tuple = (0.5, 3.0, 5.0)
    pair_weight: float = 1.0
    l2: Optional[float] = None  # None: ADAPTIVE_L2 for adaptive attacks, unbounded otherwise
    linf: Optional[float] = None
    max_iter: int = 200
    step: Optional[float] = None  # None: DEFAULT_STEP[method] (DAG's gamma, Houdini's Adam rate)
    threshold: float = 0.99
    seed: int = 0
    size: Optional[tuple] = None  # (H, W) frames are resized to before the attack
    text: str = "ECCV 2018"
    # Frames attacked together. Plain attacks give the same frames at any batch (each image
    # has its own step and stopping; up to the model's float rounding in another batch shape).
    # Adaptive ones now draw each image's views from its own seed too, but folders made before
    # that at a batch above 1 drew every image's views from the first frame's seed; keeping
    # the batch in their key keeps those frames apart.
    batch: int = 1

    def identity(self) -> dict:
        """The settings that decide the frames written (a resolved instance's). A plain attack
        writes the same frames at any batch, so its batch is left out: a folder begun one
        frame at a time on a CPU can be finished 50 at a time on a GPU, and the reverse."""
        fields = asdict(self)
        if self.adaptive is None:
            del fields["batch"]
        return fields

    @property
    def draws_patches(self) -> bool:
        """Whether the attack crops detector patches (a spatial attack with K_attack > 0): only
        then do the patch size, the displacements and the frame height matter."""
        return self.adaptive in ("spatial", "spatial-pairs") and self.k_attack > 0

    def resolved(self) -> "AttackSettings":
        if self.method not in ATTACKS:
            raise UserError(f"unknown attack method {self.method!r}: choose one of {', '.join(ATTACKS)}")
        if self.target not in target_maps.TARGETS:
            raise UserError(f"unknown target {self.target!r}: choose one of {', '.join(target_maps.TARGETS)}")
        if self.adaptive not in (None, "none") + ADAPTIVE:
            raise UserError(f"unknown adaptive attack {self.adaptive!r}: choose one of {', '.join(ADAPTIVE)}")
        adaptive = None if self.adaptive in (None, "none") else self.adaptive
        if self.k_attack < 0:
            raise UserError(f"--k-attack must be >= 0, got {self.k_attack}")
        if self.batch < 1:
            raise UserError(f"--batch must be >= 1, got {self.batch}")
        for option, value in (("--l2", self.l2), ("--linf", self.linf)):
            if value is not None and not (0 < value <= 1):
                raise UserError(f"{option} {value} must be in (0, 1] on [0, 1] images (leave it out for no bound)")
        if self.linf is not None and self.linf * 255 < 1 - 1e-6:
            raise UserError(f"--linf {self.linf} is below one 8-bit level (give at least 1/255 = 0.00393): "
                            "the saved frames could not change at all")
        l2 = self.l2 if self.l2 is not None else (ADAPTIVE_L2 if adaptive else None)
        step = self.step if self.step is not None else DEFAULT_STEP[self.method]
        size = tuple(int(v) for v in self.size) if self.size else None
        return AttackSettings(**{**asdict(self), "adaptive": adaptive, "l2": l2, "step": step,
                                 "size": size, "blur_stds": tuple(self.blur_stds)})


def detector_geometry(height: int, patch_size=None, b_low=None, b_high=None) -> tuple[int, int, int]:
    """(s, b_low, b_high): given values, else the paper's 512/32/64 per 1024 rows of frame."""
    s = patch_size or max(2, round(height / 2))
    lo = b_low if b_low is not None else max(1, round(height / 32))
    hi = b_high or max(lo + 1, round(height / 16))
    return s, lo, hi


def load_attack_model(model_path, arch=None, device="cpu"):
    """(Segmenter in eval mode on `device` with frozen weights and its BNs folded, meta) for
    attacking.

    The targets are Cityscapes train ids, so a model with another class count is refused.
    """
    from edge_guard.calibration.models.checkpoint import load_segmenter
    from edge_guard.calibration.models.fusion import fuse_segmenter

    model_path = Path(model_path).expanduser()
    segmenter, meta = load_segmenter(model_path, arch=arch, map_location=device)
    if segmenter.num_classes != NUM_CLASSES:
        raise UserError(f"{model_path} predicts {segmenter.num_classes} classes, but the targets "
                        f"and data use the {NUM_CLASSES} Cityscapes train ids")
    return fuse_segmenter(segmenter.to(device)), meta


def image_seed(seed: int, name: str) -> int:
    """A per-frame seed: the same frame gets the same target in every run and order."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0])


def _jsonable(obj):
    return json.loads(json.dumps(obj))


class Manifest:
    """OUT/manifest.json: the settings and one record per finished frame."""

    def __init__(self, out: Path, settings: dict, free=()):
        """``free``: settings that may differ from the folder's (the newest run's are kept)."""
        self.path = out / "manifest.json"
        self.settings = _jsonable(settings)
        self.free = set(free)
        self.images = {}
        self.changed = False  # records updated by check(): write before attacking
        self.previous = {}  # the folder's settings before this run ({} for a new folder)
        if self.path.exists():
            self._resume()

    def _resume(self):
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path} is not a readable manifest ({type(exc).__name__}): "
                            "remove it or choose another --out") from exc
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise UserError(f"{self.path} is not an edge-guard attack manifest: choose another --out")
        prev = old.get("settings") or {}
        diff = [f"{k}: {prev.get(k)!r} -> {self.settings.get(k)!r}"
                for k in sorted((set(prev) | set(self.settings)) - self.free) if prev.get(k) != self.settings.get(k)]
        if diff:
            raise UserError(f"{self.path.parent} holds attacks made with other settings "
                            f"({'; '.join(diff[:3])}): use another --out, or the same settings to resume")
        self.previous = prev
        self.images = dict(old.get("images") or {})

    def check(self, name: str, source: str, source_sha256: str) -> tuple[str, str]:
        """(state, why) of frame ``name``'s record against the frame now at ``source``:
        'todo' (no record, or its files are gone), 'done', 'stale' (the frame at that path
        changed since: attack it anew) or 'other' (the record is of another frame, or nothing
        shows it is the same one: overwriting it would lose an attack).

        A record is matched by its source frame's sha256; records older than that field by
        their source path, or, when the data moved, by hashing their old source file if it is
        still there. A matched record takes the frame's current path and sha256, so the
        folder follows data that moves (a GPU lease's scenes come back elsewhere)."""
        rec = self.images.get(name)
        if not isinstance(rec, dict):
            return "todo", ""
        # Whose attack the record is comes first: even with its images gone (a folder unpacked
        # without them) a record of another frame is not replaced silently.
        old, recorded = rec.get("source"), rec.get("source_sha256")
        if recorded is None and old != source:
            if not (isinstance(old, str) and Path(old).is_file()):
                gone = f"names {old}, which is gone," if old else "names no source frame"
                return "other", (f"its record {gone} and no sha256 to compare: resume once with the "
                                 "data folder it was made from")
            recorded = frame_sha256(old)
        if recorded is not None and recorded != source_sha256:
            if old == source:
                return "stale", ""
            return "other", f"its record is of {old}, another frame: use that data folder"
        if not all(isinstance(rec.get(k), str) and (self.path.parent / rec[k]).is_file()
                   for k in ("adversarial", "target", "target_color")):
            return "todo", ""
        if old != source or recorded is None:
            rec["source"], rec["source_sha256"] = source, source_sha256
            self.changed = True
        return "done", ""

    def add(self, name: str, record: dict) -> None:
        self.images[name] = record
        self.write()

    def summary(self) -> dict:
        recs = list(self.images.values())
        if not recs:
            return {"images": 0}
        return {"images": len(recs), **summarize(recs, self.settings["threshold"])}

    def write(self) -> None:
        payload = {"format": FORMAT, "version": VERSION, "settings": self.settings,
                   "summary": self.summary(), "images": self.images}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(self.path)


def summarize(records: list, threshold: float) -> dict:
    """Mean per-image metrics of ``records``, attack seconds per frame, and how many reached ``threshold``."""
    mean = {k: float(np.mean([r[k] for r in records]))
            for k in ("success", "miou", "l2", "linf", "iterations", "seconds", "clean_success")}
    return {"mean": mean, "seconds_per_frame": seconds_per_frame(records),
            "reached_threshold": int(sum(r["success"] >= threshold for r in records))}


def seconds_per_frame(records: list) -> float:
    """Attack wall time per frame: frames attacked in one batch share their batch's time."""
    # Each frame carries its share of its batch's time, so a table that reads only some of a
    # batch's frames (fewer --frames than a GPU lease attacked at --batch 50) stays right.
    share = [r["batch_seconds"] / r["batch"] if "batch_first" in r else r["seconds"] for r in records]
    return float(sum(share) / max(1, len(records)))


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
                limit: Optional[int] = None, device: str = "cpu", progress: bool = True) -> dict:
    """Attack the first ``limit`` frames of ``data``/``split`` into ``out``; returns the
    manifest's summary. See the module docstring for the layout."""
    from edge_guard.calibration.data.folders import ImageFolder, open_dataset

    s = settings.resolved()
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
    segmenter, meta = load_attack_model(model_path, arch=arch, device=device)
    height, width = s.size if s.size else frames[0][0].shape[:2]
    s = replace(s, **dict(zip(("patch_size", "b_low", "b_high"),
                              detector_geometry(height, s.patch_size, s.b_low, s.b_high))))
    # Settings that every frame would refuse: one line now, not under the progress bar.
    if s.target == "text" and not str(s.text or "").strip():
        raise UserError("--text is empty: the text target needs a string to draw")
    if s.target == "text" and not str(s.text).isascii():
        raise UserError(f"--text {s.text!r}: OpenCV's fonts draw ASCII only; write it in ASCII letters")
    if s.draws_patches:
        check_geometry(height, width, s.patch_size, s.b_low, s.b_high)
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
        # The model is its sha256: the same file elsewhere (another checkout, a GPU machine's copy)
        # resumes the folder; its path is recorded, the newest kept. The data folder may move too
        # (a GPU lease's scenes come back elsewhere): each record is checked against its frame.
        free = (set(asdict(s)) - set(s.identity())) | {"model", "data", "edge_guard", "torch"} | unused_settings(s)
        if image_folder:
            free.add("split")  # a plain image folder has no splits
        manifest = Manifest(out, record_settings, free=free)
        views = make_views(s.adaptive, s.k_attack, s.patch_size, s.b_low, s.b_high, s.blur_stds, s.pair_weight)
        attack = ATTACKS[s.method]
        hyper = {"gamma": s.step} if s.method == "dag" else {"step": s.step}
        # Paths inside the folder as the loader lists them, not resolved: a symlinked split
        # (e.g. leftImg8bit/train -> elsewhere) would leave the folder.
        root = Path(os.path.abspath(data))
        source_sha = {i: frame_sha256(frames.image_paths[i]) for i in range(count)}
        todo = _pending(manifest, frames, source_sha, data, out)
        _check_frames(frames, todo, height if s.draws_patches and s.size is None else None)
        kind = f" ({s.adaptive})" if s.adaptive else ""
        bar = _progress(len(todo), f"{s.method} -> {s.target}{kind}", progress)
        try:
            for chunk in _batches(todo, s.batch, lambda i: s.size or frames[i][0].shape[:2]):
                prepared = [_prepare(frames, i, s, segmenter, device, sources) for i in chunk]
                x = torch.cat([p["x"] for p in prepared])
                t = torch.from_numpy(np.stack([p["target"] for p in prepared]).astype(np.int64)).to(device)
                result = attack(segmenter, x, t, quantize=True, l2=s.l2, linf=s.linf, max_iter=s.max_iter,
                                threshold=s.threshold, views=views, seed=[p["seed"] for p in prepared], **hyper)
                for j, (p, metrics) in enumerate(zip(prepared, result.records())):
                    i, name, target = p["index"], p["name"], p["target"]
                    adv = (result.images[j].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                    rel = Path(os.path.abspath(frames.image_paths[i])).relative_to(root).with_suffix(".png")
                    tdir = Path("targets") / rel.parent
                    stem = Path(name).name  # an image folder's names hold their subfolder, rel.parent too
                    paths = {"adversarial": str(rel), "target": str(tdir / f"{stem}_target.png"),
                             "target_color": str(tdir / f"{stem}_target_color.png")}
                    _write_png(out / paths["adversarial"], cv2.cvtColor(adv, cv2.COLOR_RGB2BGR))
                    _write_png(out / paths["target"], target)
                    _write_png(out / paths["target_color"], cv2.cvtColor(colorize(target), cv2.COLOR_RGB2BGR))
                    record = {"source": str(frames.image_paths[i].resolve()), "source_sha256": source_sha[i],
                              **paths, "seed": p["seed"], "device": str(device),
                              "clean_success": p["clean_success"], **metrics}
                    if len(prepared) > 1:  # "seconds" is then the batch's time until this frame stopped
                        record.update(batch=len(prepared), batch_first=prepared[0]["name"],
                                      batch_seconds=float(result.seconds.max()))
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


def unused_settings(s: AttackSettings) -> set:
    """Settings the attack ``s`` does not read: they may differ when a folder resumes."""
    unused = set()
    if s.adaptive not in ("spatial", "spatial-pairs"):
        unused.add("k_attack")
    if not s.draws_patches:
        unused |= {"patch_size", "b_low", "b_high"}
    if s.adaptive != "scale":
        unused.add("blur_stds")
    if not (s.draws_patches and s.adaptive == "spatial-pairs"):
        unused.add("pair_weight")
    if s.target != "text":
        unused.add("text")
    return unused


def frame_sha256(path) -> str:
    """sha256 of a frame file, remembered per (path, size, mtime) for the process: evaluate
    resumes one folder per setting over the same frames."""
    st = os.stat(path)
    return _frame_sha(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _frame_sha(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


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
    return {"index": i, "name": name, "x": x, "target": target, "seed": seed,
            "clean_success": clean_success, "scene_source": source_name}


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True)
