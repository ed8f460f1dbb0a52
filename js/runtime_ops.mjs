// Ask the installed TF.js runtime what it can run; print it as JSON.
//
// Usage: node runtime_ops.mjs > converter/export/tfjs_runtime/4.22.0.json
//
// - converter_ops: every TF op name the tfjs-converter graph executor maps
//   (its op_list modules, the same tables its OperationMapper loads);
// - kernels: the kernels registered for the wasm and cpu backends;
// - async_ops: the ops of the executor's control, dynamic and hash_table
//   categories: their executors return promises, so a graph with one runs only
//   in model.executeAsync() (execute() refuses it);
// - fusable_activations: the activations the wasm backend's fused kernels
//   (FusedConv2D, FusedDepthwiseConv2D, _FusedMatMul) accept, from its
//   FusableActivation enum ('linear' is no activation).
//
// Python's converter/export/tfjs_ops.py checks exported graphs against it.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');

function packageDir(name) {
  return path.dirname(require.resolve(`${name}/package.json`));
}

// The dist modules are ES modules in packages without "type": "module"; import
// their text as a data: URL (they import nothing).
async function importText(file) {
  const text = fs.readFileSync(file, 'utf8');
  return import(`data:text/javascript;base64,${Buffer.from(text).toString('base64')}`);
}

const ASYNC_CATEGORIES = new Set(['control', 'dynamic', 'hash_table']);

async function converterOps() {
  const dir = path.join(packageDir('@tensorflow/tfjs-converter'), 'dist', 'operations', 'op_list');
  const names = new Set();
  const asyncNames = new Set();
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.js')).sort()) {
    const { json } = await importText(path.join(dir, file));
    for (const mapper of json || []) {
      names.add(mapper.tfOpName);
      if (ASYNC_CATEGORIES.has(mapper.category)) asyncNames.add(mapper.tfOpName);
    }
  }
  return { all: [...names].sort(), async: [...asyncNames].sort() };
}

async function fusableActivations() {
  const file = path.join(packageDir('@tensorflow/tfjs-backend-wasm'), 'dist', 'kernels', 'types.js');
  const { FusableActivation } = await importText(file);
  return Object.keys(FusableActivation).filter((k) => isNaN(Number(k)) && k !== 'linear').sort();
}

function kernels(backend) {
  return [...new Set(tf.getKernelsForBackend(backend).map((k) => k.kernelName))].sort();
}

const ops = await converterOps();
const result = {
  tfjs: tf.version.tfjs,
  converter: require('@tensorflow/tfjs-converter/package.json').version,
  backend_wasm: require('@tensorflow/tfjs-backend-wasm/package.json').version,
  converter_ops: ops.all,
  async_ops: ops.async,
  kernels: { wasm: kernels('wasm'), cpu: kernels('cpu') },
  fusable_activations: { wasm: await fusableActivations() },
};
process.stdout.write(JSON.stringify(result, null, 1) + '\n');
