#!/usr/bin/env bash
# One call of the device tool: run.sh until a deadline, then stop it, which loses at most
# SAVE_EVERY steps per model (run.sh resumes from the checkpoints on the next call if the machine is
# still warm). Logs, JSON, SVG and the summary, without weights, come back as $OUT/runs.tgz.
#
# The runs go to experiments/replicate/gpu-runs/ (git-ignored), not runs/: each call gets a fresh
# copy of the working tree, which drops the files git would track that the caller does not have
# (a first call's train.jsonl and logs), while ignored folders stay. Unpack runs.tgz into the
# checkout and move what you keep to a committed folder.
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
: "${SAVE_EVERY:=50}" "${RUNS:=experiments/replicate/gpu-runs}"; export SAVE_EVERY RUNS # another folder: RUNS=…, not --runs
set -m # run.sh and every job it starts get their own process group, so the deadline stops them all
bash experiments/replicate/run.sh "$@" &
pid=$!
( sleep "$DEADLINE"; echo "gpu-call.sh: deadline of ${DEADLINE}s reached, stopping run.sh (the next call resumes)"; kill -TERM -- "-$pid" 2>/dev/null ) &
killer=$!
wait "$pid"; rc=$?
kill "$killer" 2>/dev/null
if [[ -n ${OUT:-} && -d $RUNS ]]; then # one file: the device tool brings back only a few
  tar -C "$(dirname "$RUNS")" --exclude=checkpoint --exclude=checkpoint.tmp --exclude=checkpoint.old --exclude=data \
    -czf "$OUT/runs.tgz" "$(basename "$RUNS")" && echo "results packed into \$OUT/runs.tgz ($(basename "$RUNS")/…)"
fi
nvidia-smi --query-gpu=memory.used --format=csv,noheader 2>/dev/null | sed 's/^/GPU memory in use now: /'
exit "$rc"
