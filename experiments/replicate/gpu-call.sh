#!/usr/bin/env bash
# One call of the device tool: run.sh until a deadline, then stop it, which loses at most
# SAVE_EVERY steps per model (run.sh resumes from the checkpoints on the next call if the machine is
# still warm). Logs, JSON, SVG and the summary, without weights, are copied to $OUT.
# From the repository root on the GPU host, carrying .gpu, dist and data/corpus-pack:
#
#   source .gpu/enter.sh && bash experiments/replicate/gpu-call.sh 540 --steps 600
#
# The first argument is the deadline in seconds; keep it ~40 s under the call's limit for the copy.
# The rest are run.sh's options. Progress is printed as it happens. Do not pipe it through tail: a
# call cut off at its limit returns only what was already printed.
set -uo pipefail
cd "$(dirname "$0")/../.."
DEADLINE=${1:?deadline in seconds}; shift
: "${SAVE_EVERY:=50}"; export SAVE_EVERY
set -m # run.sh and every job it starts get their own process group, so the deadline stops them all
bash experiments/replicate/run.sh "$@" &
pid=$!
( sleep "$DEADLINE"; echo "gpu-call.sh: deadline of ${DEADLINE}s reached, stopping run.sh (the next call resumes)"; kill -TERM -- "-$pid" 2>/dev/null ) &
killer=$!
wait "$pid"; rc=$?
kill "$killer" 2>/dev/null
RUNS_DIR=${RUNS:-experiments/replicate/runs} # pass another output folder as RUNS=…, not --runs
if [[ -n ${OUT:-} && -d $RUNS_DIR ]]; then
  tar -C "$(dirname "$RUNS_DIR")" --exclude=checkpoint --exclude=data -cf - "$(basename "$RUNS_DIR")" | tar -C "$OUT" -xf - &&
    echo "results copied to \$OUT/$(basename "$RUNS_DIR")"
fi
nvidia-smi --query-gpu=memory.used --format=csv,noheader 2>/dev/null | sed 's/^/GPU memory in use now: /'
exit "$rc"
