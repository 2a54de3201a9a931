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

REQUIREMENTS=("openvino==2022.3.*" "mlcommons-loadgen>=6.0" "pillow>=8" "tomli>=1.1" "pytest>=7")
# tests that only apply to other releases (.tflite needs 2023.0+; figures measured with 2026.4) are deselected
TESTS=(tests/backends/test_openvino.py -k "not tflite_parameters and not int8_kws and not ir_and_tflite and not 2026")
MODEL=../shared/models/mobilenet/mobilenet_v1_1.0_224_quant_qdq_nchw.onnx
DATA=../shared/data/imagenet-mini
FIGURE="accuracy=77.692%, good=202, total=260"  # OpenVINO 2022.3.2, CPU; measured by the oracle

if [ -z "${PYTHON:-}" ]; then
    if command -v pyenv >/dev/null && [ -x "$(pyenv root)/versions/3.10.13/bin/python" ]; then
        PYTHON="$(pyenv root)/versions/3.10.13/bin/python"
    else
        PYTHON=python3.10
    fi
fi
PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$PY_VERSION" in
    3.8|3.9|3.10) ;;
    *) echo "ci $JOB: error: Python $PY_VERSION at $PYTHON; openvino 2022.3 needs 3.8-3.10 here (set PYTHON=...)" >&2
       exit 2 ;;
esac

CACHE=${MLPERF_EDGE_CI_CACHE:-$HOME/.cache/mlperf-edge-ci}
HASH=$(printf '%s\n' "$PY_VERSION" "${REQUIREMENTS[@]}" | sha256sum | cut -c1-12)
VENV="$CACHE/venv-$JOB-$HASH"
if [ ! -f "$VENV/.complete" ]; then
    echo "ci $JOB: building $VENV (Python $PY_VERSION)"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${REQUIREMENTS[@]}"
    touch "$VENV/.complete"
else
    echo "ci $JOB: reusing $VENV"
fi
PY="$VENV/bin/python"

"$PY" -c "import sys, openvino.runtime as ov; v = ov.get_version(); print('ci $JOB: openvino', v); sys.exit(0 if v.startswith('2022.3.') else 'ci $JOB: error: openvino ' + v + ', expected 2022.3.*')"
for path in "$MODEL" "$DATA"; do
    [ -e "$path" ] || { echo "ci $JOB: error: $path is missing (the shared models and data)" >&2; exit 1; }
done

REPORT=$(mktemp -d)
trap 'rm -rf "$REPORT"' EXIT
"$PY" -m pytest -q -rs -p no:cacheprovider --junitxml="$REPORT/junit.xml" "${TESTS[@]}"
"$PY" - "$REPORT/junit.xml" "$JOB" <<'EOF'
import sys
import xml.etree.ElementTree as ET

tests = skipped = 0
for suite in ET.parse(sys.argv[1]).getroot().iter("testsuite"):
    tests += int(suite.get("tests", 0))
    skipped += int(suite.get("skipped", 0))
if tests == 0 or skipped:
    sys.exit(f"ci {sys.argv[2]}: error: {skipped} of {tests} tests skipped; this job must run them all")
print(f"ci {sys.argv[2]}: {tests} tests ran, none skipped")
EOF

# the accuracy figure: the harness (LoadGen, fresh preprocessing cache) and the independent oracle
"$PY" run.py --profile mobilenet_openvino --model "$MODEL" --dataset-path "$DATA" --accuracy --no-progress \
    --output "$REPORT/results" --cache-dir "$REPORT/cache" > "$REPORT/run.txt"
OURS=$(sed -n 's/^accuracy  : //p' "$REPORT/run.txt")
ORACLE=$("$PY" benchmarks/openvino_reference_accuracy.py --model "$MODEL" --data "$DATA" | tail -n 1)
echo "ci $JOB: run.py: $OURS; oracle: $ORACLE; recorded: $FIGURE"
if [ "$OURS" != "$ORACLE" ] || [ "$OURS" != "$FIGURE" ]; then
    echo "ci $JOB: error: the accuracy figures differ (a bug in the harness or the oracle)" >&2
    exit 1
fi
grep -q '"runtime": "openvino 2022.3' "$REPORT"/results/*/config.json \
    || { echo "ci $JOB: error: config.json does not record the OpenVINO version" >&2; exit 1; }
echo "ci $JOB: ok"
