"""The plan's estimate against the attack time the cells took: the plan a run printed (its
log) beside the seconds its manifests recorded for the frames that run attacked.

    python reports/2026-12-06-eval-grid/plan_accuracy.py plan_printed.txt /work/grid23/cpu256
"""
import json
import re
import sys
from pathlib import Path

log = Path(sys.argv[1]).read_text().replace("\r", "\n")
out = Path(sys.argv[2])
planned = actual = 0.0
for m in re.finditer(r"^  (\S+)\s+(\d+)/(\d+)\s+(<=)?(\d+)\s+([\d.]+)\s+([\d.]+)$", log, re.M):
    cell, todo, _, _, steps, per_step, _ = m.groups()
    todo = int(todo)
    if todo == 0:
        continue
    folder = next((out / "attacks").glob(f"{cell}_*"))  # <cell>_<digest of its settings>
    recs = list(json.loads((folder / "manifest.json").read_text())["images"].values())[-todo:]
    took = sum(r["seconds"] for r in recs)
    at_iters = sum(r["iterations"] for r in recs) * float(per_step)  # the steps the attacks did take
    planned, actual = planned + at_iters, actual + took
    print(f"{cell:26s} {todo} frames: plan {todo * int(steps) * float(per_step):5.0f} s at every step, "
          f"{at_iters:5.0f} s at the steps taken; took {took:5.0f} s ({took / at_iters:.2f}x)")
print(f"all: plan {planned:.0f} s, took {actual:.0f} s ({actual / planned:.2f}x)")
