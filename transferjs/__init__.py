"""The transferjs application: the ``transferjs`` command and ``make demo``.

This package sits above the two libraries it drives, ``converter`` (sources ->
common TensorFlow graph -> TF.js bundles, with verification) and ``retrain``
(transfer learning on that graph). Library code never imports it.
"""
