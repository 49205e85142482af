"""``edge-guard demo`` as a library: a drive, an attack on a stretch of it, the guard on the stream.

1. Render a short driving clip (the procedural street generator, deterministic by seed).
2. Attack a stretch of its frames with DAG toward an empty road (:data:`TARGETS`: another
   street's labels, or the frame's own, with every person and vehicle removed): live with
   PyTorch on the shipped checkpoint, or, without PyTorch (or with ``shipped=True``), by
   replaying the adversarial frames shipped in ``assets/demo`` (perturbations of the same
   clip, made once on the shipped model).
3. Write the clip as a lossless video (FFV1 .avi: a lossy codec such as mp4v rounds away much
   of an 8-bit perturbation, and would test the codec instead of the detector).
4. Run the stream runner (:class:`~edge_guard.stream.Stream`) on that video, as
   ``edge-guard run --source clip.avi --events events.jsonl --save checked.mp4`` would.
5. Count benign frames flagged (false alarms) and attacked frames flagged (detections), and
   draw a PNG strip of frames with their scores.

The runtime never imports torch: the attack (``edge_guard.calibration.demo_attack``) and the
scene generator are imported inside functions, only when used.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from .demo_frames import FrameStore
from .engine_cache import sha256_file
from .errors import UserError
from .paths import ASSETS, DEFAULT_MODEL

DEFAULT_SEED = 7
DEFAULT_FRAMES = 40
#: The paper's step limit. The package ships the frames of this attack on the default clip
#: (benchmarks/make_demo_frames.py), so the default demo takes them like a cache hit; a live
#: 200-step attack of 6 frames takes about 11 min on 2 CPU cores.
DEFAULT_ITERS = 200
DEFAULT_OUT = Path("edge-guard-demo")
#: DAG's step: twice the paper's 0.5/255, so that the demo's few steps get far.
STEP = 1.0 / 255
#: An image stops early once this fraction of its pixels is on target (DAG's usual 0.99).
THRESHOLD = 0.99
CLIP_FPS = 15.0  # the generator's frame rate
SHIPPED_FRAMES = ASSETS / "demo"
#: What the attack makes the model see (edge_guard.calibration.demo_attack.TARGETS).
TARGETS = {
    "scene": "another street, empty (the labels of a frame of another drive with its people and "
             "vehicles removed: the paper's Scene target)",
    "vanish": "the same street, empty (the frame's own labels with its people and vehicles removed)",
}
DEFAULT_TARGET = "scene"


@dataclass
class DemoOptions:
    """What ``edge-guard demo`` takes; None means "the default" (or, when replaying the
    shipped frames, what they were made with)."""

    out: Path = DEFAULT_OUT
    frames: int | None = None
    attacked: tuple | None = None        # (first, last), inclusive
    size: tuple | None = None            # (H, W); default: the bundle's frame size
    seed: int | None = None
    iters: int | None = None
    target: str | None = None
    bundle: Path | None = None           # default: the shipped bundle
    model: Path = DEFAULT_MODEL
    backend: str = "auto"
    pairs: int | None = None
    threads: int | None = None
    cache: bool = True
    shipped: bool = False                # replay the shipped frames even with PyTorch
    shipped_dir: Path = SHIPPED_FRAMES
    progress: bool = True


@dataclass
class DemoResult:
    """What :func:`run_demo` did and measured (:func:`report` prints it)."""

    mode: str                            # "live" or "shipped"
    reason: str                          # why that mode
    target: str
    seed: int
    frames: int
    size: tuple
    attacked: tuple
    attack: dict                         # {index: record}
    attack_seconds: float
    cached: int                          # frames taken from the cache
    counts: dict                         # benign/attacked totals and flagged
    summary: dict                        # the stream's end record
    paths: dict
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    video_lossless: bool = True


def default_attacked(n: int) -> tuple[int, int]:
    """A stretch in the middle of an n-frame clip: 6 frames, fewer in a short clip."""
    length = min(6, max(1, n // 4))
    first = (n - length) // 2
    return first, first + length - 1


def parse_range(text: str) -> tuple[int, int]:
    """'16-21' -> (16, 21), '16' -> (16, 16); UserError otherwise."""
    parts = str(text).strip().split("-")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 0 or values[0] > values[-1]:
        raise UserError(f"{text!r} is not a frame range: write FIRST-LAST, e.g. 16-21 (frames from 0)")
    return values[0], values[-1]


def torch_missing() -> str | None:
    """Why PyTorch cannot be used here, or None when it is installed.

    Looked up, not imported: importing torch costs seconds and hundreds of MB, and the
    default demo takes every attacked frame from the shipped cache. A torch that is found
    but fails to import is reported when a frame must be attacked (:func:`_attack_code`).
    """
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError) as exc:
        return f"PyTorch is not installed ({exc})" if str(exc) else "PyTorch is not installed"
    return None if found else "PyTorch is not installed"


def _attack_code():
    """calibration.demo_attack (imports torch), or a one-line error for a broken install."""
    try:
        from edge_guard.calibration import demo_attack
    except ImportError as exc:
        raise UserError(f"PyTorch is installed but cannot be imported ({exc}): repair it "
                        "(pip install --force-reinstall torch), or replay the shipped attacked "
                        "frames with --shipped-attacks") from None
    return demo_attack


def render(seed: int, frames: int, size) -> list:
    """The clip: [(image RGB uint8, labels uint8)], via the (NumPy-only) scene generator."""
    from edge_guard.scenes import render_clip

    return render_clip(seed, frames, tuple(size))


def attack_settings(seed: int, frames: int, size, iters: int, model_sha256: str,
                    target: str = DEFAULT_TARGET) -> dict:
    """What decides the adversarial frames (the cache key)."""
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    return {"seed": int(seed), "frames": int(frames), "size": [int(v) for v in size], "target": target,
            "method": "dag", "iters": int(iters), "step": STEP, "threshold": THRESHOLD,
            "quantize": True, "model_sha256": model_sha256}


def _check_explicit(opts: DemoOptions, settings: dict, attacked: tuple, where: Path) -> None:
    """Refuse a setting that the shipped frames cannot honour (they are of one clip)."""
    made = {"--seed": (opts.seed, settings["seed"]), "--frames": (opts.frames, settings["frames"]),
            "--size": (None if opts.size is None else list(opts.size), settings["size"]),
            "--attacked": (None if opts.attacked is None else tuple(opts.attacked), attacked),
            "--target": (opts.target, settings["target"])}
    for flag, (asked, have) in made.items():
        if asked is not None and asked != have:
            fmt = (lambda v: f"{v[0]}x{v[1]}") if flag == "--size" else \
                  (lambda v: f"{v[0]}-{v[1]}") if flag == "--attacked" else str
            raise UserError(f"the shipped adversarial frames ({where}) are of one clip ({flag} "
                            f"{fmt(have)}), so {flag} {fmt(asked)} needs a live attack: install "
                            "PyTorch (pip install 'edge-guard[offline]') and the shipped checkpoint")


def _from_shipped(store: FrameStore, folder: Path, clip: list, todo: list) -> tuple[list, list]:
    """Copy into ``store`` the shipped frames of ``todo`` when they were made with exactly the
    store's settings (the package's precomputed attack of the default clip). Returns (indices
    copied, indices whose clean frame renders differently here and so were not)."""
    try:
        shipped = FrameStore.open(folder)
    except UserError:
        return [], []
    made_with = {k: v for k, v in shipped.settings.items() if k != "bundle_model_sha256"}
    if made_with != store.settings:
        return [], []
    copied, differ = [], []
    for i in todo:
        if not shipped.has(i):
            continue
        adv, rec = shipped.load(i, clip[i][0])
        if not rec.pop("clean_match"):
            differ.append(i)
            continue
        record = {k: v for k, v in rec.items() if k not in ("file", "shape", "clean_sha256", "label_maps")}
        store.save(i, clip[i][0], adv, record, shipped.label_maps(i))
        copied.append(i)
    return copied, differ


def _stretch(indices: list) -> tuple[int, int]:
    if not indices or indices != list(range(indices[0], indices[-1] + 1)):
        raise UserError("the shipped demo frames are not one stretch of a clip: reinstall edge-guard")
    return indices[0], indices[-1]


def _write_video(path: Path, frames_bgr: list, fps: float) -> Path:
    """A lossless FFV1 .avi; an image sequence (PNG) when this OpenCV cannot write FFV1."""
    h, w = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    if writer.isOpened():
        for f in frames_bgr:
            writer.write(f)
        writer.release()
        return path
    writer.release()
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames_bgr):
        if not cv2.imwrite(str(folder / f"{i:06d}.png"), f):
            raise UserError(f"cannot write {folder / f'{i:06d}.png'}")
    return folder / "%06d.png"


def _lossless(source: Path, frames_bgr: list, index: int) -> bool:
    """Whether frame ``index`` reads back from the written video bit for bit."""
    cap = cv2.VideoCapture(str(source))
    try:
        for _ in range(index + 1):
            ok, got = cap.read()
            if not ok:
                return False
        return got.shape == frames_bgr[index].shape and bool((got == frames_bgr[index]).all())
    finally:
        cap.release()


def _count(events: list, attacked: tuple) -> dict:
    a, b = attacked
    benign = [e for e in events if not a <= e["frame"] <= b]
    adv = [e for e in events if a <= e["frame"] <= b]
    return {"benign": len(benign), "benign_flagged": sum(bool(e["adversarial"]) for e in benign),
            "attacked": len(adv), "attacked_flagged": sum(bool(e["adversarial"]) for e in adv)}


def run_demo(opts: DemoOptions, say=print) -> DemoResult:
    """The whole demo; ``say`` gets the progress lines. See the module docstring."""
    from .events import EventWriter, read_events
    from .guard import Guard
    from .display import Display
    from .sources import parse_source
    from .stream import Stream

    started = time.perf_counter()
    out = Path(opts.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder")
    notes: list = []
    guard = Guard.load(opts.bundle, backend=opts.backend, pairs=opts.pairs, threads=opts.threads)
    with guard:
        out.mkdir(parents=True, exist_ok=True)  # once the bundle loaded: a failed start leaves nothing
        bundle = guard.bundle
        # ------------------------------------------------------------ which adversarial frames
        model = Path(opts.model).expanduser()
        if opts.shipped:
            mode, reason = "shipped", "asked for (--shipped-attacks)"
        elif (missing := torch_missing()) is not None:
            mode, reason = "shipped", missing
        elif not model.is_file():
            mode, reason = "shipped", f"no model checkpoint at {model}"
        else:
            mode, reason = "live", f"PyTorch is installed: white-box attack on {model.name}"
        if mode == "shipped":
            try:
                store = FrameStore.open(opts.shipped_dir)
            except UserError:
                raise UserError(f"{reason}, and no shipped adversarial frames were found in "
                                f"{opts.shipped_dir}: install PyTorch (pip install 'edge-guard[offline]') "
                                "to attack live") from None
            s = store.settings
            seed, n, size = int(s["seed"]), int(s["frames"]), tuple(int(v) for v in s["size"])
            attacked = _stretch(store.indices())
            _check_explicit(opts, s, attacked, opts.shipped_dir)
            if opts.iters is not None and opts.iters != s["iters"]:
                notes.append(f"--iters {opts.iters} is ignored: the shipped frames were made with "
                             f"{s['iters']} DAG steps")
            if s.get("bundle_model_sha256") not in (None, bundle.model_sha256):
                notes.append("the shipped frames were attacked on another model than this bundle's: "
                             "what you see is how well the attack transfers")
        else:
            seed = DEFAULT_SEED if opts.seed is None else int(opts.seed)
            n = DEFAULT_FRAMES if opts.frames is None else int(opts.frames)
            size = tuple(opts.size) if opts.size is not None else tuple(bundle.frame_size)
            attacked = tuple(opts.attacked) if opts.attacked is not None else default_attacked(n)
            if attacked[1] >= n:
                raise UserError(f"--attacked {attacked[0]}-{attacked[1]} is outside the clip's frames "
                                f"0-{n - 1}: choose a stretch inside, or more --frames")
            iters = DEFAULT_ITERS if opts.iters is None else int(opts.iters)
            source_sha = (bundle.model.get("source_checkpoint") or {}).get("sha256")
            model_sha = sha256_file(model)
            if source_sha not in (None, model_sha):
                notes.append(f"{model.name} is not the checkpoint this bundle was exported from: "
                             "the attack is a transfer attack, not white-box")
            settings = attack_settings(seed, n, size, iters, model_sha, opts.target or DEFAULT_TARGET)
            store = FrameStore(out / "attack", settings, frames=None if opts.cache else {})
        if tuple(size) != tuple(bundle.frame_size):
            notes.append(f"the clip is {size[0]}x{size[1]} and the guard resizes it to "
                         f"{bundle.frame_size[0]}x{bundle.frame_size[1]}: resampling weakens a "
                         "perturbation made at another size")

        # ------------------------------------------------------------ the clip and the attack
        say(f"rendering a {n}-frame drive (seed {seed}, {size[0]}x{size[1]}, {CLIP_FPS:g} frames/s)")
        clip = render(seed, n, size)
        indices = list(range(attacked[0], attacked[1] + 1))
        attack_seconds, cached = 0.0, 0
        if mode == "live":
            todo = [i for i in indices if not store.has(i)]
            cached = len(indices) - len(todo)
            if cached:
                say(f"{cached} attacked frame(s) taken from the cache {store.folder} "
                    "(--no-attack-cache attacks again)")
            seeded, differ = _from_shipped(store, opts.shipped_dir, clip, todo) if opts.cache else ([], [])
            if differ:
                say(f"{len(differ)} shipped attacked frame(s) were made on a clip rendered differently "
                    "from this machine's (other NumPy/OpenCV versions draw a few pixels otherwise): "
                    "attacking them here")
            if seeded:
                say(f"{len(seeded)} attacked frame(s) taken from the attack shipped for these settings "
                    f"in {opts.shipped_dir} (made by benchmarks/make_demo_frames.py; "
                    "--no-attack-cache attacks again)")
                reason += "; the frames of this attack are shipped with the package"
                cached += len(seeded)
                todo = [i for i in todo if i not in seeded]
            if todo:
                attack_frames = _attack_code().attack_frames
                say(f"attacking frames {todo[0]}-{todo[-1]} ({len(todo)}) with DAG toward "
                    f"{TARGETS[settings['target']]}: up to {settings['iters']} steps each on {model.name}")
                t0 = time.perf_counter()
                attack_frames(model, {i: clip[i] for i in todo}, iters=settings["iters"], step=STEP,
                              threshold=THRESHOLD, seed=seed, target=settings["target"],
                              progress=opts.progress,
                              threads=opts.threads,
                              on_frame=lambda i, adv, rec, maps: store.save(i, clip[i][0], adv, rec,
                                                                            maps))
                attack_seconds = time.perf_counter() - t0
        else:
            say(f"replaying the adversarial frames shipped in {opts.shipped_dir} "
                f"(frames {attacked[0]}-{attacked[1]}; made with {store.settings['iters']} DAG steps)")
        frames_rgb = [image for image, _ in clip]
        records = {}
        mismatched = []
        for i in indices:
            adv, rec = store.load(i, clip[i][0])
            frames_rgb[i] = adv
            records[i] = rec
            if not rec["clean_match"]:
                mismatched.append(i)
        if mismatched:
            notes.append(f"frame(s) {', '.join(map(str, mismatched))} render differently here than "
                         "where their perturbation was made (another OpenCV or NumPy?): the "
                         "perturbation was added to this rendering, so the attack may be weaker")
        frames_bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames_rgb]

        # ------------------------------------------------------------ the stream
        video = _write_video(out / "clip.avi", frames_bgr, CLIP_FPS)
        lossless = _lossless(video, frames_bgr, attacked[0])
        if not lossless:
            notes.append(f"{video} does not read back bit for bit: the codec altered the "
                         "perturbations, so detections measure the codec as much as the attack")
        events_path, annotated, strip = out / "events.jsonl", out / "checked.mp4", out / "strip.png"
        events_path.unlink(missing_ok=True)  # EventWriter appends: one demo run per file
        say(f"checking the stream {video} with the guard")
        writer = EventWriter(events_path)
        try:
            display = Display(bundle.patch_size, save=annotated)
            stream = Stream(guard, parse_source(source=str(video)), events=writer, sinks=[display],
                            log=say, extra={"demo": {"mode": mode, "seed": seed, "frames": n,
                                                     "attacked": list(attacked)}})
            summary = stream.run()
        finally:
            writer.close()
    events = [e for e in read_events(events_path) if e.get("type") == "frame"]
    from .demo_strip import write_strip

    middle = indices[len(indices) // 2]
    views = store.label_maps(middle)
    write_strip(strip, dict(enumerate(frames_bgr)), events, attacked, n, bundle.patch_size,
                model_view=(middle, views) if views else None)
    return DemoResult(mode=mode, reason=reason, target=store.settings["target"], seed=seed, frames=n,
                      size=tuple(size),
                      attacked=tuple(attacked), attack=records, attack_seconds=attack_seconds,
                      cached=cached, counts=_count(events, attacked), summary=summary,
                      paths={"events": events_path, "annotated": annotated, "strip": strip,
                             "video": video, "attack": store.folder},
                      notes=notes, seconds=time.perf_counter() - started, video_lossless=lossless)
