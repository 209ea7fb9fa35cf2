// Prints one markdown table of every run's answer accuracy by evaluation length.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
const dir = process.argv[2] ?? 'experiments/synthetic/runs';
const rows = [];
for (const name of readdirSync(dir).sort()) {
  const f = path.join(dir, name, 'eval.json');
  if (!existsSync(f)) continue;
  const r = JSON.parse(readFileSync(f, 'utf8'));
  const results = r.results ?? r;
  rows.push({ name, cells: results.map((x) => `${x.length}: ${(100 * x.accuracy).toFixed(1)}%`) });
}
console.log('| run | answer accuracy by length (128 documents each) |');
console.log('| --- | --- |');
for (const r of rows) console.log(`| ${r.name} | ${r.cells.join(' · ')} |`);
