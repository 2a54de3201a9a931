#!/usr/bin/env bash
# CI compatibility job: Python 3.9 (Raspberry Pi OS Bullseye's) with tflite-runtime 2.7.0 (the
# oldest on PyPI; Coral's 2.5 wheels are not there) and the floors: NumPy 1.19.5, Pillow 9.0.0,
# mlcommons-loadgen 6.0.16, no OpenCV (Pillow + NumPy preprocessing).
#
# Proves: the LiteRT backend on tflite-runtime 2.7 (tests/backends/test_litert.py,
# test_tflite_model.py), the Edge TPU backend's missing-runtime error for real, as one line from
# run.py (test_edgetpu.py, tests/test_run.py), the preprocessing and the KWS front end on NumPy
# 1.19 (tests/datasets/), and LiteRT accuracy through run.py and the real LoadGen for every shared
# .tflite model (tests/test_reference_accuracy.py, figures of tflite-runtime 2.7; the scenarios
# run on tflite-runtime in py38); then run.py --accuracy equals the independent
# benchmarks/litert_reference_accuracy.py for MobileNet 1.0. Fails when tflite-runtime is not
# 2.7.0 or a LiteRT test was skipped.
#
# Run alone:  bash .ci/compat/py39-tflite-runtime.sh   (PYTHON=/path/to/python3.9 to choose)
set -euo pipefail
cd "$(dirname "$0")/../.."
JOB=py39-tflite-runtime
. .ci/compat/lib/job.sh

REQUIREMENTS=(".[tflite-runtime]" "tflite-runtime==2.7.0" "numpy==1.19.5" "pillow==9.0.0"
              "mlcommons-loadgen==6.0.16" "tomli==2.0.1" "pytest==8.3.5")
DATA=../shared/data/imagenet-mini
MODELS=(mobilenet_v1_1.0_224_quant.tflite)
FIGURES=("accuracy=78.077%, good=203, total=260")  # tflite-runtime 2.7.0, measured by the independent script

ci_venv "$JOB" "$(ci_python 3.9)" "${REQUIREMENTS[@]}"
"$PY" -c "
import sys, numpy, PIL, tflite_runtime
from importlib.metadata import version
got = (sys.version_info[:2], tflite_runtime.__version__, numpy.__version__, PIL.__version__, version('mlcommons-loadgen'))
print('ci $JOB: python %d.%d, tflite-runtime %s, numpy %s, pillow %s, loadgen %s' % (got[0] + got[1:]))
try:
    import ai_edge_litert
    sys.exit('ci $JOB: error: ai_edge_litert is installed: the backend would not use tflite_runtime')
except ImportError:
    pass
sys.exit(0 if got == ((3, 9), '2.7.0', '1.19.5', '9.0.0', '6.0.16') else 'ci $JOB: error: not the pinned versions')
"
[ -e "$DATA" ] || ci_die "$DATA is missing (the shared models and data)"

ci_pytest "$JOB" "tflite_runtime,ai_edge_litert.interpreter,mlperf_loadgen,the shared models" \
    tests/backends/test_litert.py tests/backends/test_edgetpu.py tests/backends/test_tflite_model.py \
    tests/datasets tests/test_reference_accuracy.py tests/test_run.py::test_edgetpu_without_its_runtime_is_one_line \
    tests/test_run.py::test_python_older_than_3_8_is_one_line tests/test_run.py::test_missing_loadgen_says_how_to_install_it \
    -k "not openvino and not onnxruntime and not kws_tf- and not schema and not every_scenario and not top1_matches"

for i in "${!MODELS[@]}"; do
    ci_accuracy "${MODELS[$i]}, tflite-runtime 2.7.0" "${FIGURES[$i]}" "tflite-runtime 2.7.0" \
        benchmarks/litert_reference_accuracy.py "../shared/models/mobilenet/${MODELS[$i]}" "$DATA" --profile mobilenet_tflite
done
ci_log "ok"
