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

REQUIREMENTS=("openvino==2021.4.2" "numpy<1.20" "mlcommons-loadgen>=6.0" "pillow>=8" "tomli>=1.1" "pytest>=7")
TESTS=(tests/backends/test_openvino_legacy.py)
MODEL=../shared/models/mobilenet/mobilenet_v1_1.0_224_quant_qdq_nchw.onnx
DATA=../shared/data/imagenet-mini
FIGURE="accuracy=78.077%, good=203, total=260"  # OpenVINO 2021.4.2, CPU; measured by the oracle

if [ -z "${PYTHON:-}" ]; then
    if command -v pyenv >/dev/null && [ -x "$(pyenv root)/versions/3.9.18/bin/python" ]; then
        PYTHON="$(pyenv root)/versions/3.9.18/bin/python"
    else
        PYTHON=python3.9
    fi
fi
PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$PY_VERSION" in
    3.8|3.9) ;;
    *) echo "ci $JOB: error: Python $PY_VERSION at $PYTHON; openvino 2021.4.2 needs 3.8-3.9 here (set PYTHON=...)" >&2
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

"$PY" -c "import sys, openvino; from openvino.inference_engine import get_version; v = get_version(); print('ci $JOB: openvino', v); sys.exit(0 if v.startswith('2021.4.2-') and not hasattr(openvino, 'Core') else 'ci $JOB: error: openvino ' + v + ', expected 2021.4.2 (IECore only)')"
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
grep -q '"runtime": "openvino 2021.4.2' "$REPORT"/results/*/config.json \
    || { echo "ci $JOB: error: config.json does not record the OpenVINO version" >&2; exit 1; }
echo "ci $JOB: ok"
