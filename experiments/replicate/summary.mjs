#!/usr/bin/env node
// Tables and plots of a replication run (experiments/replicate/run.sh):
//   node experiments/replicate/summary.mjs [RUNS]      (default experiments/replicate/runs)
// Reads RUNS/<model>/{config.json,train.jsonl,ppl.json} and RUNS/<model>[-passkey]/passkey.json;
// prints Markdown tables and the paper's signatures as checks, and writes RUNS/summary.md,
// RUNS/ppl.svg (perplexity against evaluation length) and RUNS/passkey.svg (retrieval against length).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { makeConfig, countParams } = await import(path.join(root, 'dist/src/model/config.js'));
const { lineChart } = await import(path.join(root, 'dist/src/eval/plot.js'));
const RUNS = process.argv[2] ?? path.join(root, 'experiments/replicate/runs');
const MODELS = ['samba', 'llama', 'swa', 'mamba', 'mamba-swa-mlp', 'samba-norope'];
const LABEL = { samba: 'Samba', llama: 'Llama (full attention, GQA)', swa: 'Llama-2-SWA', mamba: 'Mamba', 'mamba-swa-mlp': 'Mamba-SWA-MLP', 'samba-norope': 'Samba-NoPE' };
const PK = ['samba-passkey', 'swa-passkey', 'samba', 'swa'];

const readJson = (f) => (existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : null);
const readLog = (f) => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
const lenLabel = (n) => (n % 1024 === 0 ? `${n / 1024}K` : String(n));
const out = [];
const say = (s = '') => { out.push(s); };

// ---------------------------------------------------------------------------------------------
const rows = [];
for (const m of MODELS) {
  const dir = path.join(RUNS, m), cfgRaw = readJson(path.join(dir, 'config.json'));
  if (!cfgRaw) continue;
  const cfg = makeConfig(cfgRaw), log = readLog(path.join(dir, 'train.jsonl')), ppl = readJson(path.join(dir, 'ppl.json'));
  const last = log.at(-1), lastVal = log.filter((l) => l.valLoss !== undefined).at(-1);
  const tail = log.slice(-Math.max(1, Math.floor(log.length / 10)));
  rows.push({
    m, params: countParams(cfg), steps: last?.step ?? 0,
    trainLoss: tail.length ? tail.reduce((s, l) => s + l.loss, 0) / tail.length : NaN, valLoss: lastVal?.valLoss ?? NaN,
    tokS: last?.tokensPerSecond ?? NaN, ppl: ppl?.prefix ?? null, blocks: ppl?.prefix?.[0]?.blocks,
  });
}
const lengths = [...new Set(rows.flatMap((r) => (r.ppl ?? []).map((p) => p.length)))].sort((a, b) => a - b);
const train = lengths[0];
say(`## Perplexity of val.txt against evaluation length (prefix protocol${rows[0]?.blocks ? `, ${rows[0].blocks} blocks of ${lengths.at(-1) + 1} bytes` : ''})`);
say();
say(`| model | parameters | steps | train loss (last 10%) | val loss (in-run) | tok/s | ${lengths.map((L) => `ppl @ ${lenLabel(L)} (${L / train}×)`).join(' | ')} |`);
say(`|---|---:|---:|---:|---:|---:|${lengths.map(() => '---:').join('|')}|`);
for (const r of rows) {
  const p = (L) => { const x = r.ppl?.find((q) => q.length === L); return x ? x.ppl.toFixed(3) : 'pending'; };
  const f4 = (x) => (Number.isFinite(x) ? x.toFixed(4) : '-'); // '-': no training log
  say(`| ${LABEL[r.m]} | ${r.params.toLocaleString('en-US')} | ${r.steps || '-'} | ${f4(r.trainLoss)} | ${f4(r.valLoss)} | ${Number.isFinite(r.tokS) ? r.tokS.toFixed(0) : '-'} | ${lengths.map(p).join(' | ')} |`);
}
say();

// The paper's signatures (Samba §3.1, Table 3), checked on these numbers.
const pplAt = (m, L) => rows.find((r) => r.m === m)?.ppl?.find((p) => p.length === L)?.ppl;
if (lengths.length >= 3) {
  const [L1, L2, L4] = [train, 2 * train, 4 * train];
  const checks = [];
  for (const m of ['samba', 'swa', 'mamba-swa-mlp']) {
    const a = pplAt(m, L1), b = pplAt(m, L2), c = pplAt(m, L4);
    if (a && b && c) checks.push([`${LABEL[m]}: ppl falls at 2× and 4× (${a.toFixed(2)} → ${b.toFixed(2)} → ${c.toFixed(2)})`, b <= a && c <= a]);
  }
  for (const m of ['llama', 'samba-norope']) {
    const a = pplAt(m, L1), c = pplAt(m, L4);
    if (a && c) checks.push([`${LABEL[m]}: ppl explodes by 4× (${a.toFixed(2)} → ${c.toFixed(2)}, ×${(c / a).toFixed(2)}; "explodes" taken as > 1.5×)`, c > 1.5 * a]);
  }
  const at1 = rows.filter((r) => r.ppl).map((r) => [r.m, pplAt(r.m, L1)]).filter(([, v]) => v).sort((x, y) => x[1] - y[1]);
  if (at1.length > 1) checks.push([`Samba is best at 1× (order: ${at1.map(([m, v]) => `${LABEL[m]} ${v.toFixed(3)}`).join(' < ')})`, at1[0][0] === 'samba']);
  if (checks.length) {
    say('Signatures of the paper (Table 3):');
    say();
    for (const [what, ok] of checks) say(`- ${ok ? '✅' : '❌'} ${what}`);
    say();
  }
}

// ---------------------------------------------------------------------------------------------
const pk = PK.map((t) => ({ t, j: readJson(path.join(RUNS, t, 'passkey.json')), log: readLog(path.join(RUNS, t, 'train.jsonl')) })).filter((x) => x.j);
if (pk.length) {
  const pl = [...new Set(pk.flatMap((x) => x.j.lengths))].sort((a, b) => a - b);
  const overall = (j, L) => { const cs = j.cells.filter((c) => c.length === L); return cs.length ? cs.reduce((s, c) => s + c.correct, 0) / cs.reduce((s, c) => s + c.trials, 0) : NaN; };
  say(`## Passkey retrieval (exact 5-digit match, ${pk[0].j.depths.length} depths × ${pk[0].j.trials} keys per length)`);
  say();
  say(`| model | fine-tuning | ${pl.map((L) => `${lenLabel(L)} (${L / pl[0]}×)`).join(' | ')} |`);
  say(`|---|---|${pl.map(() => '---:').join('|')}|`);
  for (const { t, j, log } of pk) {
    const ft = t.endsWith('-passkey') ? `${log.at(-1)?.step ?? '?'} steps${log.filter((l) => l.valAccuracy !== undefined).at(-1) ? `, held-out acc ${(100 * log.filter((l) => l.valAccuracy !== undefined).at(-1).valAccuracy).toFixed(0)}%` : ''}` : 'none (pretrained only)';
    say(`| ${LABEL[t.replace(/-passkey$/, '')]} | ${ft} | ${pl.map((L) => (Number.isFinite(overall(j, L)) ? `${(100 * overall(j, L)).toFixed(0)}%` : '-')).join(' | ')} |`);
  }
  say();
  writeFileSync(path.join(RUNS, 'passkey.svg'), lineChart(pk.map(({ t, j }) => ({ name: t, points: j.lengths.map((L) => [L, 100 * overall(j, L)]), dots: true })),
    { xLabel: 'prompt length (tokens = bytes)', yLabel: 'passkey accuracy (%)', title: 'passkey retrieval after fine-tuning at the training length', logX: true }));
}
if (rows.some((r) => r.ppl)) {
  writeFileSync(path.join(RUNS, 'ppl.svg'), lineChart(rows.filter((r) => r.ppl).map((r) => ({ name: LABEL[r.m], points: r.ppl.map((p) => [p.length, p.ppl]), dots: true })),
    { xLabel: 'evaluation length (tokens = bytes)', yLabel: 'perplexity (per byte)', title: `val.txt perplexity; trained at ${train}`, logX: true, logY: true }));
}
const text = out.join('\n') + '\n';
process.stdout.write(text);
writeFileSync(path.join(RUNS, 'summary.md'), text);
