// A plain-text table for the benchmarks' summaries: a header, a rule, then the rows, columns padded
// to their widest cell and separated by two spaces.

/** The table's lines; columns for which `left(i)` is true are left-aligned, the rest right-aligned. */
export function tableLines(head: string[], rows: string[][], left: (column: number) => boolean): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => (left(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)];
}
