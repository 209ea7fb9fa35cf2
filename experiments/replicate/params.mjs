#!/usr/bin/env node
// Parameter counts of model configs (JSON ModelConfig inputs, as `samba-lm train --config` reads them):
//   node experiments/replicate/params.mjs experiments/replicate/configs/*.json
// (`samba-lm info` takes only --preset or --model; this does the same count for a config file.)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { makeConfig, countParams, layout } = await import(path.join(root, 'dist/src/model/config.js'));
const rows = process.argv.slice(2).map((f) => {
  const c = makeConfig(JSON.parse(readFileSync(f, 'utf8')));
  const l = layout(c), n = (k) => l.filter((x) => x === k).length;
  return { file: path.basename(f, '.json'), arch: c.architecture, params: countParams(c), d: c.dModel, blocks: c.nBlocks,
    sublayers: `${l.length} (${['mamba', 'swa', 'attn', 'mlp'].filter(n).map((k) => `${n(k)} ${k}`).join(', ')})`,
    heads: `${c.nHeads}/${c.nKvHeads}×${c.headDim}`, mlp: c.mlpHidden, window: l.includes('swa') ? c.window : '-', rope: c.rope };
});
if (process.env.JSON) console.log(JSON.stringify(rows));
else for (const r of rows) console.log(`${r.file.padEnd(16)} ${r.arch.padEnd(14)} ${r.params.toLocaleString('en-US').padStart(12)}  d ${r.d}  sublayers ${r.sublayers}  heads ${r.heads}  mlp ${r.mlp}  window ${r.window}  rope ${r.rope}`);
