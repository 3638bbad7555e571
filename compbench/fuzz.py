"""Seeded hostile payloads: what a stranger could hand ``compbench decode``, for every coder family.

:func:`cases` yields ``Case(kind, spec, payload, artifact, original)``; :func:`check` decodes one under
the default :class:`~compbench.decoding.DecodePolicy` and classifies the outcome. A case passes when
the decode returns exactly ``original`` (only possible for an intact payload) or raises a
:class:`~compbench.errors.CompbenchError` whose message is one line, within a deadline, without
running a program (a canary file a crafted external spec would create) and within a memory bound.

Kinds, in rotation:

* ``mutate``: a valid payload with flipped bits, a truncation, an insertion, a deletion, garbage
  appended or a run overwritten. The piece checksums stop almost all of these before a decoder.
* ``crafted``: the coder's own body mutated, then framed with *valid* checksums, so it reaches the
  decoder itself (as a deliberate attack would).
* ``header``: headers that lie: huge lengths, tiny chunks, huge piece lengths, unknown coders, bad
  UTF-8, absurd options (``ppmd:mem_mib=4000``, ``zstd:long=31``), neural stream layouts far larger
  than the body, and external specs whose commands would create the canary.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .coder import fingerprint
from .errors import CompbenchError
from .payload import FORMAT_VERSION, MAGIC, assemble, frame, make_header, varint

CLASSICAL = ["identity", "zlib", "bz2", "lzma:preset=6", "zstd:level=19", "zstd:dict_size=512:dict_type=raw",
             "brotli:quality=9", "ppmd:order=6:mem_mib=16",
             "prefix:inner=(ppmd:order=4:mem_mib=16):store=zlib:size=2000"]  # classical and hybrid coders
KINDS = ("mutate", "crafted", "header")


def default_coders(neural_models: dict | None = None) -> dict:
    """{spec: (coder, artifact)} for every classical coder above, plus one neural coder per
    ``{arch: model path}`` (small streams, so hostile cases stay quick)."""
    from .registry import make_coder

    coders = {}
    for spec in CLASSICAL:
        coder = make_coder(spec)
        if coder.needs_fit:
            coder.fit(b"training bytes for a raw dictionary and a stored prefix " * 40)
        coders[spec] = (coder, coder.artifact())
    for arch, path in (neural_models or {}).items():
        coder = make_coder(f"{arch}:model='{path}':streams=4:min_segment=64")
        coders[arch] = (coder, coder.artifact())
    return coders


@dataclass
class Case:
    kind: str
    spec: str
    payload: bytes
    artifact: bytes | None
    original: bytes | None  # the bytes an intact payload decodes to; None: must be refused


def _inputs(rng: random.Random, small: bool) -> bytes:
    n = rng.choice([0, 1, 17, 300, 1500] if small else [0, 1, 17, 300, 1500, 5000])
    kind = rng.randrange(3)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(n))
    if kind == 1:
        words = [b"the ", b"payload ", b"is ", b"data, ", b"never ", b"a ", b"program. "]
        return b"".join(rng.choice(words) for _ in range(n // 5 + 1))[:n]
    return bytes([rng.choice(b"ab")]) * n


def _mutate(rng: random.Random, payload: bytearray) -> bytes:
    op = rng.randrange(6)
    if op == 0:
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(payload))
            payload[pos] ^= 1 << rng.randrange(8)
    elif op == 1:
        del payload[rng.randrange(len(payload)) :]
    elif op == 2:
        pos = rng.randrange(len(payload) + 1)
        payload[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    elif op == 3:
        del payload[rng.randrange(len(payload))]
    elif op == 4:
        payload += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    else:
        start = rng.randrange(len(payload))
        for j in range(start, min(len(payload), start + rng.randint(1, 16))):
            payload[j] = rng.getrandbits(8)
    return bytes(payload)


def _lying_header(rng: random.Random, coder, artifact: bytes, canary: Path) -> tuple[bytes, bytes | None]:
    """A payload whose header (or framing) claims what its bytes cannot back."""
    fp = fingerprint(artifact)
    spec = coder.header_spec
    body = coder.encode_body(b"abc" * 10)
    choice = rng.randrange(9)
    if choice == 5 and getattr(coder, "family", "") != "neural":
        choice = 0
    if choice == 0:  # a huge original length, tiny body
        return assemble_raw(spec, fp, rng.choice([1 << 40, (1 << 63) - 1, 5 << 30]), 0, [body]), artifact
    if choice == 1:  # 1-byte chunks of a long input: many streams claimed, few bytes present
        return assemble_raw(spec, fp, rng.choice([10**6, 10**9]), 1, [body]), artifact
    if choice == 2:  # a piece that claims 2**40 bytes
        head = make_header(spec, fp, 30, 0)
        return head + varint(1 << rng.choice([24, 30, 40, 60])) + body, artifact
    if choice == 3:  # an unknown coder, or a spec that is not UTF-8
        bad = rng.choice(["nosuch", "zstd:level=99", "ppmd:order=1", "\udcff"])
        raw = bad.encode("utf-8", "surrogateescape") if bad != "\udcff" else b"\xff\xfe"
        head = MAGIC + bytes([FORMAT_VERSION]) + varint(len(raw)) + raw + fp + varint(30) + varint(0)
        head += struct.pack("<I", zlib.crc32(head))
        return head + b"".join(frame([body])) + struct.pack("<I", zlib.crc32(b"abc" * 10)), artifact
    if choice == 4:  # options that would make a decoder allocate gigabytes
        spec2 = rng.choice(["ppmd:mem_mib=4000", "ppmd:order=64:mem_mib=4000", "zstd:long=31", "lzma:preset=9e"])
        return assemble_raw(spec2, fingerprint(b""), 30, 0, [rng.randbytes(40)]), None
    if choice == 5:  # a neural stream layout far larger than its body
        streams, seg = rng.choice([(4096, 1 << 30), (1, 1 << 40), (256, 4096), (3, 1 << 20), (0, 0)])
        nbody = varint(streams) + varint(seg) + rng.randbytes(8)
        return assemble_raw(spec, fp, streams * seg or 99, 0, [nbody]), artifact
    # external coders whose commands would create the canary: never run without the user's say-so
    cmd = f"touch {canary}"
    ext = rng.choice([f"external:compress=cat:decompress='{cmd}'",
                      f"external:compress='{cmd}':decompress='sh -c \"{cmd}\"'",
                      f"external:compress=cat:decompress='python3 -c \"open(\\'{canary}\\', \\'w\\')\"'"])
    return assemble_raw(ext, fingerprint(b""), 3, 0, [b"abc"]), None


def assemble_raw(spec: str, fp: bytes, size: int, chunk_size: int, bodies: list[bytes]) -> bytes:
    """A payload with valid checksums whose header claims ``size`` whatever the bodies hold."""
    parts = [make_header(spec, fp, size, chunk_size)]
    for b in bodies:
        parts.extend(frame([b]))
    parts.append(struct.pack("<I", 0))
    return b"".join(parts)


def cases(seed: int, n: int, coders: dict, canary: Path, small: bool = True) -> Iterator[Case]:
    """``n`` seeded cases, rotating over kinds and over ``coders`` ({spec: (coder, artifact)})."""
    rng = random.Random(seed)
    specs = list(coders)
    for i in range(n):
        spec = specs[i % len(specs)]
        coder, artifact = coders[spec]
        kind = KINDS[(i // len(specs)) % len(KINDS)]
        data = _inputs(rng, small)
        if kind == "mutate":
            payload = coder.encode(data, chunk_size=rng.choice([0, 0, 0, 200]))
            if rng.random() < 0.05:
                yield Case(kind, spec, payload, artifact, data)  # some intact ones: they must decode
                continue
            yield Case(kind, spec, _mutate(rng, bytearray(payload)), artifact, data)
        elif kind == "crafted":
            body = bytearray(coder.encode_body(data) or b"\0")
            for _ in range(rng.randint(1, 4)):
                op = rng.randrange(3) if body else 2
                if op == 0:
                    pos = rng.randrange(len(body))
                    body[pos] ^= 1 << rng.randrange(8)
                elif op == 1:
                    del body[rng.randrange(len(body)) :]
                else:
                    body += rng.randbytes(rng.randint(1, 16))
            payload = assemble(coder.header_spec, fingerprint(artifact), data, [bytes(body)], 0)
            yield Case(kind, spec, payload, artifact, data)
        else:
            payload, art = _lying_header(rng, coder, artifact, canary)
            yield Case(kind, spec, payload, art, None)


class _Deadline(Exception):
    pass


def check(case: Case, seconds: int = 30) -> str:
    """Decode one case; returns ``"decoded"`` or ``"refused"``, or raises AssertionError saying what
    went wrong (wrong bytes, a traceback-worthy exception, a multi-line message, a hang)."""
    from .decoding import decode_payload

    def alarm(*_):
        raise _Deadline()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        out = decode_payload(case.payload, case.artifact)
    except CompbenchError as err:
        msg = str(err)
        assert msg and "\n" not in msg, f"{case.kind}/{case.spec}: error is not one line: {msg!r}"
        return "refused"
    except _Deadline:
        raise AssertionError(f"{case.kind}/{case.spec}: decode did not finish within {seconds} s") from None
    except Exception as err:  # noqa: BLE001  (exactly what must never happen)
        raise AssertionError(f"{case.kind}/{case.spec}: {type(err).__name__}: {err}") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert case.original is not None and out == case.original, f"{case.kind}/{case.spec}: decoded to wrong bytes"
    return "decoded"


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (Linux), for the memory bound."""
    try:
        with open(f"/proc/{os.getpid()}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
