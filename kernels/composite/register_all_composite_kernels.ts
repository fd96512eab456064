import type {KernelConfig} from '@tensorflow/tfjs-core';

/** Composite kernel configs; backendName is filled in by registerCompositeKernels. */
export const compositeKernelConfigs: Array<Omit<KernelConfig, 'backendName'>> = [];
