"""The attack cache's size per frame against whole PNG frames: every cell of an evaluate --out.

    python reports/2026-12-06-eval-grid/cache_sizes.py /work/grid23/cpu256 > cache_sizes.txt
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_guard.calibration.attacks.store import read_adversarial

rows = []
for folder in sorted((Path(sys.argv[1]) / "attacks").iterdir()):
    images = json.loads((folder / "manifest.json").read_text())["images"]
    sizes = []
    for rec in images.values():
        adv = read_adversarial(folder, rec)  # rebuilt from the perturbation, as evaluate scores it
        png = cv2.imencode(".png", cv2.cvtColor(adv, cv2.COLOR_RGB2BGR))[1]
        targets = sum((folder / rec[k]).stat().st_size for k in ("target", "target_color"))
        sizes.append(((folder / rec["adversarial"]).stat().st_size, len(png), targets))
    d, p, t = np.mean(sizes, axis=0) / 1024
    rows.append((d, p, t))
    print(f"{folder.name.rsplit('_', 1)[0]:32s} {len(sizes)} frames: perturbation {d:5.0f} KB, "
          f"whole PNG {p:5.0f} KB, targets {t:3.0f} KB")
d, p, t = np.mean(rows, axis=0)
print(f"mean over {len(rows)} cells: perturbation {d:.0f} KB + targets {t:.0f} KB per frame; "
      f"the frame as PNG {p:.0f} KB ({1 - d / p:.0%} smaller)")
