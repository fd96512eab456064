// node summarize.mjs DIR: the table of README.md from DIR's <version>-<round>.json files (two versions, first name
// in sort order first): per case, the median over rounds of "call" (batch mean µs/call) and "callMedian", with ranges.
import fs from 'node:fs';
const dir = process.argv[2];
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const runs = {};
for (const f of fs.readdirSync(dir).sort()) {
  const v = f.replace(/-\d+\.json$/, '');
  (runs[v] ??= []).push(JSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8')));
}
const [a, b] = Object.keys(runs).sort((x, y) => (x === 'before' ? -1 : y === 'before' ? 1 : x < y ? -1 : 1));
const cell = (v, c, k) => {
  const xs = runs[v].map((r) => r[c][k]);
  return `${med(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
};
console.log(`| case | ${a}: mean µs/call | ${b} | ${a}: median call µs | ${b} | rounds |`);
console.log('|---|---|---|---|---|---|');
for (const c of Object.keys(runs[a][0])) {
  console.log(`| ${c} | ${cell(a, c, 'call')} | ${cell(b, c, 'call')} | ${cell(a, c, 'callMedian')} | ${cell(b, c, 'callMedian')} | ${runs[a].length} |`);
}
