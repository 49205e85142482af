#!/bin/bash
# Issue 23's grid: every detector against DAG, Houdini, SegPGD and masked-CE PGD (4/255, 8/255),
# adv_lib's DAG and ALMA-prox, plain and adaptive, pure and scene targets.
#
#   STAGE=cpu      bash benchmarks/eval_grid.sh   # 256x512, 6 frames per cell (2-core CPU: ~1.5 h)
#   STAGE=headline bash benchmarks/eval_grid.sh   # 512x1024, the fixed-budget headline cells (~15 min)
#   STAGE=full     bash benchmarks/eval_grid.sh   # 512x1024, 50 frames, every cell (a GPU, or --ray)
#   STAGE=tables   bash benchmarks/eval_grid.sh   # the report's tables and per-frame scores
#
# Each stage prints its plan first (`--plan` alone: PLAN=1). WORK holds the frames and the
# evaluate folders (their attack caches resume); EXTRA passes more flags (e.g. --ray HEAD:6379,
# --device cuda --batch 8). adv_lib: pip install --no-deps adv-lib.
set -euo pipefail
WORK=${WORK:-/work/grid23}
DATA=${DATA:-/work/data/scenes}   # edge-guard generate --out DATA --split test --frames 100 --seed 1
REPORT=${REPORT:-reports/2026-12-06-eval-grid}
EXTRA=${EXTRA:-}
PLAN=${PLAN:+--plan}
ALL="dag,houdini,segpgd,maskedce,adv_lib.dag,adv_lib.alma_prox"
common=(--data "$DATA" --split test --ks 1,5,10 --stds 0.5,3,5 --k-attack 0,5 --k-pairs 0 --k-frame 5
        --k-agree 0 --linf 4/255,8/255 --targets pure,scene --max-iter 200 --benign 100 --skip fig3,fig8)

case "${STAGE:?set STAGE=cpu, headline, full or tables}" in
  cpu)
    # 1. every cell on the pure target, plain and adaptive on both spatial detectors
    edge-guard evaluate "${common[@]}" --out "$WORK/cpu256" --frame 256x512 --patch 128 --b-low 8 --b-high 16 \
      --methods "$ALL" --targets pure --adversarial 6 --skip fig3,fig8,scale-adaptive $PLAN $EXTRA
    [ -n "$PLAN" ] || cp "$WORK/cpu256/results.json" "$WORK/cpu256/results-pure.json"
    # 2. the plain cells on both targets (the pure ones from the cache)
    edge-guard evaluate "${common[@]}" --out "$WORK/cpu256" --frame 256x512 --patch 128 --b-low 8 --b-high 16 \
      --methods "$ALL" --targets pure,scene --adversarial 6 --skip fig3,fig8,adaptive $PLAN $EXTRA
    [ -n "$PLAN" ] || cp "$WORK/cpu256/results.json" "$WORK/cpu256/results-plain.json"
    # 3. scale-adaptive cells cost 3-10x a plain step at this size (the frame and three blurs):
    # the scale detector's adaptive rows, DAG and SegPGD 8/255, 3 frames. Its plain cells are
    # the first call's (same settings, same folder key): copied, not attacked again.
    mkdir -p "$WORK/cpu256-scale/attacks"
    cp -rn "$WORK"/cpu256/attacks/{dag,segpgd8}_pure_plain_* "$WORK/cpu256-scale/attacks/" 2>/dev/null || true
    edge-guard evaluate "${common[@]}" --out "$WORK/cpu256-scale" --frame 256x512 --patch 128 --b-low 8 \
      --b-high 16 --methods dag,segpgd --linf 8/255 --targets pure --adversarial 3 --k-frame 0 --k-attack 0 \
      --skip fig3,fig8 $PLAN $EXTRA
    ;;
  headline)
    edge-guard evaluate "${common[@]}" --out "$WORK/headline512" --frame 512x1024 --patch 256 --b-low 16 \
      --b-high 32 --methods segpgd,maskedce --linf 8/255 --targets pure --k-attack 0 --adversarial 4 \
      --skip fig3,fig8,adaptive $PLAN $EXTRA
    ;;
  full)
    edge-guard evaluate "${common[@]}" --out "$WORK/full512" --frame 512x1024 --patch 256 --b-low 16 --b-high 32 \
      --methods "$ALL" --adversarial 50 --k-agree 5 $PLAN $EXTRA
    ;;
  tables)
    mkdir -p "$REPORT"
    for run in cpu256:results-plain cpu256:results-pure cpu256-scale:results headline512:results full512:results; do
      out=${run%%:*} results=${run##*:}
      [ -f "$WORK/$out/$results.json" ] || continue
      name=$out${results#results}
      python benchmarks/grid_report.py "$WORK/$out" --results "$results.json" --k 5 --std 3 \
        --md "$REPORT/$name.md" --json "$REPORT/$name-frames.json.gz"
      gzip -9 -c "$WORK/$out/$results.json" > "$REPORT/$out-$results.json.gz"
      mkdir -p "$REPORT/scores/$out"
      for f in "$WORK/$out"/scores/*.json; do gzip -9 -c "$f" > "$REPORT/scores/$out/$(basename "$f").gz"; done
    done
    python "$REPORT/cache_sizes.py" "$WORK/cpu256" > "$REPORT/cache_sizes.txt"
    ;;
  *) echo "unknown STAGE=$STAGE" >&2; exit 2 ;;
esac
