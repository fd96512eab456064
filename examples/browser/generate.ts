/**
 * The demo's "Generate" panel: trains the tiny decoder of examples/generate (MultiHeadAttention layers with rotary
 * q/k, grouped-query heads and keras_hub's KV cache) on the synthetic grammar, in the page, on the active backend;
 * checks that decoding with the cache gives the logits of one full causal pass; then samples text with each of the
 * four decoders (flash / naive attention, with the cache / recomputing the prefix) and shows their tokens/s.
 *
 * Self-contained: mountGeneratePanel(section) builds its controls inside the given element. Its state is on
 * document.body.dataset.generate (idle | running | done | error) and window.__generateResult, for the page test.
 */
import * as tf from '@tensorflow/tfjs';
import {cacheAgreement, DECODERS, generateTokens, text, trainModel} from '../generate/decode.js';
import {grammaticality, VOCABULARY} from '../generate/grammar.js';
import {TinyDecoder} from '../generate/model.js';

export interface GenerateConfig {
  steps: number;
  tokens: number;
  batch: number;
  seq: number;
  dim: number;
  seed: number;
}

export interface GenerateResult {
  backend: string;
  loss: number;
  /** max |cached logits − full-pass logits| over 16 tokens fed one at a time. */
  agreement: number;
  sample: string;
  sentences: number;
  grammatical: number;
  rows: Array<{name: string; tokensPerSecond: number; sameTokens: boolean}>;
  /**
   * Tensors alive after the timed generations minus before them, summed over the decoders (after their warm-up, which
   * may create a backend's one-time tensors): every step's cache and intermediates must be freed.
   */
  tensorsLeaked: number;
}

declare global {
  interface Window {
    __generateResult?: GenerateResult | {error: string};
  }
}

export const DEFAULT_GENERATE: GenerateConfig = {steps: 40, tokens: 32, batch: 8, seq: 24, dim: 32, seed: 1};

/** Trains, checks the cache, and races the four decoders; `progress` gets status lines. */
export async function runGenerate(c: GenerateConfig, progress: (line: string) => Promise<void>):
    Promise<GenerateResult> {
  const model = new TinyDecoder({vocabSize: VOCABULARY.length, dim: c.dim, layers: 2, heads: 4, kvHeads: 2,
                                 seed: c.seed});
  const naive = model.withAttention('naive');
  try {
    const t0 = performance.now();
    const loss = await trainModel(model, {steps: c.steps, batch: c.batch, seq: c.seq, lr: 1e-2, seed: c.seed},
                                  async (step, l) => progress(`training on ${tf.getBackend()}: step ${step}/${
                                      c.steps}, loss ${l.toFixed(3)}, ${((performance.now() - t0) / 1000).toFixed(0)} s`));
    const prompt = [0, VOCABULARY.indexOf('the')];
    let tensorsLeaked = 0;
    await progress('checking the cache against a full causal pass');
    const agreement = await cacheAgreement(model, [...prompt, 1, 10, 2, 15, 0, 1, 8, 17, 0, 2, 9, 20, 0, 1]);
    const options = {tokens: c.tokens, temperature: 0.7, seed: c.seed};
    const rows: GenerateResult['rows'] = [];
    let reference: number[] = [];
    for (const d of DECODERS) {
      await progress(`sampling ${c.tokens} tokens: ${d.name}`);
      const m = d.attention === 'flash' ? model : naive;
      await generateTokens(m, prompt, {...options, tokens: 2}, d.cache);  // warm-up (shader compiles)
      const before = tf.memory().numTensors;
      const g = await generateTokens(m, prompt, options, d.cache);
      tensorsLeaked += tf.memory().numTensors - before;
      if (rows.length === 0) reference = g.tokens;
      rows.push({name: d.name, tokensPerSecond: c.tokens / g.seconds,
                 sameTokens: g.tokens.every((t, i) => t === reference[i])});
    }
    const {sentences, grammatical} = grammaticality([...prompt, ...reference]);
    return {backend: tf.getBackend(), loss, agreement, sample: text([...prompt.slice(1), ...reference]), sentences,
            grammatical, rows, tensorsLeaked};
  } finally {
    naive.dispose(true);
    model.dispose();
  }
}

/** Builds the panel (controls, status, results table) inside `section`. */
export function mountGeneratePanel(section: HTMLElement): void {
  const params = new URLSearchParams(location.search);
  const preset = (key: keyof GenerateConfig) => Number(params.get(`generate${key[0].toUpperCase()}${key.slice(1)}`) ??
                                                       DEFAULT_GENERATE[key]);
  section.innerHTML = `
    <h2>Generate: a tiny decoder with a KV cache</h2>
    <div class="controls">
      <label>training steps <input id="generate-steps" type="number" min="1" max="2000" value="${preset('steps')}"></label>
      <label>tokens <input id="generate-tokens" type="number" min="1" max="512" value="${preset('tokens')}"></label>
      <button id="generate">Train &amp; generate</button>
    </div>
    <p class="status" id="generate-status">Two blocks of MultiHeadAttention (4 query heads sharing 2 key/value heads,
      rotary positions) trained on a synthetic grammar, then sampling with the layer's KV cache
      (<code>apply(x, {cache, cacheUpdateIndex})</code>) or by recomputing the whole prefix for every token, with the
      kernels or naive attention.</p>
    <p id="generate-sample"></p>
    <table id="generate-results">
      <thead><tr><th>decoder</th><th>tokens/s</th><th>same tokens</th></tr></thead>
      <tbody></tbody>
    </table>`;
  document.body.dataset.generate = 'idle';
  const $ = <T extends HTMLElement>(id: string) => section.querySelector<T>(`#${id}`)!;
  const status = $('generate-status');
  const nextFrame = () => new Promise<void>((resolve) => requestAnimationFrame(() => resolve()));
  $('generate').addEventListener('click', async () => {
    const button = $<HTMLButtonElement>('generate');
    button.disabled = true;
    document.body.dataset.generate = 'running';
    $('generate-results').querySelector('tbody')!.innerHTML = '';
    $('generate-sample').textContent = '';
    try {
      const config = {...DEFAULT_GENERATE, steps: Number($<HTMLInputElement>('generate-steps').value),
                      tokens: Number($<HTMLInputElement>('generate-tokens').value), batch: preset('batch'),
                      seq: preset('seq'), dim: preset('dim')};
      const result = await runGenerate(config, async (line) => {
        status.textContent = line;
        await nextFrame();
      });
      window.__generateResult = result;
      status.textContent = `${result.backend}: loss ${result.loss.toFixed(3)} after ${config.steps} steps; cached ` +
          `logits vs full pass: max |difference| ${result.agreement.toExponential(1)}. ${result.grammatical} of ` +
          `${result.sentences} sampled sentences follow the grammar.`;
      $('generate-sample').textContent = `"${result.sample}"`;
      $('generate-results').querySelector('tbody')!.innerHTML = result.rows.map((r) =>
          `<tr><td>${r.name}</td><td>${r.tokensPerSecond.toFixed(1)}</td><td>${r.sameTokens ? 'yes' : 'NO'}</td></tr>`)
          .join('');
      document.body.dataset.generate = 'done';
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      window.__generateResult = {error: message};
      status.textContent = `generation failed: ${message}`;
      document.body.dataset.generate = 'error';
    } finally {
      button.disabled = false;
    }
  });
}
