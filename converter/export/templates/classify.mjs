// The page's logic: start the fastest TF.js backend, load the bundle, classify picked, dropped and
// pasted images and the webcam; in a tfjs-transfer folder (backbone/ + head/) also teach new classes.
import { preprocess, topK } from './preprocess.mjs';

const tf = window.tf;
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let classifier = null;
let busy = Promise.resolve();

/** Where the page's vendor/ lies (beside it, or backbone/vendor/ in a transfer folder). */
function vendorUrl() {
  const script = document.querySelector('script[src$="tf-backend-wasm.es2017.min.js"]');
  return new URL('./', script.src).href;
}

/**
 * wasm with threads when the page is cross-origin isolated (SharedArrayBuffer needs it), else
 * single-threaded wasm, else cpu. ?backend=cpu|wasm and ?threads=N choose (for benchmarks).
 */
export async function startBackend() {
  tf.wasm.setWasmPaths(vendorUrl());
  const wanted = params.get('backend');
  const isolated = self.crossOriginIsolated === true;
  const threads = Number(params.get('threads')) || (isolated ? Math.min(navigator.hardwareConcurrency || 1, 4) : 1);
  // setThreadsCount must come before the backend starts; without isolation the wasm runs single-threaded.
  tf.wasm.setThreadsCount(isolated ? threads : 1);
  let why = '';
  if (wanted !== 'cpu') {
    try {
      if (await tf.setBackend('wasm')) await tf.ready();
    } catch (e) {
      why = ` (wasm failed: ${e.message})`;
    }
  }
  if (tf.getBackend() !== 'wasm' && !(await tf.setBackend('cpu'))) throw new Error('neither the wasm nor the cpu TF.js backend started');
  await tf.ready();
  const wasm = tf.getBackend() === 'wasm';
  // TF.js 4.22 caps the pool at hardwareConcurrency / 2 whatever setThreadsCount asks (one thread on a
  // 2-core machine; tfjs issues 6081, 8513): show what it runs and what was asked.
  const info = { backend: tf.getBackend(), threads: wasm ? tf.wasm.getThreadsCount() : 1, requested: wasm && isolated ? threads : 1, isolated };
  const requested = info.requested !== info.threads ? ` (${info.requested} requested)` : '';
  $('backend').textContent = `TF.js ${tf.version.tfjs}, ${info.backend} backend, ${info.threads} thread${info.threads > 1 ? 's' : ''}${requested}` +
    `${isolated ? '' : ' (not cross-origin isolated: serve with node serve.mjs for threads)'}${why}`;
  document.body.dataset.backend = info.backend;
  document.body.dataset.threads = String(info.threads);
  document.body.dataset.threadsRequested = String(info.requested);
  return info;
}

async function fetchJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`Cannot load '${url}' (HTTP ${r.status})`);
  return r.json();
}

/** The bundle's model: a graph model (model.json), or backbone + head in a tfjs-transfer folder. */
async function loadClassifier() {
  // transfer.py marks the page of a tfjs-transfer folder (backbone/, head/, labels.json).
  const transfer = document.body.dataset.kind === 'transfer';
  const meta = await fetchJson(transfer ? 'backbone/metadata.json' : 'metadata.json');
  const graph = await tf.loadGraphModel(transfer ? 'backbone/model.json' : 'model.json');
  // Weights computed at load (uint8 --restore-at-load): run the initializer now, outside any tf.tidy.
  if (graph.artifacts && graph.artifacts.initializerSignature) graph.setResourceIdToCapturedInput(graph.executeInitializerGraph());
  const input = meta.inputs[0];
  const run = async (x) => {
    const feeds = { [input.name]: x };
    // Control flow (If -> Switch/Merge) runs only in executeAsync; metadata.json says when.
    return meta.executeAsync ? graph.executeAsync(feeds, meta.outputs[0].name) : graph.execute(feeds, meta.outputs[0].name);
  };
  if (!transfer) return { meta, transfer: false, graph, display: meta, run };
  const c = { meta, transfer: true, graph, head: await tf.loadLayersModel('head/model.json'), labels: await fetchJson('labels.json') };
  c.features = run;
  c.display = { labels: c.labels, outputs: [{ meaning: 'probabilities' }] };
  c.run = async (x) => {
    const f = await run(x);
    const p = c.head.predict(f);
    f.dispose();
    return p;
  };
  return c;
}

/** Pixels [H, W, 3] of an image element or canvas, transparency composited onto white (as predict.mjs). */
export function pixelsOf(source, width, height) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(source, 0, 0, width, height);
  return tf.browser.fromPixels(canvas);
}

/** Decode a File into an <img>; a clear error when it is not an image. */
export async function loadImage(file) {
  const img = new Image();
  img.alt = file.name;
  img.src = URL.createObjectURL(file);
  try {
    await img.decode();
  } catch {
    throw new Error(`'${file.name}' is not an image the browser can read (type ${file.type || 'unknown'})`);
  }
  return img;
}

/** The model input [1, ...] of an image, preprocessed as metadata.json says (as predict.mjs does). */
export function inputOf(source, width, height) {
  const pixels = pixelsOf(source, width, height);
  const x = preprocess(tf, pixels, classifier.meta.inputs[0]);
  pixels.dispose();
  return x;
}

async function predictTop(source, width, height, k = 5) {
  const x = inputOf(source, width, height);
  const out = await classifier.run(x);
  const top = topK(tf, out, classifier.display, k);
  tf.dispose([x, out]);
  return top;
}

function renderTop(list, top) {
  list.replaceChildren(...top.map((t) => {
    const li = document.createElement('li');
    li.dataset.index = t.index;
    li.innerHTML = '<span class="label"></span><span class="bar"></span><span class="p"></span>';
    li.querySelector('.label').textContent = t.label;
    li.querySelector('.bar').style.width = `${(t.probability * 12).toFixed(2)}rem`;
    li.querySelector('.p').textContent = `${(100 * t.probability).toFixed(1)}%`;
    li.dataset.probability = String(t.probability);
    return li;
  }));
}

function resultItem(name) {
  const li = document.createElement('li');
  li.innerHTML = '<div><div class="name"></div><ol class="top"></ol></div>';
  li.querySelector('.name').textContent = name;
  li.dataset.name = name;
  $('results').append(li);
  return li;
}

/** Classify files one after the other; each gets its own result entry (or its error). */
export async function classifyFiles(files) {
  const run = async () => {
    document.body.dataset.done = '';
    for (const file of files) {
      const li = resultItem(file.name);
      try {
        if (file.type && !file.type.startsWith('image/')) throw new Error(`'${file.name}' is not an image (type ${file.type})`);
        const img = await loadImage(file);
        img.className = 'thumb';
        li.prepend(img);
        const top = await predictTop(img, img.naturalWidth, img.naturalHeight);
        renderTop(li.querySelector('ol'), top);
        li.dataset.top = JSON.stringify(top);
        $('preview').src = img.src;
        renderTop($('result'), top);
        $('status').textContent = `${file.name}: ${top[0].label} (${(100 * top[0].probability).toFixed(1)}%)`;
      } catch (e) {
        li.classList.add('error');
        li.dataset.error = e.message;
        li.querySelector('ol').textContent = e.message;
        $('status').textContent = e.message;
      }
    }
    document.body.dataset.done = 'true';
  };
  busy = busy.then(run, run);
  return busy;
}

function imageFiles(list) {
  return [...(list || [])].filter((f) => f.kind === undefined || f.kind === 'file').map((f) => (f.getAsFile ? f.getAsFile() : f)).filter(Boolean);
}

function wireClassify() {
  $('file').disabled = false;
  $('file').addEventListener('change', () => classifyFiles([...$('file').files]));
  const drop = $('drop');
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('file').click(); }
  });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    classifyFiles(imageFiles(e.dataTransfer.files));
  });
  document.addEventListener('paste', (e) => {
    const files = imageFiles(e.clipboardData?.items);
    if (files.length) classifyFiles(files);
    else $('status').textContent = 'The clipboard holds no image to classify.';
  });
}

// ---- webcam ----
let stream = null;

/** The camera's current frame as the model's input size source (the <video> element). */
export function cameraFrame() {
  const v = $('video');
  return stream && v.videoWidth ? { source: v, width: v.videoWidth, height: v.videoHeight } : null;
}

export async function startCamera() {
  if (stream) return stream;
  if (!navigator.mediaDevices?.getUserMedia) throw new Error('This browser gives pages no camera access (it needs https or localhost).');
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
  } catch (e) {
    const why = e.name === 'NotAllowedError' ? 'Camera access was refused: allow the camera for this page in the browser settings, then try again.'
      : e.name === 'NotFoundError' ? 'No camera was found.' : `The camera did not start: ${e.message}`;
    throw new Error(why);
  }
  const v = $('video');
  v.srcObject = stream;
  v.hidden = false;
  await v.play();
  return stream;
}

function stopCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  $('video').hidden = true;
}

async function liveLoop() {
  let frames = 0;
  while (stream) {
    const frame = cameraFrame();
    if (frame) {
      const top = await predictTop(frame.source, frame.width, frame.height);
      renderTop($('live'), top);
      document.body.dataset.frames = String(++frames);
    }
    await new Promise((r) => requestAnimationFrame(r));
  }
}

function wireCamera() {
  const button = $('camera');
  button.disabled = false;
  button.addEventListener('click', async () => {
    if (stream) {
      stopCamera();
      button.textContent = 'Start the camera';
      button.setAttribute('aria-pressed', 'false');
      return;
    }
    try {
      await startCamera();
      button.textContent = 'Stop the camera';
      button.setAttribute('aria-pressed', 'true');
      liveLoop().catch((e) => { $('status').textContent = `Camera: ${e.message}`; });
    } catch (e) {
      $('status').textContent = e.message;
      $('status').classList.add('error');
      document.body.dataset.cameraError = e.message;
    }
  });
}

/** Median and p90 ms of ``runs`` timed predictions (after 3 untimed) on one seeded-random input. */
async function benchmark(runs = 20) {
  const shape = classifier.meta.inputs[0].shape.map((d) => (d == null || d < 0 ? 1 : d));
  const x = tf.randomUniform(shape, 0, 1, 'float32', 0);
  const times = [];
  for (let i = 0; i < runs + 3; i++) {
    const t = performance.now();
    const y = await classifier.run(x);
    await y.data();
    y.dispose();
    if (i >= 3) times.push(performance.now() - t);
  }
  x.dispose();
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)], p90: times[Math.floor(times.length * 0.9)], runs, backend: tf.getBackend(),
    threads: document.body.dataset.threads, threadsRequested: document.body.dataset.threadsRequested };
}

async function main() {
  await startBackend();
  classifier = await loadClassifier();
  // A transfer folder's backbone is named 'backbone': its page is about the classifier it teaches.
  $('title').textContent = classifier.transfer ? 'Classify and teach' : classifier.meta.modelName || 'Image classifier';
  if (classifier.transfer) {
    const { startTeaching } = await import('./teach.mjs');
    await startTeaching(classifier);
  }
  wireClassify();
  wireCamera();
  $('status').textContent = 'Ready. Choose, drop or paste images, or start the camera.';
  document.body.dataset.ready = 'true';
  window.transferjsPage = { benchmark };
}

main().catch((e) => {
  $('status').textContent = `Error: ${e.message}`;
  $('status').classList.add('error');
  document.body.dataset.error = e.message;
});
