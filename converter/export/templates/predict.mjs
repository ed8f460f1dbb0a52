#!/usr/bin/env node
// Classify an image file with this TF.js bundle in Node.js (wasm backend).
//
// Usage: node predict.mjs IMAGE.(png|jpg) [--top 5] [--backend wasm|cpu] [--json]
// Needs @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm, pngjs and jpeg-js:
// `npm install` in this folder (see package.json), or NODE_PATH set to a node_modules that has them.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeImage } from './decode.mjs';
import { initBackend, loadBundle, tf } from './runtime.mjs';
import { preprocess, topK } from './preprocess.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const args = { top: 5, backend: 'wasm', json: false, images: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--top') args.top = Number(argv[++i]);
    else if (argv[i] === '--backend') args.backend = argv[++i];
    else if (argv[i] === '--json') args.json = true;
    else args.images.push(argv[i]);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
if (!args.images.length) {
  console.error('usage: node predict.mjs IMAGE [IMAGE ...] [--top 5] [--backend wasm|cpu] [--json]');
  process.exit(2);
}
try {
  await initBackend(args.backend);
  const meta = JSON.parse(fs.readFileSync(path.join(here, 'metadata.json'), 'utf8'));
  const { model } = await loadBundle(here);
  const results = [];
  for (const image of args.images) {
    const pixels = decodeImage(image);
    const x = preprocess(tf, pixels, meta.inputs[0]);
    const feeds = { [meta.inputs[0].name]: x };
    const out = meta.executeAsync ? await model.executeAsync(feeds, meta.outputs[0].name) : model.execute(feeds, meta.outputs[0].name);
    results.push({ image, top: topK(tf, out, meta, args.top) });
    tf.dispose([pixels, x, out]);
  }
  if (args.json) console.log(JSON.stringify({ backend: tf.getBackend(), results }));
  else {
    for (const { image, top } of results) {
      console.log(image);
      for (const t of top) console.log(`  ${t.label.padEnd(24)} ${(100 * t.probability).toFixed(1)}%`);
    }
  }
} catch (e) {
  console.error(`error: ${e.message}`);
  process.exit(1);
}
