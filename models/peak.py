"""Peaks of this machine, measured: the throughput of one large GEMM per dtype (matrix units), and
of reading a large array (memory).

Speed figures are reported as a share of this peak, measured in the same process (the speed
benchmark's coding, ``compbench train``'s training), because a figure from another machine, or
another moment on a shared one, does not compare.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import subprocess
import sys
import time

import torch


def _THREADS() -> int:
    return torch.get_num_threads()


def _gemm(dtype: str, n: int, device: str):
    g = torch.Generator().manual_seed(0)
    if dtype == "int8":
        a = torch.randint(-127, 128, (n, n), dtype=torch.int8, generator=g).to(device)
        b = torch.randint(-127, 128, (n, n), dtype=torch.int8, generator=g).to(device)
        return lambda: torch._int_mm(a, b)
    if dtype == "int8-matmul":
        if device != "cpu":
            raise ValueError("the int8 matmul primitive's peak is a CPU measurement")
        # oneDNN's matmul primitive (brgemm), which takes AMX tiles where the CPU has them, through
        # the op that runs PyTorch's x86 int8 linear layers. torch._int_mm goes through oneDNN's
        # BLAS-style gemm API instead, which need not (see onednn_kernels). u8 activations with a
        # zero point of 128: the primitive's s8 x s8 case runs a reference kernel.
        a = torch.randint(0, 256, (n, n), dtype=torch.uint8, generator=g)
        w = torch.ops.onednn.qlinear_prepack(torch.randint(-127, 128, (n, n), dtype=torch.int8, generator=g), [n, n])
        ones, zeros = torch.ones(n), torch.zeros(n, dtype=torch.int64)
        return lambda: torch.ops.onednn.qlinear_pointwise(a, 1.0, 128, w, ones, zeros, None, 1.0, 0, torch.float32,
                                                          "none", [], "")
    if dtype == "int16":  # the int16-pair kernel the engines use on AVX2 CPUs (models.gemm16)
        from concurrent.futures import ThreadPoolExecutor

        from . import gemm16

        a = torch.randint(-127, 128, (n, n), dtype=torch.int16, generator=g).numpy()
        w = gemm16.pack(torch.randint(-127, 128, (n, n), dtype=torch.int8, generator=g).numpy())
        out = torch.empty(n, n, dtype=torch.int32).numpy()
        # The kernel is one thread's; the peak is the machine's: a slice of rows per torch thread (it
        # runs without the GIL).
        parts = [slice(i * n // _THREADS(), (i + 1) * n // _THREADS()) for i in range(_THREADS())]
        pool = ThreadPoolExecutor(len(parts))
        return lambda: list(pool.map(lambda r: gemm16.gemm(a[r], w, out[r]), parts))
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    a = torch.randn(n, n, generator=g).to(device, dt)
    b = torch.randn(n, n, generator=g).to(device, dt)
    return lambda: a @ b


def _timed(fn, device: str, reps: int = 1) -> float:
    """Seconds per call of ``fn``, over ``reps`` calls between two synchronisations."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t) / reps


def has_int8_matmul() -> bool:
    """Whether this torch build has oneDNN's int8 linear op (x86 builds do)."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")
    except (AttributeError, RuntimeError):
        return False


def onednn_kernels(timeout: float = 120.0) -> dict[str, str]:
    """Which oneDNN kernels this machine runs, as ``ONEDNN_VERBOSE`` names them: the ISA oneDNN
    detected, and the implementation behind ``torch._int_mm``, the int8 matmul primitive and a bf16
    product (for example ``brg_matmul:avx512_core_amx`` where AMX tiles do the work). oneDNN prints
    these only at start-up, to stdout, so a child process runs one small product of each, built as
    the peaks build them; returns what it could read (an empty dict if the child failed)."""
    # The very products the peaks time (:func:`_gemm`), small; a marker line before each.
    code = ("from compbench.models import peak\n"
            "for i, dtype in enumerate(('int8', 'int8-matmul', 'bf16')):\n"
            "    if i: print('COMPBENCH', dtype, flush=True)\n"
            "    peak._gemm(dtype, 64, 'cpu')()\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "ONEDNN_VERBOSE": "1"}).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_onednn_verbose(out)


def parse_onednn_verbose(out: str) -> dict[str, str]:
    """The ISA and, per product, the first non-reorder kernel in :func:`onednn_kernels`' child's output
    (its ``COMPBENCH <name>`` lines mark where each product starts; the first is ``int8``)."""
    found: dict[str, str] = {}
    what = "int8"
    for line in out.splitlines():
        f = line.split(",")
        if line.startswith("COMPBENCH "):
            what = line.split()[1]
        elif ",isa:" in line:  # the rest of the line: the ISA's name may hold commas
            found["isa"] = line.split(",isa:", 1)[1]
        elif "exec" in f and "cpu" in f and what not in found:
            i = f.index("cpu")
            kind, impl = f[i + 1], f[i + 2] if len(f) > i + 2 else ""
            if kind != "reorder":
                found[what] = f"{kind}:{impl}" if impl else kind
    return found


@functools.lru_cache(maxsize=None)
def gemm_peak(dtype: str, device: str = "cpu", n: int | None = None, repeat: int = 5) -> float:
    """Operations per second (2 per multiply-accumulate) of an n x n x n GEMM in ``dtype`` ("int8":
    ``torch._int_mm``; "int8-matmul": oneDNN's int8 matmul primitive; "int16" (:mod:`.gemm16`),
    "bf16" or "fp32"), median of ``repeat`` samples, on torch's thread count; measured once per
    process and device.

    n is 2048 on a CPU and 8192 on a GPU, where a 2048-cube product takes about 20 microseconds and
    times the launch, not the matrix units (an H100 read 67 TFLOP/s instead of about 800). Each
    sample repeats the product until it spans about 50 ms, so launches and clock reads are amortised.
    Where the kernel is slow (int8 and bf16 run reference kernels on a CPU without VNNI or AMX, at a
    few GOPS, where one 2048-cube product takes a minute), n shrinks until a product takes about 0.3 s.
    """
    if n is None:
        n = 8192 if device.startswith("cuda") else 2048
    while n > 256:
        if _timed(_gemm(dtype, 256, device), device) * (n / 256) ** 3 < 0.3:
            break
        n //= 2
    fn = _gemm(dtype, n, device)
    fn()  # warm-up: kernel selection, handles, page faults
    one = _timed(fn, device)
    reps = max(1, math.ceil(0.05 / max(one, 1e-9)))
    return 2 * n**3 / statistics.median(_timed(fn, device, reps) for _ in range(repeat))


@functools.lru_cache(maxsize=None)
def read_bandwidth(threads: int = 1, mib: int = 256, repeat: int = 5) -> float:
    """Bytes per second that ``threads`` threads read from memory together, each summing its share of
    a ``mib`` MiB float64 array (far larger than any cache, so it comes from DRAM), median of
    ``repeat`` samples. numpy's sum releases the GIL and vectorises, so it runs at the memory's pace:
    the roof for an engine that streams a cache per coded byte (the transformer's keys and values)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    a = np.ones(mib * (1 << 20) // 8)
    parts = np.array_split(a, threads)
    with ThreadPoolExecutor(threads) as pool:
        def once() -> float:
            t = time.perf_counter()
            list(pool.map(np.sum, parts))
            return time.perf_counter() - t

        once()  # page faults
        return a.nbytes / statistics.median(once() for _ in range(repeat))


def matmul_flops_per_byte(model: torch.nn.Module, seq: int) -> int:
    """Training FLOPs per byte (forward and backward) in matrix products, nanoGPT's estimate:
    6 per weight of every matrix the model multiplies by (embedding tables are lookups, not
    products), plus 12 * layers * d_model * seq for attention's two T x T products."""
    n = sum(p.numel() for name, p in model.named_parameters() if p.dim() >= 2 and not name.startswith("emb."))
    cfg = getattr(model, "cfg", None)
    attention = 12 * cfg.layers * cfg.d_model * seq if cfg is not None and hasattr(cfg, "d_model") else 0
    return 6 * n + attention
