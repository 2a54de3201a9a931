"""submission/tree.py: the scenario's user.conf reproduces the run's settings as LoadGen reads them."""

from __future__ import annotations

import pytest

from submission.tree import user_conf_text
from sut import user_conf

SERVER = {"requested_server_target_qps": 12.5, "requested_min_duration_ms": 600000,
          "requested_max_duration_ms": 0, "requested_min_query_count": 100}


def written(tmp_path, text: str) -> dict:
    """The values sut/user_conf.py (LoadGen's rules) reads back from ``text``."""
    path = tmp_path / "user.conf"
    path.write_text(text)
    return user_conf.validate(str(path), ("resnet50", "m"), "Server")


@pytest.mark.parametrize("ns, bound_ms, expected", [
    (15_500_000, None, 16),       # rounded up: the run met 15.5 ms, so it meets 16
    (15_000_000, 15.0, 15),       # already whole
    (14_200_000, 15.0, 15),
    (15_000_001, 15.0, 15),       # never above the benchmark's bound
    (300_000, None, 1),
])
def test_server_target_latency_is_whole_milliseconds(tmp_path, ns, bound_ms, expected):
    text = user_conf_text({**SERVER, "requested_server_target_latency_ns": ns}, "resnet50", "Server",
                          latency_bound_ms=bound_ms)
    assert f"resnet50.Server.target_latency = {expected}\n" in text
    assert ("# the run's bound" in text) == (ns != expected * 1_000_000)
    values = written(tmp_path, text)  # sut/user_conf.py refuses a fractional Server target_latency
    assert values["target_latency"] == expected and values["target_qps"] == 12.5


def test_single_stream_keeps_its_expected_latency(tmp_path):
    text = user_conf_text({"requested_single_stream_expected_latency_ns": 1_250_000}, "resnet50", "SingleStream")
    assert "resnet50.SingleStream.target_latency = 1.25\n" in text
