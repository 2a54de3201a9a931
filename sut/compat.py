"""The few standard-library differences between Python 3.8 and 3.13, in one place.

The harness runs on Python 3.8 (JetPack 5) through 3.13. Everything newer
than 3.8 that it uses goes through this module, which imports nothing heavy
so every package can use it at module top.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any, BinaryIO, List

from sut.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib as _toml
else:  # Python 3.8-3.10: the same parser, published as 'tomli'
    try:
        import tomli as _toml
    except ImportError:  # pragma: no cover - setup.py installs tomli below 3.11
        _toml = None

TOMLDecodeError = _toml.TOMLDecodeError if _toml else ValueError


def load_toml(stream: BinaryIO) -> dict[str, Any]:
    """Parse a TOML file opened in binary mode (tomllib / tomli)."""
    if _toml is None:
        raise ConfigError("reading profiles on Python < 3.11 needs the 'tomli' package: pip install tomli")
    return _toml.load(stream)


def entry_points(group: str) -> List[Any]:
    """Installed entry points of ``group`` (``entry_points(group=)`` is 3.10+)."""
    found = metadata.entry_points()
    if hasattr(found, "select"):
        return list(found.select(group=group))
    return list(found.get(group, ()))  # Python 3.8/3.9: a dict of group -> entry points


def remove_prefix(text: str, prefix: str) -> str:
    """``str.removeprefix`` (3.9+)."""
    return text[len(prefix):] if prefix and text.startswith(prefix) else text


def remove_suffix(text: str, suffix: str) -> str:
    """``str.removesuffix`` (3.9+)."""
    return text[:-len(suffix)] if suffix and text.endswith(suffix) else text
