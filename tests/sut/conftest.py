import mlperf_loadgen as lg
import pytest

from tests.sut.test_completion import Recorder


@pytest.fixture
def completions(monkeypatch) -> Recorder:
    """What LoadGen would be told (``lg.QuerySamplesComplete`` recorded)."""
    recorder = Recorder()
    monkeypatch.setattr(lg, "QuerySamplesComplete", recorder)
    return recorder
