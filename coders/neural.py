"""Neural coders: one :class:`~compbench.coder.Coder` per byte-LM architecture (``gru``, ``transformer``).

A thin adapter over the engine package :mod:`compbench.models`: the coder classes are made from the
architecture records (:mod:`compbench.models.archs`), so they register without importing torch;
the engine (torch, numpy, constriction) is imported when a coder first loads its model.

Body layout (inside the compbench container, which already stores the original length n)::

    varint B (streams)   varint S (segment length)   range-coder words (u32 little-endian)
    varint 0             the input, stored             (when coding would be larger than the input)

See :mod:`compbench.models.lockstep` for the stream layout and the match model. ``model_bits`` is the
cross-entropy of exactly the probabilities coded, under exactly this layout.

``model=`` is a locator option: it says where the artifact is, and never enters a payload header.
A decoder finds the artifact by the header's fingerprint (``--artifact``, the store, or the shipped
models), so a payload decodes in any folder.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from compbench.coder import Coder
from compbench.errors import ArtifactError, CompbenchError, PayloadError
from compbench.models import ArchInfo, find_shipped, on_register, shipped_models
from compbench.payload import read_varint, varint
from compbench.registry import register_coder
from compbench.spec import locator

NEURAL = ("neural",)
# constriction quantizes every probability to at least 2**-24, so a coded byte costs at least
# -log2(1 - 255 * 2**-24) bits: no valid body holds more than this many bytes per body byte.
MAX_RATIO = 370_000


@dataclass(frozen=True)
class NeuralOptions:
    """Options shared by the neural coders; each architecture sets its own default ``streams``."""

    model: str = locator("enwik8")  # shipped name, .cbnm file or `compbench train --out` folder
    streams: int = 64
    min_segment: int = 1024  # the shortest stream: a 20 KB input gets 19 streams and codes in seconds
    match: int = 3  # match model's minimum match length (bytes); 0: the byte-LM alone (mix=0 only)
    # 1: mix the LM, bit by bit, with context models and a match model shared by all streams
    # (models/mixing.py): better compression, slower. 0: the LM with a per-stream match model.
    mix: int = 1

    def __post_init__(self):
        if self.mix not in (0, 1):
            raise ValueError(f"mix={self.mix}: give 1 (context mixing) or 0 (the LM and a per-stream match model)")
        if not (self.match == 0 or 2 <= self.match <= 8):
            raise ValueError(f"match={self.match}: give 0 (off) or a minimum match length in [2, 8]")
        if not 1 <= self.streams <= 4096:
            raise ValueError(f"streams={self.streams} is out of range [1, 4096]")
        if self.min_segment < 1:
            raise ValueError("min_segment must be at least 1")


def pack_body(streams: int, seg: int, words: bytes, data: bytes) -> bytes:
    """The body layout above, from a lockstep coding of ``data``; the input stored instead when
    the model would expand it (already-compressed or random bytes can cost a text model 12+ bits
    per byte). Shared by every lockstep coder (the neural ones, ``golden-plate``)."""
    if not data:
        return varint(0) + varint(0)
    body = varint(streams) + varint(seg) + words
    return body if len(body) <= len(data) + 1 else varint(0) + data


def unpack_body(body: bytes, size: int) -> tuple[bytes | None, int, int, int]:
    """Invert :func:`pack_body`'s framing: ``(stored, streams, seg, pos)``. ``stored`` is the output
    when no coding is needed (stored input, or empty input), else None, and the range-coder words
    start at ``pos``. The caller checks the layout against its own rule before allocating."""
    streams, pos = read_varint(body, 0, "stream count")
    if streams == 0 and size > 0:  # stored: the model would have expanded the input
        if len(body) - pos != size:
            raise PayloadError("payload body is corrupted (stored bytes have the wrong length)")
        return bytes(body[pos:]), 0, 0, pos
    seg, pos = read_varint(body, pos, "segment length")
    if size == 0:
        if streams or seg or pos != len(body):
            raise PayloadError("payload body is corrupted (streams given for empty input)")
        return b"", 0, 0, pos
    if (len(body) - pos) % 4:
        raise PayloadError("payload body is corrupted (range-coder words are not whole)")
    return None, streams, seg, pos


def _engine_error(err: Exception) -> ArtifactError:
    return ArtifactError(str(err))


class NeuralCoder(Coder):
    """The coding loop of :mod:`compbench.models.lockstep` behind the Coder interface."""

    family = "neural"
    arch = "?"
    arch_options: tuple = ()  # the architecture's CodingOptions (models/archs.py)
    max_ratio = MAX_RATIO
    # Context (a prefix coder's stored text) is searched by the match model; the LM itself starts
    # every stream from BOS, so priming helps only where the evaluated text repeats the context.
    supports_context = True

    def __init__(self, **options):
        super().__init__(**options)
        # Context is searched by a match model; without one (mix=0, match=0) it changes nothing.
        self.supports_context = self.options.mix == 1 or self.options.match > 0
        self._blob: bytes | None = None
        self._engine = None
        self._header: dict | None = None
        # Model bits of recent encodes, so measuring does not code each input twice. Chunked mode
        # encodes every chunk before asking: keep many (a key and a float each).
        self._bits: dict[bytes, float] = {}

    # -- artifact --------------------------------------------------------------------------
    def _resolve_model(self) -> bytes:
        from pathlib import Path

        name = self.options.model
        shipped = shipped_models()
        if f"{self.arch}-{name}" in shipped:
            return shipped[f"{self.arch}-{name}"].read_bytes()
        path = Path(name).expanduser()
        if path.is_dir():
            path = path / "model.cbnm"
        if path.is_file():
            return path.read_bytes()
        have = ", ".join(k.split("-", 1)[1] for k in shipped if k.startswith(self.arch + "-")) or "none"
        raise CompbenchError(
            f"{self.name}: no model {name!r}: not a shipped model (shipped: {have}) and no such file or "
            f"`compbench train --out` directory"
        )

    def _load(self) -> None:
        if self._engine is not None:
            return
        from compbench.models import artifact, intops

        # The engine refuses a misspelt route with a ValueError; here it is the user's one-line error.
        route = os.environ.get("COMPBENCH_INT8_ROUTE", "").strip()
        if route and route not in intops.INT8_ROUTES:
            raise CompbenchError(f"COMPBENCH_INT8_ROUTE must be one of {', '.join(intops.INT8_ROUTES)}, not {route!r}")
        if self._blob is None:
            self._blob = self._resolve_model()
        try:
            header, engine = artifact.load_engine(self._blob)
        except artifact.ArtifactError as err:
            raise _engine_error(err) from None
        if header["arch"] != self.arch:
            raise ArtifactError(f"{self.name} was given a {header['arch']} artifact")
        if self.arch_options:  # the architecture's own options (the transformer's window)
            engine = engine.for_coding(**{o.name: getattr(self.options, o.name) for o in self.arch_options})
        self._header, self._engine = header, engine

    def artifact(self) -> bytes:
        self._load()
        return self._blob

    def load_artifact(self, artifact: bytes) -> None:
        self._blob, self._engine, self._bits = bytes(artifact), None, {}  # another model: forget its bits
        self._load()

    @classmethod
    def find_artifact(cls, fp: bytes) -> bytes | None:
        return find_shipped(fp, cls.arch)

    @property
    def engine(self):
        """The integer engine that computes this coder's probabilities (loads the model)."""
        self._load()
        return self._engine

    @property
    def model_info(self) -> dict:
        self._load()
        return self._header

    def _coding(self) -> tuple:
        o = self.options
        return o.streams, o.min_segment, o.match

    def _mix(self) -> dict:
        return {"mix": self.options.mix}

    # -- coding ----------------------------------------------------------------------------
    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        from compbench.models import lockstep

        self._load()
        if not data:
            return pack_body(0, 0, b"", data)
        streams, seg, words, bits = lockstep.encode(self._engine, bytes(data), *self._coding(), progress=self.on_progress,
                                                    context=bytes(context), **self._mix())
        self._remember(self._bits_key(data, context), bits)
        return pack_body(streams, seg, words, data)

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        from compbench.models import lockstep

        stored, streams, seg, pos = unpack_body(body, size)
        if stored is not None:
            return stored
        # Checked before anything is allocated: the layout must be the one the encoder derives.
        if streams < 1 or seg < 1 or streams * seg < size or (streams - 1) * seg >= size:
            raise PayloadError(f"payload body is corrupted (stream layout {streams} x {seg} does not fit {size} bytes)")
        if streams > self.options.streams:
            raise PayloadError(f"payload body is corrupted ({streams} streams; this coder writes at most {self.options.streams})")
        self._load()
        try:
            return lockstep.decode(self._engine, bytes(body[pos:]), size, streams, seg, self.options.match,
                                   progress=self.on_progress, context=bytes(context), **self._mix())
        except (ValueError, RuntimeError) as err:
            raise PayloadError(f"payload body is corrupted (range decoder: {err})") from None

    def probability_digest(self, data: bytes, stepwise: bool = False, context: bytes = b"") -> str:
        """sha256 of every float64 probability the coder computes for ``data`` (determinism tests);
        ``stepwise`` forces the decoder's one-step-at-a-time path."""
        from compbench.models import lockstep

        self._load()
        return lockstep.probability_digest(self._engine, bytes(data), *self._coding(), stepwise=stepwise,
                                           context=bytes(context), **self._mix())

    @staticmethod
    def _bits_key(data: bytes, context: bytes) -> bytes:
        return hashlib.sha256(data).digest() + hashlib.sha256(context).digest()

    def model_bits(self, data: bytes, context: bytes = b"") -> float:
        from compbench.models import lockstep

        key = self._bits_key(data, context)
        if key not in self._bits:
            self._load()
            self._remember(key, lockstep.model_bits(self._engine, bytes(data), *self._coding(), context=bytes(context),
                                                    **self._mix()))
        return self._bits[key]

    def _remember(self, key: bytes, bits: float) -> None:
        if len(self._bits) >= 65536:
            self._bits.pop(next(iter(self._bits)))  # the oldest (dicts keep insertion order)
        self._bits[key] = bits


def coder_class(info: ArchInfo) -> type[NeuralCoder]:
    """The coder class of one architecture record, registered under the architecture's name: the
    shared options with the architecture's own ``streams`` default, then its own options."""

    def check(self):
        NeuralOptions.__post_init__(self)
        for o in info.options:
            if not o.lo <= getattr(self, o.name) <= o.hi:
                raise ValueError(f"{o.name}={getattr(self, o.name)} is out of range [{o.lo}, {o.hi}]")

    options = dataclass(frozen=True)(type("Options", (NeuralOptions,), {
        "__annotations__": {"streams": int, **{o.name: int for o in info.options}},
        "streams": info.streams, **{o.name: o.default for o in info.options}, "__post_init__": check,
        "__module__": __name__, "__qualname__": f"{info.name}.Options",
    }))
    cls = type(f"{info.name.title().replace('-', '')}Coder", (NeuralCoder,), {
        "arch": info.name, "description": info.description, "Options": options, "__module__": __name__,
        "arch_options": info.options,
    })
    return register_coder(info.name, groups=NEURAL)(cls)


CODERS: dict[str, type[NeuralCoder]] = {}
on_register(lambda info: CODERS.setdefault(info.name, coder_class(info)))
