"""Self-contained compbench decompressor, written by `compbench export --format decoder`.

    python decompress.py PAYLOAD OUT

Decodes compbench payloads (container format 2) made by one neural coder with one model: the coder
spec and artifact named in decoder.json. Needs Python >= 3.10 and requirements.txt; it imports the
engine from its own folder (compbench/models/), never from an installed compbench. Every size a
payload claims is checked before anything is allocated; OUT is written only once the CRC-32 of
the decoded bytes matches.
"""

import hashlib
import json
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # this folder's engine, never an installed one

MAGIC, VERSION = b"\x89CBP", 2
PIECE_MAX = 1 << 24
MAX_OUTPUT = 1 << 32


class Bad(Exception):
    pass


class Reader:
    def __init__(self, f):
        self.f = f

    def exact(self, n, what):
        b = self.f.read(n)
        if len(b) != n:
            raise Bad(f"payload is truncated (in the {what})")
        return b

    def varint(self, what):
        value = shift = 0
        for _ in range(10):
            (byte,) = self.exact(1, what)
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
        raise Bad(f"payload is corrupted (bad varint in the {what})")


def body(r, limit):
    """One stream's pieces (each CRC-checked), joined; refuses more than ``limit`` bytes."""
    out = bytearray()
    while True:
        n = r.varint("body")
        if n == 0:
            return bytes(out)
        if n > PIECE_MAX or len(out) + n > limit:
            raise Bad("payload body is corrupted (a piece is implausibly long)")
        piece = r.exact(n, "body")
        if struct.pack("<I", zlib.crc32(piece)) != r.exact(4, "body"):
            raise Bad("payload body is corrupted (piece checksum mismatch)")
        out += piece


def varint_at(buf, pos):
    value = shift = 0
    for i in range(10):
        if pos + i >= len(buf):
            raise Bad("payload body is truncated")
        value |= (buf[pos + i] & 0x7F) << shift
        shift += 7
        if not buf[pos + i] & 0x80:
            return value, pos + i + 1
    raise Bad("payload body is corrupted (bad varint)")


def decode_stream(engine, lockstep, data, size, opts):
    streams, pos = varint_at(data, 0)
    if streams == 0 and size > 0:  # stored: the model would have expanded this input
        if len(data) - pos != size:
            raise Bad("payload body is corrupted (stored bytes have the wrong length)")
        return data[pos:]
    seg, pos = varint_at(data, pos)
    if size == 0:
        return b""
    if (streams, seg) != lockstep.layout(size, opts["streams"], opts["min_segment"]) or (len(data) - pos) % 4:
        raise Bad("payload body is corrupted (stream layout)")
    try:
        mix = opts.get("mix", 0)  # a decoder.json from before mix existed coded with mix=0
        return lockstep.decode(engine, data[pos:], size, streams, seg, opts["match"], mix=mix)
    except (ValueError, RuntimeError) as err:
        raise Bad(f"payload body is corrupted (range decoder: {err})")


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(os.path.join(HERE, "decoder.json")) as fh:
        cfg = json.load(fh)
    with open(os.path.join(HERE, cfg["artifact"]), "rb") as fh:
        blob = fh.read()
    import compbench.models
    from compbench.models import artifact, lockstep

    if os.path.dirname(os.path.abspath(compbench.models.__file__)) != os.path.join(HERE, "compbench", "models"):
        raise Bad("the engine was not imported from this folder")
    with open(argv[1], "rb") as f:
        r = Reader(f)
        if r.exact(5, "header") != MAGIC + bytes([VERSION]):
            raise Bad("not a compbench payload of format 2")
        spec_len = r.varint("header")
        if spec_len > 4096:
            raise Bad("payload header is corrupted")
        spec = r.exact(spec_len, "header")
        fp = r.exact(8, "header")
        size, chunk = r.varint("header"), r.varint("header")
        head = MAGIC + bytes([VERSION]) + _varint(spec_len) + spec + fp + _varint(size) + _varint(chunk)
        if struct.pack("<I", zlib.crc32(head)) != r.exact(4, "header"):
            raise Bad("payload header is corrupted (checksum mismatch)")
        if spec.decode("utf-8", "replace") != cfg["spec"]:
            raise Bad(f"this decompressor decodes {cfg['spec']!r} payloads, not {spec.decode('utf-8', 'replace')!r}")
        if hashlib.sha256(blob).digest()[:8] != fp:
            raise Bad("the payload was made with another model than this folder's")
        if size > MAX_OUTPUT:
            raise Bad(f"the payload claims {size:,} bytes, over this decompressor's limit")
        try:
            _, engine = artifact.load_engine(blob)
        except artifact.ArtifactError as err:
            raise Bad(str(err))
        out, crc = bytearray(), 0
        left = size
        while True:
            n = min(left, chunk) if chunk else left
            data = body(r, 400_000 * max(n, 1))  # a coded byte costs at most 370,000 body bytes
            piece = decode_stream(engine, lockstep, data, n, cfg["options"])
            if len(piece) != n:
                raise Bad("payload body is corrupted (wrong decoded length)")
            out += piece
            crc = zlib.crc32(piece, crc)
            left -= n
            if left == 0:
                break
        if struct.pack("<I", crc) != r.exact(4, "trailer"):
            raise Bad("decoded bytes fail the CRC-32 check")
        if f.read(1):
            raise Bad("payload is corrupted (trailing bytes)")
    tmp = argv[2] + ".part"
    with open(tmp, "wb") as fh:
        fh.write(out)
    os.replace(tmp, argv[2])
    return 0


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (Bad, OSError) as err:
        print(f"decompress: {err}", file=sys.stderr)
        sys.exit(1)
