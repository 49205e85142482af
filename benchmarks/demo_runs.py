"""Collect repeated `edge-guard demo` runs into one JSON: per run and frame the score, the
per-patch scores and the verdict, plus the totals issue 22 asks for (attacked frames flagged,
benign frames flagged, alarms raised outside the attack).

    python benchmarks/demo_runs.py /work/eval-22/demo{1..10} --attacked 17-22 \
        --json reports/2026-12-06-frame-detector/demo_runs.json

Each DIR is a demo's --out folder (its events.jsonl is read; nothing is re-run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_run(folder: Path) -> dict:
    """One demo run: its bundle settings, frames and alarms, from DIR/events.jsonl."""
    path = folder / "events.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: pass the --out folders of `edge-guard demo` runs")
    start, frames, alarms = {}, [], []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "start":
            start = event
        elif event["type"] == "frame":
            frames.append({"frame": event["frame"], "score": round(event["score"], 5),
                           "adversarial": event["adversarial"],
                           "scores": [round(s, 5) for s in event.get("scores", [])]})
        elif event["type"] == "alarm" and event["state"] == "raised":
            alarms.append(event["frame"])
    return {"folder": str(folder), "detector": start.get("detector"), "statistic": start.get("statistic"),
            "k": start.get("k"), "threshold": start.get("threshold"), "frames": frames, "alarms_raised_at": alarms}


def summarise(runs: list[dict], attacked: range, window: int = 5) -> dict:
    """Totals over runs. An alarm is benign when its raising frame's window of the last
    ``window`` frames holds no attacked frame (the 3-of-5 rule cannot have counted one)."""
    att = [f for r in runs for f in r["frames"] if f["frame"] in attacked]
    ben = [f for r in runs for f in r["frames"] if f["frame"] not in attacked]
    benign_alarms = [(i + 1, a) for i, r in enumerate(runs) for a in r["alarms_raised_at"]
                     if not any(a - window < f <= a for f in attacked)]
    return {"runs": len(runs),
            "attacked_flagged": sum(f["adversarial"] for f in att), "attacked_frames": len(att),
            "benign_flagged": sum(f["adversarial"] for f in ben), "benign_frames": len(ben),
            "benign_alarms": benign_alarms,
            "attacked_score_range": [min(f["score"] for f in att), max(f["score"] for f in att)] if att else None,
            "benign_score_range": [min(f["score"] for f in ben), max(f["score"] for f in ben)] if ben else None}


def parse_range(text: str) -> range:
    try:
        lo, _, hi = text.partition("-")
        return range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST frame numbers such as 17-22, got {text!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path, help="`edge-guard demo --out` folders")
    ap.add_argument("--attacked", type=parse_range, default=parse_range("17-22"),
                    help="attacked frames, FIRST-LAST (default: 17-22, the demo's)")
    ap.add_argument("--json", type=Path, help="write the runs and the totals here")
    args = ap.parse_args(argv)
    runs = [read_run(d) for d in args.dirs]
    total = summarise(runs, args.attacked)
    print(f"{total['runs']} runs: attacked flagged {total['attacked_flagged']}/{total['attacked_frames']}, "
          f"benign flagged {total['benign_flagged']}/{total['benign_frames']}, "
          f"benign alarms {len(total['benign_alarms'])}; attacked scores {total['attacked_score_range']}, "
          f"benign {total['benign_score_range']}")
    if args.json:
        doc = {"attacked": [args.attacked.start, args.attacked.stop - 1], "summary": total, "runs": runs}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
