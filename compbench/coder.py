"""The one coder interface: every coder (classical, external, neural, prefix) is a :class:`Coder`.

A subclass supplies two raw methods, ``encode_body`` and ``decode_body``; the base class wraps them in
the self-describing container of :mod:`compbench.payload`, so ``encode(data) -> payload`` and
``decode(payload) -> data`` behave the same for every coder and the harness never special-cases one.

Byte accounting: ``artifact()`` is everything a decoder needs beyond the payload and a stock Python
environment (weights, config, decoder code, dictionaries, stored prefixes). ``from_artifact`` must
rebuild a working decoder from those bytes alone; the harness verifies every round trip that way.

Adding a coder is one file::

    @register_coder("mycoder", groups=("classical",))
    class MyCoder(Coder):
        @dataclass(frozen=True)
        class Options:
            level: int = 3
        def encode_body(self, data, context=b""): ...
        def decode_body(self, body, size, context=b""): ...
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from typing import BinaryIO, Callable, ClassVar, Iterable, Iterator

from .errors import ArtifactError
from .spec import build_options, format_spec, is_locator, located_spec, unlocated

FINGERPRINT_BYTES = 8  # the one definition: payload headers store this many bytes of sha256(artifact)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Options of a coder that has none."""


def fingerprint(artifact: bytes) -> bytes:
    """Artifact fingerprint stored in every payload (the first 8 bytes of SHA-256)."""
    return hashlib.sha256(artifact).digest()[:FINGERPRINT_BYTES]


class Coder(abc.ABC):
    """Lossless bytes -> bytes coder.

    Class attributes set by subclasses / :func:`compbench.registry.register_coder`:
        name: registry key (kebab-case).
        family: ``classical``, ``external``, ``neural`` or ``prefix`` (shown by ``compbench coders``).
        description: one line for ``compbench coders``.
        Options: a frozen dataclass of the coder's options (types drive command-line parsing).
        supports_context: True if ``context`` bytes (known to both sides) change the coding.
        runs_programs: True if decoding runs an external program. Such a coder is never built from
            a payload header alone: the user must name it (``compbench decode --coder`` or
            ``--allow-external``), because payloads come from strangers.
        streaming: True if :meth:`encode_stream` / :meth:`decode_stream` code piece by piece, so
            ``compbench encode``/``decode`` run in memory that does not grow with the input.
        isolate: True if the decoding library can crash on crafted input: untrusted decodes then
            run in a child process (:mod:`compbench.decoding`).
        portable: False if a payload is only known to decode on the machine that made it (a float
            model's probabilities can differ across CPUs and thread counts). Rows say so.
    """

    name: ClassVar[str] = "?"
    family: ClassVar[str] = "classical"
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    supports_context: ClassVar[bool] = False
    runs_programs: ClassVar[bool] = False
    streaming: ClassVar[bool] = False
    isolate: ClassVar[bool] = False
    portable: ClassVar[bool] = True
    #: Set by the harness around long work; a slow coder may call it with the bytes done so far.
    on_progress: Callable[[int], None] | None = None

    def __init__(self, **options: object) -> None:
        self.options = build_options(self.Options, options, self.name)

    # -- identity ---------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """Canonical ``name:opt=value:...`` string with every option; stored with results."""
        return format_spec(self.name, self.options)

    @property
    def located_spec(self) -> str:
        """Compact spec with non-default locators kept (how a nested coder spec is stored)."""
        return located_spec(self.name, self.options)

    @property
    def header_spec(self) -> str:
        """Compact spec (non-default options only) written into payload headers."""
        return format_spec(self.name, self.options, compact=True)

    def options_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self.options)

    def format_options(self) -> dict[str, object]:
        """Options that shape the payload (locators such as a model path left out): what a decoder
        rebuilt from the header and the artifact gets."""
        return {f.name: unlocated(getattr(self.options, f.name))
                for f in dataclasses.fields(self.options) if not is_locator(f)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"

    # -- training and artifact ---------------------------------------------------------------
    @property
    def needs_fit(self) -> bool:
        """True when :meth:`fit` must run before encoding (a trained dictionary, a model)."""
        return False

    def fit(self, train: bytes) -> None:
        """Learn from training bytes. Default: nothing to learn."""

    #: True for coders whose artifact holds part of the *evaluated* data (a paid prefix). The harness
    #: hands them the evaluated files (:meth:`fit_eval`) and flags their rows in every output.
    stores_eval_data: bool = False
    #: Bytes of text the artifact holds (a prefix coder's stored slice): what coverage is counted from.
    stored_bytes: int = 0

    def fit_eval(self, files: list[bytes]) -> None:
        """See the evaluated files before measuring (only if ``stores_eval_data``)."""

    def set_budget(self, budget: int) -> None:
        """The artifact budget of the run, given before :meth:`fit`: a coder that sizes itself (a
        stored prefix) uses it, or says clearly that it cannot fit. Default: ignored."""

    def artifact(self) -> bytes:
        """Bytes the decoder needs beyond the payload; counted as ``artifact_bytes``."""
        return b""

    def artifact_fingerprint(self) -> bytes:
        return fingerprint(self.artifact())

    def load_artifact(self, artifact: bytes) -> None:
        """Restore decoder state from :meth:`artifact` bytes. Default: no artifact expected."""
        if artifact:
            raise ArtifactError(f"{self.name} takes no artifact, but {len(artifact)} bytes were given")

    @classmethod
    def from_artifact(cls, artifact: bytes, **options: object) -> "Coder":
        """Rebuild a decoder from artifact bytes alone (plus the format options stored in the
        payload). The one way the harness and ``compbench decode`` build decoders."""
        coder = cls(**options)
        coder.load_artifact(artifact)
        return coder

    @classmethod
    def find_artifact(cls, fp: bytes) -> bytes | None:
        """Artifact bytes with fingerprint ``fp`` that ship with the coder (a packaged model), or
        None. Lets a payload made with a shipped artifact decode from any folder."""
        return None

    # -- raw coding (implemented by subclasses) ---------------------------------------------
    @abc.abstractmethod
    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        """Compress ``data``; the result need not record ``len(data)`` (the container does)."""

    @abc.abstractmethod
    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        """Invert :meth:`encode_body`. ``size`` is the original length from the container;
        implementations use it to bound output, so a corrupted body cannot exhaust memory."""

    def model_bits(self, data: bytes, context: bytes = b"") -> float | None:
        """Ideal code length ``-sum log2 p(byte | past)`` in bits, or None if not probabilistic."""
        return None

    # -- streaming (optional) ------------------------------------------------------------------
    #: Largest output piece a streaming decoder yields at once: the unit of its memory use.
    STREAM_PIECE = 1 << 20

    def encode_stream(self, pieces: Iterable[bytes], size: int, context: bytes = b"") -> Iterator[bytes]:
        """Compress ``size`` bytes given as ``pieces``; yield the body a piece at a time. Only for
        ``streaming`` coders: memory does not grow with ``size``."""
        raise NotImplementedError(f"{self.name} does not stream")

    def decode_stream(self, source: BinaryIO, size: int, context: bytes = b"") -> Iterator[bytes]:
        """Read a body from ``source`` (``read(n)``, ``b""`` at its end) and yield the ``size``
        original bytes in pieces of at most :attr:`STREAM_PIECE`. Raise PayloadError on a body
        that does not end cleanly after exactly ``size`` bytes."""
        raise NotImplementedError(f"{self.name} does not stream")

    # -- self-describing payloads ------------------------------------------------------------
    def encode(self, data: bytes, context: bytes = b"", chunk_size: int = 0) -> bytes:
        """``data`` -> self-describing payload (see :mod:`compbench.payload`)."""
        from .payload import pack

        return pack(self, data, context=context, chunk_size=chunk_size)

    def decode(self, payload: bytes, context: bytes = b"") -> bytes:
        """Payload -> original bytes, verified against the stored length and checksum."""
        from .payload import unpack

        return unpack(payload, self, context=context)
