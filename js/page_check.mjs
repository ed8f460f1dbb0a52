// Drive a bundle's page (served by its own serve.mjs) in headless Chromium as a person would.
//
// Usage: node page_check.mjs PLAN.json
// PLAN: { url, screenshots: DIR, video: FILE.y4m|null, camera: "allow"|"deny", steps: [...] } where a step is
//   { do: "drop", files: [...] }           drop image files on the drop zone; wait for their results
//   { do: "paste", files: [...] }          paste them (a paste event with the files on its clipboard)
//   { do: "keyboard-pick", files }         focus the drop zone, press Enter (opens the picker), pick the files
//   { do: "camera", frames: N }            start the webcam; wait for N live predictions
//   { do: "add-class", name }              add a class in the teach section
//   { do: "add-examples", label, files }   add image files as examples of a class
//   { do: "record", label, ms }            hold the class's record button for ms (webcam examples)
//   { do: "train", epochs }                train; wait until done
//   { do: "download", to: FILE.zip }       download the taught bundle
//   { do: "screenshot", name }             DIR/name.png
//   { do: "bench", runs }                  median/p90 ms of the page's model on one input
// Prints JSON: { state: {...}, results: [...] } or { error, pageErrors }.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream'];
if (plan.camera !== 'deny') args.push('--use-fake-ui-for-media-stream');
if (plan.video) args.push(`--use-file-for-fake-video-capture=${plan.video}`);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args });
const errors = [];
const results = [];
const TIMEOUT = { timeout: 60000 };

const MIME = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.txt': 'text/plain' };
function filePayload(file) {
  const ext = file.slice(file.lastIndexOf('.')).toLowerCase();
  return { name: file.split('/').pop(), type: MIME[ext] || 'application/octet-stream', b64: fs.readFileSync(file).toString('base64') };
}

/** Drop files on the drop zone, or paste them (a ClipboardEvent), as a person would; wait for the results. */
async function give(page, files, how) {
  await page.evaluate(([payload, kind]) => {
    const dt = new DataTransfer();
    for (const f of payload) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
    document.body.dataset.done = '';
    if (kind === 'paste') {
      document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
      return;
    }
    const zone = document.getElementById('drop');
    zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [files.map(filePayload), how]);
  await page.waitForFunction(() => document.body.dataset.done === 'true', null, TIMEOUT);
  return page.evaluate(() => [...document.querySelectorAll('#results > li')].map((li) => ({
    name: li.dataset.name, error: li.dataset.error || null, top: li.dataset.top ? JSON.parse(li.dataset.top) : null,
  })));
}

const STEPS = {
  drop: (page, s) => give(page, s.files, 'drop'),
  paste: (page, s) => give(page, s.files, 'paste'),
  async 'keyboard-pick'(page, s) {
    await page.evaluate(() => { document.body.dataset.done = ''; });
    await page.locator('#drop').focus();
    const focused = await page.evaluate(() => document.activeElement?.id);
    if (focused !== 'drop') throw new Error(`keyboard-pick: focus is on '${focused}', not the drop zone`);
    // Enter must open the picker (a click on the file input); Playwright's file-chooser interception
    // races with the first key press, so the click is observed and the files set on the input.
    await page.evaluate(() => document.getElementById('file').addEventListener('click', (e) => {
      e.preventDefault();
      document.body.dataset.pickerOpened = 'true';
    }, { once: true }));
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.body.dataset.pickerOpened === 'true', null, { timeout: 10000 });
    await page.setInputFiles('#file', s.files);
    await page.waitForFunction(() => document.body.dataset.done === 'true', null, TIMEOUT);
    return page.evaluate(() => document.querySelectorAll('#results > li').length);
  },
  async camera(page, s) {
    await page.click('#camera');
    await page.waitForFunction((n) => Number(document.body.dataset.frames || 0) >= n || document.body.dataset.cameraError, s.frames || 3, TIMEOUT);
    return page.evaluate(() => ({
      error: document.body.dataset.cameraError || null, frames: Number(document.body.dataset.frames || 0), status: document.getElementById('status').textContent,
      top: [...document.querySelectorAll('#live li')].map((li) => ({ label: li.querySelector('.label').textContent, probability: Number(li.dataset.probability) })),
    }));
  },
  async 'add-class'(page, s) {
    await page.fill('#new-class', s.name);
    await page.press('#new-class', 'Enter');
    return page.evaluate(() => [...document.querySelectorAll('#classes li')].map((li) => li.dataset.label));
  },
  async 'add-examples'(page, s) {
    const before = await page.textContent(`#classes li[data-label="${s.label}"] .count`);
    await page.setInputFiles(`#classes li[data-label="${s.label}"] input[type=file]`, s.files);
    await page.waitForFunction(([l, b]) => document.querySelector(`#classes li[data-label="${l}"] .count`).textContent !== b, [s.label, before], TIMEOUT);
    return page.textContent(`#classes li[data-label="${s.label}"] .count`);
  },
  async record(page, s) {
    const button = page.locator(`#classes li[data-label="${s.label}"] button.record`);
    await button.focus();
    await page.keyboard.down('Space');
    await page.waitForTimeout(s.ms || 1000);
    await page.keyboard.up('Space');
    await page.waitForTimeout(300);
    return page.textContent(`#classes li[data-label="${s.label}"] .count`);
  },
  async train(page, s) {
    await page.fill('#epochs', String(s.epochs || 40));
    await page.click('#train');
    await page.waitForFunction(() => document.body.dataset.trained === 'true', null, TIMEOUT);
    return page.evaluate(() => ({ accuracy: JSON.parse(document.body.dataset.accuracy), status: document.getElementById('train-status').textContent }));
  },
  async download(page, s) {
    const [dl] = await Promise.all([page.waitForEvent('download', TIMEOUT), page.click('#download')]);
    await dl.saveAs(s.to);
    return { file: s.to, name: dl.suggestedFilename() };
  },
  bench: (page, s) => page.evaluate((runs) => window.transferjsPage.benchmark(runs), s.runs || 20),
  async screenshot(page, s) {
    const file = `${plan.screenshots}/${s.name}.png`;
    await page.screenshot({ path: file, fullPage: true });
    return file;
  },
};

let output;
try {
  const context = await browser.newContext({ viewport: { width: plan.width || 800, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.type()}: ${m.text()}`); });
  await page.goto(plan.url);
  await page.waitForFunction(() => document.body.dataset.ready || document.body.dataset.error, null, TIMEOUT);
  const loadError = await page.evaluate(() => document.body.dataset.error);
  if (loadError) throw new Error(`page failed to load the model: ${loadError}`);
  for (const step of plan.steps) results.push(await STEPS[step.do](page, step));
  const state = await page.evaluate(() => ({
    backend: document.body.dataset.backend, threads: Number(document.body.dataset.threads), isolated: self.crossOriginIsolated,
    backendText: document.getElementById('backend').textContent, status: document.getElementById('status').textContent,
    teach: !document.getElementById('teach').hidden, scrollWidth: document.documentElement.scrollWidth,
  }));
  output = { state, results, pageErrors: errors };
} catch (e) {
  output = { error: String(e.message || e), pageErrors: errors, results };
} finally {
  await browser.close();
}
console.log(JSON.stringify(output));
