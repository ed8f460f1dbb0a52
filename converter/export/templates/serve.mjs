#!/usr/bin/env node
// Serve this bundle's page locally, cross-origin isolated so that TF.js wasm can use threads.
//
// Usage: node serve.mjs [--port 8000] [--host 127.0.0.1] [--root DIR]
// Then open http://127.0.0.1:8000/ . No packages needed: plain node:http.
//
// Hosting elsewhere: send every file with
//   Cross-Origin-Opener-Policy: same-origin
//   Cross-Origin-Embedder-Policy: require-corp
// and .wasm as application/wasm, .mjs as text/javascript. Without the two headers the page still
// works, on single-threaded wasm.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8', '.wasm': 'application/wasm', '.bin': 'application/octet-stream',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp',
  '.svg': 'image/svg+xml', '.css': 'text/css; charset=utf-8', '.md': 'text/markdown; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8', '.zip': 'application/zip',
};
const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
};

/** The file a request path names inside ``root``, or null when it would leave it (.., symlinks out). */
export function resolveInside(root, urlPath) {
  let rel;
  try {
    rel = decodeURIComponent(urlPath.split('?')[0]);
  } catch {
    return null;
  }
  if (rel.includes('\0')) return null;
  let file = path.resolve(root, '.' + path.posix.normalize('/' + rel));
  try {
    if (fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    file = fs.realpathSync(file);
  } catch {
    return null;
  }
  const realRoot = fs.realpathSync(root);
  return file === realRoot || file.startsWith(realRoot + path.sep) ? file : null;
}

export function createServer(root) {
  return http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', ...ISOLATION }).end('method not allowed\n');
      return;
    }
    const file = resolveInside(root, new URL(req.url, 'http://localhost').pathname);
    if (!file || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', ...ISOLATION }).end('not found\n');
      return;
    }
    const type = TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream';
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': fs.statSync(file).size, 'Cache-Control': 'no-cache', ...ISOLATION });
    if (req.method === 'HEAD') res.end();
    else fs.createReadStream(file).pipe(res);
  });
}

function parseArgs(argv) {
  const args = { port: 8000, host: '127.0.0.1', root: path.dirname(fileURLToPath(import.meta.url)) };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') args.port = Number(value());
    else if (a === '--host') args.host = value();
    else if (a === '--root') args.root = path.resolve(value());
    else throw new Error(`Unknown argument '${a}'. Usage: node serve.mjs [--port 8000] [--host 127.0.0.1] [--root DIR]`);
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) throw new Error(`Expected --port as an integer 0-65535. Received: '${args.port}'`);
  return args;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
    if (!fs.existsSync(path.join(args.root, 'index.html'))) throw new Error(`Expected a bundle folder with index.html. Received: '${args.root}'`);
  } catch (e) {
    console.error(`error: ${e.message}`);
    process.exit(2);
  }
  const server = createServer(args.root);
  server.on('error', (e) => {
    console.error(`error: cannot listen on ${args.host}:${args.port} (${e.code || e.message})`);
    process.exit(5);
  });
  server.listen(args.port, args.host, () => {
    const { port } = server.address();
    console.log(`Serving ${args.root} at http://${args.host}:${port}/ (cross-origin isolated; Ctrl+C stops)`);
  });
}
