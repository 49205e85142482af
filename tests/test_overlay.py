"""overlay.py and demo_strip.py: what the annotated video and the demo strip draw, for both detectors."""

import numpy as np
import pytest

from edge_guard.classes import PALETTE
from edge_guard.demo_strip import THUMB_W, thumbnail
from edge_guard.overlay import GREEN, RED, annotate, draw_boxes, tint_labels
from edge_guard.verdict import Verdict

FRAME = (48, 64)


def _verdict(detector, boxes, scores, labels=None, input_size=(96, 128), threshold=0.5):
    return Verdict(score=float(np.mean(scores)), threshold=threshold, adversarial=bool(np.mean(scores) < threshold),
                   detector=detector, statistic="miou", scores=list(scores), boxes=boxes, patch_size=16,
                   timings_ms={"total": 1.0}, frame_size=FRAME, input_size=input_size, backend="function",
                   provider="python", labels=labels)


def test_frame_patches_are_drawn_where_they_are_coloured_by_score():
    img = np.zeros((*FRAME, 3), np.uint8)
    draw_boxes(img, "frame", [[0, 0], [20, 30]], [1.0, 0.2], 16, FRAME, threshold=0.5)
    assert tuple(img[0, 0]) == GREEN and tuple(img[15, 15]) == GREEN      # corners of the first patch
    assert tuple(img[20, 30]) == RED and tuple(img[35, 45]) == RED        # the second, below threshold
    assert not img[8, 8].any() and not img[36, 46].any()                  # inside / outside: untouched


def test_pairs_draw_both_patches_of_each_pair():
    img = np.zeros((*FRAME, 3), np.uint8)
    draw_boxes(img, "pairs", [[0, 0, 4, 6]], [0.9], 16, FRAME, threshold=0.5)
    assert tuple(img[0, 0]) == GREEN and tuple(img[4, 6]) == GREEN and tuple(img[19, 21]) == GREEN


def test_annotate_maps_patches_to_the_camera_frame_and_tints_labels_on_request():
    labels = np.zeros(FRAME, np.int32)
    labels[:, 32:] = 13                                  # car on the right half
    labels[0, 0] = 200                                   # an id outside the palette
    verdict = _verdict("frame", [[24, 0]], [0.1], labels=labels, input_size=(192, 256))
    camera = np.full((192, 256, 3), 100, np.uint8)       # four times the bundle's frame
    plain = annotate(camera.copy(), verdict)
    assert tuple(plain[96, 0]) == RED and tuple(plain[96, 63]) == RED  # (24, 0) to (24, 16), scaled x4
    assert tuple(plain[150, 0]) == RED and tuple(plain[100, 30]) == (100, 100, 100)
    assert tuple(plain[100, 220]) == (100, 100, 100)                    # no tint unless asked
    tinted = annotate(camera.copy(), verdict, labels=True)
    car_bgr = PALETTE[13][::-1].astype(float)
    assert np.allclose(tinted[100, 220], 0.65 * 100 + 0.35 * car_bgr, atol=1)
    road_bgr = PALETTE[0][::-1].astype(float)
    assert np.allclose(tinted[100, 60], 0.65 * 100 + 0.35 * road_bgr, atol=1)
    # A verdict without labels draws the same as without the flag.
    bare = _verdict("frame", [[24, 0]], [0.1], input_size=(192, 256))
    assert np.array_equal(annotate(camera.copy(), bare, labels=True), plain)


def test_labels_outside_the_palette_are_left_untinted():
    img = np.full((4, 4, 3), 50, np.uint8)
    labels = np.full((4, 4), 42, np.int32)
    labels[0, 0] = 2
    tint_labels(img, labels)
    assert (img[1:, :] == 50).all() and not (img[0, 0] == 50).all()


@pytest.mark.parametrize("event", [
    {"detector": "frame", "boxes": [[0, 0]], "scores": [0.2], "patch_size": 16},
    {"detector": "pairs", "boxes": [[0, 0, 4, 4]], "scores": [0.2], "pair_mious": [0.2],
     "pairs": [[0, 0, 4, 4]], "patch_size": 16},
    {"pair_mious": [0.2], "pairs": [[0, 0, 4, 4]]},      # written before the frame detector
])
def test_demo_strip_thumbnails_draw_from_events_of_either_detector(event):
    event = dict(event, frame=3, score=0.2, threshold=0.5, adversarial=True, frame_size=list(FRAME))
    tile = thumbnail(np.zeros((*FRAME, 3), np.uint8), event, attacked=True, patch=16)
    assert tile.shape[1] == THUMB_W
    bottom = int(16 * THUMB_W / FRAME[1]) - 1                          # the (0, 0) patch's lower edge
    assert (tile[bottom, 10:bottom - 10] == RED).all()
    assert not tile[bottom - 10, 5:15].any()                           # inside: untouched
