import {makeAttentionGradConfig} from './attention_grad.js';

export const flashAttentionGradConfig = makeAttentionGradConfig('flash');
