"""What ``edge-guard demo`` prints: the attack, the detections and false alarms, the files."""

from __future__ import annotations

import math

from .demo import TARGETS, THRESHOLD, DemoResult


def _pct(num: int, den: int) -> str:
    return f"{num}/{den} ({100.0 * num / den:.1f} %)" if den else "0/0 (n/a)"


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def report(r: DemoResult) -> list[str]:
    """The lines ``edge-guard demo`` prints: the attack, the table, the files."""
    lines = []
    a, b = r.attacked
    if r.mode != "live":
        how = "replayed from the frames shipped with the package"
    elif r.cached == len(r.attack):  # not "live" then: no attack step ran on this machine
        how = "every attacked frame taken from the cache"
    else:
        how = "attacked live here"
    lines.append(f"attack: DAG on frames {a}-{b} toward {TARGETS[r.target]}; {how} ({r.reason})")
    lines.append("  frame  on target  people/vehicles seen: clean -> attacked  L-inf   RMS  steps")
    for i, rec in sorted(r.attack.items()):
        clean, adv = rec.get("movable_seen_clean"), rec.get("movable_seen_adv")
        seen = "(none in the frame)" if clean is None else f"{clean:6.1%} -> {adv:6.1%}"
        lines.append(f"  {i:5d}  {rec['success']:9.1%}  {seen:>37s}  {rec['linf']:5.0f}  "
                     f"{rec['l2']:4.2f}  {rec['iterations']:5d}")
    success = _mean(rec["success"] for rec in r.attack.values())
    reached = sum(rec["success"] >= THRESHOLD for rec in r.attack.values())
    counted = " / ".join(sorted({rec.get("counted", "all pixels") for rec in r.attack.values()}))
    if success is not None:
        short = reached < len(r.attack)
        lines.append(f"  mean pixel success {success:.1%} (of {counted}); {reached} of {len(r.attack)} "
                     f"frame(s) reached DAG's goal of {THRESHOLD:.0%}"
                     + (" (the others stopped at the step limit: a weaker attack)" if short else ""))
    lines.append("  L-inf and RMS of the perturbation in 0..255 levels; 'seen': true person/vehicle "
                 "pixels the model calls a person or vehicle")
    if r.mode == "live":
        if r.cached == len(r.attack):
            lines.append("  attack time: none, every frame came from the cache")
        else:
            extra = f" ({r.cached} frame(s) from the cache)" if r.cached else ""
            lines.append(f"  attack time: {r.attack_seconds:.1f} s{extra}")
    c, s = r.counts, r.summary
    lines.append("")
    lines.append(f"{'':28s}{'flagged / frames':>22s}")
    lines.append(f"{'benign frames (false alarms)':28s}{_pct(c['benign_flagged'], c['benign']):>22s}")
    lines.append(f"{'attacked frames (detections)':28s}{_pct(c['attacked_flagged'], c['attacked']):>22s}")
    fps = s.get("fps_checked")
    lines.append(f"{'achieved FPS':28s}{(f'{fps:.1f} frames/s' if fps else 'n/a'):>22s}")
    for label, key in (("latency p50 / p99", "latency_ms"), ("  of which checking", "check_ms")):
        ms = s.get(key)
        if ms:
            text = f"{ms['p50']:.1f} / {ms['p99']:.1f} ms"
            lines.append(f"{label:28s}{text:>22s}")
    lines.append(f"{'alarms raised':28s}{s.get('alarms', 0):>22d}")
    lines.append("")
    lines.append(f"events:          {r.paths['events']}")
    lines.append(f"annotated video: {r.paths['annotated']}")
    lines.append(f"strip:           {r.paths['strip']}")
    lines.append(f"input clip:      {r.paths['video']} ("
                 + ("lossless FFV1: the perturbations reach the guard intact; a lossy codec "
                    "would wash much of them out" if r.video_lossless else "NOT lossless") + ")")
    for note in r.notes:
        lines.append(f"note: {note}")
    lines.append(f"demo took {r.seconds:.0f} s")
    return lines
