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

// The largest image decoded, checked from the header before decoding (as transferjs does in Python):
// a small file that claims 20000 x 20000 pixels (a "decompression bomb") is refused, not allocated.
export const MAX_IMAGE_PIXELS = 64 * 1024 * 1024;

/** An image file that is missing, unreadable or too large: the caller's input (exit 2), not a runtime failure. */
export class ImageError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ImageError';
  }
}

/** [width, height] from a JPEG's start-of-frame marker, or null when none is found. */
function jpegSize(bytes) {
  let i = 2;
  while (i + 9 < bytes.length) {
    if (bytes[i] !== 0xff) return null;
    const marker = bytes[i + 1];
    if (marker === 0xff) { i += 1; continue; }
    const length = bytes.readUInt16BE(i + 2);
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      return [bytes.readUInt16BE(i + 7), bytes.readUInt16BE(i + 5)];
    }
    i += 2 + length;
  }
  return null;
}

function checkSize(file, size, kind) {
  if (!size) throw new ImageError(`Cannot read image '${file}': a truncated or corrupt ${kind} (no image size in its header)`);
  const [width, height] = size;
  if (width < 1 || height < 1 || width * height > MAX_IMAGE_PIXELS) {
    throw new ImageError(`Image '${file}' claims ${width}x${height} pixels; the limit is ${MAX_IMAGE_PIXELS / 2 ** 20} ` +
      'megapixels (a decompression bomb, or an image to shrink first)');
  }
}

function readRgba(file, bytes) {
  if (bytes.subarray(0, 8).equals(PNG_SIGNATURE)) {
    checkSize(file, bytes.length >= 24 ? [bytes.readUInt32BE(16), bytes.readUInt32BE(20)] : null, 'PNG');
    const { PNG } = require('pngjs');
    try {
      const png = PNG.sync.read(bytes);
      return { width: png.width, height: png.height, rgba: png.data };
    } catch (e) {
      throw new ImageError(`Cannot read image '${file}': a truncated or corrupt PNG (${e.message})`);
    }
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    checkSize(file, jpegSize(bytes), 'JPEG');
    const jpeg = require('jpeg-js');
    try {
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6 });
      return { width: img.width, height: img.height, rgba: img.data };
    } catch (e) {
      throw new ImageError(`Cannot read image '${file}': a truncated or corrupt JPEG (${e.message})`);
    }
  }
  const head = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new ImageError(`Expected a PNG or JPEG file. Received: '${file}' (starts with bytes ${head || 'none: empty file'})`);
}

/** An int32 tensor [H, W, 3] of 0-255 RGB values; transparency composited onto white. */
export function decodeImage(file) {
  let bytes;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new ImageError(`Cannot read image '${file}' (${e.code === 'ENOENT' ? 'file not found' : e.message})`);
  }
  const { width, height, rgba } = readRgba(file, bytes);
  // Composite transparency onto white, as the training images were.
  const rgb = new Int32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const a = rgba[i * 4 + 3] / 255;
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = Math.round(rgba[i * 4 + c] * a + 255 * (1 - a));
  }
  return tf.tensor3d(rgb, [height, width, 3], 'int32');
}
