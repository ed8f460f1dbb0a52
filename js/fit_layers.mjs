// Train a TF.js layers model further in Node.js: the JavaScript side of transfer learning.
//
// Usage: node fit_layers.mjs REQUEST.json RESULT.json
// REQUEST: { "model": dir, "x": {dtype, shape, data}, "y": {…}, "epochs": n, "learningRate": lr }
// RESULT:  { "losses": [...], "predictions": {dtype, shape, data} } or { "error": message }

import fs from 'node:fs';
import { initBackend, loadBundle, tf } from './runtime.mjs';

function decode({ shape, data }) {
  const bytes = Buffer.from(data, 'base64');
  return tf.tensor(new Float32Array(new Uint8Array(bytes).buffer), shape, 'float32');
}

const [reqPath, resPath] = process.argv.slice(2);
const req = JSON.parse(fs.readFileSync(reqPath, 'utf8'));
let result;
try {
  await initBackend(req.backend || 'cpu');
  const { model, kind } = await loadBundle(req.model);
  if (kind !== 'layers') throw new Error(`'${req.model}' is a ${kind} model; model.fit needs a layers model`);
  const x = decode(req.x);
  const y = decode(req.y);
  model.compile({ optimizer: tf.train.adam(req.learningRate ?? 0.01), loss: 'categoricalCrossentropy' });
  const history = await model.fit(x, y, { epochs: req.epochs ?? 10, batchSize: req.batchSize ?? 32, shuffle: false, verbose: 0 });
  const p = model.predict(x);
  const values = p.dataSync();
  result = {
    losses: history.history.loss,
    predictions: { dtype: 'float32', shape: p.shape, data: Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64') },
  };
} catch (e) {
  result = { error: String(e.message || e) };
}
fs.writeFileSync(resPath, JSON.stringify(result));
