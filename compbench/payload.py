"""The compbench payload container: every payload describes itself and verifies its own decode.

Format version 2 (written by this compbench) can be written front to back and read as a stream, so
``compbench encode``/``decode`` handle files far larger than memory. Integers are unsigned LEB128
varints unless sized; CRCs are CRC-32, little-endian::

    header   magic b"\\x89CBP" (high bit set: catches 7-bit transfers, like PNG), version (2),
             varint len(spec), spec (UTF-8: the coder name plus non-default *format* options,
             "lzma" for xz -9e, "zstd:level=19"), artifact fingerprint sha256(artifact)[:8],
             varint original length n, varint chunk size (0 = one stream), CRC of the header so far
    body     one stream, or one per chunk of ``chunk size`` bytes (each coded independently);
             a stream is pieces, then varint 0
    piece    varint L (1 .. 2**24), L bytes of the coder's output, CRC of those L bytes
    trailer  CRC of the n original bytes

Overhead (:func:`overhead`): ``22 + len(spec) + len(varint(n)) + len(varint(chunk))`` bytes of
header and trailer, plus ``len(varint(L)) + 4`` per piece and 1 per stream. Writers cut pieces at
1 MiB, so default ``lzma`` on 100 KB costs 38 bytes (version 1: 34); a 2 KB chunk costs 7 (was 2).

Why piece checksums: each piece is checked before any decoder sees it. Some decoders crash the
process on corrupted input (pyppmd 1.3 does, now and then), so accidental corruption must never
reach them; a crafted body with valid checksums can, which is why ``compbench decode`` runs such
decoders in a child process (:mod:`compbench.decoding`).

Untrusted input: nothing here allocates what a header merely claims. ``n`` is checked against the
decode limit before any decoding; every piece length against the 16 MiB cap and the bytes actually
present; streams are read one after another, so a claimed chunk count costs nothing until real bytes
back it. Every failure is a :class:`~compbench.errors.PayloadError` with one line of explanation.

Version 1 (compbench 0.1): ``magic, 1, spec, fingerprint, varint n, varint chunk size, CRC of the
original, CRC of the body, CRC of the header``, then the body (chunked: a varint length per chunk,
then the bodies). It is read in memory only.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

from .coder import FINGERPRINT_BYTES
from .errors import ArtifactError, PayloadError

MAGIC = b"\x89CBP"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
PIECE_BYTES = 1 << 20  # writers cut pieces here
PIECE_MAX = 1 << 24  # readers refuse longer pieces: a claimed length is never allocated beyond this
SPEC_MAX = 4096
DEFAULT_MAX_OUTPUT = 1 << 32  # 4 GiB; `compbench decode --max-output` raises it


def varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    for i in range(10):  # 10 bytes hold 64 bits; more means garbage
        if pos + i >= len(buf):
            raise PayloadError(f"payload is truncated (inside the {what} field)")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos + i + 1
    raise PayloadError(f"payload header is corrupted (the {what} field is not a valid varint)")


def _crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


def chunk_lengths(size: int, chunk_size: int) -> Iterator[int]:
    """Original length of each stream, lazily: a claimed chunk count allocates nothing."""
    if chunk_size <= 0 or size == 0:
        yield size
        return
    for start in range(0, size, chunk_size):
        yield min(chunk_size, size - start)


@dataclass(frozen=True)
class Header:
    spec: str
    fingerprint: bytes
    size: int
    chunk_size: int
    header_bytes: int
    version: int = FORMAT_VERSION
    crc: int | None = None  # version 1: CRC of the original, in the header
    body_crc: int | None = None  # version 1: CRC of the whole body

    def chunk_sizes(self) -> Iterator[int]:
        return chunk_lengths(self.size, self.chunk_size)

    @property
    def n_streams(self) -> int:
        return 1 if self.chunk_size == 0 or self.size == 0 else -(-self.size // self.chunk_size)


# -- writing ------------------------------------------------------------------------------------
def make_header(spec: str, fp: bytes, size: int, chunk_size: int) -> bytes:
    spec_b = spec.encode("utf-8")
    if len(spec_b) > SPEC_MAX:
        raise PayloadError(f"coder spec is too long for a payload header ({len(spec_b)} bytes)")
    head = MAGIC + bytes([FORMAT_VERSION]) + varint(len(spec_b)) + spec_b + fp + varint(size) + varint(chunk_size)
    return head + _crc(head)


def frame(body_pieces: Iterable[bytes]) -> Iterator[bytes]:
    """A stream's framing: the body, however a coder hands it over, cut into pieces of PIECE_BYTES
    (the last one shorter), each as ``varint L, bytes, CRC``, then the end marker. Small outputs are
    gathered first, so a streaming coder's many little writes cost one piece header per MiB."""
    buf = bytearray()

    def emit(part) -> Iterator[bytes]:
        yield varint(len(part))
        yield part if isinstance(part, memoryview) else bytes(part)  # views of a body are not copied
        yield _crc(part)

    for piece in body_pieces:
        if not buf and len(piece) >= PIECE_BYTES:  # large one-shot bodies: no copy into the buffer
            view = memoryview(piece)
            whole = len(view) - len(view) % PIECE_BYTES
            for i in range(0, whole, PIECE_BYTES):
                yield from emit(view[i : i + PIECE_BYTES])
            buf += view[whole:]
            continue
        buf += piece
        while len(buf) >= PIECE_BYTES:
            yield from emit(buf[:PIECE_BYTES])
            del buf[:PIECE_BYTES]
    if buf:
        yield from emit(buf)
    yield b"\x00"


def overhead(spec: str, size: int, chunk_size: int = 0, body_lengths: Iterable[int] | None = None) -> int:
    """Exact container bytes for bodies of the given lengths (default: one empty-free stream of one piece)."""
    fixed = len(make_header(spec, b"\0" * FINGERPRINT_BYTES, size, chunk_size)) + 4
    lengths = [1] if body_lengths is None else list(body_lengths)
    per = 0
    for n in lengths:
        full, rest = divmod(n, PIECE_BYTES)
        per += 1 + full * (len(varint(PIECE_BYTES)) + 4) + (len(varint(rest)) + 4 if rest else 0)
    return fixed + per


def chunks_of(data: bytes, chunk_size: int) -> list[bytes]:
    if chunk_size <= 0:
        return [data]
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]


def encode_bodies(coder, data: bytes, context: bytes, chunk_size: int) -> list[bytes]:
    """The coder's raw output: one body, or one per independent chunk."""
    return [coder.encode_body(c, context) for c in chunks_of(data, chunk_size)]


def assemble_parts(spec: str, fp: bytes, data: bytes, bodies: list[bytes], chunk_size: int) -> list[bytes]:
    """A payload as a list of byte strings (the bodies are not copied): header, framed bodies, trailer."""
    parts = [make_header(spec, fp, len(data), max(chunk_size, 0))]
    for body in bodies:
        parts.extend(frame([body]))
    parts.append(_crc(data))
    return parts


def assemble(spec: str, fp: bytes, data: bytes, bodies: list[bytes], chunk_size: int) -> bytes:
    return b"".join(assemble_parts(spec, fp, data, bodies, chunk_size))


def pack(coder, data: bytes, context: bytes = b"", chunk_size: int = 0) -> bytes:
    data = bytes(data)
    bodies = encode_bodies(coder, data, context, chunk_size)
    return assemble(coder.header_spec, coder.artifact_fingerprint(), data, bodies, chunk_size)


def write_stream(coder, read: Callable[[int], bytes], size: int, write: Callable[[bytes], object],
                 context: bytes = b"", chunk_size: int = 0, progress: Callable[[int], None] | None = None) -> int:
    """Encode ``size`` bytes pulled from ``read`` and write the payload front to back; returns its
    length. Streaming coders keep memory flat; others get one chunk (or the whole input) at a time."""
    total = 0

    def out(b: bytes) -> None:
        nonlocal total
        if b:
            write(b)
            total += len(b)

    out(make_header(coder.header_spec, coder.artifact_fingerprint(), size, max(chunk_size, 0)))
    crc, done = 0, 0
    for n in chunk_lengths(size, chunk_size):
        def pieces(n=n):
            nonlocal crc, done
            left = n
            while left:
                piece = read(min(left, PIECE_BYTES))
                if not piece:
                    raise PayloadError(f"input ended after {done:,} of {size:,} bytes")
                left -= len(piece)
                crc = zlib.crc32(piece, crc)
                done += len(piece)
                if progress:
                    progress(done)
                yield piece

        if coder.streaming:
            body_iter = coder.encode_stream(pieces(), n, context)
        else:
            body_iter = [coder.encode_body(b"".join(pieces()), context)]
        for part in frame(body_iter):
            out(part)
    out(struct.pack("<I", crc))
    return total


# -- reading ------------------------------------------------------------------------------------
class PartsReader:
    """A payload held as a list of parts (header, body views, checksums), read like a file without
    joining it: measuring a file then holds its input, its bodies and one decoded copy, as lzbench does."""

    def __init__(self, parts: list):
        self.parts, self.i, self.off = parts, 0, 0

    def read(self, n: int = -1) -> bytes:
        out = []
        while self.i < len(self.parts) and (n < 0 or n > 0):
            part = memoryview(self.parts[self.i])[self.off :]
            take = part if n < 0 else part[:n]
            out.append(bytes(take))
            if n >= 0:
                n -= len(take)
            if len(take) == len(part):
                self.i, self.off = self.i + 1, 0
            else:
                self.off += len(take)
        return b"".join(out)


class _Reader:
    """Exact reads from a binary stream, with the payload's own error messages."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.pos = 0

    def exact(self, n: int, what: str) -> bytes:
        data = self.f.read(n) if n else b""
        while len(data) < n:  # pipes may return short reads
            more = self.f.read(n - len(data))
            if not more:
                raise PayloadError(f"payload is truncated (inside the {what})")
            data += more
        self.pos += n
        return data

    def varint(self, what: str) -> int:
        value = shift = 0
        for _ in range(10):
            byte = self.exact(1, what)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
        raise PayloadError(f"payload is corrupted (the {what} is not a valid varint)")

    def at_end(self) -> bool:
        return not self.f.read(1)


def _read_header_v2(r: _Reader, head: bytes) -> Header:
    spec_len = r.varint("header")
    if spec_len > SPEC_MAX:
        raise PayloadError("payload header is corrupted (coder spec length is implausible)")
    spec_b = r.exact(spec_len, "header")
    fp = r.exact(FINGERPRINT_BYTES, "header")
    size = r.varint("header")
    chunk_size = r.varint("header")
    raw = head + varint(spec_len) + spec_b + fp + varint(size) + varint(chunk_size)
    (crc,) = struct.unpack("<I", r.exact(4, "header"))
    if zlib.crc32(raw) != crc:
        raise PayloadError("payload header is corrupted (header checksum mismatch)")
    try:
        spec = spec_b.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("payload header is corrupted (coder spec is not UTF-8)") from None
    return Header(spec, fp, size, chunk_size, r.pos, version=2)


def _read_header_v1(payload: bytes) -> Header:
    spec_len, pos = read_varint(payload, 5, "spec length")
    if spec_len > SPEC_MAX:
        raise PayloadError("payload header is corrupted (coder spec length is implausible)")
    if pos + spec_len + FINGERPRINT_BYTES > len(payload):
        raise PayloadError("payload is truncated (inside the header)")
    spec_b = payload[pos : pos + spec_len]
    pos += spec_len
    fp = bytes(payload[pos : pos + FINGERPRINT_BYTES])
    pos += FINGERPRINT_BYTES
    size, pos = read_varint(payload, pos, "length")
    chunk_size, pos = read_varint(payload, pos, "chunk size")
    if pos + 12 > len(payload):
        raise PayloadError("payload is truncated (inside the header)")
    crc, body_crc, head_crc = struct.unpack_from("<III", payload, pos)
    if zlib.crc32(payload[: pos + 8]) != head_crc:
        raise PayloadError("payload header is corrupted (header checksum mismatch)")
    try:
        spec = bytes(spec_b).decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("payload header is corrupted (coder spec is not UTF-8)") from None
    return Header(spec, fp, size, chunk_size, pos + 12, version=1, crc=crc, body_crc=body_crc)


def _start(f: BinaryIO) -> tuple[_Reader, bytes]:
    r = _Reader(f)
    head = f.read(5)
    r.pos = len(head)
    if len(head) < 5:
        if head and MAGIC.startswith(head[:4]):
            raise PayloadError("payload is truncated (shorter than its header)")
        raise PayloadError("not a compbench payload (too short, no magic number)")
    if head[:4] != MAGIC:
        raise PayloadError("not a compbench payload (bad magic number)")
    if head[4] not in READ_VERSIONS:
        raise PayloadError(
            f"unknown payload format version {head[4]} (this compbench reads versions "
            f"{', '.join(map(str, READ_VERSIONS))}); it was written by another compbench, or the header is corrupted"
        )
    return r, head


def read_header(payload: bytes | BinaryIO) -> Header:
    """Parse and verify a payload's header (bytes, or a stream left just past the header)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = bytes(payload)
        if len(payload) >= 5 and payload[:4] == MAGIC and payload[4] == 1:
            return _read_header_v1(payload)
        return read_header(io.BytesIO(payload))
    r, head = _start(payload)
    if head[4] == 1:
        raise PayloadError("version 1 payloads are read in memory (they predate streaming)")
    return _read_header_v2(r, head)


class BodyReader:
    """One stream's body as a file-like ``read(n)``: each piece's CRC is checked before any of its
    bytes are handed out, and ``read`` returns ``b""`` at the stream's end marker."""

    def __init__(self, r: _Reader):
        self.r = r
        self.buf = memoryview(b"")
        self.done = False
        self.bytes_read = 0

    def _next_piece(self) -> None:
        n = self.r.varint("piece length")
        if n == 0:
            self.done = True
            return
        if n > PIECE_MAX:
            raise PayloadError(f"payload is corrupted (a body piece claims {n:,} bytes; pieces are at most {PIECE_MAX:,})")
        data = self.r.exact(n, "body")
        (crc,) = struct.unpack("<I", self.r.exact(4, "body"))
        if zlib.crc32(data) != crc:
            raise PayloadError("payload body is corrupted (piece checksum mismatch)")
        self.buf = memoryview(data)
        self.bytes_read += n

    def read(self, n: int = -1) -> bytes:
        while not self.buf and not self.done:
            self._next_piece()
        if n is None or n < 0:
            parts = [bytes(self.buf)]
            self.buf = memoryview(b"")
            while not self.done:
                self._next_piece()
                parts.append(bytes(self.buf))
                self.buf = memoryview(b"")
            return b"".join(parts)
        out, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return out

    def drain(self) -> bool:
        """Read to the end marker; True if no body bytes were left over."""
        clean = not self.buf
        while not self.done:
            self._next_piece()
            clean = clean and not self.buf
        return clean


def verify_structure(payload: bytes | BinaryIO) -> tuple[Header, int]:
    """Check a payload's framing and every checksum that does not need decoding (header, pieces,
    v1 body); returns (header, body bytes). The decoded bytes' CRC is checked by decoding."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = bytes(payload)
        header = read_header(payload)
        if header.version == 1:
            body = payload[header.header_bytes :]
            if zlib.crc32(body) != header.body_crc:
                raise PayloadError("payload body is corrupted or truncated (body checksum mismatch)")
            return header, len(body)
        f = io.BytesIO(payload)
    else:
        f = payload
        header = read_header(f)
    r = _Reader(f)
    total, streams = 0, 0
    for _ in header.chunk_sizes():
        body = BodyReader(r)
        body.drain()
        total += body.bytes_read
        streams += 1
    r.exact(4, "trailer")
    if not r.at_end():
        raise PayloadError("payload is corrupted (trailing bytes after its end)")
    return header, total


def _lib_error(coder, err: Exception) -> PayloadError:
    if isinstance(err, PayloadError):
        return err
    if isinstance(err, MemoryError):
        return PayloadError("payload body is corrupted (decoder ran out of memory)")
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    return PayloadError(f"payload body is corrupted or truncated ({coder.name}: {msg})")


def check_size(header: Header, max_output: int | None) -> None:
    limit = DEFAULT_MAX_OUTPUT if max_output is None else max_output
    if header.size > limit:
        raise PayloadError(
            f"payload claims {header.size:,} original bytes, over the decode limit of {limit:,} "
            "(raise it with --max-output if you trust this payload)"
        )


def decode_stream_to(coder, header: Header, f: BinaryIO, write: Callable[[bytes], object], context: bytes = b"",
                     max_output: int | None = None, decode_one: Callable | None = None,
                     progress: Callable[[int], None] | None = None) -> None:
    """Decode a version-2 body from ``f`` (just past the header) and hand the output to ``write``
    piece by piece. The caller must not trust the output until this returns: the final CRC is
    checked last (``compbench decode`` writes to a temporary file and renames it only then).

    ``decode_one(body, size)`` overrides the in-memory decode of non-streaming coders (the isolated
    child process of :mod:`compbench.decoding`)."""
    check_size(header, max_output)
    r = _Reader(f)
    crc, done = 0, 0
    for n in header.chunk_sizes():
        body = BodyReader(r)
        if coder.streaming and decode_one is None:
            got = 0
            pieces = coder.decode_stream(body, n, context)
            while True:
                try:  # the decoder's errors are the payload's; the writer's (a full disk) are not
                    piece = next(pieces)
                except StopIteration:
                    break
                except Exception as err:
                    raise _lib_error(coder, err) from None
                got += len(piece)
                if got > n:
                    raise PayloadError(f"payload body is corrupted (decodes to more than {n:,} bytes)")
                crc = zlib.crc32(piece, crc)
                write(piece)
                done += len(piece)
                if progress:
                    progress(done)
            if not body.drain():
                raise PayloadError("payload body is corrupted (trailing bytes after the compressed stream)")
        else:
            data = body.read()
            _check_ratio(coder, len(data), n)
            try:
                out = coder.decode_body(data, n, context) if decode_one is None else decode_one(data, n)
            except Exception as err:
                raise _lib_error(coder, err) from None
            got = len(out)
            if got == n:
                crc = zlib.crc32(out, crc)
                write(out)
                done += n
                if progress:
                    progress(done)
        if got != n:
            raise PayloadError(f"payload body is corrupted or truncated (decoded {got:,} bytes, header says {n:,})")
    (want,) = struct.unpack("<I", r.exact(4, "trailer"))
    if crc != want:
        raise PayloadError(
            "decoded bytes fail the CRC-32 check: the payload is corrupted, or was decoded with a different "
            "context or artifact"
        )
    if not r.at_end():
        raise PayloadError("payload is corrupted (trailing bytes after its end)")


def _check_ratio(coder, body_len: int, n: int) -> None:
    """A body can stand for at most ``max_ratio`` original bytes per byte: a header that claims
    more is refused before a decoder allocates or loops for it."""
    ratio = getattr(coder, "max_ratio", None)
    if ratio is not None and n > ratio * (body_len + 16):
        raise PayloadError(f"payload is corrupted ({body_len:,} body bytes cannot hold {n:,} bytes for {coder.name})")


def _decode_v1(coder, header: Header, payload: bytes, context: bytes, max_output: int | None) -> bytes:
    check_size(header, max_output)
    body = payload[header.header_bytes :]
    if zlib.crc32(body) != header.body_crc:
        raise PayloadError("payload body is corrupted or truncated (body checksum mismatch)")
    if header.chunk_size == 0:
        parts = [body]
    else:
        if header.n_streams > len(body):  # every chunk has a length varint of at least one byte
            raise PayloadError("payload is corrupted (chunk count exceeds the body)")
        lengths, pos = [], 0
        for _ in range(header.n_streams):
            length, pos = read_varint(body, pos, "chunk table")
            lengths.append(length)
        if pos + sum(lengths) != len(body):
            what = "truncated" if pos + sum(lengths) > len(body) else "corrupted (trailing bytes after the last chunk)"
            raise PayloadError(f"payload is {what}")
        parts = []
        for length in lengths:
            parts.append(body[pos : pos + length])
            pos += length
    out = []
    for part, size in zip(parts, header.chunk_sizes()):
        _check_ratio(coder, len(part), size)
        try:
            chunk = coder.decode_body(part, size, context)
        except Exception as err:
            raise _lib_error(coder, err) from None
        if len(chunk) != size:
            raise PayloadError(f"payload body is corrupted or truncated (decoded {len(chunk)} bytes, header says {size})")
        out.append(chunk)
    data = b"".join(out)
    if zlib.crc32(data) != header.crc:
        raise PayloadError("decoded bytes fail the CRC-32 check: the payload is corrupted, or was decoded with a "
                           "different context or artifact")
    return data


def decode_bytes(coder, header: Header, payload: bytes, context: bytes = b"", max_output: int | None = None,
                 decode_one: Callable | None = None) -> bytes:
    """Decode a whole in-memory payload whose header was read and whose coder was checked."""
    if header.version == 1:
        return _decode_v1(coder, header, payload, context, max_output)
    out: list[bytes] = []
    f = io.BytesIO(payload)
    f.seek(header.header_bytes)
    decode_stream_to(coder, header, f, out.append, context, max_output, decode_one)
    return b"".join(out)


def check_coder(coder, header: Header) -> None:
    """The payload was written by this coder (same name and format options) with this artifact."""
    from .spec import format_options, parse_spec

    name, opts = parse_spec(header.spec) if header.spec else ("", {})
    mine_name, mine = parse_spec(coder.header_spec)
    theirs = format_options(type(coder).Options, opts) if name == mine_name else None
    if name != mine_name or type(coder)(**theirs).header_spec != coder.header_spec:
        raise PayloadError(f"payload was written by coder {header.spec!r}, not {coder.header_spec!r}")
    have = coder.artifact_fingerprint()
    if header.fingerprint != have:
        raise ArtifactError(
            f"wrong artifact: the payload needs artifact {header.fingerprint.hex()}, the decoder has {have.hex()}"
        )


def unpack(payload: bytes, coder, context: bytes = b"", max_output: int | None = None) -> bytes:
    """Decode a payload with a given coder, checking spec and artifact first."""
    payload = bytes(payload)
    header = read_header(payload)
    check_coder(coder, header)
    return decode_bytes(coder, header, payload, context, max_output)
