"""compbench: rank neural byte-level LMs and classical coders on one scale (bits per byte, artifact
bytes, CPU time), with real coding and byte-exact round trips.

Library use::

    from compbench import make_coder, load_corpus, measure
    coder = make_coder("lzma:preset=9e")
    payload = coder.encode(b"hello")          # self-describing payload
    assert coder.decode(payload) == b"hello"
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
]
