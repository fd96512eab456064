/**
 * tf.layers integration: layers whose attention runs on the library's kernels. Importing this module registers the
 * classes with tf.serialization, so tf.loadLayersModel can restore models that use them.
 */
export {multiHeadAttention, MultiHeadAttention} from './MultiHeadAttention.js';
export type {MultiHeadAttentionArgs} from './MultiHeadAttention.js';
export {transformerBlock, TransformerBlock} from './TransformerBlock.js';
export type {TransformerBlockArgs} from './TransformerBlock.js';
export {positionEmbedding, PositionEmbedding} from './PositionEmbedding.js';
export type {PositionEmbeddingArgs} from './PositionEmbedding.js';
export type {AttentionSpec, PatternBuilderName, SparsePatternSpec} from './attention_spec.js';
export {RotaryEmbedding, rotaryEmbeddingLayer} from './RotaryEmbedding.js';
export type {RotaryEmbeddingArgs} from './RotaryEmbedding.js';
