"""Issue 25's figures: false alarms per hour and detection delay of the stream alarms.

Reads the per-frame scores of benign drives (benchmarks/drive_scores.py: --cal to calibrate,
--test held out) and of attacked windows (benchmarks/attacked_windows.py), calibrates the
sequential (CUSUM) alarm on --cal for each --rates target (edge_guard.calibration.alarm), and
replays every alarm through the runtime's own objects:

1. the extrapolation checked where it can be: CUSUMs with k = 0.5, c = 4 (which, unlike the
   defaults, reach rates high enough to count on minutes of held-out driving) calibrated for
   --check-rates against what the held-out drives raise;
2. false alarms on the held-out drives (Poisson 95% intervals), and the rate on --sim-hours
   simulated from the score model fitted to the held-out drives (an extrapolation that never
   saw the calibration drives; the same for every alarm, the 3-of-5 window included);
3. detection delay (frames from onset to the raise, 0 = the onset frame) for windows of
   10, 30 and 100 attacked frames, per attack mode;
4. --stills: the same delays with the attacked frames' scores drawn from still-frame attack
   sets (reports/2026-12-06-frame-detector/scores.json.gz), spliced into the held-out drives:
   more attacks than the windows hold, at the cost of the time structure of a real attack.

    python benchmarks/alarm_report.py --cal cal.jsonl --test test.jsonl --windows windows.jsonl \\
        --json alarm.json --md alarm.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

from edge_guard.alarms import AlarmWindow, SequentialAlarm
from edge_guard.bundle import load_bundle
from edge_guard.calibration.alarm import calibrate_cusum
from edge_guard.calibration.alarm_eval import count_alarms, detection_delay, false_alarms, window_scores
from edge_guard.calibration.score_model import fit_score_model, simulate_scores
from edge_guard.paths import DEFAULT_BUNDLE

LENGTHS = (10, 30, 100)


def read_lines(path) -> list:
    """JSON Lines, plain or gzipped (.gz)."""
    path = Path(path)
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def delays(make, drives, threshold, length) -> dict:
    """Delay summary over attacked drives [(scores, onset)] for one alarm and window length."""
    rows = [detection_delay(make, s, threshold, onset, length) for s, onset in drives]
    got = [r["delay"] for r in rows if r["delay"] is not None]
    return {"windows": len(rows), "detected": len(got), "missed": len(rows) - len(got),
            "max": max(got) if got else None, "median": float(np.median(got)) if got else None,
            "within_3": sum(d <= 3 for d in got), "active_at_onset": sum(r["active_at_onset"] for r in rows),
            "delays": [r["delay"] for r in rows]}


def record_delays(out: dict, makers: dict, label: str, drives, threshold: float, length: int) -> None:
    """Every alarm's delays on ``drives`` into out[key] for key "<label> <length> <alarm>"."""
    for name, make in makers.items():
        d = delays(make, drives, threshold, length)
        out[f"{label} {length} {name}"] = d
        print(f"{label} {length:3d} frames, {name}: {d['detected']}/{d['windows']} detected, delay "
              f"median {d['median']}, max {d['max']}, within 3: {d['within_3']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cal", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--windows", action="append", default=[], help="attacked windows (repeatable)")
    p.add_argument("--stills", default=None, help="scores.json.gz of the frame detector report")
    p.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--rates", default="0.5,1,10", help="false alarms per hour to calibrate for")
    p.add_argument("--check-rates", default="60,600", help="rates high enough to count on --test")
    p.add_argument("--onset", type=int, default=20, help="onset of the spliced still attacks")
    p.add_argument("--sim-hours", type=float, default=100.0, help="hours simulated per alarm")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    threshold = load_bundle(args.bundle).threshold
    cal = [np.array(r["scores"]) for r in read_lines(args.cal)]
    test = [np.array(r["scores"]) for r in read_lines(args.test)]
    out = {"threshold": threshold, "fps": args.fps, "cal_frames": int(sum(map(len, cal))),
           "test_frames": int(sum(map(len, test))), "alarms": {}, "check": [], "windows": {}, "stills": {}}
    print(f"calibration drives {len(cal)} ({out['cal_frames']} frames), held-out {len(test)} "
          f"({out['test_frames']} frames, {out['test_frames'] / args.fps / 60:.1f} min)")

    for rate in [float(r) for r in args.check_rates.split(",") if r]:
        for how in ("model", "bootstrap"):
            sec = calibrate_cusum(cal, per_hour=rate, fps=args.fps, drift=0.5, clip=4.0, extrapolation=how)
            fa = false_alarms(lambda: SequentialAlarm.from_section(sec), test, threshold, args.fps)
            out["check"].append({"target_per_hour": rate, "extrapolation": how, "h": sec["h"], **fa})
            print(f"check {how:9s} target {rate:g}/h: h={sec['h']:.2f}, held-out {fa['alarms']} alarms = "
                  f"{fa['per_hour']:.0f}/h [{fa['per_hour_ci95'][0]:.0f}, {fa['per_hour_ci95'][1]:.0f}]")

    makers = {"3/5": lambda: AlarmWindow(3, 5)}
    for rate in [float(r) for r in args.rates.split(",") if r]:
        sec = calibrate_cusum(cal, per_hour=rate, fps=args.fps, threshold=threshold)
        name = f"cusum {rate:g}/h"
        makers[name] = (lambda s: lambda: SequentialAlarm.from_section(s))(sec)
        out["alarms"][name] = sec
    held_model = fit_score_model(test)
    sim = simulate_scores(held_model, int(args.sim_hours * 3600 * args.fps), np.random.default_rng(1))
    out["held_out_model"] = {k: v for k, v in held_model.items() if k != "quantiles"}
    for name, make in makers.items():
        fa = false_alarms(make, test, threshold, args.fps)
        fa["simulated_per_hour"] = count_alarms(make(), sim, threshold) / args.sim_hours
        out["alarms"].setdefault(name, {})["held_out"] = fa
        print(f"{name}: held-out {fa['alarms']} false alarms in {fa['hours'] * 60:.1f} min = "
              f"{fa['per_hour']:.1f}/h [{fa['per_hour_ci95'][0]:.1f}, {fa['per_hour_ci95'][1]:.1f}]; "
              f"{fa['simulated_per_hour']:.2f}/h over {args.sim_hours:g} h from the held-out model")

    windows = [r for path in args.windows for r in read_lines(path)]
    if windows:
        for mode in sorted({r["mode"] for r in windows}):
            recs = [r for r in windows if r["mode"] == mode]
            for length in LENGTHS:
                drives = [(window_scores(r["benign"], r["attacked"], r["onset"], length), r["onset"])
                          for r in recs if r["window"] >= length]
                record_delays(out["windows"], makers, mode, drives, threshold, length)

    if args.stills:
        sets = json.load(gzip.open(args.stills))["scores"]["attacks"]
        rng = np.random.default_rng(0)
        for set_name, rec in sets.items():
            att = np.array(rec["frame"]["miou-min>=64"]["5"])
            length = 10
            drives = [(window_scores(s, rng.choice(att, length), args.onset, length), args.onset)
                      for s in test if s.size >= args.onset + length]
            record_delays(out["stills"], makers, set_name, drives, threshold, length)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
