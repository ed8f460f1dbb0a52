#!/usr/bin/env node
// Classify an image file with this TF.js bundle in Node.js (wasm backend).
//
// Usage: node predict.mjs IMAGE.(png|jpg) [--top 5] [--backend wasm|cpu] [--json]
// Needs @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm, pngjs and jpeg-js:
// `npm install` in this folder (see package.json), or NODE_PATH set to a node_modules that has them.
// A bundle whose metadata.json lists fixedInputs (a sample rate fixed at conversion) says so on stderr.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeImage, ImageError } from './decode.mjs';
import { BundleError, initBackend, loadBundle, tf } from './runtime.mjs';
import { preprocess, topK } from './preprocess.mjs';

// Exit codes, as transferjs' own (README, "Troubleshooting"): 0 ok, 2 bad input (arguments, images,
// the bundle's files), 5 a TF.js runtime failure.
const BAD_INPUT = 2;
const RUNTIME_FAILURE = 5;
const USAGE = 'usage: node predict.mjs IMAGE [IMAGE ...] [--top 5] [--backend wasm|cpu] [--json]';
const here = path.dirname(fileURLToPath(import.meta.url));

function fail(message, code) {
  console.error(`error: ${message}`);
  process.exit(code);
}

function parseArgs(argv) {
  const args = { top: 5, backend: 'wasm', json: false, images: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--top') args.top = Number(argv[++i]);
    else if (argv[i] === '--backend') args.backend = argv[++i];
    else if (argv[i] === '--json') args.json = true;
    else args.images.push(argv[i]);
  }
  if (!args.images.length) fail(`no image given\n${USAGE}`, BAD_INPUT);
  if (!Number.isInteger(args.top) || args.top < 1) fail(`--top must be an integer ≥ 1. Received: '${argv[argv.indexOf('--top') + 1]}'`, BAD_INPUT);
  if (!['wasm', 'cpu'].includes(args.backend)) fail(`--backend must be wasm or cpu. Received: '${args.backend}'`, BAD_INPUT);
  return args;
}

function readMetadata() {
  const file = path.join(here, 'metadata.json');
  let meta;
  try {
    meta = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new BundleError(`Cannot read '${file}' (${e.code === 'ENOENT' ? 'file not found' : e.message}); ` +
      'expected the metadata.json transferjs writes beside model.json');
  }
  if (!Array.isArray(meta.inputs) || !meta.inputs[0] || !Array.isArray(meta.outputs) || !meta.outputs[0]) {
    throw new BundleError(`'${file}' has no inputs/outputs; expected the metadata.json transferjs writes beside model.json`);
  }
  return meta;
}

async function classify(model, meta, image, top) {
  const pixels = decodeImage(image);
  const x = preprocess(tf, pixels, meta.inputs[0]);
  const feeds = { [meta.inputs[0].name]: x };
  const out = meta.executeAsync ? await model.executeAsync(feeds, meta.outputs[0].name) : model.execute(feeds, meta.outputs[0].name);
  const result = topK(tf, out, meta, top);
  tf.dispose([pixels, x, out]);
  return result;
}

// Inputs the converter fixed (a sample rate an If branched on) are not inputs of this bundle: say so.
function fixedInputsNote(meta) {
  const fixed = meta.fixedInputs || [];
  if (!fixed.length) return null;
  const items = fixed.map((f) => `${f.name} = ${f.value}${f.from ? ` (from ${f.from})` : ''}`);
  return `this bundle was converted with ${items.join(', ')} fixed: ${fixed.length > 1 ? 'they are' : 'it is'} ` +
    'not an input here; give data that suits that value, or convert again for another (transferjs convert --sample)';
}

const args = parseArgs(process.argv.slice(2));
try {
  const meta = readMetadata();
  const note = fixedInputsNote(meta);
  if (note) console.error(`note: ${note}`);
  await initBackend(args.backend);
  const { model } = await loadBundle(here);
  // One bad image does not hide the others' answers: each is reported, then the exit code says so.
  const results = [];
  for (const image of args.images) {
    try {
      results.push({ image, top: await classify(model, meta, image, args.top) });
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      results.push({ image, error: e.message });
    }
  }
  if (args.json) console.log(JSON.stringify({ backend: tf.getBackend(), results, ...(meta.fixedInputs ? { fixedInputs: meta.fixedInputs } : {}) }));
  for (const { image, top, error } of results) {
    if (error) console.error(`error: ${error}`);
    else if (!args.json) {
      console.log(image);
      for (const t of top) console.log(`  ${t.label.padEnd(24)} ${(100 * t.probability).toFixed(1)}%`);
    }
  }
  process.exitCode = results.some((r) => r.error) ? BAD_INPUT : 0;
} catch (e) {
  fail(e.message, e instanceof BundleError || e instanceof ImageError ? BAD_INPUT : RUNTIME_FAILURE);
}
