"""``run.py`` with every sample's preprocessing slowed down, so the fault suite
can signal or kill a run while it preprocesses.

``python -m tests.reliability.slow_run [run.py options]``; ``PREPROCESS_S``
(environment) is the extra time per sample (default 0.05 s). Only the demo's
synthetic images are slowed; use ``--preprocess-workers 1`` (preprocessing in
the main process, where the patch applies).
"""

import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import datasets.synthetic as synthetic  # noqa: E402

_preprocessor = synthetic.SyntheticImages.preprocessor


def _slowed(self, spec):
    inner = _preprocessor(self, spec)
    delay = float(os.environ.get("PREPROCESS_S", "0.05"))

    def preprocess(source):
        time.sleep(delay)
        return inner(source)

    return preprocess


synthetic.SyntheticImages.preprocessor = _slowed

if __name__ == "__main__":
    sys.argv = [os.path.join(ROOT, "run.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
