"""Soak `edge-guard run` over a long generated drive while the events log's disk fills.

Renders a clip of --seconds at the street generator's 15 frames/s (one drive per 10 s,
each from its own seed, so the memory held while rendering stays bounded), writes it as a
video, then runs ``edge-guard run --source clip --events events.jsonl`` in a child process
whose file size limit (RLIMIT_FSIZE, what `ulimit -f` sets) is the size the events log
reaches about --fill of the way through the run: the disk "fills" there. The limit is
measured, not guessed: a short probe run of the same command gives the start record's and
a frame record's size.

Printed (and written to --json): frames checked, frame records in the log and frames lost
from it, the records the run itself counted as lost, the frames flagged and alarms raised
(on a benign drive: false alarms), whether any line of the log is torn,
the exit status (3 or 4: output lost), and the child's resident memory (RSS) once the model
is loaded, at the end and at its peak, sampled every 0.25 s from /proc (Linux).

    python benchmarks/soak_run.py                                  # 10 min at 512x1024
    python benchmarks/soak_run.py --seconds 20 --size 128x256      # a quick try
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from edge_guard.cli._args import bundle_folder, frame_size, non_negative_int, positive_float, thread_count
from edge_guard.errors import UserError, exit_status
from edge_guard.scenes import render_clip
from edge_guard.scenes.world import FPS as _FPS

FPS = int(_FPS)  # the generator draws 15 frames a second

CHUNK_S = 10  # seconds of one rendered drive: at most 150 frames held in memory at once
PROBE_FRAMES = 8
CODECS = {"mp4v": ".mp4", "FFV1": ".avi"}


def write_clip(path: Path, seconds: float, size, seed: int, codec: str) -> int:
    """Render ``seconds`` of driving at the generator's frame rate into ``path``; frames written."""
    h, w = size
    total = max(1, round(seconds * FPS))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(FPS), (w, h))
    if not writer.isOpened():
        raise UserError(f"cannot write {path} with the {codec} codec")
    written, drive = 0, 0
    while written < total:
        length = int(min(CHUNK_S * FPS, total - written))
        for image, _ in render_clip(seed + drive, length, (h, w)):
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        written += length
        drive += 1
    writer.release()
    return written


def _command(clip: Path, events: Path, args, max_frames: int | None = None) -> list:
    cmd = [sys.executable, "-m", "edge_guard", "run", "--source", str(clip), "--events", str(events),
           "--backend", args.backend]
    for option, value in (("--bundle", args.bundle), ("--threads", args.threads), ("--max-frames", max_frames)):
        if value is not None:
            cmd += [option, str(value)]
    return cmd


def measure_records(clip: Path, folder: Path, args) -> tuple[int, float]:
    """(bytes of the start record, mean bytes of a frame record) from a short probe run."""
    probe = folder / "probe.jsonl"
    proc = subprocess.run(_command(clip, probe, args, PROBE_FRAMES), capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise UserError(f"the probe run failed (status {proc.returncode}): {proc.stderr.strip()[-300:]}")
    lines = probe.read_bytes().splitlines(keepends=True)
    frames = [line for line in lines if b'"type":"frame"' in line]
    return len(lines[0]), sum(map(len, frames)) / len(frames)


def _rss_mb(pid: int) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) of a process in MiB, or Nones once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    values = {k: int(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.+)$", status, re.M)}
    return values.get("VmRSS"), values.get("VmHWM")


def soak(clip: Path, events: Path, limit: int, args) -> dict:
    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    started = time.perf_counter()
    proc = subprocess.Popen(_command(clip, events, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=limited)
    rss_start = rss_end = peak = None
    while proc.poll() is None:
        rss, hwm = _rss_mb(proc.pid)
        if rss is not None:
            rss_end, peak = rss, hwm
            if rss_start is None and events.exists() and events.stat().st_size > 0:
                rss_start = rss  # the start record is written once the model is loaded
        time.sleep(0.25)
    out, err = proc.communicate()
    data = events.read_bytes() if events.exists() else b""
    torn = 0
    frame_records = 0
    for line in data.splitlines():
        try:
            frame_records += json.loads(line).get("type") == "frame"
        except ValueError:
            torn += 1
    read = re.search(r"(\d+) frames read, (\d+) checked", out)
    lost = re.search(r"# output lost: (\d+) event record", out)
    # Benign frames flagged and alarms raised over the drive: the false alarms of a long run.
    flagged = re.search(r"(\d+) flagged, (\d+) alarm\(s\)", out)
    checked = int(read.group(2)) if read else None
    return {"exit_status": proc.returncode, "duration_s": round(time.perf_counter() - started, 1),
            "frames_read": int(read.group(1)) if read else None, "frames_checked": checked,
            "frame_records_logged": frame_records,
            "frames_lost_from_log": None if checked is None else checked - frame_records,
            "records_lost_counted": int(lost.group(1)) if lost else 0,
            "frames_flagged": int(flagged.group(1)) if flagged else None,
            "alarms": int(flagged.group(2)) if flagged else None,
            "events_bytes": len(data), "torn_lines": torn + (bool(data) and not data.endswith(b"\n")),
            "rss_start_mb": rss_start, "rss_end_mb": rss_end, "rss_peak_mb": peak,
            "warnings": [line for line in err.splitlines() if "warning" in line]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=positive_float, default=600.0,
                        help=f"length of the clip at {FPS} frames/s (default: 600, ten minutes)")
    parser.add_argument("--size", type=frame_size, default=(512, 1024), metavar="HxW",
                        help="size of the rendered frames (default: 512x1024)")
    parser.add_argument("--fill", type=positive_float, default=0.5,
                        help="fraction of the run at which the events disk fills (default: 0.5)")
    parser.add_argument("--bundle", type=bundle_folder, default=None, help="default: the shipped bundle")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=thread_count, default=None)
    parser.add_argument("--codec", choices=tuple(CODECS), default="mp4v",
                        help="mp4v (default: small files for long clips) or FFV1 (lossless, large)")
    parser.add_argument("--seed", type=non_negative_int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to FILE")
    args = parser.parse_args(argv)
    if not 0 < args.fill < 1:
        raise UserError(f"--fill must lie in (0, 1), got {args.fill}")
    if args.json:
        from edge_guard.writable import check_file

        check_file(args.json, "--json")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp)
        clip = folder / f"clip{CODECS[args.codec]}"
        t0 = time.perf_counter()
        frames = write_clip(clip, args.seconds, args.size, args.seed, args.codec)
        h, w = args.size
        print(f"clip: {frames} frames {h}x{w} ({frames / FPS:.0f} s at {FPS} frames/s, {args.codec}, "
              f"{clip.stat().st_size / 2**20:.1f} MiB) rendered in {time.perf_counter() - t0:.0f} s", flush=True)
        start_bytes, frame_bytes = measure_records(clip, folder, args)
        limit = int(start_bytes + args.fill * frames * frame_bytes)
        print(f"events: start record {start_bytes} B, frame records {frame_bytes:.0f} B on average: "
              f"file size limit {limit} B (the log's size {100 * args.fill:.0f}% of the way)", flush=True)
        result = soak(clip, folder / "events.jsonl", limit, args)
    result.update(seconds=args.seconds, fps=FPS, frames=frames, size=[h, w], fill=args.fill,
                  limit_bytes=limit, start_record_bytes=start_bytes, frame_record_bytes=round(frame_bytes, 1))
    for key in ("frames", "frames_read", "frames_checked", "frame_records_logged", "frames_lost_from_log",
                "records_lost_counted", "frames_flagged", "alarms", "torn_lines", "exit_status", "duration_s", "events_bytes",
                "rss_start_mb", "rss_end_mb", "rss_peak_mb"):
        value = result[key]
        print(f"{key:<22} {value:.1f}" if isinstance(value, float) else f"{key:<22} {value}")
    for line in result["warnings"]:
        print(f"child: {line}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "soak_run.py"))
