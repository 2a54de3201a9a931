import io
from importlib import metadata

import pytest

from sut import compat


def test_load_toml_parses_and_raises_its_error():
    assert compat.load_toml(io.BytesIO(b'a = 1\n[b]\nc = "x"\n')) == {"a": 1, "b": {"c": "x"}}
    with pytest.raises(compat.TOMLDecodeError):
        compat.load_toml(io.BytesIO(b"a = = 1\n"))


def test_entry_points_of_a_group_is_a_list_on_every_python():
    found = compat.entry_points("mlperf_edge.no_such_group")
    assert found == []
    assert all(isinstance(ep, metadata.EntryPoint) for ep in compat.entry_points("console_scripts"))


@pytest.mark.parametrize("text, prefix, expected", [("/DEVICE:GPU:0", "/DEVICE:", "GPU:0"), ("GPU:0", "/DEVICE:", "GPU:0"),
                                                    ("abc", "", "abc")])
def test_remove_prefix(text, prefix, expected):
    assert compat.remove_prefix(text, prefix) == expected


def test_remove_suffix():
    assert compat.remove_suffix("run.failed", ".failed") == "run"
    assert compat.remove_suffix("run", "") == "run"
