"""Iterations per second of the attacks (one forward + backward + projection + 8-bit
rounding each), --batch images at once (default 1), edge_small with random weights unless
--checkpoint. It prints the peak GPU memory of each attack on CUDA, the process's peak
resident memory so far on the CPU (an upper bound on what the attack itself holds).

    python benchmarks/attack_speed.py                            # CPU, 256x512 and 512x1024
    python benchmarks/attack_speed.py --device cuda --arch drn_d_22 --sizes 1024x2048
    python benchmarks/attack_speed.py --adaptive spatial --k-attack 10
    python benchmarks/attack_speed.py --adaptive frame-agree --sizes 512x1024   # K_attack 5, 256 px patches
    python benchmarks/attack_speed.py --device cuda --sizes 512x1024 --batch 1 8 32
    python benchmarks/attack_speed.py --no-fuse      # BatchNorm kept as its own layer (A/B)

The attack never stops early here (threshold 1.0), so every image runs --iters steps.
"""

import argparse
import resource
import sys
import time

import torch

from edge_guard.calibration.attacks import ADAPTIVE, ATTACKS, PLAIN_ONLY, make_views
from edge_guard.calibration.attacks.run import detector_geometry
from edge_guard.calibration.models import build_segmenter
from edge_guard.calibration.models.checkpoint import load_segmenter
from edge_guard.calibration.models.fusion import fuse_segmenter
from edge_guard.errors import exit_status


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="edge_small")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--sizes", default="256x512,512x1024")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--adaptive", default=None, choices=ADAPTIVE)
    p.add_argument("--k-attack", type=int, default=5,
                   help="patches (pairs for spatial-pairs) per step of a spatial or frame attack (default 5)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="images attacked together")
    p.add_argument("--no-fuse", action="store_true",
                   help="keep BatchNorm as its own layer (the attack commands fold it into the convolutions)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model, meta = load_segmenter(args.checkpoint)
        arch = meta.get("model") or args.arch
    else:
        model, arch = build_segmenter(args.arch), args.arch
    model = model.eval()
    model = model.to(args.device)
    for q in model.parameters():
        q.requires_grad_(False)
    if not args.no_fuse:
        model = fuse_segmenter(model)
    cuda = args.device.startswith("cuda")
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        # the patches `attack` and `evaluate` use at this frame height (s = H/2)
        views = make_views(args.adaptive, args.k_attack, *detector_geometry(h))
        for n in args.batch:
            x = (torch.randint(0, 256, (n, 3, h, w)).float() / 255).to(args.device)
            target = torch.full((n, h, w), 13, dtype=torch.long, device=args.device)
            for name, attack in ATTACKS.items():
                if name in PLAIN_ONLY:  # adv_lib's: an optional extra, timed by adv_lib_crosscheck.py
                    continue
                attack(model, x, target, max_iter=1, threshold=1.0, quantize=True, views=views)  # warm-up
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                res = attack(model, x, target, max_iter=args.iters, threshold=1.0, quantize=True,
                             views=views, l2=0.06 if views else None)
                if cuda:
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                # each of the --iters steps is a forward and a backward; the run adds one
                # final forward (the quantised image's success), counted in the time
                per_step = dt / args.iters
                if cuda:
                    memory = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
                else:  # the process's high-water mark so far: weights, activations and gradients
                    memory = f", peak process memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
                print(f"{arch} {h}x{w} batch {n} {name:8s} adaptive={args.adaptive} device={args.device} "
                      f"fused={not args.no_fuse} threads={args.threads}: {1 / per_step:.2f} it/s, {n / per_step:.1f} "
                      f"image-it/s ({per_step:.3f} s per step){memory}", flush=True)

if __name__ == "__main__":
    sys.exit(exit_status(main, "attack_speed.py"))
