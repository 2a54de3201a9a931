import json

import pytest

from submission import system_desc
from sut.errors import ConfigError

CPUINFO = "".join(f"processor\t: {i}\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t\t: {i // 2}\n"
                  f"cpu MHz\t\t: 2400.000\n\n" for i in range(4))
USER = {"status": "available", "cooling": "passive heatsink", "host_memory_configuration": "1x 8 GiB LPDDR4",
        "system_type_detail": "edge box"}


def fake_root(tmp_path, usb=(), jetson=False):
    def put(path, text):
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    put("proc/cpuinfo", CPUINFO)
    put("proc/meminfo", "MemTotal:        8000000 kB\n")
    put("etc/os-release", 'PRETTY_NAME="Test Linux 1"\n')
    put("sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "2400000\n")
    for idx, (level, kind, size) in enumerate([("1", "Data", "32K"), ("2", "Unified", "512K")]):
        base = f"sys/devices/system/cpu/cpu0/cache/index{idx}"
        put(f"{base}/level", level), put(f"{base}/type", kind), put(f"{base}/size", size)
    for n, (vendor, product, speed) in enumerate(usb):
        base = f"sys/bus/usb/devices/2-{n + 1}"
        put(f"{base}/idVendor", vendor), put(f"{base}/idProduct", product), put(f"{base}/speed", speed)
    if jetson:
        put("etc/nv_tegra_release", "# R35 (release), REVISION: 4.1, GCID: 1, BOARD: t186ref\n")
        put("proc/device-tree/model", "NVIDIA Jetson Orin Nano Developer Kit\x00")
    return tmp_path


def no_commands(argv):
    return None


def test_cpu_only_host_from_a_fake_root(tmp_path):
    desc = system_desc.detect("litert", runtime="ai-edge-litert 2.0", root=fake_root(tmp_path), run=no_commands)
    assert desc["host_processor_model_name"] == "Test CPU 9000"
    assert desc["host_processor_core_count"] == "2" and desc["host_processors_per_node"] == "1"
    assert desc["host_processor_frequency"] == "2400 MHz (max)"
    assert desc["host_processor_caches"] == "L1d 32K, L2 512K"
    assert desc["host_memory_capacity"] == "7.6 GiB"
    assert desc["operating_system"] == "Test Linux 1"
    assert desc["framework"] == "ai-edge-litert 2.0"
    assert desc["accelerators_per_node"] == "0"  # a real answer, as a string
    assert desc["accelerator_model_name"].startswith("N/A")


def test_coral_usb_is_the_accelerator_of_the_edgetpu_backend(tmp_path):
    root = fake_root(tmp_path, usb=[("18d1", "9302", "5000"), ("03e7", "2485", "480")])
    desc = system_desc.detect("edgetpu", root=root, run=no_commands)
    assert desc["accelerator_model_name"] == "Google Coral USB Accelerator (Edge TPU)"
    assert desc["accelerator_host_interconnect"] == "USB 3.0 (5 Gb/s)"
    assert desc["accelerators_per_node"] == "1"
    assert "NCS2 03e7:2485" in desc["hw_notes"] and "not used by this run" in desc["hw_notes"]
    # before the runtime loads its firmware the stick shows as 1a6e:089a
    first = system_desc.detect("edgetpu", root=fake_root(tmp_path / "b", usb=[("1a6e", "089a", "480")]),
                               run=no_commands)
    assert first["accelerator_host_interconnect"] == "USB 2.0 (480 Mb/s)"


def test_ncs2_is_used_by_openvino_on_myriad(tmp_path):
    root = fake_root(tmp_path, usb=[("03e7", "2485", "5000")])
    desc = system_desc.detect("openvino", device="MYRIAD", root=root, run=no_commands)
    assert desc["accelerator_model_name"].startswith("Intel Neural Compute Stick 2")
    cpu = system_desc.detect("openvino", device="CPU", root=root, run=no_commands)
    assert cpu["accelerators_per_node"] == "0"


def test_nvidia_gpu_through_nvidia_smi(tmp_path):
    def smi(argv):
        return "NVIDIA T4, 15360, 1590, 3, 16\n" if argv[0] == "nvidia-smi" else None

    desc = system_desc.detect("tensorrt", root=fake_root(tmp_path), run=smi)
    assert desc["accelerator_model_name"] == "NVIDIA T4"
    assert desc["accelerator_memory_capacity"] == "15360 MiB"
    assert desc["accelerator_frequency"] == "1590 MHz (max SM clock)"
    assert desc["accelerator_host_interconnect"] == "PCIe Gen3 x16"


def test_jetson_through_tegra_release_and_nvpmodel(tmp_path):
    def nvpmodel(argv):
        return "NV Power Mode: 15W\n0\n" if argv[0] == "nvpmodel" else None

    desc = system_desc.detect("tensorrt", root=fake_root(tmp_path, jetson=True), run=nvpmodel)
    assert desc["accelerator_model_name"] == "NVIDIA Jetson Orin Nano Developer Kit integrated GPU"
    assert "L4T R35.4.1" in desc["hw_notes"] and "power mode 15W" in desc["hw_notes"]
    assert desc["accelerator_memory_capacity"] == "shared with the host (7.6 GiB)"


def test_user_file_completes_every_required_field(tmp_path):
    detected = system_desc.detect("litert", root=fake_root(tmp_path), run=no_commands)
    detected.update({"host_storage_capacity": "64 GB", "host_storage_type": "eMMC",
                     "host_networking": "1x GbE", "host_network_card_count": "1"})
    desc, problems = system_desc.describe(detected, USER, "open", "Org")
    assert problems == []
    assert set(system_desc.REQUIRED_FIELDS) <= set(desc)
    assert desc["division"] == "open" and desc["submitter"] == "Org"


def test_missing_fields_are_reported_not_silently_empty(tmp_path):
    detected = system_desc.detect("litert", root=fake_root(tmp_path), run=no_commands)
    desc, problems = system_desc.describe(detected, {"host_network_card_count": 0, "status": "sold"},
                                          "closed", "Org")
    assert desc["host_network_card_count"] == "0"
    fields = {p.split("'")[1] for p in problems}
    assert {"cooling", "host_memory_configuration", "host_storage_type"} <= fields
    assert any(p.startswith("field 'status' is 'sold'; accepted: available, preview, rdi") for p in problems)
    assert any(p.startswith("field 'cooling' is empty: give it in --system-desc, e.g. \"cooling\": ") for p in problems)
    assert "host_network_card_count" not in fields
    # the checker accepts system_type_detail empty: a field to fill, not a problem
    assert "system_type_detail" not in fields and "system_type_detail" in system_desc.fields_to_fill(desc)


def test_cpu_frequency_is_the_maximum_never_the_current_clock(tmp_path):
    root = fake_root(tmp_path)
    # big.LITTLE: cpu0 is a small core, cpu3 the fast one
    (root / "sys/devices/system/cpu/cpu3/cpufreq").mkdir(parents=True)
    (root / "sys/devices/system/cpu/cpu3/cpufreq/cpuinfo_max_freq").write_text("3200000\n")
    assert system_desc.detect("litert", root=root, run=no_commands)["host_processor_frequency"] == "3200 MHz (max)"
    # no cpufreq driver (a VM): the rated clock in the model name, else nothing (cpu MHz is the current clock)
    for f in (root / "sys/devices/system/cpu").glob("cpu*/cpufreq/cpuinfo_max_freq"):
        f.unlink()
    assert system_desc.detect("litert", root=root, run=no_commands).get("host_processor_frequency", "") == ""
    (root / "proc/cpuinfo").write_text(CPUINFO.replace("Test CPU 9000", "Test CPU 9000 @ 2.20GHz"))
    assert system_desc.detect("litert", root=root, run=no_commands)["host_processor_frequency"] == \
        "2200 MHz (rated, from the model name)"


def test_memory_layout_from_dmidecode_and_only_the_runtime_used(tmp_path):
    def dmidecode(argv):
        if argv[0] != "dmidecode":
            return None
        module = "Memory Device\n\tSize: 8 GB\n\tType: DDR4\n\tConfigured Memory Speed: 3200 MT/s\n"
        return "\n".join([module, module, "Memory Device\n\tSize: No Module Installed\n"])

    desc = system_desc.detect("onnxruntime", runtime="onnxruntime 1.20.1", root=fake_root(tmp_path), run=dmidecode)
    assert desc["host_memory_configuration"] == "2x 8 GB DDR4 3200 MT/s"
    stack = desc["other_software_stack"]
    assert stack.startswith("Python ") and stack.endswith(", onnxruntime 1.20.1")
    for other in ("tensorflow", "openvino", "tensorrt", "ai-edge-litert", "tflite-runtime", "pycoral"):
        assert other not in stack
    assert "host_memory_configuration" not in system_desc.detect("litert", root=fake_root(tmp_path / "b"),
                                                                 run=no_commands)


def test_quick_placeholders_fill_only_what_the_user_did_not_give(tmp_path):
    detected = system_desc.detect("litert", root=fake_root(tmp_path), run=no_commands)
    filled = system_desc.quick_placeholders({**detected, "cooling": "fan"})
    assert filled == {"status": "rdi",
                      "host_memory_configuration": "7.6 GiB total, module layout not stated (quick run)"}


def test_user_file_may_not_contradict_the_tree(tmp_path):
    with pytest.raises(ConfigError, match="division 'closed' but the tree is for division 'open'"):
        system_desc.describe({}, {"division": "closed"}, "open", "Org")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        system_desc.load_user_file(bad)
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        system_desc.load_user_file(bad)


def test_this_machine_is_detected():
    desc = system_desc.detect("litert")
    for key in ("host_processor_model_name", "host_processor_core_count", "host_memory_capacity",
                "operating_system", "other_software_stack"):
        assert desc[key], key
    json.dumps(desc)
