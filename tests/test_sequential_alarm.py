"""The sequential (CUSUM) alarm and its calibration for false alarms per hour, on hand-made scores."""

import json

import numpy as np
import pytest
from stream_clip import write_clip
from tiny_bundle import make_guard_bundle

from edge_guard.alarms import AlarmWindow, SequentialAlarm, make_alarm
from edge_guard.calibration.alarm import (block_bootstrap, calibrate_cusum, count_raises, evidence,
                                          reference_and_scale)
from edge_guard.cli import main
from edge_guard.errors import UserError
from edge_guard.events import read_events

FPS = 15.0


def _benign(rng, clips=20, length=300, mu=0.9, sd=0.02):
    return [rng.normal(mu, sd, length) for _ in range(clips)]


def test_cusum_follows_its_definition():
    alarm = SequentialAlarm(h=5.0, reference=0.9, scale=0.1, drift=0.5, clip=4.0)
    # evidence: 0.9 -> -0.5; 0.5 -> 3.5; 0.0 -> min(8.5, 4) = 4
    changes = [alarm.update(s) for s in (0.9, 0.5, 0.5, 0.0)]
    assert changes == [None, None, "raised", None]
    assert alarm.statistic == 5.0 and alarm.active and alarm.episodes == 1  # held at h while active
    changes = [alarm.update(0.9) for _ in range(10)]
    assert changes == [None] * 9 + ["cleared"] and alarm.statistic == 0.0 and not alarm.active
    # one odd frame adds at most clip = 4 < h: never an alarm on its own
    assert alarm.update(0.0) is None and alarm.statistic == 4.0


def test_the_vectorised_count_is_the_runtime_rule():
    rng = np.random.default_rng(3)
    scores = rng.normal(0.9, 0.02, 30000)
    scores[5000:5040] -= 0.1
    scores[20000:20002] -= 0.3
    alarm = SequentialAlarm(6.0, 0.9, 0.02)
    raised = sum(alarm.update(s) == "raised" for s in scores)
    assert raised >= 2
    assert count_raises(evidence(scores, 0.9, 0.02), 6.0) == raised


def test_iid_benign_scores_give_the_target_rate_on_long_fresh_runs():
    rng = np.random.default_rng(0)
    target = 60.0
    # 60 000 benign frames: with a few thousand, the estimated median and scale alone move the
    # rate by half (it is exponential in h), which is the calibration's honest limit, not a bug.
    section = calibrate_cusum(_benign(rng, clips=200), per_hour=target, fps=FPS, events=300, seed=1)
    assert section["calibration"]["achieved_per_hour"] <= target
    fresh = rng.normal(0.9, 0.02, int(40 * 3600 * FPS))  # 40 hours never seen by the calibration
    x = evidence(fresh, section["reference"], section["scale"], section["drift"], section["clip"])
    rate = count_raises(x, section["h"]) / 40.0
    assert 0.6 * target <= rate <= 1.3 * target


def test_a_shifted_segment_is_detected_within_a_few_frames():
    rng = np.random.default_rng(1)
    section = calibrate_cusum(_benign(rng), per_hour=1.0, fps=FPS)
    alarm = SequentialAlarm.from_section(section)
    scores = np.concatenate([rng.normal(0.9, 0.02, 600), rng.normal(0.7, 0.02, 30), rng.normal(0.9, 0.02, 200)])
    raised = [i for i, s in enumerate(scores) if alarm.update(s) == "raised"]
    assert len(raised) == 1 and 600 <= raised[0] <= 605
    assert not alarm.active  # cleared once the benign frames returned


def test_h_grows_as_the_target_rate_falls():
    rng = np.random.default_rng(2)
    seqs = _benign(rng)
    hs = [calibrate_cusum(seqs, per_hour=rate, fps=FPS)["h"] for rate in (100.0, 10.0, 1.0)]
    assert hs[0] < hs[1] < hs[2]


def test_the_block_bootstrap_keeps_short_range_correlation():
    rng = np.random.default_rng(4)
    seqs = []
    for _ in range(10):  # AR(1) with lag-1 correlation 0.9
        e, x = rng.normal(0, 1, 400), np.zeros(400)
        for t in range(1, 400):
            x[t] = 0.9 * x[t - 1] + e[t]
        seqs.append(x)
    run = block_bootstrap(seqs, 200000, 30, np.random.default_rng(0))
    assert run.shape == (200000,)
    assert np.corrcoef(run[:-1], run[1:])[0, 1] > 0.8
    with pytest.raises(UserError, match="does not fit the shortest clip"):
        block_bootstrap(seqs, 100, 401, np.random.default_rng(0))


def test_calibration_records_how_it_was_made_and_refuses_no_data():
    rng = np.random.default_rng(5)
    seqs = [rng.normal(0.8, 0.05, n) for n in (12, 40, 50)]
    section = calibrate_cusum(seqs, per_hour=2.0, fps=10.0, seed=7, extrapolation="bootstrap")
    cal = section["calibration"]
    assert section["method"] == "cusum" and section["target_per_hour"] == 2.0 and section["fps"] == 10.0
    assert cal["benign_frames"] == 102 and cal["clips"] == 3 and cal["block_frames"] == 12  # the shortest clip
    assert cal["extrapolation"] == "bootstrap"
    assert cal["simulated_false_alarms"] <= 2.0 * cal["simulated_hours"]
    assert calibrate_cusum(seqs, per_hour=2.0, fps=10.0, seed=7, extrapolation="bootstrap") == section
    modelled = calibrate_cusum(seqs, per_hour=2.0, fps=10.0, seed=7)
    assert modelled["calibration"]["extrapolation"] == "model"
    assert set(modelled["calibration"]["model"]) >= {"u", "beta", "v", "rho", "tail", "lag_correlations"}
    assert calibrate_cusum(seqs, per_hour=2.0, fps=10.0, seed=7) == modelled
    with pytest.raises(UserError, match="'model' or 'bootstrap'"):
        calibrate_cusum(seqs, extrapolation="magic")
    assert reference_and_scale([np.ones(50)]) == (1.0, 1e-3)
    with pytest.raises(UserError, match="got none"):
        calibrate_cusum([np.array([])])
    with pytest.raises(UserError, match="positive"):
        calibrate_cusum(seqs, per_hour=0.0)


def test_the_default_alarm_is_the_bundles_cusum_else_three_of_five():
    section = {"method": "cusum", "h": 5.0, "reference": 0.9, "scale": 0.1, "drift": 0.5, "clip": 4.0}
    assert isinstance(make_alarm(None, section), SequentialAlarm)
    window = make_alarm(None, None)
    assert isinstance(window, AlarmWindow) and (window.m, window.n) == (3, 5)
    assert isinstance(make_alarm((2, 4), section), AlarmWindow)
    with pytest.raises(UserError, match="no calibrated sequential alarm"):
        make_alarm("cusum", None)
    with pytest.raises(UserError, match="h > 0"):
        SequentialAlarm(0.0, 0.9, 0.1)


def _doc_with(alarm):
    from tiny_bundle import guard_doc

    doc = guard_doc("0" * 64)
    if alarm is not None:
        doc["alarm"] = alarm
    return doc


def test_guard_json_alarm_section_is_optional_and_checked():
    from edge_guard.bundle_schema import BundleError, validate

    assert "alarm" not in validate(_doc_with(None))  # older bundles load unchanged
    rng = np.random.default_rng(6)
    section = calibrate_cusum(_benign(rng, clips=4, length=60), per_hour=5.0)
    assert validate(_doc_with(section))["alarm"] == section
    for change, message in (({"method": "sprt"}, "alarm.method is 'sprt'; this runtime knows 'cusum'"),
                            ({"h": -1.0}, "alarm.h must lie in"), ({"scale": 0.0}, "alarm.scale must be > 0"),
                            ({"calibration": {"clips": 1}}, "alarm.calibration lacks the key 'benign_frames'")):
        with pytest.raises(BundleError, match=message) as err:
            validate(_doc_with({**section, **change}))
        assert "\n" not in str(err.value)
    with pytest.raises(BundleError, match="alarm must be an object"):
        validate(_doc_with([]))


def test_a_bundle_with_a_cusum_alarm_runs_it_by_default(tmp_path):
    """guard.json's alarm section makes the CUSUM the default; --alarm M/N still overrides it."""
    from edge_guard.bundle import write_guard_json

    video = write_clip(tmp_path / "clip.avi")
    root = make_guard_bundle(tmp_path / "bundle", frame=(48, 64), k=8, threshold=0.99)
    doc = json.loads((root / "guard.json").read_text())
    # benign scores are 1.0 (evidence -1 each); a noise frame scores below 0.99 (+4, the clip)
    doc["alarm"] = {"method": "cusum", "h": 7.0, "reference": 1.0, "scale": 0.001, "drift": 1.0,
                    "clip": 4.0, "target_per_hour": 1.0, "fps": 15.0,
                    "calibration": {"benign_frames": 100, "clips": 2, "extrapolation": "moving-block bootstrap"}}
    write_guard_json(root, doc)
    events = tmp_path / "events.jsonl"
    assert main(["run", "--bundle", str(root), "--source", str(video), "--events", str(events)]) == 1
    records = read_events(events)
    start, frames = records[0], [r for r in records if r["type"] == "frame"]
    assert start["alarm"]["method"] == "cusum" and start["alarm"]["h"] == 7.0
    alarms = [(r["state"], r["frame"], r["method"]) for r in records if r["type"] == "alarm"]
    assert alarms[0] == ("raised", 11, "cusum")  # two noise frames (10, 11): 8 > 7
    assert alarms[1:] == [("cleared", 25, "cusum")]  # held at 7 from 11; frame 20 adds 4
    assert all(0.0 <= r["alarm_stat"] <= 7.0 for r in frames if r["alarm_active"])
    assert frames[9]["alarm_stat"] == 0.0 and frames[-1]["alarm_stat"] == 0.0 and not frames[-1]["alarm_active"]
    other = tmp_path / "mn.jsonl"
    main(["run", "--bundle", str(root), "--source", str(video), "--alarm", "3/5", "--events", str(other)])
    assert read_events(other)[0]["alarm"] == {"method": "m-of-n", "m": 3, "n": 5}
    plain = make_guard_bundle(tmp_path / "plain", frame=(48, 64), k=8, threshold=0.99)
    assert main(["run", "--bundle", str(plain), "--source", str(video), "--alarm", "cusum"]) == 2
