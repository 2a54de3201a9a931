"""The MLPerf reference harness's command line, mapped onto ours.

Users arrive from ``vision/classification_and_detection/python/main.py`` in
mlcommons/inference and type its flags. This module makes ``run.py`` accept
them with the reference's meaning, or refuse them in one line (exit 2) when
this harness cannot give that meaning; it never lets argparse guess:

* :class:`Parser` turns off prefix matching (``--cache`` was taken as
  ``--cache-dir``), accepts ``_`` for ``-`` in every long option
  (``--user_conf``, ``--max_latency``) and prints a usage mistake as one
  ``error:`` line.
* :func:`add_options` adds the flags we did not have, under their own
  ``--help`` heading; flags we cannot honour are listed there too and stop
  the run with the reason and what to use instead.
* :func:`overrides` turns what was given into configuration values.

The full mapping is :data:`MAPPING` (also the README's table).
"""

from __future__ import annotations

import argparse
import os
import sys

from sut.errors import ConfigError

#: reference profile names (``--profile resnet50-tf``) -> ours
PROFILES = {
    "resnet50-tf": "resnet50_tf",
    "resnet50-onnxruntime": "resnet50_onnxruntime",
    "mobilenet-tf": "mobilenet_tf",
    "mobilenet-onnxruntime": "mobilenet_onnxruntime",
}
#: reference profiles for models or runtimes this harness does not run
PROFILES_UNSUPPORTED = ("defaults", "resnet50-pytorch", "resnet50-ncnn", "resnet50-tflite", "ssd-mobilenet-tf",
                        "ssd-mobilenet-pytorch", "ssd-mobilenet-onnxruntime", "ssd-resnet34-tf",
                        "ssd-resnet34-pytorch", "ssd-resnet34-onnxruntime", "ssd-resnet34-onnxruntime-tf",
                        "retinanet-pytorch", "retinanet-onnxruntime")
#: reference backend names -> ours
BACKENDS = {"tflite": "litert"}
BACKENDS_UNSUPPORTED = ("tvm", "pytorch", "pytorch-native", "ncnn")
#: reference dataset names -> (our dataset, our ImageNet preprocessing or None: the profile's)
DATASETS = {"imagenet": ("imagenet", None), "imagenet_mobilenet": ("imagenet", "mobilenet")}
DATASETS_UNSUPPORTED = ("imagenet_pytorch", "imagenet_tflite_tpu", "coco-300", "coco-300-pt",
                        "openimages-300-retinanet", "openimages-800-retinanet", "openimages-1200-retinanet",
                        "openimages-800-retinanet-onnx", "coco-1200", "coco-1200-onnx", "coco-1200-pt",
                        "coco-1200-tf")

#: reference flag -> (what it becomes here, how it differs); README table and tests
MAPPING = [
    ("--profile NAME", "--profile", "reference names resnet50-tf, resnet50-onnxruntime, mobilenet-tf, "
     "mobilenet-onnxruntime are our resnet50_tf, ...; the others (SSD, RetinaNet, PyTorch, ncnn, "
     "resnet50-tflite) are refused"),
    ("--model FILE", "--model", "same"),
    ("--dataset NAME", "--dataset", "imagenet_mobilenet = imagenet with MobileNet preprocessing; imagenet = "
     "imagenet with the profile's preprocessing (resnet50 profiles: the reference's); COCO, OpenImages, "
     "imagenet_pytorch, imagenet_tflite_tpu refused"),
    ("--dataset-path DIR", "--dataset-path", "same"),
    ("--dataset-list FILE", "dataset_options.val_map", "the val_map.txt to read (default DIR/val_map.txt)"),
    ("--data-format NCHW|NHWC", "(refused)", "the layout is read from the model's input"),
    ("--scenario S", "--scenario", "same"),
    ("--backend NAME", "--backend", "tflite = litert; onnxruntime, tensorflow, null same; tvm, pytorch, "
     "pytorch-native, ncnn refused"),
    ("--device D", "--device", "passed to the backend (e.g. CPU, GPU, usb:0)"),
    ("--inputs/--outputs NAMES", "--backend-option inputs=/outputs=", "one tensor name each (TensorFlow "
     "frozen graphs; other runtimes read them from the model)"),
    ("--model-name NAME", "mlperf_model", "the model name for mlperf.conf/user.conf keys (e.g. resnet50)"),
    ("--max-batchsize N", "--max-batchsize", "same"),
    ("--threads N", "--threads", "here: runtime threads per model instance; the reference's worker threads "
     "are our --instances"),
    ("--qps N", "--target-qps", "same: Server target QPS and Offline expected QPS"),
    ("--max-latency S", "--target-latency-ms", "seconds, as in the reference (0.015 = 15 ms): Server "
     "latency bound and MultiStream expected latency (also SingleStream's expected latency here)"),
    ("--time S", "--time", "same: LoadGen's min and max duration, in seconds"),
    ("--count N", "--count", "dataset items to use; the reference also fixes min/max query count to N: "
     "add --min-query-count N --max-query-count N for that"),
    ("--performance-sample-count N", "--performance-sample-count", "same"),
    ("--samples-per-query N", "--samples-per-query", "same (MultiStream)"),
    ("--accuracy", "--accuracy", "same"),
    ("--find-peak-performance", "--find-peak-performance", "a search over short LoadGen runs printing each "
     "step (Server: highest VALID target QPS; Offline: expected QPS for the asked duration)"),
    ("--user_conf FILE", "--user-conf", "same; optional here (the reference requires ./user.conf)"),
    ("--audit_conf FILE", "--audit-conf", "same: LoadGen reads this audit.config (compliance tests); "
     "default none (the reference reads ./audit.config when present)"),
    ("--output DIR", "--output", "results root: each run writes a new directory under it"),
    ("--cache 0|1", "--cache-dir none / default", "0: preprocess in memory; 1: use the cache"),
    ("--cache_dir DIR", "--cache-dir", "same"),
    ("--preprocessed_dir DIR", "--cache-dir", "where preprocessed samples are kept"),
    ("--use_preprocessed_dataset", "(refused)", "the cache is filled and reused automatically"),
    ("--debug", "--trace", "LoadGen's trace log"),
]


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching, with ``_`` accepted for ``-`` in long
    options, and usage mistakes as one ``error:`` line (exit 2)."""

    def __init__(self, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(**kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(normalize(args), namespace)

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def normalize(argv: list[str]) -> list[str]:
    """``--user_conf=x`` -> ``--user-conf=x``: underscores in long option names
    become hyphens (values and everything after ``--`` are left alone)."""
    out = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + argv[i:]
        if token.startswith("--") and len(token) > 2:
            name, eq, value = token.partition("=")
            token = "--" + name[2:].replace("_", "-") + eq + value
        out.append(token)
    return out


def profile_name(text: str) -> str:
    """A reference profile name as ours; other names and .toml paths unchanged."""
    if text in PROFILES:
        return PROFILES[text]
    if text in PROFILES_UNSUPPORTED:
        raise argparse.ArgumentTypeError(
            f"'{text}' is an MLPerf reference harness profile this harness has no equivalent for; "
            f"reference profiles accepted: {', '.join(PROFILES)} (see --list-profiles for ours)")
    return text


def backend_name(text: str) -> str:
    if text in BACKENDS:
        return BACKENDS[text]
    if text in BACKENDS_UNSUPPORTED or text.startswith("tvm"):
        raise argparse.ArgumentTypeError(
            f"the reference harness's backend '{text}' is not supported here; use litert (reference: tflite), "
            f"onnxruntime, openvino, tensorflow, tensorrt, edgetpu or null")
    return text


def dataset_name(text: str) -> str:
    if text in DATASETS_UNSUPPORTED:
        raise argparse.ArgumentTypeError(
            f"the reference harness's dataset '{text}' is not supported here; image classification on "
            f"ImageNet only: imagenet, imagenet_mobilenet (or speech_commands, synthetic)")
    return text


def zero_or_one(text: str) -> int:
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"--cache takes 0 or 1, got '{text}'")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds as a number, got '{text}'") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'")
    return value


def positive_qps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected queries per second as a number, got '{text}'") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive queries-per-second figure, got '{text}'")
    return value


class Refuse(argparse.Action):
    """A reference flag this harness cannot honour: one line saying why."""

    def __init__(self, option_strings, dest, reason: str = "", **kwargs):
        self.reason = reason
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} (MLPerf reference harness) is not supported: {self.reason}")


HEADING = "MLPerf reference harness options"
DESCRIPTION = """\
Flags of the MLPerf reference harness (vision/classification_and_detection/python/main.py)
that the options above do not already cover, with the reference's meaning. Every long option
may also be spelled with '_' for '-' (--user_conf, --max_latency, --cache_dir); --model,
--dataset-path, --scenario, --backend, --profile, --max-batchsize, --threads, --count,
--time, --accuracy, --output, --device, --samples-per-query and --performance-sample-count
are the options above (reference profile, backend and dataset names are accepted there).
Options are never abbreviated: --cache is not --cache-dir."""


def add_options(p: argparse.ArgumentParser) -> None:
    """The reference flags we did not already have, under their own heading."""
    ref = p.add_argument_group(HEADING, DESCRIPTION)
    ref.add_argument("--qps", type=positive_qps, help="target QPS: the same as --target-qps (Server target, "
                     "Offline expected)")
    ref.add_argument("--max-latency", type=seconds, metavar="SECONDS",
                     help="latency bound in SECONDS (0.015 = 15 ms): the same as --target-latency-ms 15")
    ref.add_argument("--find-peak-performance", action="store_true", default=None,
                     help="search for the highest VALID Server target QPS (Offline: the expected QPS that "
                          "makes the run last its minimum duration) over short LoadGen runs, printing each "
                          "step and a user.conf line to reuse")
    ref.add_argument("--model-name", dest="ref_model_name", metavar="NAME",
                     help="MLPerf model name for mlperf.conf / user.conf keys (e.g. resnet50)")
    ref.add_argument("--dataset-list", metavar="FILE",
                     help="the list of images and labels (val_map.txt format; default DATASET_PATH/val_map.txt)")
    ref.add_argument("--inputs", metavar="NAME", help="model input tensor name (TensorFlow frozen graphs)")
    ref.add_argument("--outputs", metavar="NAME", help="model output tensor name (TensorFlow frozen graphs)")
    ref.add_argument("--audit-conf", metavar="FILE",
                     help="LoadGen audit.config for a compliance test (default: none is read)")
    ref.add_argument("--cache", type=zero_or_one, metavar="0|1",
                     help="1: use the preprocessing cache (the default), 0: preprocess in memory")
    ref.add_argument("--preprocessed-dir", metavar="DIR", help="where preprocessed samples are kept "
                     "(the same as --cache-dir DIR)")
    ref.add_argument("--debug", action="store_true", default=None, help="write LoadGen's trace log "
                     "(the same as --trace)")
    ref.add_argument("--data-format", action=Refuse, metavar="NCHW|NHWC",
                     reason="the input layout is read from the model (NHWC or NCHW), so it cannot be chosen",
                     help="refused: the layout is read from the model")
    ref.add_argument("--use-preprocessed-dataset", action=Refuse, nargs=0,
                     reason="preprocessed samples are cached and reused automatically (see --cache-dir)",
                     help="refused: preprocessed samples are cached and reused automatically")


def overrides(args: argparse.Namespace, values: dict) -> dict:
    """Fold the reference flags in ``args`` into ``values`` (configuration
    overrides); a contradiction with our own option raises ConfigError."""
    def same(ours: str, flag: str, value) -> None:
        if values.get(ours) is not None and values[ours] != value:
            raise ConfigError(f"{flag} gives {ours.replace('_', '-')} {value:g}, but --{ours.replace('_', '-')} "
                              f"{values[ours]:g} is also given: pass one of them")
        values[ours] = value

    if getattr(args, "qps", None) is not None:
        same("target_qps", f"--qps {args.qps:g}", args.qps)
    if getattr(args, "max_latency", None) is not None:
        same("target_latency_ms", f"--max-latency {args.max_latency:g} (seconds)", args.max_latency * 1000)
    if getattr(args, "ref_model_name", None):
        values["mlperf_model"] = args.ref_model_name
    dataset_options = {}
    if values.get("dataset") in DATASETS:
        values["dataset"], preprocessing = DATASETS[values["dataset"]]
        if preprocessing:
            dataset_options["preprocessing"] = preprocessing
    if getattr(args, "dataset_list", None):
        if not os.path.isfile(args.dataset_list):
            raise ConfigError(f"--dataset-list {args.dataset_list}: no such file (a val_map.txt: "
                              f"'<image file> <label>' per line)")
        dataset_options["val_map"] = args.dataset_list
    if dataset_options:
        values["dataset_options"] = {**(values.get("dataset_options") or {}), **dataset_options}
    backend_options = {}
    for key in ("inputs", "outputs"):
        names = getattr(args, key, None)
        if names:
            if len([n for n in names.split(",") if n]) != 1:
                raise ConfigError(f"--{key} {names}: this harness runs models with one {key[:-1]}; "
                                  f"give one tensor name")
            backend_options[key] = names.strip(",")
    if backend_options:
        values["backend_options"] = {**(values.get("backend_options") or {}), **backend_options}
    if getattr(args, "audit_conf", None):
        if not os.path.isfile(args.audit_conf):
            raise ConfigError(f"--audit-conf {args.audit_conf}: no such file")
        values["audit_conf"] = os.path.abspath(args.audit_conf)
    cache_dir = getattr(args, "preprocessed_dir", None)
    if cache_dir:
        if values.get("cache_dir") not in (None, cache_dir):
            raise ConfigError(f"--preprocessed-dir {cache_dir} and --cache-dir {values['cache_dir']} "
                              f"name two caches: pass one of them")
        values["cache_dir"] = cache_dir
    if getattr(args, "cache", None) == 0:
        if values.get("cache_dir") not in (None, "none"):
            raise ConfigError(f"--cache 0 (no cache) contradicts --cache-dir {values['cache_dir']}: "
                              f"pass one of them")
        values["cache_dir"] = "none"
    if getattr(args, "debug", None):
        values["trace"] = True
    if getattr(args, "find_peak_performance", None):
        if values.get("mode") in ("accuracy", "both"):
            raise ConfigError("--find-peak-performance searches performance runs: drop --accuracy / --mode")
        values["mode"] = "performance"  # over a profile's "both"
        if getattr(args, "submission", None) or getattr(args, "division", None):
            raise ConfigError("--find-peak-performance and --submission are separate runs: find the peak "
                              "first, put its user.conf line in --user-conf, then run --submission")
    return values
