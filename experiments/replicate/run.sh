#!/usr/bin/env bash
# Small-scale replication of the Samba paper's length-extrapolation and passkey signatures
# (docs/RESULTS.md says what it shows and how it was run). From the repository root:
#
#   bash experiments/replicate/run.sh [options]            # the full run (WebGPU)
#   bash experiments/replicate/run.sh --micro              # CPU smoke test of every stage, ~40 s
#
# Stages (all by default, in this order; --stages picks some): corpus tokenize train ppl passkey-ft passkey summary
#   corpus      unpack data/corpus-pack/*.xz into data/corpus/ (made by scripts/corpus.mjs) unless present
#   tokenize    data/corpus/train.txt → data/corpus/train.bin (byte-level tokenizer, EOS id 256)
#   train       the six models of configs/ at seq-len 512, same data order, seed and tokens
#   ppl         prefix perplexity of val.txt at 512, 1K, 2K, 4K (1×–8× the training length)
#   passkey-ft  fine-tune samba and swa on text passkey retrieval at seq-len 512
#   passkey     passkey retrieval of the fine-tuned models at 512 … 32K (1×–64×)
#   summary     RUNS/summary.md, RUNS/ppl.svg, RUNS/passkey.svg (node experiments/replicate/summary.mjs)
# Every stage skips work already done and a killed training run resumes from its last checkpoint
# (saved every --save-every steps), so the script can simply be started again. --force redoes evals.
#
# Options (or the environment variables in capitals):
#   --steps N        STEPS       pretraining steps per model (3000: 3000 × 16 × 2 × 512 = 49.2M tokens each)
#   --batch B        BATCH       sequences per micro-batch (16)
#   --accum K        ACCUM       micro-batches per optimizer step (2: 32 × 512 = 16,384 tokens per step;
#                                at batch 32 a process peaks at 15 GB (samba) to 29 GB (llama) on an H100)
#   --lr LR          LR          peak learning rate (1e-3; warm-up 1% of the steps, cosine to lr/10)
#   --parallel N     PARALLEL    models trained / evaluated at once, each its own process (3; measured on an
#                                H100 80GB: 3 processes at batch 16 peak at 42 GB, 6 run out of memory;
#                                an H200 141GB should take 6)
#   --models a,b     MODELS      subset of samba,llama,swa,mamba,mamba-swa-mlp,samba-norope
#   --stages s,t     STAGES      subset of the stages above
#   --eval-blocks N  EVAL_BLOCKS val.txt blocks of 4097 tokens for ppl (0 = all: 592)
#   --pk-steps N     PK_STEPS    passkey fine-tuning steps (500, as the paper)
#   --pk-batch B     PK_BATCH    (16, with PK_ACCUM 2)
#   --pk-lr LR       PK_LR       (2e-4; warm-up PK_WARMUP = half the steps, as the paper's 250 of 500)
#   --pk-lengths L   PK_LENGTHS  (512,1k,2k,4k,8k,16k,32k)
#   --pk-trials N    PK_TRIALS   keys per length and depth (5, as the paper; 11 depths)
#   --pk-base        PK_BASE=1   also evaluate passkey retrieval of the models before fine-tuning
#   --backend B      BACKEND     webgpu (default) | cpu | auto
#   --precision P    PRECISION   f32 (default) | mixed
#   --runs DIR       RUNS        output folder (experiments/replicate/runs; --micro: experiments/replicate/micro-runs)
#   --micro          MICRO=1     CPU, a 1 MB slice of the corpus, d_model-32 models, 4 steps, short lengths
#   --force          FORCE=1     redo the evaluations even if their JSON exists
#                    DIST        the built package to run (default dist/)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD HERE=experiments/replicate
DIST=${DIST:-$ROOT/dist}   # the built samba-lm (npm run build)
CLI="node $DIST/src/cli/main.js"

ALL_MODELS=samba,llama,swa,mamba,mamba-swa-mlp,samba-norope
: "${MICRO:=0}" "${FORCE:=0}" "${PK_BASE:=0}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --micro) MICRO=1 ;;
    --force) FORCE=1 ;;
    --pk-base) PK_BASE=1 ;;
    --steps) STEPS=$2; shift ;;
    --batch) BATCH=$2; shift ;;
    --accum) ACCUM=$2; shift ;;
    --lr) LR=$2; shift ;;
    --parallel) PARALLEL=$2; shift ;;
    --models) MODELS=$2; shift ;;
    --stages) STAGES=$2; shift ;;
    --eval-blocks) EVAL_BLOCKS=$2; shift ;;
    --pk-steps) PK_STEPS=$2; shift ;;
    --pk-batch) PK_BATCH=$2; shift ;;
    --pk-lr) PK_LR=$2; shift ;;
    --pk-lengths) PK_LENGTHS=$2; shift ;;
    --pk-trials) PK_TRIALS=$2; shift ;;
    --backend) BACKEND=$2; shift ;;
    --precision) PRECISION=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (--help lists them)" >&2; exit 2 ;;
  esac
  shift
done

if [[ $MICRO == 1 ]]; then
  : "${STEPS:=4}" "${BATCH:=2}" "${ACCUM:=1}" "${SEQ:=64}" "${BACKEND:=cpu}" "${RUNS:=$HERE/micro-runs}" "${PARALLEL:=2}"
  : "${PPL_LENGTHS:=64,128,256}" "${EVAL_BLOCKS:=2}" "${PK_SEQ:=320}" "${PK_STEPS:=3}" "${PK_BATCH:=2}" "${PK_ACCUM:=1}"
  : "${PK_LENGTHS:=320,640}" "${PK_DEPTHS:=0,1}" "${PK_TRIALS:=1}" "${EVAL_EVERY:=2}" "${SAVE_EVERY:=2}"
  DATA=$RUNS/data
else
  : "${STEPS:=3000}" "${BATCH:=16}" "${ACCUM:=2}" "${SEQ:=512}" "${BACKEND:=webgpu}" "${RUNS:=$HERE/runs}" "${PARALLEL:=3}"
  : "${PPL_LENGTHS:=512,1024,2048,4096}" "${EVAL_BLOCKS:=0}" "${PK_SEQ:=512}" "${PK_STEPS:=500}" "${PK_BATCH:=16}" "${PK_ACCUM:=2}"
  : "${PK_LENGTHS:=512,1k,2k,4k,8k,16k,32k}" "${PK_DEPTHS:=11}" "${PK_TRIALS:=5}" "${EVAL_EVERY:=250}" "${SAVE_EVERY:=100}"
  DATA=data/corpus
fi
: "${LR:=1e-3}" "${PK_LR:=2e-4}" "${PRECISION:=f32}" "${SEED:=3407}" "${MODELS:=$ALL_MODELS}"
: "${PK_WARMUP:=$(( PK_STEPS / 2 ))}" "${PK_MODELS:=samba,swa}"
: "${STAGES:=corpus,tokenize,train,ppl,passkey-ft,passkey,summary}"
IFS=, read -r -a MODEL_LIST <<< "$MODELS"
IFS=, read -r -a PK_LIST <<< "$PK_MODELS"
has_stage() { [[ ",$STAGES," == *",$1,"* ]]; }
in_models() { [[ ",$MODELS," == *",$1,"* ]]; }
log() { printf '\n=== %s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }
export NODE_OPTIONS="${NODE_OPTIONS:-} --max-old-space-size=8192"

mkdir -p "$RUNS"
log "settings: steps $STEPS × batch $BATCH × accum $ACCUM × seq $SEQ (= $(( STEPS * BATCH * ACCUM * SEQ )) tokens per model), lr $LR, seed $SEED, backend $BACKEND, precision $PRECISION, parallel $PARALLEL, runs $RUNS"
{ echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo no-git) $0"
  for v in MICRO STEPS BATCH ACCUM SEQ LR SEED BACKEND PRECISION PARALLEL MODELS STAGES PPL_LENGTHS EVAL_BLOCKS PK_MODELS PK_SEQ PK_STEPS PK_BATCH PK_ACCUM PK_LR PK_WARMUP PK_LENGTHS PK_DEPTHS PK_TRIALS EVAL_EVERY SAVE_EVERY; do echo "$v=${!v}"; done
} >> "$RUNS/settings.log"

# Runs "name command…" jobs, at most $PARALLEL at once; each job's output goes to its log file.
JOBS_FAILED=0
declare -a PIDS=() NAMES=()
job() { # job NAME LOGFILE command...
  local name=$1 logf=$2; shift 2
  while (( $(jobs -rp | wc -l) >= PARALLEL )); do wait -n || true; done
  echo "  start $name  → $logf"
  echo "\$ $*" >> "$logf"
  ( set +e; "$@" >> "$logf" 2>&1; rc=$?; if (( rc )); then echo "  FAILED $name (exit $rc): tail of $logf:"; tail -n 5 "$logf" | sed 's/^/    /'; else echo "  done  $name"; fi; exit $rc ) &
  PIDS+=($!) NAMES+=("$name")
}
wait_all() {
  local i
  for i in "${!PIDS[@]}"; do wait "${PIDS[$i]}" || JOBS_FAILED=$((JOBS_FAILED + 1)); done
  PIDS=() NAMES=()
}
# last logged step of a training run (0 when none)
last_step() { [[ -f $1/train.jsonl ]] && tail -n 1 "$1/train.jsonl" | sed -n 's/^{"step":\([0-9]*\).*/\1/p' || true; }
finished() { [[ -f $1/checkpoint/model.safetensors && "$(last_step "$1")" == "$2" ]]; }

# ------------------------------------------------------------------------------------------------
if has_stage corpus; then
  log "corpus"
  if [[ ! -f data/corpus/train.txt || ! -f data/corpus/val.txt ]]; then
    [[ -f data/corpus-pack/train.txt.xz ]] || { echo "no data/corpus/train.txt and no data/corpus-pack/train.txt.xz: run 'node scripts/corpus.mjs' on a machine with a Debian mirror" >&2; exit 1; }
    mkdir -p data/corpus
    for f in train val; do xz -dc "data/corpus-pack/$f.txt.xz" > "data/corpus/$f.txt.tmp" && mv "data/corpus/$f.txt.tmp" "data/corpus/$f.txt"; done
    cp data/corpus-pack/sources.json data/corpus/sources.json
  fi
  if [[ -f data/corpus/sources.json ]]; then
    node -e '
      const fs = require("fs"), crypto = require("crypto"), s = JSON.parse(fs.readFileSync("data/corpus/sources.json", "utf8"));
      for (const f of ["train", "val"]) {
        const h = crypto.createHash("sha256").update(fs.readFileSync(`data/corpus/${f}.txt`)).digest("hex");
        console.log(`data/corpus/${f}.txt: ${fs.statSync(`data/corpus/${f}.txt`).size} bytes, sha256 ${h === s[f].sha256 ? "ok" : "MISMATCH (expected " + s[f].sha256 + ")"}`);
      }'
  fi
  if [[ $MICRO == 1 ]]; then # a 1 MB slice
    mkdir -p "$DATA"
    head -c 1000000 data/corpus/train.txt > "$DATA/train.txt"
    head -c 200000 data/corpus/val.txt > "$DATA/val.txt"
    echo "micro slice: $(wc -c < "$DATA/train.txt") + $(wc -c < "$DATA/val.txt") bytes in $DATA"
  fi
fi

# Model configs: the committed ones, or for --micro the same architectures at d_model 32.
CONFIGS=$HERE/configs
if [[ $MICRO == 1 ]]; then
  CONFIGS=$RUNS/configs; mkdir -p "$CONFIGS"
  for m in "${MODEL_LIST[@]}"; do
    node -e '
      const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      Object.assign(c, { dModel: 32, nBlocks: Math.max(1, Math.ceil(c.nBlocks / 4)), mlpHidden: 96, window: 32 });
      if (c.nHeads) Object.assign(c, { nHeads: 2, nKvHeads: 1, headDim: 16 });
      console.log(JSON.stringify(c));' "$HERE/configs/$m.json" > "$CONFIGS/$m.json"
  done
fi

# ------------------------------------------------------------------------------------------------
if has_stage tokenize; then
  log "tokenize"
  if [[ ! -f $DATA/train.bin || $DATA/train.txt -nt $DATA/train.bin ]]; then
    $CLI tokenize --input "$DATA/train.txt" --out "$DATA/train.bin" --tokenizer bytes
  else
    echo "$DATA/train.bin is up to date: $(cat "$DATA/train.bin.json" | tr -d '\n ')"
  fi
fi

# ------------------------------------------------------------------------------------------------
if has_stage train; then
  log "train ${MODEL_LIST[*]}: $STEPS steps each"
  for m in "${MODEL_LIST[@]}"; do
    out=$RUNS/$m; mkdir -p "$out"
    if finished "$out" "$STEPS"; then echo "  $m: trained ($STEPS steps)"; continue; fi
    if [[ -f $out/checkpoint/train-state.safetensors ]]; then
      echo "  $m: resuming after step $(last_step "$out")"
      job "train $m" "$out/train.log" $CLI train --resume "$out" --backend "$BACKEND"
    else
      rm -f "$out/train.jsonl" "$out/loss.svg" # a start that died before its first checkpoint
      cp "$CONFIGS/$m.json" "$out/config.json"
      job "train $m" "$out/train.log" $CLI train --config "$CONFIGS/$m.json" --data "$DATA/train.bin" --tokenizer bytes \
        --seq-len "$SEQ" --batch "$BATCH" --accum "$ACCUM" --steps "$STEPS" --lr "$LR" --seed "$SEED" \
        --eval-every "$EVAL_EVERY" --save-every "$SAVE_EVERY" --log-every 10 \
        --backend "$BACKEND" --precision "$PRECISION" --out "$out"
    fi
  done
  wait_all
fi

# ------------------------------------------------------------------------------------------------
if has_stage ppl; then
  log "perplexity at $PPL_LENGTHS"
  blocks=(); [[ $EVAL_BLOCKS != 0 ]] && blocks=(--blocks "$EVAL_BLOCKS")
  for m in "${MODEL_LIST[@]}"; do
    out=$RUNS/$m
    [[ -f $out/checkpoint/model.safetensors ]] || { echo "  $m: no checkpoint, skipped"; continue; }
    [[ $FORCE == 0 && -f $out/ppl.json ]] && { echo "  $m: $out/ppl.json exists"; continue; }
    job "ppl $m" "$out/ppl.log" $CLI eval ppl --model "$out/checkpoint" --text "$DATA/val.txt" --lengths "$PPL_LENGTHS" \
      --mode prefix "${blocks[@]}" --backend "$BACKEND" --json "$out/ppl.json" --plot "$out/ppl.svg"
  done
  wait_all
fi

# ------------------------------------------------------------------------------------------------
if has_stage passkey-ft; then
  log "passkey fine-tuning of ${PK_LIST[*]}: $PK_STEPS steps at $PK_SEQ"
  for m in "${PK_LIST[@]}"; do
    base=$RUNS/$m out=$RUNS/$m-passkey; mkdir -p "$out"
    if finished "$out" "$PK_STEPS"; then echo "  $m-passkey: fine-tuned ($PK_STEPS steps)"; continue; fi
    if [[ -f $out/checkpoint/train-state.safetensors ]]; then
      job "passkey-ft $m" "$out/train.log" $CLI finetune --resume "$out" --backend "$BACKEND"
    else
      [[ -f $base/checkpoint/model.safetensors ]] || { echo "  $m: no pretrained checkpoint in $base, skipped"; continue; }
      rm -f "$out/train.jsonl" "$out/loss.svg" "$out/accuracy.svg"
      job "passkey-ft $m" "$out/train.log" $CLI finetune --init "$base/checkpoint" --task passkey --seq-len "$PK_SEQ" \
        --batch "$PK_BATCH" --accum "$PK_ACCUM" --steps "$PK_STEPS" --lr "$PK_LR" --warmup "$PK_WARMUP" --seed "$SEED" \
        --eval-every "$(( PK_STEPS >= 50 ? 50 : 1 ))" --eval-batches 2 --save-every "$SAVE_EVERY" --log-every 10 \
        --backend "$BACKEND" --precision "$PRECISION" --out "$out"
    fi
  done
  wait_all
fi

# ------------------------------------------------------------------------------------------------
if has_stage passkey; then
  log "passkey retrieval at $PK_LENGTHS"
  targets=(); for m in "${PK_LIST[@]}"; do targets+=("$m-passkey"); [[ $PK_BASE == 1 ]] && targets+=("$m"); done
  for t in "${targets[@]}"; do
    out=$RUNS/$t
    [[ -f $out/checkpoint/model.safetensors ]] || { echo "  $t: no checkpoint, skipped"; continue; }
    [[ $FORCE == 0 && -f $out/passkey.json ]] && { echo "  $t: $out/passkey.json exists"; continue; }
    job "passkey $t" "$out/passkey.log" $CLI eval passkey --model "$out/checkpoint" --lengths "$PK_LENGTHS" \
      --depths "$PK_DEPTHS" --trials "$PK_TRIALS" --seed 1 --backend "$BACKEND" --json "$out/passkey.json" --plot "$out/passkey.svg"
  done
  wait_all
fi

# ------------------------------------------------------------------------------------------------
if has_stage summary; then
  log "summary"
  node "$HERE/summary.mjs" "$RUNS"
fi
if (( JOBS_FAILED )); then echo "run.sh: $JOBS_FAILED job(s) failed; see the logs above" >&2; exit 1; fi
