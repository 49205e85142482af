#!/usr/bin/env bash
# One short GPU lease, prepared: GPU tests and benchmarks, a training stage, then the paper's
# evaluation in growing grids, each stage bounded so that what finished comes back.
#
#   bash benchmarks/gpu_lease.sh                 # on the GPU machine, from the repository root
#   SMOKE=1 OUT=/tmp/o bash benchmarks/gpu_lease.sh   # a CPU dry run of every stage (minutes)
#
# Writes to $OUT: log.txt, kernel_bench.json, seg.json (mIoU of the trained model), model.pt
# (the training checkpoint, optimiser included), eval.tgz (results.json, report.md, scores,
# manifests; no adversarial images) and eval_png.tgz (the figures).
#
# Settings (environment):
#   DEADLINE=560       seconds after which nothing new starts and running stages are stopped
#   TRAIN_SECONDS=0    the training stage's budget (0: no training, evaluate the shipped model)
#   TRAIN_ARGS=...     extra `edge-guard train` options (default: fine-tune the shipped model)
#   TABLE=plain        issue 4's attack table first (benchmarks/attack_table.py, every target,
#                      these kinds; empty: none); its plain pure/emblem folders are the grids'
#   GRIDS=...          `;`-separated `edge-guard evaluate` option sets, run in order; each reuses
#                      the attacks and scores of the ones before and writes a complete report
#   TESTS=1 BENCH=1    GPU tests and benchmarks first (0 to skip)
#   WORK=/tmp/gpu_lease scenes, attacks and scores (a dry run: a fresh temporary folder)
#
# Grids split across leases: unpack every lease's eval.tgz (and eval_png.tgz) into one folder
# and rebuild the report there without the images (same model file, same settings):
#   edge-guard evaluate --model M --data scenes --out eval --batch 50 <grid options> --cached-only
#
# The working directory must be a throwaway copy (the device tool's is): the offline
# packages are linked into edge_guard/ as pyproject's package-dir maps them, because an
# editable install may be impossible there and the working directory comes first on sys.path.
set -u
REPO=$PWD
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# Scenes, attacks and scores: kept on a warm machine so that a second call resumes the grids;
# a dry run gets a fresh folder (another checkout's attack folders would be another model path).
if [ -z "${SMOKE:-}" ]; then WORK=${WORK:-/tmp/gpu_lease}; else WORK=${WORK:-$(mktemp -d /tmp/gpu_lease_smoke.XXXX)}; fi
mkdir -p "$WORK"
DEADLINE=${DEADLINE:-560}
TRAIN_SECONDS=${TRAIN_SECONDS:-0}
TABLE=${TABLE-plain}
PY=${PY:-python3}
exec > >(tee -a "$OUT/log.txt") 2>&1
t() { echo "[T+${SECONDS}s] $*"; }
left() { echo $(( DEADLINE - SECONDS )); }

if [ -z "${SMOKE:-}" ]; then
  for d in calibration export kernels; do ln -sfn "$REPO/$d" "$REPO/edge_guard/$d"; done
  FR=1500; VAL=100; SIZE=512x1024; GW=14; BENIGN=100; ADV=50; BATCH=50; EXTRA=""; DEV=cuda
  WORKERS=12; CROP=512; BS=16; TABLE_EXTRA=""
else  # every stage, tiny, on the CPU
  FR=12; VAL=6; SIZE=128x256; GW=2; BENIGN=4; ADV=2; BATCH=2; DEV=cpu; WORKERS=0; CROP=96; BS=4
  TABLE_EXTRA="--frame 128x256 --patch 96 --b-low 6 --b-high 12 --max-iter 3"
  EXTRA="$TABLE_EXTRA --ks 1,5 --targets pure"
  TESTS=${TESTS:-0}; BENCH=${BENCH:-0}
fi
export PYTHONPATH=$REPO PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
eg() { $PY -m edge_guard "$@"; }
TRAIN_ARGS=${TRAIN_ARGS:---init $REPO/edge_guard/assets/edge_small.pt --lr 1e-3}
GRIDS=${GRIDS:---methods dag,houdini --targets pure --k-attack 0,5 --k-pairs 0 --skip fig7,fig8;--k-attack 0,5 --skip fig7,fig8;--k-attack 0,1,5,10 --skip fig8;--k-attack 0,1,5,10,50 --skip fig8}

t "start $(date -u) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null)"
$PY -c "import torch, numpy, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'cv2', cv2.__version__)"

# 1. scenes on the CPUs while the GPU runs the tests and benchmarks
t "generate train $FR + val $VAL"
( eg generate --out $WORK/scenes --split train --frames $FR --size $SIZE --seed 1 --workers $GW >$WORK/gen_train.log 2>&1 ) & G1=$!
( eg generate --out $WORK/scenes --split val --frames $VAL --size $SIZE --seed 1 --workers 2 >$WORK/gen_val.log 2>&1 ) & G2=$!
if [ "${TESTS:-1}" = 1 ]; then
  t "pytest -m gpu"
  timeout 150 $PY -m pytest -m gpu -q -p no:cacheprovider -rs tests 2>&1 | tail -15
fi
if [ "${BENCH:-1}" = 1 ]; then
  t "kernel and attack benchmarks"
  timeout 60 $PY benchmarks/kernel_bench.py --json "$OUT/kernel_bench.json" 2>&1 | tail -8
  timeout 60 $PY benchmarks/attack_speed.py --device cuda --sizes 512x1024 --batch 1 8 50 --iters 10 2>&1 | tail -6
  timeout 30 $PY benchmarks/attack_speed.py --device cuda --sizes 512x1024 --batch 50 --iters 10 --no-fuse 2>&1 | tail -2
  # Issue 4's memory bound: full Cityscapes frames with DRN-D-22 at batch 1 within a 16 GB GPU.
  timeout 60 $PY benchmarks/attack_speed.py --device cuda --arch drn_d_22 --sizes 1024x2048 --iters 5 2>&1 | tail -3
fi
wait $G1 $G2  # never a bare wait: it would wait for the log's tee too
t "data: $(find $WORK/scenes/leftImg8bit/train -name '*.png' | wc -l) train, $(find $WORK/scenes/leftImg8bit/val -name '*.png' | wc -l) val"

# 2. training: a short probe measures the steady speed, then the budget sets the steps
MODEL=$REPO/edge_guard/assets/edge_small.pt
if [ "$TRAIN_SECONDS" -gt 0 ]; then
  t "probe"
  eg train --data $WORK/scenes --out $WORK/probe.pt --overwrite --steps 60 --batch-size $BS --crop $CROP --workers $WORKERS \
     --preload --device $DEV $TRAIN_ARGS >$WORK/probe.log 2>&1
  STEPS=$($PY - <<PY
import json
line = [l for l in open("$WORK/probe.log").read().splitlines() if l.startswith("{")][-1]
rate = json.loads(line)["steps_per_s_steady"] or 1.0
budget = $TRAIN_SECONDS - 15  # the full run's own start: preload, loaders, cuDNN search
print(max(10, int(budget * rate)) if not "${SMOKE:-}" else 3)
PY
)
  t "train $STEPS steps"
  timeout $(left) $PY -m edge_guard train --data $WORK/scenes --out $WORK/model.pt --overwrite --steps $STEPS --batch-size $BS \
     --crop $CROP --workers $WORKERS --preload --device $DEV --save-every 500 $TRAIN_ARGS 2>&1 | tail -c 400
  cp $WORK/model.pt "$OUT/model.pt" && MODEL=$WORK/model.pt
fi
t "segmentation quality of $MODEL"
eg evaluate-seg --model $MODEL --data $WORK/scenes --split val --device $DEV --json "$OUT/seg.json" 2>&1 | tail -3

# 3. issue 4's attack table, then the evaluation in growing grids (one attack folder for both)
pack() { (cd $WORK/eval && tar czf "$OUT/eval.tgz" --exclude='*.png' --exclude='.lock' . && tar czf "$OUT/eval_png.tgz" ./*.png) 2>/dev/null; }
TABLE_ARGS="--model $MODEL --data $WORK/scenes --out $WORK/eval --frames $ADV --round $ADV --batch $BATCH \
  --device $DEV --targets pure,emblem,scene,remap,strip,text $TABLE_EXTRA"
if [ -n "$TABLE" ] && [ $(left) -gt 60 ]; then
  t "attack table: $TABLE ($(left)s left)"
  # shellcheck disable=SC2086
  timeout $(left) $PY benchmarks/attack_table.py $TABLE_ARGS --adaptive $TABLE --quiet 2>&1 | tail -16
  pack
fi
IFS=';' read -ra GRID <<< "$GRIDS"
for g in "${GRID[@]}"; do
  [ $(left) -lt 20 ] && break
  t "evaluate $g ($(left)s left)"
  # shellcheck disable=SC2086  # each grid is a list of options
  timeout $(left) $PY -m edge_guard evaluate --model $MODEL --data $WORK/scenes --split val --out $WORK/eval \
     --benign $BENIGN --adversarial $ADV --batch $BATCH --device $DEV --quiet $EXTRA $g 2>&1 | tail -3
  pack
done
# shellcheck disable=SC2086
$PY benchmarks/attack_table.py $TABLE_ARGS --adaptive plain,scale,spatial,spatial-pairs --report-only 2>&1 | tail -40
t "done"
