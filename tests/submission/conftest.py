"""A quick KWS submission tree (open, Offline, with TEST01/TEST04), made once per session."""

import json

import pytest

import profiles
from tests.conftest import shared_path

USER_DESC = {"status": "available", "cooling": "passive", "host_memory_configuration": "test machine",
             "system_type_detail": "edge test system", "host_storage_type": "SSD", "host_storage_capacity": "1 TB",
             "host_networking": "1x Ethernet", "host_network_card_count": "1",
             "measurements": {"retraining": "No (test)"}}


def kws_config(tmp_path, **values):
    values = {"model": str(shared_path("models", "kws", "kws_ref_model.tflite")),
              "dataset_path": str(shared_path("data", "speech-commands-mini")),
              "output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "progress": False,
              "scenario": "Offline", **values}
    return profiles.resolve("kws_tflite", values)


def user_desc_file(tmp_path):
    path = tmp_path / "system.json"
    path.write_text(json.dumps(USER_DESC))
    return str(path)


@pytest.fixture(scope="session")
def kws_tree(tmp_path_factory):
    pytest.importorskip("mlperf_loadgen")
    from submission import run_submission

    tmp = tmp_path_factory.mktemp("kws_tree")
    return run_submission(kws_config(tmp), "TestOrg", "open", user_desc_file(tmp), quick=True,
                          with_compliance=True, command="python run.py --submission (test)", echo=lambda *a: None)


def demo_config(tmp_path, **values):
    """The demo (synthetic images, a model made on the spot) under the rules of ResNet50."""
    values = {"output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "progress": False, **values}
    return profiles.resolve("demo", values)


@pytest.fixture(scope="session")
def demo_tree(tmp_path_factory):
    """A quick open tree of the demo model (mapped to resnet) on a "datacenter,edge" system:
    Offline and Server, with TEST01/TEST04; its problems are only the quick ones."""
    pytest.importorskip("mlperf_loadgen")
    from submission import run_submission

    tmp = tmp_path_factory.mktemp("demo_tree")
    desc = tmp / "system.json"
    desc.write_text(json.dumps({**USER_DESC, "system_type": "datacenter,edge"}))
    return run_submission(demo_config(tmp), "TestOrg", "open", str(desc), quick=True, with_compliance=True,
                          scenarios=["Offline", "Server"], command="python run.py --submission (test)",
                          echo=lambda *a: None)
