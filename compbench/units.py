"""Byte sizes and budgets, with their conventions written down once.

``1MB`` is 1,000,000 bytes and ``16MB`` is 16,000,000 (decimal, as the 1 MB track and parameter
golf's 16,000,000-byte limit count); ``1MiB`` is 1,048,576 (binary, the Golden Plate zip limit).
``KB``/``GB`` and ``KiB``/``GiB`` follow the same rule; a bare number is bytes.
"""

from __future__ import annotations

import re

from .errors import CompbenchError

_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_size(text: str) -> int:
    """'1MB' -> 1,000,000; '16MB' -> 16,000,000; '1MiB' -> 1,048,576; '1,048,576' -> 1,048,576."""
    m = re.fullmatch(r"\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise CompbenchError(f"cannot read size {text!r} (examples: 1MB, 16MB, 500KB, 1MiB, 123456)")
    return int(float(m.group(1).replace(",", "").replace("_", "")) * _UNITS[m.group(2).upper()])


def format_size(n: int) -> str:
    """The shortest exact name: 1,000,000 -> '1MB', 1,048,576 -> '1MiB', 123,456 -> '123,456'."""
    for unit, scale in (("GB", 1000**3), ("GiB", 1024**3), ("MB", 1000**2), ("MiB", 1024**2), ("KB", 1000), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n:,}"
