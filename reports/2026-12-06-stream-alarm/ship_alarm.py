"""Write a bundle's sequential alarm from this report's 60 calibration drives (the shipped
bundle's, by default): the CUSUM for 0.5 false alarms an hour at 15 frames/s, K = 5.

    python reports/2026-12-06-stream-alarm/ship_alarm.py [BUNDLE_DIR]
"""
import gzip
import json
import sys
from pathlib import Path

from edge_guard.bundle import load_bundle
from edge_guard.calibration.alarm_calibrate import alarm_section, write_alarm
from edge_guard.paths import DEFAULT_BUNDLE

HERE = Path(__file__).resolve().parent
SOURCE = ("reports/2026-12-06-stream-alarm/cal.jsonl.gz: benchmarks/drive_scores.py --split val "
          "--seed 31 --drives 60 (90 frames each, 512x1024)")


def shipped_section(bundle_dir=DEFAULT_BUNDLE) -> dict:
    bundle = load_bundle(bundle_dir)
    drives = [json.loads(line) for line in gzip.open(HERE / "cal.jsonl.gz", "rt")]
    if any(d["k"] != bundle.k for d in drives):
        sys.exit(f"the drives were scored at K={drives[0]['k']}, the bundle checks K={bundle.k}")
    return alarm_section([d["scores"] for d in drives], bundle.threshold, bundle.k, per_hour=0.5,
                         fps=15.0, seed=0, source=SOURCE)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BUNDLE
    section = shipped_section(target)
    write_alarm(target, section)
    print(f"{target}/guard.json: CUSUM h={section['h']:.3f} for {section['target_per_hour']:g}/h at K={section['k']}")
