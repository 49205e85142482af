"""OUT/manifest.json of ``edge-guard attack`` (see run.py for the folder): the settings, a
summary and one record per finished frame, rewritten after every frame so a run resumes.

A record counts for the frame with its sha256: a frame changed in place since is attacked
anew, the same frame under another path (the data moved) resumes, and another frame under a
record's name is refused. A run with other settings into the same folder is refused.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError

FORMAT = "edge-guard-attack"
VERSION = 1


def _jsonable(obj):
    return json.loads(json.dumps(obj))


class Manifest:
    """OUT/manifest.json: the settings and one record per finished frame."""

    def __init__(self, out: Path, settings: dict, free=()):
        """``free``: settings that may differ from the folder's (the newest run's are kept)."""
        self.path = out / "manifest.json"
        self.settings = _jsonable(settings)
        self.free = set(free)
        self.images = {}
        self.changed = False  # records updated by check(): write before attacking
        self.previous = {}  # the folder's settings before this run ({} for a new folder)
        if self.path.exists():
            self._resume()

    def _resume(self):
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path} is not a readable manifest ({type(exc).__name__}): "
                            "remove it or choose another --out") from exc
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise UserError(f"{self.path} is not an edge-guard attack manifest: choose another --out")
        prev = old.get("settings") or {}
        diff = [f"{k}: {prev.get(k)!r} -> {self.settings.get(k)!r}"
                for k in sorted((set(prev) | set(self.settings)) - self.free) if prev.get(k) != self.settings.get(k)]
        if diff:
            raise UserError(f"{self.path.parent} holds attacks made with other settings "
                            f"({'; '.join(diff[:3])}): use another --out, or the same settings to resume")
        self.previous = prev
        self.images = dict(old.get("images") or {})

    def check(self, name: str, source: str, source_sha256: str) -> tuple[str, str]:
        """(state, why) of frame ``name``'s record against the frame now at ``source``:
        'todo' (no record, or its files are gone), 'done', 'stale' (the frame at that path
        changed since: attack it anew) or 'other' (the record is of another frame, or nothing
        shows it is the same one: overwriting it would lose an attack).

        A record is matched by its source frame's sha256; records older than that field by
        their source path, or, when the data moved, by hashing their old source file if it is
        still there. A matched record takes the frame's current path and sha256, so the
        folder follows data that moves (a GPU lease's scenes come back elsewhere)."""
        rec = self.images.get(name)
        if not isinstance(rec, dict):
            return "todo", ""
        # Whose attack the record is comes first: even with its images gone (a folder unpacked
        # without them) a record of another frame is not replaced silently.
        old, recorded = rec.get("source"), rec.get("source_sha256")
        if recorded is None and old != source:
            if not (isinstance(old, str) and Path(old).is_file()):
                gone = f"names {old}, which is gone," if old else "names no source frame"
                return "other", (f"its record {gone} and no sha256 to compare: resume once with the "
                                 "data folder it was made from")
            recorded = frame_sha256(old)
        if recorded is not None and recorded != source_sha256:
            if old == source:
                return "stale", ""
            return "other", f"its record is of {old}, another frame: use that data folder"
        if not all(isinstance(rec.get(k), str) and (self.path.parent / rec[k]).is_file()
                   for k in ("adversarial", "target", "target_color")):
            return "todo", ""
        if old != source or recorded is None:
            rec["source"], rec["source_sha256"] = source, source_sha256
            self.changed = True
        return "done", ""

    def add(self, name: str, record: dict) -> None:
        self.images[name] = record
        self.write()

    def summary(self) -> dict:
        recs = list(self.images.values())
        if not recs:
            return {"images": 0}
        return {"images": len(recs), **summarize(recs, self.settings["threshold"])}

    def write(self) -> None:
        payload = {"format": FORMAT, "version": VERSION, "settings": self.settings,
                   "summary": self.summary(), "images": self.images}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(self.path)


def summarize(records: list, threshold: float | None) -> dict:
    """Mean per-image metrics of ``records``, attack seconds per frame, and how many reached
    ``threshold`` (None for an attack without one: a fixed-budget attack runs every step)."""
    mean = {k: float(np.mean([r[k] for r in records]))
            for k in ("success", "miou", "l2", "linf", "iterations", "seconds", "clean_success")}
    reached = None if threshold is None else int(sum(r["success"] >= threshold for r in records))
    return {"mean": mean, "seconds_per_frame": seconds_per_frame(records), "reached_threshold": reached}


def seconds_per_frame(records: list) -> float:
    """Attack wall time per frame: frames attacked in one batch share their batch's time."""
    # Each frame carries its share of its batch's time, so a table that reads only some of a
    # batch's frames (fewer --frames than a GPU lease attacked at --batch 50) stays right.
    share = [r["batch_seconds"] / r["batch"] if "batch_first" in r else r["seconds"] for r in records]
    return float(sum(share) / max(1, len(records)))


def frame_sha256(path) -> str:
    """sha256 of a frame file, remembered per (path, size, mtime) for the process: evaluate
    resumes one folder per setting over the same frames."""
    st = os.stat(path)
    return _frame_sha(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _frame_sha(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
