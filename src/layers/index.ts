/**
 * tf.layers integration: Keras / keras_hub layers whose attention runs on the library's kernels. Importing this
 * module registers the classes with tf.serialization (and a Functional model class that honours the call arguments
 * stored in Keras JSON), so tf.loadLayersModel can restore models that use them.
 */
export {KerasFunctional, KerasModel, resolveTensorKwargs} from './functional.js';
export {multiHeadAttention, MultiHeadAttention} from './MultiHeadAttention.js';
export type {MultiHeadAttentionArgs, MultiHeadAttentionCallArgs} from './MultiHeadAttention.js';
export {positionEmbedding, PositionEmbedding} from './PositionEmbedding.js';
export type {PositionEmbeddingArgs} from './PositionEmbedding.js';
export {transformerDecoder, TransformerDecoder} from './TransformerDecoder.js';
export type {TransformerDecoderArgs, TransformerDecoderCallArgs} from './TransformerDecoder.js';
export {transformerEncoder, TransformerEncoder} from './TransformerEncoder.js';
export type {TransformerEncoderArgs, TransformerEncoderCallArgs} from './TransformerEncoder.js';
export type {AttentionSpec, PatternBuilderName, SparsePatternSpec} from './attention_spec.js';
export {RotaryEmbedding, rotaryEmbeddingLayer} from './RotaryEmbedding.js';
export type {RotaryEmbeddingArgs} from './RotaryEmbedding.js';
