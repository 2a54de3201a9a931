"""TensorFlow backend: SavedModel directories, Keras files and frozen graphs.

Model kinds, by path:

* a directory: a SavedModel, run through its signature (option ``signature``,
  default ``serving_default``). ``tf.saved_model.load`` is tried first; when it
  fails (TF 2.21 cannot restore some SavedModels written by older Keras, e.g.
  the MLCommons Tiny KWS model: ``'_UserObject' object has no attribute
  'add_slot'``) the TF1 loader ``tf.compat.v1.saved_model.loader.load`` runs the
  same signature's tensors in a graph-mode session. Option ``loader``
  (``auto``/``tf2``/``tf1``) forces one.
* ``.keras`` / ``.h5``: a Keras model (``tf.keras.models.load_model``, not compiled).
  ``tf.keras`` is Keras 2 up to TF 2.15 and Keras 3 from TF 2.16; the
  differences that matter here are read in one place (``_keras_tensor_spec``,
  ``_keras_version_error``):

  - Keras 2 gives inputs a ``tf.DType`` and a ``TensorShape``, Keras 3 a
    string and a tuple; ``tf.dtypes.as_dtype`` reads both (``np.dtype`` cannot
    interpret ``tf.float32``).
  - Keras 2 reads neither file kind written by Keras 3, and Keras 3 cannot
    read a ``.keras`` file written by Keras 2 (it does read Keras 2 ``.h5``).
    A failed load says which Keras wrote the file and which one is installed.

  TF <= 2.15 (Keras 2) also restores the MLCommons Tiny KWS SavedModel with
  ``tf.saved_model.load``; from TF 2.16 it needs the TF1 loader (above).
* ``.pb``: a frozen GraphDef run in a session; input and output tensors are
  its placeholders and its unconsumed ops, or options ``inputs``/``outputs``
  (tensor names such as ``"input_1:0"``).

Precision (``BackendOptions.precision``), refused up front (ConfigError from
:meth:`TensorFlowBackend.check_precision`, which the harness calls before any
run) where it would not be applied:

* ``fp32`` / ``None``: the model as saved.
* ``fp16``: Grappler's *auto mixed precision* graph rewrite: on an NVIDIA GPU
  (compute capability 7.0+), ops that are safe in float16 (convolutions,
  matmuls and their neighbours) run in float16 with float32 inputs and outputs
  kept; the model file is unchanged. It does nothing on a CPU, so without such
  a GPU (or with ``device`` a CPU) fp16 is refused. Scores may differ slightly
  from fp32. With ``tf_trt``: TF-TRT's FP16 mode.
* ``int8``: only through TF-TRT (option ``tf_trt``, a SavedModel, a
  TensorFlow built with TensorRT, a GPU), calibrated by TF-TRT on the
  dataset's calibration samples (``BackendOptions.calibration``); otherwise
  refused. For int8 on a CPU, convert the model to ONNX and use a backend
  that runs a calibrated Q/DQ copy (onnxruntime, openvino).

``describe()["precision"]`` says what was applied (:meth:`TensorFlowBackend.applied_precision`).

Option ``tf_trt`` (SavedModel only) converts with TF-TRT
(``TrtGraphConverterV2``, precision from ``precision``) into
``tf_trt_dir`` (default: a temporary directory) and runs the result. It needs
a TensorFlow built with TensorRT (``tf.sysconfig.get_build_info()
["is_tensorrt_build"]``); otherwise BackendUnavailable. TF-TRT, fp16 and GPU
memory growth are UNTESTED on a GPU (CPU-only TensorFlow here; the TF-TRT
calls are tested against a stand-in converter).

GPU memory growth is switched on for every GPU, so several processes or
instances can share one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import zipfile
from typing import Any

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec, require_module
from sut.compat import remove_prefix
from sut.errors import BackendFailure, BackendUnavailable, ConfigError, ModelError

log = logging.getLogger(__name__)

EXTRA_OPTIONS = {
    "signature": "SavedModel signature to run (default serving_default)",
    "loader": "SavedModel loader: auto (tf2, then tf1 on failure), tf2 or tf1",
    "inputs": "frozen graph: input tensor name (e.g. 'input_1:0')",
    "outputs": "frozen graph: output tensor name",
    "tf_trt": "convert the SavedModel with TF-TRT first (needs TensorFlow built with TensorRT)",
    "tf_trt_dir": "where TF-TRT writes the converted SavedModel (default: a temporary directory)",
}
PRECISIONS = ("fp32", "fp16", "int8")
LOADERS = ("auto", "tf2", "tf1")


def guess_layout(shape: tuple[int, ...]) -> str | None:
    if len(shape) == 3 and shape[-1] == 3:
        return "NHWC"
    if len(shape) == 3 and shape[0] == 3:
        return "NCHW"
    return None


def _dims(shape) -> tuple[int, ...] | None:
    """A TensorShape / TensorShapeProto as a tuple with -1 for unknown dims; None if unknown rank."""
    if hasattr(shape, "unknown_rank"):  # TensorShapeProto
        return None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    if shape.rank is None:
        return None
    return tuple(-1 if d is None else int(d) for d in shape.as_list())


def _keras_tensor_spec(tf, tensor, default_name: str):
    """Name, shape (-1 for unknown dims) and NumPy dtype of a Keras model's input or output.

    Keras 2 (``tf.keras`` up to TF 2.15) gives a ``tf.DType`` and a ``TensorShape``; Keras 3 (TF 2.16+) a
    dtype string and a tuple. ``tf.dtypes.as_dtype`` accepts both dtypes, and both shapes iterate as ints/None.
    """
    dtype = np.dtype(tf.dtypes.as_dtype(tensor.dtype).as_numpy_dtype)
    shape = tuple(-1 if d is None else int(d) for d in tensor.shape)
    return getattr(tensor, "name", default_name), shape, dtype


def _installed_keras_version(tf) -> str | None:
    """The version of the Keras behind ``tf.keras`` (``keras`` 2.x/3.x, or ``tf_keras`` when TF uses it)."""
    package = tf.keras.models.load_model.__module__.split(".")[0]
    return getattr(sys.modules.get(package), "__version__", None)


def _file_keras_version(path: str) -> str | None:
    """The Keras version recorded in a .keras zip (metadata.json) or a .h5 file (attribute keras_version)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("metadata.json")).get("keras_version")
        import h5py  # installed with every Keras that reads .h5

        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # noqa: BLE001 - no version to report; the load error is reported instead
        return None


def _keras_version_error(tf, path: str) -> str | None:
    """Why a Keras file failed to load when it was written by another Keras major version than tf.keras."""
    written, installed = _file_keras_version(path), _installed_keras_version(tf)
    if not written or not installed or written.split(".")[0] == installed.split(".")[0]:
        return None
    if int(written.split(".")[0]) > int(installed.split(".")[0]):
        fix = ("use TensorFlow 2.16 or newer, or export the model as a SavedModel directory "
               "(model.export(DIR) under Keras 3) and pass that directory")
    else:
        fix = ("save it as .h5 under Keras 2 (Keras 3 reads Keras 2 .h5 files) or as a SavedModel directory, "
               "or use TensorFlow 2.15")
    return (f"the file was written by Keras {written} and TensorFlow {tf.__version__} reads it with "
            f"Keras {installed}, which cannot read it: {fix}")


def _chosen_gpu(gpus, device: str):
    """The physical GPU ``device`` (``GPU:1``, ``/device:GPU:1``) names, else the first."""
    wanted = remove_prefix(device, "/DEVICE:")
    for gpu in gpus:
        if wanted and gpu.name.upper().endswith(wanted):
            return gpu
    return gpus[0]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 300 else line[:300] + "..."


class _SessionRunner:
    """A TF1 graph-mode session fed by tensor name."""

    def __init__(self, session, input_tensor, output_tensor):
        self.session = session
        self.input_tensor, self.output_tensor = input_tensor, output_tensor

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_tensor, {self.input_tensor: batch})

    def close(self):
        self.session.close()


class _FunctionRunner:
    """A TF2 concrete function or Keras model called eagerly."""

    def __init__(self, tf, fn, input_key: str | None, output_key: str | None, device: str | None):
        self.tf, self.fn, self.input_key, self.output_key, self.device = tf, fn, input_key, output_key, device

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tf = self.tf
        with tf.device(self.device) if self.device else _nullcontext():
            x = tf.constant(batch)
            out = self.fn(**{self.input_key: x}) if self.input_key else self.fn(x, training=False)
        if isinstance(out, dict):
            out = out[self.output_key]
        elif isinstance(out, (list, tuple)):
            out = out[0]
        return out.numpy()

    def close(self):
        self.fn = None


def _silence_deprecation():
    """Hide TF's "loader.load is deprecated" notice: using the TF1 loader is deliberate here."""
    try:
        from tensorflow.python.util import deprecation

        return deprecation.silence()
    except (ImportError, AttributeError):
        return _nullcontext()


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class TensorFlowBackend(Backend):
    name = "tensorflow"
    extra_name = "tensorflow"
    #: each only where it is applied: see :meth:`check_precision`
    precisions = PRECISIONS

    def __init__(self, options=None):
        super().__init__(options)
        self._runner = None
        self.loaded_with: str | None = None
        self._applied: str | None = None  # set by load_impl: what this load applied

    # --- precision -------------------------------------------------------------------
    def check_precision(self, precision, model_path=None):
        """ConfigError (before any run) for a precision this TensorFlow would not apply:
        fp16 without an NVIDIA GPU of compute capability 7.0+ (auto mixed precision does
        nothing on a CPU), int8 outside TF-TRT; BackendUnavailable without TensorFlow."""
        super().check_precision(precision, model_path)
        if precision in (None, "fp32"):
            return
        extra = self._extra()
        reason = self._why_not(precision, extra, model_path)
        if reason:
            raise ConfigError(f"backend 'tensorflow' cannot apply precision {precision}: {reason}; "
                              "choose fp32 or leave --precision unset")

    def _why_not(self, precision: str, extra, model_path) -> str | None:
        trt = bool(extra.get("tf_trt"))
        if precision == "int8" and not trt:
            return ("it runs int8 only through TF-TRT (backend option tf_trt = true, on a GPU); for int8 on a "
                    "CPU convert the model to ONNX and use onnxruntime or openvino, which calibrate a Q/DQ copy")
        if trt and model_path and not os.path.isdir(model_path):
            return "TF-TRT (option tf_trt) converts SavedModel directories only"
        tf = require_module("tensorflow", self.name, self.extra_name)
        if trt and not tf.sysconfig.get_build_info().get("is_tensorrt_build"):
            return (f"TF-TRT (option tf_trt) needs TensorFlow built with TensorRT, and TensorFlow {tf.__version__} "
                    "here is not")
        gpus = tf.config.list_physical_devices("GPU")
        device = (self.options.device or "").upper()
        if not gpus:
            what = "TF-TRT" if trt else "auto mixed precision (a graph rewrite for NVIDIA GPUs)"
            return f"TensorFlow {tf.__version__} sees no GPU, and {what} applies nothing on a CPU"
        if "CPU" in device:
            return f"device '{self.options.device}' is a CPU, where it applies nothing"
        if precision == "fp16" and not trt:
            gpu = _chosen_gpu(gpus, device)
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
            if capability and tuple(capability) < (7, 0):
                return (f"GPU {gpu.name} has compute capability {capability[0]}.{capability[1]}; auto mixed "
                        "precision needs 7.0 or newer (it leaves the graph float32 on older GPUs)")
        return None

    def applied_precision(self) -> str:
        return self._applied or super().applied_precision()

    # --- options -------------------------------------------------------------------
    def _extra(self) -> dict[str, Any]:
        extra = dict(self.options.extra)
        unknown = sorted(set(extra) - set(EXTRA_OPTIONS))
        if unknown:
            raise ConfigError(f"tensorflow has no option {', '.join(unknown)}; accepted: {', '.join(EXTRA_OPTIONS)}")
        if extra.get("loader", "auto") not in LOADERS:
            raise ConfigError(f"tensorflow option loader={extra['loader']!r}; accepted: {', '.join(LOADERS)}")
        return extra  # the precision: check_precision (the harness may ask for several)

    # --- load --------------------------------------------------------------------------
    def load_impl(self, model_path):
        extra = self._extra()
        if not model_path:
            raise ModelError("backend 'tensorflow' needs a model: pass --model PATH")
        if not os.path.exists(model_path):
            raise ModelError(f"model not found: {model_path}")
        is_dir = os.path.isdir(model_path)
        lower = model_path.lower()
        if not is_dir and not lower.endswith((".keras", ".h5", ".pb")):
            raise ModelError(f"backend 'tensorflow' cannot read {model_path}: expected a SavedModel directory "
                             "or a file ending in .keras, .h5 or .pb")
        if is_dir and not os.path.exists(os.path.join(model_path, "saved_model.pb")):
            raise ModelError(f"{model_path} is a directory without saved_model.pb, so not a SavedModel")
        tf = require_module("tensorflow", self.name, self.extra_name)
        self._tf = tf
        self._configure(tf)
        precision = self.options.precision
        self._applied = "fp32 (the model as saved)" if precision == "fp32" else None
        if precision == "fp16":
            self._applied = ("fp16 (Grappler auto mixed precision: float16 compute on "
                             f"{', '.join(g.name for g in self._gpus)}, float32 inputs and outputs)")
        if extra.get("tf_trt"):
            if not is_dir:
                raise ConfigError("tensorflow option tf_trt works on SavedModel directories only")
            model_path = self._convert_tf_trt(tf, model_path, extra)
        if is_dir:
            spec_in, spec_out = self._load_saved_model(tf, model_path, extra)
        elif lower.endswith(".pb"):
            spec_in, spec_out = self._load_frozen_graph(tf, model_path, extra)
        else:
            spec_in, spec_out = self._load_keras(tf, model_path)
        return self._model_info(spec_in, spec_out)

    def _configure(self, tf) -> None:
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError as exc:  # already initialised by an earlier load
                log.debug("tensorflow: memory growth not changed for %s: %s", gpu.name, exc)
        if self.options.threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.options.threads)
            except RuntimeError as exc:
                log.warning("tensorflow: cannot set threads=%d after TensorFlow started: %s",
                            self.options.threads, exc)
        self._device = self.options.device
        if self._device:
            names = [d.name for d in tf.config.list_logical_devices()]
            wanted = remove_prefix(self._device.upper(), "/DEVICE:")
            if not any(n.upper().endswith("DEVICE:" + wanted) for n in names):
                raise BackendUnavailable(f"tensorflow device '{self._device}' is not present; "
                                         f"this TensorFlow sees: {', '.join(names)}")
        self._gpus = tf.config.list_physical_devices("GPU")
        fp16 = self.options.precision == "fp16" and not self.options.extra.get("tf_trt")
        # process-wide setting: set it both ways so an earlier fp16 load does not leak into this one
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision": fp16})

    def _session_config(self, tf):
        config = tf.compat.v1.ConfigProto()
        config.gpu_options.allow_growth = True
        if self.options.threads:
            config.intra_op_parallelism_threads = self.options.threads
        if self.options.precision == "fp16" and not self.options.extra.get("tf_trt"):
            from tensorflow.core.protobuf import rewriter_config_pb2

            config.graph_options.rewrite_options.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
        if self._device and self._device.upper().startswith("CPU"):
            config.device_count["GPU"] = 0
        return config

    def _load_saved_model(self, tf, path, extra):
        signature = extra.get("signature", "serving_default")
        loader = extra.get("loader", "auto")
        if loader in ("auto", "tf2"):
            try:
                return self._load_tf2(tf, path, signature)
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - any restore failure: try the TF1 loader
                if loader == "tf2":
                    raise ModelError(f"tf.saved_model.load cannot load {path}: {type(exc).__name__}: {exc}") from exc
                log.warning("tensorflow: tf.saved_model.load failed on %s (%s: %s); using the TF1 loader",
                            path, type(exc).__name__, exc)
        return self._load_tf1(tf, path, signature)

    def _load_tf2(self, tf, path, signature):
        model = tf.saved_model.load(path)
        if signature not in model.signatures:
            raise ModelError(f"SavedModel {path} has no signature '{signature}'; it has: "
                             f"{', '.join(model.signatures) or 'none'}")
        fn = model.signatures[signature]
        inputs = fn.structured_input_signature[1]
        outputs = fn.structured_outputs
        (in_key, in_spec), = self._single(inputs, "input", path)
        out_key = sorted(outputs)[0]
        if len(outputs) > 1:
            log.warning("tensorflow: %s has outputs %s; using '%s'", path, sorted(outputs), out_key)
        self._model = model  # keep the trackable alive
        self._runner = _FunctionRunner(tf, fn, in_key, out_key, self._device)
        self.loaded_with = "tf.saved_model.load"
        out = outputs[out_key]
        return ((in_key, _dims(in_spec.shape), in_spec.dtype.as_numpy_dtype),
                (out_key, _dims(out.shape), out.dtype.as_numpy_dtype))

    def _load_tf1(self, tf, path, signature):
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=self._session_config(tf))
        try:
            with graph.as_default(), _silence_deprecation():
                meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        except Exception as exc:  # noqa: BLE001
            session.close()
            raise ModelError(f"TensorFlow cannot load the SavedModel {path}: {type(exc).__name__}: {exc}") from exc
        if signature not in meta.signature_def:
            session.close()
            raise ModelError(f"SavedModel {path} has no signature '{signature}'; it has: "
                             f"{', '.join(k for k in meta.signature_def if not k.startswith('__')) or 'none'}")
        sig = meta.signature_def[signature]
        (in_key, in_info), = self._single(sig.inputs, "input", path)
        out_key = sorted(sig.outputs)[0]
        out_info = sig.outputs[out_key]
        self._runner = _SessionRunner(session, in_info.name, out_info.name)
        self.loaded_with = "tf.compat.v1.saved_model.loader.load"
        as_np = lambda enum: tf.dtypes.as_dtype(enum).as_numpy_dtype  # noqa: E731
        return ((in_key, _dims(in_info.tensor_shape), as_np(in_info.dtype)),
                (out_key, _dims(out_info.tensor_shape), as_np(out_info.dtype)))

    def _load_frozen_graph(self, tf, path, extra):
        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as f:
                graph_def.ParseFromString(f.read())
        except Exception as exc:  # noqa: BLE001 - protobuf DecodeError
            raise ModelError(f"{path} is not a frozen TensorFlow GraphDef: {exc}") from exc
        graph = tf.Graph()
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        input_name = extra.get("inputs") or self._frozen_input(graph, path)
        output_name = extra.get("outputs") or self._frozen_output(graph, path)
        try:
            x, y = graph.get_tensor_by_name(input_name), graph.get_tensor_by_name(output_name)
        except (KeyError, ValueError) as exc:
            raise ModelError(f"frozen graph {path}: {exc}") from exc
        session = tf.compat.v1.Session(graph=graph, config=self._session_config(tf))
        self._runner = _SessionRunner(session, x, y)
        self.loaded_with = "GraphDef"
        return ((x.name, _dims(x.shape), x.dtype.as_numpy_dtype), (y.name, _dims(y.shape), y.dtype.as_numpy_dtype))

    @staticmethod
    def _frozen_input(graph, path) -> str:
        placeholders = [op for op in graph.get_operations() if op.type == "Placeholder"]
        if len(placeholders) != 1:
            raise ModelError(f"frozen graph {path} has {len(placeholders)} placeholders; name the input with "
                             "backend option inputs (e.g. 'input_1:0')")
        return placeholders[0].outputs[0].name

    @staticmethod
    def _frozen_output(graph, path) -> str:
        consumed = {t.op.name for op in graph.get_operations() for t in op.inputs}
        ends = [op for op in graph.get_operations()
                if op.name not in consumed and op.outputs and op.type not in ("Const", "NoOp", "Placeholder")]
        if len(ends) != 1:
            raise ModelError(f"frozen graph {path} has {len(ends)} candidate outputs "
                             f"({', '.join(op.name for op in ends[:5])}); name one with backend option outputs")
        return ends[0].outputs[0].name

    def _load_keras(self, tf, path):
        try:
            model = tf.keras.models.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001
            reason = _keras_version_error(tf, path) or f"{type(exc).__name__}: {_first_line(exc)}"
            raise ModelError(f"Keras cannot load {path}: {reason}") from exc
        if len(model.inputs) != 1:
            raise ModelError(f"{path} has {len(model.inputs)} inputs; the tensorflow backend runs single-input models")
        x, y = model.inputs[0], model.outputs[0]

        @tf.function(reduce_retracing=True)
        def call(batch):
            return model(batch, training=False)

        self._model = model
        self._runner = _FunctionRunner(tf, lambda batch, training=False: call(batch), None, None, self._device)
        self.loaded_with = "tf.keras.models.load_model"
        return _keras_tensor_spec(tf, x, "input"), _keras_tensor_spec(tf, y, "output")

    @staticmethod
    def _single(mapping, what, path):
        items = sorted(mapping.items())
        if len(items) != 1:
            raise ModelError(f"{path} has {len(items)} {what}s ({', '.join(k for k, _ in items)}); "
                             "the tensorflow backend runs single-input models")
        return items

    def _convert_tf_trt(self, tf, path, extra) -> str:
        if not tf.sysconfig.get_build_info().get("is_tensorrt_build"):
            raise BackendUnavailable(
                f"option tf_trt needs TensorFlow built with TensorRT; TensorFlow {tf.__version__} here is not "
                "(install NVIDIA's TensorFlow container or a TF-TRT build)")
        if not self._gpus:
            raise BackendUnavailable("option tf_trt needs an NVIDIA GPU; TensorFlow sees none")
        from tensorflow.python.compiler.tensorrt import trt_convert as trt

        precision = self.options.precision or "fp32"
        mode = {"fp32": trt.TrtPrecisionMode.FP32, "fp16": trt.TrtPrecisionMode.FP16,
                "int8": trt.TrtPrecisionMode.INT8}[precision]
        calibration = self._tf_trt_calibration(tf, path, extra) if precision == "int8" else None
        out = extra.get("tf_trt_dir") or tempfile.mkdtemp(prefix="tf_trt_")
        converter = trt.TrtGraphConverterV2(
            input_saved_model_dir=path, input_saved_model_signature_key=extra.get("signature", "serving_default"),
            precision_mode=mode, use_calibration=calibration is not None)
        if calibration is not None:
            converter.convert(calibration_input_fn=calibration)
        else:
            converter.convert()
        converter.save(out)
        log.info("tensorflow: TF-TRT (%s) SavedModel written to %s", precision, out)
        self._applied = f"{precision} (TF-TRT precision mode {precision.upper()}"
        if calibration is not None:
            self._applied += f", calibrated by TF-TRT on {calibration.samples} samples"
        self._applied += ")"
        return out

    def _tf_trt_calibration(self, tf, path, extra):
        """TF-TRT's ``calibration_input_fn`` over the dataset's calibration samples made for the
        SavedModel's input (read by loading it once); it counts the samples it yields."""
        if self.options.calibration is None:
            raise ConfigError(f"precision int8 with TF-TRT needs calibration samples for {path}: "
                              "BackendOptions.calibration is unset (the harness sets it from the dataset)")
        spec_in, spec_out = self._load_saved_model(tf, path, extra)
        spec = self._model_info(spec_in, spec_out).input
        self.close_impl()
        batches = [np.ascontiguousarray(b, spec.dtype) for b in self.options.calibration(spec)]
        if not batches:
            raise ConfigError(f"precision int8 with TF-TRT got no calibration samples for {path}")

        def calibration_input_fn():
            for batch in batches:
                yield (tf.constant(batch),)

        calibration_input_fn.samples = sum(len(b) for b in batches)
        return calibration_input_fn

    def _model_info(self, spec_in, spec_out) -> ModelInfo:
        in_name, in_shape, in_dtype = spec_in
        out_name, out_shape, out_dtype = spec_out
        if in_shape is None or not in_shape or any(d < 0 for d in in_shape[1:]):
            raise ModelError(f"the model input '{in_name}' has shape {in_shape}; a fixed per-sample shape "
                             "(only the batch dimension unknown) is needed")
        batch = in_shape[0]
        self._fixed_batch = batch if batch > 0 else None
        max_batch = batch if batch > 0 else max(1, self.options.max_batch_size)
        sample = tuple(in_shape[1:])
        out_sample = tuple(out_shape[1:]) if out_shape else ()
        return ModelInfo(
            inputs=(TensorSpec(in_name, sample, in_dtype, guess_layout(sample)),),
            outputs=(TensorSpec(out_name, out_sample, out_dtype),),
            max_batch_size=max_batch,
            instances=max(1, self.options.instances or 1),
        )

    # --- predict --------------------------------------------------------------------------
    def predict_impl(self, batch, instance):
        n = len(batch)
        if self._fixed_batch and n < self._fixed_batch:  # fixed-batch graph: pad and cut
            padded = np.zeros((self._fixed_batch, *batch.shape[1:]), batch.dtype)
            padded[:n] = batch
            batch = padded
        try:
            out = self._runner(batch)
        except Exception as exc:  # noqa: BLE001 - TensorFlow's own error types
            raise BackendFailure(f"TensorFlow failed on a batch of {n}: {type(exc).__name__}: {exc}") from exc
        return np.asarray(out)[:n]

    def close_impl(self):
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def version(self):
        try:
            import tensorflow as tf

            return f"tensorflow {tf.__version__}"
        except ImportError:
            return "tensorflow (not installed)"

    def describe(self):
        out = super().describe()
        out["loader"] = self.loaded_with
        if self.options.extra.get("tf_trt"):
            out["tf_trt"] = True
        return out
