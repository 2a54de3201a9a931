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
JOB=tensorflow-2.15
. .ci/compat/lib/job.sh

REQUIREMENTS=("tensorflow-cpu==2.15.*" "numpy<2" "mlcommons-loadgen>=6.0" "pillow>=10" "pytest>=7")
TESTS=(tests/backends/test_tensorflow.py)

ci_venv "$JOB" "$(ci_python 3.11 "3.9 3.10 3.11")" "${REQUIREMENTS[@]}"
TF_CPP_MIN_LOG_LEVEL=1 "$PY" -c "import sys, tensorflow as tf; v = tf.__version__; print('ci $JOB: tensorflow', v); sys.exit(0 if v.startswith('2.15.') else 'ci $JOB: error: tensorflow ' + v + ', expected 2.15.*')"
ci_pytest "$JOB" all "${TESTS[@]}"
ci_log "ok"
