"""Keyword spotting as a PyTorch model (TorchScript or torch.export), and its accuracy.

    .venv/bin/python -m benchmarks.kws_pytorch convert [--source savedmodel|tflite] [--format ts|pt2] [--cache DIR]
    .venv/bin/python -m benchmarks.kws_pytorch [figures] [--source ...] [--precision fp32,bf16,amp]

Needs TensorFlow and ``tf2onnx`` (the float ONNX model, made and cached by
``benchmarks/kws_onnx.py``), ``onnx`` and ``torch`` (``pip install torch==2.13.0``:
the CPU build; see the README). The ONNX graph becomes an ``nn.Module``
(:mod:`backends.onnx_to_torch`), traced to TorchScript (``.pt``) or exported
with ``torch.export`` (``.pt2``), with ``mlperf_edge.json`` inside the archive
saying the input (49x10x1 float32 MFCCs per sample), so ``run.py --profile
kws_pytorch --model FILE`` needs nothing else. Cached under
``<cache>/kws-pytorch/``, keyed by the ONNX file's bytes and the torch/onnx
versions; never committed.

Which figure to expect (``run.py --accuracy`` on speech-commands-mini, 300 clips):

* ``--source savedmodel`` (default): TensorFlow's figure for the SavedModel,
  93.000% (279/300), as the float ONNX model gives with ONNX Runtime;
* ``--source tflite``: ``kws_ref_model_float32.tflite`` keeps int8 weights in
  its five standard convolutions; converted, those weights are dequantised and
  everything computes in float32, as ONNX Runtime and OpenVINO do with it:
  92.000% (276/300). The 92.333% (277/300) printed by LiteRT for that file is
  XNNPACK's arithmetic (it quantises the activations of those convolutions on
  the fly), not a float computation, and no float runtime reproduces it.
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

from benchmarks import kws_onnx  # noqa: E402

#: bump when the conversion below changes its output for the same inputs
CONVERSION_VERSION = 1
META_FILE = "mlperf_edge.json"
INPUT_SHAPE = [49, 10, 1]
#: run.py --accuracy on speech-commands-mini, by source (torch 2.13.0 CPU, equal to ONNX Runtime 1.32's)
REFERENCE = {"savedmodel": (279, 300), "tflite": (276, 300)}


def default_cache() -> Path:
    from datasets.cache import DEFAULT_CACHE_DIR

    return Path(DEFAULT_CACHE_DIR) / "kws-pytorch"


def convert(source: str = "savedmodel", fmt: str = "ts", shared: Path = kws_onnx.SHARED,
            cache: Path | None = None) -> Path:
    """The KWS model as TorchScript (``ts``, a ``.pt`` file) or a torch.export program (``pt2``)."""
    import onnx
    import torch

    from backends import onnx_to_torch

    folder = Path(cache) if cache else default_cache()
    onnx_path = kws_onnx.convert(source, shared, folder / "onnx")
    ident = {"onnx_sha256": kws_onnx._tree_sha256(onnx_path), "torch": torch.__version__, "onnx": onnx.__version__,
             "format": fmt, "version": CONVERSION_VERSION}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    final = folder / f"{onnx_path.stem.rsplit('-', 1)[0]}-{key}.{'pt' if fmt == 'ts' else 'pt2'}"
    if final.is_file():
        return final
    folder.mkdir(parents=True, exist_ok=True)
    module = onnx_to_torch.convert(onnx_path)
    example = torch.zeros(1, *INPUT_SHAPE)
    meta = json.dumps({"input_shape": INPUT_SHAPE, "input_dtype": "float32", "layout": None,
                       "input_name": "mfcc", "source": f"{source} via {onnx_path.name}"})
    partial = folder / f"{final.stem}.partial{os.getpid()}{final.suffix}"
    try:
        if fmt == "ts":
            with torch.inference_mode():
                traced = torch.jit.trace(module, example)
            torch.jit.save(traced, str(partial), _extra_files={META_FILE: meta})
        else:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(module, (torch.zeros(2, *INPUT_SHAPE),),
                                          dynamic_shapes={"x": {0: batch}})
            torch.export.save(program, str(partial), extra_files={META_FILE: meta})
        os.replace(partial, final)
    finally:
        if partial.exists():
            partial.unlink()
    (folder / f"{final.stem}.json").write_text(json.dumps({**ident, "source": source}, indent=1, sort_keys=True) + "\n")
    return final


def accuracy(model: Path, *options: str, output: Path, cache: Path, shared: Path = kws_onnx.SHARED):
    """(good, total, stdout) of ``run.py --profile kws_pytorch --accuracy`` on speech-commands-mini."""
    cmd = [sys.executable, str(ROOT / "run.py"), "--profile", "kws_pytorch", "--model", str(model),
           "--dataset-path", str(shared.joinpath(*kws_onnx.DATA)), "--accuracy", "--no-progress",
           "--output", str(output), "--cache-dir", str(cache), *options]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    found = re.search(r"accuracy=[\d.]+%, good=(\d+), total=(\d+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return int(found.group(1)), int(found.group(2)), proc.stdout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="KWS as a PyTorch model: conversion and accuracy (CPU)")
    p.add_argument("what", nargs="?", choices=("figures", "convert"), default="figures")
    p.add_argument("--source", choices=("savedmodel", "tflite"), default="savedmodel")
    p.add_argument("--format", choices=("ts", "pt2"), default="ts", help="TorchScript .pt or torch.export .pt2")
    p.add_argument("--shared", type=Path, default=kws_onnx.SHARED)
    p.add_argument("--cache", type=Path, help="where the converted model is cached (default <harness cache>/kws-pytorch)")
    p.add_argument("--precision", default="fp32", help="comma list of precisions to score (default fp32)")
    args = p.parse_args(argv)
    model = convert(args.source, args.format, args.shared, args.cache)
    if args.what == "convert":
        print(model)
        return 0
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precision.split(","):
            good, total, _ = accuracy(model, "--precision", precision, output=Path(tmp) / "results",
                                      cache=Path(tmp) / "cache", shared=args.shared)
            want = REFERENCE[args.source] if precision == "fp32" else None
            note = "" if want is None else (" = reference" if (good, total) == want else f" != reference {want}")
            print(f"{precision:5}: {100 * good / total:.3f}% ({good}/{total}){note}  "
                  f"[{model.name} from {args.source}; torch {torch.__version__}, CPU]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
