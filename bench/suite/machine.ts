/** Names the machine a run came from: every number in bench/results names its machine. */
import * as os from 'node:os';

export function slug(s: string, max = 40): string {
  return s.toLowerCase().replace(/\(r\)|\(tm\)|processor|cpu|@.*$/g, ' ').replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '').slice(0, max).replace(/-+$/, '');
}

export function cpuModel(): string {
  return os.cpus()[0]?.model.trim().replace(/\s+/g, ' ') ?? 'unknown CPU';
}

/** "<hostname>-<gpu or cpu model>", e.g. "vm-amd-epyc", "gpu-node-7-nvidia-h200". */
export function machineId(gpu?: string): string {
  const host = slug(os.hostname().split('.')[0], 20) || 'host';
  return `${host}-${slug(gpu ?? cpuModel(), 32) || 'unknown'}`;
}

/** YYYY-MM-DD (UTC) of `d`. */
export function dateStamp(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** Default output folder of a run: bench/results/<date>-<machine>[-<what>] (one folder per run). */
export function runFolder(root: string, what: string | null, gpu?: string, date = new Date()): string {
  return `${root}/bench/results/${dateStamp(date)}-${machineId(gpu)}${what ? `-${what}` : ''}`;
}
