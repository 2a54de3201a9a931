"""``run.py`` with a fault the suite cannot cause from outside.

``python -m tests.reliability.patched_run [run.py options]``, with
(environment):

``PREPROCESS_S``  every demo sample's preprocessing takes this much longer,
                  so a run can be signalled or killed while it preprocesses
                  (use ``--preprocess-workers 1``: preprocessing then runs in
                  the main process, where the patch applies)
``BUG_AFTER_TEST`` a bug (KeyError) in the harness once a test has run: an
                  internal error inside a run, which has its directory
"""

import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def _slow_preprocessing(delay: float) -> None:
    import datasets.synthetic as synthetic

    original = synthetic.SyntheticImages.preprocessor

    def preprocessor(self, spec):
        inner = original(self, spec)

        def preprocess(source):
            time.sleep(delay)
            return inner(source)

        return preprocess

    synthetic.SyntheticImages.preprocessor = preprocessor


def _bug_after_test() -> None:
    from sut import session

    def verify(result):
        raise KeyError("broken")

    session.verify = verify


if __name__ == "__main__":
    if os.environ.get("PREPROCESS_S"):
        _slow_preprocessing(float(os.environ["PREPROCESS_S"]))
    if os.environ.get("BUG_AFTER_TEST"):
        _bug_after_test()
    sys.argv = [os.path.join(ROOT, "run.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
