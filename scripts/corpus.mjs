#!/usr/bin/env node
// Builds the English text corpus of the small-scale Samba replication (experiments/replicate/) from
// Debian documentation packages. Nothing it writes is committed: data/ is git-ignored.
//
//   node scripts/corpus.mjs [--out data/corpus] [--pack data/corpus-pack] [--work DIR] [--keep]
//
// Steps: `apt-get download` each package of PACKAGES below (no root needed) into a temporary folder,
// `dpkg-deb -x` it, pick the files of each package that hold English prose (reStructuredText sources,
// POD, AsciiDoc, troff man pages, HTML), strip their markup lightly, and write
//   OUT/train.txt     the training text: documents in a seeded random order, separated by a blank line
//   OUT/val.txt       held-out documents (about 4%, chosen by a hash of package/path, so no document
//                     is in both), same format
//   OUT/sources.json  package names and versions, per-package document and byte counts, sha256 sums
//   PACK/train.txt.xz, PACK/val.txt.xz, PACK/sources.json   the compressed copy for a GPU host
//                     (experiments/replicate/run.sh unpacks it when OUT/train.txt is missing)
// Needs apt-get, dpkg-deb and xz (Debian 12 has them) and a route to a Debian mirror. The packages are
// pinned by name; their versions are whatever the mirror serves and are recorded in sources.json.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
const OUT = opt('out', 'data/corpus'), PACK = opt('pack', 'data/corpus-pack');
const KEEP = args.includes('--keep');
const VAL_MODULUS = 25; // a document goes to val.txt when hash(package/path) % 25 == 0 (≈ 4%)
const SHUFFLE_SEED = 3407;

// ---------------------------------------------------------------------------------------------
// Light markup stripping. The aim is readable English with the code samples left in, not a perfect
// rendering: drop markup-only lines, unwrap inline markup, keep the words.

const collapse = (s) => s.replace(/[ \t]+$/gm, '').replace(/\n{3,}/g, '\n\n').trim();

function rst(s) {
  const out = [];
  for (const line of s.split('\n')) {
    if (/^\s*([=\-~^"'`#*+_.:])\1{2,}\s*$/.test(line)) continue; // section under/overlines
    if (/^\.\. (SPDX-License-Identifier|_|\|)/.test(line)) continue; // licence tags, link targets, substitutions
    if (/^\.\. [a-z-]+::\s*$/.test(line) || /^\.\. (toctree|index|highlight|moduleauthor|sectionauthor|include|kernel-doc|only|raw|image|figure|tabularcolumns|c:namespace)::/.test(line)) continue;
    if (/^\s+:(maxdepth|numbered|titlesonly|glob|hidden|caption|name|class|linenos|alt|width|align|target|scale|internal|export|identifiers|functions|doc|no-identifiers):/.test(line)) continue;
    out.push(line
      .replace(/^\.\. ([a-z-]+):: ?/, (_, d) => (/^(note|warning|important|tip|caution|attention|hint|seealso|deprecated|versionadded|versionchanged)$/.test(d) ? `${d[0].toUpperCase()}${d.slice(1)}: ` : ''))
      .replace(/:[a-z]+(:[a-z]+)?:`~?!?([^`<]*?)\s*(<[^>`]*>)?`/g, '$2') // :func:`name`, :ref:`text <target>`
      .replace(/`([^`<]+?)\s*<[^>`]+>`__?/g, '$1') // `text <url>`_
      .replace(/``([^`]+)``/g, '$1')
      .replace(/`([^`]+)`_{0,2}/g, '$1')
      .replace(/\*\*([^*]+)\*\*/g, '$1')
      .replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, '$1$2')
      .replace(/\|([A-Za-z][\w -]*)\|/g, '$1'));
  }
  return collapse(out.join('\n'));
}

function pod(s) {
  const out = [];
  let skip = false;
  for (const line of s.split('\n')) {
    if (/^=begin\b/.test(line)) { skip = true; continue; }
    if (/^=end\b/.test(line)) { skip = false; continue; }
    if (skip || /^=(cut|pod|over|back|for|encoding)\b/.test(line)) continue;
    out.push(line.replace(/^=head\d\s*/, '').replace(/^=item\s*/, ''));
  }
  let t = out.join('\n');
  for (let i = 0; i < 4; i++) { // inner codes first: repeat for nesting
    t = t.replace(/[A-Z]<<+\s+([\s\S]*?)\s+>>+/g, '$1')
      .replace(/X<[^<>]*>/g, '')
      .replace(/E<lt>/g, '<').replace(/E<gt>/g, '>').replace(/E<verbar>/g, '|').replace(/E<sol>/g, '/')
      .replace(/L<([^<>|]*)\|[^<>]*>/g, '$1')
      .replace(/L<"?([^<>]*?)"?>/g, '$1')
      .replace(/[BICFSZ]<([^<>]*)>/g, '$1');
  }
  return collapse(t);
}

function asciidoc(s) {
  const out = [];
  for (const line of s.split('\n')) {
    if (/^([-=.'+*_~^])\1{3,}\s*$/.test(line)) continue; // block delimiters, underlines
    if (/^(:[\w-]+:|\[\[.*\]\]$|\[(verse|listing|literal|caption|options|cols)[^\]]*\]$|ifdef::|ifndef::|endif::|include::)/.test(line)) continue;
    out.push(line.replace(/linkgit:([\w-]+)\[(\d)\]/g, '$1($2)').replace(/(^|\s)'([^'\n]+)'/g, '$1$2').replace(/`([^`]+)`/g, '$1').replace(/\*([^*\n]+)\*/g, '$1'));
  }
  return collapse(out.join('\n'));
}

const troffEsc = (s) => s
  .replace(/\\f(\[[^\]]*\]|\(..|.)/g, '').replace(/\\s[-+]?\d/g, '')
  .replace(/\\\(em|\\\[em\]/g, '—').replace(/\\\(en|\\\[en\]/g, '–').replace(/\\\(aq|\\\[aq\]/g, "'").replace(/\\\((lq|rq|dq)|\\\[(lq|rq|dq)\]/g, '"')
  .replace(/\\\(bu|\\\[bu\]/g, '•').replace(/\\\(co|\\\[co\]/g, '©').replace(/\\\(ga/g, '`').replace(/\\\(ti|\\\[ti\]/g, '~').replace(/\\\(ha|\\\[ha\]/g, '^')
  .replace(/\\\(.{2}|\\\[[^\]]*\]/g, '').replace(/\\[-]/g, '-').replace(/\\e/g, '\\').replace(/\\&|\\:|\\\/|\\,|\\%|\\\^|\\\|/g, '').replace(/\\ /g, ' ').replace(/\\"/g, '').replace(/\\c$/g, '');

function troff(s) {
  const out = [];
  for (const line of s.split('\n')) {
    if (/^[.']\\"/.test(line) || /^\.\s*$/.test(line)) continue; // comments
    const m = /^[.'](\w+)\s*(.*)$/.exec(line);
    if (!m) { out.push(troffEsc(line)); continue; }
    const [, mac, rest] = m;
    const words = [...rest.matchAll(/"([^"]*)"|(\S+)/g)].map((x) => x[1] ?? x[2]);
    if (/^(SH|SS)$/.test(mac)) out.push('', troffEsc(words.join(' ')));
    else if (/^(B|I|SM|SB)$/.test(mac)) out.push(troffEsc(words.join(' ')));
    else if (/^(BR|RB|IR|RI|BI|IB)$/.test(mac)) out.push(troffEsc(words.join('')));
    else if (/^(PP|P|LP|TP|IP|HP|sp|br|RS|RE|EX|EE|nf|fi|in|ne|TQ|UE|ME|YS)$/.test(mac)) {
      out.push(mac === 'IP' && words[0] ? troffEsc(words[0]) : mac === 'sp' || /^(PP|P|LP)$/.test(mac) ? '' : null);
    } else if (/^(UR|MT)$/.test(mac)) out.push(words[0] ?? '');
    // everything else (TH, ad, na, hy, ds, ...) is dropped
  }
  return collapse(out.filter((x) => x !== null).join('\n'));
}

const ENTITIES = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'", nbsp: ' ', ndash: '–', mdash: '—', hellip: '…', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', para: '¶', copy: '©', rarr: '→', larr: '←', times: '×', middot: '·', bull: '•' };
function html(s) {
  let t = s.replace(/<(script|style|head|nav)\b[\s\S]*?<\/\1>/gi, '')
    .replace(/<div class="nav(header|footer)">[\s\S]*?<\/div>/g, '')
    .replace(/<a class="headerlink"[^>]*>[\s\S]*?<\/a>/g, '')
    .replace(/<!--[\s\S]*?-->/g, '');
  t = t.replace(/<\/?(p|div|h[1-6]|li|ul|ol|dl|dt|dd|pre|table|tr|blockquote|section|br|hr|details|summary)\b[^>]*>/gi, '\n')
    .replace(/<\/?(td|th)\b[^>]*>/gi, ' ')
    .replace(/<[^>]+>/g, '')
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e) => (e[0] === '#' ? String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1))) : ENTITIES[e] ?? m))
    .replace(/¶/g, '');
  return collapse(t.split('\n').map((l) => l.replace(/[ \t]+/g, ' ').trim()).join('\n'));
}
const between = (s, start, ends) => {
  const i = s.indexOf(start);
  if (i < 0) return s;
  let j = s.length;
  for (const e of ends) { const k = s.indexOf(e, i); if (k >= 0 && k < j) j = k; }
  return s.slice(i, j);
};

// ---------------------------------------------------------------------------------------------
// Packages and which of their files are documents. `files` gets a package-relative path and says
// how to clean it (or null to skip it).

const PACKAGES = [
  { name: 'linux-doc-6.1', what: 'Linux kernel documentation (reStructuredText and plain-text sources)',
    files: (p) => (/^usr\/share\/doc\/linux-doc-6\.1\/Documentation\//.test(p) && !/\/(translations|devicetree|ABI|sphinx|output)\//.test(p) && /\.(rst|txt)\.gz$/.test(p) ? rst : null) },
  { name: 'python3.11-doc', what: 'Python 3.11 documentation (reStructuredText sources, html/_sources)',
    files: (p) => (/\/_sources\/.*\.rst\.txt$/.test(p) && !/whatsnew\/changelog/.test(p) ? rst : null) },
  { name: 'perl-doc', what: 'Perl 5.36 core documentation (POD)',
    files: (p) => (/\.pod(\.gz)?$/.test(p) ? pod : null) },
  { name: 'postgresql-doc-15', what: 'PostgreSQL 15 manual (HTML)',
    files: (p) => (/\/html\/[^/]+\.html$/.test(p) ? html : null) },
  { name: 'python-django-doc', what: 'Django 3.2 documentation (HTML)',
    files: (p) => (/\/html\/.*\.html$/.test(p) && !/\/html\/(_modules|genindex|py-modindex|search)/.test(p) ? (s) => html(between(s, 'id="yui-main"', ['id="sidebar"', 'id="ft"'])) : null) },
  { name: 'nodejs-doc', what: 'Node.js 18 API documentation (HTML)',
    files: (p) => (/\/api\/[^/]+\.html$/.test(p) && !/\/(all|index)\.html$/.test(p) ? (s) => html(between(s, 'id="apicontent"', ['</body>'])) : null) },
  { name: 'git-doc', what: 'Git documentation (AsciiDoc sources)',
    files: (p) => (/\.txt$/.test(p) && !/RelNotes/.test(p) ? asciidoc : null) },
  { name: 'cmake-doc', what: 'CMake 3.25 documentation (reStructuredText sources, html/_sources)',
    files: (p) => (/\/_sources\/.*\.rst\.txt$/.test(p) ? rst : null) },
  { name: 'sphinx-doc', what: 'Sphinx 5.3 documentation (reStructuredText sources, html/_sources)',
    files: (p) => (/\/_sources\/.*\.rst\.txt$/.test(p) ? rst : null) },
  { name: 'manpages', what: 'Linux man pages, sections 1, 4, 5, 7, 8 (troff)',
    files: (p) => (/^usr\/share\/man\/man\d\/.*\.gz$/.test(p) ? troff : null) },
  { name: 'manpages-dev', what: 'Linux man pages, sections 2 and 3 (troff)',
    files: (p) => (/^usr\/share\/man\/man\d\/.*\.gz$/.test(p) ? troff : null) },
  { name: 'debian-reference-en', what: 'The Debian Reference (plain text)',
    files: (p) => (/debian-reference\.en\.txt\.gz$/.test(p) ? (s) => collapse(s) : null) },
];

// ---------------------------------------------------------------------------------------------

const sh = (cmd, argv, cwd) => execFileSync(cmd, argv, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });

function* walk(dir, rel = '') {
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) yield* walk(dir, r);
    else if (e.isFile()) yield r;
  }
}

function hash32(s) { return createHash('sha256').update(s).digest().readUInt32BE(0); }

/** mulberry32: the order of the training documents. */
function shuffle(a, seed) {
  let x = seed >>> 0;
  const rnd = () => { x = (x + 0x6d2b79f5) >>> 0; let t = x; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

const work = opt('work') ?? mkdtempSync(path.join(tmpdir(), 'samba-corpus-'));
mkdirSync(path.join(work, 'debs'), { recursive: true });
console.error(`working in ${work}`);
const train = [], val = [], sources = [];
for (const pkg of PACKAGES) {
  const debDir = path.join(work, 'debs');
  let deb = readdirSync(debDir).find((f) => f.startsWith(`${pkg.name}_`) && f.endsWith('.deb'));
  if (!deb) {
    sh('apt-get', ['download', pkg.name], debDir);
    deb = readdirSync(debDir).find((f) => f.startsWith(`${pkg.name}_`) && f.endsWith('.deb'));
  }
  const debPath = path.join(debDir, deb);
  const version = sh('dpkg-deb', ['-f', debPath, 'Version']).trim();
  const root = path.join(work, 'x', pkg.name);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  sh('dpkg-deb', ['-x', debPath, root]);
  const rec = { package: pkg.name, version, what: pkg.what, deb: deb, debBytes: statSync(debPath).size, debSha256: createHash('sha256').update(readFileSync(debPath)).digest('hex'), documents: 0, trainDocuments: 0, valDocuments: 0, bytes: 0, trainBytes: 0, valBytes: 0 };
  for (const rel of [...walk(root)].sort()) {
    const clean = pkg.files(rel);
    if (!clean) continue;
    let raw = readFileSync(path.join(root, rel));
    if (rel.endsWith('.gz')) raw = gunzipSync(raw);
    const text = raw.toString('utf8');
    if (text.includes('\uFFFD')) continue; // not UTF-8
    const doc = clean(text);
    const nonAscii = [...doc].filter((c) => c.charCodeAt(0) > 127).length;
    if (doc.length < 200 || nonAscii > 0.02 * doc.length) continue; // stubs and non-English pages
    const bytes = Buffer.byteLength(doc) + 2;
    const isVal = hash32(`${pkg.name}/${rel}`) % VAL_MODULUS === 0;
    (isVal ? val : train).push(doc);
    rec.documents++; rec.bytes += bytes;
    if (isVal) { rec.valDocuments++; rec.valBytes += bytes; } else { rec.trainDocuments++; rec.trainBytes += bytes; }
  }
  sources.push(rec);
  console.error(`${pkg.name} ${version}: ${rec.documents} documents, ${(rec.bytes / 1e6).toFixed(2)} MB (train ${(rec.trainBytes / 1e6).toFixed(2)}, val ${(rec.valBytes / 1e6).toFixed(2)})`);
  rmSync(root, { recursive: true, force: true });
}

mkdirSync(OUT, { recursive: true });
mkdirSync(PACK, { recursive: true });
const trainText = shuffle(train, SHUFFLE_SEED).join('\n\n') + '\n', valText = shuffle(val, SHUFFLE_SEED + 1).join('\n\n') + '\n';
writeFileSync(path.join(OUT, 'train.txt'), trainText);
writeFileSync(path.join(OUT, 'val.txt'), valText);
const sha = (s) => createHash('sha256').update(s).digest('hex');
const summary = {
  made: new Date().toISOString(), script: 'scripts/corpus.mjs', valRule: `hash(package/path) % ${VAL_MODULUS} == 0`, shuffleSeed: SHUFFLE_SEED,
  train: { documents: train.length, bytes: Buffer.byteLength(trainText), sha256: sha(trainText) },
  val: { documents: val.length, bytes: Buffer.byteLength(valText), sha256: sha(valText) },
  packages: sources,
};
writeFileSync(path.join(OUT, 'sources.json'), JSON.stringify(summary, null, 1) + '\n');
if (!args.includes('--no-pack')) for (const f of ['train.txt', 'val.txt']) sh('sh', ['-c', `xz -9e -T2 -c "${path.join(OUT, f)}" > "${path.join(PACK, f)}.xz"`]);
writeFileSync(path.join(PACK, 'sources.json'), JSON.stringify(summary, null, 1) + '\n');
if (!KEEP && !opt('work')) rmSync(work, { recursive: true, force: true });

console.log('package                 version                   documents   bytes (train / val)');
for (const s of sources) console.log(`${s.package.padEnd(24)}${s.version.padEnd(26)}${String(s.documents).padStart(9)}   ${s.trainBytes.toLocaleString('en-US')} / ${s.valBytes.toLocaleString('en-US')}`);
console.log(`train.txt: ${summary.train.documents} documents, ${summary.train.bytes.toLocaleString('en-US')} bytes (= tokens with the byte tokenizer), sha256 ${summary.train.sha256}`);
console.log(`val.txt:   ${summary.val.documents} documents, ${summary.val.bytes.toLocaleString('en-US')} bytes, sha256 ${summary.val.sha256}`);
if (!args.includes('--no-pack')) for (const f of ['train.txt.xz', 'val.txt.xz']) console.log(`${path.join(PACK, f)}: ${statSync(path.join(PACK, f)).size.toLocaleString('en-US')} bytes`);
