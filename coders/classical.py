"""Classical coders: identity, zlib, bz2, lzma/xz, zstd (optional dictionary), brotli and PPMd.

Each body is exactly what the library writes (``lzma:preset=9e`` gives ``lzma.compress(data,
preset=9 | lzma.PRESET_EXTREME)`` byte for byte), so compbench payload sizes equal library sizes plus
the documented container overhead. Decoders are given the original length and never produce more
than that plus one byte, so a corrupted body cannot balloon memory; trailing garbage is rejected.

Defaults are each library's strongest standard setting, which is what a leaderboard compares:
zlib 9, bz2 9, xz -9e, zstd --ultra -22, brotli -q11 -w24, PPMd var. H order 8 with 256 MiB.

Every coder here also streams (``encode_stream``/``decode_stream``), through each library's own
incremental API, so ``compbench encode``/``decode`` code files of any size in flat memory. Streaming
decoders yield at most ``STREAM_PIECE`` bytes at a time, so a decompression bomb never gets further
than the payload's (capped) length. The streamed bodies equal the one-shot ones for zlib, bz2, xz,
brotli and PPMd; zstd's streamed frames can differ from its one-shot frames by a few bytes.
"""

from __future__ import annotations

import bz2
import lzma
import re
import zlib
from dataclasses import dataclass
from typing import Iterator

from compbench.coder import Coder, NoOptions
from compbench.errors import ArtifactError, CompbenchError, PayloadError
from compbench.registry import register_coder

CLASSICAL = ("classical",)


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is out of range [{lo}, {hi}]")


def _finish(out: bytes, size: int, finished: bool, leftover: bytes = b"") -> bytes:
    """Shared end-of-stream checks for the streaming decoders."""
    if len(out) > size:
        raise PayloadError(f"payload body is corrupted (decodes to more than {size} bytes)")
    if not finished:
        raise PayloadError("payload body is truncated (stream ended early)")
    if leftover:
        raise PayloadError("payload body is corrupted (trailing bytes after the compressed stream)")
    return out


def _drain(d, source, size: int, piece: int, decode=None) -> Iterator[bytes]:
    """Pull-decode with a bz2/lzma/pyppmd-style decompressor (``decompress(data, max_length)``,
    ``needs_input``, ``eof``, ``unused_data``): at most ``piece`` bytes per call, at most size + 1 in all."""
    decode = decode or d.decompress
    left = size + 1  # one byte past the claim is enough to prove a body too long
    data = b""
    while left > 0:
        if d.needs_input:
            data = source.read(1 << 16)
            if not data:
                break
        else:
            data = b""
        out = decode(data, min(piece, left))
        left -= len(out)
        if out:
            yield out
        if d.eof:
            break
    if not d.eof:
        raise PayloadError("payload body is truncated (stream ended early)")
    if d.unused_data or source.read(1):
        raise PayloadError("payload body is corrupted (trailing bytes after the compressed stream)")


def _feed(pieces, step: int = 1 << 20):
    """Re-cut input pieces to at most ``step`` bytes (without copying)."""
    for p in pieces:
        view = memoryview(p)
        for i in range(0, len(view), step):
            yield view[i : i + step]


@register_coder("identity", groups=("baseline",))
class IdentityCoder(Coder):
    """Stores bytes as they are: the 8 bpb baseline (plus container overhead)."""

    description = "stores the bytes unchanged (baseline, lzbench's memcpy)"
    Options = NoOptions
    supports_context = True  # trivially: context changes nothing

    # Copy through a memoryview: bytes(b) of a bytes object is the same object, and a baseline that
    # does no work at all would report meaningless speeds. lzbench's baseline is a memcpy too.
    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        return bytes(memoryview(data))

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        return bytes(memoryview(body))

    streaming = True

    def encode_stream(self, pieces, size, context=b""):
        for p in pieces:
            yield bytes(p)

    def decode_stream(self, source, size, context=b""):
        left = size + 1
        while left > 0:
            data = source.read(min(self.STREAM_PIECE, left))
            if not data:
                return
            left -= len(data)
            yield data


@register_coder("zlib", groups=CLASSICAL)
class ZlibCoder(Coder):
    description = "zlib/DEFLATE (level 0-9); context primes the 32 KB window (zdict)"
    supports_context = True

    @dataclass(frozen=True)
    class Options:
        level: int = 9

        def __post_init__(self):
            _check_range("level", self.level, 0, 9)

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        if context:
            c = zlib.compressobj(self.options.level, zdict=context[-32768:])
            return c.compress(data) + c.flush()
        return zlib.compress(data, self.options.level)

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        if not context:
            # One-shot decode with an exact-size buffer is ~10% faster than a bounded decompressobj,
            # and DEFLATE cannot expand more than ~1032x, so a corrupted body cannot balloon memory.
            # A truncated stream raises; the container's CRC catches everything else.
            return _finish(zlib.decompress(body, bufsize=max(size, 1)), size, True)
        d = zlib.decompressobj(zdict=context[-32768:])
        out = d.decompress(body, size + 1)
        return _finish(out, size, d.eof, d.unused_data or d.unconsumed_tail)

    streaming = True

    def encode_stream(self, pieces, size, context=b""):
        c = zlib.compressobj(self.options.level, zdict=context[-32768:]) if context else zlib.compressobj(self.options.level)
        for p in _feed(pieces):
            yield c.compress(p)
        yield c.flush()

    def decode_stream(self, source, size, context=b""):
        d = zlib.decompressobj(zdict=context[-32768:]) if context else zlib.decompressobj()
        left = size + 1
        while left > 0 and not d.eof:
            data = d.unconsumed_tail or source.read(1 << 16)
            if not data:
                break
            out = d.decompress(data, min(self.STREAM_PIECE, left))
            left -= len(out)
            if out:
                yield out
        if not d.eof:
            raise PayloadError("payload body is truncated (stream ended early)")
        if d.unused_data or d.unconsumed_tail or source.read(1):
            raise PayloadError("payload body is corrupted (trailing bytes after the compressed stream)")


@register_coder("bz2", groups=CLASSICAL)
class Bz2Coder(Coder):
    description = "bzip2 (block size 1-9 x 100 KB)"

    @dataclass(frozen=True)
    class Options:
        level: int = 9

        def __post_init__(self):
            _check_range("level", self.level, 1, 9)

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        return bz2.compress(data, self.options.level)

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        if not body:
            raise PayloadError("payload body is truncated (empty bzip2 stream)")
        d = bz2.BZ2Decompressor()
        out = d.decompress(body, size + 1)
        return _finish(out, size, d.eof, d.unused_data)

    streaming = True

    def encode_stream(self, pieces, size, context=b""):
        c = bz2.BZ2Compressor(self.options.level)
        for p in _feed(pieces):
            yield c.compress(p)
        yield c.flush()

    def decode_stream(self, source, size, context=b""):
        return _drain(bz2.BZ2Decompressor(), source, size, self.STREAM_PIECE)


@register_coder("lzma", groups=CLASSICAL)
class LzmaCoder(Coder):
    description = "xz/LZMA2 (preset 0-9, 'e' suffix = extreme), .xz format as lzma.compress"

    @dataclass(frozen=True)
    class Options:
        preset: str = "9e"

        def __post_init__(self):
            if not re.fullmatch(r"[0-9]e?", str(self.preset)):
                raise ValueError(f"preset={self.preset!r} must be 0-9, optionally followed by 'e' (e.g. 9e)")

    def _preset(self) -> int:
        p = str(self.options.preset)
        return int(p[0]) | (lzma.PRESET_EXTREME if p.endswith("e") else 0)

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=self._preset())

    # Every xz stream compbench writes (presets 0-9e) decodes in 65 MiB; a header claiming a larger
    # dictionary is refused by liblzma instead of being allocated.
    MEMLIMIT = 128 << 20

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=self.MEMLIMIT)
        out = d.decompress(body, size + 1)
        return _finish(out, size, d.eof, d.unused_data)

    streaming = True

    def encode_stream(self, pieces, size, context=b""):
        c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=self._preset())
        for p in _feed(pieces):
            yield c.compress(p)
        yield c.flush()

    def decode_stream(self, source, size, context=b""):
        return _drain(lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=self.MEMLIMIT), source, size, self.STREAM_PIECE)


@register_coder("zstd", groups=CLASSICAL)
class ZstdCoder(Coder):
    """zstd through python-zstandard. ``dict_size>0`` makes :meth:`fit` build a dictionary from the
    training bytes; that dictionary is the artifact, counted like model weights. ``dict_type=raw``
    uses the last ``dict_size`` training bytes verbatim (a stored prefix); ``trained`` runs zstd's
    COVER trainer. Context bytes become a raw-content dictionary, the zstd way of priming."""

    description = "zstd (level -7..22, long=window log for long matching, dict_size for a trained dictionary)"
    supports_context = True

    @dataclass(frozen=True)
    class Options:
        level: int = 22
        long: int = 0
        dict_size: int = 0
        dict_type: str = "trained"

        def __post_init__(self):
            _check_range("level", self.level, -7, 22)
            if self.long:
                _check_range("long", self.long, 10, 31)
            _check_range("dict_size", self.dict_size, 0, 1 << 30)
            if self.dict_type not in ("trained", "raw"):
                raise ValueError(f"dict_type={self.dict_type!r} must be 'trained' or 'raw'")

    def __init__(self, **options):
        super().__init__(**options)
        self._dict: bytes = b""

    @property
    def needs_fit(self) -> bool:
        return self.options.dict_size > 0 and not self._dict

    def fit(self, train: bytes) -> None:
        import zstandard

        size = self.options.dict_size
        if size == 0:
            return
        if not train:
            raise CompbenchError("zstd: dict_size needs training bytes (run with --split test to train on the train split)")
        if self.options.dict_type == "raw":
            self._dict = bytes(train[-size:])
            return
        step = 4096  # zstd's trainer wants many small samples (about 100x the dictionary in total)
        samples = [train[i : i + step] for i in range(0, min(len(train), 200 * size), step)]
        try:
            self._dict = zstandard.train_dictionary(size, samples, level=max(self.options.level, 1)).as_bytes()
        except zstandard.ZstdError as err:
            raise CompbenchError(f"zstd: dictionary training failed ({err}); give more training bytes") from None

    def artifact(self) -> bytes:
        return self._dict

    def load_artifact(self, artifact: bytes) -> None:
        if artifact and not self.options.dict_size:
            raise ArtifactError("zstd without dict_size takes no artifact")
        if self.options.dict_size and not artifact:
            raise ArtifactError("zstd with dict_size needs its dictionary artifact")
        self._dict = bytes(artifact)

    def _dict_obj(self, context: bytes):
        import zstandard

        if context and self._dict:
            raise CompbenchError("zstd: use either a dictionary (dict_size) or context bytes, not both")
        raw = context or (self._dict if self.options.dict_type == "raw" else b"")
        if raw:
            return zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        if self._dict:
            return zstandard.ZstdCompressionDict(self._dict)
        return None

    def _cctx(self, context: bytes):
        import zstandard

        if self.needs_fit:
            raise CompbenchError("zstd: dict_size is set but no dictionary was trained (call fit first)")
        o = self.options
        kwargs = {"level": o.level, "write_checksum": False, "write_dict_id": False}
        if o.long:
            kwargs = {
                "compression_params": zstandard.ZstdCompressionParameters.from_level(
                    o.level, window_log=o.long, enable_ldm=True, write_checksum=0, write_dict_id=0
                )
            }
        return zstandard.ZstdCompressor(dict_data=self._dict_obj(context), **kwargs)

    def _dctx(self, size: int, context: bytes):
        import zstandard

        # zstd sizes its window to the input (and dictionary), so a valid frame never needs more than
        # the next power of two above them (or the long= window); a header claiming more is refused.
        need = max(1 << 10, 1 << (size + len(context or self._dict)).bit_length(), 1 << (self.options.long or 10))
        return zstandard.ZstdDecompressor(dict_data=self._dict_obj(context), max_window_size=min(need, 1 << 31))

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        return self._cctx(context).compress(data)

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        out = self._dctx(size, context).decompress(body, max_output_size=max(size, 1), allow_extra_data=False)
        return _finish(out, size, True)

    streaming = True

    def encode_stream(self, pieces, size, context=b""):
        c = self._cctx(context).compressobj(size=size)
        for p in _feed(pieces):
            yield c.compress(p)
        yield c.flush()

    def decode_stream(self, source, size, context=b""):
        # read_across_frames: bytes after the frame are decoded as another frame, so trailing garbage
        # is an error and trailing frames overrun the length check.
        reader = self._dctx(size, context).stream_reader(source, read_size=1 << 16, read_across_frames=True)
        left = size + 1
        while left > 0:
            out = reader.read(min(self.STREAM_PIECE, left))
            if not out:
                return
            left -= len(out)
            yield out


@register_coder("brotli", groups=CLASSICAL)
class BrotliCoder(Coder):
    description = "brotli (quality 0-11, lgwin 10-24 window log, mode generic|text|font)"

    @dataclass(frozen=True)
    class Options:
        quality: int = 11
        lgwin: int = 24
        mode: str = "generic"

        def __post_init__(self):
            _check_range("quality", self.quality, 0, 11)
            _check_range("lgwin", self.lgwin, 10, 24)
            if self.mode not in ("generic", "text", "font"):
                raise ValueError(f"mode={self.mode!r} must be generic, text or font")

    def _mode(self):
        import brotli

        return {"generic": brotli.MODE_GENERIC, "text": brotli.MODE_TEXT, "font": brotli.MODE_FONT}[self.options.mode]

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        import brotli

        return brotli.compress(data, mode=self._mode(), quality=self.options.quality, lgwin=self.options.lgwin)

    streaming = True

    def encode_stream(self, pieces, size, context=b""):
        import brotli

        c = brotli.Compressor(mode=self._mode(), quality=self.options.quality, lgwin=self.options.lgwin)
        for p in _feed(pieces):
            yield c.process(bytes(p))
        yield c.finish()

    def decode_stream(self, source, size, context=b""):
        import brotli

        d = brotli.Decompressor()
        left, exhausted = size + 1, False
        while left > 0 and not d.is_finished():
            # brotli may still hold output after its input is spent (can_accept_more_data() is then
            # already True): keep calling with no input until nothing more comes out.
            data = b""
            if not exhausted and d.can_accept_more_data():
                data = source.read(1 << 16)
                exhausted = not data
            out = d.process(data, output_buffer_limit=min(self.STREAM_PIECE, left))
            left -= len(out)
            if out:
                yield out
            elif not data:
                break
        if not d.is_finished():
            raise PayloadError("payload body is truncated (stream ended early)")
        if source.read(1):
            raise PayloadError("payload body is corrupted (trailing bytes after the compressed stream)")

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        import brotli

        d = brotli.Decompressor()
        out = d.process(body, output_buffer_limit=size + 1)
        return _finish(out, size, d.is_finished())


@register_coder("ppmd", groups=CLASSICAL)
class PpmdCoder(Coder):
    """PPMd variant H (7-Zip's PPMd) through pyppmd. The container's length field replaces an end
    marker.

    Working around pyppmd 1.3 bugs that compbench's round-trip checks caught: its encoder, handed a
    large buffer in one call, can write a stream that does not decode (Calgary ``obj2`` at order 8,
    ``geo`` at order 4), so input goes in 4 KiB pieces, which round-trips every Canterbury, Calgary
    and enwik8-test file at orders 2-16; and its decoder stops when input runs out even if symbols
    remain, so the body is followed by zero padding it may read. Variant I (Ppmd8) is not offered:
    it fails to round-trip the last 1,000,000 bytes of the enwik8 head.

    Priming with context (bytes both sides know): pyppmd cannot update its model without coding,
    so the encoder codes the context and then the data as one stream and keeps only what it emitted
    after the context. The decoder knows the context, so it codes it too and gets the same emitted
    bytes back (a range coder's emitted bytes are final), puts them in front of the body, decodes
    context and data, and drops the context. The body pays only the few bytes of coder state the
    context leaves pending."""

    description = "PPMd var. H via pyppmd (order 2-64, mem_mib model memory); context primes the model"
    supports_context = True
    PIECE = 4096
    PADDING = bytes(8)

    @dataclass(frozen=True)
    class Options:
        order: int = 8
        mem_mib: int = 256

        def __post_init__(self):
            _check_range("order", self.order, 2, 64)
            _check_range("mem_mib", self.mem_mib, 1, 4000)

    def _primed(self, context: bytes):
        """A fresh encoder that has coded ``context``, and the bytes it emitted doing so."""
        import pyppmd

        enc = pyppmd.Ppmd7Encoder(self.options.order, self.options.mem_mib << 20)
        one = _OneBuffer(self.PIECE)
        view = memoryview(context)
        emitted = b"".join(enc.encode(one(view[i : i + self.PIECE])) for i in range(0, len(context), self.PIECE))
        return enc, emitted

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        enc, _ = self._primed(context)
        one = _OneBuffer(self.PIECE)
        view = memoryview(data)
        parts = [enc.encode(one(view[i : i + self.PIECE])) for i in range(0, len(data), self.PIECE)]
        return b"".join(parts) + enc.flush()

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        import pyppmd

        if size == 0:
            return b""
        prefix = self._primed(context)[1] if context else b""
        if len(prefix) + len(body) < 5:  # the range coder starts with 5 bytes; pyppmd rejects less
            raise PayloadError("payload body is truncated (PPMd stream shorter than 5 bytes)")
        dec = pyppmd.Ppmd7Decoder(self.options.order, self.options.mem_mib << 20)
        out = dec.decode(prefix + bytes(body) + self.PADDING, len(context) + size)
        return _finish(out[len(context) :], size, True)

    streaming = True
    isolate = True  # pyppmd can crash its process on a crafted body: untrusted decodes run in a child

    def encode_stream(self, pieces, size, context=b""):
        enc, _ = self._primed(context)
        one = _OneBuffer(self.PIECE)
        for p in _feed(pieces, self.PIECE):  # the same 4 KiB calls as encode_body: the same bytes
            yield enc.encode(one(p))
        yield enc.flush()

    def decode_stream(self, source, size, context=b""):
        import pyppmd

        if size == 0:  # as decode_body: the encoder's flush bytes for empty input carry nothing
            while source.read(1 << 16):
                pass
            return
        dec = pyppmd.Ppmd7Decoder(self.options.order, self.options.mem_mib << 20)
        prefix = self._primed(context)[1] if context else b""
        padded = _Padded(source, self.PADDING, prefix)
        one = _OneBuffer(1 << 16)
        skip, left = len(context), len(context) + size  # the context is decoded again, then dropped
        while left > 0:
            data = padded.read(1 << 16) if dec.needs_input else b""
            if not data and dec.needs_input:
                raise PayloadError("payload body is truncated (stream ended early)")
            out = dec.decode(one(data), min(self.STREAM_PIECE, left))
            left -= len(out)
            if skip:
                dropped = min(skip, len(out))
                out, skip = out[dropped:], skip - dropped
            if out:
                yield out
        if padded.body_bytes < 5:
            raise PayloadError("payload body is truncated (PPMd stream shorter than 5 bytes)")


class _OneBuffer:
    """pyppmd 1.3 never releases the buffers it is handed, so every input object it sees stays alive:
    streaming 1 GB through it grew the process by 1 GB. Each piece is therefore copied into this one
    buffer and passed as a view of it, so what leaks is references to a single object."""

    def __init__(self, size: int):
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)

    def __call__(self, piece) -> memoryview:
        n = len(piece)
        self.buf[:n] = piece  # same-length slice assignment: allowed while views are exported
        return self.view[:n]


class _Padded:
    """A body source followed by zero padding (pyppmd's decoder stops when its input runs out)."""

    def __init__(self, source, padding: bytes, prefix: bytes = b""):
        self.source, self.padding, self.body_bytes, self.prefix = source, padding, 0, prefix

    def read(self, n: int) -> bytes:
        # Fill the whole request: pyppmd's decoder misbehaves when fed many tiny pieces.
        data, self.prefix = self.prefix[:n], self.prefix[n:]  # a primed stream's regenerated start
        while len(data) < n:
            more = self.source.read(n - len(data))
            if not more:
                break
            data += more
        if data:
            self.body_bytes += len(data)
            return data
        out, self.padding = self.padding, b""
        return out
