// The page's logic: load the bundle with TF.js (wasm backend), classify the picked image.
import { preprocess, topK } from './preprocess.mjs';

const tf = window.tf;
const $ = (id) => document.getElementById(id);

async function main() {
  tf.wasm.setWasmPaths(new URL('vendor/', location.href).href);
  if (!(await tf.setBackend('wasm'))) throw new Error('the TF.js wasm backend failed to start');
  const meta = await (await fetch('metadata.json')).json();
  const model = await tf.loadGraphModel('model.json');
  $('title').textContent = meta.modelName || 'Image classifier';
  $('status').textContent = `Ready (TF.js ${tf.version.tfjs}, ${tf.getBackend()} backend). Pick an image.`;
  $('file').disabled = false;
  $('file').addEventListener('change', async () => {
    const file = $('file').files[0];
    if (!file) return;
    const img = $('preview');
    img.src = URL.createObjectURL(file);
    await img.decode();
    // Composite transparency onto white, as predict.mjs and the training images do.
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0);
    const pixels = tf.browser.fromPixels(canvas);
    const x = preprocess(tf, pixels, meta.inputs[0]);
    const feeds = { [meta.inputs[0].name]: x };
    // Control flow (If -> Switch/Merge) runs only in executeAsync; metadata.json says when.
    const out = meta.executeAsync ? await model.executeAsync(feeds, meta.outputs[0].name) : model.execute(feeds, meta.outputs[0].name);
    const top = topK(tf, out, meta, 5);
    tf.dispose([pixels, x, out]);
    $('result').replaceChildren(...top.map((t) => {
      const li = document.createElement('li');
      li.dataset.index = t.index;
      li.innerHTML = `<span class="label"></span><span class="bar" style="width:${(t.probability * 12).toFixed(2)}rem"></span><span class="p">${(100 * t.probability).toFixed(1)}%</span>`;
      li.querySelector('.label').textContent = t.label;
      return li;
    }));
    $('status').textContent = `Top label: ${top[0].label}`;
    document.body.dataset.done = 'true';
  });
}

main().catch((e) => {
  $('status').textContent = `Error: ${e.message}`;
  document.body.dataset.error = e.message;
});
