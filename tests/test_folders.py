"""Writing generated scenes as Cityscapes, reading Cityscapes/BDD100K/image folders, the CLI."""

import cv2
import numpy as np
import pytest

from edge_guard.calibration.data.folders import (
    LABEL_ID_TO_TRAIN_ID, BDD100KFolder, CityscapesFolder, ImageFolder, open_dataset)
from edge_guard.calibration.data.layout import frame_seed, write_split
from edge_guard.scenes import render_clip, render_frame
from edge_guard.cli import main
from edge_guard.errors import DataError, UserError

SIZE = (32, 64)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _image(h=SIZE[0], w=SIZE[1], value=100):
    return np.full((h, w, 3), value, np.uint8)


def _labels(h=SIZE[0], w=SIZE[1], value=0):
    return np.full((h, w), value, np.uint8)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    paths = write_split(out, "train", frames=3, size=SIZE, seed=7, clips=1, clip_length=2,
                        progress=False)
    return out, paths


def test_writer_layout(generated):
    out, paths = generated
    assert len(paths) == 5
    names = sorted(p.name for p in paths)
    stills = [n for n in names if n.split("_")[2] == "000019"]
    assert len(stills) == 3
    clip = sorted(n for n in names if n.split("_")[1] == "000003")
    assert [n.split("_")[2] for n in clip] == ["000000", "000001"]
    for p in paths:
        assert p.parent.parent == out / "leftImg8bit" / "train"
        label = (out / "gtFine" / "train" / p.parent.name /
                 p.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
        assert label.is_file()
        assert cv2.imread(str(label), cv2.IMREAD_UNCHANGED).ndim == 2


def test_round_trip_through_cityscapes_folder(generated):
    out, paths = generated
    ds = CityscapesFolder(out, "train")
    assert len(ds) == 5 and ds.labeled
    assert sorted(ds.image_paths) == sorted(paths)
    i = ds.names.index(next(n for n in ds.names if n.endswith("000001_000019")))
    image, labels, name = ds[i]
    expected = render_frame(frame_seed(7, "train", 1), SIZE)
    assert np.array_equal(image, expected[0]) and np.array_equal(labels, expected[1])
    j = ds.names.index(next(n for n in ds.names if n.endswith("000003_000001")))
    clip = render_clip(frame_seed(7, "train", 3), 2, SIZE)
    assert np.array_equal(ds[j][0], clip[1][0]) and np.array_equal(ds[j][1], clip[1][1])
    assert isinstance(open_dataset(out, "train"), CityscapesFolder)


def test_train_and_val_differ_and_are_reproducible(tmp_path):
    a = write_split(tmp_path / "a", "train", frames=2, size=SIZE, seed=1, progress=False)
    b = write_split(tmp_path / "a", "val", frames=2, size=SIZE, seed=1, progress=False)
    c = write_split(tmp_path / "c", "train", frames=2, size=SIZE, seed=1, workers=2,
                    progress=False)
    read = [cv2.imread(str(p)) for p in a + b + c]
    assert not np.array_equal(read[0], read[2]) and not np.array_equal(read[1], read[3])
    assert np.array_equal(read[0], read[4]) and np.array_equal(read[1], read[5])


def test_writer_rejects_bad_values(tmp_path):
    with pytest.raises(UserError):
        write_split(tmp_path, "../x", frames=1, size=SIZE, progress=False)
    with pytest.raises(UserError):
        write_split(tmp_path, "train", frames=1, size=(4, 4), progress=False)
    with pytest.raises(UserError):
        write_split(tmp_path, "train", frames=-1, size=SIZE, progress=False)


def test_cityscapes_label_ids_are_mapped(tmp_path):
    stem = "aachen_000000_000019"
    _write(tmp_path / "leftImg8bit/val/aachen" / f"{stem}_leftImg8bit.png", _image())
    ids = _labels()
    ids[:8] = 26  # car
    ids[8:16] = 7  # road
    ids[16:24] = 1  # ego vehicle: not trained on
    ids[24:] = 33  # bicycle
    _write(tmp_path / "gtFine/val/aachen" / f"{stem}_gtFine_labelIds.png", ids)
    _, labels, name = CityscapesFolder(tmp_path, "val")[0]
    assert name == stem
    assert labels[0, 0] == 13 and labels[8, 0] == 0 and labels[16, 0] == 255 and labels[24, 0] == 18
    assert LABEL_ID_TO_TRAIN_ID[26] == 13


def test_bdd100k_layouts(tmp_path):
    new = tmp_path / "new" / "bdd100k"
    for name in ("a1", "b2"):
        _write(new / "images/10k/val" / f"{name}.jpg", _image())
        _write(new / "labels/sem_seg/masks/val" / f"{name}.png", _labels(value=13))
    ds = open_dataset(tmp_path / "new", "val")  # the folder holding bdd100k/ works too
    assert isinstance(ds, BDD100KFolder) and ds.names == ["a1", "b2"]
    image, labels, _ = ds[1]
    assert image.shape == SIZE + (3,) and (labels == 13).all()

    old = tmp_path / "old"
    _write(old / "seg/images/train/c3.jpg", _image())
    _write(old / "seg/labels/train/c3_train_id.png", _labels(value=255))
    ds = BDD100KFolder(old, "train")
    assert len(ds) == 1 and (ds[0][1] == 255).all()


def test_image_folder_is_recursive_and_unlabelled(tmp_path):
    _write(tmp_path / "x.png", _image())
    _write(tmp_path / "sub/y.jpg", _image())
    _write(tmp_path / "sub/deeper/z.bmp", _image())
    (tmp_path / "notes.txt").write_text("not an image")
    ds = open_dataset(tmp_path)
    assert isinstance(ds, ImageFolder) and not ds.labeled
    assert len(ds) == 3
    image, labels, name = ds[0]
    assert labels is None and image.dtype == np.uint8 and image.shape[2] == 3
    with pytest.raises(IndexError):
        ds[3]


# --- bad data: one clear DataError each -------------------------------------------------

def test_missing_folder(tmp_path):
    for cls in (CityscapesFolder, BDD100KFolder):
        with pytest.raises(DataError, match="does not exist"):
            cls(tmp_path / "nope", "val")
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder(tmp_path / "nope")
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nope")


def test_empty_split_names_the_folder(tmp_path):
    (tmp_path / "leftImg8bit/val/aachen").mkdir(parents=True)
    with pytest.raises(DataError, match="leftImg8bit/val"):
        CityscapesFolder(tmp_path, "val")
    with pytest.raises(DataError, match="leftImg8bit/train"):
        CityscapesFolder(tmp_path, "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFolder(tmp_path / "empty")


def test_image_without_label(tmp_path):
    _write(tmp_path / "leftImg8bit/val/a/a_000000_000019_leftImg8bit.png", _image())
    with pytest.raises(DataError, match="a_000000_000019_leftImg8bit.png has no label"):
        CityscapesFolder(tmp_path, "val")
    assert len(CityscapesFolder(tmp_path, "val", labeled=False)) == 1
    bdd = tmp_path / "bdd"
    _write(bdd / "images/10k/val/q.jpg", _image())
    (bdd / "labels/sem_seg/masks/val").mkdir(parents=True)
    with pytest.raises(DataError, match="no image of .* has a label: expected e.g. .*q.png"):
        BDD100KFolder(bdd, "val")
    # Some masks missing (as in the first 10K zips): the matched pairs are used, the rest said.
    _write(bdd / "images/10k/val/r.jpg", _image())
    _write(bdd / "labels/sem_seg/masks/val/r.png", _labels(value=7))
    with pytest.warns(UserWarning, match="1 of 2 images have no mask .* q.jpg"):
        ds = BDD100KFolder(bdd, "val")
    assert ds.names == ["r"] and (ds[0][1] == 7).all()


def _one_frame(root, image, labels):
    _write(root / "leftImg8bit/val/a/a_000000_000019_leftImg8bit.png", image)
    _write(root / "gtFine/val/a/a_000000_000019_gtFine_labelTrainIds.png", labels)
    return CityscapesFolder(root, "val")


def test_label_ids_outside_the_train_ids(tmp_path):
    labels = _labels()
    labels[0, :3] = (19, 40, 254)
    ds = _one_frame(tmp_path, _image(), labels)
    with pytest.raises(DataError, match=r"labelTrainIds\.png holds label ids 19, 40, 254"):
        ds[0]


def test_unreadable_files(tmp_path):
    ds = _one_frame(tmp_path, _image(), _labels())
    ds.image_paths[0].write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="cannot read .*leftImg8bit.png"):
        ds[0]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk/frame.png").write_bytes(b"nothing")
    with pytest.raises(DataError, match="cannot read .*frame.png"):
        ImageFolder(tmp_path / "junk")[0]


def test_label_that_is_not_single_channel(tmp_path):
    ds = _one_frame(tmp_path, _image(), _image())
    with pytest.raises(DataError, match="single-channel"):
        ds[0]


def test_size_mismatch(tmp_path):
    ds = _one_frame(tmp_path, _image(), _labels(h=16))
    with pytest.raises(DataError, match="32x64 but its labels are 16x64"):
        ds[0]


# --- CLI ---------------------------------------------------------------------------------

def test_cli_generate(tmp_path, capsys):
    out = tmp_path / "scenes"
    rc = main(["generate", "--out", str(out), "--split", "val", "--frames", "2",
               "--size", "32x64", "--seed", "3", "--clips", "1", "--clip-length", "2"])
    assert rc == 0
    assert len(CityscapesFolder(out, "val")) == 4
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "wrote 4" in last and str(out) in last


def test_cli_generate_bad_values(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--size", "big"]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
    assert main(["generate", "--out", str(tmp_path), "--frames", "-3"]) == 2
    assert main(["generate", "--out", str(tmp_path), "--frames", "0"]) == 2
    assert "nothing to write" in capsys.readouterr().err
    assert not (tmp_path / "leftImg8bit").exists()
