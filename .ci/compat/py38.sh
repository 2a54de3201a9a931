#!/usr/bin/env bash
# CI compatibility job: Python 3.8 (JetPack 5's Python) with the oldest dependencies the
# floors allow there and the runtimes that still have 3.8 wheels.
#
# Proves: the whole core suite (tests/: every scenario, accuracy, submission trees, KWS, the
# demo, the CLI's one-line errors) on Python 3.8 with NumPy 1.21.6 (the oldest that
# onnxruntime 1.19 accepts; setup.py's floor 1.19.5 runs in py39-tflite-runtime), Pillow 9.0.0
# (the floor), mlcommons-loadgen 6.0.16 (the floor; no 3.8 wheel, so pip builds the sdist: the
# aarch64 path too), OpenCV 4.8 (the floor of the opencv extra: no IMREAD_COLOR_RGB),
# tflite-runtime 2.13 (LiteRT on 3.8: ai-edge-litert has no 3.8 wheel) and onnxruntime 1.19.2
# (the last for 3.8); setup.py's extras resolve to these on 3.8. Then MobileNet 1.0's accuracy:
# run.py --accuracy must print what the independent benchmarks/litert_reference_accuracy.py
# computes with the same runtime, and the recorded figure (tflite-runtime computes 203/260 where
# ai-edge-litert 2.3's XNNPACK kernels give 202/260: the figures are per runtime).
# Fails when a runtime is not the pinned one or a test needing one of them was skipped.
#
# Run alone:  bash .ci/compat/py38.sh        (PYTHON=/path/to/python3.8 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/../.."
JOB=py38
. .ci/compat/lib/job.sh

REQUIREMENTS=(".[litert,onnxruntime,demo,test]" "numpy==1.21.6" "pillow==9.0.0" "mlcommons-loadgen==6.0.16"
              "tomli==2.0.1" "tflite-runtime==2.13.0" "onnxruntime==1.19.2" "onnx==1.17.0"
              "opencv-python-headless==4.8.1.78" "onnxconverter-common==1.16.0" "pytest==8.3.5"
              "grpcio==1.70.0" "matplotlib==3.7.5")
MODEL=../shared/models/mobilenet/mobilenet_v1_1.0_224_quant.tflite
DATA=../shared/data/imagenet-mini
FIGURE="accuracy=78.077%, good=203, total=260"  # tflite-runtime 2.13.0, measured by the independent script

ci_venv "$JOB" "$(ci_python 3.8)" "${REQUIREMENTS[@]}"
"$PY" -c "
import sys, numpy, PIL, cv2, onnxruntime, tflite_runtime
from importlib.metadata import version
got = (sys.version_info[:2], numpy.__version__, PIL.__version__, version('mlcommons-loadgen'), tflite_runtime.__version__,
       onnxruntime.__version__, cv2.__version__)
print('ci $JOB: python %d.%d, numpy %s, pillow %s, loadgen %s, tflite-runtime %s, onnxruntime %s, opencv %s'
      % (got[0] + got[1:]))
sys.exit(0 if got == ((3, 8), '1.21.6', '9.0.0', '6.0.16', '2.13.0', '1.19.2', '4.8.1') else 'ci $JOB: error: not the pinned versions')
"
for path in "$MODEL" "$DATA"; do
    [ -e "$path" ] || ci_die "$path is missing (the shared models and data)"
done

# top1_matches: LiteRT without LoadGen, the same figures as test_reference_accuracy's run.py runs
ci_pytest "$JOB" "tflite_runtime,onnxruntime,mlperf_loadgen,cv2,the shared models" tests -k "not top1_matches"

ci_accuracy "MobileNet 1.0, tflite-runtime 2.13" "$FIGURE" "tflite-runtime 2.13.0" \
    benchmarks/litert_reference_accuracy.py "$MODEL" "$DATA" --profile mobilenet_tflite
ci_log "ok"
