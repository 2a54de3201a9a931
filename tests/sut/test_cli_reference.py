"""The MLPerf reference harness's flags on our command line (parse level, no runs)."""

from __future__ import annotations

import pytest

import profiles
from sut import cli, cli_reference
from sut.errors import ConfigError

#: every flag of vision/classification_and_detection/python/main.py (mlcommons/inference), with a value
REFERENCE_FLAGS = [
    ["--dataset", "imagenet_mobilenet"], ["--dataset-path", "d"], ["--dataset-list", None],
    ["--data-format", "NHWC"], ["--profile", "mobilenet-onnxruntime"], ["--scenario", "Offline"],
    ["--max-batchsize", "4"], ["--model", "m.onnx"], ["--output", "out"], ["--inputs", "input:0"],
    ["--outputs", "out:0"], ["--backend", "onnxruntime"], ["--device", "CPU"], ["--model-name", "resnet50"],
    ["--threads", "2"], ["--qps", "100"], ["--cache", "1"], ["--cache_dir", "c"], ["--preprocessed_dir", "p"],
    ["--use_preprocessed_dataset"], ["--accuracy"], ["--find-peak-performance"], ["--debug"],
    ["--user_conf", None], ["--audit_conf", None], ["--time", "10"], ["--count", "5"],
    ["--performance-sample-count", "64"], ["--max-latency", "0.015"], ["--samples-per-query", "8"],
]
REFUSED = {"--data-format", "--use_preprocessed_dataset"}


def parse(*argv):
    return cli.parser().parse_args(list(argv))


def values(*argv):
    return cli.overrides(parse(*argv))


def usage_error(capsys, *argv) -> str:
    """The one stderr line of a parse error (exit status 2)."""
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a.jpg 1\n")
    return str(path)


@pytest.mark.parametrize("flag", REFERENCE_FLAGS, ids=lambda f: f[0])
def test_every_reference_flag_is_understood_or_refused_in_one_line(capsys, flag, a_file):
    argv = [flag[0]] + ([] if len(flag) == 1 else [flag[1] or a_file])
    if flag[0] in REFUSED:
        err = usage_error(capsys, *argv)
        assert "not supported" in err and flag[0].replace("_", "-") in err.replace("_", "-")
    else:
        values(*argv)  # parses and maps without error
        assert capsys.readouterr().err == ""


def test_abbreviations_are_off(capsys):
    args = parse("--cache", "1")
    assert args.cache == 1 and args.cache_dir is None  # was taken as --cache-dir 1
    err = usage_error(capsys, "--cache-d", "x")
    assert "unrecognized arguments: --cache-d x" in err
    usage_error(capsys, "--targ", "5")


@pytest.mark.parametrize("argv, key, expected", [
    (["--user_conf", "u.conf"], "user_conf", "u.conf"),
    (["--user-conf", "u.conf"], "user_conf", "u.conf"),
    (["--cache_dir", "c"], "cache_dir", "c"),
    (["--dataset_path", "d"], "dataset_path", "d"),
    (["--max_batchsize", "4"], "max_batch_size", 4),
    (["--samples_per_query", "12"], "samples_per_query", 12),
    (["--performance_sample_count=64"], "performance_sample_count", 64),
    (["--target_qps", "5"], "target_qps", 5.0),
    (["--model", "my_model_v1.tflite"], "model", "my_model_v1.tflite"),
])
def test_underscore_and_hyphen_spellings_mean_the_same(argv, key, expected):
    assert values(*argv)[key] == expected


def test_values_and_arguments_after_double_dash_keep_their_underscores():
    assert cli_reference.normalize(["--a_b=c_d", "x_y", "--", "--e_f"]) == ["--a-b=c_d", "x_y", "--", "--e_f"]


def test_qps_is_target_qps_and_max_latency_is_seconds():
    got = values("--qps", "250", "--max-latency", "0.015")
    assert got["target_qps"] == 250.0
    assert got["target_latency_ms"] == pytest.approx(15.0)
    assert values("--qps", "250", "--target-qps", "250")["target_qps"] == 250.0


@pytest.mark.parametrize("argv, match", [
    (["--qps", "250", "--target-qps", "100"], "--qps 250 .* --target-qps 100"),
    (["--max-latency", "0.1", "--target-latency-ms", "15"], "--max-latency 0.1 .* --target-latency-ms 15"),
    (["--cache", "0", "--cache-dir", "c"], "--cache 0"),
    (["--preprocessed_dir", "p", "--cache-dir", "c"], "--preprocessed-dir p and --cache-dir c"),
    (["--inputs", "a:0,b:0"], "one input"),
    (["--dataset-list", "/no/such/list.txt"], "--dataset-list /no/such/list.txt: no such file"),
    (["--audit_conf", "/no/such/audit.config"], "--audit-conf /no/such/audit.config: no such file"),
    (["--find-peak-performance", "--accuracy"], "drop --accuracy"),
    (["--find-peak-performance", "--submission", "open"], "--submission"),
])
def test_contradictions_and_missing_files_are_config_errors(argv, match):
    with pytest.raises(ConfigError, match=match) as err:
        values(*argv)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


@pytest.mark.parametrize("argv, match", [
    (["--max-latency", "-1"], "positive number of seconds"),
    (["--max-latency", "nan"], "positive number of seconds"),
    (["--qps", "0"], "positive"),
    (["--cache", "2"], "--cache takes 0 or 1"),
    (["--profile", "ssd-mobilenet-tf"], "reference harness profile"),
    (["--backend", "pytorch-native"], "backend 'pytorch-native' is not supported"),
    (["--backend", "tvm-onnx"], "backend 'tvm-onnx' is not supported"),
    (["--dataset", "coco-300"], "dataset 'coco-300' is not supported"),
    (["--data_format", "NCHW"], "read from the model"),
])
def test_what_cannot_be_honoured_is_one_line(capsys, argv, match):
    import re
    assert re.search(match, usage_error(capsys, *argv))


def test_reference_names_map_onto_ours():
    assert parse("--profile", "resnet50-tf").profile == "resnet50_tf"
    assert parse("--profile", "mobilenet_tflite").profile == "mobilenet_tflite"
    assert set(cli_reference.PROFILES.values()) <= set(profiles.available())
    assert values("--backend", "tflite")["backend"] == "litert"
    got = values("--dataset", "imagenet_mobilenet")
    assert got["dataset"] == "imagenet" and got["dataset_options"] == {"preprocessing": "mobilenet"}
    assert values("--dataset", "imagenet")["dataset"] == "imagenet"


def test_the_rest_of_the_mapping(a_file):
    got = values("--model-name", "mobilenet", "--dataset-list", a_file, "--inputs", "in:0", "--outputs", "out:0",
                 "--audit_conf", a_file, "--cache", "0", "--debug")
    assert got["mlperf_model"] == "mobilenet"
    assert got["dataset_options"] == {"val_map": a_file}
    assert got["backend_options"] == {"inputs": "in:0", "outputs": "out:0"}
    assert got["audit_conf"] == a_file and got["cache_dir"] == "none" and got["trace"] is True
    assert values("--preprocessed_dir", "p")["cache_dir"] == "p"
    assert values("--cache", "1")["cache_dir"] is None
    assert parse("--find-peak-performance").find_peak_performance is True


def test_a_reference_command_line_resolves(a_file, tmp_path):
    user_conf = tmp_path / "user.conf"
    user_conf.write_text("resnet50.Server.target_qps = 100\n")
    args = parse("--profile", "mobilenet-onnxruntime", "--model", "m.onnx", "--dataset-path", "d",
                 "--scenario", "Server", "--qps", "100", "--max-latency", "0.05", "--user_conf", str(user_conf),
                 "--max-batchsize", "4", "--dataset", "imagenet_mobilenet", "--dataset-list", a_file,
                 "--model-name", "resnet50", "--backend-option", "providers=[\"CPUExecutionProvider\"]")
    cfg = profiles.resolve(args.profile, cli.overrides(args))
    assert (cfg.profile, cfg.backend, cfg.scenario) == ("mobilenet_onnxruntime", "onnxruntime", "Server")
    assert (cfg.target_qps, cfg.target_latency_ms, cfg.max_batch_size) == (100.0, 50.0, 4)
    assert cfg.dataset_options == {"preprocessing": "mobilenet", "val_map": a_file}
    assert cfg.backend_options == {"providers": ["CPUExecutionProvider"]}
    assert cfg.user_conf == str(user_conf) and cfg.mlperf_model == "resnet50"


def test_help_lists_the_reference_options_under_their_heading():
    text = cli.parser().format_help()
    section = text.split(cli_reference.HEADING + ":", 1)[1]
    for flag in ("--qps", "--max-latency", "--find-peak-performance", "--model-name", "--dataset-list",
                 "--inputs", "--outputs", "--audit-conf", "--cache ", "--debug", "--data-format",
                 "--user_conf"):
        assert flag in section, flag


def test_the_mapping_table_covers_every_reference_flag():
    listed = {flag.replace("_", "-") for row in cli_reference.MAPPING for flag in row[0].split()[0].split("/")}
    assert {f[0].replace("_", "-") for f in REFERENCE_FLAGS} <= listed
