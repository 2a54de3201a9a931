#!/usr/bin/env bash
# CI compatibility job: OpenVINO 2022.3 LTS (API 2.0 under openvino.runtime, the
# last release with the NCS2 / MYRIAD plugin) on Python 3.10, for real on the CPU.
# 42 s with the venv cached, 82 s building it (2-core CI machine, warm pip cache).
#
# Proves: the OpenVINO backend's tests on 2022.3 (tests/backends/test_openvino.py:
# the ONNX MobileNet, a quantised model built with 2022.3's own opset, MYRIAD
# faked at the Core boundary as 2022.3's plugin answers, the shared IR (written
# by a newer converter) as a one-line ModelError / exit 3, .tflite as a one-line
# error, `run.py --device MYRIAD` on the PyPI wheel (no MYRIAD plugin) as a
# one-line error / exit 5); then the accuracy figure: run.py --accuracy with the
# ONNX MobileNet 1.0 on imagenet-mini must print exactly what the independent
# benchmarks/openvino_reference_accuracy.py computes with the same runtime.
#
# The venv is cached under ${MLPERF_EDGE_CI_CACHE:-$HOME/.cache/mlperf-edge-ci},
# named after a hash of its requirements and Python. Fails when OpenVINO is not
# 2022.3, when any selected test was skipped (e.g. ../shared missing), or when
# a figure differs.
#
# Run alone:  bash .ci/compat/openvino-2022.3.sh
# Python: PYTHON=/path/to/python3.8..3.10 (2022.3 wheels: 3.7-3.10; the harness: 3.8+);
# default: pyenv's 3.10, else python3.10.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOB=openvino-2022.3
. .ci/compat/lib/job.sh

REQUIREMENTS=("openvino==2022.3.*" "mlcommons-loadgen>=6.0" "pillow>=8" "tomli>=1.1" "pytest>=7")
# tests that only apply to other releases (.tflite needs 2023.0+; figures measured with 2026.4) are deselected
TESTS=(tests/backends/test_openvino.py -k "not tflite_parameters and not int8_kws and not ir_and_tflite and not 2026")
MODEL=../shared/models/mobilenet/mobilenet_v1_1.0_224_quant_qdq_nchw.onnx
DATA=../shared/data/imagenet-mini
FIGURE="accuracy=77.692%, good=202, total=260"  # OpenVINO 2022.3.2, CPU; measured by the oracle

ci_venv "$JOB" "$(ci_python 3.10 "3.8 3.9 3.10")" "${REQUIREMENTS[@]}"
"$PY" -c "import sys, openvino.runtime as ov; v = ov.get_version(); print('ci $JOB: openvino', v); sys.exit(0 if v.startswith('2022.3.') else 'ci $JOB: error: openvino ' + v + ', expected 2022.3.*')"
for path in "$MODEL" "$DATA"; do
    [ -e "$path" ] || ci_die "$path is missing (the shared models and data)"
done
ci_pytest "$JOB" all "${TESTS[@]}"

ci_accuracy "MobileNet 1.0 ONNX, OpenVINO 2022.3" "$FIGURE" "openvino 2022.3" \
    benchmarks/openvino_reference_accuracy.py "$MODEL" "$DATA" --profile mobilenet_openvino
ci_log "ok"
