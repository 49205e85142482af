"""First reading for issue 25: M-of-N vs CUSUM false alarms on benign generated drives."""
import json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # load_benchmark
from benchmark_scripts import load_benchmark
from edge_guard.alarms import AlarmWindow, SequentialAlarm
from edge_guard.calibration.alarm import calibrate_cusum
from edge_guard.guard import Guard

cal = load_benchmark("calibrate_alarm")
t0 = time.time()
with Guard.load(backend="onnxruntime") as guard:
    s_cal = cal.score_clips(guard, cal.clip_frames("drives-cal", "val"))
    s_test = cal.score_clips(guard, cal.clip_frames("drives-test", "test"))
print("scored", sum(map(len, s_cal)) + sum(map(len, s_test)), "frames in", round(time.time() - t0), "s")
out = {"fps": 15.0, "scores": {"cal": [s.tolist() for s in s_cal], "test": [s.tolist() for s in s_test]}}
threshold = 0.3323273658752441  # the shipped bundle's
rows = []
for rate in (1.0, 10.0):
    section = calibrate_cusum(s_cal, per_hour=rate, fps=15.0, seed=0)
    out[f"cusum_{rate:g}_per_hour"] = section
    for name, seqs in (("cal", s_cal), ("test", s_test)):
        raised = 0
        for s in seqs:
            a = SequentialAlarm.from_section(section)
            raised += sum(a.update(v) == "raised" for v in s)
        rows.append({"alarm": f"cusum {rate:g}/h (h={section['h']:.2f})", "clips": name, "raised": raised})
for name, seqs in (("cal", s_cal), ("test", s_test)):
    raised = flagged = 0
    for s in seqs:
        a = AlarmWindow(3, 5)
        raised += sum(a.update(v < threshold) == "raised" for v in s)
        flagged += int((s < threshold).sum())
    frames = sum(map(len, seqs))
    rows.append({"alarm": "3/5", "clips": name, "raised": raised, "flagged": flagged, "frames": frames})
out["rows"] = rows
json.dump(out, open("alarm25.json", "w"))
for r in rows: print(r)
