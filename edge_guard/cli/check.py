"""`edge-guard check`: is each still image adversarial? One verdict per image."""

import argparse
import json
import sys
from pathlib import Path

from edge_guard.cli._args import add_budget_options, add_runtime_options, at_most, non_negative_int
from edge_guard.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS

EXAMPLE = """\
examples:
  edge-guard check street.png                       # the shipped bundle, fastest backend
  edge-guard check frames/*.png --bundle bundle --k 50 --json > verdicts.jsonl
  edge-guard check frames/*.png --bundle bundle --labels-out labels/
  edge-guard check frames/*.png --fps 10            # the largest K that checks 10 images/s here

Each image is resized to the bundle's frame size and checked by the bundle's detector:
"frame" segments the whole frame and K random patches alone, and compares each patch with
the frame's labels on the same pixels; "pairs" (the paper's) segments K random pairs of
overlapping patches and compares each pair on its overlap. The image is flagged when the
mean of the K comparison scores (the bundle's statistic, e.g. mIoU) falls below the
bundle's threshold. Printed per image: the verdict, the score, the lowest of the K
comparison scores, the time of the check and the image. --json prints one JSON object per
image (score, threshold, adversarial, detector, statistic, scores, boxes, patch_size,
timings_ms, ...; pairs also pair_mious and pairs). --labels-out DIR writes the frame's
segmentation, which the same call produced, as DIR/<image name>_labels.png: class ids
(8-bit, 16-bit beyond 256 classes) at the image's size.

--fps F (or --budget-ms MS) times the check at each K the bundle holds a threshold for on
the first readable image and keeps the largest that fits 1000/F ms (with 10% headroom),
with that K's threshold; the header says which K and the warm-up times, and a budget that
even the smallest K cannot meet is said on stderr (one line). Not with --k.

Images larger than --max-pixels decoded pixels (default 64 megapixels) are refused, from
their header before decoding for PNG, JPEG, BMP and WebP: a small file can decode to
gigabytes.

exit status: 0 every image benign, 1 at least one adversarial, 2 an error (an unreadable
or too large image is reported on one line and the others are still checked).
"""


def register(sub) -> None:
    p = sub.add_parser("check", help="check still images for adversarial perturbations",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything OpenCV reads)")
    add_runtime_options(p, unit="image")
    add_budget_options(p, unit="image")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="seed the patch draw (reproducible, but predictable: tests only)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.add_argument("--max-pixels", type=at_most(MAX_PIXELS, "16384 x 16384"), default=DEFAULT_MAX_PIXELS,
                   metavar="N", help=f"refuse images of more than N decoded pixels (default: {DEFAULT_MAX_PIXELS}, "
                                     "64 megapixels)")
    p.add_argument("--labels-out", type=Path, default=None, metavar="DIR",
                   help="write each image's segmentation (class ids, at the image's size) to "
                        "DIR/<name>_labels.png; needs a bundle with a full-frame graph")
    p.set_defaults(func=run)


def labels_paths(folder: Path, images) -> dict:
    """{image: folder/<stem>_labels.png}; UserError when two images would write one file
    (the second would silently replace the first)."""
    from edge_guard.errors import UserError

    if folder.exists() and not folder.is_dir():
        raise UserError(f"--labels-out {folder} is a file: give a folder")
    paths, seen = {}, {}
    for image in images:
        out = folder / f"{Path(image).stem}_labels.png"
        if out in seen and seen[out] != image:
            raise UserError(f"--labels-out: {seen[out]} and {image} would both write {out.name}: "
                            "check them in separate runs")
        paths[image], seen[out] = out, image
    return paths


def write_labels(path: Path, verdict) -> str | None:
    """Write the verdict's labels at the input's size as a PNG of class ids; why not, or None."""
    import cv2
    import numpy as np

    labels = verdict.labels_at()
    dtype = np.uint8 if int(labels.max(initial=0)) < 256 else np.uint16
    if not cv2.imwrite(str(path), labels.astype(dtype)):
        return f"cannot write {path}"
    return None


def _segmentation_check(guard, args) -> None:
    """--labels-out needs a guard that segments the frame; refused before any image."""
    from edge_guard.errors import UserError

    if args.labels_out is not None and guard.segmenter is None:
        raise UserError(f"--labels-out: {guard.bundle.root} has no full-frame graph (model.frame_graph), "
                        "so the guard does not segment the frame: use a bundle calibrated with one")


def _make_folder(folder: Path) -> None:
    from edge_guard.errors import UserError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --labels-out {folder}: {exc.strerror or exc}") from None


def _fit_budget(guard, args) -> None:
    """Choose K for the budget on the first image that reads (else a stand-in frame), before
    the header names K; a budget that cannot be met is said on stderr."""
    from edge_guard.images import read_image

    first = next((image for image in (read_image(p, args.max_pixels)[0] for p in args.images)
                  if image is not None), None)
    guard.fit_budget(first)
    if guard.budget.warning() is not None:
        print(f"edge-guard check: warning: {guard.budget.warning()}", file=sys.stderr)


def run(args) -> int:
    from edge_guard.domain import calibrated_rate, message as domain_message, out_of_domain
    from edge_guard.guard import Guard
    from edge_guard.images import read_image

    targets = labels_paths(args.labels_out, args.images) if args.labels_out is not None else {}
    if args.labels_out is not None:
        from edge_guard.writable import check_folder

        check_folder(args.labels_out, "--labels-out")
    guard = Guard.load(args.bundle, backend=args.backend, seed=args.seed, pairs=args.pairs,
                       threads=args.threads, precision=args.precision, max_pixels=args.max_pixels,
                       fps=args.fps, budget_ms=args.budget_ms)
    status = 0
    errors = checked = flagged = 0
    with guard:
        _segmentation_check(guard, args)
        if args.labels_out is not None:
            _make_folder(args.labels_out)
        b = guard.bundle
        least = "min pair" if b.method == "pairs" else "min patch"
        if args.fps is not None or args.budget_ms is not None:
            _fit_budget(guard, args)
        if not args.json:
            h, w = b.frame_size
            print(f"# {b.root} | backend {guard.backend} ({guard.provider}) | {b.method} detector, "
                  f"{b.statistic}, frame {h}x{w}, {guard.k_text}, threshold {guard.threshold:.4f}")
            print(f"# backend choice: {guard.selection}")
            if guard.budget is not None:
                print(f"# {guard.budget.describe()}")
            print(f"{'verdict':<12} {'score':>7} {least:>9} {'ms':>8}  image")
        for path in args.images:
            image, why = read_image(path, args.max_pixels)
            if image is None:
                print(f"edge-guard check: error: {path}: {why}", file=sys.stderr)
                errors += 1
                continue
            verdict = guard.check(image)
            checked += 1
            if verdict.adversarial:
                status = 1
                flagged += 1
            row = {"image": path, **verdict.as_dict()}
            if path in targets:
                why = write_labels(targets[path], verdict)
                if why is not None:
                    print(f"edge-guard check: error: {path}: {why}", file=sys.stderr)
                    errors += 1
                else:
                    row["labels_png"] = str(targets[path])
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                label = "ADVERSARIAL" if verdict.adversarial else "benign"
                print(f"{label:<12} {verdict.score:7.4f} {min(verdict.scores):9.4f} "
                      f"{verdict.timings_ms['total']:8.1f}  {path}", flush=True)
        p0 = calibrated_rate(b)
        if out_of_domain(flagged, checked, p0):
            print(f"edge-guard check: note: {domain_message(flagged, checked, p0, f'{checked} images')}",
                  file=sys.stderr)
    return 2 if errors else status
