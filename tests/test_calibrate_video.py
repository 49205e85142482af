"""`edge-guard calibrate --data VIDEO --every N`: every N-th frame of a benign drive, decoded in
order, scored as the same frames in an image folder would be, recorded for --extend."""

import json
import shutil

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_guard.bundle import load_bundle  # noqa: E402
from edge_guard.calibration.image_sets import benign_sets  # noqa: E402
from edge_guard.calibration.data import video  # noqa: E402
from edge_guard.calibration.models import build_segmenter  # noqa: E402
from edge_guard.calibration.models.checkpoint import save_checkpoint  # noqa: E402
from edge_guard.scenes import render_clip  # noqa: E402
from cli_run import run_cli  # noqa: E402

FRAME, PATCH, CALIB, HOLDOUT = (128, 256), 64, 10, 2
EVERY, LENGTH = 3, 40  # 14 frames at --every 3, 12 used: frames 0, 3, ..., 33


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate_video")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_segmenter("edge_small", width=16, dilations=(1, 2)))
    drive = root / "drive.avi"
    writer = cv2.VideoWriter(str(drive), cv2.VideoWriter_fourcc(*"FFV1"), 15.0, (FRAME[1], FRAME[0]))
    assert writer.isOpened()
    for image, _ in render_clip(17, LENGTH, FRAME):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    # The frames calibration should use, as OpenCV decodes them in order, in an image folder.
    folder = root / "extracted"
    folder.mkdir()
    cap = cv2.VideoCapture(str(drive))
    for i in range(LENGTH):
        ok, frame = cap.read()
        assert ok
        if i % EVERY == 0:
            cv2.imwrite(str(folder / f"{i:06d}.png"), frame)
    cap.release()
    (root / "junk.mp4").write_bytes(b"not a video at all\n" * 10)
    empty = cv2.VideoWriter(str(root / "empty.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 15.0, (64, 32))
    empty.release()  # a valid file with no frames
    return {"root": root, "ckpt": ckpt, "drive": drive, "folder": folder}


def _args(ws, data, out, *extra):
    return ["calibrate", "--model", ws["ckpt"], "--data", data, "--out", out, "--frame", f"{FRAME[0]}x{FRAME[1]}",
            "--patch", PATCH, "--k", "3", "--ks", "none", "--fpr", "0.1", "--calib-frames", CALIB,
            "--holdout-frames", HOLDOUT, "--conditions", "dark0.25", "--seed", "3", "--quiet", *extra]


@pytest.fixture(scope="module")
def from_video(workspace):
    out = workspace["root"] / "video_bundle"
    rc, stdout, stderr = run_cli(_args(workspace, workspace["drive"], out, "--every", EVERY))
    assert rc == 0, stderr
    return load_bundle(out), stdout


def test_the_bundle_records_the_video_frames_it_used(workspace, from_video):
    bundle, stdout = from_video
    ev = bundle.doc["provenance"]["evaluation"]
    assert (ev["calibration"]["frames"], ev["calibration"]["first_frame"], ev["calibration"]["last_frame"]) == \
        (CALIB, "drive.avi#000000", f"drive.avi#{(CALIB - 1) * EVERY:06d}")
    assert (ev["holdout"]["frames"], ev["holdout"]["first_frame"], ev["holdout"]["last_frame"]) == \
        (HOLDOUT, f"drive.avi#{CALIB * EVERY:06d}", f"drive.avi#{(CALIB + HOLDOUT - 1) * EVERY:06d}")
    cal = bundle.doc["provenance"]["calibration"]
    assert cal["settings"]["every"] == EVERY
    assert cal["data"] == {"data": str(workspace["drive"].resolve()), "layout": "video", "every": EVERY,
                           "video_frames": LENGTH, "first": 0}
    assert (f"{CALIB} calibration + {HOLDOUT} held-out benign frames: the first {CALIB + HOLDOUT} of every 3rd "
            f"frame (--every 3) of video {workspace['drive'].resolve()} from its start: frames 0..33 of the "
            f"{LENGTH} it reports") in stdout


def test_a_video_scores_as_its_frames_in_an_image_folder(workspace, from_video):
    out = workspace["root"] / "folder_bundle"
    rc, _, stderr = run_cli(_args(workspace, workspace["folder"], out))
    assert rc == 0, stderr
    a, b = from_video[0].doc, load_bundle(out).doc
    assert a["detector"]["threshold"] == b["detector"]["threshold"]
    assert a["detector"]["threshold_rule"] == b["detector"]["threshold_rule"]   # the condition's too
    for name in ("calibration", "holdout"):
        drop = ("first_frame", "last_frame")
        assert {k: v for k, v in a["provenance"]["evaluation"][name].items() if k not in drop} == \
            {k: v for k, v in b["provenance"]["evaluation"][name].items() if k not in drop}


def test_frames_are_decoded_in_one_pass_without_seeking(workspace, monkeypatch):
    calls, real = [], cv2.VideoCapture

    class Capture:
        def __init__(self, path):
            self._cap = real(path)

        def __getattr__(self, name):
            calls.append(name)
            return getattr(self._cap, name)

    monkeypatch.setattr(video.cv2, "VideoCapture", Capture)
    cal, held = benign_sets(workspace["drive"], "val", 4, 2, every=EVERY)
    calls.clear()
    frames = list(held.images())
    assert calls.count("grab") == 4 * EVERY + EVERY - 1 and calls.count("read") == 2 and "set" not in calls
    cap = cv2.VideoCapture(str(workspace["drive"]))
    for i in range(4 * EVERY + EVERY + 1):
        ok, expected = cap.read()
        if i in (4 * EVERY, 5 * EVERY):
            np.testing.assert_array_equal(frames[i // EVERY - 4], cv2.cvtColor(expected, cv2.COLOR_BGR2RGB))
    cap.release()
    assert held.names == ["drive.avi#000012", "drive.avi#000015"] and cal.paths == [0, 3, 6, 9]
    assert frames[0].dtype == np.uint8 and frames[0].shape == (*FRAME, 3)


@pytest.mark.parametrize("data, extra, message", [
    ("nowhere.mp4", [], "video {root}/nowhere.mp4 does not exist"),
    ("junk.mp4", [], "cannot open video {root}/junk.mp4: the file is unreadable"),
    ("empty.avi", [], "video {root}/empty.avi has no frames OpenCV can decode"),
    ("drive.avi", ["--every", "4"], "video {root}/drive.avi gives 10 frames at --every 4 (40 frames in all), but "
                                    "calibration needs 10 + 2 held out = 12: pass --every 3 or less"),
    ("drive.avi", ["--every", "1", "--holdout-frames", "31"], "gives 40 frames at --every 1 (40 frames in all), "
                                                             "but calibration needs 10 + 31 held out = 41: pass "
                                                             "smaller --calib-frames/--holdout-frames (at most 40"),
    ("drive.avi", ["--every", "0"], "--every must be at least 1, got 0"),
    ("extracted", ["--every", "2"], "--every takes every N-th frame of a video, but {root}/extracted is a folder"),
])
def test_unusable_videos_and_every_exit_2_in_one_line(workspace, tmp_path, data, extra, message):
    root = workspace["root"]
    out = tmp_path / "bundle"
    rc, _, stderr = run_cli(_args(workspace, root / data, out, *extra))
    assert rc == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("edge-guard calibrate: error:")
    assert message.format(root=root) in stderr
    assert not out.exists()


def test_extend_rereads_the_video_the_bundle_records(workspace, from_video, tmp_path):
    out = tmp_path / "extended"
    shutil.copytree(from_video[0].root, out)
    before = json.loads((out / "guard.json").read_text())
    rc, _, stderr = run_cli(["calibrate", "--out", out, "--extend", "--every", "2", "--model", workspace["ckpt"]])
    assert rc == 2 and "leave out --every" in stderr and stderr.count("\n") == 1
    # Another video: its frames are named after it, so they are not the recorded ones.
    other = tmp_path / "other.avi"
    shutil.copyfile(workspace["drive"], other)
    rc, _, stderr = run_cli(["calibrate", "--out", out, "--extend", "--ks", "2", "--model", workspace["ckpt"],
                             "--data", other, "--quiet"])
    assert rc == 2 and "other.avi#000000..other.avi#000027" in stderr and stderr.count("\n") == 1
    rc, stdout, stderr = run_cli(["calibrate", "--out", out, "--extend", "--ks", "2", "--model", workspace["ckpt"],
                                  "--quiet"])
    assert rc == 0, stderr
    bundle = load_bundle(out)
    assert list(bundle.detector["thresholds_by_k"]) == ["2", "3"] and "K=3 keeps threshold" in stdout
    assert bundle.threshold == before["detector"]["threshold"]
    assert bundle.doc["provenance"]["thresholds_by_k"]["extended"][0]["data"] == str(workspace["drive"].resolve())
