#!/bin/bash
# Induction heads at the Mamba paper's scale (§4.1.2; /work/shared/reference/mamba.md §7): trained
# at 256 tokens, vocabulary 16, 2 layers of d_model 64, batch 8, 8192 steps, Adam without weight
# decay at a constant learning rate of 1e-3; then answer accuracy at 1×–64× the training length.
# A Mamba and a Samba (2 blocks, window 128) train side by side. On a GPU (minutes), from the repo root:
#
#   source .gpu/enter.sh && bash experiments/synthetic/paper-scale.sh 400
#
# The argument bounds the training time in seconds (0: none); a run stopped there resumes from its
# last checkpoint when the command is run again (on a leased machine: while it is still warm).
# Runs go to the git-ignored experiments/synthetic/gpu-runs/; with $OUT set, their logs, JSON and
# plots come back as $OUT/synthetic.tgz. Move what you keep to experiments/synthetic/runs-paper/.
# LR=2e-4 (the paper's other rate) and MODELS="samba" select other runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${1:-0}
CLI="node ${DIST:-dist}/src/cli/main.js"
RUNS=${RUNS:-experiments/synthetic/gpu-runs}
BACKEND=${BACKEND:-webgpu}
STEPS=${STEPS:-8192}
LENGTHS=${LENGTHS:-256,1k,4k,16k}
LR=${LR:-1e-3}                # the paper tried 2e-4 and 1e-3; runs at another rate are named …-lr<LR>
MODELS=${MODELS:-mamba samba}
SUFFIX=$([ "$LR" = 1e-3 ] || echo "-lr$LR")
mkdir -p "$RUNS"

run() { # name, model options
  local name=$1; shift
  local out="$RUNS/$name" limit=()
  [ "$LIMIT" != 0 ] && limit=(timeout "$LIMIT")
  if [ ! -f "$out/eval.json" ]; then
    if [ -f "$out/checkpoint/train-state.safetensors" ]; then
      "${limit[@]}" $CLI train --resume "$out" --backend "$BACKEND" 2>> "$out/train.log"
    else
      mkdir -p "$out"
      "${limit[@]}" $CLI train "$@" --task induction-heads --task-vocab 16 --seq-len 256 --batch 8 --steps "$STEPS" \
        --lr "$LR" --min-lr "$LR" --warmup 0 --weight-decay 0 --eval-every 512 --eval-batches 4 --save-every 256 --log-every 128 \
        --seed 1 --backend "$BACKEND" --out "$out" 2> "$out/train.log"
    fi
    local rc=$?
    tail -n 2 "$out/train.log"
    [ $rc -eq 0 ] || { echo "$name: training stopped (rc $rc); run again to resume"; return; }
    $CLI eval task --model "$out" --lengths "$LENGTHS" --trials 128 --seed 7 --backend "$BACKEND" --json "$out/eval.json" | tee "$out/eval.txt"
  fi
}

for m in $MODELS; do
  case $m in
    mamba) run "ih256-mamba$SUFFIX" --arch mamba --d-model 64 --blocks 2 & ;;
    samba) run "ih256-samba$SUFFIX" --arch samba --d-model 64 --blocks 2 --heads 4 --window 128 & ;;
    *) echo "unknown model $m (mamba, samba)" >&2; exit 2 ;;
  esac
done
wait
node experiments/synthetic/summary.mjs "$RUNS" | tee "$RUNS/summary.md"
if [ -n "${OUT:-}" ]; then
  tar -C "$RUNS" --exclude=checkpoint --exclude=checkpoint.tmp --exclude=checkpoint.old -czf "$OUT/synthetic.tgz" . && echo "packed into \$OUT/synthetic.tgz"
fi
