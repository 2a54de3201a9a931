"""Keyword spotting as a float ONNX model, scored at fp32 and int8 with ONNX Runtime on the CPU.

    .venv/bin/python -m benchmarks.kws_onnx [--shared ../shared] [--count 200] [--keep DIR]
    .venv/bin/python -m benchmarks.kws_onnx convert [--source savedmodel|tflite] [--cache DIR]

Needs TensorFlow and ``tf2onnx`` (``pip install tf2onnx``) for the conversion,
``onnxruntime`` and ``onnx`` for the runs.

The float model is the MLCommons Tiny DS-CNN SavedModel
(``../shared/models/kws/kws_ref_model``), frozen with TensorFlow's TF1 loader
(TF 2.16+ cannot ``tf.saved_model.load`` it) and converted by ``tf2onnx``
(opset 13). The ONNX file is cached under ``<cache>/kws-onnx/``, keyed by the
SavedModel's bytes and the TensorFlow/tf2onnx versions; it is never committed.

The figures printed (all through ``run.py --accuracy``, the harness's own pipeline):

1. fp32 on the whole speech-commands-mini set: must equal TensorFlow's
   figure for the SavedModel, 93.000% (279/300);
2. fp32 and int8 on the first ``--count`` samples (class-balanced: the set is
   dealt round-robin over the labels), int8 calibrated on the other samples
   (from the end of the set: the harness never calibrates on scored samples).

``--source tflite`` converts ``kws_ref_model_float32.tflite`` instead. That
file is not a float network: its five standard convolutions keep int8 weights
(dynamic-range quantisation), and LiteRT's default XNNPACK delegate also
quantises their activations on the fly (277/300; LiteRT's builtin kernels give
279/300). Its ONNX copy computes in float32, as OpenVINO does with the .tflite
itself: 276/300 from both, outputs equal to 2.4e-7. It is not used for int8.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("MLPERF_EDGE_SHARED", ROOT.parent / "shared"))
SAVED_MODEL = ("models", "kws", "kws_ref_model")
TFLITE = ("models", "kws", "kws_ref_model_float32.tflite")
DATA = ("data", "speech-commands-mini")
OPSET = 13
#: bump when the conversion below changes its output for the same inputs
CONVERSION_VERSION = 1
#: the float ONNX model's reference figure on speech-commands-mini: TensorFlow 2.21's for the SavedModel
FP32_REFERENCE = (279, 300)


def default_cache() -> Path:
    from datasets.cache import DEFAULT_CACHE_DIR

    return Path(DEFAULT_CACHE_DIR) / "kws-onnx"


def _tree_sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        h.update(file.read_bytes())
    return h.hexdigest()


def convert(source: str = "savedmodel", shared: Path = SHARED, cache: Path | None = None) -> Path:
    """The float ONNX model (converted once, then taken from the cache)."""
    import tensorflow as tf
    import tf2onnx

    src = shared.joinpath(*(SAVED_MODEL if source == "savedmodel" else TFLITE))
    if not src.exists():
        raise FileNotFoundError(f"{src} is missing")
    ident = {"source": source, "sha256": _tree_sha256(src), "tensorflow": tf.__version__,
             "tf2onnx": tf2onnx.__version__, "opset": OPSET, "version": CONVERSION_VERSION}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache) if cache else default_cache()
    final = folder / f"{src.stem}-{key}.onnx"
    if final.is_file():
        return final
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{final.stem}.partial{os.getpid()}.onnx"
    try:
        if source == "savedmodel":
            _convert_saved_model(tf, src, partial)
        else:
            tf2onnx.convert.from_tflite(str(src), opset=OPSET, output_path=str(partial))
        os.replace(partial, final)
    finally:
        if partial.exists():
            partial.unlink()
    (folder / f"{final.stem}.json").write_text(json.dumps(ident, indent=1, sort_keys=True) + "\n")
    return final


def _convert_saved_model(tf, src: Path, out: Path) -> None:
    """Freeze the ``serving_default`` signature with the TF1 loader, then tf2onnx."""
    from tf2onnx import convert as tf2onnx_convert

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(src))
        signature = meta.signature_def["serving_default"]
        inputs = [t.name for t in signature.inputs.values()]
        outputs = [t.name for t in signature.outputs.values()]
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), [name.split(":")[0] for name in outputs])
    tf2onnx_convert.from_graph_def(frozen, input_names=inputs, output_names=outputs, opset=OPSET,
                                   output_path=str(out))


def accuracy(model: Path, *options: str, output: Path, cache: Path, shared: Path = SHARED) -> tuple[int, int, str]:
    """(good, total, run.py's output) of one ``run.py --accuracy`` on speech-commands-mini."""
    cmd = [sys.executable, str(ROOT / "run.py"), "--profile", "kws_onnxruntime", "--model", str(model),
           "--dataset-path", str(shared.joinpath(*DATA)), "--accuracy", "--no-progress",
           "--output", str(output), "--cache-dir", str(cache), *options]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    found = re.search(r"accuracy=[\d.]+%, good=(\d+), total=(\d+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return int(found.group(1)), int(found.group(2)), proc.stdout


def figures(model: Path, count: int, workdir: Path, shared: Path = SHARED) -> dict:
    """The three accuracy figures (whole set fp32; first ``count`` at fp32 and int8)."""
    out, cache = workdir / "results", workdir / "cache"
    full = accuracy(model, "--precision", "fp32", output=out, cache=cache, shared=shared)
    fp32 = accuracy(model, "--precision", "fp32", "--count", str(count), output=out, cache=cache, shared=shared)
    int8 = accuracy(model, "--precision", "int8", "--count", str(count), output=out, cache=cache, shared=shared)
    return {"fp32_all": full[:2], "fp32": fp32[:2], "int8": int8[:2], "int8_output": int8[2]}


def _pct(pair) -> str:
    good, total = pair
    return f"{100 * good / total:.3f}% ({good}/{total})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="KWS float ONNX: conversion and fp32/int8 accuracy (ONNX Runtime, CPU)")
    p.add_argument("what", nargs="?", choices=("figures", "convert"), default="figures")
    p.add_argument("--source", choices=("savedmodel", "tflite"), default="savedmodel")
    p.add_argument("--shared", type=Path, default=SHARED)
    p.add_argument("--cache", type=Path, help="where the converted model is cached (default <harness cache>/kws-onnx)")
    p.add_argument("--count", type=int, default=200, help="scored samples for the fp32/int8 comparison")
    p.add_argument("--keep", type=Path, help="keep results and caches here (default: a temporary directory)")
    args = p.parse_args(argv)
    model = convert(args.source, args.shared, args.cache)
    if args.what == "convert":
        print(model)
        return 0
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        got = figures(model, args.count, work, args.shared)
    rest = got["fp32_all"][1] - args.count
    print(f"model   : {model} (from {args.source}; onnxruntime {onnxruntime.__version__}, CPU)")
    print(f"fp32    : {_pct(got['fp32_all'])} on all samples")
    print(f"fp32    : {_pct(got['fp32'])} on the first {args.count}")
    print(f"int8    : {_pct(got['int8'])} on the first {args.count} (Q/DQ, calibrated on the other {rest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
