import * as tf from '@tensorflow/tfjs-core';

const kernelConfigs: tf.KernelConfig[] = [];

for (const config of kernelConfigs) tf.registerKernel(config);
