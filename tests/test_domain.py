"""Far more frames flagged than the bundle was calibrated for: said once, with what to do."""

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from tiny_bundle import make_guard_bundle

from edge_guard.cli import main
from edge_guard.domain import DomainWatch, binomial_tail, calibrated_rate, out_of_domain


def test_binomial_tail_by_hand():
    assert binomial_tail(0, 10, 0.1) == 1.0
    assert binomial_tail(2, 2, 0.1) == pytest.approx(0.01)
    # P(X >= 1) for 3 trials at 0.5 = 1 - 1/8
    assert binomial_tail(1, 3, 0.5) == pytest.approx(0.875)
    assert binomial_tail(6, 6, 0.01) == pytest.approx(1e-12)
    assert binomial_tail(30, 900, 0.01) == pytest.approx(
        sum(math.comb(900, i) * 0.01 ** i * 0.99 ** (900 - i) for i in range(30, 901)), rel=1e-9)


def test_out_of_domain_needs_a_tail_and_a_share():
    assert out_of_domain(6, 6, 0.01)  # six photos, all flagged: the shipped bundle on real photos
    assert not out_of_domain(1, 6, 0.01)  # one of six: could be chance
    assert not out_of_domain(20, 900, 0.01)  # 2.2%: above 1%, not far above
    assert out_of_domain(60, 900, 0.01)
    assert not out_of_domain(2, 2, 0.01)  # too few frames to say anything


def test_the_calibrated_rate_comes_from_the_threshold_rule():
    fpr = SimpleNamespace(detector={"threshold_rule": {"rule": "fpr", "target_fpr": 0.02}})
    low = SimpleNamespace(detector={"threshold_rule": {"rule": "min-benign", "benign_frames": 500}})
    assert calibrated_rate(fpr) == 0.02 and calibrated_rate(low) == pytest.approx(0.002)


def test_the_watch_says_it_once_over_the_last_minute():
    watch = DomainWatch(0.01, fps=1.0)  # a minute at 1 frame/s: at least 30 frames
    assert watch.frames == 60
    said = [watch.update(i % 3 == 0) for i in range(200)]
    lines = [s for s in said if s is not None]
    assert len(lines) == 1 and said.index(lines[0]) == 59  # once the window is full
    assert "20 of the last 60 checked frames" in lines[0] and "edge-guard calibrate" in lines[0]
    quiet = DomainWatch(0.01, fps=1.0)
    assert all(quiet.update(i == 30) is None for i in range(200))


def test_check_says_when_a_batch_is_far_above_the_calibrated_rate(tmp_path, capsys):
    root = make_guard_bundle(tmp_path / "bundle", frame=(48, 64), k=8, threshold=0.99)  # target 5%
    images = []
    for i in range(6):
        path = tmp_path / f"noise{i}.png"
        cv2.imwrite(str(path), np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8))
        images.append(str(path))
    assert main(["check", "--bundle", str(root), *images]) == 1
    err = capsys.readouterr().err
    assert "6 of the 6 images (100%) were flagged, against the 5.0%" in err
    assert len([line for line in err.splitlines() if "were flagged" in line]) == 1
    calm = tmp_path / "calm.png"
    cv2.imwrite(str(calm), np.full((48, 64, 3), (20, 200, 100), np.uint8))
    main(["check", "--bundle", str(root), str(calm), str(calm), str(calm), images[0]])
    assert "were flagged" not in capsys.readouterr().err


def test_run_says_it_once_and_the_end_record_keeps_it(tmp_path, capsys):
    from edge_guard.events import read_events

    root = make_guard_bundle(tmp_path / "bundle", frame=(48, 64), k=8, threshold=0.99)
    video = tmp_path / "noise.avi"  # 1 frame/s: the last minute is 60 frames, all noise
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 1.0, (64, 48))
    for i in range(70):
        writer.write(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    events = tmp_path / "events.jsonl"
    assert main(["run", "--bundle", str(root), "--source", str(video), "--events", str(events)]) == 1
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "of the last 60 checked frames" in line]) == 1
    assert "of the last 60 checked frames (100%)" in read_events(events)[-1]["domain_warning"]
