// Decode a PNG or JPEG file into the RGB pixels the model was trained on, in Node.js.
// Shared by predict.mjs and retrain_head.mjs; the browser decodes with <img> instead.
//
// Example:
//   import { decodeImage } from './decode.mjs';
//   const pixels = decodeImage('cat.jpg');   // int32 tensor [H, W, 3], 0-255

import fs from 'node:fs';
import { createRequire } from 'node:module';
import { tf } from './runtime.mjs';

// require() (not import) so that NODE_PATH works, as in runtime.mjs.
const require = createRequire(import.meta.url);
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** An int32 tensor [H, W, 3] of 0-255 RGB values; transparency composited onto white. */
export function decodeImage(file) {
  const bytes = fs.readFileSync(file);
  let rgba, width, height;
  if (bytes.subarray(0, 8).equals(PNG_SIGNATURE)) {
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
    const head = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`Expected a PNG or JPEG file. Received: '${file}' (starts with bytes ${head || 'none: empty file'})`);
  }
  // Composite transparency onto white, as the training images were.
  const rgb = new Int32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const a = rgba[i * 4 + 3] / 255;
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = Math.round(rgba[i * 4 + c] * a + 255 * (1 - a));
  }
  return tf.tensor3d(rgb, [height, width, 3], 'int32');
}
