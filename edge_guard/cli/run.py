"""`edge-guard run`: check a camera or video stream frame by frame, with alarms and an event log."""

import argparse
import contextlib
import os
import sys

from edge_guard.cli._args import add_budget_options, add_runtime_options, at_most, non_negative_int, positive_int
from edge_guard.limits import MAX_RECONNECTS

EXAMPLE = """\
examples:
  edge-guard run --camera 0 --events events.jsonl            # first camera, headless
  edge-guard run --source drive.mp4 --save checked.mp4       # every frame of a file, annotated
  edge-guard run --source drive.mp4 --plot drive.png         # and a plot of the run at its end
  edge-guard run --source rtsp://10.0.0.5/stream --every 2 --alarm 4/6 --events -
  edge-guard run --camera 0 --fps 30 --events events.jsonl    # the largest K that keeps up
  edge-guard run --show --source "nvarguscamerasrc sensor-id=0 ! \\
      video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! nvvidconv ! \\
      video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1"

sources: --camera N (V4L2 on Linux), or --source with a video file, an image pattern
(frames/%06d.png), a URL (rtsp://, http://) or a GStreamer pipeline: a source containing
'!' is opened with OpenCV's GStreamer backend (needs an OpenCV built with GStreamer, e.g.
JetPack's; the last example reads a Jetson CSI camera; end a pipeline in `appsink drop=1`
so the camera, too, keeps only its newest frame).

live sources vs files: a reader thread keeps only the newest frame of a live source
(camera, URL, pipeline): frames that arrive while a check runs are skipped and counted
(skipped_since_last in each frame event), so a slow check never builds a queue. A file is
not real time: by default every frame is checked, in order (--every N checks one in N).
--realtime reads a file at its own frame rate and skips like a camera; --no-realtime makes
a live source wait for the checker instead (the driver may then drop or delay frames).

alarms: --alarm cusum sums per-frame evidence (how far each score falls below the per-frame
threshold, in benign deviations) and raises when the sum exceeds a level h calibrated for a
false-alarm rate per hour of driving (guard.json's alarm section, written by `edge-guard
calibrate --extend --out BUNDLE --clips DIR`); it clears, and re-arms, when the sum is back
to 0. --alarm M/N raises when M of the last N checked frames are flagged and clears when
fewer are. Default: cusum when the bundle carries one calibrated at the K this run checks,
else 3/5. Each frame event carries alarm_stat (the sum, or the flagged frames in the window).

A live source that stops delivering frames is reopened with back-off (0.5, 1, 2, 4, 8 s with
--reconnect 5); the outage is logged as a gap event.

events (--events FILE, appended; '-' for standard output): JSON Lines, one object per
line, flushed as written: a start record (source, bundle, backend and provider in use,
detector, statistic, K, threshold, sizes, version), one frame record per checked frame
(frame, capture_time, score, threshold, adversarial, latency_ms, skipped_since_last,
detector, statistic, scores, boxes: [y, x] patches (frame detector) or [y1, x1, y2, x2]
pairs (pairs detector, also as pair_mious and pairs), patch_size, timings_ms, ...), alarm
and gap records, and an end record with the summary (frames read, checked, skipped,
flagged, alarms, achieved FPS, latency p50/p99).

--show/--save draw the compared patches (or pairs) green or red by their score, the
verdict and a sparkline of the scores; --show-labels also tints the frame with its
segmentation (the frame detector's bundle, or any bundle with a full-frame graph: the
guard segments the frame in the same call). --show needs a screen: where no window can
open (no DISPLAY, an OpenCV built without windows, a display that does not answer), run
stops before loading the model, with one line and status 2, as for any other mistake in
its options; a vehicle without a screen leaves --show out and records with --save, --plot
and --events instead.

--plot PNG writes, when the run ends (end of the source, --max-frames, Ctrl-C, SIGTERM, a
lost source), a plot over time (a file's own time, frame / fps, when every frame is
checked in order; else seconds since the first checked frame): the score per checked
frame against the threshold (flagged frames in red) and, below it, the alarm's statistic
(the CUSUM sum with h, or the flagged frames of the last N with M), alarm episodes shaded
from raised to cleared. The run keeps at most 2048 points for it (80 KiB, however long it
runs): past 2048 checked frames each point holds the min and max of 2, 4, 8, ... frames,
so no flagged frame or alarm is averaged away. The path is tried before the model loads;
the summary and the end record name it (plot).

frame-rate budget: --fps F (or --budget-ms MS) times the check at each K the bundle holds a
threshold for (guard.json's thresholds_by_k, written by `edge-guard calibrate --ks`), on the
first frame, and runs the largest K whose median check takes at most 90% of 1000/F ms (the
rest is for reading frames and writing events), with that K's own threshold. The header
and the start record say which K runs, the budget and the warm-up time of each K; the
summary and the end record give the achieved checked frames/s. When even the smallest K
does not fit, it runs anyway and one line on stderr says the budget cannot be met and the
rate to expect. --k and --fps are exclusive.

Ctrl-C (or SIGTERM) or the end of the source ends cleanly with the summary; Ctrl-C
before the first frame (while the model loads) ends at once with status 130.

lost output: when the event log, the --save video or the --plot PNG cannot be written (a
full disk, a file size limit), the failure is reported once on stderr and the stream goes
on checking and raising alarms; the summary counts the records and frames lost, and the
exit status says so.
The event log never keeps a torn line: a record is written whole or not at all.

exit status: 0 no alarm, 1 at least one alarm raised, 2 an error (a source that does not
open, or a live source lost for good after the reconnect attempts), 3 no alarm but output
was lost (events, video, plot or printed lines), 4 at least one alarm raised and output
was lost, 130 interrupted before the stream began.
"""


def _alarm(text: str):
    from edge_guard.errors import UserError
    from edge_guard.alarms import parse_alarm

    if text.strip() == "cusum":
        return "cusum"
    try:
        return parse_alarm(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub) -> None:
    p = sub.add_parser("run", help="check a camera or video stream, with alarms and an event log",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=non_negative_int, metavar="N", help="camera index (e.g. 0)")
    src.add_argument("--source", metavar="PATH|URL|PIPELINE",
                     help="video file, image pattern, URL or GStreamer pipeline")
    add_runtime_options(p, unit="frame")
    add_budget_options(p, unit="frame")
    p.add_argument("--every", type=positive_int, default=1, metavar="N",
                   help="check one frame in N (default: 1, every frame)")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="skip frames that arrive while checking (default: for live sources only)")
    p.add_argument("--alarm", type=_alarm, default=None, metavar="cusum|M/N",
                   help="cusum: the bundle's calibrated sequential alarm; M/N: when M of the last N "
                        "checked frames are flagged (default: cusum if the bundle has one, else 3/5)")
    p.add_argument("--events", default=None, metavar="FILE",
                   help="append JSON Lines events to FILE ('-': standard output)")
    p.add_argument("--save", default=None, metavar="VIDEO",
                   help="write the checked frames, annotated, to VIDEO (.mp4)")
    p.add_argument("--show", action="store_true",
                   help="show the annotated frames in a window (q or Esc ends); where no window "
                        "can open, stop at once with status 2")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="at the end, write a plot of score, threshold and alarm statistic over time to PNG")
    p.add_argument("--show-labels", action="store_true",
                   help="tint the shown/saved frames with the frame's segmentation (default: off)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N",
                   help="stop after reading N frames from the source")
    p.add_argument("--reconnect", type=at_most(MAX_RECONNECTS, "reconnect attempts", minimum=0), default=5,
                   metavar="N",
                   help="attempts to reopen a live source that stops, waiting 0.5, 1, 2, 4, 8 s "
                        "(default: 5; 0: end at once)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="seed the patch draw (reproducible, but predictable: tests only)")
    p.set_defaults(func=run)


def reconnect_delays(attempts: int) -> tuple:
    """Back-off before each attempt: 0.5, 1, 2, 4, then 8 s each."""
    return tuple(min(0.5 * 2 ** i, 8.0) for i in range(attempts))


def _fmt_ms(stats) -> str:
    return "n/a" if not stats else f"p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms"


def summary_lines(s: dict) -> list:
    fps = s["fps_checked"] or 0.0
    lines = [
        f"# end ({s['reason']}): {s['frames_read']} frames read, {s['frames_checked']} checked, "
        f"{s['frames_skipped']} skipped ({s['skipped_every']} by --every, {s['skipped_busy']} while "
        f"busy, {s['skipped_at_stop']} at the stop), {s['frames_flagged']} flagged, "
        f"{s['alarms']} alarm(s), {s['gaps']} gap(s)",
        f"# {fps:.1f} checked frames/s over {s['duration_s']:.1f} s; latency (capture to verdict) "
        f"{_fmt_ms(s['latency_ms'])}; check {_fmt_ms(s['check_ms'])}",
    ]
    if s.get("budget"):
        from edge_guard.budget import summary_line

        lines.append(summary_line(s))
    if s.get("plot") and "plot" not in s.get("output_errors", {}):
        lines.append(f"# plot: {s['plot']}")
    if s.get("output_errors"):
        lines.append(f"# output lost: {s.get('events_lost', 0)} event record(s), {s.get('video_lost', 0)} "
                     f"video frame(s); " + "; ".join(s["output_errors"].values()))
    return lines


def exit_code(summary: dict, output_lost: bool) -> int:
    """0/1 by alarms; 3/4 the same when output was lost; 2 a live source lost for good."""
    if summary["reason"] == "source lost":
        return 2
    alarm = 1 if summary["alarms"] else 0
    return (4 if alarm else 3) if output_lost else alarm


class Printer:
    """The command's human lines: a failed print (stdout on a full disk, a reader that left)
    is reported once on stderr and costs the lines, never the stream."""

    def __init__(self, out):
        self.out, self.error = out, None

    def __call__(self, text: str) -> None:
        if self.error is not None:
            return
        try:
            print(text, file=self.out, flush=True)
        except (OSError, ValueError) as exc:
            self.error = f"cannot print to {getattr(self.out, 'name', 'the output')}: {exc}"
            warn(f"{self.error}; the stream goes on checking")
            with contextlib.suppress(OSError, ValueError):  # keep the exit-time flush from failing
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())


def warn(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"edge-guard run: warning: {text}", file=sys.stderr, flush=True)


def run(args) -> int:
    import signal
    import threading

    from edge_guard.events import EventWriter
    from edge_guard.guard import Guard
    from edge_guard.display import Display, check_display, check_video_path
    from edge_guard.sources import parse_source
    from edge_guard.stream import Stream

    from edge_guard.errors import UserError
    from edge_guard.run_plot import check_plot_path
    from edge_guard.writable import check_file

    source = parse_source(args.camera, args.source)
    if args.show_labels and not (args.show or args.save):
        raise UserError("--show-labels draws on the annotated frames: add --show or --save VIDEO")
    if args.show:
        check_display()
    if args.save:
        check_video_path(args.save)  # before the model loads
    if args.events and args.events != "-":
        check_file(args.events, "--events")
    if args.plot:
        check_plot_path(args.plot)
    say = Printer(sys.stderr if args.events == "-" else sys.stdout)

    guard = Guard.load(args.bundle, backend=args.backend, seed=args.seed, pairs=args.pairs,
                       threads=args.threads, precision=args.precision, fps=args.fps, budget_ms=args.budget_ms)
    with guard:
        if args.show_labels and guard.segmenter is None:
            raise UserError(f"--show-labels: {guard.bundle.root} has no full-frame graph (model.frame_graph), "
                            "so the guard does not segment the frame: use a bundle calibrated with one")
        sinks = []
        if args.show or args.save:
            sinks.append(Display(guard.bundle.patch_size, show=args.show, save=args.save,
                                 labels=args.show_labels))
        events = EventWriter(args.events) if args.events else None
        stream = Stream(guard, source, events=events, every=args.every, realtime=args.realtime,
                        max_frames=args.max_frames, alarm=args.alarm,
                        reconnect=reconnect_delays(args.reconnect), sinks=sinks, log=say,
                        extra={"seed": args.seed}, warn=warn, plot=args.plot)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: stream.stop("terminated"))
        try:
            summary = stream.run()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if events is not None:
                events.close()
    for line in summary_lines(summary):
        say(line)
    if summary["reason"] == "source lost":
        print(f"edge-guard run: error: lost {source} (no frame after {args.reconnect} reconnect "
              "attempt(s))", file=sys.stderr)
    return exit_code(summary, bool(summary["output_errors"]) or say.error is not None)
