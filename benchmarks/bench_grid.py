"""The K-grid performance table of docs/performance.md: `edge-guard bench` over K on every
backend present here.

Each bench times plain segmentation, and for each detector (frame, pairs: --detector) and K
the guard's extra (check(frame, labels)), segmentation + guard (check(frame)) and their
ratio to segmentation. Runs, on the shipped bundle (edge_small, 512x1024 frames, s=256):
- ONNX Runtime on the CPU (all cores, and 1 thread with --threads-grid);
- with a GPU: TensorRT (when installed with a built engine), ONNX Runtime CUDA (when
  onnxruntime-gpu is installed), and PyTorch CUDA fp32/fp16 as the baseline where TensorRT
  is absent; the consistency kernels through benchmarks/kernel_bench.py;
and with --drn the paper's configuration: DRN-D-22 (random weights: timing only) on
1024x2048 frames with s=512, exported into a timing-only bundle (no threshold) under OUT.

Writes OUT/results.json (every bench document), OUT/table.md (Markdown tables) and
OUT/latency_vs_k.png. Needs the offline extra (torch, matplotlib) for --drn, PyTorch CUDA
and the plot.

    python benchmarks/bench_grid.py --out bench-results                # CPU grid, ~2 min
    python benchmarks/bench_grid.py --out bench-results --drn --drn-iters 3
    python benchmarks/bench_grid.py --out /tmp/b --k 1,2 --iters 2 --no-plot   # what CI runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_guard.bench import markdown_table, run_bench
from edge_guard.errors import exit_status
from edge_guard.paths import DEFAULT_BUNDLE

ROOT = Path(__file__).resolve().parent


def log(line: str) -> None:
    print(f"  {line}", flush=True)


def gpu_available() -> bool:
    try:
        from edge_guard.kernels.device import gpu_count

        return gpu_count() > 0
    except Exception:
        return False


def torch_cuda_runner(checkpoint, arch=None, half=False, name="torch"):
    """A FunctionRunner factory for PyTorch CUDA (fp16 autocast with ``half``) and its
    full-frame runner: the same callable serves patches and frames."""
    import torch

    from edge_guard.backends import FunctionRunner
    from edge_guard.calibration.models import labels_of
    from edge_guard.calibration.models.checkpoint import load_segmenter

    segmenter, _ = load_segmenter(checkpoint, arch=arch)
    segmenter = segmenter.eval().cuda()
    provider = f"PyTorch CUDA {'fp16' if half else 'fp32'}"

    def segment(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).cuda(non_blocking=True)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=half):
            return labels_of(segmenter(x)).to(torch.int32).cpu().numpy()

    def factory(bundle, k):
        return FunctionRunner(segment, provider=provider, name=name)

    return factory, FunctionRunner(segment, provider=provider, name=name)


def random_drn_bundle(out: Path) -> Path:
    """DRN-D-22 with random weights exported for 512px patches and 1024x2048 frames (timing only)."""
    import torch

    from edge_guard.calibration.models import build_segmenter
    from edge_guard.calibration.models.checkpoint import save_checkpoint
    from edge_guard.export.exporter import export_bundle

    root = out / "drn_d_22_random"
    if (root / "segment.onnx").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    ckpt = root / "drn_d_22_random.pt"
    save_checkpoint(ckpt, build_segmenter("drn_d_22"))
    export_bundle(ckpt, root, patch=512, frames=1, pairs=2, segment_frame=(1024, 2048), log=log)
    return root


def plot(docs: list, path: Path) -> None:
    """The guard's extra (labels given) against K, one line per bench and detector; dotted:
    plain segmentation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for doc in docs:
        colour = None
        for detector in doc["settings"].get("detectors", ["pairs"]):
            runs = [r for r in doc["runs"] if r.get("detector", "pairs") == detector]
            if len(runs) < 2:
                continue
            line, = ax.plot([r["k"] for r in runs], [r["stages"]["total"]["mean"] for r in runs],
                            "o-" if detector == "frame" else "s--", color=colour,
                            label=f"{doc['label']}: {detector}")
            colour = line.get_color()
        if doc.get("segmentation") and colour is not None:
            ax.axhline(doc["segmentation"]["total"]["mean"], ls=":", lw=1, color=colour)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("K (patches: frame detector; pairs: pairs detector)")
    ax.set_ylabel("guard's extra per frame (ms, mean)")
    ax.set_title("edge-guard latency vs K (dotted: plain segmentation)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--bundle", default=None, help="bundle (default: the shipped one)")
    parser.add_argument("--k", "--pairs", dest="pairs", default="1,5,10,50",
                        help="K values: patches (frame detector) or pairs (pairs detector)")
    parser.add_argument("--detector", choices=("frame", "pairs", "both"), default="both")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads-grid", action="store_true", help="also run the CPU with 1 thread")
    parser.add_argument("--drn", action="store_true", help="also DRN-D-22 at 1024x2048, s=512")
    parser.add_argument("--drn-k", "--drn-pairs", dest="drn_pairs", default="1,5")
    parser.add_argument("--drn-iters", type=int, default=3)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--no-kernels", action="store_true", help="skip benchmarks/kernel_bench.py")
    args = parser.parse_args(argv)
    pairs = [int(v) for v in args.pairs.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or DEFAULT_BUNDLE
    docs = []

    def bench(label, **kw):
        print(f"# {label}", flush=True)
        doc = run_bench(**kw, log=log).as_dict()
        doc["label"] = label
        docs.append(doc)

    common = dict(iters=args.iters, warmup=args.warmup, detectors=args.detector)
    bench("edge_small, ONNX Runtime CPU (all cores)", bundle_dir=bundle, backend="onnxruntime-cpu",
          pairs=pairs, **common)
    if args.threads_grid:
        bench("edge_small, ONNX Runtime CPU (1 thread)", bundle_dir=bundle, backend="onnxruntime-cpu",
              pairs=pairs, threads=1, **common)
    gpu = gpu_available()
    if gpu:
        from edge_guard.backends.select import select_backend
        from edge_guard.bench import open_bundle

        choice = select_backend(open_bundle(bundle))
        if choice.backend != "onnxruntime-cpu":
            bench(f"edge_small, {choice.backend} (auto)", bundle_dir=bundle, backend="auto", pairs=pairs, **common)
        else:
            print(f"# no GPU inference backend: {choice.note}")
        if choice.backend != "tensorrt":
            from edge_guard.paths import DEFAULT_MODEL

            for half in (False, True):
                factory, seg = torch_cuda_runner(DEFAULT_MODEL, half=half)
                bench(f"edge_small, PyTorch CUDA {'fp16' if half else 'fp32'}", bundle_dir=bundle,
                      pairs=pairs, runner_factory=factory, segmenter=seg, **common)
    if args.drn:
        drn = random_drn_bundle(args.out)
        drn_pairs = [int(v) for v in args.drn_pairs.split(",")]
        drn_common = dict(iters=args.drn_iters, warmup=1, frame=(1024, 2048), pairs=drn_pairs,
                          detectors=args.detector)
        bench("DRN-D-22 (random weights), ONNX Runtime CPU", bundle_dir=drn, backend="onnxruntime-cpu",
              **drn_common)
        if gpu:
            for half in (False, True):
                factory, seg = torch_cuda_runner(drn / "drn_d_22_random.pt", half=half)
                bench(f"DRN-D-22 (random weights), PyTorch CUDA {'fp16' if half else 'fp32'}",
                      bundle_dir=drn, runner_factory=factory, segmenter=seg, **drn_common)
    if not args.no_kernels:
        print("# consistency step: benchmarks/kernel_bench.py", flush=True)
        subprocess.run([sys.executable, str(ROOT / "kernel_bench.py"), "--json", str(args.out / "kernels.json"),
                        "--runs", "20"], check=True)

    (args.out / "results.json").write_text(json.dumps(docs, indent=1) + "\n")
    table = "\n".join(f"### {d['label']}\n\n{markdown_table(d)}" for d in docs)
    (args.out / "table.md").write_text(table)
    if not args.no_plot:
        plot(docs, args.out / "latency_vs_k.png")
    print(f"wrote {args.out}/results.json, table.md" + ("" if args.no_plot else ", latency_vs_k.png"))
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "bench_grid.py"))
