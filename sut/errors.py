"""One exception type per kind of user mistake or runtime failure: the ground floor.

Every error the harness raises on purpose derives from :class:`HarnessError`;
the CLI prints ``error: <message>`` on one line and exits with the error's
``exit_code``. Messages name the offending value and what would be accepted.

This module imports nothing (``sut/__init__.py`` is empty too), so every
package -- backends, datasets, profiles, submission, sut -- imports it at module
top without an import cycle or LoadGen (tests/sut/test_errors.py keeps it so).

Exit codes: 0 success; 1 an unexpected internal error (a bug, or an exception
from a runtime or the OS that no check caught: the CLI writes its traceback
to ``error.log``) -- and, for ``--check-submission`` / ``--submission``,
problems found in the tree; 2-7 the classes below; 128 + the signal number
(130 Ctrl-C, 143 SIGTERM) for :class:`Interrupted`.
"""

from __future__ import annotations

import signal

#: exit code of an exception that is not a HarnessError (a bug, or an uncaught runtime/OS error)
INTERNAL_ERROR = 1


class HarnessError(Exception):
    """Base class: an error the CLI reports in one line."""

    exit_code = 1


class ConfigError(HarnessError):
    """A bad option: unknown profile, unknown key, value of the wrong type."""

    exit_code = 2


class ModelError(HarnessError):
    """The model file is missing, unreadable, or does not fit the dataset."""

    exit_code = 3


class DatasetError(HarnessError):
    """The dataset is missing, incomplete, or holds a file we cannot read."""

    exit_code = 4


class BackendUnavailable(HarnessError):
    """The runtime or device the backend needs is not installed or not present."""

    exit_code = 5


class BackendFailure(HarnessError):
    """The backend raised or stopped answering while a test was running."""

    exit_code = 6


class ResultsError(HarnessError):
    """The results cannot be written whole: the output directory is not writable
    or full, or a file of the run (ours or LoadGen's log) is missing, cut short
    or holds no verdict."""

    exit_code = 7


class Interrupted(HarnessError):
    """Ctrl-C (SIGINT) or SIGTERM ended the run; exit 128 + the signal number."""

    exit_code = 128 + signal.SIGINT

    def __init__(self, signum: int = 2, message: str | None = None):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message or f"interrupted by {signal_name(signum)}")


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, ``SIGTERM`` for 15; the number itself when it names no signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def one_line(text: object) -> str:
    """``text`` on one line: line breaks and runs of blanks become one space
    (an error message must never spill onto a second line)."""
    return " ".join(str(text).split())
