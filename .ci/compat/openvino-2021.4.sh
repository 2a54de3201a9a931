#!/usr/bin/env bash
# CI compatibility job: OpenVINO 2021.4.2 (the IECore API, the legacy path; its
# pip wheel carries the NCS2 / MYRIAD plugin) on Python 3.9, for real on the CPU.
# 50 s with the venv cached, 78 s building it (2-core CI machine, warm pip cache).
#
# Proves: tests/backends/test_openvino_legacy.py on the real 2021.4.2: the ONNX
# MobileNet on the CPU through the backend, fp16 on the CPU refused in one line
# (2021.4's CPU plugin refuses FP16 input), the shared IR (IR v11) as a one-line
# ModelError, MYRIAD's reason (no libusb / no stick) in one line, the reference
# figure, and that the fake 2021.4 module the MYRIAD tests use has no name the
# real module lacks and refuses what the real one refuses; then the accuracy
# figure: run.py --accuracy with the ONNX MobileNet 1.0 on imagenet-mini must
# print exactly what the independent benchmarks/openvino_reference_accuracy.py
# computes with the same runtime.
#
# openvino 2021.4.2 pins numpy<1.20, so the harness runs here on NumPy 1.19.
# The venv is cached under ${MLPERF_EDGE_CI_CACHE:-$HOME/.cache/mlperf-edge-ci},
# named after a hash of its requirements and Python. Fails when OpenVINO is not
# 2021.4.2, when any test was skipped (e.g. ../shared missing), or when a
# figure differs.
#
# Run alone:  bash .ci/compat/openvino-2021.4.sh
# Python: PYTHON=/path/to/python3.8..3.9 (2021.4.2 wheels: 3.6-3.9; the harness: 3.8+);
# default: pyenv's 3.9, else python3.9.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOB=openvino-2021.4
. .ci/compat/lib/job.sh

REQUIREMENTS=("openvino==2021.4.2" "numpy<1.20" "mlcommons-loadgen>=6.0" "pillow>=8" "tomli>=1.1" "pytest>=7")
TESTS=(tests/backends/test_openvino_legacy.py)
MODEL=../shared/models/mobilenet/mobilenet_v1_1.0_224_quant_qdq_nchw.onnx
DATA=../shared/data/imagenet-mini
# OpenVINO 2021.4.2, CPU; measured by the oracle: its int8 kernels on AVX512-VNNI compute one more
# image right (the oracle, which shares no harness code, agrees on each machine)
FIGURE="accuracy=78.077%, good=203, total=260"
if grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null; then FIGURE="accuracy=78.462%, good=204, total=260"; fi

ci_venv "$JOB" "$(ci_python 3.9 "3.8 3.9")" "${REQUIREMENTS[@]}"
"$PY" -c "import sys, openvino; from openvino.inference_engine import get_version; v = get_version(); print('ci $JOB: openvino', v); sys.exit(0 if v.startswith('2021.4.2-') and not hasattr(openvino, 'Core') else 'ci $JOB: error: openvino ' + v + ', expected 2021.4.2 (IECore only)')"
for path in "$MODEL" "$DATA"; do
    [ -e "$path" ] || ci_die "$path is missing (the shared models and data)"
done
ci_pytest "$JOB" all "${TESTS[@]}"

ci_accuracy "MobileNet 1.0 ONNX, OpenVINO 2021.4.2" "$FIGURE" "openvino 2021.4.2" \
    benchmarks/openvino_reference_accuracy.py "$MODEL" "$DATA" --profile mobilenet_openvino
ci_log "ok"
