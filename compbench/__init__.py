"""compbench: rank neural byte-level LMs and classical coders on one scale (bits per byte, artifact
bytes, CPU time), with real coding and byte-exact round trips.

Library use (the README's "Library use" section is the tested version)::

    from compbench import make_coder, decode_payload
    coder = make_coder("lzma:preset=9e")
    payload = coder.encode(b"hello")          # self-describing payload
    assert decode_payload(payload) == b"hello"
"""

import os as _os

# Torch's OpenMP threads spin while they wait for work. On cores shared with other processes (two
# benchmarks at once, training beside a run, pytest -n 2) they spin against each other and a 4 s
# GRU encode took over 90 s here. Passive waiting costs little on an idle machine; it must be set
# before OpenMP starts, i.e. before torch is imported, which compbench does lazily after this.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .coder import Coder, NoOptions  # noqa: E402
from .errors import CompbenchError, PayloadError
from .registry import coders, expand, get_coder_class, make_coder, register_coder

__version__ = "0.1.0"

__all__ = [
    "Coder", "NoOptions", "CompbenchError", "PayloadError",
    "coders", "expand", "get_coder_class", "make_coder", "register_coder", "__version__",
    "load_corpus", "measure", "MeasureConfig", "decode_payload", "DecodePolicy",
]

# ``measure`` is also a submodule's name: bound here, the function wins over the module attribute.
from .corpus import load_corpus  # noqa: E402
from .measure import MeasureConfig, measure  # noqa: E402

_LAZY = {"decode_payload": "decoding", "DecodePolicy": "decoding"}


def __getattr__(name: str):
    """The harness functions, imported on first use (the package itself stays quick to import)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'compbench' has no attribute {name!r}")
