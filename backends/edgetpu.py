"""Coral Edge TPU: LiteRT with the libedgetpu delegate, one interpreter per TPU.

``device`` names the TPUs as libedgetpu does: ``usb``, ``usb:N``, ``pci``,
``pci:N``, ``:N`` (Nth of any kind), a comma list (``usb:0,usb:1``) or
``all`` (every TPU libedgetpu enumerates); unset means the first TPU found.
Each listed TPU gets its own delegate and interpreter, and is one *instance*:
the harness runs one worker per instance, so Offline and MultiStream samples
are spread across the TPUs. Edge TPU models are compiled for a fixed batch,
so batches are one sample.

The delegate library is ``libedgetpu.so.1`` (Linux), ``libedgetpu.1.dylib``
(macOS) or ``edgetpu.dll`` (Windows); ``backend_options.delegate_library``
overrides it. Each TPU's delegate is opened just before its interpreter is
made: when it cannot be (library or TPU missing) the backend raises
BackendUnavailable naming both. A model without the ``edgetpu-custom-op``
(not compiled with ``edgetpu_compiler``) runs entirely on the CPU; a warning says so.

The code that talks to a real TPU is written against libedgetpu's documented
API (``load_delegate(lib, {"device": ...})``, ``edgetpu_version``,
``edgetpu_list_devices`` from ``edgetpu_c.h``) and is tested here only with
the delegate and interpreter faked: no TPU was available.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import platform
import re
import subprocess

from backends import tflite_model
from backends.base import check_model_file
from backends.litert import LiteRTBackend
from sut.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

DEFAULT_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
EXTRA_OPTIONS = ("delegate_library",)
DEVICE_PATTERN = re.compile(r"^(usb|pci)?(:\d+)?$")
DEVICE_HELP = "'usb', 'usb:N', 'pci', 'pci:N', ':N', a comma list of these, or 'all'"
#: edgetpu_c.h enum edgetpu_device_type
DEVICE_TYPES = {0: "pci", 1: "usb"}


class EdgeTPUBackend(LiteRTBackend):
    name = "edgetpu"
    extra_name = "litert"
    precisions = ("int8",)  # the Edge TPU runs int8 models only

    def __init__(self, options=None):
        super().__init__(options)
        self.library = self.options.extra.get("delegate_library") or default_library()
        self.devices: list[str | None] = []
        self._tpu_delegates: dict[int, object] = {}  # instance -> its TPU's delegate

    # --- LiteRTBackend hooks ----------------------------------------------------
    def _check_options(self) -> None:
        unknown = sorted(set(self.options.extra) - set(EXTRA_OPTIONS))
        if unknown:
            raise ConfigError(f"backend 'edgetpu' has no option {', '.join(unknown)}; "
                              f"accepted backend_options: {', '.join(EXTRA_OPTIONS)}")
        if self.options.precision not in (None, "int8"):
            raise ConfigError(f"the Edge TPU runs int8 models only; precision "
                              f"'{self.options.precision}' is not accepted (leave it unset or 'int8')")

    def _check_model(self, path, custom_ops) -> None:
        """Any .tflite is accepted; ``load_impl`` warns about models that will not use the TPU."""

    def _delegates(self, instance: int) -> list:
        """Instance ``instance``'s TPU delegate, opened before its interpreter is made."""
        if instance not in self._tpu_delegates:
            self._tpu_delegates[instance] = self._open_delegate(self.devices[instance])
        return [self._tpu_delegates[instance]]

    # --- Backend ------------------------------------------------------------
    def load_impl(self, model_path):
        self._check_options()
        check_model_file(model_path, (".tflite",), self.name)
        self.devices = parse_devices(self.options.device, self.library)
        self._check_instances()
        if not tflite_model.is_edgetpu_model(model_path):
            log.warning("edgetpu: %s has no '%s', so nothing runs on the Edge TPU (it runs on the CPU); "
                        "compile it with edgetpu_compiler first", model_path, tflite_model.EDGETPU_CUSTOM_OP)
        if self.options.max_batch_size > 1:
            log.warning("edgetpu: Edge TPU models run one sample at a time; ignoring max_batch_size=%d",
                        self.options.max_batch_size)
        self.options = dataclasses.replace(self.options, instances=len(self.devices), max_batch_size=1)
        return super().load_impl(model_path)

    def close_impl(self):
        super().close_impl()  # interpreters first: they use the delegates
        self._tpu_delegates = {}

    def describe(self):
        library_path = loaded_library_path(self.library)
        return {**super().describe(),
                "delegate_library": library_path or self.library,
                "edgetpu_runtime": runtime_version(self.library),
                "devices": [device or "default" for device in self.devices],
                "clock": clock_variant(library_path)}

    # --- helpers ------------------------------------------------------------
    def _check_instances(self) -> None:
        wanted = self.options.instances
        if wanted not in (0, len(self.devices)):
            raise ConfigError(
                f"backend 'edgetpu' runs one instance per TPU; instances={wanted} does not match "
                f"the {len(self.devices)} device(s) in device='{self.options.device}'; list the TPUs "
                f"in device ({DEVICE_HELP}) and leave instances at 0")

    def _open_delegate(self, device: str | None):
        options = {"device": device} if device else {}
        try:
            # a library that cannot load fails here: given to load_delegate, it leaves a
            # half-built Delegate whose __del__ prints a traceback (every LiteRT/tflite-runtime)
            load_library(self.library)
            return self._runtime.load_delegate(self.library, options)
        except (OSError, ValueError) as exc:
            reason = " ".join(str(exc).split())
            raise BackendUnavailable(
                f"cannot open the Edge TPU delegate '{self.library}' for device '{device or 'default'}': "
                f"{reason}. Install the Edge TPU runtime (libedgetpu1-std or libedgetpu1-max from "
                f"Coral's package repository), plug in / check the TPU, or set "
                f"backend_options.delegate_library to the library's path") from exc


def load_library(library: str) -> ctypes.CDLL:
    """Load the Edge TPU runtime library (OSError when it cannot be)."""
    return ctypes.CDLL(library)


def default_library(system: str | None = None) -> str:
    """The delegate library's file name on this platform."""
    system = system or platform.system()
    try:
        return DEFAULT_LIBRARIES[system]
    except KeyError:
        raise BackendUnavailable(
            f"no Edge TPU runtime is known for platform '{system}' (known: {', '.join(DEFAULT_LIBRARIES)}); "
            "set backend_options.delegate_library") from None


def parse_devices(device: str | None, library: str) -> list[str | None]:
    """``device`` option -> one libedgetpu device string per instance (``None`` = first found)."""
    if device is None or not device.strip():
        return [None]
    if device.strip().lower() == "all":
        found = list_devices(library)
        if not found:
            raise BackendUnavailable(f"device 'all': the Edge TPU runtime '{library}' found no TPU")
        return found
    devices = [d.strip().lower() for d in device.split(",")]
    bad = [d for d in devices if not d or not DEVICE_PATTERN.match(d)]
    if bad:
        raise ConfigError(f"unknown Edge TPU device {', '.join(map(repr, bad))} in '{device}'; "
                          f"accepted: {DEVICE_HELP}")
    if len(set(devices)) != len(devices):
        raise ConfigError(f"device '{device}' lists a TPU twice; each TPU can be one instance")
    return devices


class _EdgeTpuDevice(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("path", ctypes.c_char_p)]


def list_devices(library: str) -> list[str]:
    """``["usb:0", "usb:1", "pci:0", ...]`` from libedgetpu's ``edgetpu_list_devices``."""
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        raise BackendUnavailable(f"device 'all' needs the Edge TPU runtime '{library}': {exc}") from exc
    lib.edgetpu_list_devices.restype = ctypes.POINTER(_EdgeTpuDevice)
    lib.edgetpu_list_devices.argtypes = [ctypes.POINTER(ctypes.c_size_t)]
    count = ctypes.c_size_t(0)
    records = lib.edgetpu_list_devices(ctypes.byref(count))
    kinds = [DEVICE_TYPES.get(records[i].type, "usb") for i in range(count.value)]
    if count.value:
        lib.edgetpu_free_devices(records)
    return [f"{kind}:{kinds[:i].count(kind)}" for i, kind in enumerate(kinds)]


def runtime_version(library: str) -> str:
    """The Edge TPU runtime's version string, or ``"unknown"``.

    Google's pycoral is asked first when it is installed (never required);
    otherwise libedgetpu's own ``edgetpu_version()``.
    """
    try:
        from pycoral.utils.edgetpu import get_runtime_version

        return str(get_runtime_version())
    except (ImportError, AttributeError):
        pass
    try:
        lib = ctypes.CDLL(library)
        lib.edgetpu_version.restype = ctypes.c_char_p
        return lib.edgetpu_version().decode()
    except (OSError, AttributeError):
        return "unknown"


def loaded_library_path(library: str) -> str | None:
    """The resolved path of ``library`` as loaded in this process (Linux), else None."""
    if os.path.isabs(library):
        return os.path.realpath(library)
    stem = os.path.basename(library).split(".")[0]
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if os.path.basename(path).startswith(stem + "."):
                    return os.path.realpath(path)
    except OSError:
        pass
    return None


def clock_variant(library_path: str | None) -> str:
    """``"max"``, ``"std"`` or ``"unknown"``: which libedgetpu clock setting is in use.

    Coral's runtime archive keeps the max-clock build under ``direct/`` and the
    standard one under ``throttled/``; the Debian packages are
    ``libedgetpu1-max`` and ``libedgetpu1-std`` (only one can be installed).
    """
    if library_path:
        parts = library_path.replace("\\", "/").split("/")
        if "direct" in parts:
            return "max"
        if "throttled" in parts:
            return "std"
    try:
        listing = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", "libedgetpu1-max", "libedgetpu1-std"],
            capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in listing.splitlines():
        package, _, status = line.partition(" ")
        if status.strip() == "installed":
            return package.rsplit("-", 1)[-1]
    return "unknown"
