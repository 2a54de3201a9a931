"""PyTorch backend: TorchScript, ``torch.export`` programs, or a factory plus a state dict.

Model kinds:

* ``.pt`` / ``.ts``: TorchScript (``torch.jit.save``), loaded with ``torch.jit.load``;
* ``.pt2``: a program saved by ``torch.export.save``, run as ``ExportedProgram.module()``;
* backend option ``factory = "package.module:callable"`` (with ``factory_kwargs``, a
  dict): the callable builds an ``nn.Module``; ``--model`` is then a state dict
  (``torch.save(model.state_dict(), path)``, read with ``weights_only=True``), or
  absent to run the factory's own weights (e.g. a torchvision ResNet50's random
  initialisation: for speed only, and the results say so).

Input description (the harness never asks which backend it is): a file written
by ``benchmarks/kws_pytorch.py`` carries it (``mlperf_edge.json`` inside the
archive: ``input_shape`` per sample, ``input_dtype``, ``layout``); a ``.pt2``
program carries its input shape; otherwise backend options ``input_shape``,
``input_dtype`` (default float32) and ``layout`` give it (profiles set them).
Options that contradict the file are a ModelError. The output is described by
running the model once on zeros at load; a model that fails on the described
input is a ModelError naming the shape.

Precision (``--precision``), checked before any run (ConfigError, exit 2):

* ``fp32`` (or unset): the model as saved (float32 for the converted models);
* ``fp16``: model and inputs in float16. CUDA, or a CPU where oneDNN reports
  float16 support (AVX512-FP16 / AMX-FP16); refused elsewhere;
* ``bf16``: model and inputs in bfloat16. CUDA with compute capability 8.0+,
  or a CPU where oneDNN reports bfloat16 support (AVX512-BF16 or AVX512 core);
* ``amp``: ``torch.autocast`` around the fp32 model: convolutions and matmuls
  in float16 on CUDA, bfloat16 on a CPU (option ``amp_dtype`` = ``fp16``/``bf16``
  chooses), the same device rules as those dtypes.

Outputs come back as float32 whatever ran. ``describe()`` records the torch
version, the device name, the precision applied and every tuning option.

Tuning options, off by default, recorded when on: ``channels_last`` (model and
4-d inputs in channels-last memory format), ``compile`` (``torch.compile``,
Python modules only, i.e. ``.pt2`` and factories; ``compile_mode``; its
warm-up seconds recorded as ``compile_warmup_s``), ``cudnn_benchmark`` (CUDA
only). CUDA graphs are not implemented.

Instances: each ``predict`` instance shares the module; on CUDA each has its own
stream and pinned host buffers (non-blocking copies); on a CPU each runs
``threads`` intra-op threads (``torch.set_num_threads``, process-wide). Inference
runs under ``torch.inference_mode``. The CUDA path is UNTESTED on a GPU here.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import time
import warnings
from typing import Any

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec, require_module
from sut.errors import BackendFailure, BackendUnavailable, ConfigError, ModelError

log = logging.getLogger(__name__)

#: the metadata file inside a TorchScript/.pt2 archive that describes the input
META_FILE = "mlperf_edge.json"
SUFFIXES = (".pt", ".ts", ".pt2")
PRECISIONS = ("fp32", "fp16", "bf16", "amp")
EXTRA_OPTIONS = {
    "factory": "module:callable that builds the nn.Module (--model: its state dict, or none)",
    "factory_kwargs": "keyword arguments for the factory (a dict)",
    "input_shape": "input shape per sample, e.g. [3, 224, 224] (when the model file does not say)",
    "input_dtype": "input dtype (default float32)",
    "layout": "NCHW or NHWC for image inputs (default: guessed from the shape)",
    "amp_dtype": "amp's lower precision: fp16 or bf16 (default: fp16 on CUDA, bf16 on a CPU)",
    "channels_last": "model and 4-d inputs in channels-last memory format",
    "compile": "torch.compile the module (not TorchScript); its warm-up time is recorded",
    "compile_mode": "torch.compile mode (default, reduce-overhead, max-autotune)",
    "cudnn_benchmark": "cuDNN autotuning (CUDA only)",
}


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 300 else line[:300] + "..."


class PyTorchBackend(Backend):
    name = "pytorch"
    extra_name = "pytorch"
    precisions = PRECISIONS

    def __init__(self, options=None):
        super().__init__(options)
        self._torch = require_module("torch", self.name, self.extra_name)
        self._module = None
        self._device = None
        self._dtype = None          # the dtype model and inputs run in (None: as saved)
        self._autocast = None       # (device type, dtype) for amp
        self._plain = False         # CPU, no casts: predict calls the module on the NumPy memory
        self._states: list = []     # per instance: CUDA stream and pinned buffers
        self._applied: str | None = None
        self._warmup_s: float | None = None
        self._weights: str | None = None

    # --- options and device ---------------------------------------------------------
    def _extra(self) -> dict[str, Any]:
        extra = dict(self.options.extra)
        unknown = sorted(set(extra) - set(EXTRA_OPTIONS))
        if unknown:
            raise ConfigError(f"pytorch has no option {', '.join(unknown)}; accepted: {', '.join(EXTRA_OPTIONS)}")
        if extra.get("amp_dtype", "fp16") not in ("fp16", "bf16"):
            raise ConfigError(f"pytorch option amp_dtype={extra['amp_dtype']!r}; accepted: fp16, bf16")
        return extra

    def _device_name(self) -> str:
        """``cpu`` or ``cuda:N`` from ``--device`` (checked against this torch build)."""
        torch = self._torch
        wanted = (self.options.device or "cpu").strip().lower()
        if wanted == "cpu":
            return "cpu"
        if wanted != "cuda" and not (wanted.startswith("cuda:") and wanted[5:].isdigit()):
            raise ConfigError(f"pytorch device '{self.options.device}' is not one of cpu, cuda, cuda:N")
        if not torch.version.cuda:
            raise BackendUnavailable(
                f"device '{self.options.device}' needs a CUDA build of torch, and torch {torch.__version__} here is "
                "CPU-only; install torch built for your CUDA version (README: PyTorch), or use --device cpu")
        if not torch.cuda.is_available():
            raise BackendUnavailable(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device "
                                     f"for '{self.options.device}'; check the driver and CUDA_VISIBLE_DEVICES")
        index = int(wanted[5:]) if ":" in wanted else 0
        if index >= torch.cuda.device_count():
            raise BackendUnavailable(f"device '{self.options.device}': torch sees {torch.cuda.device_count()} "
                                     f"CUDA device(s), numbered from 0")
        return f"cuda:{index}"

    # --- precision ------------------------------------------------------------------
    def check_precision(self, precision, model_path=None):
        """ConfigError (before any run) where the device cannot compute ``precision``."""
        super().check_precision(precision, model_path)
        if precision in (None, "fp32"):
            return
        extra = self._extra()
        device = self._device_name()
        dtype = precision if precision != "amp" else extra.get("amp_dtype") or ("fp16" if device != "cpu" else "bf16")
        reason = self._why_not(dtype, device)
        if reason:
            what = f"{precision} ({dtype} autocast)" if precision == "amp" else precision
            raise ConfigError(f"backend 'pytorch' cannot apply precision {what} on {device}: {reason}; "
                              "choose another precision or leave --precision unset")

    def _why_not(self, dtype: str, device: str) -> str | None:
        torch = self._torch
        if device == "cpu":
            supported = (torch.ops.mkldnn._is_mkldnn_fp16_supported() if dtype == "fp16"
                         else torch.ops.mkldnn._is_mkldnn_bf16_supported())
            if not supported:
                isa = "AVX512-FP16 or AMX-FP16" if dtype == "fp16" else "AVX512 (BF16) or AMX"
                return (f"torch {torch.__version__} (oneDNN) reports no {dtype} support on this CPU "
                        f"({_cpu_name()}; it needs {isa}), so {dtype} would only run emulated")
            return None
        major, minor = torch.cuda.get_device_capability(device)
        if dtype == "bf16" and (major, minor) < (8, 0):
            return f"{torch.cuda.get_device_name(device)} has compute capability {major}.{minor}; bf16 needs 8.0+"
        if dtype == "fp16" and (major, minor) < (5, 3):
            return f"{torch.cuda.get_device_name(device)} has compute capability {major}.{minor}; fp16 needs 5.3+"
        return None

    def applied_precision(self):
        return self._applied or super().applied_precision()

    # --- load -----------------------------------------------------------------------
    def load_impl(self, model_path):
        torch = self._torch
        extra = self._extra()
        device = self._device_name()
        self._device = torch.device(device)
        if self.options.threads > 0:
            torch.set_num_threads(self.options.threads)
        # the harness's sample memory may be read-only; inputs are only read (never written in place)
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        if extra.get("cudnn_benchmark"):
            if device == "cpu":
                raise ConfigError("pytorch option cudnn_benchmark needs a CUDA device (--device cuda:N)")
            torch.backends.cudnn.benchmark = True
        module, meta, spec_from_model = self._load_module(model_path, extra)
        module = module.to(self._device)
        if not (model_path or "").lower().endswith(".pt2") or extra.get("factory"):
            module = module.eval()  # an exported program is traced in eval mode already (its eval() raises)
        module = self._set_precision(module, extra, device)
        spec = self._input_spec(meta, spec_from_model, extra, model_path)
        if extra.get("channels_last"):
            module = module.to(memory_format=torch.channels_last)
        if extra.get("compile"):
            if isinstance(module, torch.jit.ScriptModule):
                raise ConfigError("pytorch option compile takes Python modules (a .pt2 program or a factory); "
                                  "TorchScript is compiled by torch.jit already: drop compile")
            module = torch.compile(module, mode=extra.get("compile_mode") or None)
        self._module = module
        self._plain = (device == "cpu" and self._dtype in (None, torch.float32) and not self._autocast
                       and not extra.get("channels_last"))
        instances = max(1, self.options.instances or 1)
        self._states = [self._new_state() for _ in range(instances)]
        started = time.perf_counter()
        output, max_batch, batch_sizes = self._trial(spec, model_path)
        if extra.get("compile"):
            self._warmup_s = round(time.perf_counter() - started, 3)
        return ModelInfo(inputs=(spec,), outputs=(output,), max_batch_size=max_batch, batch_sizes=batch_sizes,
                         instances=instances)

    def _load_module(self, path, extra):
        """(module, metadata dict, input TensorSpec read from the model or None)."""
        torch = self._torch
        factory = extra.get("factory")
        if factory:
            return self._from_factory(factory, extra.get("factory_kwargs") or {}, path), {}, None
        if not path:
            raise ModelError("backend 'pytorch' needs a model: pass --model FILE (.pt/.ts TorchScript, .pt2 "
                             "torch.export) or --backend-option factory=\"module:callable\"")
        if not os.path.exists(path):
            raise ModelError(f"model file not found: {path}")
        if not path.lower().endswith(SUFFIXES):
            raise ModelError(f"backend 'pytorch' cannot read {path}: expected {', '.join(SUFFIXES)} "
                             "(or a state dict with --backend-option factory=...)")
        files = {META_FILE: ""}
        try:
            if path.lower().endswith(".pt2"):
                program = torch.export.load(path, extra_files=files)
                module, spec = program.module(), _exported_input(program)
            else:
                module, spec = torch.jit.load(path, map_location="cpu", _extra_files=files), None
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, ValueError, zip and pickle errors
            kind = "a torch.export program" if path.lower().endswith(".pt2") else "TorchScript"
            raise ModelError(f"torch {torch.__version__} cannot load {path} as {kind}: {_first_line(exc)}; save it "
                             "with torch.jit.save / torch.export.save, or give its state dict with "
                             "--backend-option factory=\"module:callable\"") from exc
        self._weights = "as saved in the model file"
        try:
            meta = json.loads(files[META_FILE] or "{}")
        except ValueError as exc:
            raise ModelError(f"{path}: {META_FILE} inside it is not JSON: {exc}") from exc
        return module, meta, spec

    def _from_factory(self, target: str, kwargs, path):
        torch = self._torch
        module_name, _, attr = str(target).partition(":")
        if not module_name or not attr:
            raise ConfigError(f"pytorch option factory={target!r}: expected 'package.module:callable'")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
            module = fn(**dict(kwargs))
        except (ImportError, AttributeError, TypeError) as exc:
            raise ModelError(f"pytorch factory {target}: {_first_line(exc)}") from exc
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"pytorch factory {target} returned {type(module).__name__}, not a torch.nn.Module")
        if not path:
            self._weights = f"the factory's own ({target}; no state dict given: untrained weights are for speed only)"
            log.warning("pytorch: no state dict for %s: running its own (e.g. random) weights", target)
            return module
        if not os.path.exists(path):
            raise ModelError(f"state dict not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as exc:  # noqa: BLE001 - unpickling and key mismatches raise many types
            raise ModelError(f"torch {torch.__version__} cannot load {path} as a state dict for {target}: "
                             f"{_first_line(exc)}") from exc
        self._weights = f"{path} into {target}"
        return module

    def _set_precision(self, module, extra, device):
        torch = self._torch
        precision = self.options.precision
        own = _module_dtype(torch, module)
        if precision in ("fp16", "bf16"):
            self._dtype = torch.float16 if precision == "fp16" else torch.bfloat16
            module = module.to(self._dtype)
            self._applied = f"{precision} (model weights and inputs {str(self._dtype)[6:]}, outputs float32)"
        elif precision == "amp":
            amp = extra.get("amp_dtype") or ("fp16" if device != "cpu" else "bf16")
            self._autocast = (self._device.type, torch.float16 if amp == "fp16" else torch.bfloat16)
            self._applied = (f"amp (torch.autocast {self._device.type} {amp}: eligible ops such as convolutions and "
                             f"matmuls in {amp}, the rest {own or 'as saved'})")
        elif precision == "fp32":
            self._dtype = torch.float32
            module = module.float()
            self._applied = "fp32" + (f" (the model's {own} weights cast to float32)" if own not in (None, "float32")
                                      else "")
        else:
            self._applied = f"{own} (the model as saved)" if own else None
        if extra.get("channels_last") and self._applied:
            self._applied += "; channels_last"
        if extra.get("compile") and self._applied:
            self._applied += "; torch.compile"
        return module

    def _input_spec(self, meta, from_model: TensorSpec | None, extra, path) -> TensorSpec:
        shape = meta.get("input_shape") or (list(from_model.shape) if from_model else None)
        dtype = meta.get("input_dtype") or (from_model.dtype.name if from_model else None)
        layout = meta.get("layout", from_model.layout if from_model else None)
        for key, value in (("input_shape", shape), ("input_dtype", dtype)):
            given = extra.get(key)
            if given is not None and value is not None and _norm(given) != _norm(value):
                raise ModelError(f"{path} says {key}={value}, but the options say {given}: "
                                 f"drop the option or use a model saved for {given}")
        shape = shape or extra.get("input_shape")
        if not shape:
            raise ModelError(f"cannot tell the input shape of {path or extra.get('factory')}: pass "
                             "--backend-option input_shape=[...] (per sample, without the batch), or save the "
                             f"model with {META_FILE} (benchmarks/kws_pytorch.py does)")
        if any(int(d) < 1 for d in shape):
            raise ModelError(f"{path}: input shape {list(shape)} per sample has unknown dimensions; "
                             "only the batch may vary: pass --backend-option input_shape=[...]")
        dtype = np.dtype(dtype or extra.get("input_dtype") or "float32")
        if "layout" in extra:
            layout = extra["layout"]
        elif layout is None and len(shape) == 3:
            layout = "NCHW" if shape[0] == 3 else "NHWC" if shape[-1] == 3 else None
        return TensorSpec(meta.get("input_name", "input"), tuple(int(d) for d in shape), dtype, layout)

    def _trial(self, spec: TensorSpec, path):
        """The output spec from a run on zeros; the batch sizes the model takes."""
        torch = self._torch
        try:
            out = self._run(np.zeros((1, *spec.shape), spec.dtype), 0)
        except BackendFailure as exc:
            raise ModelError(f"{path or 'the model'} does not run on the input {spec.dtype.name}"
                             f"{[1, *spec.shape]} (batch 1, {spec.layout or 'no layout'}): {exc}; pass "
                             "--backend-option input_shape=[...] / input_dtype=... matching the model") from exc
        max_batch, sizes = max(1, self.options.max_batch_size), None
        if max_batch > 1:
            try:
                self._run(np.zeros((max_batch, *spec.shape), spec.dtype), 0)
            except BackendFailure as exc:
                log.info("pytorch: %s does not take a batch of %d (%s); running batch 1", path, max_batch, exc)
                max_batch, sizes = 1, (1,)
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        return TensorSpec("output", out.shape[1:], np.float32), max_batch, sizes

    # --- predict ----------------------------------------------------------------------
    def _new_state(self):
        torch = self._torch
        if self._device.type != "cuda":
            return None
        return {"stream": torch.cuda.Stream(self._device), "pinned": {}}

    def _pinned(self, state, key, shape, dtype):
        torch = self._torch
        buf = state["pinned"].get(key)
        if buf is None or buf.shape[0] < shape[0] or tuple(buf.shape[1:]) != tuple(shape[1:]) or buf.dtype != dtype:
            buf = state["pinned"][key] = torch.empty(tuple(shape), dtype=dtype, pin_memory=True)
        return buf[:shape[0]]

    def predict_impl(self, batch, instance):
        return self._run(batch, instance)

    def _run(self, batch: np.ndarray, instance: int) -> np.ndarray:
        torch = self._torch
        try:
            with torch.inference_mode():
                if self._plain:  # CPU, the model as saved: nothing between NumPy and the module
                    out = self._module(torch.from_numpy(batch))
                    if type(out) is torch.Tensor and out.dtype is torch.float32:
                        return out.numpy()
                elif self._device.type == "cuda":
                    return self._run_cuda(batch, self._states[instance])
                else:
                    out = self._forward(torch.from_numpy(batch))
                return _to_numpy(torch, out)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise BackendFailure(f"torch {torch.__version__}: {_first_line(exc)}") from exc

    def _run_cuda(self, batch, state):
        torch = self._torch
        host = self._pinned(state, "in", batch.shape, torch.from_numpy(batch[:0]).dtype)
        host.numpy()[...] = batch
        with torch.cuda.stream(state["stream"]):
            x = host.to(self._device, non_blocking=True)
            out = _first_tensor(self._forward(x, cast=True))
            out = out.float() if out.is_floating_point() else out
            back = self._pinned(state, "out", tuple(out.shape), out.dtype)
            back.copy_(out, non_blocking=True)
        state["stream"].synchronize()
        return back.numpy().copy()  # the pinned buffer is reused by the next call

    def _forward(self, x, cast=True):
        torch = self._torch
        if self._dtype is not None and x.is_floating_point() and x.dtype != self._dtype:
            x = x.to(self._dtype)
        if x.dim() == 4 and self.options.extra.get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        if self._autocast:
            with torch.autocast(self._autocast[0], dtype=self._autocast[1]):
                return self._module(x)
        return self._module(x)

    def close_impl(self):
        self._module = None
        self._states = []

    # --- records ----------------------------------------------------------------------
    def version(self):
        return f"torch {self._torch.__version__}"

    def describe(self):
        torch = self._torch
        extra = dict(self.options.extra)
        device = str(self._device) if self._device is not None else (self.options.device or "cpu")
        if device.startswith("cuda") and self._device is not None:
            name = f"{torch.cuda.get_device_name(self._device)} (CUDA {torch.version.cuda}, cuDNN " \
                   f"{torch.backends.cudnn.version()})"
        else:
            name = f"{_cpu_name()} ({torch.backends.cpu.get_cpu_capability()})"
        record = {**super().describe(), "device": device, "device_name": name,
                  "threads": torch.get_num_threads(), "instances": len(self._states) or max(1, self.options.instances or 1),
                  "weights": self._weights,
                  "options": {k: extra[k] for k in ("channels_last", "compile", "compile_mode", "cudnn_benchmark",
                                                    "amp_dtype") if extra.get(k)}}
        if self._warmup_s is not None:
            record["compile_warmup_s"] = self._warmup_s
        return record


# --- helpers ------------------------------------------------------------------------------

def _norm(value):
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else str(np.dtype(value))


def _module_dtype(torch, module) -> str | None:
    """The dtype of the module's first floating parameter or buffer (``float32``...)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            return str(tensor.dtype).replace("torch.", "")
    return None


def _first_tensor(out):
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out


def _to_numpy(torch, out) -> np.ndarray:
    out = _first_tensor(out)
    if out.is_floating_point() and out.dtype != torch.float32:
        out = out.float()
    return out.numpy()


def _exported_input(program) -> TensorSpec | None:
    """The input shape per sample (batch dropped; -1 where symbolic) of an exported program."""
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise ModelError(f"the exported program has {len(user_inputs)} inputs; backend 'pytorch' feeds one")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0])
    value = node.meta.get("val")
    if value is None:
        return None
    shape = tuple(int(d) if str(d).lstrip("-").isdigit() else -1 for d in value.shape[1:])
    return TensorSpec(node.name, shape, np.dtype(str(value.dtype).replace("torch.", "")))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"
