/**
 * Runs jobs on a node backend in a child process (node_worker.ts). If the child dies (out of memory, device lost),
 * the job is answered with the error and a fresh child is started for the next job.
 */
import {ChildProcess, fork} from 'node:child_process';
import {fileURLToPath} from 'node:url';
import type {Job, JobResult} from './measure.js';
import type {BackendInfo, WorkerReply, WorkerRequest} from './node_worker.js';

export interface BackendRunner {
  readonly backend: string;
  /** Starts the backend: its info, or why it is unavailable. */
  start(): Promise<BackendInfo | {unavailable: string}>;
  run(job: Job): Promise<JobResult>;
  close(): Promise<void>;
}

const WORKER = fileURLToPath(new URL('./node_worker.ts', import.meta.url));

export class NodeRunner implements BackendRunner {
  private child: ChildProcess | null = null;
  private pending: ((reply: WorkerReply) => void) | null = null;
  private lastStderr = '';

  constructor(readonly backend: string, private readonly ort: boolean, private readonly isolate: boolean) {}

  private spawn(): ChildProcess {
    const child = fork(WORKER, [], {
      execArgv: ['--import', 'tsx', '--max-old-space-size=8192'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: {...process.env},
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.lastStderr = (this.lastStderr + d.toString()).slice(-2000);
    });
    child.on('message', (m: WorkerReply) => {
      const p = this.pending;
      this.pending = null;
      p?.(m);
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = null;
      const p = this.pending;
      this.pending = null;
      const tail = this.lastStderr.trim().split('\n').slice(-3).join(' | ');
      p?.({type: 'error', message: `worker exited (${signal ?? `code ${code}`})${tail ? `: ${tail}` : ''}`});
    });
    return child;
  }

  private request(msg: WorkerRequest): Promise<WorkerReply> {
    if (this.child == null) throw new Error('worker not started');
    return new Promise((resolve) => {
      this.pending = resolve;
      this.child!.send(msg);
    });
  }

  async start(): Promise<BackendInfo | {unavailable: string}> {
    this.child = this.spawn();
    const reply = await this.request({type: 'init', backend: this.backend, ort: this.ort});
    if (reply.type === 'ready') return reply.info;
    await this.close();
    return {unavailable: reply.type === 'unavailable' ? reply.reason : (reply as {message: string}).message};
  }

  async run(job: Job): Promise<JobResult> {
    if (this.child == null || this.isolate) {
      await this.close();
      const started = await this.start();
      if ('unavailable' in started) return failed(job, started.unavailable);
    }
    const reply = await this.request({type: 'job', job});
    if (this.isolate) await this.close();
    if (reply.type === 'result') return reply.result;
    return failed(job, reply.type === 'error' ? reply.message : `unexpected reply ${reply.type}`);
  }

  async close(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child == null || child.exitCode != null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.disconnect();
    });
  }
}

/** A job result whose every run failed with `message` (the process died or could not start). */
export function failed(job: Job, message: string): JobResult {
  return {
    caseId: job.case.id, backend: job.backend, leakedTensors: 0,
    runs: job.runs.map((r) => ({...r, error: message.split('\n')[0].slice(0, 300)})),
  };
}
