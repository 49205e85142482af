"""The demo's PNG strip: thumbnails of chosen frames with the regions the guard compared
(the frame detector's patches or the pairs detector's pairs, drawn from the stream's frame
events) and their scores; when the attack stored them, a row with what the model makes of
one attacked frame (clean, attacked, the attacker's target); and a plot of every frame's
score against the threshold (the attacked stretch shaded)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .classes import colorize
from .errors import UserError
from .overlay import AMBER, GREEN, RED, WHITE, draw_boxes
from .overlay import draw_text as _text
from .plot_panel import BACKGROUND, Panel, score_floor

THUMB_W = 320
COLUMNS = 4
CAPTION_H = 44
PLOT_H = 150


def pick_frames(n: int, attacked: tuple[int, int], most: int = 8) -> list[int]:
    """Up to ``most`` frame indices: two before the attack, the attacked frames (evenly
    thinned to fit), two after."""
    a, b = attacked
    before = [i for i in (a - 2, a - 1) if 0 <= i < n]
    after = [i for i in (b + 1, b + 2) if 0 <= i < n]
    room = max(1, most - len(before) - len(after))
    inside = list(range(a, b + 1))
    if len(inside) > room:
        inside = sorted({inside[int(round(j))] for j in np.linspace(0, len(inside) - 1, room)})
    return before + inside + after


def thumbnail(frame_bgr: np.ndarray, event: dict, attacked: bool, patch: int) -> np.ndarray:
    """A THUMB_W-wide copy of the frame with its compared regions drawn and a two-line
    caption below. ``event``: the frame's stream record (events without a detector, written
    before the frame detector existed, are pairs)."""
    h, w = frame_bgr.shape[:2]
    th = max(1, int(round(h * THUMB_W / w)))
    img = cv2.resize(frame_bgr, (THUMB_W, th), interpolation=cv2.INTER_AREA)
    draw_boxes(img, event.get("detector", "pairs"), event.get("boxes", event.get("pairs")),
               event.get("scores", event.get("pair_mious")), event.get("patch_size", patch),
               event["frame_size"], event["threshold"])
    cap = np.zeros((CAPTION_H, THUMB_W, 3), np.uint8)
    flagged = bool(event["adversarial"])
    _text(cap, f"frame {event['frame']}  {'ATTACKED' if attacked else 'clean'}", (6, 17), 0.45,
          RED if attacked else WHITE)
    sign = "<" if flagged else ">="
    _text(cap, f"score {event['score']:.3f} {sign} {event['threshold']:.3f}: "
               f"{'FLAGGED' if flagged else 'passed'}", (6, 37), 0.45, RED if flagged else GREEN)
    tile = np.vstack([img, cap])
    cv2.rectangle(tile, (0, 0), (THUMB_W - 1, tile.shape[0] - 1), RED if flagged else GREEN, 2)
    return tile


def _captioned(img_bgr: np.ndarray, lines: list, colour=WHITE, labels: bool = False) -> np.ndarray:
    """A THUMB_W-wide copy with up to two caption lines below (``labels``: no blending)."""
    h, w = img_bgr.shape[:2]
    th = max(1, int(round(h * THUMB_W / w)))
    img = cv2.resize(img_bgr, (THUMB_W, th),
                     interpolation=cv2.INTER_NEAREST if labels else cv2.INTER_AREA)
    cap = np.zeros((CAPTION_H, THUMB_W, 3), np.uint8)
    for k, text in enumerate(lines[:2]):
        _text(cap, text, (6, 17 + 20 * k), 0.45, colour if k == 0 else WHITE)
    return np.vstack([img, cap])


def model_view_row(index: int, frame_bgr: np.ndarray, maps: dict) -> list:
    """Tiles: the attacked frame, then the model's labels on the clean and on the attacked
    frame and the attacker's target (those present in ``maps``), in the Cityscapes palette."""
    tiles = [_captioned(frame_bgr, [f"frame {index} as sent (attacked)",
                                    "(the perturbation is too faint to see)"], RED)]
    captions = {"clean": ["the model on the clean frame", "(what it sees without the attack)"],
                "attacked": ["the model on the attacked frame", "(what the attack made it see)"],
                "target": ["the attacker's target", "(no people, no vehicles)"]}
    for name in ("clean", "attacked", "target"):
        if name in maps:
            tiles.append(_captioned(cv2.cvtColor(colorize(maps[name]), cv2.COLOR_RGB2BGR),
                                    captions[name], RED if name == "attacked" else WHITE, labels=True))
    return tiles


def score_plot(events: list[dict], attacked: tuple[int, int], n: int, width: int) -> np.ndarray:
    """(PLOT_H, width, 3) BGR: score per frame (dots red when flagged), threshold in amber."""
    img = np.full((PLOT_H, width, 3), BACKGROUND, np.uint8)
    left, right, top, bottom = 48, 12, 22, 22
    checked = [e for e in events if e.get("score") is not None]
    threshold = events[0]["threshold"] if events else 0.5
    lo = score_floor([e["score"] for e in checked], threshold)
    # Frame i sits in the middle of its slot: x from -0.5 to n - 0.5.
    panel = Panel(img, (left, top, width - left - right, PLOT_H - top - bottom),
                  (-0.5, max(n, 1) - 0.5), (lo, 1.0))
    a, b = attacked
    panel.shade(a - 0.5, b + 0.5, min_px=1)
    _text(img, "attacked", (panel.px(a - 0.5) + 3, top + 14), 0.4, WHITE)
    panel.border()
    panel.hline(threshold, AMBER)
    _text(img, f"{threshold:.3f}", (2, panel.py(threshold) + 4), 0.35, AMBER)
    _text(img, "1.0", (14, top + 4), 0.35, WHITE)
    _text(img, f"{lo:.2f}", (8, panel.bottom + 4), 0.35, WHITE)
    _text(img, "score per checked frame (threshold in amber; red: flagged)", (left, 15), 0.42, WHITE)
    _text(img, "frame 0", (left, PLOT_H - 6), 0.35, WHITE)
    _text(img, f"frame {n - 1}", (panel.right - 60, PLOT_H - 6), 0.35, WHITE)
    panel.line([(e["frame"], e["score"]) for e in checked])
    for e in checked:
        panel.dot(e["frame"], e["score"], RED if e["adversarial"] else GREEN)
    return img


def write_strip(path, frames_bgr: dict, events: list[dict], attacked: tuple[int, int], n: int,
                patch: int, model_view: tuple | None = None) -> Path:
    """Write the strip to ``path`` (PNG): thumbnails of :func:`pick_frames` that were checked,
    COLUMNS per row, then :func:`model_view_row` when ``model_view`` = (index, label maps) is
    given, then :func:`score_plot`. ``frames_bgr``: {index: (H, W, 3) BGR}, ``events``: the
    stream's frame records."""
    by_frame = {e["frame"]: e for e in events}
    chosen = [i for i in pick_frames(n, attacked) if i in by_frame and i in frames_bgr]
    tiles = [thumbnail(frames_bgr[i], by_frame[i], attacked[0] <= i <= attacked[1], patch)
             for i in chosen]
    groups = [tiles[r:r + COLUMNS] for r in range(0, len(tiles), COLUMNS)]
    if model_view is not None and model_view[0] in frames_bgr:
        groups.append(model_view_row(model_view[0], frames_bgr[model_view[0]], model_view[1]))
    rows = []
    for row in groups:
        height = max(t.shape[0] for t in row)
        row = [np.vstack([t, np.zeros((height - t.shape[0], THUMB_W, 3), np.uint8)]) for t in row]
        row += [np.zeros((height, THUMB_W, 3), np.uint8)] * (COLUMNS - len(row))
        rows.append(np.hstack(row))
    width = COLUMNS * THUMB_W
    rows.append(score_plot(sorted(events, key=lambda e: e["frame"]), attacked, n, width))
    strip = np.vstack(rows)
    path = Path(path)
    if not cv2.imwrite(str(path), strip):
        raise UserError(f"cannot write {path}")
    return path
