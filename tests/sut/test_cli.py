import logging

import pytest

from sut import cli
from sut.errors import BackendUnavailable


def test_installed_loadgen_version_is_read():
    version = cli.loadgen_version()
    assert version is None or (len(version) == 3 and version >= (6, 0, 0))


@pytest.mark.parametrize("installed", [(6, 0, 16), (6, 0, 17), (7, 0, 0), None])
def test_current_loadgen_passes_for_runs_and_submissions(monkeypatch, installed):
    monkeypatch.setattr(cli, "loadgen_version", lambda: installed)
    cli.require_loadgen()
    cli.require_loadgen(submission=True)


def test_old_loadgen_warns_for_a_run_and_refuses_a_submission(monkeypatch, caplog):
    monkeypatch.setattr(cli, "loadgen_version", lambda: (6, 0, 12))
    with caplog.at_level(logging.WARNING, logger="sut.cli"):
        cli.require_loadgen()
    assert "6.0.12 is older than 6.0.16" in caplog.text and "not to submit" in caplog.text
    with pytest.raises(BackendUnavailable) as err:
        cli.require_loadgen(submission=True)
    message = str(err.value)
    assert "6.0.12" in message and "6.0.16" in message and "pip install" in message and "\n" not in message
    assert err.value.exit_code == 5
