// Open a bundle's index.html in headless Chromium, classify an image, report the page's answer.
//
// Usage: node browser_check.mjs BUNDLE_DIR IMAGE SCREENSHOT.png
// With BUNDLE_URL set (e.g. http://127.0.0.1:8000/) the page is loaded from that server instead.
// Prints JSON: { top: [{index, label, probability}], status, backend } or { error }.
// The bundle is served from 127.0.0.1 on a free port; Chromium is Debian's (/usr/bin/chromium).

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm', '.bin': 'application/octet-stream', '.png': 'image/png', '.jpg': 'image/jpeg' };

function serve(root) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    const file = path.resolve(root, rel);
    if (!file.startsWith(path.resolve(root)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const [bundle, image, screenshot] = process.argv.slice(2);
const server = process.env.BUNDLE_URL ? null : await serve(bundle);
const base = process.env.BUNDLE_URL || `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let result;
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 700 } });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`); });
  await page.goto(new URL('index.html', base).href);
  await page.waitForFunction(() => !document.getElementById('file').disabled || document.body.dataset.error, null, { timeout: 60000 });
  const loadError = await page.evaluate(() => document.body.dataset.error);
  if (loadError) throw new Error(`page failed to load the model: ${loadError}`);
  await page.setInputFiles('#file', image);
  await page.waitForFunction(() => document.body.dataset.done || document.body.dataset.error, null, { timeout: 60000 });
  await page.screenshot({ path: screenshot, fullPage: true });
  result = await page.evaluate(() => ({
    status: document.getElementById('status').textContent,
    backend: window.tf.getBackend(),
    top: [...document.querySelectorAll('#result li')].map((li) => ({
      index: Number(li.dataset.index),
      label: li.querySelector('.label').textContent,
      probability: Number(li.querySelector('.p').textContent.replace('%', '')) / 100,
    })),
  }));
  if (errors.length) result.pageErrors = errors;
} catch (e) {
  result = { error: String(e.message || e), pageErrors: errors };
} finally {
  await browser.close();
  server?.close();
}
console.log(JSON.stringify(result));
