"""First reading for issue 25: M-of-N vs CUSUM false alarms on benign generated drives."""
import json, time
from edge_guard.alarms import AlarmWindow, SequentialAlarm
from edge_guard.calibration.alarm import calibrate_cusum
from edge_guard.calibration.alarm_calibrate import score_clips
from edge_guard.calibration.data.clips import clip_paths
from edge_guard.guard import Guard

# The first reading ran the moving-block bootstrap with k = 0.5, c = 4 (then the defaults), on
# drives made before the generator's ego braked (reports/2026-12-06-stream-alarm, section 3).
t0 = time.time()
with Guard.load(backend="onnxruntime") as guard:
    s_cal = score_clips(guard, clip_paths("drives-cal", "val"), progress=False)
    s_test = score_clips(guard, clip_paths("drives-test", "test"), progress=False)
print("scored", sum(map(len, s_cal)) + sum(map(len, s_test)), "frames in", round(time.time() - t0), "s")
out = {"fps": 15.0, "scores": {"cal": [s.tolist() for s in s_cal], "test": [s.tolist() for s in s_test]}}
threshold = 0.3323273658752441  # the shipped bundle's
rows = []
for rate in (1.0, 10.0):
    section = calibrate_cusum(s_cal, per_hour=rate, fps=15.0, drift=0.5, clip=4.0,
                              extrapolation="bootstrap", seed=0)
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
