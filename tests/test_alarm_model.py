"""The benign score model the CUSUM is calibrated with, and the delay / false-alarm replay of
issue 25, on synthetic streams of known distribution and hand-computed cases."""

import numpy as np
import pytest

from edge_guard.alarms import AlarmWindow, SequentialAlarm
from edge_guard.calibration.alarm import (calibrate_cusum, count_raises, default_drift_and_clip,
                                          evidence)
from edge_guard.calibration.alarm_eval import (count_alarms, detection_delay, false_alarms, feed,
                                               poisson_interval, window_scores)
from edge_guard.calibration.score_model import fit_score_model, scores_from_normal, simulate_scores
from edge_guard.errors import UserError

FPS = 15.0


def _drives(rng, n, length, v, rho, mu=0.6, sd=0.05):
    """n drives of normal scores with a per-drive level (share v) and AR(1) (rho) within."""
    w = np.empty((n, length))
    w[:, 0] = rng.standard_normal(n)
    for t in range(1, length):
        w[:, t] = rho * w[:, t - 1] + np.sqrt(1 - rho * rho) * rng.standard_normal(n)
    z = np.sqrt(v) * rng.standard_normal((n, 1)) + np.sqrt(1 - v) * w
    return list(mu + sd * z)


def test_the_model_recovers_the_drive_level_and_the_frame_correlation():
    rng = np.random.default_rng(0)
    model = fit_score_model(_drives(rng, 300, 90, v=0.3, rho=0.5))
    assert model["v"] == pytest.approx(0.3, abs=0.08)
    assert model["rho"] == pytest.approx(0.5, abs=0.1)
    # lag-1 correlation of the whole = v + (1 - v) * rho = 0.65
    assert model["lag_correlations"]["1"] == pytest.approx(0.65, abs=0.05)


def test_the_tail_reaches_below_every_benign_score_at_the_fitted_rate():
    rng = np.random.default_rng(1)
    scores = [rng.uniform(0.5, 0.7, 100) for _ in range(50)]
    model = fit_score_model(scores, tail=0.02)
    assert model["u"] == pytest.approx(0.504, abs=0.002)
    # below u a uniform's exceedances are uniform on [0, 0.004]: mean 0.002
    assert model["beta"] == pytest.approx(0.002, abs=0.0005)
    # P(s < u - y) = 0.02 * exp(-y / beta): at p = 0.02 * e^-3 the score is u - 3 beta
    low = scores_from_normal(model, np.array([-20.0, _ndtri(0.02 * np.exp(-3))]))
    assert low[1] == pytest.approx(model["u"] - 3 * model["beta"], rel=1e-6)
    assert low[0] < 0.5  # lower than any benign score seen
    sim = simulate_scores(model, 100_000, np.random.default_rng(2))
    assert sim.shape == (100_000,)
    assert np.quantile(sim, 0.5) == pytest.approx(0.6, abs=0.005)
    assert (sim < model["u"]).mean() == pytest.approx(0.02, abs=0.003)


def _ndtri(p):
    from scipy.special import ndtri

    return float(ndtri(p))


def test_the_model_needs_clips_longer_than_its_long_lags():
    with pytest.raises(UserError, match="more than 20 frames"):
        fit_score_model([np.linspace(0, 1, 15)] * 10)
    with pytest.raises(UserError, match="at least 50 frames"):
        fit_score_model([np.ones(20)])


def test_cusum_calibrated_on_correlated_drives_holds_its_rate_on_fresh_hours():
    # A known distribution with the structure the model states: calibrate on 200 drives
    # (5 hours would be needed to see the rate directly), then count on 20 fresh hours.
    rng = np.random.default_rng(3)
    cal = _drives(rng, 200, 90, v=0.2, rho=0.4)
    section = calibrate_cusum(cal, per_hour=30.0, fps=FPS, threshold=0.45, seed=1)
    fresh = np.concatenate(_drives(rng, int(20 * 3600 * FPS / 90), 90, v=0.2, rho=0.4))
    x = evidence(fresh, section["reference"], section["scale"], section["drift"], section["clip"])
    rate = count_raises(x, section["h"]) / 20.0
    # Within a factor of 2 of the target: the rate is exponential in h, and the lower tail of
    # the pooled scores of 200 drives (hard drives come in whole drives) is known only so well
    # (the true generator's h gives 30 on these hours, the fitted model's 51).
    assert 15.0 <= rate <= 60.0


def test_the_default_drift_and_cap_come_from_the_threshold():
    # median 0.6, deviation 0.05, threshold 0.4: delta = 4 deviations -> k = 4, c = 8
    assert default_drift_and_clip(0.6, 0.05, 0.4) == pytest.approx((4.0, 8.0))
    assert default_drift_and_clip(0.6, 0.05, None) == (0.5, 4.0)
    assert default_drift_and_clip(0.6, 0.05, 0.7) == (0.5, 4.0)  # a threshold above the median


def test_window_scores_splice_the_attacked_stretch():
    got = window_scores([1, 1, 1, 1, 1, 1], [0.1, 0.2, 0.3], onset=2, length=2)
    assert got.tolist() == [1, 1, 0.1, 0.2, 1, 1]
    with pytest.raises(UserError, match="does not fit"):
        window_scores([1, 1, 1], [0.1, 0.2], onset=2, length=2)


def test_detection_delay_by_hand_with_three_of_five():
    # threshold 0.5: frames 3, 4 flagged (a false episode raised at 4? no: 2 of 5), attack from 6
    scores = [0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9]
    got = detection_delay(lambda: AlarmWindow(3, 5), scores, 0.5, onset=6, length=4)
    # window at frame 6 holds frames 2-6: 0.9, 0.1, 0.1, 0.9, 0.1 -> 3 flagged: raised on the onset
    assert got == {"delay": 0, "active_at_onset": False, "false_before": 0}
    late = [0.9] * 6 + [0.1] * 4 + [0.9] * 2
    assert detection_delay(lambda: AlarmWindow(3, 5), late, 0.5, 6, 4)["delay"] == 2
    assert detection_delay(lambda: AlarmWindow(3, 5), late, 0.5, 6, 2)["delay"] is None  # over before 3
    early = [0.1] * 3 + [0.9] * 3 + [0.1] * 4  # a false alarm at frame 2, cleared at 4
    got = detection_delay(lambda: AlarmWindow(3, 5), early, 0.5, 6, 4)
    assert got["false_before"] == 1 and not got["active_at_onset"]


def test_detection_delay_counts_an_episode_running_into_the_attack():
    scores = [0.9] * 4 + [0.0] * 10
    make = lambda: SequentialAlarm(h=3.0, reference=0.9, scale=0.1, drift=0.5, clip=4.0)  # noqa: E731
    got = detection_delay(make, scores, 0.5, onset=6, length=8)
    assert got["active_at_onset"] and got["false_before"] == 1 and got["delay"] is None


def test_false_alarms_per_hour_with_a_poisson_interval():
    drives = [[0.9] * 9 + [0.1] * 3 + [0.9] * 6, [0.9] * 18]  # one 3-of-5 alarm in 36 frames
    got = false_alarms(lambda: AlarmWindow(3, 5), drives, 0.5, fps=FPS)
    hours = 36 / (3600 * FPS)
    assert got["alarms"] == 1 and got["frames"] == 36 and got["per_hour"] == pytest.approx(1 / hours)
    assert poisson_interval(0) == pytest.approx((0.0, 3.6889), abs=1e-4)
    assert poisson_interval(1) == pytest.approx((0.0253, 5.5716), abs=1e-4)
    assert got["per_hour_ci95"][1] == pytest.approx(5.5716 / hours, rel=1e-4)


def test_the_vectorised_count_is_the_runtime_rule_for_both_alarms():
    rng = np.random.default_rng(6)
    scores = rng.normal(0.6, 0.1, 20000)
    for alarm in (AlarmWindow(3, 5), AlarmWindow(1, 1), SequentialAlarm(3.0, 0.6, 0.1, 0.5, 4.0)):
        by_hand = sum(c == "raised" for c in feed(alarm, scores, 0.5))
        alarm.reset()
        assert by_hand > 100 and count_alarms(alarm, scores, 0.5) == by_hand


def _drive_videos(folder, drives=4, frames=80):
    """Benign 'drives' for the tiny bundle: solid colours with a noisy box of random size, so
    the scores vary from frame to frame (FFV1: lossless)."""
    import cv2

    folder.mkdir()
    rng = np.random.default_rng(0)
    for d in range(drives):
        writer = cv2.VideoWriter(str(folder / f"drive{d}.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 15.0, (256, 128))
        for i in range(frames):
            frame = np.full((128, 256, 3), (8 * (i % 30), 200, 100), np.uint8)
            h, w = int(rng.integers(2, 40)), int(rng.integers(2, 60))
            frame[:h, :w] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            writer.write(frame)
        writer.release()
    return folder


def test_calibrate_extend_clips_adds_the_alarm_that_run_then_uses(tmp_path, capsys):
    from stream_clip import write_clip
    from tiny_bundle import make_guard_bundle

    from edge_guard.bundle import load_bundle
    from edge_guard.cli import main
    from edge_guard.events import read_events

    root = make_guard_bundle(tmp_path / "bundle", frame=(48, 64), k=8, threshold=0.99)
    drives = _drive_videos(tmp_path / "drives")
    assert main(["calibrate", "--extend", "--out", str(root), "--clips", str(drives), "--alarm-rate", "2",
                 "--quiet"]) == 0
    alarm = load_bundle(root).alarm
    assert alarm["method"] == "cusum" and alarm["k"] == 8 and alarm["target_per_hour"] == 2.0
    assert alarm["calibration"]["clips"] == 4 and alarm["calibration"]["benign_frames"] == 320
    assert "sequential alarm (CUSUM)" in capsys.readouterr().out
    events = tmp_path / "events.jsonl"
    main(["run", "--bundle", str(root), "--source", str(write_clip(tmp_path / "clip.avi")),
          "--events", str(events)])
    assert read_events(events)[0]["alarm"]["method"] == "cusum"
    # at another K the CUSUM does not fit the scores: 3/5, said once
    assert main(["run", "--bundle", str(root), "--source", str(tmp_path / "clip.avi"), "--k", "4",
                 "--events", str(events)]) in (0, 1)
    assert read_events(events)[-1]["type"] == "end"
    assert "calibrated at K=8" in capsys.readouterr().err


def test_calibrate_clips_refuses_what_cannot_calibrate_an_alarm(tmp_path, capsys):
    from tiny_bundle import make_guard_bundle

    from edge_guard.cli import main

    root = make_guard_bundle(tmp_path / "bundle", frame=(48, 64), k=8, threshold=0.99)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", "--extend", "--out", str(root), "--clips", str(empty), "--quiet"]) == 2
    assert "holds no videos and no clips" in capsys.readouterr().err
    few = _drive_videos(tmp_path / "few", drives=1, frames=40)
    assert main(["calibrate", "--extend", "--out", str(root), "--clips", str(few), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "40 benign frames" in err and len(err.strip().splitlines()) == 1


def test_the_shipped_alarm_re_derives_from_the_reports_committed_scores():
    import importlib.util
    from pathlib import Path

    from edge_guard.bundle import load_bundle
    from edge_guard.paths import DEFAULT_BUNDLE

    script = Path(__file__).resolve().parents[1] / "reports/2026-12-06-stream-alarm/ship_alarm.py"
    spec = importlib.util.spec_from_file_location("ship_alarm", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = load_bundle(DEFAULT_BUNDLE).alarm
    assert module.shipped_section() == shipped
    assert shipped["k"] == load_bundle(DEFAULT_BUNDLE).k and shipped["target_per_hour"] == 0.5
