"""sut.user_conf: every user.conf line is a key LoadGen reads, for this run's model, in range."""

import pytest

from sut import user_conf
from sut.errors import ConfigError

NAMES = ("resnet50", "mobilenet")


@pytest.fixture
def conf(tmp_path):
    def write(*lines, raw=None):
        path = tmp_path / "user.conf"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text("\n".join(lines) + "\n")
        return str(path)
    return write


def test_good_file_gives_the_values_for_this_model_and_scenario_with_loadgen_precedence(conf):
    path = conf("# a comment",
                "",
                "*.*.min_duration = 5000",
                "resnet50.*.min_duration = 6000",
                "*.Offline.min_duration = 7000",
                "resnet50.Server.target_qps = 45.5",
                "mobilenet.Offline.target_qps = 123",
                "*.MultiStream.samples_per_query = 4",
                "resnet50.Server.target_latency = 30")
    assert user_conf.validate(path, NAMES, "Offline") == {"min_duration": 7000, "target_qps": 123.0}
    assert user_conf.validate(path, NAMES, "Server") == {"min_duration": 6000, "target_qps": 45.5,
                                                          "target_latency": 30.0}
    assert user_conf.validate(None, NAMES, "Offline") == {}


@pytest.mark.parametrize("line,match", [
    ("resnet50.Offline.target_qsp = 100", r"line 2: unknown LoadGen setting 'target_qsp' \(did you mean 'target_qps'\?\)"),
    ("resnet50.Offline.min_duraton = 100", r"did you mean 'min_duration'"),
    ("resnet.Offline.target_qps = 100", r"model 'resnet' is not this run's \(did you mean 'resnet50'\?\); use resnet50, mobilenet or \*"),
    ("bert.Offline.target_qps = 100", r"model 'bert' is not this run's"),
    ("resnet50.Ofline.target_qps = 100", r"unknown scenario 'Ofline' \(did you mean 'Offline'\?\)"),
    ("resnet50.Offline.target_latency = 10", r"reads 'target_latency' only for SingleStream, MultiStream, Server, not Offline"),
    ("resnet50.SingleStream.target_qps = 10", r"reads 'target_qps' only for Offline, Server"),
    ("resnet50.Offline.target_qps=100", r"spaces around '='"),
    ("resnet50.Offline.target_qps =100", r"spaces around '='"),
    ("resnet50.Offline.target_qps = 100 # fast", r"comment after the value"),
    ("resnet50.Offline.target_qps", r"is not 'model.Scenario.key = value'"),
    ("Offline.target_qps = 100", r"is not 'model.Scenario.key'"),
    ("resnet50.Offline.target_qps = -5", r"target_qps = -5: must be a number > 0"),
    ("resnet50.Offline.target_qps = nan", r"must be a number > 0"),
    ("resnet50.Offline.target_qps = 1_000", r"must be a number > 0"),
    ("resnet50.Server.target_latency = 0", r"must be a number > 0"),
    ("resnet50.Server.target_latency = 0.5", r"Server's target_latency as whole milliseconds"),
    ("resnet50.*.min_duration = -1", r"min_duration = '-1': must be a whole number >= 0"),
    ("resnet50.*.min_duration = 1.5", r"must be a whole number >= 0 \(milliseconds\)"),
    ("resnet50.*.min_query_count = 1e3", r"whole number"),
    ("*.MultiStream.samples_per_query = 0", r"samples_per_query = 0: must be a whole number >= 1"),
    ("*.Server.coalesce_queries = 2", r"must be 0 or 1"),
    ("*.SingleStream.target_latency_percentile = 190", r"<= 100"),
    ("resnet50.*.mode = 1", r"'mode' cannot be set here: the test mode is set by --mode"),
    ("*.*.qsl_rng_seed = 1", r"only from its built-in mlperf.conf"),
    ("*.Server.target_duration = 0", r"no target_duration key"),
    ("mobilenet.Offline.min_duration = 1000", r"line 2: sets resnet50.Offline.min_duration again \(first at line 1\)"),
])
def test_bad_lines_are_errors_naming_file_and_line(conf, line, match):
    path = conf("resnet50.Offline.min_duration = 1000", line)
    with pytest.raises(ConfigError, match=match) as info:
        user_conf.validate(path, NAMES, "Server")
    assert str(info.value).startswith(f"user.conf {path} line 2: ")
    assert "\n" not in str(info.value)


def test_star_target_latency_may_be_fractional_outside_server(conf):
    path = conf("*.*.target_latency = 0.5")
    assert user_conf.validate(path, NAMES, "SingleStream") == {"target_latency": 0.5}
    with pytest.raises(ConfigError, match="whole milliseconds"):
        user_conf.validate(path, NAMES, "Server")


def test_non_utf8_and_invisible_characters_are_named(conf):
    path = conf(raw=b"*.*.min_duration = 1000\nresnet50.Offline.target_qps = 1\xe9\n")
    with pytest.raises(ConfigError, match=r"line 2: byte 0xe9 is not UTF-8"):
        user_conf.validate(path, NAMES, "Offline")
    path = conf(raw="resnet50.Offline.target\u200b_qps = 1\n".encode())
    with pytest.raises(ConfigError, match=r"line 1: character '\\u200b'"):
        user_conf.validate(path, NAMES, "Offline")


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"user.conf not found: .*nope.conf \(--user-conf\)"):
        user_conf.validate(str(tmp_path / "nope.conf"), NAMES, "Offline")
    with pytest.raises(ConfigError, match=r"cannot read user.conf .*: Is a directory \(--user-conf\)"):
        user_conf.validate(str(tmp_path), NAMES, "Offline")


def test_for_loadgen_passes_the_file_itself_when_nothing_needs_rewriting(conf):
    path = conf("resnet50.Offline.target_qps = 10", "*.*.min_duration = 1000")
    with user_conf.for_loadgen(path, NAMES, "Offline") as given:
        assert given == path


def test_profile_model_name_and_bom_reach_loadgen(conf):
    """Real LoadGen: a mobilenet.* line and a file starting with a BOM are applied, not ignored."""
    lg = pytest.importorskip("mlperf_loadgen")
    path = conf(raw="\ufeffmobilenet.Offline.target_qps = 123\r\n*.*.min_duration = 4321\r\n".encode())
    with user_conf.for_loadgen(path, NAMES, "Offline") as given:
        assert given != path
        settings = lg.TestSettings()
        assert settings.FromConfig("", "resnet50", "Offline", 0) == 0
        assert settings.FromConfig(given, "resnet50", "Offline", 2) == 0
    assert settings.offline_expected_qps == pytest.approx(123.0)
    assert settings.min_duration_ms == 4321
    import os
    assert not os.path.exists(given)  # the temporary copy is gone


def test_every_key_is_one_loadgen_reads(conf):
    """Each accepted key changes a real TestSettings through FromConfig (so none is silently ignored)."""
    lg = pytest.importorskip("mlperf_loadgen")
    probes = {  # key -> (scenario, value, attribute, expected)
        "min_duration": ("Offline", "4321", "min_duration_ms", 4321),
        "max_duration": ("Offline", "4321", "max_duration_ms", 4321),
        "min_query_count": ("Server", "77", "min_query_count", 77),
        "max_query_count": ("Server", "77", "max_query_count", 77),
        "performance_sample_count_override": ("Offline", "77", "performance_sample_count_override", 77),
        "accuracy_sample_count_override": ("Offline", "77", "accuracy_sample_count_override", 77),
        "performance_issue_unique": ("Offline", "1", "performance_issue_unique", True),
        "performance_issue_same": ("Offline", "1", "performance_issue_same", True),
        "performance_issue_same_index": ("Offline", "3", "performance_issue_same_index", 3),
        "sample_concatenate_permutation": ("Offline", "1", "sample_concatenate_permutation", True),
        "print_timestamps": ("Offline", "1", "print_timestamps", True),
        "accuracy_log_rng_seed": ("Offline", "77", "accuracy_log_rng_seed", 77),
        "accuracy_log_sampling_target": ("Offline", "77", "accuracy_log_sampling_target", 77),
        "use_token_latencies": ("Server", "1", "use_token_latencies", True),
        "infer_token_latencies": ("Server", "1", "infer_token_latencies", True),
        "token_latency_scaling_factor": ("Server", "7", "token_latency_scaling_factor", 7),
        "target_latency_percentile": ("SingleStream", "95", "single_stream_target_latency_percentile", 0.95),
        "target_latency": ("SingleStream", "7", "single_stream_expected_latency_ns", 7_000_000),
        "samples_per_query": ("MultiStream", "4", "multi_stream_samples_per_query", 4),
        "target_qps": ("Offline", "123", "offline_expected_qps", 123.0),
        "coalesce_queries": ("Server", "1", "server_coalesce_queries", True),
        "max_async_queries": ("Server", "5", "server_max_async_queries", 5),
        "ttft_latency": ("Server", "9", "ttft_latency", 9_000_000),
        "tpot_latency": ("Server", "9", "tpot_latency", 9_000_000),
    }
    assert set(probes) == set(user_conf.KEYS)
    for key, (scenario, value, attr, expected) in probes.items():
        lines = [f"resnet50.{scenario}.{key} = {value}"]
        if key in ("ttft_latency", "tpot_latency"):
            lines.append(f"resnet50.{scenario}.use_token_latencies = 1")
        if key == "token_latency_scaling_factor":
            lines.append(f"resnet50.{scenario}.infer_token_latencies = 1")
        path = conf(*lines)
        user_conf.validate(path, NAMES, scenario)
        settings = lg.TestSettings()
        assert settings.FromConfig("", "resnet50", scenario, 0) == 0
        before = getattr(settings, attr)
        assert settings.FromConfig(path, "resnet50", scenario, 2) == 0
        assert getattr(settings, attr) == pytest.approx(expected), key
        assert before != getattr(settings, attr), key
