#!/usr/bin/env node
// Teach the classifier new classes in Node.js: features from the frozen backbone (graph model),
// then a new softmax head (layers model) fitted on them, started from the shipped head's weights.
//
// Usage: node retrain_head.mjs --data DIR [--epochs 40] [--learning-rate 0.005] [--out head-retrained]
//                              [--head head] [--backend wasm|cpu] [--top 3] [--json] [--classify IMAGE ...]
//
// DIR holds one sub-folder of PNG/JPEG images per class; a folder whose name is not in labels.json is a
// new class. The head is fitted on DIR alone, so put a few images of every old class there too: a class
// without examples is pushed down and soon forgotten. Without --data, the head (--head) classifies the
// --classify images. Needs @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm, pngjs and jpeg-js
// (`npm install` here, see package.json, or NODE_PATH set to a node_modules that has them).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeImage } from './decode.mjs';
import { widenHead } from './head.mjs';
import { initBackend, loadBundle, tf } from './runtime.mjs';
import { preprocess } from './preprocess.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);
const USAGE = 'usage: node retrain_head.mjs --data DIR [--epochs N] [--learning-rate LR] [--out DIR] [--head DIR] ' +
  '[--backend wasm|cpu] [--top K] [--json] [--classify IMAGE ...]';

function parseArgs(argv) {
  const args = { epochs: 40, learningRate: 0.005, out: 'head-retrained', head: path.join(here, 'head'),
    backend: 'wasm', top: 3, batchSize: 16, json: false, classify: [] };
  const value = (i) => {
    if (i >= argv.length) throw new Error(`${argv[i - 1]} needs a value\n${USAGE}`);
    return argv[i];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--data') args.data = value(++i);
    else if (a === '--epochs') args.epochs = Number(value(++i));
    else if (a === '--learning-rate') args.learningRate = Number(value(++i));
    else if (a === '--out') args.out = value(++i);
    else if (a === '--head') args.head = value(++i);
    else if (a === '--backend') args.backend = value(++i);
    else if (a === '--top') args.top = Number(value(++i));
    else if (a === '--json') args.json = true;
    else if (a === '--classify') {
      while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) args.classify.push(argv[++i]);
    } else throw new Error(`Unknown argument '${a}'\n${USAGE}`);
  }
  if (!args.data && !args.classify.length) throw new Error(`Expected --data DIR or --classify IMAGE\n${USAGE}`);
  return args;
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** A head folder's labels: its own labels.json (a retrained head), else the one beside this script. */
function headLabels(headDir) {
  const own = path.join(headDir, 'labels.json');
  return readJson(fs.existsSync(own) ? own : path.join(here, 'labels.json'));
}

/** The class folders of ``dir``: [{ label, files }], sorted by name. */
function listExamples(dir) {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new Error(`Expected a folder with one sub-folder of images per class. Received: '${dir}' (not a folder)`);
  }
  const classes = fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const found = classes.map((label) => ({
    label,
    files: fs.readdirSync(path.join(dir, label)).filter((f) => IMAGE_EXTENSIONS.has(path.extname(f).toLowerCase()))
      .sort().map((f) => path.join(dir, label, f)),
  })).filter((c) => c.files.length);
  if (!found.length) throw new Error(`Expected class sub-folders with PNG or JPEG images in '${dir}'. Received: none`);
  return found;
}

/**
 * Backbone features of image files, batched: { features: [N, D] tensor, kept: files, skipped: [{ file, reason }] }.
 * Files that do not decode are skipped and listed, not fatal.
 */
async function computeFeatures(backbone, meta, files, batchSize) {
  const input = meta.inputs[0];
  const output = meta.outputs[0].name;
  const parts = [];
  const kept = [];
  const skipped = [];
  for (let start = 0; start < files.length; start += batchSize) {
    const xs = [];
    for (const file of files.slice(start, start + batchSize)) {
      try {
        xs.push(tf.tidy(() => preprocess(tf, decodeImage(file), input)));
        kept.push(file);
      } catch (e) {
        skipped.push({ file, reason: e.message });
      }
    }
    if (!xs.length) continue;
    const batch = tf.concat(xs, 0);
    const feeds = { [input.name]: batch };
    parts.push(meta.executeAsync ? await backbone.executeAsync(feeds, output) : backbone.execute(feeds, output));
    tf.dispose([...xs, batch]);
  }
  if (!parts.length) return { features: null, kept, skipped };
  const features = tf.concat(parts, 0);
  tf.dispose(parts);
  return { features, kept, skipped };
}

function toBuffer(weightData) {
  const parts = Array.isArray(weightData) ? weightData : [weightData];
  return Buffer.concat(parts.map((b) => Buffer.from(b)));
}

/** Save a layers model as model.json + weights.bin, and its labels.json, into ``dir``. */
async function saveHead(model, labels, dir) {
  fs.mkdirSync(dir, { recursive: true });
  // Plain @tensorflow/tfjs has no file:// saver in Node.js (tfjs-node has): write the artifacts ourselves.
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    const weights = toBuffer(artifacts.weightData);
    fs.writeFileSync(path.join(dir, 'weights.bin'), weights);
    const json = {
      format: artifacts.format, generatedBy: artifacts.generatedBy, convertedBy: artifacts.convertedBy,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
    };
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.length } };
  }));
  fs.writeFileSync(path.join(dir, 'labels.json'), JSON.stringify(labels) + '\n');
}

async function retrain(args, backbone, meta, head, labels, log) {
  const classes = listExamples(args.data);
  const newLabels = [...labels, ...classes.map((c) => c.label).filter((l) => !labels.includes(l))];
  const files = classes.flatMap((c) => c.files);
  const labelOf = new Map(classes.flatMap((c) => c.files.map((f) => [f, newLabels.indexOf(c.label)])));
  let t = Date.now();
  const { features, kept, skipped } = await computeFeatures(backbone, meta, files, args.batchSize);
  for (const s of skipped) console.error(`skipped ${s.file}: ${s.reason}`);
  if (!features) throw new Error(`None of the ${files.length} images in '${args.data}' could be read`);
  const featureSeconds = (Date.now() - t) / 1000;
  log(`features: ${kept.length} images (${skipped.length} skipped) in ${featureSeconds.toFixed(1)} s on ${tf.getBackend()}`);
  const counts = Object.fromEntries(newLabels.map((l) => [l, 0]));
  for (const f of kept) counts[newLabels[labelOf.get(f)]] += 1;
  const forgotten = newLabels.filter((l) => counts[l] === 0);
  if (forgotten.length) console.error(`warning: no examples of ${forgotten.join(', ')}: the new head will forget them`);

  const model = widenHead(tf, head, newLabels.length);
  const y = tf.oneHot(tf.tensor1d(kept.map((f) => labelOf.get(f)), 'int32'), newLabels.length);
  model.compile({ optimizer: tf.train.adam(args.learningRate), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  t = Date.now();
  // Balanced class weights: a new class with many examples next to a few of each old one would
  // otherwise pull the old classes' images over to it.
  const classWeight = Object.fromEntries(newLabels.map((l, i) => [i, counts[l] ? kept.length / (newLabels.length * counts[l]) : 0]));
  const history = await model.fit(features, y, { epochs: args.epochs, batchSize: args.batchSize, shuffle: true, classWeight, verbose: 0 });
  const fitSeconds = (Date.now() - t) / 1000;
  const loss = history.history.loss.at(-1);
  const accuracy = (history.history.acc || history.history.accuracy).at(-1);
  log(`fit: ${args.epochs} epochs in ${fitSeconds.toFixed(1)} s, loss ${loss.toFixed(3)}, training accuracy ${(100 * accuracy).toFixed(1)}%`);
  tf.dispose([features, y]);
  await saveHead(model, newLabels, args.out);
  log(`saved: ${args.out}/ (model.json, weights.bin, labels.json) with ${newLabels.length} classes`);
  return {
    model, labels: newLabels,
    report: { examples: counts, newClasses: newLabels.slice(labels.length), skipped, epochs: args.epochs, loss,
      trainingAccuracy: accuracy, seconds: { features: featureSeconds, fit: fitSeconds }, saved: args.out },
  };
}

async function classify(files, backbone, meta, head, labels, args) {
  const { features, kept, skipped } = await computeFeatures(backbone, meta, files, args.batchSize);
  for (const s of skipped) console.error(`skipped ${s.file}: ${s.reason}`);
  if (!features) return [];
  const probs = tf.tidy(() => head.predict(features));
  const rows = await probs.array();
  tf.dispose([features, probs]);
  return rows.map((row, i) => ({
    image: kept[i],
    top: row.map((probability, index) => ({ index, label: labels[index], probability }))
      .sort((a, b) => b.probability - a.probability).slice(0, args.top),
  }));
}

try {
  const args = parseArgs(process.argv.slice(2));
  const log = args.json ? () => {} : (line) => console.log(line);
  await initBackend(args.backend);
  const backboneDir = path.join(here, 'backbone');
  const meta = readJson(path.join(backboneDir, 'metadata.json'));
  const { model: backbone } = await loadBundle(backboneDir);
  let { model: head } = await loadBundle(args.head);
  let labels = headLabels(args.head);
  let report = null;
  if (args.data) ({ model: head, labels, report } = await retrain(args, backbone, meta, head, labels, log));
  const results = await classify(args.classify, backbone, meta, head, labels, args);
  if (args.json) console.log(JSON.stringify({ backend: tf.getBackend(), labels, retrain: report, results }));
  for (const { image, top } of args.json ? [] : results) {
    console.log(image);
    for (const t of top) console.log(`  ${t.label.padEnd(24)} ${(100 * t.probability).toFixed(1)}%`);
  }
} catch (e) {
  console.error(`error: ${e.message}`);
  process.exit(1);
}
