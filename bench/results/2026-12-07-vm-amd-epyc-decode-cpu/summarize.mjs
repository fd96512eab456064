import fs from 'node:fs';
const dir = process.argv[2];
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const runs = {before: [], after: []};
for (const f of fs.readdirSync(dir).sort()) { const [v] = f.split('-'); runs[v].push(JSON.parse(fs.readFileSync(`${dir}/${f}`))); }
const cases = Object.keys(runs.before[0]);
console.log('| case | before: mean µs/call | after | before: median call µs | after | rounds |');
console.log('|---|---|---|---|---|---|');
for (const c of cases) {
  const g = (v, k) => med(runs[v].map((r) => r[c][k]));
  const rng = (v, k) => { const xs = runs[v].map((r) => r[c][k]); return `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`; };
  console.log(`| ${c} | ${g('before', 'call').toFixed(0)} (${rng('before', 'call')}) | ${g('after', 'call').toFixed(0)} (${rng('after', 'call')}) | ${g('before', 'callMedian').toFixed(0)} (${rng('before', 'callMedian')}) | ${g('after', 'callMedian').toFixed(0)} (${rng('after', 'callMedian')}) | ${runs.before.length} |`);
}
