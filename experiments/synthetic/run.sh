#!/bin/bash
# Selective copying and induction heads (Mamba paper §4.1; issue 5 item 4) at CPU scale: tiny Mamba
# and Samba models trained with `samba-lm train --task`, then evaluated through the streaming state
# at the training length and far beyond it. Logs and results land in experiments/synthetic/runs/
# (checkpoints are git-ignored). Usage: bash experiments/synthetic/run.sh [NAME ...] (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
CLI="node ${DIST:-dist}/src/cli/main.js"
RUNS=experiments/synthetic/runs
BACKEND=${BACKEND:-cpu}
mkdir -p "$RUNS"

# name | model | task | seq-len | steps | extra training options | eval lengths
RUNS_TABLE=(
  "ih-mamba|--arch mamba --d-model 32 --blocks 2|--task induction-heads --task-vocab 8|32|1000||32,128,512,2048"
  "ih-samba|--arch samba --d-model 32 --blocks 2 --heads 2 --window 16|--task induction-heads --task-vocab 8|32|1000||32,128,512,2048"
  "ih-mamba-carry|--arch mamba --d-model 32 --blocks 2|--task induction-heads --task-vocab 8|32|1000|--carry-state 0.1|32,128,512,2048"
  "ih-samba-carry|--arch samba --d-model 32 --blocks 2 --heads 2 --window 16|--task induction-heads --task-vocab 8|32|1000|--carry-state 0.1|32,128,512,2048"
  "sc-mamba|--arch mamba --d-model 32 --blocks 2|--task selective-copy --task-vocab 10 --task-tokens 8|64|1000||64,256"
  "sc-samba|--arch samba --d-model 32 --blocks 2 --heads 2 --window 16|--task selective-copy --task-vocab 10 --task-tokens 8|64|1000||64,256"
  "sc4-mamba|--arch mamba --d-model 32 --blocks 2|--task selective-copy --task-vocab 10 --task-tokens 4|32|2000||32,128"
  "sc4-samba|--arch samba --d-model 32 --blocks 2 --heads 2 --window 8|--task selective-copy --task-vocab 10 --task-tokens 4|32|2000||32,128"
)

want=("$@")
for row in "${RUNS_TABLE[@]}"; do
  IFS='|' read -r name model task len steps extra lengths <<< "$row"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " $name " ]]; then continue; fi
  out="$RUNS/$name"
  if [ ! -f "$out/eval.json" ]; then
    rm -rf "$out"
    echo "== $name: train ($model $task --seq-len $len --steps $steps $extra)"
    # shellcheck disable=SC2086
    $CLI train $model $task --seq-len "$len" --batch 16 --steps "$steps" --lr 1e-2 --warmup 20 \
      --eval-every 200 --eval-batches 4 --save-every 200 --log-every 50 --seed 1 --backend "$BACKEND" $extra --out "$out" 2> "$out.train.log" || { cat "$out.train.log"; exit 1; }
    mv "$out.train.log" "$out/train.log"
    # shellcheck disable=SC2086
    $CLI eval task --model "$out" --lengths "$lengths" --trials 128 --seed 7 --backend "$BACKEND" --json "$out/eval.json" | tee "$out/eval.txt"
  fi
done
node experiments/synthetic/summary.mjs "$RUNS" | tee "$RUNS/summary.md"
