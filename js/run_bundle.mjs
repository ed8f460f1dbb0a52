// Run a TF.js bundle on golden inputs written by Python; write its outputs.
//
// Usage: node run_bundle.mjs REQUEST.json RESULT.json
// REQUEST: { "bundle": dir, "backend": "wasm"|"cpu",
//            "samples": [ { name: {dtype, shape, data: base64 little-endian} } ],
//            "repeat": optional int (timed runs after one warm-up),
//            "executeAsync": optional bool (graphs with control flow; Python decides from the ops) }
// RESULT:  { "ok": true, backend, kind, inputs, outputs, ops,
//            "samples": [ { name: {dtype, shape, data} } ], "latency_ms": [...] }
//          or { "ok": false, "error": message, "kind": "bundle"|"runtime" }
//
// The process exits 0 when it could write RESULT; Python reads the verdict there.

import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { tf, initBackend, loadBundle, readArtifacts, graphOps, userInputs, BundleError } from './runtime.mjs';

const ARRAYS = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };

function decode({ dtype, shape, data }) {
  const bytes = Buffer.from(data, 'base64');
  const Arr = ARRAYS[dtype];
  if (!Arr) throw new Error(`TF.js has no dtype '${dtype}' (inputs must be float32, int32 or bool)`);
  const copy = new Uint8Array(bytes);
  return tf.tensor(new Arr(copy.buffer), shape, dtype);
}

function encode(t) {
  const values = t.dataSync();
  const buf = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  return { dtype: t.dtype, shape: t.shape, data: buf.toString('base64') };
}

async function runOnce(model, kind, feeds, executeAsync) {
  if (kind === 'layers') {
    const inputs = model.inputs.map((i) => feeds[i.name.split(':')[0]] ?? Object.values(feeds)[0]);
    let out = model.predict(inputs.length === 1 ? inputs[0] : inputs);
    out = Array.isArray(out) ? out : [out];
    return Object.fromEntries(model.outputNames.map((n, i) => [n, out[i]]));
  }
  const names = model.outputNodes;
  // A copy: TF.js adds the initializer's tensors (weights computed at load) to the map it is given.
  const given = { ...feeds };
  let out = executeAsync ? await model.executeAsync(given, names) : model.execute(given, names);
  out = Array.isArray(out) ? out : [out];
  return Object.fromEntries(names.map((n, i) => [n, out[i]]));
}

async function main() {
  const [reqPath, resPath] = process.argv.slice(2);
  const req = JSON.parse(fs.readFileSync(reqPath, 'utf8'));
  let result;
  try {
    const backend = await initBackend(req.backend || 'wasm');
    const { model, kind } = await loadBundle(req.bundle);
    const ops = kind === 'graph' ? graphOps(readArtifacts(req.bundle)) : [];
    const samples = [];
    const latency = [];
    for (const sample of req.samples) {
      const feeds = Object.fromEntries(Object.entries(sample).map(([k, v]) => [k, decode(v)]));
      const outs = await runOnce(model, kind, feeds, req.executeAsync);
      samples.push(Object.fromEntries(Object.entries(outs).map(([k, t]) => [k, encode(t)])));
      tf.dispose(Object.values(outs));
      if (req.repeat && latency.length === 0) {
        for (let i = 0; i < req.repeat; i++) {
          const t0 = performance.now();
          const o = await runOnce(model, kind, feeds, req.executeAsync);
          await Promise.all(Object.values(o).map((t) => t.data()));
          latency.push(performance.now() - t0);
          tf.dispose(Object.values(o));
        }
      }
      tf.dispose(Object.values(feeds));
    }
    result = {
      ok: true,
      backend,
      kind,
      tfjsVersion: tf.version.tfjs,
      inputs: kind === 'graph' ? userInputs(model).map((i) => ({ name: i.name, shape: i.shape, dtype: i.dtype })) : [],
      outputs: kind === 'graph' ? model.outputNodes : model.outputNames,
      ops,
      samples,
      latency_ms: latency,
    };
  } catch (e) {
    result = { ok: false, kind: e instanceof BundleError ? 'bundle' : 'runtime', error: String(e.message || e) };
  }
  fs.writeFileSync(resPath, JSON.stringify(result));
}

await main();
