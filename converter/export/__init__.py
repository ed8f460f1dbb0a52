"""Export formats: each exporter consumes the common representation (``ConvertedModel``).

- ``bundle.write_tfjs_bundle``: the TF.js graph model with its metadata and apps (``tfjs.py`` converts,
  ``tfjs_passes.py`` rewrites for the TF.js backends, ``tfjs_ops.py`` checks, ``quantization.py``);
- ``layers.write_layers_model``: a trainable TF.js layers model, for models with a Keras file;
- ``transfer.write_transfer_bundle``: backbone graph model + head layers model (``tfjs-transfer/``).

Exporters never verify; ``converter.api.export`` exports and then verifies.
"""
