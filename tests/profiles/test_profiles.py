import pytest

import profiles
from sut.errors import ConfigError


def test_every_profile_loads_and_validates():
    names = profiles.available()
    assert {"demo", "mobilenet_tflite", "mobilenet_onnxruntime", "resnet50_onnxruntime"} <= set(names)
    for name in names:
        cfg = profiles.resolve(name, {})
        assert cfg.profile == name
        assert cfg.backend and cfg.dataset


def test_layers_merge_defaults_profile_command_line():
    cfg = profiles.resolve("mobilenet_tflite", {"scenario": "Offline", "count": 10, "model": None})
    assert cfg.backend == "litert"            # from the profile
    assert cfg.scenario == "Offline"          # from the command line
    assert cfg.count == 10
    assert cfg.sample_timeout_s == 60.0       # default
    assert cfg.dataset_options == {"preprocessing": "mobilenet"}


def test_tables_merge_key_by_key():
    cfg = profiles.resolve("mobilenet_tflite", {"dataset_options": {"val_map": "x.txt"}})
    assert cfg.dataset_options == {"preprocessing": "mobilenet", "val_map": "x.txt"}


def test_unknown_profile_lists_choices():
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*mobilenet_tflite"):
        profiles.resolve("nope", {})


def test_unknown_key_in_profile_file_is_rejected(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('backend = "null"\nbatchsize = 4\n')
    with pytest.raises(ConfigError, match="unknown key 'batchsize' in profile.*accepted keys"):
        profiles.resolve(str(bad), {})


@pytest.mark.parametrize("key,value,match", [
    ("count", "ten", "'count' .* must be int"),
    ("count", 0, "'count' must be at least 1"),
    ("scenario", "Batch", "unknown scenario 'Batch'"),
    ("quick", 1, "'quick' .* must be bool"),
    ("threads", -1, "'threads' must be 0"),
])
def test_bad_values_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        profiles.resolve(None, {key: value})


def test_unreadable_toml(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("backend = \n")
    with pytest.raises(ConfigError, match="cannot read profile"):
        profiles.load_profile(str(bad))
