import {makeAttentionGradConfig} from './attention_grad.js';

export const sparseAttentionGradConfig = makeAttentionGradConfig('sparse');
