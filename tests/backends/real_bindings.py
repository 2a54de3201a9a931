"""The real ``tensorrt`` and ``cuda-python`` bindings, loaded without a GPU, as API surfaces.

The TensorRT Python bindings are small wheels on PyPI (``tensorrt-bindings``,
``tensorrt-cu12-bindings``: one ``tensorrt.so`` each); the libraries they link
(``libnvinfer.so.N`` ...) are large and not installable here. A Python module
only needs those libraries to *load*: :func:`stub_libraries` reads which
symbols ``tensorrt.so`` takes from them (``nm -D --undefined-only``) and which
sonames it needs (``readelf -d``), and builds stand-ins with gcc that export
those symbols as NULL-returning functions. Nothing can run; the classes,
methods and enums of the real module can be listed, which is what the
contract tests compare our code and our fake against.

``cuda-bindings`` (cuda-python) imports without a driver, so it needs no stubs.

Each package is ``pip install --target``-ed into
``$MLPERF_EDGE_TEST_CACHE`` (default ``$XDG_CACHE_HOME/mlperf-edge-tests`` or
``~/.cache/mlperf-edge-tests``) once; surfaces are dumped in a subprocess
(``LD_LIBRARY_PATH`` and ``sys.path`` set for that package alone) and cached
as JSON beside it. A missing gcc/nm/readelf, or pip failing (no network, no
wheel for this Python), raises :class:`Unavailable`, which the tests turn into
a skip with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: TensorRT versions checked: label -> pip requirement (pinned: results must not move under us)
TENSORRT = {
    "8.6": "tensorrt-bindings==8.6.1",  # JetPack 5 ships 8.5; 8.6.1 is the oldest on PyPI
    "10.3": "tensorrt-cu12-bindings==10.3.0",  # JetPack 6
    "10.16": "tensorrt-cu12-bindings==10.16.1.11",  # newest 10.x
    "11.4": "tensorrt-cu12-bindings==11.4.0.106",  # newest 11.x (strongly typed networks only)
}
#: cuda-python versions checked: label -> pip requirement
CUDA = {
    "12": "cuda-bindings==12.9.10",
    "13": "cuda-bindings==13.5.0",
}

PIP_TIMEOUT = 600
# bump when the dump scripts below change what they write
SURFACE_FORMAT = 2


class Unavailable(Exception):
    """The real bindings cannot be had here (no network, no compiler, no wheel for this Python)."""


def cache_root() -> Path:
    base = os.environ.get("MLPERF_EDGE_TEST_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "mlperf-edge-tests"


def _python_tag() -> str:
    return f"py{sys.version_info[0]}{sys.version_info[1]}"


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock file, so two test processes do not install into one directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            import fcntl
        except ImportError:  # not on Linux: the tests skip there anyway (no stubs)
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def install(requirement: str, deps: bool = False) -> Path:
    """``pip install --target`` ``requirement`` into the cache once; the target directory."""
    name = requirement.replace("==", "-").replace(" ", "")
    target = cache_root() / "site" / _python_tag() / name
    done = target / ".installed"
    if done.exists():
        return target
    with _lock(target.with_name(name + ".lock")):
        if done.exists():
            return target
        tmp = target.with_name(name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--retries", "1", "--timeout", "30", "--only-binary", ":all:", "--target", str(tmp), requirement]
        if not deps:
            cmd.insert(4, "--no-deps")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Unavailable(f"pip install {requirement} took over {PIP_TIMEOUT} s (PyPI unreachable?)")
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            raise Unavailable(f"pip install {requirement} failed on Python {sys.version.split()[0]} "
                              f"(no network or no wheel for it): {lines[-1] if lines else proc.returncode}")
        (tmp / ".installed").write_text(requirement + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Unavailable(f"'{name}' is not installed (needed to build stand-in TensorRT libraries)")
    return path


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise Unavailable(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def stub_libraries(extension: Path) -> Path:
    """A directory of NULL-returning stand-ins for the NVIDIA libraries ``extension`` links."""
    if not sys.platform.startswith("linux"):
        raise Unavailable("stand-in libraries are built for Linux ELF only")
    gcc, nm, readelf = _tool("gcc"), _tool("nm"), _tool("readelf")
    needed = []
    for line in _run([readelf, "-d", str(extension)]).splitlines():
        if "(NEEDED)" in line and "[libnv" in line:
            needed.append(line.split("[", 1)[1].rstrip("]").strip())
    symbols = []
    for line in _run([nm, "-D", "--undefined-only", str(extension)]).splitlines():
        parts = line.split()
        # "U name": strong undefined symbols; versioned ones (name@GLIBC_2.x) come from the C/C++ runtime
        if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1]:
            name = parts[1]
            if not name.startswith(("Py", "_Py", "dl")):
                symbols.append(name)
    if not needed:
        raise Unavailable(f"{extension} links no libnv* library: not a TensorRT binding?")
    source = "".join(f"void *{name}(void) {{ return 0; }}\n" for name in sorted(set(symbols)))
    key = hashlib.sha256((source + "\n".join(needed)).encode()).hexdigest()[:16]
    out = cache_root() / "stubs" / key
    if all((out / lib).exists() for lib in needed):
        return out
    with _lock(out.with_name(key + ".lock")):
        tmp = out.with_name(key + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "stub.c").write_text(source)
        for lib in needed:  # every library exports every symbol: the loader takes the first
            _run([gcc, "-shared", "-fPIC", "-o", str(tmp / lib), str(tmp / "stub.c"), f"-Wl,-soname,{lib}"])
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    return out


# --- surface dumps (run in a subprocess) ---------------------------------------------------------

_DUMP_TENSORRT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import tensorrt_bindings as trt

def is_enum(obj):
    return isinstance(obj, type) and hasattr(obj, "__members__")

def enum_members(obj):
    return {name: int(value) for name, value in obj.__members__.items()}

surface = {"version": trt.__version__, "file": trt.__file__, "module": {}, "classes": {}, "enums": {}}
for name in dir(trt):
    if name.startswith("__") and name != "__version__":
        continue
    obj = getattr(trt, name)
    if is_enum(obj):
        surface["module"][name] = "enum"
        surface["enums"][name] = enum_members(obj)
    elif isinstance(obj, type):
        surface["module"][name] = "class"
        attrs = {}
        for attr in dir(obj):
            if attr.startswith("__") and attr not in ("__init__",):
                continue
            value = getattr(obj, attr, None)
            attrs[attr] = "enum" if is_enum(value) else type(value).__name__
            if is_enum(value):
                surface["enums"][name + "." + attr] = enum_members(value)
        surface["classes"][name] = attrs
    else:
        surface["module"][name] = "function" if callable(obj) else "value"
print(json.dumps(surface))
"""

_DUMP_CUDA = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from cuda.bindings import runtime as rt
import cuda.bindings

surface = {"version": cuda.bindings.__version__, "file": rt.__file__, "module": {}, "classes": {}, "enums": {}}
for name in dir(rt):
    if name.startswith("__"):
        continue
    obj = getattr(rt, name)
    if isinstance(obj, type) and hasattr(obj, "__members__"):
        surface["module"][name] = "enum"
        surface["enums"][name] = {k: int(v) for k, v in obj.__members__.items()}
    elif isinstance(obj, type):
        surface["module"][name] = "class"
        surface["classes"][name] = {a: type(getattr(obj, a, None)).__name__ for a in dir(obj)
                                    if not a.startswith("__")}
    else:
        surface["module"][name] = "function" if callable(obj) else "value"
err, version = rt.cudaRuntimeGetVersion()
surface["runtime_version"] = int(version)
err, driver = rt.cudaDriverGetVersion()
surface["driver_version"] = int(driver)
err, count = rt.cudaGetDeviceCount()
surface["device_count_error"] = err.name
print(json.dumps(surface))
"""


def _dump(kind: str, label: str, requirement: str, script: str, env: dict[str, str]) -> dict:
    target = install(requirement, deps=(kind == "cuda"))
    out = target / f"surface-{SURFACE_FORMAT}.json"
    if out.exists():
        return json.loads(out.read_text())
    full_env = {**os.environ, **env}
    full_env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True,
                          env=full_env, timeout=300)
    if proc.returncode != 0:
        # the wheel installed and the stubs built: failing to import is a real failure, not a skip
        raise RuntimeError(f"importing {requirement} failed:\n{proc.stderr[-3000:]}")
    surface = json.loads(proc.stdout)
    if not surface["file"].startswith(str(target)):
        raise RuntimeError(f"{requirement}: imported {surface['file']}, not the copy in {target}")
    surface["label"], surface["requirement"] = label, requirement
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(surface, indent=0, sort_keys=True))
    os.replace(tmp, out)
    return surface


def tensorrt_surface(label: str) -> dict:
    """The real surface of TensorRT ``label`` (a key of :data:`TENSORRT`)."""
    requirement = TENSORRT[label]
    target = install(requirement)
    extension = target / "tensorrt_bindings" / "tensorrt.so"
    if not extension.exists():
        matches = sorted((target / "tensorrt_bindings").glob("tensorrt*.so"))
        if not matches:
            raise RuntimeError(f"{requirement} has no tensorrt*.so under {target}")
        extension = matches[0]
    stubs = stub_libraries(extension)
    return _dump("tensorrt", label, requirement, _DUMP_TENSORRT, {"LD_LIBRARY_PATH": str(stubs)})


def cuda_surface(label: str) -> dict:
    """The real surface of ``cuda.bindings.runtime`` for cuda-python ``label`` (a key of :data:`CUDA`)."""
    return _dump("cuda", label, CUDA[label], _DUMP_CUDA, {})


@functools.lru_cache(maxsize=None)
def _surface_or_reason(kind: str, label: str):
    read = {"tensorrt": tensorrt_surface, "cuda": cuda_surface}[kind]
    try:
        return read(label), None
    except Unavailable as exc:
        return None, str(exc)


def surface_or_skip(kind: str, label: str) -> dict:
    """The real surface of ``kind`` (``"tensorrt"``/``"cuda"``) ``label``, read once per
    test session; skips the calling test with the reason when it cannot be had here."""
    import pytest

    surface, reason = _surface_or_reason(kind, label)
    if surface is None:
        pytest.skip(f"real {'TensorRT' if kind == 'tensorrt' else 'cuda-python'} {label} bindings unavailable: {reason}")
    return surface
