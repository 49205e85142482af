"""getOverlapPatches: geometry properties (hypothesis), determinism and argument errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_guard.errors import UserError
from edge_guard.patches import overlap_boxes, sample_pairs


@st.composite
def geometry(draw):
    size = draw(st.integers(1, 96))
    low = draw(st.integers(0, size - 1))
    high = draw(st.integers(low + 1, size))
    # Sides from the smallest legal one (size + low) to well past size + high - 1.
    height = draw(st.integers(size + low, size + high + 40))
    width = draw(st.integers(size + low, size + high + 40))
    k = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    return height, width, size, low, high, k, seed


@settings(max_examples=300, deadline=None)
@given(geometry())
def test_pairs_inside_frame_with_allowed_displacement(g):
    height, width, size, low, high, k, seed = g
    pairs = sample_pairs(height, width, size, low, high, k, np.random.default_rng(seed))
    assert pairs.shape == (k, 4) and pairs.dtype == np.int32
    ys, xs = pairs[:, 0::2], pairs[:, 1::2]
    assert ys.min() >= 0 and xs.min() >= 0
    assert ys.max() + size <= height and xs.max() + size <= width
    d = np.abs(pairs[:, 2:4] - pairs[:, 0:2])
    assert d.min() >= low and d.max() < high
    # A side shorter than size + high - 1 admits only the magnitudes that fit it.
    assert np.all(d[:, 0] <= height - size) and np.all(d[:, 1] <= width - size)


@settings(max_examples=200, deadline=None)
@given(geometry())
def test_overlap_boxes_cover_the_same_frame_pixels(g):
    height, width, size, low, high, k, seed = g
    pairs = sample_pairs(height, width, size, low, high, k, np.random.default_rng(seed))
    boxes = overlap_boxes(pairs, size)
    for (y1, x1, y2, x2), (ay, ax, by, bx, h, w) in zip(pairs, boxes):
        assert h == size - abs(int(y2) - int(y1)) and w == size - abs(int(x2) - int(x1))
        assert h >= 1 and w >= 1
        # Both local boxes are inside their patch and map to one frame rectangle.
        assert 0 <= ay and ay + h <= size and 0 <= by and by + h <= size
        assert 0 <= ax and ax + w <= size and 0 <= bx and bx + w <= size
        assert (y1 + ay, x1 + ax) == (y2 + by, x2 + bx)
        # ... which is the intersection of the two patches.
        assert y1 + ay == max(y1, y2) and y1 + ay + h == min(y1, y2) + size
        assert x1 + ax == max(x1, x2) and x1 + ax + w == min(x1, x2) + size


def test_overlap_by_frame_coordinates():
    # Size 8 patches at (y, x) = (10, 20) and (5, 24): d = (-5, +4).
    # Frame overlap: rows max(10, 5) = 10 .. min(18, 13) = 13 -> h = 3 = 8 - 5,
    #                cols max(20, 24) = 24 .. min(28, 32) = 28 -> w = 4 = 8 - 4.
    # In the first patch it starts at (10 - 10, 24 - 20) = (0, 4); in the second at
    # (10 - 5, 24 - 24) = (5, 0).
    boxes = overlap_boxes(np.array([[10, 20, 5, 24]]), 8)
    assert boxes.tolist() == [[0, 4, 5, 0, 3, 4]]


def test_seeded_rng_is_deterministic_and_default_is_not():
    a = sample_pairs(1024, 2048, 512, 32, 64, 50, np.random.default_rng(7))
    b = sample_pairs(1024, 2048, 512, 32, 64, 50, np.random.default_rng(7))
    assert np.array_equal(a, b)
    c = sample_pairs(1024, 2048, 512, 32, 64, 50)
    d = sample_pairs(1024, 2048, 512, 32, 64, 50)
    assert not np.array_equal(c, d)  # 50 pairs from OS entropy: equal by chance is ~impossible


def test_both_signs_and_the_whole_range_occur():
    pairs = sample_pairs(700, 700, 512, 32, 64, 4000, np.random.default_rng(1))
    d = (pairs[:, 2:4] - pairs[:, 0:2]).astype(int)
    for axis in (0, 1):
        assert (d[:, axis] > 0).any() and (d[:, axis] < 0).any()
        assert set(np.abs(d[:, axis])) == set(range(32, 64))


def test_short_side_truncates_magnitudes():
    # 512 + 40 = 552 rows: |d_y| can only be 32..40; columns keep the whole range.
    pairs = sample_pairs(552, 1024, 512, 32, 64, 2000, np.random.default_rng(2))
    d = np.abs(pairs[:, 2:4] - pairs[:, 0:2])
    assert set(d[:, 0]) == set(range(32, 41))
    assert set(d[:, 1]) == set(range(32, 64))


@pytest.mark.parametrize("args, match", [
    ((543, 1024, 512, 32, 64, 1), "too small"),     # 543 < 512 + 32
    ((1024, 500, 512, 32, 64, 1), "too small"),     # narrower than the patch
    ((1024, 1024, 512, -1, 64, 1), "b_low"),
    ((1024, 1024, 512, 64, 64, 1), "greater than b_low"),
    ((1024, 1024, 512, 32, 513, 1), "exceeds the patch size"),
    ((1024, 1024, 0, 0, 1, 1), "at least 1"),
    ((1024, 1024, 512, 32, 64, 0), "at least 1"),
    ((1024, 1024, 512.0, 32, 64, 1), "integer"),
])
def test_errors(args, match):
    with pytest.raises(UserError, match=match):
        sample_pairs(*args)


def test_smallest_legal_frame():
    pairs = sample_pairs(544, 544, 512, 32, 64, 10, np.random.default_rng(3))
    d = np.abs(pairs[:, 2:4] - pairs[:, 0:2])
    assert np.all(d == 32)
    assert set(pairs[:, 0::2].ravel()) <= {0, 32}


def test_overlap_boxes_reject_disjoint_pairs():
    with pytest.raises(UserError, match="does not overlap"):
        overlap_boxes(np.array([[0, 0, 8, 0]]), 8)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 64), st.data())
def test_frames_too_small_for_the_minimum_displacement_fail(size, data):
    low = data.draw(st.integers(0, size - 1))
    high = data.draw(st.integers(low + 1, size))
    short = data.draw(st.integers(1, size + low - 1))
    other = data.draw(st.integers(size + low, size + high + 10))
    for height, width in ((short, other), (other, short)):
        with pytest.raises(UserError, match="too small"):
            sample_pairs(height, width, size, low, high, 1, np.random.default_rng(0))


def test_full_range_needs_room_for_the_largest_displacement():
    from edge_guard.patches import check_full_range

    check_full_range(287, 287, 256, 16, 32)          # 256 + 32 - 1: every displacement fits
    with pytest.raises(UserError, match=r"frame 286x400 .* each side needs at least 287"):
        check_full_range(286, 400, 256, 16, 32)
    with pytest.raises(UserError, match="b_high must be greater than b_low"):
        check_full_range(512, 512, 256, 32, 16)       # check_geometry's checks come first
