#!/usr/bin/env node
// samba-lm command line. Every failure ends in one line naming the problem and a non-zero exit.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { commands } from './commands.js';
import { UsageError } from './errors.js';

const USAGE = `samba-lm — Samba-family hybrid state-space language models on WebGPU and CPU

usage: samba-lm <command> [options]

commands:
  info        --preset NAME | --model DIR        architecture, layers and parameter count (no weights loaded)
  generate    --model DIR (--prompt TEXT | --ids FILE.json) [--max-tokens N --temperature T --top-k K
              --top-p P --repetition-penalty R --seed S --stop ID,.. --output-ids --backend cpu|webgpu|auto]
  perplexity  --model DIR (--text FILE | --ids FILE.json) [--backend …]   prints {"tokens","nll","ppl"}
  logits      --model DIR --ids FILE.json --out FILE.safetensors [--backend …]   float32 logits [B,T,V]
  convert     --model DIR --out DIR [--format samba-lm|samba-reference|hf-mamba] [--dtype f32|f16|bf16]
  grad        --model DIR --ids FILE.json --out FILE.safetensors [--backend …]   parameter gradients + loss
  train       (--preset NAME | --arch A --d-model D --blocks N … | --config FILE | --init DIR) (--data PATH | --task NAME) --out DIR [options]
  finetune    --init DIR (--data PATH | --task NAME) --out DIR [options]      train from a loadable checkpoint
              --task passkey|passkey-synthetic|selective-copy|induction-heads: generated documents, loss on the answers
  tokenize    --input PATH --out FILE.bin [--tokenizer tokenizer.json|bytes]   pre-tokenised shard for train
  eval ppl    --model DIR --text FILE --lengths 4k,8k,16k [--mode prefix|sliding|both --stride S --blocks N]
  eval passkey --model DIR --lengths 4k,8k,…,256k [--depths 11 --trials 5]   table, JSON (--json FILE), heatmap (--plot FILE.svg)
  eval task   --model DIR --task NAME --lengths 256,1k,…,16k [--trials N --json FILE]   synthetic-task accuracy by length
  serve       --model DIR [--host 127.0.0.1 --port 8080 --model-id NAME]   OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions)
  web         [--model DIR] [--host 127.0.0.1 --port 8080]   the browser page: runs a model in the browser (WebGPU or CPU)
  demo        [--backend …] [--quick]          trains a tiny Samba and a Transformer on passkey retrieval; accuracy at 1x–64x the training length
  presets                                        lists the model presets

Run 'samba-lm <command> --help' for a command's options.`;

export const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  preset: { type: 'string' },
  model: { type: 'string' },
  prompt: { type: 'string' },
  ids: { type: 'string' },
  text: { type: 'string' },
  out: { type: 'string' },
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  stop: { type: 'string' },
  'output-ids': { type: 'boolean' },
  backend: { type: 'string' },
  json: { type: 'string' },
  // training
  arch: { type: 'string' },
  'd-model': { type: 'string' },
  blocks: { type: 'string' },
  heads: { type: 'string' },
  'kv-heads': { type: 'string' },
  window: { type: 'string' },
  mlp: { type: 'string' },
  'vocab-size': { type: 'string' },
  'no-rope': { type: 'boolean' },
  config: { type: 'string' },
  init: { type: 'string' },
  resume: { type: 'string' },
  data: { type: 'string' },
  task: { type: 'string' },
  'task-vocab': { type: 'string' },
  'task-tokens': { type: 'string' },
  tokenizer: { type: 'string' },
  input: { type: 'string' },
  'seq-len': { type: 'string' },
  batch: { type: 'string' },
  accum: { type: 'string' },
  lr: { type: 'string' },
  'min-lr': { type: 'string' },
  'weight-decay': { type: 'string' },
  steps: { type: 'string' },
  warmup: { type: 'string' },
  'eval-every': { type: 'string' },
  'eval-batches': { type: 'string' },
  'save-every': { type: 'string' },
  'log-every': { type: 'string' },
  'val-fraction': { type: 'string' },
  quick: { type: 'boolean' },
  precision: { type: 'string' },
  'loss-scale': { type: 'string' },
  'carry-state': { type: 'string' },
  weights: { type: 'string' },
  'kv-cache': { type: 'string' },
  'tensor-cores': { type: 'boolean' },
  host: { type: 'string' },
  port: { type: 'string' },
  'model-id': { type: 'string' },
  format: { type: 'string' },
  lengths: { type: 'string' },
  depths: { type: 'string' },
  trials: { type: 'string' },
  mode: { type: 'string' },
  stride: { type: 'string' },
  plot: { type: 'string' },
  dtype: { type: 'string' },
} satisfies ParseArgsConfig['options'];

export type CliValues = ReturnType<typeof parse>['values'];

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]);
  }
  const positionals = [...parsed.positionals];
  if (positionals[0] === 'eval' && positionals[1]) positionals.splice(0, 2, `eval ${positionals[1]}`);
  const [name, ...rest] = positionals;
  if (!name || name === 'help' || (parsed.values.help && !name)) { console.log(USAGE); return 0; }
  const cmd = commands[name];
  if (!cmd) throw new UsageError(`unknown command "${name}" (commands: ${Object.keys(commands).join(', ')})`);
  if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (parsed.values.help) { console.log(cmd.help); return 0; }
  await cmd.run(parsed.values);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`samba-lm: ${msg.split('\n')[0]}\n`);
    if (process.env.SAMBA_LM_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
