export {layoutDensity} from './block_layout.js';
export type {BlockLayout} from './block_layout.js';
export {bigBird, fixed, fromBlockMask, intersect, local, longformer, strided, union} from './builders.js';
export type {BigBirdParams, FixedParams, LocalParams, LongformerParams, StridedParams} from './builders.js';
