// The retrainable head, shared by the page (teach.mjs) and Node.js (retrain_head.mjs).

/**
 * A head with ``units`` outputs built like ``old`` (features -> dropout -> dense softmax): the old
 * classes keep their kernel columns and biases, new classes start near zero.
 *
 * Example: const head = widenHead(tf, bundleHead, labels.length);
 */
export function widenHead(tf, old, units) {
  const dense = old.layers[old.layers.length - 1];
  if (dense.getClassName() !== 'Dense') {
    throw new Error(`Expected the head to end in a Dense layer. Received: ${dense.getClassName()} '${dense.name}'`);
  }
  const dropout = old.layers.find((l) => l.getClassName() === 'Dropout');
  const features = tf.input({ shape: old.inputs[0].shape.slice(1), name: old.inputs[0].name.split('/')[0] });
  // A fresh Dropout: the shipped one may carry a fixed seed, which in TF.js draws the same mask every step.
  const hidden = dropout ? tf.layers.dropout({ rate: dropout.rate, name: dropout.name }).apply(features) : features;
  const wide = tf.layers.dense({ units, activation: 'softmax', name: dense.name });
  const head = tf.model({ inputs: features, outputs: wide.apply(hidden), name: old.name });
  const [kernel, bias] = dense.getWeights();
  const added = units - kernel.shape[1];
  if (added < 0) throw new Error(`Expected at least the head's ${kernel.shape[1]} classes. Received: ${units}`);
  wide.setWeights(tf.tidy(() => [
    added ? tf.concat([kernel, tf.randomNormal([kernel.shape[0], added], 0, 0.01)], 1) : kernel.clone(),
    added ? tf.concat([bias, tf.fill([added], bias.mean().dataSync()[0])], 0) : bias.clone(),
  ]));
  return head;
}
