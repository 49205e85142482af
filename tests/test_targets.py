"""Adversarial targets: shapes, classes, determinism, and what each one draws."""

import numpy as np
import pytest

from edge_guard.calibration.targets import (
    MOVABLE, TARGETS, emblem, make_target, pure, remap, remove_movable, scene, strip, text)
from edge_guard.classes import ID, IGNORE, NUM_CLASSES
from edge_guard.errors import UserError

SHAPE = (64, 128)


def street_labels(h=64, w=128):
    """Sky, a building band, road; a car on the road and a pedestrian before the building."""
    labels = np.full((h, w), ID["road"], np.uint8)
    labels[: h // 4] = ID["sky"]
    labels[h // 4: h // 2] = ID["building"]
    labels[h // 2 - 4: h // 2 + 10, 20:50] = ID["car"]
    labels[h // 4 + 2: h // 2 - 6, 90:94] = ID["person"]
    labels[-3:, :10] = IGNORE
    return labels


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_target_is_a_label_map_of_the_frame(name):
    clean = street_labels()
    a = make_target(name, SHAPE + (3,), 7, clean_pred=clean, source_labels=clean)
    b = make_target(name, SHAPE, 7, clean_pred=clean, source_labels=clean)
    assert a.shape == SHAPE and a.dtype == np.uint8
    assert np.array_equal(a, b)  # deterministic by seed
    values = set(np.unique(a).tolist())
    assert values <= set(range(NUM_CLASSES)) | {IGNORE}
    if name != "scene":  # scene is fixed by its source labels
        others = [make_target(name, SHAPE, s, clean_pred=clean, source_labels=clean) for s in range(8, 14)]
        assert any(not np.array_equal(a, o) for o in others)


def test_pure_is_one_class():
    t = pure(SHAPE, 3)
    assert len(np.unique(t)) == 1
    assert len({int(pure(SHAPE, s)[0, 0]) for s in range(40)}) > 10


def test_emblem_is_a_centred_figure_of_several_classes():
    t = emblem((256, 512), 1)
    classes = np.unique(t)
    assert 5 <= len(classes) <= 6
    corners = {t[0, 0], t[0, -1], t[-1, 0], t[-1, -1]}
    assert len(corners) == 1  # the background
    bg = corners.pop()
    assert t[128, 256] != bg  # the face
    figure = t != bg
    assert 0.1 < figure.mean() < 0.6
    ys, xs = np.nonzero(figure)
    assert abs(xs.mean() - 256) < 40 and abs(ys.mean() - 128) < 40
    # mirrored about the face's centre column, only the bow breaks the symmetry
    face = t[:, xs.min():xs.max() + 1]
    assert (face == face[:, ::-1]).mean() > 0.85
    small = emblem((32, 64), 1)  # still drawable on tiny frames
    assert len(np.unique(small)) >= 3


def test_strip_is_vertical_stripes():
    t = strip(SHAPE, 4)
    assert (t == t[:1]).all()  # every column is constant
    row = t[0]
    changes = np.flatnonzero(row[1:] != row[:-1])
    assert 3 <= len(changes) <= 7
    widths = np.diff(np.r_[0, changes + 1, SHAPE[1]])
    assert widths.max() - widths.min() <= 1


def test_text_is_two_classes_and_follows_the_string():
    t = text((128, 512), 2)
    assert len(np.unique(t)) == 2
    bg = t[0, 0]
    ink = (t != bg).mean()
    assert 0.03 < ink < 0.4
    assert not np.array_equal(t, text((128, 512), 2, "HELLO"))
    with pytest.raises(UserError):
        text(SHAPE, 0, "   ")
    assert np.array_equal(make_target("text", SHAPE, 2, text="HI"), text(SHAPE, 2, "HI"))


def test_scene_removes_people_and_vehicles():
    src = street_labels()
    t = scene(SHAPE, 0, src)
    assert not np.isin(t, MOVABLE).any()
    kept = ~np.isin(src, MOVABLE)
    assert np.array_equal(t[kept], src[kept])
    assert (t[SHAPE[0] // 2 + 9, 25:45] == ID["road"]).all()  # under the car: road
    assert (t[SHAPE[0] // 4 + 6, 90:94] == ID["building"]).all()  # behind the pedestrian
    assert (t[-3:, :10] == IGNORE).all()
    # another size: resized (nearest) first
    big = scene((128, 256), 0, src)
    assert big.shape == (128, 256) and not np.isin(big, MOVABLE).any()


def test_scene_without_source_uses_a_generated_frame():
    t = scene(SHAPE, 3)
    assert t.shape == SHAPE and not np.isin(t, MOVABLE).any()
    assert (t == ID["road"]).mean() > 0.05


def test_remove_movable_edge_cases():
    only_cars = np.full((8, 8), ID["car"], np.uint8)
    assert (remove_movable(only_cars) == ID["road"]).all()
    nothing = np.full((8, 8), ID["sky"], np.uint8)
    assert np.array_equal(remove_movable(nothing), nothing)


def test_remap_permutes_every_class():
    pred = np.arange(NUM_CLASSES, dtype=np.uint8).repeat(4).reshape(4, -1)
    pred[0, 0] = IGNORE
    t = remap(pred, 5)
    assert t[0, 0] == IGNORE
    mapping = {}
    for a, b in zip(pred.ravel(), t.ravel()):
        if a != IGNORE:
            assert mapping.setdefault(int(a), int(b)) == int(b)  # one class -> one class
    assert sorted(mapping.values()) == sorted(mapping)  # a permutation
    assert all(a != b for a, b in mapping.items())  # nobody keeps its class


def test_make_target_errors():
    with pytest.raises(UserError, match="unknown target"):
        make_target("kitty", SHAPE, 0)
    with pytest.raises(UserError, match="clean prediction"):
        make_target("remap", SHAPE, 0)
    with pytest.raises(UserError, match="does not match"):
        make_target("remap", SHAPE, 0, clean_pred=np.zeros((4, 4), np.uint8))
