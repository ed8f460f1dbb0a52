// Write a taught model as a plain transferjs bundle, in the browser: the backbone's graph model with the
// head's dense layers appended as graph nodes (MatMul, BiasAdd, activation), so that model.json +
// shards + metadata.json classify images with the new labels in predict.mjs, `transferjs predict`
// and this page, like any exported bundle. No imports: the caller passes its tf.

const ACTIVATIONS = { softmax: 'Softmax', relu: 'Relu', sigmoid: 'Sigmoid', tanh: 'Tanh', linear: null };
// Files of the backbone's bundle that the new bundle ships as they are, beside the new model.
const APP_FILES = ['index.html', 'classify.mjs', 'preprocess.mjs', 'teach.mjs', 'head.mjs', 'bundle_writer.mjs', 'serve.mjs',
  'predict.mjs', 'decode.mjs', 'runtime.mjs', 'package.json', 'vendor/tf.es2017.min.js', 'vendor/tf-backend-wasm.es2017.min.js',
  'vendor/tfjs-backend-wasm.wasm', 'vendor/tfjs-backend-wasm-simd.wasm', 'vendor/tfjs-backend-wasm-threaded-simd.wasm'];

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`Cannot load '${url}' (HTTP ${r.status})`);
  return new Uint8Array(await r.arrayBuffer());
}

const shapeOf = (dims) => ({ dim: dims.map((d) => ({ size: String(d) })) });
const T = { type: 'DT_FLOAT' };

function constNode(name, shape) {
  return { name, op: 'Const', attr: { value: { tensor: { dtype: 'DT_FLOAT', tensorShape: shapeOf(shape) } }, dtype: T } };
}

/**
 * Append the head's Dense layers (Dropout and InputLayer are identity at inference) after ``feature``.
 * Returns { nodes, weights: [{ spec, data }], output } with output the last node's name.
 */
export function headNodes(tf, head, feature) {
  const nodes = [];
  const weights = [];
  let x = feature;
  head.layers.forEach((layer, i) => {
    const kind = layer.getClassName();
    if (kind === 'InputLayer' || kind === 'Dropout') return;
    if (kind !== 'Dense') throw new Error(`Cannot write a head with a ${kind} layer ('${layer.name}') into a bundle: expected Dense and Dropout`);
    const scope = `transferjs_head/${i}_${layer.name}`;
    const [kernel, bias] = layer.getWeights();
    const activation = layer.getConfig().activation;
    if (!(activation in ACTIVATIONS)) throw new Error(`Unsupported activation '${activation}' in head layer '${layer.name}'`);
    nodes.push(constNode(`${scope}/kernel`, kernel.shape), constNode(`${scope}/bias`, bias.shape));
    weights.push({ spec: { name: `${scope}/kernel`, shape: kernel.shape, dtype: 'float32' }, data: kernel.dataSync() });
    weights.push({ spec: { name: `${scope}/bias`, shape: bias.shape, dtype: 'float32' }, data: bias.dataSync() });
    nodes.push({ name: `${scope}/MatMul`, op: 'MatMul', input: [x, `${scope}/kernel`], attr: { T, transpose_a: { b: false }, transpose_b: { b: false } } });
    nodes.push({ name: `${scope}/BiasAdd`, op: 'BiasAdd', input: [`${scope}/MatMul`, `${scope}/bias`], attr: { T, data_format: { s: btoa('NHWC') } } });
    x = `${scope}/BiasAdd`;
    if (ACTIVATIONS[activation]) {
      nodes.push({ name: `${scope}/${ACTIVATIONS[activation]}`, op: ACTIVATIONS[activation], input: [x], attr: { T } });
      x = `${scope}/${ACTIVATIONS[activation]}`;
    }
  });
  return { nodes, weights, output: x };
}

/**
 * The files of a bundle for backbone (at ``base``, a bundle folder URL) + ``head`` with ``labels``:
 * { path: Uint8Array }. The backbone's shards are copied; the head's weights go into one new shard.
 */
export async function composeBundle(tf, { base, meta, head, labels, name }) {
  const files = {};
  const enc = new TextEncoder();
  const modelJson = JSON.parse(new TextDecoder().decode(await fetchBytes(new URL('model.json', base))));
  const featureKey = meta.outputs[0].name;
  const featureOut = modelJson.signature?.outputs?.[featureKey]?.name || featureKey;
  const { nodes, weights, output } = headNodes(tf, head, featureOut.replace(/:0$/, ''));
  modelJson.modelTopology.node.push(...nodes);
  modelJson.signature.outputs = { probabilities: { name: `${output}:0`, dtype: 'DT_FLOAT', tensorShape: shapeOf([-1, labels.length]) } };
  for (const group of modelJson.weightsManifest) {
    for (const p of group.paths) files[p] = await fetchBytes(new URL(p, base));
  }
  const headBytes = new Uint8Array(weights.reduce((n, w) => n + w.data.length * 4, 0));
  let offset = 0;
  for (const w of weights) {
    headBytes.set(new Uint8Array(new Float32Array(w.data).buffer), offset);
    offset += w.data.length * 4;
  }
  modelJson.weightsManifest.push({ paths: ['head-shard1of1.bin'], weights: weights.map((w) => w.spec) });
  files['head-shard1of1.bin'] = headBytes;
  files['model.json'] = enc.encode(JSON.stringify(modelJson));
  const newMeta = {
    ...meta, modelName: name || meta.modelName, labels, timeStamp: new Date().toISOString(),
    outputs: [{ name: 'probabilities', shape: [-1, labels.length], dtype: 'float32', layout: null, meaning: 'probabilities' }],
    taught: { in: 'browser', backbone: meta.modelName, classes: labels.length },
  };
  files['metadata.json'] = enc.encode(JSON.stringify(newMeta, null, 2) + '\n');
  for (const f of APP_FILES) files[f] = await fetchBytes(new URL(f, base));
  return files;
}

let crcTable = null;
function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip archive (stored, no compression) of { path: Uint8Array } under ``folder``/: a Blob. */
export function zipFiles(files, folder) {
  const enc = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const [p, data] of Object.entries(files)) {
    const name = enc.encode(`${folder}/${p}`);
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [8, 0, 2], [10, 0, 2], [12, 0x21, 2], [14, crc, 4], [18, data.length, 4],
      [22, data.length, 4], [26, name.length, 2], [28, 0, 2]].forEach(([o, v, n]) => (n === 4 ? local.setUint32(o, v, true) : local.setUint16(o, v, true)));
    const entry = new DataView(new ArrayBuffer(46));
    [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [10, 0, 2], [12, 0, 2], [14, 0x21, 2], [16, crc, 4], [20, data.length, 4],
      [24, data.length, 4], [28, name.length, 2], [30, 0, 2], [32, 0, 2], [34, 0, 2], [36, 0, 2], [38, 0, 4], [42, offset, 4]]
      .forEach(([o, v, n]) => (n === 4 ? entry.setUint32(o, v, true) : entry.setUint16(o, v, true)));
    parts.push(local, name, data);
    central.push(entry, name);
    offset += 30 + name.length + data.length;
  }
  const size = central.reduce((n, c) => n + c.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  const count = Object.keys(files).length;
  [[0, 0x06054b50, 4], [4, 0, 2], [6, 0, 2], [8, count, 2], [10, count, 2], [12, size, 4], [16, offset, 4], [20, 0, 2]]
    .forEach(([o, v, n]) => (n === 4 ? end.setUint32(o, v, true) : end.setUint16(o, v, true)));
  return new Blob([...parts, ...central, end], { type: 'application/zip' });
}
