# Shared by the CI compatibility jobs .ci/compat/<job>.sh (sourced, not run).
#
# A job: a Python version, pinned real runtimes, the tests that prove them.
#   ci_python 3.8 [ALLOWED]             -> path of that interpreter (pyenv's, else python3.8 on PATH);
#                                          $PYTHON overrides it if its version is in ALLOWED (default 3.8)
#   ci_venv JOB PYTHON REQUIREMENT...   -> creates or reuses the job's venv, sets $VENV and $PY
#   ci_pytest JOB REQUIRED PYTEST-ARGS  -> runs pytest; a test skipped for a reason naming a word of
#                                          REQUIRED (comma list) fails, and so does a run of no test;
#                                          REQUIRED "all": any skipped test fails the job
# Venvs live in ${MLPERF_EDGE_CI_CACHE:-$HOME/.cache/mlperf-edge-ci}/venv-<job>-<hash>, the hash
# taken over the Python version, the requirements and setup.py, so CI runs on one machine share them
# and any change of pins or floors builds a new one. Each job gets its own preprocessing cache
# (MLPERF_EDGE_CACHE), so no job reads arrays another NumPy/Pillow/OpenCV made.
set -euo pipefail

ci_log() { echo "ci ${JOB:-compat}: $*"; }
ci_die() { echo "ci ${JOB:-compat}: error: $*" >&2; exit 1; }

ci_python() {
    local want=$1 allowed=${2:-$1} found=""
    if [ -n "${PYTHON:-}" ]; then
        found=$PYTHON
    elif command -v pyenv >/dev/null 2>&1; then
        found=$(ls -d "$(pyenv root)/versions/$want".*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    [ -n "$found" ] || found=$(command -v "python$want" || true)
    [ -n "$found" ] || ci_die "no Python $want (pyenv install $want, or set PYTHON=/path/to/python$want)"
    local got
    got=$("$found" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ " $allowed " == *" $got "* ]] || ci_die "$found is Python $got, this job needs one of: $allowed"
    echo "$found"
}

ci_venv() {
    local job=$1 python=$2
    shift 2
    # ci_python's error was printed inside "$(...)", which set -e does not stop on
    [ -n "$python" ] || exit 2
    local cache=${MLPERF_EDGE_CI_CACHE:-$HOME/.cache/mlperf-edge-ci} hash
    # setup.py counts only for a job that installs this checkout's extras ('.[...]')
    hash=$( { "$python" -c 'import sys; print(sys.version)'; printf '%s\n' "$@"
              if printf '%s\n' "$@" | grep -q '^\.'; then cat setup.py; fi; } | sha256sum | cut -c1-12)
    VENV="$cache/venv-$job-$hash"
    PY="$VENV/bin/python"
    if [ -f "$VENV/.complete" ]; then
        ci_log "reusing $VENV"
        return
    fi
    ci_log "building $VENV"
    rm -rf "$VENV"
    mkdir -p "$cache"
    "$python" -m venv "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check "$@"
    touch "$VENV/.complete"
}

ci_pytest() {
    local job=$1 required=$2
    shift 2
    local report
    report=$(mktemp -d)
    MLPERF_EDGE_CACHE="$report/preprocessing-cache" MLPERF_EDGE_REQUIRE="$([ "$required" = all ] || echo "$required")" \
        "$PY" -m pytest -q -rs -p no:cacheprovider --junitxml="$report/junit.xml" "$@"
    "$PY" - "$report/junit.xml" "$job" "$required" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET

report, job, required = sys.argv[1:4]
counts = {"tests": 0, "skipped": 0}
for suite in ET.parse(report).getroot().iter("testsuite"):
    for key in counts:
        counts[key] += int(suite.get(key, 0))
if counts["tests"] == 0:
    sys.exit("ci %s: error: no test ran" % job)
if required == "all":
    if counts["skipped"]:
        sys.exit("ci %s: error: %d of %d tests skipped; this job must run them all" % (job, counts["skipped"], counts["tests"]))
    print("ci %s: %d tests ran, none skipped" % (job, counts["tests"]))
else:
    print("ci %s: %d tests, %d skipped (none of them for a required runtime)" % (job, counts["tests"], counts["skipped"]))
PYEOF
    rm -rf "$report"
}

# ci_accuracy LABEL EXPECTED RUNTIME ORACLE MODEL DATA RUN.PY-ARGS...: run.py --accuracy on MODEL and
# DATA (fresh preprocessing cache), the independent script ORACLE on the same files, and the recorded
# EXPECTED line must agree, and the run's config.json must name RUNTIME (a prefix of its "runtime")
ci_accuracy() {
    local label=$1 expected=$2 runtime=$3 oracle=$4 model=$5 data=$6 out ours theirs recorded=yes
    shift 6
    out=$(mktemp -d)
    if ! "$PY" run.py "$@" --model "$model" --dataset-path "$data" --accuracy --no-progress \
            --output "$out/results" --cache-dir "$out/cache" > "$out/run.txt"; then
        rm -rf "$out"
        ci_die "$label: run.py --accuracy failed"
    fi
    ours=$(sed -n 's/^accuracy  : //p' "$out/run.txt")
    grep -q "\"runtime\": \"$runtime" "$out"/results/*/config.json || recorded=no
    rm -rf "$out"
    theirs=$("$PY" "$oracle" --model "$model" --data "$data" | tail -n 1)
    ci_same_figure "$JOB" "$label" "$expected" "$ours" "$theirs"
    [ "$recorded" = yes ] || ci_die "$label: config.json does not record the runtime as $runtime"
}

# ci_same_figure JOB LABEL EXPECTED OURS ORACLE: the harness, the independent script and the record agree
ci_same_figure() {
    local job=$1 label=$2 expected=$3 ours=$4 oracle=$5
    ci_log "$label: run.py: $ours; independent script: $oracle; recorded: $expected"
    [ "$ours" = "$oracle" ] && [ "$ours" = "$expected" ] \
        || ci_die "$label: the accuracy figures differ (a bug in the harness, or a new runtime figure to record)"
}
