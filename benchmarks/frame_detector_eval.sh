#!/usr/bin/env bash
# Issue 22's measurements, end to end, as committed in reports/2026-12-06-frame-detector/.
#
#   bash benchmarks/frame_detector_eval.sh            # everything (CPU: about a working day)
#   STAGE=dev bash benchmarks/frame_detector_eval.sh  # one stage: data, attacks, dev, study, test,
#                                                     # adaptive, tables, conditions, bench, demo
#
# WORK (default /work/eval-22) holds the generated frames, the attack folders and the score
# caches; REPORT (default reports/2026-12-06-frame-detector) gets what is committed. On a GPU
# add DEVICE=cuda (and BATCH=16): it changes nothing but the clock.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/work/eval-22}
REPORT=${REPORT:-reports/2026-12-06-frame-detector}
DEVICE=${DEVICE:-cpu}
BATCH=${BATCH:-1}
STAGE=${STAGE:-all}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK" "$REPORT"
EV="edge-guard evaluate --device $DEVICE --batch $BATCH --quiet"

run() { [[ $STAGE == all || $STAGE == "$1" ]]; }

# Frames: dev = the generated val split (seed 1: the shipped model's validation frames),
# test = the test split (seed 1, never used for a choice), calibration = val seed 21.
if run data; then
  edge-guard generate --out "$WORK/scenes" --split val --frames 100 --seed 1 --workers 2
  edge-guard generate --out "$WORK/scenes" --split test --frames 100 --seed 1 --workers 2
  edge-guard generate --out "$WORK/calib" --split val --frames 1100 --seed 21 --workers 2
fi

# The attacks: two chains side by side, one per attack method (one core each), each running
# its method's dev, test and adaptive cells; evaluate resumes, so a chain can be re-run.
# The chains share one attack folder per split (OUT/attacks links to it).
DEV=(--split val --benign 100 --adversarial 10 --targets pure,emblem --ks 1,5,10 --skip adaptive,fig3,fig7,fig8)
TEST=(--split test --benign 100 --adversarial 30 --targets pure,scene,emblem --ks 1,5,10,20 --skip adaptive,fig3,fig7,fig8)
ADAPTIVE=(--split test --benign 100 --adversarial 10 --targets pure --ks 1,5,10,20 --k-attack 0,5 --k-pairs 0
          --k-frame 5 --k-agree 5 --skip scale-adaptive,fig3,fig7,fig8)
ev() {  # ev OUT SHARED-ATTACKS ARGS...
  local out=$1 shared=$2; shift 2
  mkdir -p "$WORK/$out" "$WORK/$shared"
  [[ -e "$WORK/$out/attacks" ]] || ln -sfn "$WORK/$shared" "$WORK/$out/attacks"
  $EV --data "$WORK/scenes" --out "$WORK/$out" "$@"
}
chain() {  # chain METHOD: its attack cells, in the order the study needs them (the dev split
  # decides the statistic; the adaptive cells are where a design can fail; then the long haul)
  local m=$1
  ev "dev-$m" attacks-dev --methods "$m" "${DEV[@]}"
  ev "adaptive-$m" attacks-test --methods "$m" "${ADAPTIVE[@]}"
  ev "test-$m" attacks-test --methods "$m" "${TEST[@]}"
}
if run attacks; then
  chain dag > "$WORK/chain-dag.log" 2>&1 &
  chain houdini > "$WORK/chain-houdini.log" 2>&1
  wait
fi

# The tables: both methods together, from the attack folders above (nothing is attacked).
if run dev; then ev dev attacks-dev --methods dag,houdini "${DEV[@]}"; fi
if run study; then
  python benchmarks/frame_study.py --data "$WORK/scenes" --split val --benign 100 \
      --attacks "$WORK"/attacks-dev/*_plain_* --patches 256,192 --k 5 --k-max 10 --out "$REPORT/dev-study"
fi
if run test; then ev test attacks-test --methods dag,houdini "${TEST[@]}"; fi
if run adaptive; then ev adaptive attacks-test --methods dag,houdini "${ADAPTIVE[@]}"; fi
# Both spatial detectors, every statistic, bootstrap intervals and the rate at the bundles'
# thresholds, from the chains' score caches; every frame's score goes to scores.json.gz.
# (The committed tables came from the same cells run as separate OUTs, one per core:
#  frame_tables.py test-pure test-scene-houdini test-dag test-emblem-dag test-emblem-houdini
#  adaptive-dag adaptive-dag-agree adaptive-houdini; reports/.../evaluate/README.md has each.)
if run tables; then
  python benchmarks/frame_tables.py "$WORK"/adaptive-{dag,houdini} "$WORK"/test-{dag,houdini} \
      --bundle edge_guard/assets/bundle --pairs-bundle "$WORK/pairs-bundle" \
      --md "$REPORT/tables.md" --summary "$REPORT/summary.md" --json "$REPORT/scores.json.gz"
fi

# Benign camera conditions on the test frames, both detectors at their calibrated thresholds:
# the shipped bundle (frame, miou-min, its threshold held under every condition) and the
# paper's pair detector calibrated as the paper does, on clean frames only.
if run conditions; then
  edge-guard calibrate --data "$WORK/calib" --out "$WORK/pairs-bundle" --detector pairs --statistic miou \
      --conditions none --calib-frames 1000 --holdout-frames 100 --quiet
  python benchmarks/conditions.py --data "$WORK/scenes" --split test --frames 100 \
      --bundle edge_guard/assets/bundle --bundle "$WORK/pairs-bundle" --json "$REPORT/conditions.json"
fi

if run bench; then
  OMP_NUM_THREADS= edge-guard bench --pairs 5 --iters 50 --detector both --json "$REPORT/bench.json"
fi

# The demo, ten times (the patches differ every run).
if run demo; then
  for i in $(seq 1 10); do
    OMP_NUM_THREADS= edge-guard demo --out "$WORK/demo$i" | tee "$WORK/demo$i.txt"
  done
  python benchmarks/demo_runs.py "$WORK"/demo{1..10} --json "$REPORT/demo_runs.json"
fi
