"""Byte-level language models and their integer engines, installed as ``compbench.models``.

A self-contained engine package: it imports nothing from the harness (``compbench.coders.neural``
adapts it to the :class:`~compbench.coder.Coder` interface). Importing this package does not import
torch; :mod:`.archs` lists the architectures, and the modules that compute (:mod:`.intops`,
:mod:`.lockstep`, :mod:`.artifact`, one module per architecture) are imported when a model runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .archs import ARCHS, ArchInfo, on_register, register_arch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

__all__ = ["ARCHS", "ArchInfo", "on_register", "register_arch", "shipped_models", "find_shipped", "WEIGHTS_DIR"]


def shipped_models() -> dict[str, Path]:
    """Shipped artifacts, keyed ``ARCH-NAME`` (e.g. ``gru-enwik8``)."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.cbnm"))}


def find_shipped(fp: bytes, arch: str | None = None) -> bytes | None:
    """The shipped artifact whose sha256 starts with ``fp`` (and, if given, of architecture ``arch``)."""
    for key, path in shipped_models().items():
        if arch and not key.startswith(arch + "-"):
            continue
        blob = path.read_bytes()
        if hashlib.sha256(blob).digest()[: len(fp)] == fp:
            return blob
    return None
