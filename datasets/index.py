"""Reading a dataset's index file (``val_map.txt``, ``testing_list.txt``) safely.

An index is UTF-8 text, one sample per line. A byte that is not UTF-8 is a
DatasetError naming the file, the line and the byte (never a
UnicodeDecodeError traceback); a UTF-8 byte-order mark at the start, which
some editors add and nobody sees, is dropped; a sample listed twice is a
DatasetError naming both lines, since it would be scored twice.
"""

from __future__ import annotations

from typing import Iterator

from sut.errors import DatasetError

BOM = "\ufeff"


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for each non-blank line of the index at ``path``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path} line {number}: byte {raw[exc.start]:#04x} is not UTF-8 "
                               f"({raw[:80]!r}); save the file as UTF-8") from None
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        if line.strip():
            yield number, line


def visible(text: str) -> str:
    """``text`` as is, or its repr when it holds a character one cannot see
    (a BOM, a zero-width space, a control character), so that an error shows it."""
    return text if all(c.isprintable() for c in text) else repr(text)


class Unique:
    """Remembers where each sample was listed; a second listing is a DatasetError."""

    def __init__(self, path: str):
        self.path = path
        self.first: dict[str, int] = {}

    def add(self, name: str, number: int) -> None:
        first = self.first.setdefault(name, number)
        if first != number:
            raise DatasetError(f"{self.path} line {number} lists {visible(name)} again (first at line {first}): "
                               f"it would be scored twice; remove the duplicate line")
