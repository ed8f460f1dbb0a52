// Teach the classifier in the browser (a tfjs-transfer folder: backbone/ graph model + head/ layers model):
// add classes, add examples from files or the webcam, train a new head on the backbone's features with
// progress, see held-out accuracy per class, download the result as a bundle transferjs reads.
import { cameraFrame, inputOf, loadImage, startCamera } from './classify.mjs';
import { composeBundle, zipFiles } from './bundle_writer.mjs';
import { widenHead } from './head.mjs';

const tf = window.tf;
const $ = (id) => document.getElementById(id);
const RECORD_EVERY_MS = 150;
let classifier = null;
const state = { labels: [], examples: [], trained: null };

/** Backbone features of one image as a Float32Array. */
async function featuresOf(source, width, height) {
  const x = inputOf(source, width, height);
  const f = await classifier.features(x);
  const data = Float32Array.from(f.dataSync());
  tf.dispose([x, f]);
  return data;
}

function count(label) {
  return state.examples.filter((e) => e.label === label).length;
}

function renderClasses() {
  $('classes').replaceChildren(...state.labels.map((label, i) => {
    const li = document.createElement('li');
    li.dataset.label = label;
    li.innerHTML = `<strong class="name"></strong><span class="count"></span>
      <label class="button">Add images<input type="file" accept="image/*" multiple class="visually-hidden"></label>
      <button type="button" class="record">Hold to record</button>`;
    li.querySelector('.name').textContent = label;
    li.querySelector('.count').textContent = `${count(i)} example${count(i) === 1 ? '' : 's'}`;
    li.querySelector('input').setAttribute('aria-label', `Add images of ${label}`);
    li.querySelector('input').addEventListener('change', (e) => addFiles(i, [...e.target.files]));
    const record = li.querySelector('.record');
    record.setAttribute('aria-label', `Hold to record webcam examples of ${label}`);
    wireRecord(record, i);
    return li;
  }));
}

async function addFiles(label, files) {
  for (const file of files) {
    try {
      const img = await loadImage(file);
      state.examples.push({ label, features: await featuresOf(img, img.naturalWidth, img.naturalHeight) });
    } catch (e) {
      $('train-status').textContent = e.message;
    }
  }
  renderClasses();
  $('train-status').textContent = `${state.examples.length} examples in ${state.labels.length} classes.`;
}

/** Record webcam frames as examples of ``label`` while the button is held (pointer, Space or Enter). */
function wireRecord(button, label) {
  let timer = null;
  const start = async () => {
    if (timer) return;
    timer = 'starting';
    try {
      await startCamera();
    } catch (e) {
      timer = null;
      $('train-status').textContent = e.message;
      return;
    }
    button.classList.add('recording');
    const grab = async () => {
      const frame = cameraFrame();
      if (frame) state.examples.push({ label, features: await featuresOf(frame.source, frame.width, frame.height) });
      button.parentElement.querySelector('.count').textContent = `${count(label)} examples`;
      if (timer) timer = setTimeout(grab, RECORD_EVERY_MS);
    };
    timer = setTimeout(grab, 0);
  };
  const stop = () => {
    if (timer && timer !== 'starting') clearTimeout(timer);
    timer = null;
    button.classList.remove('recording');
    renderClasses();
  };
  button.addEventListener('pointerdown', start);
  for (const ev of ['pointerup', 'pointerleave', 'pointercancel', 'blur']) button.addEventListener(ev, () => timer && stop());
  button.addEventListener('keydown', (e) => {
    if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) { e.preventDefault(); start(); }
  });
  button.addEventListener('keyup', (e) => { if (e.key === ' ' || e.key === 'Enter') stop(); });
}

/** One in five examples of each class held out (the last one of a class of 2-4), the rest for training. */
export function split(examples) {
  const train = [];
  const heldOut = [];
  const seen = new Map();
  const totals = new Map();
  for (const e of examples) totals.set(e.label, (totals.get(e.label) || 0) + 1);
  for (const e of examples) {
    const i = seen.get(e.label) || 0;
    seen.set(e.label, i + 1);
    const n = totals.get(e.label);
    const hold = n >= 5 ? i % 5 === 4 : n >= 2 && i === n - 1;
    (hold ? heldOut : train).push(e);
  }
  return { train, heldOut };
}

function stack(examples) {
  return tf.tensor2d(examples.flatMap((e) => Array.from(e.features)), [examples.length, examples[0].features.length]);
}

async function train() {
  const epochs = Number($('epochs').value);
  if (!Number.isInteger(epochs) || epochs < 1 || epochs > 1000) {
    $('train-status').textContent = `Expected the epochs as a whole number from 1 to 1000. Received: '${$('epochs').value}'`;
    return;
  }
  const { train: fit, heldOut } = split(state.examples);
  if (!fit.length) { $('train-status').textContent = 'Add examples first: every class you want to keep needs a few.'; return; }
  $('train').disabled = true;
  const units = state.labels.length;
  const counts = state.labels.map((_, i) => fit.filter((e) => e.label === i).length);
  const model = widenHead(tf, classifier.head, units);
  model.compile({ optimizer: tf.train.adam(0.005), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const x = stack(fit);
  const y = tf.oneHot(tf.tensor1d(fit.map((e) => e.label), 'int32'), units);
  // Balanced class weights, as retrain_head.mjs: a class with many webcam frames would pull the others over.
  const classWeight = Object.fromEntries(counts.map((c, i) => [i, c ? fit.length / (units * c) : 0]));
  const forgotten = state.labels.filter((_, i) => !counts[i]);
  await model.fit(x, y, {
    epochs, batchSize: 16, shuffle: true, classWeight, verbose: 0,
    callbacks: { onEpochEnd: async (epoch, logs) => {
      $('train-progress').value = (epoch + 1) / epochs;
      $('train-status').textContent = `epoch ${epoch + 1}/${epochs}: loss ${logs.loss.toFixed(3)}, training accuracy ${(100 * (logs.acc ?? logs.accuracy)).toFixed(1)}%`;
      await tf.nextFrame();
    } },
  });
  // The epoch logs measure with dropout on; this is the trained head's own accuracy on its examples.
  const fitted = tf.tidy(() => model.predict(x).argMax(1).dataSync());
  const trainAccuracy = fit.filter((e, i) => fitted[i] === e.label).length / fit.length;
  tf.dispose([x, y]);
  const accuracy = evaluate(model, heldOut);
  classifier.head = model;
  classifier.labels = [...state.labels];
  classifier.display.labels = classifier.labels;
  state.trained = model;
  $('train-status').textContent = `Trained ${epochs} epochs on ${fit.length} examples (${(100 * trainAccuracy).toFixed(0)}% of them right), ` +
    `${heldOut.length} held out (accuracy per class below).` +
    (forgotten.length ? ` No examples of ${forgotten.join(', ')}: the new model has forgotten them.` : '');
  $('train').disabled = false;
  $('download').disabled = false;
  document.body.dataset.accuracy = JSON.stringify(accuracy);
  document.body.dataset.trained = 'true';
}

/** Held-out accuracy per class: { label: { n, accuracy } }, shown as a table. */
function evaluate(model, heldOut) {
  const result = {};
  if (heldOut.length) {
    const predicted = tf.tidy(() => model.predict(stack(heldOut)).argMax(1).dataSync());
    heldOut.forEach((e, i) => {
      const r = (result[state.labels[e.label]] ??= { n: 0, correct: 0 });
      r.n += 1;
      r.correct += predicted[i] === e.label ? 1 : 0;
    });
  }
  const rows = Object.entries(result).map(([label, r]) => {
    r.accuracy = r.correct / r.n;
    const tr = document.createElement('tr');
    tr.innerHTML = '<td></td><td></td><td></td>';
    tr.children[0].textContent = label;
    tr.children[1].textContent = String(r.n);
    tr.children[2].textContent = `${(100 * r.accuracy).toFixed(0)}%`;
    return tr;
  });
  $('accuracy').querySelector('tbody').replaceChildren(...rows);
  $('accuracy').hidden = !rows.length;
  return result;
}

async function download() {
  $('download').disabled = true;
  $('train-status').textContent = 'Writing the bundle…';
  try {
    const name = 'taught-classifier';
    const files = await composeBundle(tf, { base: new URL('backbone/', location.href), meta: classifier.meta, head: state.trained, labels: state.labels, name });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(zipFiles(files, name));
    a.download = `${name}.zip`;
    document.body.append(a);
    a.click();
    a.remove();
    $('train-status').textContent = `Downloaded ${name}.zip: unzip it, then \`node serve.mjs\` or \`transferjs predict ${name} IMAGE\`.`;
  } catch (e) {
    $('train-status').textContent = `Download failed: ${e.message}`;
  }
  $('download').disabled = false;
}

export async function startTeaching(c) {
  classifier = c;
  state.labels = [...c.labels];
  $('teach').hidden = false;
  renderClasses();
  $('add-class-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('new-class').value.trim();
    if (!name) $('train-status').textContent = 'Type a name for the new class first.';
    else if (state.labels.includes(name)) $('train-status').textContent = `There is a class '${name}' already.`;
    else {
      state.labels.push(name);
      $('new-class').value = '';
      renderClasses();
      $('train-status').textContent = `Added the class '${name}': give it examples.`;
    }
  });
  $('train').addEventListener('click', () => train().catch((e) => {
    $('train-status').textContent = `Training failed: ${e.message}`;
    $('train').disabled = false;
  }));
  $('download').addEventListener('click', download);
}
