/**
 * The UpdateKVCache program: a plain tfjs GPGPUProgram (one output element per fragment, unpacked; WebGL1 and 2),
 * reading the update where the row was written and the old cache elsewhere. capacity and n are compile-time constants
 * (tfjs keys programs by their input shapes anyway, so decoding token after token reuses one compiled program).
 */
import type {GPGPUProgram} from '@tensorflow/tfjs-backend-webgl';

export class UpdateKVCacheProgram implements GPGPUProgram {
  variableNames = ['cache', 'update', 'positions'];
  outputShape: number[];
  userCode: string;

  constructor(cacheShape: number[], updateRows: number) {
    this.outputShape = cacheShape;
    const capacity = cacheShape[1];
    this.userCode = `
      void main() {
        ivec4 coords = getOutputCoords();  // (b, c, h, d)
        // int32 positions live in float textures (exact below 2^24); the clamp is the kernels' rule.
        int start = int(floor(getPositions(coords.x) + 0.5));
        start = start < 0 ? 0 : (start > ${capacity - updateRows} ? ${capacity - updateRows} : start);
        int r = coords.y - start;
        if (r >= 0 && r < ${updateRows}) {
          setOutput(getUpdate(coords.x, r, coords.z, coords.w));
        } else {
          setOutput(getCache(coords.x, coords.y, coords.z, coords.w));
        }
      }
    `;
  }
}
