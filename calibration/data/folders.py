"""Read street-scene folders as NumPy: Cityscapes layout, BDD100K, or plain images.

Every loader gives ``len()``, ``names``, ``image_paths`` and ``ds[i] -> (image, labels, name)``
with image (H, W, 3) uint8 RGB and labels (H, W) uint8 train ids (0..18, 255 = ignore), or
None for unlabelled data. Labels are checked when loaded: any other id is a DataError naming
the file. Every problem with a folder or file is a one-line DataError.
"""

import warnings
from pathlib import Path

import cv2
import numpy as np

from edge_guard.classes import IGNORE, NUM_CLASSES
from edge_guard.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

# Cityscapes label id -> train id (cityscapesScripts, helpers/labels.py); ids not listed
# (unlabeled, ego vehicle, ..., license plate) are ignored.
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
_LABEL_ID_LUT = np.full(256, IGNORE, np.uint8)
for _k, _v in LABEL_ID_TO_TRAIN_ID.items():
    _LABEL_ID_LUT[_k] = _v
_MAX_LABEL_ID = 33


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or DataError when the file is not a readable image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot read {path}: not an image, or the file is corrupt")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_labels(path) -> np.ndarray:
    """(H, W) uint8 ids as stored in a single-channel PNG (no checking of the ids)."""
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise DataError(f"cannot read {path}: not an image, or the file is corrupt")
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise DataError(f"{path} is not a single-channel 8-bit label map "
                        f"(got {labels.dtype} with shape {labels.shape})")
    return labels


def check_labels(labels: np.ndarray, path) -> np.ndarray:
    """Raise DataError naming the file when ids other than 0..18 and 255 occur."""
    counts = np.bincount(labels.ravel(), minlength=256)
    bad = np.flatnonzero(counts[NUM_CLASSES:IGNORE]) + NUM_CLASSES
    if len(bad):
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
        raise DataError(f"{path} holds label ids {shown}: train ids must be 0..{NUM_CLASSES - 1} "
                        f"or {IGNORE} (is it a labelIds map rather than labelTrainIds?)")
    return labels


class _Folder:
    """A list of images with optional label files beside them."""

    kind = "folder"

    def __init__(self, image_paths, label_paths, names, label_map=None):
        self.image_paths = list(image_paths)
        self.label_paths = list(label_paths) if label_paths is not None else None
        self.names = list(names)
        self._label_map = label_map

    @property
    def labeled(self) -> bool:
        return self.label_paths is not None

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        image = read_image(self.image_paths[i])
        if self.label_paths is None:
            return image, None, self.names[i]
        path = self.label_paths[i]
        labels = read_labels(path)
        if self._label_map is not None:
            labels = self._label_map(labels, path)
        check_labels(labels, path)
        if labels.shape != image.shape[:2]:
            raise DataError(f"{self.names[i]}: image {self.image_paths[i].name} is "
                            f"{image.shape[0]}x{image.shape[1]} but its labels are "
                            f"{labels.shape[0]}x{labels.shape[1]}")
        return image, labels, self.names[i]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} images, labeled={self.labeled})"


def _need_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path} does not exist ({what})")
    if not path.is_dir():
        raise DataError(f"{path} is not a folder ({what})")
    return path


def _split_dir(parent: Path, split: str, what: str) -> Path:
    """``parent/split`` as a folder; the error lists the splits that are there."""
    path = parent / split
    if not path.is_dir() and parent.is_dir():
        found = sorted(d.name for d in parent.iterdir() if d.is_dir())
        if found:
            raise DataError(f"{path} does not exist ({what}); splits here: {', '.join(found)} "
                            f"(pass --split {found[0]})")
    return _need_dir(path, what)


def _label_ids_to_train_ids(labels, path):
    if not path.name.endswith("_gtFine_labelIds.png"):
        return labels
    if labels.max() > _MAX_LABEL_ID:
        bad = np.unique(labels[labels > _MAX_LABEL_ID])[:8]
        raise DataError(f"{path} holds label ids {', '.join(map(str, bad))}: "
                        f"Cityscapes labelIds are 0..{_MAX_LABEL_ID}")
    return _LABEL_ID_LUT[labels]


class CityscapesFolder(_Folder):
    """Cityscapes layout: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with labels in
    ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (as written by `edge-guard generate`
    and by cityscapesScripts' createTrainIdLabelImgs). When a frame only has the official
    ``*_gtFine_labelIds.png``, its label ids are mapped to train ids with the official table
    (LABEL_ID_TO_TRAIN_ID; classes not trained on become 255).
    """

    kind = "cityscapes"

    def __init__(self, root, split="val", labeled=True):
        root = _need_dir(Path(root).expanduser(), "expected a Cityscapes folder")
        image_dir = _split_dir(root / "leftImg8bit", split,
                               f"expected leftImg8bit/{split}/<city>/*_leftImg8bit.png")
        images = sorted(image_dir.glob("*/*_leftImg8bit.png")) + sorted(
            image_dir.glob("*_leftImg8bit.png"))
        if not images:
            raise DataError(f"no *_leftImg8bit.png images in {image_dir}/<city>/")
        names = [p.name[: -len("_leftImg8bit.png")] for p in images]
        labels = None
        if labeled:
            label_dir = root / "gtFine" / split
            labels = []
            for image, name in zip(images, names):
                rel = image.parent.relative_to(image_dir)
                train = label_dir / rel / f"{name}_gtFine_labelTrainIds.png"
                ids = label_dir / rel / f"{name}_gtFine_labelIds.png"
                if not train.is_file() and not ids.is_file():
                    raise DataError(f"image {image.name} has no label: expected {train}")
                labels.append(train if train.is_file() else ids)
        super().__init__(images, labels, names, _label_ids_to_train_ids)


class BDD100KFolder(_Folder):
    """BDD100K semantic segmentation (10K images): ``images/10k/<split>/*.jpg`` with
    ``labels/sem_seg/masks/<split>/<name>.png`` (train ids), or the older release
    ``seg/images/<split>/*.jpg`` with ``seg/labels/<split>/<name>_train_id.png``. ``root``
    is the ``bdd100k`` folder or the folder holding it.
    """

    kind = "bdd100k"

    def __init__(self, root, split="val", labeled=True):
        root = _need_dir(Path(root).expanduser(), "expected a BDD100K folder")
        if (root / "bdd100k").is_dir() and not _bdd_layout(root):
            root = root / "bdd100k"
        layout = _bdd_layout(root)
        if layout is None:
            raise DataError(f"{root} is not a BDD100K folder: expected images/10k/<split>/ "
                            "or seg/images/<split>/")
        image_sub, label_sub, suffix = layout
        image_dir = _split_dir(root / image_sub, split, f"BDD100K split {split!r}")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise DataError(f"no images in {image_dir}")
        names = [p.stem for p in images]
        labels = None
        if labeled:
            # The first 10K image zips hold images that the mask zip lacks (bdd100k issues
            # #103, #127): pair what matches, say how many were left out, refuse only none.
            label_dir = root / label_sub / split
            paths = [label_dir / f"{name}{suffix}.png" for name in names]
            keep = [i for i, path in enumerate(paths) if path.is_file()]
            if not keep:
                raise DataError(f"no image of {image_dir} has a label: expected e.g. {paths[0]}")
            if len(keep) < len(images):
                missing = next(images[i].name for i in range(len(images)) if i not in set(keep))
                warnings.warn(f"BDD100K {split}: {len(images) - len(keep)} of {len(images)} images have no "
                              f"mask in {label_dir} (e.g. {missing}) and are left out", stacklevel=2)
            images, names = [images[i] for i in keep], [names[i] for i in keep]
            labels = [paths[i] for i in keep]
        super().__init__(images, labels, names)


def _bdd_layout(root: Path):
    if (root / "images" / "10k").is_dir():
        return "images/10k", "labels/sem_seg/masks", ""
    if (root / "seg" / "images").is_dir():
        return "seg/images", "seg/labels", "_train_id"
    return None


class ImageFolder(_Folder):
    """Any folder of images (png, jpg, jpeg, bmp), searched recursively; no labels."""

    kind = "images"

    def __init__(self, root):
        root = _need_dir(Path(root).expanduser(), "expected a folder of images")
        images = sorted(p for p in root.rglob("*")
                        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not images:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root} or below")
        names = [str(p.relative_to(root).with_suffix("")) for p in images]
        super().__init__(images, None, names)


def detect(root) -> str:
    """'cityscapes', 'bdd100k' or 'images': the layout of a folder."""
    root = _need_dir(Path(root).expanduser(), "expected a data folder")
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if _bdd_layout(root) or ((root / "bdd100k").is_dir() and _bdd_layout(root / "bdd100k")):
        return "bdd100k"
    return "images"


def open_dataset(root, split="val", labeled=True):
    """The loader that fits a folder: Cityscapes layout, BDD100K, or a plain image folder
    (always unlabelled)."""
    kind = detect(root)
    if kind == "cityscapes":
        return CityscapesFolder(root, split, labeled)
    if kind == "bdd100k":
        return BDD100KFolder(root, split, labeled)
    return ImageFolder(root)
