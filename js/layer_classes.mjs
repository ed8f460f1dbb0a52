// Print the Keras layer classes TF.js layers can deserialize, as JSON.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');

const names = Object.keys(tf.serialization.SerializationMap.getMap().classNameMap).sort();
console.log(JSON.stringify({ tfjsVersion: tf.version.tfjs, classes: names }));
