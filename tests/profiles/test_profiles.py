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
    ("count", 0, "--count / count must be a whole number >= 1, got 0"),
    ("scenario", "Batch", "unknown scenario 'Batch'"),
    ("quick", 1, "'quick' .* must be bool"),
    ("threads", -1, r"--threads / threads must be a whole number >= 0 and <= 1,024 \(0 = the runtime's default\), got -1"),
])
def test_bad_values_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        profiles.resolve(None, {key: value})


def test_unreadable_toml(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("backend = \n")
    with pytest.raises(ConfigError, match="cannot read profile"):
        profiles.load_profile(str(bad))


@pytest.mark.parametrize("key,value,match", [
    ("samples_per_query", 0, r"--samples-per-query / samples_per_query must be a whole number >= 1"),
    ("min_duration_ms", -1000, r"--min-duration \(or --time in seconds\) / min_duration_ms must be .*>= 0"),
    ("min_query_count", -1, r"--min-query-count .* >= 0 and <= 10,000,000, got -1"),
    ("min_query_count", 20_000_000, r"--min-query-count .* <= 10,000,000, got 20,000,000"),
    ("min_duration_ms", 10**303, r"--min-duration .* <= 604,800,000 \(milliseconds.*got 1e\+303"),
    ("max_query_count", -1, r"--max-query-count .* >= 0 and <= 2\^63-1 \(0 = no limit\)"),
    ("performance_sample_count", 0, r"--performance-sample-count .* >= 1"),
    ("target_qps", -5.0, r"--target-qps .* finite number > 0, got -5"),
    ("target_qps", float("inf"), r"--target-qps .* finite number > 0, got inf"),
    ("target_latency_ms", 0.0, r"--target-latency-ms .* > 0, got 0 "),
    ("target_latency_ms", float("nan"), r"--target-latency-ms .* got nan"),
    ("server_batch_timeout_ms", -1.0, r"--server-batch-timeout-ms .* >= 0"),
    ("threads", 5000, r"--threads .* <= 1,024"),
    ("instances", 1000, r"--instances .* >= 0 and <= 64"),
    ("max_batch_size", 0, r"--max-batchsize / max_batch_size .* >= 1"),
    ("preprocess_workers", -2, r"--preprocess-workers .* >= 0"),
    ("sample_timeout_s", float("nan"), r"--sample-timeout / sample_timeout_s must be a finite number > 0, got nan"),
    ("sample_timeout_s", float("inf"), r"--sample-timeout .* got inf"),
    ("sample_timeout_s", 0.0, r"--sample-timeout .* > 0, got 0 "),
    ("calibration_count", 0, r"calibration_count .* >= 1"),
])
def test_numeric_values_are_range_checked_with_the_range_in_the_message(key, value, match):
    with pytest.raises(ConfigError, match=match):
        profiles.resolve(None, {key: value})


def test_range_errors_name_the_layer(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('backend = "null"\ninstances = 100\n')
    with pytest.raises(ConfigError, match="from profile"):
        profiles.resolve(str(bad), {})


def test_every_numeric_field_has_a_range():
    numeric = {name for name, f in profiles.FIELDS.items() if any(t in str(f.type) for t in ("int", "float"))}
    assert numeric == set(profiles.RANGES)


def test_min_query_count_above_max_is_refused():
    with pytest.raises(ConfigError, match="--min-query-count 10 is above --max-query-count 5"):
        profiles.resolve(None, {"min_query_count": 10, "max_query_count": 5})
    profiles.resolve(None, {"min_query_count": 10, "max_query_count": 0})  # 0 = no limit


def test_edges_of_the_ranges_are_accepted():
    profiles.resolve(None, {"instances": 64, "threads": 0, "min_duration_ms": 0, "min_query_count": 0,
                            "server_batch_timeout_ms": 0.0, "sample_timeout_s": 0.001, "target_qps": 0.01})


@pytest.mark.parametrize("overrides,match", [
    ({"scenario": "Server", "target_qps": 1e8}, r"Server: LoadGen would generate 60,000,000,000 samples.*--target-qps"),
    ({"scenario": "Offline", "target_qps": 1e6, "min_duration_ms": 60000}, r"Offline: .*66,000,000 samples"),
    ({"scenario": "SingleStream", "target_latency_ms": 0.001}, r"SingleStream: .*--target-latency-ms"),
    ({"scenario": "MultiStream", "target_latency_ms": 1.0, "samples_per_query": 64}, r"MultiStream: .*samples-per-query"),
])
def test_query_budget_is_checked_up_front_when_the_rate_is_given(overrides, match):
    with pytest.raises(ConfigError, match=match):
        profiles.resolve("mobilenet_tflite", overrides)


def test_query_budget_passes_realistic_settings_and_leaves_estimates_to_the_build():
    profiles.resolve("mobilenet_tflite", {"scenario": "Offline", "target_qps": 1000.0})   # 660k samples
    profiles.resolve("mobilenet_tflite", {"scenario": "Server", "target_qps": 1e8, "quick": True})  # duration: settings.py's
    profiles.resolve("mobilenet_tflite", {"scenario": "Server"})  # rate from the warm-up
    profiles.resolve("mobilenet_tflite", {"scenario": "Server", "target_qps": 1e8, "mode": "accuracy"})


def test_user_conf_is_checked_when_the_configuration_is_resolved(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.Offline.target_qsp = 100\n")
    with pytest.raises(ConfigError, match=r"line 1: unknown LoadGen setting 'target_qsp' \(did you mean 'target_qps'"):
        profiles.resolve("mobilenet_tflite", {"user_conf": str(conf)})


def test_user_conf_duration_counts_in_the_query_budget(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.min_duration = 1000\n")
    cfg = {"scenario": "Offline", "target_qps": 1e6}
    with pytest.raises(ConfigError, match="Offline: LoadGen would generate"):
        profiles.resolve("mobilenet_tflite", cfg)       # mlperf.conf's 10 minutes
    profiles.resolve("mobilenet_tflite", {**cfg, "user_conf": str(conf)})   # 1.1 M samples
