// Image preprocessing described by metadata.json, shared by predict.mjs (Node.js)
// and classify.mjs (browser). No imports: the caller passes its tf.
//
// pixels: an int32/float32 tensor [H, W, 3] of 0-255 RGB values.
// Returns the model's input tensor [1, ...] in the model's layout.
export function preprocess(tf, pixels, input) {
  return tf.tidy(() => {
    let x = pixels.toFloat();
    const p = input.preprocessing;
    if (p && !p.baked) {
      // Half-pixel centers, no antialiasing: the same as tf.image.resize(method="bilinear") in Python.
      if (p.size) x = tf.image.resizeBilinear(x, p.size, false, true);
      x = x.mul(p.scale).sub(tf.tensor1d(p.mean)).div(tf.tensor1d(p.std));
    }
    x = x.expandDims(0);
    if (input.layout === 'NCHW') x = x.transpose([0, 3, 1, 2]);
    return x;
  });
}

// Top-k classes of a [1, C] output: [{ index, label, probability }].
export function topK(tf, output, meta, k = 5) {
  const probs = tf.tidy(() => {
    const o = output.squeeze([0]);
    return meta.outputs[0].meaning === 'logits' ? tf.softmax(o) : o;
  });
  const values = Array.from(probs.dataSync());
  probs.dispose();
  return values
    .map((probability, index) => ({ index, label: meta.labels ? meta.labels[index] : String(index), probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}
