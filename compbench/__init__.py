"""compbench: rank neural byte-level LMs and classical coders on one scale (bits per byte, artifact
bytes, CPU time), with real coding and byte-exact round trips.

Library use::

    from compbench import make_coder, load_corpus, measure
    coder = make_coder("lzma:preset=9e")
    payload = coder.encode(b"hello")          # self-describing payload
    assert coder.decode(payload) == b"hello"
"""

from .coder import Coder, NoOptions
from .errors import CompbenchError, PayloadError
from .registry import coders, expand, get_coder_class, make_coder, register_coder

__version__ = "0.1.0"

__all__ = [
    "Coder", "NoOptions", "CompbenchError", "PayloadError",
    "coders", "expand", "get_coder_class", "make_coder", "register_coder", "__version__",
]
