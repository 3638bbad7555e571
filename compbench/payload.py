"""The compbench payload container: every payload describes itself and verifies its own decode.

Layout (format version 1; integers are unsigned LEB128 varints unless sized)::

    offset  size      field
    0       4         magic  b"\\x89CBP"   (high bit set: catches 7-bit transfers, like PNG)
    4       1         format version (1)
    5       varint    len(spec), then the coder spec, UTF-8: name plus non-default options
                      ("lzma" for xz -9e, "zstd:level=19" for zstd -19)
    .       8         artifact fingerprint: sha256(artifact)[:8]
    .       varint    original length n
    .       varint    chunk size (0 = one stream)
    .       4         CRC-32 of the original bytes, little-endian
    .       4         CRC-32 of the body, little-endian
    .       4         CRC-32 of every header byte before it, little-endian
    .       ...       body: the coder's output; chunked: varint length of each chunk's body, then the bodies

Container overhead is therefore ``26 + len(spec) + len(varint(n)) + len(varint(chunk_size))`` bytes,
i.e. ``27 + len(spec) + len(varint(n))`` unchunked: 34 bytes for default ``lzma`` (xz -9e) on a
100 KB file (a 3-byte length).

Why a body checksum: the body is checked before any decoder sees it. Some decoders crash the process
on corrupted input (pyppmd 1.3 does, now and then, as the fuzz test found), and a crash is neither a
clear error nor something a harness can catch.
:func:`overhead` computes it exactly; measurements record it as ``container_bytes``.

Every decode failure is a :class:`~compbench.errors.PayloadError` with one line of explanation:
not a payload, unknown version, truncated, header corrupted, wrong coder, wrong artifact, body
corrupted, or decoded bytes failing the length/CRC check. Decoders get ``n`` to bound their output.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import ArtifactError, PayloadError

MAGIC = b"\x89CBP"
FORMAT_VERSION = 1
FINGERPRINT_BYTES = 8


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


@dataclass(frozen=True)
class Header:
    spec: str
    fingerprint: bytes
    size: int
    chunk_size: int
    crc: int
    body_crc: int
    header_bytes: int


def make_header(spec: str, fp: bytes, size: int, chunk_size: int, crc: int, body_crc: int) -> bytes:
    spec_b = spec.encode("utf-8")
    head = MAGIC + bytes([FORMAT_VERSION]) + varint(len(spec_b)) + spec_b + fp + varint(size) + varint(chunk_size)
    head += struct.pack("<II", crc, body_crc)
    return head + struct.pack("<I", zlib.crc32(head))


def overhead(spec: str, size: int, chunk_size: int = 0) -> int:
    """Exact container bytes (header only; a chunked body adds its chunk-length table)."""
    return len(make_header(spec, b"\0" * FINGERPRINT_BYTES, size, chunk_size, 0, 0))


def chunks_of(data: bytes, chunk_size: int) -> list[bytes]:
    if chunk_size <= 0:
        return [data]
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]


def encode_bodies(coder, data: bytes, context: bytes, chunk_size: int) -> list[bytes]:
    """The coder's raw output: one body, or one per independent chunk."""
    if chunk_size <= 0:
        return [coder.encode_body(data, context)]
    return [coder.encode_body(c, context) for c in chunks_of(data, chunk_size)]


def assemble(spec: str, fp: bytes, data: bytes, bodies: list[bytes], chunk_size: int) -> bytes:
    if chunk_size <= 0:
        body = bodies[0]
    else:
        body = b"".join(varint(len(b)) for b in bodies) + b"".join(bodies)
    header = make_header(spec, fp, len(data), max(chunk_size, 0), zlib.crc32(data), zlib.crc32(body))
    return header + body


def pack(coder, data: bytes, context: bytes = b"", chunk_size: int = 0) -> bytes:
    data = bytes(data)
    bodies = encode_bodies(coder, data, context, chunk_size)
    return assemble(coder.header_spec, coder.artifact_fingerprint(), data, bodies, chunk_size)


def read_header(payload: bytes) -> Header:
    """Parse and verify a payload header; raise PayloadError with a clear reason."""
    if len(payload) < len(MAGIC) + 1:
        if MAGIC.startswith(bytes(payload[: len(MAGIC)])) and payload:
            raise PayloadError("payload is truncated (shorter than its header)")
        raise PayloadError("not a compbench payload (too short, no magic number)")
    if payload[:4] != MAGIC:
        raise PayloadError("not a compbench payload (bad magic number)")
    version = payload[4]
    if version != FORMAT_VERSION:
        raise PayloadError(
            f"unknown payload format version {version} (this compbench reads version {FORMAT_VERSION}); "
            "it was written by another compbench version, or the header is corrupted"
        )
    spec_len, pos = read_varint(payload, 5, "spec length")
    if spec_len > 4096:
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
        spec = spec_b.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("payload header is corrupted (coder spec is not UTF-8)") from None
    return Header(spec, fp, size, chunk_size, crc, body_crc, pos + 12)


def split_body(body: bytes, header: Header) -> list[bytes]:
    if header.chunk_size == 0:
        return [body]
    n_chunks = -(-header.size // header.chunk_size)
    lengths, pos = [], 0
    for _ in range(n_chunks):
        length, pos = read_varint(body, pos, "chunk table")
        lengths.append(length)
    if pos + sum(lengths) != len(body):
        what = "truncated" if pos + sum(lengths) > len(body) else "corrupted (trailing bytes after the last chunk)"
        raise PayloadError(f"payload is {what}")
    out = []
    for length in lengths:
        out.append(body[pos : pos + length])
        pos += length
    return out


def decode_verified(coder, header: Header, body: bytes, context: bytes = b"") -> bytes:
    """Check the body's CRC, decode, and verify length and CRC; wrap any library error into PayloadError."""
    if zlib.crc32(body) != header.body_crc:
        raise PayloadError("payload body is corrupted or truncated (body checksum mismatch)")
    sizes = [header.size] if header.chunk_size == 0 else [
        min(header.chunk_size, header.size - i) for i in range(0, header.size, header.chunk_size)
    ]
    parts = split_body(body, header)
    out = []
    for part, size in zip(parts, sizes):
        try:
            chunk = coder.decode_body(part, size, context)
        except PayloadError:
            raise
        except MemoryError:
            raise PayloadError("payload body is corrupted (decoder ran out of memory)") from None
        except Exception as err:  # zlib.error, lzma.LZMAError, ValueError from C libraries, ...
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise PayloadError(f"payload body is corrupted or truncated ({coder.name}: {msg})") from None
        if len(chunk) != size:
            raise PayloadError(
                f"payload body is corrupted or truncated (decoded {len(chunk)} bytes, header says {size})"
            )
        out.append(chunk)
    data = b"".join(out)
    if zlib.crc32(data) != header.crc:
        raise PayloadError(
            "decoded bytes fail the CRC-32 check: the payload is corrupted, or was decoded with a different "
            "context or artifact"
        )
    return data


def check_coder(coder, header: Header) -> None:
    if header.spec != coder.header_spec:
        raise PayloadError(f"payload was written by coder {header.spec!r}, not {coder.header_spec!r}")
    have = coder.artifact_fingerprint()
    if header.fingerprint != have:
        raise ArtifactError(
            f"wrong artifact: the payload needs artifact {header.fingerprint.hex()}, "
            f"the decoder has {have.hex()}"
        )


def unpack(payload: bytes, coder, context: bytes = b"") -> bytes:
    """Decode a payload with a given coder, checking spec and artifact first."""
    payload = bytes(payload)
    header = read_header(payload)
    check_coder(coder, header)
    return decode_verified(coder, header, payload[header.header_bytes :], context)


def open_decoder(header: Header, artifact: bytes | None):
    """Build the decoder a header names, from artifact bytes (b"" when the coder needs none)."""
    from .coder import fingerprint
    from .registry import get_coder_class  # late import: the registry imports the coder modules
    from .spec import parse_spec

    if artifact is None:
        if header.fingerprint != fingerprint(b""):
            raise ArtifactError(
                f"this payload needs artifact {header.fingerprint.hex()}; pass it with --artifact "
                "(or keep it in the store's artifact folder)"
            )
        artifact = b""
    if fingerprint(artifact) != header.fingerprint:
        raise ArtifactError(
            f"wrong artifact: the payload needs artifact {header.fingerprint.hex()}, "
            f"the one given is {fingerprint(artifact).hex()}"
        )
    name, options = parse_spec(header.spec)
    return get_coder_class(name).from_artifact(artifact, **options)


def decode_payload(payload: bytes, artifact: bytes | None = None, context: bytes = b"") -> bytes:
    """Decode any compbench payload: the coder is found from the header itself."""
    payload = bytes(payload)
    header = read_header(payload)
    coder = open_decoder(header, artifact)
    return decode_verified(coder, header, payload[header.header_bytes :], context)
