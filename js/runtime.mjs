// The TF.js runtime side of transferjs: load an exported bundle from disk in
// Node.js with plain @tensorflow/tfjs (no tfjs-node: it downloads libtensorflow
// at install) and run it on the wasm or cpu backend.
//
// Example:
//   import { initBackend, loadBundle } from './runtime.mjs';
//   await initBackend('wasm');
//   const { model } = await loadBundle('out/tfjs');
//   const y = model.predict(tf.zeros([1, 224, 224, 3]));

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

// require() (not import) so that NODE_PATH works: this file is also copied into
// exported bundles, which find @tensorflow/tfjs in their own node_modules or
// through NODE_PATH.
const require = createRequire(import.meta.url);

/** require(name), or a one-line answer (exit 5) instead of Node's MODULE_NOT_FOUND stack when it is not installed. */
export function requirePackage(name) {
  try {
    return require(name);
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND' || !String(e.message).includes(name)) throw e;
    console.error(`error: the Node.js package '${name}' is not installed: run \`npm install\` in ` +
      `${path.dirname(new URL(import.meta.url).pathname)} (package.json lists it), or set NODE_PATH to a node_modules that has it`);
    process.exit(5);
  }
}

const tf = requirePackage('@tensorflow/tfjs');
requirePackage('@tensorflow/tfjs-backend-wasm');

export { tf };

/** An error about the bundle's files; the message names the file. */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

/** Select and initialise a backend ('wasm' or 'cpu'); returns its name. */
export async function initBackend(name = 'wasm') {
  if (!(await tf.setBackend(name))) {
    throw new Error(`TF.js backend '${name}' failed to initialise`);
  }
  await tf.ready();
  return tf.getBackend();
}

function readJson(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new BundleError(`Cannot read '${file}' (${e.code === 'ENOENT' ? 'file not found' : e.message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BundleError(`'${file}' is not valid JSON (${e.message}); expected a TF.js model.json`);
  }
}

function specBytes(spec) {
  const size = spec.shape.reduce((a, b) => a * b, 1);
  const q = spec.quantization;
  if (q) return size * (q.dtype === 'float16' || q.dtype === 'uint16' ? 2 : 1);
  return size * (spec.dtype === 'bool' || spec.dtype === 'uint8' ? 1 : 4);
}

/**
 * Read model.json and its shards into the artifacts tfjs' loaders take.
 * Checks every shard exists and that their total size matches the weight specs.
 */
export function readArtifacts(dir) {
  const modelJson = path.join(dir, 'model.json');
  const json = readJson(modelJson);
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new BundleError(`'${modelJson}' has no modelTopology/weightsManifest; expected a TF.js model.json`);
  }
  const weightSpecs = [];
  const buffers = [];
  for (const group of json.weightsManifest) {
    weightSpecs.push(...group.weights);
    let groupBytes = 0;
    for (const p of group.paths) {
      const shard = path.join(dir, p);
      let buf;
      try {
        buf = fs.readFileSync(shard);
      } catch (e) {
        throw new BundleError(`Weight shard '${shard}' named in '${modelJson}' is missing`);
      }
      groupBytes += buf.length;
      buffers.push(buf);
    }
    const expected = group.weights.reduce((a, s) => a + specBytes(s), 0);
    if (groupBytes !== expected) {
      throw new BundleError(
        `Weight shards ${group.paths.map((p) => `'${path.join(dir, p)}'`).join(', ')} hold ${groupBytes} bytes; ` +
          `'${modelJson}' expects ${expected}`,
      );
    }
  }
  const all = Buffer.concat(buffers);
  return {
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
    modelInitializer: json.modelInitializer,
    initializerSignature: json.initializerSignature,
    weightSpecs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
  };
}

/** Load a TF.js bundle folder (graph or layers model.json); returns { model, kind }. */
export async function loadBundle(dir) {
  const artifacts = readArtifacts(dir);
  const handler = { load: async () => artifacts };
  // Keras 2.x-era converters wrap the config: { keras_version, backend, model_config: {class_name, …} }.
  const topo = artifacts.modelTopology;
  const isLayers = artifacts.format === 'layers-model' || topo.class_name !== undefined || topo.model_config !== undefined;
  if (isLayers) return { model: await tf.loadLayersModel(handler), kind: 'layers' };
  return { model: runInitializer(await tf.loadGraphModel(handler)), kind: 'graph' };
}

/**
 * Run a graph model's initializer now, outside any tf.tidy (weights computed at load, e.g.
 * `--restore-at-load` uint8 kernels): TF.js runs it inside the first execute, and a tidy around
 * that call would dispose what it computed.
 */
export function runInitializer(model) {
  if (model.resourceIdToCapturedInput == null && typeof model.executeInitializerGraph === 'function'
      && model.artifacts && model.artifacts.initializerSignature) {
    model.setResourceIdToCapturedInput(model.executeInitializerGraph());
  }
  return model;
}

/**
 * The inputs a caller feeds: a graph model's inputs less those TF.js fills itself from the
 * initializer graph (signature inputs with a resourceId, e.g. per-channel uint8 kernels).
 */
export function userInputs(model) {
  const sig = (model.modelSignature && model.modelSignature.inputs) || {};
  const captured = new Set(Object.values(sig).filter((s) => s.resourceId != null).map((s) => s.name.split(':')[0]));
  return model.inputs.filter((i) => !captured.has(i.name));
}

/** Op types of a graph model's topology (main graph, functions, and the initializer run once at load). */
export function graphOps(artifacts) {
  const ops = new Set();
  const topo = artifacts.modelTopology;
  for (const n of topo.node || []) ops.add(n.op);
  for (const n of (artifacts.modelInitializer && artifacts.modelInitializer.node) || []) ops.add(n.op);
  for (const f of (topo.library && topo.library.function) || []) {
    for (const n of f.nodeDef || []) ops.add(n.op);
  }
  return [...ops].sort();
}
