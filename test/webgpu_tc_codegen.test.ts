/**
 * The tensor-core forward's WGSL (kernels/webgpu/flash_attention_tc_webgpu.ts, real subgroup-matrix form), generated
 * without a device for a grid of plans — lavapipe cannot compile it (no subgroup matrices), so its structure is
 * checked here: the enables and diagnostics, a workgroup size that is a multiple of the subgroup size, every `var`
 * initialised, no subgroup-matrix call under a branch (only under loops whose bounds are the same for a whole
 * subgroup), tiles within the workgroup-memory limit.
 */
import {expect} from 'chai';
import {chooseFastTcTile, chooseTcTile, setTensorCoreKernelForTests} from '../kernels/webgpu/attention_forward_tc.js';
import type {OptionFlags} from '../kernels/webgpu/attention_options.js';
import {TcForwardProgram, TcPackProgram, tcWorkgroupBytes} from '../kernels/webgpu/flash_attention_tc_webgpu.js';
import {programSource} from '../kernels/webgpu/program_runner.js';
import {checkMatrixCallsUnbranched, uninitialisedVars, workgroupSize} from './tc_kernels.js';

const H100 = {maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024};
const SUBGROUP = 32;

const NO_OPTIONS: OptionFlags = {queryOffsets: false, mask: null, bias: false, alibi: false, segments: false,
                                 dropout: false};
const OPTION_SETS: Array<OptionFlags | null> = [
  null,
  {...NO_OPTIONS, queryOffsets: true},
  {...NO_OPTIONS, mask: 'i32', segments: true},
  {...NO_OPTIONS, mask: 'f32', bias: true, alibi: true, dropout: true},
];

describe('tensor-core forward WGSL (generated, no device)', () => {
  for (const precision of ['medium', 'high'] as const) {
    for (const headDim of [16, 40, 64, 80, 128, 256]) {
      const tile = chooseTcTile(headDim, precision, H100, SUBGROUP);
      it(`${precision} headDim ${headDim}: a tile fits 48 KiB`, () => {
        expect(tile, 'tile').to.not.equal(null);
        expect(tcWorkgroupBytes(tile!, headDim, precision)).to.be.at.most(H100.maxComputeWorkgroupStorageSize);
        expect(tile!.threads % SUBGROUP).to.equal(0);
      });
      for (const opts of OPTION_SETS) {
        for (const [softcap, keyLengths, layout] of [[false, false, false], [true, true, true]]) {
          it(`${precision} d${headDim} ${JSON.stringify(opts)} cap=${softcap} len=${keyLengths} lay=${layout}`, () => {
            const program = new TcForwardProgram(headDim, tile!, precision, softcap, keyLengths, layout, opts);
            const code = programSource(program);
            expect(code).to.match(/^diagnostic\(off, subgroup_uniformity\);/);
            for (const e of ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix']) {
              expect(code).to.include(`enable ${e};`);
            }
            expect(workgroupSize(code) % SUBGROUP).to.equal(0);
            // Every var is initialised (module-scope var<workgroup> / var<private> / bindings excepted).
            expect(uninitialisedVars(code), 'uninitialised vars').to.deep.equal([]);
            // Matrix calls only under loops, never under a branch; the MMA loops stride by subgroup.
            const loops = checkMatrixCallsUnbranched(code);
            expect(loops.length).to.be.greaterThan(0);
            for (const l of loops) expect(l).to.match(/for \(var t = sg; .* t \+= numSg\)/);
            // 'high' runs three products per step (hi·lo, lo·hi, hi·hi) in both matrix phases.
            const mma = (code.match(/subgroupMatrixMultiplyAccumulate\(/g) ?? []).length;
            expect(mma).to.equal(precision === 'high' ? 6 : 2);
            // No stray JS values in the generated code (comments aside).
            expect(code.replace(/\/\/.*$/gm, '')).to.not.match(/undefined|NaN|\[object/);
          });
        }
      }
    }
  }

  // The register kernel ('medium'): Q and O matrices held in variables across the key loop.
  for (const headDim of [16, 40, 64, 80, 128, 256]) {
    for (const subgroup of [SUBGROUP, 64]) {
      const tile = chooseFastTcTile(headDim, H100, subgroup);
      for (const opts of OPTION_SETS) {
        it(`register kernel d${headDim} subgroups ≤ ${subgroup} ${JSON.stringify(opts)}`, () => {
          expect(tile, 'tile').to.not.equal(null);
          // At least one subgroup per 16-row block at any subgroup size up to the maximum.
          expect(tile!.threads / subgroup).to.be.at.least(tile!.blockQ / 16);
          if (headDim <= 128 && subgroup === SUBGROUP) expect(tile!.blockQ).to.equal(128);
          const program = new TcForwardProgram(headDim, tile!, 'medium', true, true, true, opts, false, true);
          const code = programSource(program);
          expect(workgroupSize(code) % subgroup).to.equal(0);
          expect(uninitialisedVars(code), 'uninitialised vars').to.deep.equal([]);
          // Matrix calls only in the per-row-block loop (once per subgroup), under no branch but the
          // workgroup-uniform lazy rescale.
          const loops = checkMatrixCallsUnbranched(code, 'if (rescale != 0u)');
          for (const l of loops) expect(l).to.match(/for \(var rg = sg; rg < RGU; rg \+= numSg\) \{$/);
          // Q loaded once, before the key loop; no O in workgroup memory.
          const dTiles = Math.ceil(headDim / 16);
          const mainLoop = code.indexOf('for (var runIndex');
          for (let d = 0; d < dTiles; d++) {
            expect(code.indexOf(`qm0_${d} = subgroupMatrixLoad`)).to.be.within(0, mainLoop);
            expect(code.lastIndexOf(`qm0_${d} = subgroupMatrixLoad`)).to.be.below(mainLoop);
          }
          expect(code).to.not.include('var<workgroup> Ow');
          // Per key tile: S (DP/16 per key column tile) and P·V (DP/16 per key row tile), BK/16 key tiles.
          const mma = (code.match(/subgroupMatrixMultiplyAccumulate\(/g) ?? []).length;
          expect(mma).to.equal(2 * dTiles * (tile!.blockK / 16));
          expect(code.replace(/\/\/.*$/gm, '')).to.not.match(/undefined|NaN|\[object/);
        });
      }
    }
  }

  // The staged variant: K and V matrices loaded from workgroup memory only, the tiles within 48 KiB.
  for (const headDim of [16, 40, 64, 80, 128, 256]) {
    for (const subgroup of [SUBGROUP, 64]) {
      const tile = chooseFastTcTile(headDim, H100, subgroup, true);
      for (const opts of [null, OPTION_SETS[3]]) {
        it(`staged register kernel d${headDim} subgroups ≤ ${subgroup} ${JSON.stringify(opts)}`, () => {
          expect(tile, 'tile').to.not.equal(null);
          expect(tcWorkgroupBytes(tile!, headDim, 'medium', true, true)).to.be.at.most(H100.maxComputeWorkgroupStorageSize);
          if (headDim <= 128 && subgroup === SUBGROUP) expect(tile!.blockQ).to.equal(128);
          const program = new TcForwardProgram(headDim, tile!, 'medium', true, true, true, opts, false, true, true);
          const code = programSource(program);
          expect(code).to.include('var<storage, read> packedWide: array<vec4<u32>>;');
          expect(uninitialisedVars(code), 'uninitialised vars').to.deep.equal([]);
          const loops = checkMatrixCallsUnbranched(code, 'if (rescale != 0u)');
          for (const l of loops) expect(l).to.match(/for \(var rg = sg; rg < RGU; rg \+= numSg\) \{$/);
          // Only Q comes from the packed buffer; K (column-major) and V from Ks / Vs.
          const loads = code.match(/subgroupMatrixLoad<subgroup_matrix_right[^;]*;/g) ?? [];
          expect(loads.length).to.equal(2 * Math.ceil(headDim / 16) * (tile!.blockK / 16));
          for (const l of loads) expect(l).to.match(/\(&(Ks, .*, true, KST|Vs, .*, false, KST)\)/);
          expect(code.replace(/\/\/.*$/gm, '')).to.not.match(/undefined|NaN|\[object/);
        });
      }
    }
  }

  // The staged kernel's variants: two row blocks per subgroup (one thread per row: the rescale flag read at the
  // barrier that publishes P, no rowPart exchange of the row max), two K / V buffers (no barrier before the prefetch
  // store), both.
  for (const variant of [{rowBlocks: 2}, {kvBuffers: 2}, {rowBlocks: 2, kvBuffers: 2}]) {
    for (const headDim of [16, 64]) {
      it(`staged variant ${JSON.stringify(variant)} d${headDim}`, () => {
        setTensorCoreKernelForTests('staged', {blockQ: 128, blockK: 32, ...variant});
        const tile = chooseFastTcTile(headDim, H100, SUBGROUP, true);
        setTensorCoreKernelForTests(null);
        expect(tile).to.deep.equal({blockQ: 128, blockK: 32, ...variant, threads: variant.rowBlocks === 2 ? 128 : 256});
        expect(tcWorkgroupBytes(tile!, headDim, 'medium', true, true)).to.be.at.most(H100.maxComputeWorkgroupStorageSize);
        const opts = OPTION_SETS[3];
        const program = new TcForwardProgram(headDim, tile!, 'medium', true, true, true, opts, false, true, true);
        const code = programSource(program);
        expect(uninitialisedVars(code), 'uninitialised vars').to.deep.equal([]);
        const loops = checkMatrixCallsUnbranched(code, 'if (rescale != 0u)');
        for (const l of loops) expect(l).to.match(/for \(var rg = sg; rg < RGU; rg \+= numSg\) \{$/);
        const rows = variant.rowBlocks ?? 1;
        const dTiles = Math.ceil(headDim / 16);
        // Every K and V matrix loaded once per subgroup, used for each of its row blocks.
        const rights = code.match(/subgroupMatrixLoad<subgroup_matrix_right[^;]*;/g) ?? [];
        expect(rights.length).to.equal(2 * dTiles * 2);
        expect((code.match(/subgroupMatrixMultiplyAccumulate\(/g) ?? []).length).to.equal(rows * 2 * dTiles * 2);
        const loop = code.slice(code.indexOf('for (var runIndex'));
        const barriers = (loop.match(/workgroupBarrier\(\)|workgroupUniformLoad\(/g) ?? []).length;
        if (variant.kvBuffers === 2) {
          expect(code).to.include('kvAt = KV_ALT - kvAt;');
          expect(code).to.match(/var<workgroup> Ks: array<f16, \d+>/);
        }
        if (rows === 2) {
          expect(loop).to.not.include('rowPart[row * TPR + part] = rowMax;');
          expect(code).to.include('let rescale = workgroupUniformLoad(&rescaleFlag);');
        }
        // The single-buffer, one-row-block kernel's barrier count, less one per variant.
        setTensorCoreKernelForTests('staged', {blockQ: 128, blockK: 32});
        const base = chooseFastTcTile(headDim, H100, SUBGROUP, true)!;
        setTensorCoreKernelForTests(null);
        const baseLoop = programSource(
            new TcForwardProgram(headDim, base, 'medium', true, true, true, opts, false, true, true));
        const baseBarriers = (baseLoop.slice(baseLoop.indexOf('for (var runIndex'))
            .match(/workgroupBarrier\(\)|workgroupUniformLoad\(/g) ?? []).length;
        expect(barriers).to.equal(baseBarriers - (rows === 2 ? 1 : 0) - (variant.kvBuffers === 2 ? 1 : 0));
        expect(code.replace(/\/\/.*$/gm, '')).to.not.match(/undefined|NaN|\[object/);
      });
    }
  }

  // 'high' on the staged kernel: Q hi / lo held, K / V hi / lo from Ks / Vs, three products per step in both phases,
  // S's cross terms scaled in registers (no Sx); tiles within 48 KiB.
  for (const headDim of [16, 40, 64, 80, 128, 256]) {
    for (const subgroup of [SUBGROUP, 64]) {
      const tile = chooseFastTcTile(headDim, H100, subgroup, true, 'high');
      for (const opts of [null, OPTION_SETS[2], OPTION_SETS[3]]) {
        it(`high staged register kernel d${headDim} subgroups ≤ ${subgroup} ${JSON.stringify(opts)}`, () => {
          expect(tile, 'tile').to.not.equal(null);
          expect(chooseFastTcTile(headDim, H100, subgroup, false, 'high'), 'no unstaged high').to.equal(null);
          expect(tcWorkgroupBytes(tile!, headDim, 'high', true, true)).to.be.at.most(H100.maxComputeWorkgroupStorageSize);
          expect(tile!.threads / subgroup).to.be.at.least(tile!.blockQ / 16);
          if (headDim <= 64 && subgroup === SUBGROUP) expect(tile).to.deep.equal({blockQ: 64, blockK: 32, threads: 128});
          if (headDim === 128 && subgroup === SUBGROUP) expect(tile).to.deep.equal({blockQ: 128, blockK: 16, threads: 256});
          const program = new TcForwardProgram(headDim, tile!, 'high', true, true, true, opts, false, true, true);
          const code = programSource(program);
          expect(code).to.include('var<storage, read> packedWide: array<vec4<u32>>;');
          expect(code).to.not.include('var<workgroup> Sx');
          expect(code).to.include('fn splitHi');
          expect(workgroupSize(code) % subgroup).to.equal(0);
          expect(uninitialisedVars(code), 'uninitialised vars').to.deep.equal([]);
          const loops = checkMatrixCallsUnbranched(code, 'if (rescale != 0u)');
          for (const l of loops) expect(l).to.match(/for \(var rg = sg; rg < RGU; rg \+= numSg\) \{$/);
          const dTiles = Math.ceil(headDim / 16);
          const keyTiles = tile!.blockK / 16;
          // Q's hi and lo matrices loaded once, before the key loop.
          const mainLoop = code.indexOf('for (var runIndex');
          for (let d = 0; d < dTiles; d++) {
            for (const name of [`qm0_${d}`, `ql0_${d}`]) {
              expect(code.lastIndexOf(`${name} = subgroupMatrixLoad`), name).to.be.within(0, mainLoop);
            }
          }
          // Three products per 16×16×16 step of S and of P·V; one in-register scale per S tile.
          const mma = (code.match(/subgroupMatrixMultiplyAccumulate\(/g) ?? []).length;
          expect(mma).to.equal(6 * dTiles * keyTiles);
          expect((code.match(/subgroupMatrixScalarMultiply\(acc0, INV_LO_SCALE\)/g) ?? []).length).to.equal(keyTiles);
          // K (column-major) and V right matrices from Ks / Vs only, hi and lo rows: K hi, K lo, K hi again (the
          // hi·hi pass) and V hi, V lo per step.
          const loads = code.match(/subgroupMatrixLoad<subgroup_matrix_right[^;]*;/g) ?? [];
          expect(loads.length).to.equal(5 * dTiles * keyTiles);
          for (const l of loads) expect(l).to.match(/\(&(Ks, .*, true, KST|Vs, .*, false, KST)\)/);
          expect(loads.filter((l) => l.includes('KLO + ')).length).to.equal(2 * dTiles * keyTiles);
          expect(code.replace(/\/\/.*$/gm, '')).to.not.match(/undefined|NaN|\[object/);
        });
      }
    }
  }

  it('the pack program writes lo parts only when splitting', () => {
    expect(programSource(new TcPackProgram(64, true))).to.include('packed[uniforms.at + uniforms.loAt + e]');
    expect(programSource(new TcPackProgram(64, false))).to.not.include('loAt + e');
  });
});
