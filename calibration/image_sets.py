"""The frames calibration scores: benign sets (a folder of any layout, or a video) and
adversarial sets (``edge-guard attack`` folders), as :class:`ImageSet` lists of frames read
one at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edge_guard.errors import DataError, UserError

from .attacks.views import PATCH_ADAPTIVE

ATTACK_FORMAT = "edge-guard-attack"


@dataclass
class ImageSet:
    """Frames to score: paths of RGB images and their names, plus where they came from.
    With ``read``, ``paths`` are what it takes instead (a video's frame indices): ``read(paths)``
    yields the frames in order, in one pass (:class:`.data.video.VideoFrames`)."""

    name: str
    paths: list
    names: list
    info: dict = field(default_factory=dict)
    read: object = None

    def __len__(self):
        return len(self.paths)

    def images(self):
        from .data.folders import read_image

        if self.read is not None:
            yield from self.read(self.paths)
            return
        for path in self.paths:
            yield read_image(path)


def benign_sets(data, split: str, calib: int, holdout: int,
                every: int | None = None) -> tuple[ImageSet, ImageSet | None]:
    """The first ``calib`` frames of the split, and the next ``holdout`` (None when 0); of a
    video: of its every ``every``-th frame (default 1)."""
    from .data.folders import detect, open_dataset
    from .data.video import is_video, video_frames

    data = Path(data).expanduser()
    if is_video(data):
        paths, names, read, info = video_frames(data, 1 if every is None else every, calib, holdout)
        return _split_sets(paths, names, info, calib, read)
    if not data.exists():
        raise DataError(f"data folder {data} does not exist (make one with `edge-guard generate`)")
    if every is not None:
        raise UserError(f"--every takes every N-th frame of a video, but {data} is a folder: leave out --every")
    frames = open_dataset(data, split, labeled=False)
    need = calib + holdout
    if len(frames) < need:
        raise DataError(f"{data} has {len(frames)} frames in split {split!r}, but calibration needs "
                        f"{calib} + {holdout} held out = {need}: pass smaller --calib-frames/"
                        "--holdout-frames or add frames")
    info = {"data": str(data.resolve()), "split": split, "layout": detect(data), "available": len(frames)}
    return _split_sets(list(frames.image_paths)[:need], list(frames.names)[:need], info, calib)


def _split_sets(paths, names, info, calib: int, read=None) -> tuple[ImageSet, ImageSet | None]:
    """The first ``calib`` frames, and the rest (None when none)."""
    cal = ImageSet("calibration", paths[:calib], names[:calib], dict(info, first=0), read)
    held = (ImageSet("holdout", paths[calib:], names[calib:], dict(info, first=calib), read)
            if len(paths) > calib else None)
    return cal, held


def describe_benign(cal: ImageSet, held: ImageSet | None) -> str:
    """One line saying where the benign frames come from, so that a wrong --data shows."""
    info = cal.info
    n_held = len(held) if held else 0
    used = f"{len(cal)} calibration + {n_held} held-out benign frames: the first {len(cal) + n_held} of"
    if info["layout"] == "video":
        from .data.video import describe

        return f"{used} {describe(info, (held or cal).names[-1])}"
    if info["layout"] == "images":
        return (f"{used} {info['available']} images found under {info['data']} and its subfolders "
                "(a plain image folder, in name order; --split does not apply)")
    return f"{used} {info['available']} in split {info['split']!r} of {info['data']} ({info['layout']})"


def _attack_name(settings: dict, fallback: str) -> str:
    if not settings.get("method") or not settings.get("target"):
        return fallback
    name = f"{settings['method']}_{settings['target']}"
    if settings.get("adaptive"):
        name += f"_adaptive-{settings['adaptive']}"
        if settings.get("k_attack") is not None:
            name += str(settings["k_attack"])
    return name


def adversarial_set(folder, split: str) -> ImageSet:
    """An adversarial set: the frames listed in ``folder/manifest.json`` (``edge-guard attack``),
    or, without a manifest, the images of the folder opened like a data folder."""
    from .data.folders import open_dataset

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"adversarial folder {folder} " + ("is a file: give a folder of frames"
                                                           if folder.exists() else "does not exist")
                        + " (make one with `edge-guard attack`)")
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        frames = open_dataset(folder, split, labeled=False)
        return ImageSet(folder.name, list(frames.image_paths), list(frames.names),
                        {"folder": str(folder.resolve())})
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{manifest} is not readable JSON ({type(exc).__name__}): "
                        "re-run the attack") from None
    if (not isinstance(doc, dict) or doc.get("format") != ATTACK_FORMAT
            or not isinstance(doc.get("images"), dict)):
        raise DataError(f"{manifest} is not an `edge-guard attack` manifest")
    images = sorted(doc["images"].items())
    if not images:
        raise DataError(f"{manifest} lists no adversarial frames (has the attack run?)")
    paths = []
    for name, rec in images:
        path = folder / str((rec or {}).get("adversarial", ""))
        if not path.is_file():
            raise DataError(f"{manifest} lists {name}, but {path} is missing: re-run the attack to resume")
        paths.append(path)
    settings = doc.get("settings") if isinstance(doc.get("settings"), dict) else {}
    keep = ("method", "target", "adaptive", "k_attack", "l2", "linf", "max_iter", "model_sha256")
    if settings.get("adaptive") not in PATCH_ADAPTIVE:
        keep = tuple(k for k in keep if k != "k_attack")  # recorded at its default, not read
    info = {"folder": str(folder.resolve()), "attack": {k: settings.get(k) for k in keep if k in settings}}
    if isinstance(doc.get("summary"), dict) and isinstance(doc["summary"].get("mean"), dict):
        info["attack_success"] = doc["summary"]["mean"].get("success")
    return ImageSet(_attack_name(settings, folder.name), paths, [n for n, _ in images], info)


def unique_name(name: str, taken: set) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}#{i}", i + 1
    taken.add(out)
    return out
