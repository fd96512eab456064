/**
 * The webgpu-decode section's report: one markdown row per (heads, seqQ, seqK) with every implementation's time,
 * ours' effective K/V bandwidth next to the device's copy bandwidth, the speed-ups over naive and ONNX Runtime Web,
 * and issue 18's targets (seqQ 1, seqK ≥ 8192: ≥ 50% of the copy bandwidth and ≥ 10× naive; ahead of ORT-Web at
 * every seqK).
 */

export type DecodeImpl = 'ours' | 'ours-tiled' | 'naive' | 'ort' | 'ours-cache';

export interface DecodeRow {
  /** e.g. "32/8 D128": query heads / kv heads, head dim. */
  config: string;
  seqQ: number;
  seqK: number;
  impl: DecodeImpl;
  /** Median ms per call; null when the row did not run (see error). */
  ms: number | null;
  /** Bytes of K and V read (once per kv head) / time. */
  kvGBps?: number;
  /** ours and ours-tiled: against naive; ort: against ours. */
  maxRelErr?: number;
  /** Why the row did not run (too large, unsupported, ORT error). */
  error?: string;
  note?: string;
}

export interface DecodeReport {
  date: string;
  adapter: string;
  host: string;
  /** Buffer-to-buffer copy, read + write, GB/s. */
  copyGBps: number;
  /** How ORT-Web ran (its own device from the same adapter), or why it did not. */
  ort: string;
  rows: DecodeRow[];
}

/** Issue 18's decode targets on the rows they apply to; null where a time is missing. */
export interface DecodeTargets {
  bandwidth: boolean | null;
  vsNaive: boolean | null;
  vsOrt: boolean | null;
}

/** GB/s with 3 significant digits below 100 (software GPUs), whole numbers above. */
export const formatGBps = (x: number | null | undefined) => x == null ? '—' : x >= 100 ? x.toFixed(0) : x.toPrecision(3);
const fmt = (x: number | null | undefined, digits = 3) => x == null ? '—' : x.toFixed(digits);
const ratio = (num: number | null | undefined, den: number | null | undefined) =>
    num != null && den != null && den > 0 ? num / den : null;

function shapes(rows: DecodeRow[]): Array<{config: string; seqQ: number; seqK: number}> {
  const seen = new Map<string, {config: string; seqQ: number; seqK: number}>();
  for (const r of rows) seen.set(`${r.config}|${r.seqQ}|${r.seqK}`, {config: r.config, seqQ: r.seqQ, seqK: r.seqK});
  return [...seen.values()];
}

export function targetsFor(rows: DecodeRow[], copyGBps: number, config: string, seqQ: number, seqK: number):
    DecodeTargets {
  const get = (impl: DecodeImpl) => rows.find((r) => r.config === config && r.seqQ === seqQ && r.seqK === seqK &&
                                              r.impl === impl);
  const ours = get('ours');
  const long = seqQ === 1 && seqK >= 8192;
  const speedup = (impl: DecodeImpl) => ratio(get(impl)?.ms, ours?.ms);
  const vsNaive = speedup('naive'), vsOrt = speedup('ort');
  return {
    bandwidth: !long || ours?.kvGBps == null ? null : ours.kvGBps >= 0.5 * copyGBps,
    vsNaive: !long || vsNaive == null ? null : vsNaive >= 10,
    vsOrt: seqQ !== 1 || vsOrt == null ? null : vsOrt > 1,
  };
}

export function decodeMarkdown(rep: DecodeReport): string {
  const cell = (r: DecodeRow | undefined) => r == null ? '—' : r.ms != null ? fmt(r.ms) : 'n/a';
  const lines = [
    `# Decode attention, ${rep.adapter} (${rep.date})`, '',
    `fp32, batch 1, causal; ${rep.host}. Device copy bandwidth (buffer to buffer, read + write) ` +
        `**${formatGBps(rep.copyGBps)} GB/s**. ORT-Web: ${rep.ort}.`, '',
    'ms per call (calls back to back, one queue sync). K/V GB/s = bytes of K and V / ours\' time. ' +
        '× naive, × ORT: their time / ours. err: ours vs naive, ORT vs ours (max abs diff / max abs).', '',
    '| heads D | seqQ | seqK | ours ms | K/V GB/s (% copy) | tiled ms | naive ms | ORT-Web ms | × naive | × ORT | err ours / ORT |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  const notes: string[] = [];
  for (const s of shapes(rep.rows)) {
    const get = (impl: DecodeImpl) => rep.rows.find((r) => r.config === s.config && r.seqQ === s.seqQ &&
                                                    r.seqK === s.seqK && r.impl === impl);
    const ours = get('ours'), naive = get('naive'), ort = get('ort');
    const bw = ours?.kvGBps != null ? `${formatGBps(ours.kvGBps)} (${(100 * ours.kvGBps / rep.copyGBps).toFixed(0)}%)` : '—';
    const x = (r: DecodeRow | undefined) => fmt(ratio(r?.ms, ours?.ms), 2);
    const err = `${ours?.maxRelErr != null ? ours.maxRelErr.toExponential(1) : '—'} / ${
        ort?.maxRelErr != null ? ort.maxRelErr.toExponential(1) : '—'}`;
    lines.push(`| ${s.config} | ${s.seqQ} | ${s.seqK} | ${cell(ours)} | ${bw} | ${cell(get('ours-tiled'))} | ${
        cell(naive)} | ${cell(ort)} | ${x(naive)} | ${x(ort)} | ${err} |`);
    for (const r of [ours, get('ours-tiled'), naive, ort]) {
      if (r?.error) notes.push(`- ${s.config} seqQ ${s.seqQ} seqK ${s.seqK} ${r.impl}: ${r.error}`);
    }
  }
  const cache = rep.rows.filter((r) => r.impl === 'ours-cache' && r.ms != null);
  if (cache.length > 0) {
    lines.push('', 'A preallocated cache (capacity seqK, 60% valid, queryOffsets + keyLengths), ours:', '',
               '| heads D | seqQ | capacity | ms | K/V GB/s (valid keys) |', '|---|---:|---:|---:|---:|',
               ...cache.map((r) => `| ${r.config} | ${r.seqQ} | ${r.seqK} | ${fmt(r.ms)} | ${formatGBps(r.kvGBps)} |`));
  }
  const targeted = shapes(rep.rows).map((s) => ({s, t: targetsFor(rep.rows, rep.copyGBps, s.config, s.seqQ, s.seqK)}));
  const count = (key: keyof DecodeTargets) => {
    const judged = targeted.filter(({t}) => t[key] != null);
    return `${judged.filter(({t}) => t[key]).length} of ${judged.length}`;
  };
  lines.push('', 'Issue 18 targets (stated for the H200, fp32): seqQ 1, seqK ≥ 8192: K/V ≥ 50% of the copy bandwidth — met ' +
      `in ${count('bandwidth')} rows; ≥ 10× naive — ${count('vsNaive')}; seqQ 1, faster than ORT-Web — ${count('vsOrt')}.`);
  if (notes.length > 0) lines.push('', 'Rows that did not run:', '', ...notes);
  return lines.join('\n') + '\n';
}
