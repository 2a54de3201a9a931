"""The system description (``systems/<system>.json``): detected, then completed by the user.

:func:`detect` reads what the machine tells about itself (``/proc``, ``/sys``,
``/etc``, ``nvidia-smi``, ``nvpmodel``); :func:`describe` lays the user's JSON
file over it and returns the description plus the required fields that are
still empty, so a caller can say exactly what the user must add. Nothing is
left silently empty and nothing is invented: a value we cannot detect stays
``""`` and is reported. Counts are written as strings (the checker treats a
number 0 as empty; ``"0"`` is a real answer).

Every reader takes ``root`` (default ``/``) so tests can run it on a fake
file tree, and commands go through ``run_command`` so tests can fake them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, List, Optional

from sut.errors import ConfigError

log = logging.getLogger(__name__)

#: every field the v6.1 checker requires
REQUIRED_FIELDS = (
    "division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity",
    "host_storage_capacity", "host_storage_type", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "framework", "operating_system", "system_type",
    "other_software_stack", "host_processor_frequency", "host_processor_caches",
    "host_memory_configuration", "host_processor_interconnect", "host_networking",
    "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect",
    "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_configuration",
    "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes", "host_network_card_count",
    "system_type_detail",
)
#: the subset the checker refuses when empty
MEANINGFUL_FIELDS = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_memory_configuration", "host_storage_capacity", "host_storage_type",
    "host_networking", "host_network_card_count", "host_networking_topology", "accelerators_per_node",
    "accelerator_model_name", "accelerator_memory_capacity", "accelerator_host_interconnect",
    "accelerator_memory_configuration", "accelerator_interconnect", "cooling", "framework",
    "operating_system", "other_software_stack",
)
STATUSES = ("available", "preview", "rdi")
#: fields no machine tells about itself: an example value for each, shown when one is missing
EXAMPLES = {
    "status": "available",
    "cooling": "passive heatsink",
    "host_memory_configuration": "1x 8 GiB LPDDR4",
    "host_storage_type": "NVMe SSD",
    "host_storage_capacity": "256 GB",
    "host_networking": "1x 1 Gb/s Ethernet",
    "host_network_card_count": "1",
    "accelerator_memory_configuration": "on-chip SRAM",
    "accelerator_host_interconnect": "USB 3.0 (5 Gb/s)",
    "accelerator_interconnect": "N/A (single accelerator)",
    "accelerator_memory_capacity": "8 MB",
}
#: what no machine can tell: required from --system-desc for a full submission
ASK_USER = ("status", "cooling", "host_memory_configuration")
SYSTEM_TYPES = ("edge", "datacenter", "datacenter,edge", "edge,datacenter")

CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}  # before / after the runtime loads its firmware
NCS2_USB_IDS = {("03e7", "2485")}
#: backends (and device strings) that run on each accelerator family
ACCELERATOR_BACKENDS = {"edgetpu": "coral", "tensorrt": "nvidia"}
NA = "N/A"

Runner = Callable[[List[str]], Optional[str]]  # evaluated at run time: typing generics for Python 3.8


def run_command(argv: list[str], timeout: float = 10.0) -> str | None:
    """stdout of a command, or None when it is missing or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


def is_empty(value: Any) -> bool:
    """Empty as the checker sees it: None, "", [], {}, 0 or False."""
    if isinstance(value, str):
        return not value.strip()
    return not value


# --- host -------------------------------------------------------------------------

def cpu_info(root: Path) -> dict[str, str]:
    text = _read(root, "/proc/cpuinfo") or ""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    entries = [dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in b.splitlines()))
               for b in blocks]
    out: dict[str, str] = {}
    names = [e.get("model name") or e.get("Model name") for e in entries]
    name = next((n for n in names if n), None)
    if not name:  # ARM boards: the device-tree model names the SoC/board
        name = ((_read(root, "/proc/device-tree/model") or "").strip("\x00\n ") or
                next((e.get("Hardware") for e in entries if e.get("Hardware")), None))
    if name:
        out["host_processor_model_name"] = name
    processors = [e for e in entries if "processor" in e]
    sockets = {e.get("physical id") for e in processors if "physical id" in e}
    cores = {(e.get("physical id"), e.get("core id")) for e in processors if "core id" in e}
    out["host_processors_per_node"] = str(len(sockets) or 1)
    count = len(cores) or len(processors) or (os.cpu_count() if root == Path("/") else 0) or 0
    if count:
        out["host_processor_core_count"] = str(count)
    frequency = max_frequency(root, entries)
    if frequency:
        out["host_processor_frequency"] = frequency
    caches = cache_info(root)
    if caches:
        out["host_processor_caches"] = caches
    return out


def max_frequency(root: Path, entries: list[dict[str, str]] | None = None) -> str:
    """The highest maximum clock of any core (big.LITTLE: cpu0 may be a small core), from cpufreq;
    else the rated clock in the model name ("@ 2.20GHz"); "" when the machine does not say
    (``/proc/cpuinfo``'s "cpu MHz" is the current clock, not the maximum)."""
    khz = [int(text) for text in (_read(f, "cpuinfo_max_freq") for f in
                                  sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")))
           if text and text.strip().isdigit()]
    if khz:
        return f"{max(khz) / 1000:.0f} MHz (max)"
    for entry in entries or []:
        match = re.search(r"@\s*([\d.]+)\s*GHz", entry.get("model name") or "")
        if match:
            return f"{float(match.group(1)) * 1000:.0f} MHz (rated, from the model name)"
    return ""


def dimm_layout(run: Runner) -> str:
    """Memory modules as ``dmidecode -t 17`` lists them (needs root), e.g. "2x 8 GB DDR4 3200 MT/s";
    "" when it cannot be read."""
    text = run(["dmidecode", "-t", "17"]) or ""
    modules = []
    for block in text.split("\n\n"):
        fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines()))
        size = fields.get("Size", "")
        if not size or size.lower().startswith("no module"):
            continue
        kind, speed = fields.get("Type", ""), fields.get("Configured Memory Speed") or fields.get("Speed", "")
        modules.append(" ".join(x for x in (size, kind if kind.lower() != "unknown" else "",
                                            speed if speed.lower() != "unknown" else "") if x))
    counts: dict[str, int] = {}
    for module in modules:
        counts[module] = counts.get(module, 0) + 1
    return ", ".join(f"{n}x {m}" for m, n in counts.items())


def cache_info(root: Path) -> str:
    base = root / "sys/devices/system/cpu/cpu0/cache"
    parts = []
    for index in sorted(base.glob("index*")):
        level, kind, size = (_read(index, n) for n in ("level", "type", "size"))
        if not (level and size):
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get((kind or "").strip(), "")
        shared = (_read(index, "shared_cpu_list") or "").strip()
        note = f" (shared by CPUs {shared})" if shared and shared != "0" and ("-" in shared or "," in shared) else ""
        parts.append(f"L{level.strip()}{suffix} {size.strip()}{note}")
    return ", ".join(parts)


def memory_info(root: Path) -> dict[str, str]:
    text = _read(root, "/proc/meminfo") or ""
    match = re.search(r"^MemTotal:\s+(\d+)\s+kB", text, re.M)
    return {"host_memory_capacity": f"{int(match.group(1)) / 1024 ** 2:.1f} GiB"} if match else {}


def storage_info(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        st = os.statvfs(root)
        out["host_storage_capacity"] = f"{st.f_blocks * st.f_frsize / 1e9:.0f} GB"
    except OSError:
        pass
    mounts = _read(root, "/proc/mounts") or ""
    device = next((line.split()[0] for line in mounts.splitlines()
                   if len(line.split()) > 1 and line.split()[1] == "/"), "")
    name = re.sub(r"^/dev/", "", device)
    disk = re.sub(r"(p?\d+)$", "", name) if not name.startswith(("nvme", "mmcblk")) else re.sub(r"p\d+$", "", name)
    if not disk or not (root / "sys/block" / disk).exists():
        return out
    rotational = (_read(root, f"/sys/block/{disk}/queue/rotational") or "").strip()
    if disk.startswith("nvme"):
        out["host_storage_type"] = "NVMe SSD"
    elif disk.startswith("mmcblk"):
        out["host_storage_type"] = "eMMC / SD card"
    elif disk.startswith("vd"):
        out["host_storage_type"] = "virtual disk (virtio)"
    elif rotational == "1":
        out["host_storage_type"] = "HDD"
    elif rotational == "0":
        out["host_storage_type"] = "SSD"
    return out


def network_info(root: Path) -> dict[str, str]:
    """Physical network interfaces (those backed by a device, not virtual)."""
    base = root / "sys/class/net"
    nics = []
    for iface in sorted(base.glob("*")) if base.exists() else []:
        if iface.name == "lo" or "/virtual/" in os.path.realpath(iface):
            continue
        speed = (_read(iface, "speed") or "").strip()
        nics.append(f"{iface.name}" + (f" {speed} Mb/s" if speed.isdigit() and int(speed) > 0 else ""))
    if not nics:
        return {}
    return {"host_networking": ", ".join(nics), "host_network_card_count": str(len(nics))}


def os_info(root: Path) -> str:
    text = _read(root, "/etc/os-release") or ""
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', text, re.M)
    name = match.group(1) if match else platform.system()
    return f"{name}, kernel {platform.release()}" if root == Path("/") else name


def software_stack(runtime: str = "") -> str:
    """Python, LoadGen, NumPy and the runtime the run used (``backend.version()``), nothing else."""
    parts = [f"Python {platform.python_version()}"]
    for package in ("mlcommons-loadgen", "numpy"):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    if runtime:
        parts.append(runtime)
    return ", ".join(parts)


# --- accelerators ------------------------------------------------------------------

def usb_devices(root: Path) -> list[dict[str, str]]:
    base = root / "sys/bus/usb/devices"
    found = []
    for dev in sorted(base.glob("*")) if base.exists() else []:
        vendor, product = (_read(dev, n) for n in ("idVendor", "idProduct"))
        if vendor and product:
            found.append({"bus": dev.name, "id": (vendor.strip().lower(), product.strip().lower()),
                          "speed": (_read(dev, "speed") or "").strip()})
    return found


def _usb_link(speed: str) -> str:
    names = {"5000": "USB 3.0 (5 Gb/s)", "10000": "USB 3.1 (10 Gb/s)", "480": "USB 2.0 (480 Mb/s)",
             "20000": "USB 3.2 (20 Gb/s)"}
    return names.get(speed, f"USB ({speed} Mb/s)" if speed else "USB")


def coral_devices(root: Path) -> list[dict[str, str]]:
    return [{
        "accelerator_model_name": "Google Coral USB Accelerator (Edge TPU)",
        "accelerator_host_interconnect": _usb_link(d["speed"]),
        "accelerator_on-chip_memories": "8 MB SRAM (Edge TPU parameter cache)",
        "accelerator_memory_capacity": "8 MB (on-chip SRAM; no device DRAM)",
        "accelerator_memory_configuration": "on-chip SRAM",
        "note": f"Coral USB {':'.join(d['id'])} at usb {d['bus']}",
    } for d in usb_devices(root) if d["id"] in CORAL_USB_IDS]


def ncs2_devices(root: Path) -> list[dict[str, str]]:
    return [{
        "accelerator_model_name": "Intel Neural Compute Stick 2 (Movidius Myriad X VPU)",
        "accelerator_host_interconnect": _usb_link(d["speed"]),
        "note": f"NCS2 {':'.join(d['id'])} at usb {d['bus']}",
    } for d in usb_devices(root) if d["id"] in NCS2_USB_IDS]


def nvidia_devices(run: Runner) -> list[dict[str, str]]:
    text = run(["nvidia-smi", "--query-gpu=name,memory.total,clocks.max.sm,pcie.link.gen.max,"
                "pcie.link.width.max", "--format=csv,noheader,nounits"])
    found = []
    for line in (text or "").splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 5 or not cells[0]:
            continue
        name, memory, clock, gen, width = cells[:5]
        found.append({
            "accelerator_model_name": name,
            "accelerator_memory_capacity": f"{memory} MiB" if memory.replace(".", "").isdigit() else "",
            "accelerator_frequency": f"{clock} MHz (max SM clock)" if clock.isdigit() else "",
            "accelerator_host_interconnect": (f"PCIe Gen{gen} x{width}" if gen.isdigit() and width.isdigit()
                                              else "PCIe"),
            "note": f"NVIDIA GPU {name}",
        })
    return found


def jetson_devices(root: Path, run: Runner) -> list[dict[str, str]]:
    release = _read(root, "/etc/nv_tegra_release")
    if not release:
        return []
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    l4t = f"L4T R{match.group(1)}.{match.group(2)}" if match else "L4T"
    board = (_read(root, "/proc/device-tree/model") or "NVIDIA Jetson").strip("\x00\n ")
    mode = run(["nvpmodel", "-q"]) or ""
    mode_match = re.search(r"NV Power Mode:\s*(\S+)", mode)
    memory = memory_info(root).get("host_memory_capacity", "")
    return [{
        "accelerator_model_name": f"{board} integrated GPU",
        "accelerator_host_interconnect": "integrated on the SoC (shared memory)",
        "accelerator_memory_capacity": f"shared with the host ({memory})" if memory else "shared with the host",
        "accelerator_memory_configuration": "shared LPDDR with the host CPU",
        "note": f"{board}, {l4t}" + (f", nvpmodel power mode {mode_match.group(1)}" if mode_match else ""),
        "power_mode": mode_match.group(1) if mode_match else "",
    }]


def accelerators(root: Path, run: Runner) -> dict[str, list[dict[str, str]]]:
    return {"coral": coral_devices(root), "ncs2": ncs2_devices(root),
            "nvidia": jetson_devices(root, run) or nvidia_devices(run)}


def used_family(backend: str, device: str | None) -> str | None:
    """The accelerator family the run used, or None for the CPU."""
    if backend == "openvino" and device and device.upper().startswith("MYRIAD"):
        return "ncs2"
    return ACCELERATOR_BACKENDS.get(backend)


# --- putting it together -------------------------------------------------------------

def detect(backend: str = "", device: str | None = None, runtime: str = "", root: Path = Path("/"),
           run: Runner = run_command) -> dict[str, str]:
    """Everything this machine tells about itself, as system-description fields."""
    root = Path(root)
    desc: dict[str, str] = {"number_of_nodes": "1", "system_type": "edge",
                            "host_networking_topology": f"{NA} (single node)"}
    desc.update(cpu_info(root))
    desc.update(memory_info(root))
    desc.update(storage_info(root))
    desc.update(network_info(root))
    desc["operating_system"] = os_info(root)
    desc["framework"] = runtime or backend
    desc["other_software_stack"] = software_stack(runtime)
    layout = dimm_layout(run)
    if layout:
        desc["host_memory_configuration"] = layout
    if desc.get("host_processors_per_node") == "1":
        desc["host_processor_interconnect"] = f"{NA} (single socket)"
    found = accelerators(root, run)
    family = used_family(backend, device)
    notes = [f"{d['note']} (not used by this run)" for fam, devs in found.items() if fam != family for d in devs]
    used = found.get(family, []) if family else []
    if family and not used:
        log.warning("backend %s runs on a %s accelerator but none was detected", backend, family)
        notes.append(f"no {family} device detected while describing the system")
    if used:
        first = used[0]
        desc.update({k: v for k, v in first.items() if k not in ("note", "power_mode") and v})
        desc["accelerators_per_node"] = str(len(used))
        if len(used) == 1:
            desc["accelerator_interconnect"] = f"{NA} (single accelerator)"
            desc["accelerator_interconnect_topology"] = f"{NA} (single accelerator)"
        notes.insert(0, "; ".join(d["note"] for d in used))
    elif not family:
        desc.update({"accelerators_per_node": "0", "accelerator_model_name": f"{NA} (CPU only)"})
        for key in ("accelerator_memory_capacity", "accelerator_frequency", "accelerator_host_interconnect",
                    "accelerator_interconnect", "accelerator_interconnect_topology",
                    "accelerator_memory_configuration", "accelerator_on-chip_memories"):
            desc[key] = NA
    desc["hw_notes"] = "; ".join(notes) if notes else "no accelerator detected; the model runs on the CPU"
    desc["sw_notes"] = f"mlperf-edge harness, backend {backend or '-'}" + (f" ({runtime})" if runtime else "")
    desc["system_name"] = desc.get("host_processor_model_name", "") + (
        f" with {desc['accelerator_model_name']}" if used else "")
    return desc


def load_user_file(path: str | Path | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read --system-desc {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--system-desc {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--system-desc {path} must hold a JSON object of system fields")
    return data


def describe(detected: dict[str, Any], user: dict[str, Any], division: str, submitter: str
             ) -> tuple[dict[str, Any], list[str]]:
    """Detected values, overridden by the user's; returns (description, problems).

    ``user`` may hold a ``"measurements"`` object (for measurements.json);
    it is not part of the system description.
    """
    user = {k: v for k, v in user.items() if k != "measurements"}
    for key, value in (("division", division), ("submitter", submitter)):
        if key in user and str(user[key]) != value:
            raise ConfigError(f"--system-desc says {key} '{user[key]}' but the tree is for {key} '{value}'")
    desc: dict[str, Any] = {key: "" for key in REQUIRED_FIELDS}
    desc.update(detected)
    desc.update(user)
    desc["division"], desc["submitter"] = division, submitter
    for key, value in list(desc.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            desc[key] = str(value)  # 0 must stay a real answer
    return desc, field_problems(desc)


def quick_placeholders(desc: dict[str, Any]) -> dict[str, str]:
    """For a quick tree (never a submission): values for the fields only the user can give, so the
    tree's only problems are its short runs. Marked as such in the values themselves."""
    memory = desc.get("host_memory_capacity") or "memory"
    values = {"status": "rdi", "cooling": "not stated (quick run)",
              "host_memory_configuration": f"{memory} total, module layout not stated (quick run)"}
    return {k: v for k, v in values.items() if is_empty(desc.get(k))}


def checker_problems(desc: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, text) for each thing the v6.1 checker refuses: status, system type, required fields
    missing, meaningful fields empty (it treats "", 0 and false as empty; a count "0" is an answer)."""
    problems: list[tuple[str, str]] = []
    status = str(desc.get("status") or "").lower()
    if status not in STATUSES:
        problems.append(("system_status", f"field 'status' is '{desc.get('status') or ''}'; accepted: "
                         f"{', '.join(STATUSES)} (e.g. \"status\": \"available\" in --system-desc)"))
    system_type = desc.get("system_type")
    if system_type not in SYSTEM_TYPES:
        problems.append(("system_type", f"field 'system_type' is '{system_type or ''}'; accepted: "
                         f"{', '.join(SYSTEM_TYPES)}"))
    for key in REQUIRED_FIELDS:
        if key not in desc:
            problems.append((f"system_field_missing:{key}", f"field '{key}' is missing"))
        elif key in MEANINGFUL_FIELDS and not desc[key]:
            example = EXAMPLES.get(key)
            problems.append((f"system_field_empty:{key}", f"field '{key}' is empty: give it in --system-desc"
                             + (f", e.g. \"{key}\": \"{example}\"" if example else "")))
    return problems


def fields_to_fill(desc: dict[str, Any]) -> list[str]:
    """Required fields that are empty although the checker accepts them empty."""
    return [k for k in REQUIRED_FIELDS if k in desc and k not in MEANINGFUL_FIELDS and is_empty(desc[k])]


def field_problems(desc: dict[str, Any]) -> list[str]:
    """The checker's problems with a description, as text."""
    return [text for _, text in checker_problems(desc)]
