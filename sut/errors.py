"""One exception type per kind of user mistake or runtime failure: the ground floor.

Every error the harness raises on purpose derives from :class:`HarnessError`;
the CLI prints ``error: <message>`` on one line and exits with the error's
``exit_code``. Messages name the offending value and what would be accepted.

This module imports nothing (``sut/__init__.py`` is empty too), so every
package -- backends, datasets, profiles, submission, sut -- imports it at module
top without an import cycle or LoadGen (tests/sut/test_errors.py keeps it so).
"""

import signal


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
    """The output directory cannot be written without losing earlier results."""

    exit_code = 7


class Interrupted(HarnessError):
    """Ctrl-C (SIGINT) or SIGTERM ended the run; exit 128 + the signal number."""

    def __init__(self, signum: int = 2, message: str | None = None):
        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name if signum in {s.value for s in signal.Signals} else str(signum)
        super().__init__(message or f"interrupted by {name}")
