/**
 * Value accumulation: the row side of attention's second matmul, O = P·V (and the backward's dQ = dS·K).
 *   RowAccumulateProgram     two rows × two channels per fragment, streaming a chunk's tile buffer, added to the sum
 *                            so far (rescaled when rows span several slot ranges)
 *   ValueBlocksProgram       the forward's P·V of one chunk as eight targets, 4 rows × 8 channels per fragment, from
 *                            ProbabilityBlocksProgram's targets: an unguarded pass and a NaN/Inf fix-up pass
 *   MergeValueBlocksProgram  a chunk's eight O targets added to the O so far (four targets per draw)
 */
import {
  AttentionProgram, AttentionVariant, BLOCK_LAYOUT_UNIFORMS, blockNames, BlockProgram, channelGroups, PLAN_UNIFORMS,
  TILE, UniformValues,
} from './attention_program.js';
import {hiddenTileSkip} from './attention_options.js';
import {
  BLOCK_XY_HELPER, headOfRow, KEY_ROW_BASE, locateQueryRow, nonFiniteFixupHelper, planHelpers, texelHelpers, unroll,
} from './glsl_helpers.js';

/**
 * Row-side accumulation over a chunk's tile buffer: out[r, c] = previous[r, c] + Σ_keys tiles[r, key] · values[key, c]
 * for the rows of the chunk (O = P·V, or dQ = dS·K) over its slot range; other rows are copied from `previous` (0
 * without it). With `rescale` (the forward's rows that span several slot ranges, whose tiles are exp(t − lse) with
 * lse over the ranges so far), previous[r, ·] is first multiplied by exp(previousLse[r] − lse[r]). Tiles the data
 * hide (hiddenTileSkip: every entry masked, adding +0) are skipped.
 */
export class RowAccumulateProgram extends AttentionProgram {
  variableNames = ['tiles', 'values', 'table', 'keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, accumulate: boolean, values: UniformValues,
              rescale = false) {
    super(outShape);
    if (accumulate) this.variableNames.push('previous');
    if (rescale) this.variableNames.push('previousLse', 'lse');
    const hidden = hiddenTileSkip(v.options);
    this.variableNames.push(...hidden.inputs);
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'valuesWidth', 'tilesWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart',
         'slotEnd', 'slotTexels', 'rowCount', ...(rescale ? ['statsWidth'] : []), ...hidden.uniforms],
        values);
    const D = v.headTexels;
    this.userCode = `
      ${texelHelpers()}
      ${planHelpers(v)}${hidden.helpers}
      void main() {
        int t = outputTexel();
        int pair = t / ${D};
        int c = t - pair * ${D};
        int r = 2 * pair;
        int rowTile = r / ${TILE};
        vec4 acc = ${accumulate ? 'fetchTexel(previous, t, outWidth)' : 'vec4(0.0)'};
        if (r >= rowCount || rowTile < chunkTileStart || rowTile >= chunkTileEnd) {
          setOutput(acc);
          return;
        }
        ${rescale ? `
        // The tiles are exp(t − lse) with lse over the slot ranges so far: rescale the earlier ranges' sum to it.
        vec4 before = fetchTexel(previousLse, r / 4, statsWidth), now = fetchTexel(lse, r / 4, statsWidth);
        vec2 lseBefore = (r - 4 * (r / 4)) == 0 ? before.xy : before.zw;
        vec2 lseNow = (r - 4 * (r / 4)) == 0 ? now.xy : now.zw;
        bvec2 seen = notEqual(lseBefore, vec2(negativeInfinity()));
        acc *= mix(vec2(0.0), exp(mix(vec2(0.0), lseBefore - lseNow, seen)), seen).xxyy;` : ''}
        ${locateQueryRow('rowAndTile')}
        ${headOfRow({keyRowBase: true, keyEnd: true})}
        int localPair = pair - chunkTileStart * ${TILE / 2};
        vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
        int firstSlot = int(header.x), slots = min(int(header.y), slotEnd);
        vec4 p, x;
        bvec4 live;
        for (int s = slotStart; s < slots; s++) {
          vec4 slot = tableTexel(rowSlotBase + firstSlot + s);
          int k0 = int(slot.x) * ${TILE};
          if (k0 >= keyEnd) break;${hidden.skip('queryTile', 'int(slot.x)')}
          ivec2 pxy = texelXY(localPair * slotTexels + (s - slotStart) * ${TILE / 2}, tilesWidth);
          ivec2 vxy = texelXY(((keyRowBase + k0) / 2) * ${D} + c, valuesWidth);
          // Partial tiles skip masked entries (maskedZero): see valueBlocksProgram.
          // (A loop over four groups of key pairs, not unrolled, keeps the guarded copy small: see valueBlockSteps.)
          if (slot.y == 0.0 || k0 + ${TILE} > keyEnd${hidden.partial('queryTile', 'int(slot.x)')}) {
            for (int q4 = 0; q4 < ${TILE / 8}; q4++) {
              ${unroll(4, (n) => `
              p = texelFetch(tiles, pxy + ivec2(4 * q4 + ${n}, 0), 0);
              x = texelFetch(values, vxy + ivec2((4 * q4 + ${n}) * ${D}, 0), 0);
              live = isLive(p);
              acc += mix(vec4(0.0), p.xxzz * x.xyxy, live.xxzz) + mix(vec4(0.0), p.yyww * x.zwzw, live.yyww);`)}
            }
          } else {
            ${unroll(TILE / 2, (jp) => `
            p = texelFetch(tiles, pxy + ivec2(${jp}, 0), 0);          // (r0k0, r0k1, r1k0, r1k1)
            x = texelFetch(values, vxy + ivec2(${jp * D}, 0), 0);     // (k0c0, k0c1, k1c0, k1c1)
            acc += p.xxzz * x.xyxy + p.yyww * x.zwzw;`)}
          }
        }
        setOutput(acc);
      }
    `;
  }
}

/**
 * Vertex stage of ValueBlocksProgram's fix-up pass: per query tile of the chunk, a rectangle over the output lines
 * holding its fragments when needsFixup says so, else nothing. With finite values (the common case) the pass shades
 * no fragment at all: on SwiftShader, fragments that only scanned their schedule and discarded cost as much as a
 * third of the P·V draw.
 */
function nonFiniteFixupCover(v: AttentionVariant, rowTiles: number): {vertices: number, body: string} {
  const fragmentsPerTile = (TILE / 4) * channelGroups(v.headTexels);
  const hidden = hiddenTileSkip(v.options);
  return {
    vertices: 6 * rowTiles,
    body: `
      ${texelHelpers(false)}
      ${planHelpers(v, true)}${hidden.helpers}
      ${nonFiniteFixupHelper(hidden)}
      void main() {
        int rowTile = chunkTileStart + gl_VertexID / 6, corner = gl_VertexID - 6 * (gl_VertexID / 6);
        ${locateQueryRow('rowTile')}
        ${headOfRow()}
        vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
        int slots = min(int(header.y), slotEnd);
        int keyRowBase = ${KEY_ROW_BASE};
        if (!needsFixup(int(header.x), slots, keyRowBase, keyLimit(b)${hidden.active ? ', b, h, queryTile' : ''})) {
          gl_Position = vec4(0.0, 0.0, 0.0, 1.0);  // every corner at one point: nothing drawn
          return;
        }
        // The lines holding fragments rowTile · ${fragmentsPerTile} … (neighbours sharing a line are drawn too; their
        // fragments decide for themselves).
        int f0 = rowTile * ${fragmentsPerTile};
        float y0 = float(f0 / outWidth), y1 = float((f0 + ${fragmentsPerTile} - 1) / outWidth + 1);
        // Two triangles: corners (0, 0), (1, 0), (0, 1), (1, 0), (1, 1), (0, 1).
        bool right = corner == 1 || corner == 3 || corner == 4;
        bool up = corner == 2 || corner == 4 || corner == 5;
        gl_Position = vec4(right ? 1.0 : -1.0, 2.0 * (up ? y1 : y0) / float(outLines) - 1.0, 0.0, 1.0);
      }
    `,
  };
}

/**
 * The forward's P·V of one chunk as a multiple-render-target draw: each fragment owns 4 rows × 8 channels (target
 * 4·ρ + n = row pair ρ × channel pair n of fragment f = rowGroup · channelGroups + cg, rows 4·rowGroup …), fetching 6
 * texels per 2 keys × 4 rows × 8 channels instead of 16, P from ProbabilityBlocksProgram's eight targets. Rows outside
 * the chunk are 0; MergeValueBlocksProgram adds a chunk to the O so far. (O is not read here: with it the draw would
 * need 8 more samplers, 21 in all, past the 16 that WebGL2 guarantees a fragment shader.) O lives in the eight
 * targets until UnpackRowsProgram (blocks) reads it back.
 *
 * Two passes, so that the common case carries no guard code:
 * - 'unguarded' sums every entry. A masked entry's P is -0.0 (maskedZero), which adds nothing as long as its key's
 *   value is finite.
 * - 'nonFiniteFixup' draws into the same targets afterwards and redoes, with masked entries skipped, only the
 *   fragments whose partial tiles (the only ones with masked entries) hold a NaN or infinite value
 *   (NonFiniteKeyTilesProgram): its vertex stage (nonFiniteFixupCover) draws only the query tiles that need it, and
 *   fragments there that do not are discarded. A masked key's NaN or Infinity must not reach a row through 0 · NaN.
 * Why not one pass with a guarded branch for partial tiles: on SwiftShader the mere presence of the guarded copy in
 * the shader made the draw ~30% slower (causal seq 1024: 38–42 ms → 28–30 ms without it), although full tiles never
 * run it.
 */
export class ValueBlocksProgram extends BlockProgram {
  variableNames: string[];

  constructor(v: AttentionVariant, values: UniformValues, pass: 'unguarded' | 'nonFiniteFixup') {
    super();
    const fixup = pass === 'nonFiniteFixup';
    // (With every option that hides tiles and keyLengths, the fix-up pass reads 16 textures: WebGL2's minimum.)
    const hidden = hiddenTileSkip(v.options);
    this.variableNames = [...blockNames('probs'), 'values', ...(fixup ? ['nonFiniteTiles'] : []), 'table',
                          ...(v.hasKeyLengths ? ['keyEnds'] : []), ...hidden.inputs];
    this.declareUniforms(
        [...PLAN_UNIFORMS, ...BLOCK_LAYOUT_UNIFORMS, 'outWidth', 'valuesWidth', 'chunkTileStart', 'chunkTileEnd',
         'slotStart', 'slotEnd', 'rowCount', ...(fixup ? ['nonFiniteWidth', 'outLines'] : []),
         ...(v.hasKeyLengths ? ['keyEndsWidth'] : []), ...hidden.uniforms],
        values);
    if (fixup) this.cover = nonFiniteFixupCover(v, values.chunkTileEnd - values.chunkTileStart);
    const D = v.headTexels;
    const targets = [0, 1, 2, 3, 4, 5, 6, 7];
    // The slot loop's head: the slot's key tile, its first key k0, and the end of the row's keys.
    const slotHead = `
            vec4 slot = tableTexel(rowSlotBase + firstSlot + s);
            int k0 = int(slot.x) * ${TILE};
            if (k0 >= keyEnd) break;${hidden.skip('queryTile', 'int(slot.x)')}`;
    this.userCode = `
      ${texelHelpers(false)}
      ${planHelpers(v, true)}${hidden.helpers}
      ${BLOCK_XY_HELPER}${fixup ? nonFiniteFixupHelper(hidden) : ''}
      void main() {
        int f = int(gl_FragCoord.y) * outWidth + int(gl_FragCoord.x);
        int rowGroup = f / ${channelGroups(D)};
        int cg = f - rowGroup * ${channelGroups(D)};
        int r = 4 * rowGroup;
        int rowTile = r / ${TILE};
        ${targets.map((o) => `vec4 acc${o} = vec4(0.0);`).join(' ')}
        ${fixup ? `
        if (r >= rowCount || rowTile < chunkTileStart || rowTile >= chunkTileEnd) discard;` : `
        if (r < rowCount && rowTile >= chunkTileStart && rowTile < chunkTileEnd)`} {
          ${locateQueryRow('rowAndTile')}
          ${headOfRow({keyRowBase: true, keyEnd: true})}
          int localGroup = rowGroup - chunkTileStart * ${TILE / 4};
          vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
          int firstSlot = int(header.x), slots = min(int(header.y), slotEnd);${fixup ? `
          if (!needsFixup(firstSlot, slots, keyRowBase, keyEnd${hidden.active ? ', b, h, queryTile' : ''})) discard;` :
              ''}
          vec4 p0, p1, x0, x1, x2, x3;${fixup ? `
          bvec4 live0, live1;` : ''}
          for (int s = slotStart; s < slots; s++) {${slotHead}
            // P of rows r … r + 3 × the slot's keys: probability blocks kg = 0 … 3 (neighbours on one line).
            ivec2 pxy = blockXY(localGroup, s - slotStart);
            int vBase = ((keyRowBase + k0) / 2) * ${D} + 4 * cg;
            ${[0, 1, 2, 3].map((n) => `
            ivec2 v${n}xy = texelXY(vBase + ${n}, valuesWidth);`).join('')}
            ${fixup ? '// Masked entries skipped on every tile (full tiles have none).' : ''}
            ${valueBlockSteps(D, fixup)}
          }
        }
        ${targets.map((o) => `out${o} = acc${o};`).join(' ')}
      }
    `;
  }
}

/** The unrolled P·V steps of ValueBlocksProgram over one key tile; `guarded`: masked entries add nothing. */
function valueBlockSteps(D: number, guarded: boolean): string {
  const targets = [0, 1, 2, 3, 4, 5, 6, 7];
  if (guarded) {
    // A loop over the four key groups, not unrolled: the guarded steps stay small (they run only in the rare fix-up
    // pass).
    return `
            for (int kg = 0; kg < 4; kg++) {
              ${unroll(4, (n) => `
              p0 = texelFetch(probs${n}, pxy + ivec2(kg, 0), 0);
              p1 = texelFetch(probs${4 + n}, pxy + ivec2(kg, 0), 0);
              ${[0, 1, 2, 3].map((m) => `x${m} = texelFetch(values, v${m}xy + ivec2((4 * kg + ${n}) * ${D}, 0), 0);`)
                  .join(' ')}
              live0 = isLive(p0); live1 = isLive(p1);
              ${targets.map((o) => {
                const p = `p${o >> 2}`, x = `x${o & 3}`, live = `live${o >> 2}`;
                return `
              acc${o} += mix(vec4(0.0), ${p}.xxzz * ${x}.xyxy, ${live}.xxzz) +
                         mix(vec4(0.0), ${p}.yyww * ${x}.zwzw, ${live}.yyww);`;
              }).join('')}`)}
            }`;
  }
  return unroll(TILE / 2, (jp) => `
            p0 = texelFetch(probs${jp & 3}, pxy + ivec2(${jp >> 2}, 0), 0);
            p1 = texelFetch(probs${4 + (jp & 3)}, pxy + ivec2(${jp >> 2}, 0), 0);
            ${[0, 1, 2, 3].map((n) => `x${n} = texelFetch(values, v${n}xy + ivec2(${jp * D}, 0), 0);`).join(' ')}
            ${targets.map((o) => `
            acc${o} += p${o >> 2}.xxzz * x${o & 3}.xyxy + p${o >> 2}.yyww * x${o & 3}.zwzw;`).join('')}`);
}

/**
 * O after one more chunk, for half of the eight O targets (targets 4·half … 4·half + 3: rows 2·half, 2·half + 1 of
 * each fragment's four): previous + chunk for the chunk's rows, previous elsewhere. With `rescale` (rows spanning
 * several slot ranges, whose P is exp(t − lse) with lse over the slot ranges so far), previous is first multiplied by
 * exp(previousLse − lse). Four targets per draw: 4 + 4 (+ 2) samplers.
 */
export class MergeValueBlocksProgram extends BlockProgram {
  variableNames: string[];
  targets = 4;

  constructor(headTexels: number, half: 0 | 1, rescale: boolean, values: UniformValues) {
    super();
    this.variableNames = [...blockNames('previous').slice(0, 4), ...blockNames('chunk').slice(0, 4),
                          ...(rescale ? ['previousLse', 'lse'] : [])];
    this.declareUniforms(['outWidth', 'chunkTileStart', 'chunkTileEnd', 'rowCount',
                          ...(rescale ? ['statsWidth'] : [])], values);
    const targets = [0, 1, 2, 3];
    this.userCode = `
      ${texelHelpers(false)}
      void main() {
        ivec2 xy = ivec2(gl_FragCoord.xy);
        int r = 4 * ((xy.y * outWidth + xy.x) / ${channelGroups(headTexels)});
        int rowTile = r / ${TILE};
        bool inChunk = r < rowCount && rowTile >= chunkTileStart && rowTile < chunkTileEnd;
        vec4 factor = vec4(1.0);
        ${rescale ? `
        if (inChunk) {
          vec4 before = fetchTexel(previousLse, r / 4, statsWidth), now = fetchTexel(lse, r / 4, statsWidth);
          bvec4 seen = notEqual(before, vec4(negativeInfinity()));
          factor = mix(vec4(0.0), exp(mix(vec4(0.0), before - now, seen)), seen);
        }` : ''}
        ${targets.map((o) => `
        out${o} = texelFetch(previous${o}, xy, 0) * factor.${half === 0 ? 'xxyy' : 'zzww'} +
                  (inChunk ? texelFetch(chunk${o}, xy, 0) : vec4(0.0));`).join('')}
      }
    `;
  }
}
