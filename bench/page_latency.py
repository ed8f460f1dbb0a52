"""Benchmark: the bundle page's inference speed in headless Chromium vs native TensorFlow.

    .venv/bin/python bench/page_latency.py [--model-dir DIR] [--runs 30] [--json PATH]

Question: how fast is the exported page on EfficientNet-Lite0 (224x224, batch 1) with TF.js wasm on
1 thread, wasm on 2 threads (the page cross-origin isolated by the bundle's own ``serve.mjs``), and
the cpu backend, next to native TensorFlow (the SavedModel, 2 intra-op threads, oneDNN off) on the
same machine and input? Goal: wasm 2 threads <= 1.6 x native TensorFlow.

Without ``--model-dir`` the EfficientNet-Lite0 is converted first (``transferjs.demo.run``, a few
minutes). In the page: ``window.transferjsPage.benchmark(runs)``: one seeded-random input, 3 untimed
runs, then ``runs`` timed predictions (each awaited to its data). The page is loaded with
``?threads=1``, ``?threads=2`` and ``?backend=cpu``. Output: a Markdown table on stdout and
``bench/results/page_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
DEFAULT_JSON = REPO / "bench" / "results" / "page_latency.json"
VARIANTS = {"wasm, 1 thread": "?threads=1", "wasm, 2 threads": "?threads=2", "cpu": "?backend=cpu"}


def native_tensorflow_ms(model_dir: Path, runs: int) -> float:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    from converter.model import ConvertedModel

    model = ConvertedModel.load(model_dir)
    fn = tf.saved_model.load(str(model.saved_model)).signatures["serving_default"]
    inp = model.inputs[0]
    shape = [1 if not isinstance(d, int) or d < 0 else d for d in inp.shape]
    x = tf.constant(np.random.default_rng(0).random(shape, dtype=np.float32))
    times = []
    for i in range(runs + 3):
        t = time.perf_counter()
        [v.numpy() for v in fn(**{inp.name: x}).values()]
        if i >= 3:
            times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times))


def main() -> int:
    from tests.test_page import served  # the same server the page tests use: `transferjs serve`
    from converter.runtimes.bundle_apps import drive_page

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, help="a converted EfficientNet-Lite0 (default: convert it now)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="page-latency-"))
    if args.model_dir is None:
        from transferjs.demo import run

        args.model_dir = run(work / "efficientnet-lite0")["result"].model.directory
    bundle = Path(args.model_dir) / "tfjs"
    # The page files of this checkout (the bundle may come from an older export).
    from converter.export.bundle import PAGE_FILES, TEMPLATES

    for name in PAGE_FILES:
        (bundle / name).write_bytes((TEMPLATES / name).read_bytes())
    rows = {}
    with served(bundle) as url:
        for name, query in VARIANTS.items():
            page = drive_page({"url": url + query, "steps": [{"do": "bench", "runs": args.runs}]}, work)
            rows[name] = {**page["results"][0], "isolated": page["state"]["isolated"]}
    rows["native TensorFlow (SavedModel, 2 threads)"] = {"median": native_tensorflow_ms(Path(args.model_dir), args.runs)}
    native = rows["native TensorFlow (SavedModel, 2 threads)"]["median"]
    print(f"| EfficientNet-Lite0 224x224, batch 1 | median ms | x native TF |\n|---|---|---|")
    for name, r in rows.items():
        extra = f" (TF.js reports {r['threads']} thread(s), {r['threadsRequested']} requested)" if "threads" in r else ""
        print(f"| {name}{extra} | {r['median']:.1f} | {r['median'] / native:.2f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                                     "runs": args.runs, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
