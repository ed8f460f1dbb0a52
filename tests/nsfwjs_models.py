"""The real TF.js models inside the npm package ``nsfwjs`` (MIT) as plain model.json + weight shards.

nsfwjs ships each model as JavaScript modules: ``dist/models/<name>/model.min.js`` exports the
model.json object, each ``group1-shardNofM.min.js`` the shard's bytes in base64. Node.js loads
them (they are UMD modules) and this writes the files TF.js' own loaders read. Independent of
``converter`` on purpose: it makes test fixtures, it is not what is tested.

Example:
    >>> extract_nsfwjs_model("mobilenet_v2_mid", tmp / "graph")   # graph model, fused ops, uint8
    PosixPath('.../graph/model.json')
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "js" / "node_modules" / "nsfwjs" / "dist" / "models"
LAYERS_MODEL = "mobilenet_v2"  # Keras 2.2.4 topology, 224x224, 5 classes, uint8 weights
GRAPH_MODEL = "mobilenet_v2_mid"  # converter v1.7.4 graph model: _FusedConv2D, FusedDepthwiseConv2dNative, _FusedMatMul

_SCRIPT = r"""
const fs = require('fs'), path = require('path');
const [src, dest] = process.argv.slice(1);
const model = require(path.join(src, 'model.min.js'));
fs.mkdirSync(dest, { recursive: true });
fs.writeFileSync(path.join(dest, 'model.json'), JSON.stringify(model));
for (const group of model.weightsManifest) {
  for (const p of group.paths) {
    const b64 = require(path.join(src, p + '.min.js'));
    fs.writeFileSync(path.join(dest, p), Buffer.from(b64, 'base64'));
  }
}
"""


def available() -> bool:
    """Whether ``npm ci`` installed nsfwjs (a devDependency in js/package.json)."""
    return (MODELS / LAYERS_MODEL / "model.min.js").is_file() and shutil.which("node") is not None


def extract_nsfwjs_model(name: str, dest: Path) -> Path:
    """Write nsfwjs' model ``name`` as ``dest/model.json`` plus its shards; return the model.json path."""
    subprocess.run(["node", "-e", _SCRIPT, str(MODELS / name), str(dest)], check=True, capture_output=True, text=True, timeout=120)
    return Path(dest) / "model.json"
