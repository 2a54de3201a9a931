#!/usr/bin/env bash
# CI compatibility job: the TensorFlow backend's tests on tensorflow-cpu 2.15
# (Keras 2 under tf.keras, the last release before Keras 3), for real.
#
# The venv is cached under ${MLPERF_EDGE_CI_CACHE:-$HOME/.cache/mlperf-edge-ci}
# and named after a hash of its requirements and Python, so it is built once
# (~290 MB of wheels, 1.3 GB installed; the whole job took 1 min 47 s on the
# 2-core CI machine with an empty pip cache) and reused (then ~30 s, mostly
# the 13 tests). Fails when TensorFlow is not 2.15 or when any test was
# skipped (e.g. ../shared missing), so a green job means the tests really ran.
#
# Run alone:  bash .ci/compat/tensorflow-2.15.sh
# Python: PYTHON=/path/to/python3.9..3.11 (tensorflow-cpu 2.15 has wheels for
# 3.9-3.11); default: pyenv's 3.11, else python3.11.
set -euo pipefail
cd "$(dirname "$0")/../.."

REQUIREMENTS=("tensorflow-cpu==2.15.*" "numpy<2" "mlcommons-loadgen>=6.0" "pillow>=10" "pytest>=7")
TESTS=(tests/backends/test_tensorflow.py)

if [ -z "${PYTHON:-}" ]; then
    if command -v pyenv >/dev/null && [ -x "$(pyenv root)/versions/3.11.7/bin/python" ]; then
        PYTHON="$(pyenv root)/versions/3.11.7/bin/python"
    else
        PYTHON=python3.11
    fi
fi
PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$PY_VERSION" in
    3.9|3.10|3.11) ;;
    *) echo "ci tensorflow-2.15: error: Python $PY_VERSION at $PYTHON; tensorflow-cpu 2.15 needs 3.9-3.11 (set PYTHON=...)" >&2
       exit 2 ;;
esac

CACHE=${MLPERF_EDGE_CI_CACHE:-$HOME/.cache/mlperf-edge-ci}
HASH=$(printf '%s\n' "$PY_VERSION" "${REQUIREMENTS[@]}" | sha256sum | cut -c1-12)
VENV="$CACHE/venv-tensorflow-2.15-$HASH"
if [ ! -f "$VENV/.complete" ]; then
    echo "ci tensorflow-2.15: building $VENV (Python $PY_VERSION)"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${REQUIREMENTS[@]}"
    touch "$VENV/.complete"
else
    echo "ci tensorflow-2.15: reusing $VENV"
fi

TF_CPP_MIN_LOG_LEVEL=1 "$VENV/bin/python" -c "import sys, tensorflow as tf; v = tf.__version__; print('ci tensorflow-2.15: tensorflow', v); sys.exit(0 if v.startswith('2.15.') else 'ci tensorflow-2.15: error: tensorflow ' + v + ', expected 2.15.*')"

REPORT=$(mktemp -d)
trap 'rm -rf "$REPORT"' EXIT
"$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider --junitxml="$REPORT/junit.xml" "${TESTS[@]}"
"$VENV/bin/python" - "$REPORT/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

suites = ET.parse(sys.argv[1]).getroot().iter("testsuite")
tests = skipped = 0
for suite in suites:
    tests += int(suite.get("tests", 0))
    skipped += int(suite.get("skipped", 0))
if tests == 0 or skipped:
    sys.exit(f"ci tensorflow-2.15: error: {skipped} of {tests} tests skipped; this job must run them all")
print(f"ci tensorflow-2.15: {tests} tests ran, none skipped")
EOF
