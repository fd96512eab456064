import type {SupportedFeatures} from '../attention_kernel_func.js';

/** The plan options (src/plan/plan.ts PlanFeature) the webgl kernels execute, forward and backward. */
export const WEBGL_FEATURES: SupportedFeatures = ['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'];
