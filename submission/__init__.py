"""Submission trees the official MLPerf Inference checker (v6.1) accepts.

- :func:`run_submission` (``submission.run``): every run a submission needs,
  compliance verification, the tree, our own check. Imports LoadGen when called.
- :func:`check_tree` (``submission.validate``): every problem in a tree, as a list.
- ``submission.system_desc``: the system description, detected and completed.
- ``submission.compliance``: TEST01/TEST04 audit.config and verification.
- ``submission.truncate``: accuracy-log truncation and its hash line.
- ``submission.tree``: the tree layout.
"""

from __future__ import annotations

__all__ = ["run_submission", "check_tree"]


def run_submission(*args, **kwargs):
    from submission.run import run_submission as run

    return run(*args, **kwargs)


def check_tree(root):
    from submission.validate import check_tree as check

    return check(root)
