"""Neural-coder artifact: int8 weights + config + the decoder's source code, in one compressed blob.

Layout (every integer little-endian)::

    b"CBNM"  u8 format version  u8 compression (0 raw, 1 xz, 2 zstd, 3 brotli)  compressed inner

    inner = u32 header length, JSON header, tensor bytes in header order, code bytes in header order
    header = {"arch", "config", "engine", "tensors": [[name, dtype, shape], ...],
              "code": [[path, length], ...], "meta": {...}}

The blob is what ``artifact_bytes`` counts: weights, config *and* decoder code (the engine modules
that rebuild and run the model), so a neural coder pays for everything a fresh decoder needs beyond
a stock Python with torch, numpy, numba and constriction. Loading never unpickles anything: tensors are raw
little-endian arrays whose names, dtypes and shapes are checked against the config. The shipped
code is accounted for, not executed; decoding uses the installed engine, and ``engine`` (the integer
arithmetic version) must match, because another engine could compute different probabilities.
"""

from __future__ import annotations

import json
import lzma
import math
import struct
import dataclasses

import brotli
import numpy as np
import torch
import zstandard

from .archs import ARCHS, HERE

MAGIC = b"CBNM"
VERSION = 1
ENGINE_VERSION = 2  # bump whenever integer inference changes the probabilities it computes (2: the mixer's nibble buckets)
DTYPES = {"int8": torch.int8, "float16": torch.float16}
INNER_LIMIT = 1 << 26  # 64 MiB: far above any 16 MB-budget model; a blob claiming more is refused
CPU_BUILD_PARAMS = 1 << 24  # the shape check builds models up to this size for real (expected_shapes)


class ArtifactError(ValueError):
    """The bytes are not a usable artifact (the harness reports it as its own ArtifactError)."""


def decoder_code(arch: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of every file a decoder of ``arch`` runs: ``models/...`` for the engine package."""
    out = []
    for path in ARCHS[arch].decoder_files():
        name = f"models/{path.name}" if path.parent == HERE else path.name
        out.append((name, path.read_bytes()))
    return out


def _compress(inner: bytes) -> tuple[int, bytes]:
    """Smallest of xz -9e, zstd -22 and brotli -q11 (each decodes with a stock library). brotli
    runs with three input block sizes (its own choice, 2**16 and 2**24 bytes): its own choice once
    took gru-dickens to 889,701 bytes where 2**16 gave 868,079, after a change of a few hundred
    bytes in the code the artifact carries. Each of the three was the best for some shipped model."""
    options = [
        (1, lzma.compress(inner, preset=9 | lzma.PRESET_EXTREME)),
        (2, zstandard.ZstdCompressor(level=22).compress(inner)),
    ] + [(3, brotli.compress(inner, quality=11, lgwin=24, lgblock=lgblock)) for lgblock in (0, 16, 24)]
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
            out = brotli.Decompressor().process(body, output_buffer_limit=limit + 1)
        else:
            raise ArtifactError(f"neural artifact uses unknown compression method {method}")
    except ArtifactError:
        raise
    except Exception as err:  # library errors on corrupted data
        raise ArtifactError(f"neural artifact is corrupted ({type(err).__name__})") from None
    if len(out) > limit:
        raise ArtifactError("neural artifact is implausibly large when decompressed")
    return out


def unpack(blob: bytes, limit: int = INNER_LIMIT) -> tuple[dict, dict[str, torch.Tensor]]:
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
            n = math.prod(shape) * np.dtype(dtype).itemsize  # Python ints: a huge claim cannot overflow
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
    except (KeyError, TypeError, ValueError, struct.error, RecursionError) as err:
        raise ArtifactError(f"neural artifact header is corrupted ({err})") from None
    if header.get("engine") != ENGINE_VERSION:
        raise ArtifactError(
            f"neural artifact was built for integer engine v{header.get('engine')}, this compbench runs "
            f"v{ENGINE_VERSION}; its probabilities could differ, so it cannot be used"
        )
    return header, tensors


def code_bytes(header: dict) -> int:
    return sum(length for _, length in header["code"])


def make_config(arch: str, config: dict):
    cls = ARCHS[arch].load().Config
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(config, dict) or set(config) - names:
        raise ArtifactError(f"neural artifact config has unknown fields: {sorted(set(config or {}) - names)}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"neural artifact config is invalid ({err})") from None


def expected_shapes(arch: str, cfg, limit: int) -> dict[str, tuple[str, list[int]]]:
    """Names, dtypes and shapes an artifact of this config must contain (checked on load), from the
    architecture's own ``export`` of a freshly built model, so there is one definition of them.

    Refused outright when the config claims more than ``limit`` parameters (:meth:`artifact_params`).
    A model of up to CPU_BUILD_PARAMS parameters (every model a 16 MB budget holds) is built on the
    CPU: about 25 ms for a 1 MB model, at most 64 MB of float32. A larger one is built on the meta
    device, which allocates nothing but whose initialisers run as Python references: their first
    call imports ``torch._dynamo``, about 1.5 s, which is why the CPU is the usual path. The
    initialisers draw from torch's generator: its state is restored."""
    params = sum(cfg.artifact_params())
    if params > limit:
        raise ArtifactError("neural artifact tensors do not match its config (it claims more parameters than it holds)")
    mod = ARCHS[arch].load()
    with torch.device("cpu" if params <= CPU_BUILD_PARAMS else "meta"), torch.random.fork_rng(devices=[]), \
            torch.no_grad():
        tensors = mod.export(mod.LM(cfg))
    return {k: (str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in tensors.items()}


def load_engine(blob: bytes):
    """Artifact bytes -> (header, engine). Never unpickles; validates every tensor."""
    header, tensors = unpack(blob)
    arch = header.get("arch")
    if arch not in ARCHS:
        raise ArtifactError(f"neural artifact has unknown architecture {arch!r}")
    cfg = make_config(arch, header.get("config"))
    # A config may claim a model a little larger than the tensors present (artifact_params() need
    # not be exact for every architecture), never many times larger.
    want = expected_shapes(arch, cfg, limit=2 * sum(t.numel() for t in tensors.values()) + 65536)
    got = {k: (str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in tensors.items()}
    if want != got:
        missing = sorted(set(want) - set(got)) or sorted(k for k in want if want[k] != got.get(k))
        raise ArtifactError(f"neural artifact tensors do not match its config (first mismatch: {missing[:1]})")
    return header, ARCHS[arch].load().Engine(cfg, tensors)


def repack(blob: bytes) -> bytes:
    """The same tensors, config and meta, packed with this release's decoder code (the code an
    artifact carries must be the code that runs it)."""
    header, tensors = unpack(blob)
    return pack(header["arch"], header["config"], tensors, header.get("meta"))
