#!/usr/bin/env node
// Classify an image file with this TF.js bundle in Node.js (wasm backend).
//
// Usage: node predict.mjs IMAGE.(png|jpg) [--top 5] [--backend wasm|cpu] [--json]
// Needs @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm, pngjs and jpeg-js:
// `npm install` in this folder (see package.json), or NODE_PATH set to a node_modules that has them.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { initBackend, loadBundle, tf } from './runtime.mjs';
import { preprocess, topK } from './preprocess.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

function decodeImage(file) {
  const bytes = fs.readFileSync(file);
  let rgba, width, height;
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    const { PNG } = require('pngjs');
    const png = PNG.sync.read(bytes);
    ({ width, height } = png);
    rgba = png.data;
  } else if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    const jpeg = require('jpeg-js');
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
    ({ width, height } = img);
    rgba = img.data;
  } else {
    throw new Error(`'${file}' is not a PNG or JPEG file`);
  }
  // Composite transparency onto white, as the training images were.
  const rgb = new Int32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const a = rgba[i * 4 + 3] / 255;
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = Math.round(rgba[i * 4 + c] * a + 255 * (1 - a));
  }
  return tf.tensor3d(rgb, [height, width, 3], 'int32');
}

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
    const out = model.execute({ [meta.inputs[0].name]: x }, meta.outputs[0].name);
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
