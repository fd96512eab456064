import {makeAttentionGradConfig} from './attention_grad.js';

export const slidingWindowAttentionGradConfig = makeAttentionGradConfig('sliding');
