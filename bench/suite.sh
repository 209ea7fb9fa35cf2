#!/usr/bin/env bash
# Issue 4's GPU measurements, one part per device call (each fits the 10-minute limit). Rows are
# printed as they are measured and written to ${OUT:-bench-out}/<part>.{json,svg,log} after each
# one, so a call cut off at its limit still returns what it measured. From the repository root:
#
#   source .gpu/enter.sh && bash bench/suite.sh kernels   # ceilings, matmul, attention (~4 min)
#   source .gpu/enter.sh && bash bench/suite.sh decode    # batch-1 decode at 1K/64K/1M + its profile (~4 min)
#   source .gpu/enter.sh && bash bench/suite.sh prefill   # samba vs llama prompts of 4K–64K (~4 min)
#   source .gpu/enter.sh && bash bench/suite.sh prefill128k   # both at 128K: the llama alone takes ~5 min
#   source .gpu/enter.sh && bash bench/suite.sh batch     # decode at batch 16, 1K–64K, f16 KV caches (~4 min)
#   source .gpu/enter.sh && bash bench/suite.sh train     # training rate (f32 and mixed) + profiles, samba-421m and the replication's samba (~5 min)
#   source .gpu/enter.sh && bash bench/suite.sh toggles   # Dawn toggles (SAMBA_DAWN_FEATURES): host recording, decode, matmul (~7 min)
#
# Do not pipe it through tail or anything that buffers: output that has not reached the call's
# log when the limit strikes is lost.
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:?part: kernels, decode, prefill, prefill128k, batch, train or toggles}
out=${OUT:-bench-out}; mkdir -p "$out"
T="node dist/bench/throughput.js --backend webgpu"
run() { echo "\$ $*"; "$@" 2>&1 | grep --line-buffered -v '^Warning: maxDynamic' | tee -a "$out/$part.log"; }
case $part in
  kernels)
    run $T --sections ceilings
    run node dist/bench/matmul.js --sweep --log "$out/matmul.txt"
    run node dist/bench/attention.js --backward
    run node dist/bench/attention.js --backward --tensor-cores
    run node dist/bench/attention-decode.js ;;
  decode)
    # pipelined: each token recorded (in one submit) while the GPU runs the last; then without
    # pipelining (read each token, then record the next), for comparison
    run $T --sections ceilings,decode --weights f16 --tokens 64 --json "$out/decode.json"
    run $T --sections decode --weights f16 --tokens 64 --sync-decode --json "$out/decode-sync.json"
    run node dist/bench/profile.js --sections decode --model samba-1.3b --weights f16 --by-grid --reps 3 ;;
  prefill)
    # tensor cores for the products of both models (f16 weights, f16 operands, f32 sums)
    run $T --sections prefill --weights f16 --tensor-cores --prefill 4096,16384,65536 --prefill-tokens 65536 --json "$out/prefill.json" --svg "$out/prefill.svg" ;;
  prefill128k)
    run $T --sections prefill --weights f16 --tensor-cores --prefill 131072 --prefill-tokens 131072 --json "$out/prefill128k.json" ;;
  batch)
    # f16 KV caches: the llama's at 64K (48 GiB at batch 16) fits an 80 GB card only as halves;
    # tensor cores for both models' batched products (tcRowsGemvKernel), where the adapter has them
    run $T --sections batch --weights f16 --kv-cache f16 --tensor-cores --batch-positions 1024,16384,32768,65536 --tokens 8 --json "$out/batch.json" --svg "$out/batch.svg" ;;
  train)
    run $T --sections ceilings,train --json "$out/train.json"
    # mixed precision: products and attention on tensor cores where the adapter has them
    run $T --sections ceilings,train --tensor-cores --json "$out/train-mixed.json"
    run node dist/bench/profile.js --sections train --precision mixed --train-model samba-421m --train-seq 4096 --reps 2
    run node dist/bench/profile.js --sections train --train-config experiments/replicate/configs/samba.json --train-seq 512 --train-batch 16 --reps 3 ;;
  toggles)
    # Dawn's validation of each recorded command (skip_validation) and the shaders' bounds clamps
    # (disable_robustness), each set twice in turn: the host's speed varies between processes
    for f in none skip_validation skip_validation,disable_robustness none skip_validation skip_validation,disable_robustness; do
      export SAMBA_DAWN_FEATURES=${f#none}
      echo "### toggles: $f"
      run node dist/bench/dispatches.js --presets samba-1.3b --weights f16
      run $T --sections decode --model samba-1.3b --weights f16 --tokens 64 --positions 1024,65536
      run node dist/bench/matmul.js --shapes 4096x4096x4096
    done ;;
  *) echo "bench/suite.sh: unknown part $part" >&2; exit 2 ;;
esac
