"""Calibrate a bundle's sequential (CUSUM) alarm from benign driving clips; write guard.json.

Scores every frame of every clip in a generated (Cityscapes-layout) folder with the bundle's
guard, in frame order, then picks the alarm level h for at most --alarm-rate false alarms per
hour at --fps checked frames/s (edge_guard.calibration.alarm: benign median and MAD, moving
block bootstrap of the clips for runs of many hours) and writes guard.json's ``alarm``
section into a copy of the bundle at --out (the source bundle is left as it is).

    edge-guard generate --out /tmp/drives --split val --frames 0 --clips 8 --clip-length 60
    python benchmarks/calibrate_alarm.py --clips /tmp/drives --out /tmp/bundle-cusum
    edge-guard run --bundle /tmp/bundle-cusum --source drive.mp4 --events -    # cusum by default
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from edge_guard.bundle import GUARD_FILE, load_bundle, write_guard_json
from edge_guard.calibration.alarm import calibrate_cusum
from edge_guard.errors import UserError, exit_status
from edge_guard.guard import Guard
from edge_guard.paths import DEFAULT_BUNDLE

SUFFIX = "_leftImg8bit.png"


def clip_frames(folder, split: str = "val") -> list[list[Path]]:
    """The clips of a Cityscapes-layout folder: images grouped by (city, sequence), in frame
    order; single-frame sequences (stills) are left out."""
    root = Path(folder) / "leftImg8bit" / split
    if not root.is_dir():
        raise UserError(f"{root} is missing: generate clips with `edge-guard generate --out {folder} "
                        f"--split {split} --frames 0 --clips N --clip-length L`")
    groups = defaultdict(list)
    for path in root.glob(f"*/*{SUFFIX}"):
        city, seq, frame = path.name[:-len(SUFFIX)].rsplit("_", 2)
        groups[(city, seq)].append((int(frame), path))
    clips = [[p for _, p in sorted(g)] for _, g in sorted(groups.items()) if len(g) > 1]
    if not clips:
        raise UserError(f"{root} has no clips (sequences of more than one frame)")
    return clips


def score_clips(guard, clips) -> list[np.ndarray]:
    """(frames,) scores per clip, in frame order."""
    out = []
    for paths in clips:
        scores = []
        for path in paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise UserError(f"cannot read {path}")
            scores.append(guard.check(image).score)
        out.append(np.asarray(scores))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="bundle to calibrate (default: shipped)")
    p.add_argument("--clips", required=True, metavar="DIR", help="generated benign clips (Cityscapes layout)")
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True, metavar="DIR", help="the calibrated copy of the bundle")
    p.add_argument("--alarm-rate", type=float, default=1.0, metavar="PER_HOUR",
                   help="false alarms per hour to allow (default: 1)")
    p.add_argument("--fps", type=float, default=15.0, help="checked frames per second (default: 15)")
    p.add_argument("--block", type=int, default=None, metavar="FRAMES",
                   help="bootstrap block length (default: 2 s of frames, at most the shortest clip)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    args = p.parse_args(argv)

    def run():
        src, out = Path(args.bundle), Path(args.out)
        load_bundle(src)
        if out.resolve() == src.resolve():
            raise UserError("--out must differ from --bundle: the source bundle is left as it is")
        clips = clip_frames(args.clips, args.split)
        with Guard.load(src, backend="onnxruntime") as guard:
            scores = score_clips(guard, clips)
        section = calibrate_cusum(scores, per_hour=args.alarm_rate, fps=args.fps, block=args.block,
                                  seed=args.seed)
        shutil.copytree(src, out, dirs_exist_ok=True)
        doc = json.loads((out / GUARD_FILE).read_text(encoding="utf-8"))
        doc["alarm"] = section
        write_guard_json(out, doc)
        print(json.dumps(section, indent=1))
        return 0

    return exit_status(run, "calibrate_alarm.py")


if __name__ == "__main__":
    sys.exit(main())
