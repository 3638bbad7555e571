"""Byte-level language models and their integer engines, installed as ``compbench.models``.

A self-contained engine package: it imports nothing from the harness (``compbench.coders.neural``
adapts it to the :class:`~compbench.coder.Coder` interface). Importing this package does not import
torch; :mod:`.archs` lists the architectures, and the modules that compute (:mod:`.intops`,
:mod:`.lockstep`, :mod:`.artifact`, one module per architecture) are imported when a model runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

if __name__ == "models":  # the checkout's root on sys.path (a script run from there)
    # numba keys its on-disk cache of compiled code by source file, not by module name: code
    # compiled here as ``models.mixing`` would then fail to load in every ``compbench.models``
    # process ("No module named 'models'") until the cache is cleared.
    raise ImportError("import the engine as compbench.models (pip install -e . puts it there), not as "
                      "models: numba's compiled-code cache must see one module name per file")

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
