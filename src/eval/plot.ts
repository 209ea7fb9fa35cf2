// Small SVG charts (no dependencies, browser-safe): line charts for loss and perplexity curves,
// and a heatmap for passkey accuracy by length and depth.

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
  dots?: boolean;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2'];
const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
const tick = (v: number) => (Math.abs(v) >= 1000 ? `${+(v / 1024).toFixed(1)}k` : +v.toPrecision(3) + '');

export function lineChart(series: Series[], opts: { xLabel: string; yLabel: string; title?: string; logX?: boolean; logY?: boolean }): string {
  const W = 680, H = 380, L = 64, R = 24, T = 36, B = 48;
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (all.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="30">no data</text></svg>\n`;
  const fx = opts.logX ? Math.log : (v: number) => v, fy = opts.logY ? Math.log : (v: number) => v;
  const xs = all.map((p) => fx(p[0])), ys = all.map((p) => fy(p[1]));
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const X = (x: number) => L + ((fx(x) - x0) / (x1 - x0)) * (W - L - R), Y = (y: number) => H - B - ((fy(y) - y0) / (y1 - y0)) * (H - T - B);
  const inv = (f: number, lo: number, hi: number, log?: boolean) => (log ? Math.exp(lo + f * (hi - lo)) : lo + f * (hi - lo));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">${esc(opts.xLabel)}</text>`,
    `<text x="16" y="${(T + H - B) / 2}" transform="rotate(-90 16 ${(T + H - B) / 2})" text-anchor="middle">${esc(opts.yLabel)}</text>`,
  ];
  if (opts.title) parts.push(`<text x="${(L + W - R) / 2}" y="20" text-anchor="middle" font-weight="bold">${esc(opts.title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const xv = inv(i / 4, x0, x1, opts.logX), yv = inv(i / 4, y0, y1, opts.logY);
    parts.push(`<text x="${X(xv).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${tick(xv)}</text>`);
    parts.push(`<text x="${L - 6}" y="${(Y(yv) + 4).toFixed(1)}" text-anchor="end">${tick(yv)}</text>`);
  }
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length], pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length > 1) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>`);
    if (s.dots || pts.length === 1) for (const [x, y] of pts) parts.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3" fill="${color}"/>`);
    parts.push(`<text x="${W - R - 4}" y="${T + 14 * (i + 1)}" text-anchor="end" fill="${color}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/** cells[row][col] in [0, 1]; rows and cols labelled. */
export function heatmap(cells: number[][], rowLabels: string[], colLabels: string[], opts: { title?: string; rowTitle: string; colTitle: string }): string {
  const cw = 56, ch = 26, L = 90, T = 50, W = L + cw * colLabels.length + 20, H = T + ch * rowLabels.length + 50;
  const color = (v: number) => `hsl(${(120 * Math.max(0, Math.min(1, v))).toFixed(0)}, 70%, 50%)`; // red → green
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
  ];
  if (opts.title) parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-weight="bold">${esc(opts.title)}</text>`);
  cells.forEach((row, r) => {
    parts.push(`<text x="${L - 6}" y="${T + r * ch + ch / 2 + 4}" text-anchor="end">${esc(rowLabels[r])}</text>`);
    row.forEach((v, c) => {
      parts.push(`<rect x="${L + c * cw}" y="${T + r * ch}" width="${cw - 1}" height="${ch - 1}" fill="${Number.isFinite(v) ? color(v) : '#ddd'}"/>`);
      parts.push(`<text x="${L + c * cw + cw / 2}" y="${T + r * ch + ch / 2 + 4}" text-anchor="middle">${Number.isFinite(v) ? Math.round(100 * v) : '–'}</text>`);
    });
  });
  colLabels.forEach((l, c) => parts.push(`<text x="${L + c * cw + cw / 2}" y="${T - 6}" text-anchor="middle">${esc(l)}</text>`));
  parts.push(`<text x="${L + (cw * colLabels.length) / 2}" y="${T + ch * rowLabels.length + 24}" text-anchor="middle">${esc(opts.colTitle)}</text>`);
  parts.push(`<text x="14" y="${T + (ch * rowLabels.length) / 2}" transform="rotate(-90 14 ${T + (ch * rowLabels.length) / 2})" text-anchor="middle">${esc(opts.rowTitle)}</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
