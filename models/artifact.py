"""Neural-coder artifact: int8 weights + config + the decoder's source code, in one compressed blob.

Layout (every integer little-endian)::

    b"CBNM"  u8 format version  u8 compression (0 raw, 1 xz, 2 zstd, 3 brotli)  compressed inner

    inner = u32 header length, JSON header, tensor bytes in header order, code bytes in header order
    header = {"arch", "config", "engine", "tensors": [[name, dtype, shape], ...],
              "code": [[path, length], ...], "meta": {...}}

The blob is what ``artifact_bytes`` counts: weights, config *and* decoder code (the engine modules
that rebuild and run the model), so a neural coder pays for everything a fresh decoder needs beyond
a stock Python with torch, numpy and constriction. Loading never unpickles anything: tensors are raw
little-endian arrays whose names, dtypes and shapes are checked against the config. The shipped
code is accounted for, not executed; decoding uses the installed engine, and ``engine`` (the integer
arithmetic version) must match, because another engine could compute different probabilities.
"""

from __future__ import annotations

import json
import lzma
import struct
from pathlib import Path

import brotli
import numpy as np
import torch
import zstandard

from compbench.errors import ArtifactError

MAGIC = b"CBNM"
VERSION = 1
ENGINE_VERSION = 1  # bump whenever integer inference changes the probabilities it computes
DTYPES = {"int8": torch.int8, "float16": torch.float16}
_ROOT = Path(__file__).resolve().parent.parent
DECODER_CODE = {
    "gru": ("models/intops.py", "models/gru.py", "coders/neural.py"),
    "transformer": ("models/intops.py", "models/gru.py", "models/transformer.py", "coders/neural.py"),
}


def decoder_code(arch: str) -> list[tuple[str, bytes]]:
    return [(rel, (_ROOT / rel).read_bytes()) for rel in DECODER_CODE[arch]]


def _compress(inner: bytes) -> tuple[int, bytes]:
    """Smallest of xz -9e, zstd -22 and brotli -q11 (each decodes with a stock library)."""
    options = [
        (1, lzma.compress(inner, preset=9 | lzma.PRESET_EXTREME)),
        (2, zstandard.ZstdCompressor(level=22).compress(inner)),
        (3, brotli.compress(inner, quality=11, lgwin=24)),
    ]
    return min(options, key=lambda o: len(o[1]))


def pack(arch: str, config: dict, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> bytes:
    entries, blobs = [], []
    for name, t in tensors.items():
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise ValueError(f"tensor {name} has unsupported dtype {dtype}")
        entries.append([name, dtype, list(t.shape)])
        blobs.append(t.contiguous().numpy().astype(np.dtype(dtype).newbyteorder("<"), copy=False).tobytes())
    code = decoder_code(arch)
    header = {
        "arch": arch,
        "config": config,
        "engine": ENGINE_VERSION,
        "tensors": entries,
        "code": [[p, len(b)] for p, b in code],
        "meta": meta or {},
    }
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    inner = struct.pack("<I", len(hb)) + hb + b"".join(blobs) + b"".join(b for _, b in code)
    method, body = _compress(inner)
    return MAGIC + bytes([VERSION, method]) + body


def _decompress(method: int, body: bytes, limit: int) -> bytes:
    try:
        if method == 0:
            out = body
        elif method == 1:
            d = lzma.LZMADecompressor()
            out = d.decompress(body, max_length=limit + 1)
        elif method == 2:
            out = zstandard.ZstdDecompressor().decompress(body, max_output_size=limit + 1)
        elif method == 3:
            out = brotli.decompress(body)
        else:
            raise ArtifactError(f"neural artifact uses unknown compression method {method}")
    except ArtifactError:
        raise
    except Exception as err:  # library errors on corrupted data
        raise ArtifactError(f"neural artifact is corrupted ({type(err).__name__})") from None
    if len(out) > limit:
        raise ArtifactError("neural artifact is implausibly large when decompressed")
    return out


def unpack(blob: bytes, limit: int = 1 << 30) -> tuple[dict, dict[str, torch.Tensor]]:
    """Artifact bytes -> (header, tensors). Raises ArtifactError with a reason on any defect."""
    if len(blob) < 6 or blob[:4] != MAGIC:
        raise ArtifactError("not a compbench neural artifact (bad magic number)")
    if blob[4] != VERSION:
        raise ArtifactError(f"neural artifact format version {blob[4]} is not supported (expected {VERSION})")
    inner = _decompress(blob[5], blob[6:], limit)
    try:
        (hlen,) = struct.unpack_from("<I", inner, 0)
        header = json.loads(inner[4 : 4 + hlen])
        pos = 4 + hlen
        tensors = {}
        for name, dtype, shape in header["tensors"]:
            if dtype not in DTYPES or any(not isinstance(s, int) or s < 0 for s in shape):
                raise ArtifactError(f"neural artifact tensor {name!r} has a bad dtype or shape")
            n = int(np.prod(shape)) * np.dtype(dtype).itemsize
            if pos + n > len(inner):
                raise ArtifactError("neural artifact is truncated")
            arr = np.frombuffer(inner, dtype=np.dtype(dtype).newbyteorder("<"), count=n // np.dtype(dtype).itemsize, offset=pos)
            tensors[name] = torch.from_numpy(arr.astype(np.dtype(dtype)).reshape(shape))
            pos += n
        code_len = sum(length for _, length in header["code"])
        if pos + code_len != len(inner):
            raise ArtifactError("neural artifact has the wrong length (truncated or trailing bytes)")
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, struct.error) as err:
        raise ArtifactError(f"neural artifact header is corrupted ({err})") from None
    if header.get("engine") != ENGINE_VERSION:
        raise ArtifactError(
            f"neural artifact was built for integer engine v{header.get('engine')}, this compbench runs "
            f"v{ENGINE_VERSION}; its probabilities could differ, so it cannot be used"
        )
    return header, tensors


def code_bytes(header: dict) -> int:
    return sum(length for _, length in header["code"])
