"""Add thresholds for more K to a calibrated bundle (``edge-guard calibrate --extend``),
without exporting or recalibrating it.

The bundle's guard.json records how it was calibrated (provenance.calibration: the settings,
--every among them, the data folder or video, the seed, the source checkpoint's sha256) and
which frames it used (the evaluation's first and last frame). The same frames are scored
again with the same streams at each new K (:mod:`.k_thresholds`) and each new K gets its
threshold by the same rule.
The bundle's own K is scored alongside as a check: its threshold, clean and under each
condition, must come out exactly as recorded, or nothing is written (the frames, the model
or the scoring code would differ from the calibration's, and the new thresholds would not
be comparable with the recorded one). The bundle's own threshold is never changed.
"""

from __future__ import annotations

import copy
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

from edge_guard import __version__
from edge_guard.bundle import load_bundle, write_guard_json
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import DataError, UserError

from . import k_thresholds as kt
from .calibrate import STREAM_CALIBRATION, STREAM_HOLDOUT, CalibrationSettings, _condition_scores, _score_set
from .image_sets import benign_sets

#: Settings stored as lists in guard.json and held as tuples by CalibrationSettings.
_TUPLES = ("frame_size", "conditions", "ks")


def recorded_settings(doc: dict, root) -> CalibrationSettings:
    """The CalibrationSettings guard.json's provenance records; UserError when it records none."""
    cal = doc["provenance"].get("calibration")
    if not isinstance(cal, dict) or not isinstance(cal.get("settings"), dict):
        raise UserError(f"{root}/guard.json records no calibration settings (provenance.calibration): "
                        "recalibrate it with `edge-guard calibrate --ks` instead of --extend")
    known = {f.name for f in fields(CalibrationSettings)}
    values = {k: (tuple(v) if k in _TUPLES and isinstance(v, list) else v)
              for k, v in cal["settings"].items() if k in known}
    s = CalibrationSettings(**values)
    det = doc["detector"]
    if (s.k, s.method, s.statistic) != (det["k"], doc["detector"]["method"], det.get("statistic", "miou")):
        raise UserError(f"{root}/guard.json's calibration settings (K={s.k}, {s.method}, {s.statistic}) differ "
                        "from its detector: recalibrate it with `edge-guard calibrate --ks`")
    return s


def _check_checkpoint(checkpoint: Path, doc: dict) -> None:
    want = ((doc["provenance"]["calibration"].get("source_checkpoint") or {}).get("sha256"))
    if not checkpoint.is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist")
    got = sha256_file(checkpoint)
    if want and got != want:
        raise UserError(f"{checkpoint} is not the checkpoint the bundle was calibrated from (sha256 {got[:12]}... "
                        f"instead of {want[:12]}...): pass that one with --model")


def _check_frames(doc: dict, cal, held) -> None:
    """The frames found now must be the ones the evaluation recorded (same first and last)."""
    ev = doc["provenance"].get("evaluation") or {}
    for name, images in (("calibration", cal), ("holdout", held)):
        rec = ev.get(name)
        if rec is None or images is None:
            continue
        if (images.names[0], images.names[-1]) != (rec.get("first_frame"), rec.get("last_frame")):
            raise DataError(f"the {name} frames found now run {images.names[0]}..{images.names[-1]}, but the "
                            f"bundle was calibrated on {rec.get('first_frame')}..{rec.get('last_frame')}: "
                            "pass the calibration's data folder or video with --data")


def _verify(own: dict, det: dict, clean_only: bool = False) -> None:
    """DataError unless the rescored own K reproduces the recorded thresholds exactly
    (``clean_only``: the clean frames' threshold, checked before the long condition passes)."""
    rule = det["threshold_rule"]
    recorded = {"clean threshold": rule.get("clean_threshold", det["threshold"])}
    found = {"clean threshold": own["clean_threshold"]}
    if not clean_only:
        recorded["threshold"], found["threshold"] = det["threshold"], own["threshold"]
        recorded.update({f"condition {c}": v["threshold"] for c, v in (rule.get("conditions") or {}).items()})
        found.update({f"condition {c}": v for c, v in own["conditions"].items()})
    for what, value in recorded.items():
        if found.get(what) != value:
            raise DataError(f"rescoring the bundle's own K={det['k']} gives {what} {found.get(what)!r}, but "
                            f"guard.json records {value!r}: the frames, the model or the scoring code differ "
                            "from the calibration's; recalibrate with `edge-guard calibrate --ks` instead")


def _unchanged(bundle, doc: dict) -> dict:
    """guard.json as it is now; DataError when its model or detector changed while scoring."""
    fresh = load_bundle(bundle.root).doc
    if fresh["model"] != doc["model"] or fresh["detector"] != doc["detector"]:
        raise DataError(f"{bundle.root}/guard.json changed while its frames were scored (another calibration?): "
                        "nothing written; run --extend again")
    return copy.deepcopy(fresh)


def extend_bundle(bundle_dir, ks, checkpoint, data=None, arch: str | None = None, device: str = "cpu",
                  progress: bool = True, log=print) -> dict:
    """Add thresholds for ``ks`` (None: the default ladder for the bundle's K) to the bundle
    in ``bundle_dir``; the new guard.json document.

    ``checkpoint``: the model the bundle was exported from (checked against its sha256; not
    used for a bundle wrapped from the user's ONNX, which is scored with its own graphs);
    ``data``: the calibration's data folder or video (default: the one guard.json records)."""
    from .models.checkpoint import load_segmenter
    from .scoring import torch_segment

    bundle = load_bundle(bundle_dir)
    doc = copy.deepcopy(bundle.doc)
    s = recorded_settings(doc, bundle.root)
    ks = kt.default_ks(bundle.k) if ks is None else ks
    kt.check_ks(ks)
    have = bundle.thresholds_by_k
    new = sorted(set(int(k) for k in ks) - set(have))
    if not new:
        log(f"{bundle.root} already holds thresholds for K={','.join(map(str, sorted(have)))}: nothing to add")
        return doc
    from_onnx = "source_onnx" in doc["provenance"]["calibration"]
    if not from_onnx:
        checkpoint = Path(checkpoint).expanduser()
        _check_checkpoint(checkpoint, doc)
    data = Path(data if data is not None else doc["provenance"]["calibration"]["data"]["data"]).expanduser()
    cal, held = benign_sets(data, s.split, s.calib_frames, s.holdout_frames, s.every)  # a video: its N
    _check_frames(doc, cal, held)
    log(f"adding K={','.join(map(str, new))} to {bundle.root}: rescoring its {len(cal)} calibration frames"
        f"{f' under {len(s.conditions)} conditions' if s.conditions else ''}"
        f"{f' and {len(held)} held-out frames' if held else ''}, with K={bundle.k} as the check")

    if from_onnx:  # the user's own graph: scored with the bundle's wrapped graphs, as it was calibrated
        from .model_source import bundle_segment

        h, w = doc["frame"]["height"], doc["frame"]["width"]
        segment = bundle_segment(bundle.root, {"model": doc["model"], "segment": {
            "file": doc["model"]["frame_graph"]["file"], "frame_size": [h, w]}})
    else:
        segmenter, _ = load_segmenter(checkpoint, arch=arch)
        segment = torch_segment(segmenter, device)
    scored = tuple(sorted(set(new) | {bundle.k}))
    cal_by_k = _score_set(bundle, segment, cal, s.seed, STREAM_CALIBRATION, progress, scored)
    det = doc["detector"]
    _verify(kt.k_thresholds({bundle.k: cal_by_k[bundle.k]}, {}, s.rule, s.fpr)[bundle.k], det, clean_only=True)
    conditions_by_k = _condition_scores(bundle, segment, cal, s, progress, scored) if s.conditions else {}
    held_by_k = _score_set(bundle, segment, held, s.seed, STREAM_HOLDOUT, progress, scored) if held else {}
    by_k = kt.k_thresholds(cal_by_k, conditions_by_k, s.rule, s.fpr)
    _verify(by_k[bundle.k], det)

    # Scoring takes long: guard.json is read again and only the new keys are written into it,
    # so that what another tool wrote meanwhile (an alarm section, say) is kept.
    doc = _unchanged(bundle, doc)
    det = doc["detector"]
    det["thresholds_by_k"] = kt.table({**{k: {"threshold": t} for k, t in have.items()}, **by_k})
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    how = (f"edge-guard calibrate --extend: {kt.SCORING}; the bundle's K={bundle.k} was rescored alongside "
           "and reproduced its recorded thresholds (clean and under each condition) exactly; "
           "adversarial sets were not rescored")
    added = kt.record(by_k, cal_by_k, held_by_k, {}, s, how=how)
    previous = doc["provenance"].get("thresholds_by_k")
    if isinstance(previous, dict) and isinstance(previous.get("by_k"), dict):
        added["by_k"] = {**previous["by_k"], **added["by_k"]}
        added["ks"] = sorted(int(k) for k in added["by_k"])
    added["extended"] = (list(previous.get("extended", [])) if isinstance(previous, dict) else []) + [
        {"added_ks": new, "verified_k": bundle.k, "created": now, "edge_guard_version": __version__,
         "data": str(data.resolve()), "device": str(device)}]
    doc["provenance"]["thresholds_by_k"] = added
    write_guard_json(bundle.root, doc)
    return doc
