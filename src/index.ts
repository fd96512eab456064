import './register.js';

export {flashAttention} from './ops/flash_attention.js';
export type {FlashAttentionOptions} from './ops/flash_attention.js';
export {slidingWindowAttention} from './ops/sliding_window_attention.js';
export type {SlidingWindowAttentionOptions} from './ops/sliding_window_attention.js';
export {sparseAttention} from './ops/sparse_attention.js';
export type {SparseAttentionOptions} from './ops/sparse_attention.js';
export type {AttentionWithLse, CommonAttentionOptions} from './ops/run_attention.js';
export * as patterns from './patterns/index.js';
export * as layers from './layers/index.js';
export {MultiHeadAttention, PositionEmbedding, TransformerDecoder, TransformerEncoder} from './layers/index.js';
export type {AttentionSpec, MultiHeadAttentionArgs, PositionEmbeddingArgs, TransformerDecoderArgs, TransformerEncoderArgs} from './layers/index.js';
export type {BlockLayout} from './patterns/block_layout.js';
export {makePlan, MAX_HEAD_DIM} from './plan/plan.js';
export type {AttentionPlan} from './plan/plan.js';
export {ATTENTION_PRECISIONS, lastAttentionPath, PRECISION_FLAG} from './plan/precision.js';
export type {AttentionPath, AttentionPathReport, AttentionPrecision} from './plan/precision.js';
// The one export from kernels/: it configures the backend the kernels run on (tfjs-backend-webgpu is imported only
// when it is called).
export {OPTIONAL_WEBGPU_FEATURES, setupWebGPU} from '../kernels/webgpu/setup_webgpu.js';
export type {SetupWebGPUOptions} from '../kernels/webgpu/setup_webgpu.js';
export type {SubgroupMatrixShape, WebGPUCapabilities} from '../kernels/webgpu/device_capabilities.js';
export {clearScheduleCache, getSchedule} from './plan/schedule.js';
export type {BlockSchedule} from './plan/schedule.js';
export * from './kernel_names.js';
export {updateKVCache} from './ops/update_kv_cache.js';
export {rotaryEmbedding} from './ops/rotary_embedding.js';
export type {RotaryEmbeddingOptions} from './ops/rotary_embedding.js';
export {RotaryEmbedding} from './layers/RotaryEmbedding.js';
export type {RotaryEmbeddingArgs} from './layers/RotaryEmbedding.js';
