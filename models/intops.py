"""Exact integer building blocks for bit-reproducible inference: int8 matmul, LUT nonlinearities, softmax.

Why this exists: a range decoder must see *bit-identical* probabilities to the encoder's, and float
sums depend on summation order, which depends on thread count, batch shape and instruction set.
Everything here is therefore either

* an integer computation whose result does not depend on order (int8 x int8 -> int32 dot products,
  int64 sums), or
* a single IEEE-754 operation that is correctly rounded by definition (``+ - * /`` and ``sqrt`` on
  float64, elementwise, never fused into an FMA because each is its own torch kernel), or
* a table lookup whose table is defined by :mod:`decimal` (correctly rounded software arithmetic),
  not by ``exp``/``tanh`` from libm or SVML, which differ in the last bit between machines (those
  compute it only where their last bits cannot change an entry: see ``_GUARD``).

Matrix products take one of three paths, by machine (:func:`matrix_path`), all giving the same
integers: int8 GEMMs through oneDNN where the CPU has AMX or VNNI, after a probe has shown that this
process's kernel is exact (non-VNNI int8 kernels saturate int16 pair sums); on other x86 CPUs with
AVX2, :mod:`.gemm16` multiplies the int8 values as int16 pairs (``vpmaddwd``, exact int32 sums);
elsewhere a float32 GEMM whose partial sums are all integers below 2**24 (exact in any order) or,
for longer dot products, a float64 GEMM (exact below 2**53). The int8 path reaches oneDNN by one of
two routes (:func:`int8_route`), whichever a start-up timing finds faster here: ``torch._int_mm``,
or the matmul primitive that runs AMX tiles. The tests check that every path and route gives
identical integers.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, localcontext

import numpy as np
import torch
from numba import njit

from . import gemm16

BOS = 256  # the input symbol that starts every coded stream (byte values are 0..255)

# Sigmoid/tanh tables: one entry per 1/RES over [-LIM, LIM], nearest entry (no interpolation: each
# extra elementwise op costs more than the 5e-4 worst-case error it would remove, far under int8 noise).
RES = 1024
LIM = 8
# Softmax: logit gaps are rounded to 1/ERES nats; gaps beyond EMAX nats get the smallest weight.
ERES = 256
EMAX = 20  # exp(-20) * 2**30 = 2.2: every symbol keeps a weight of at least 2
EXP_ONE = 1 << 30  # weight of the most likely symbol; the sum of 257 weights stays far below 2**53

_INT_MM_OK: bool | None = None


# The tables are defined by 40-digit decimal arithmetic: entry i is float32(float(D_i)), the same on
# every machine. All in decimal took 0.85 s a process, so they are computed in float64 (within 1e-15
# of D_i, relative) and rounded; the few entries within _GUARD of a rounding boundary (a float32
# midpoint; an integer's half) are recomputed in decimal. Which ones may vary; the tables never do.
_GUARD = 2.0**-40


def _decimal(fn, i):
    with localcontext() as ctx:
        ctx.prec = 40
        return fn(i)


def _float32_table(approx: np.ndarray, fn) -> torch.Tensor:
    f = approx.astype(np.float32)
    mids = [(f.astype(np.float64) + np.nextafter(f, np.float32(s)).astype(np.float64)) / 2 for s in (np.inf, -np.inf)]
    for i in np.flatnonzero(np.minimum(*[np.abs(approx - m) for m in mids]) <= _GUARD * np.abs(approx)):
        f[i] = float(_decimal(fn, Decimal(int(i)) / RES - LIM))  # Decimal -> float is correctly rounded
    return torch.from_numpy(f)


def _tanh(x):
    e = (-2 * x).exp()
    return (1 - e) / (1 + e)


@functools.lru_cache(maxsize=None)
def sigmoid_table() -> torch.Tensor:
    x = np.arange(2 * LIM * RES + 1) / RES - LIM  # exact
    return _float32_table(1 / (1 + np.exp(-x)), lambda d: 1 / (1 + (-d).exp()))


@functools.lru_cache(maxsize=None)
def tanh_table() -> torch.Tensor:
    return _float32_table(np.tanh(np.arange(2 * LIM * RES + 1) / RES - LIM), _tanh)


@functools.lru_cache(maxsize=None)
def exp_table() -> torch.Tensor:
    """int64 weights round(EXP_ONE * exp(-i/ERES)) for i = 0 .. EMAX*ERES (see _GUARD)."""
    t = np.exp(-np.arange(EMAX * ERES + 1) / ERES) * EXP_ONE + 0.5
    vals = np.floor(t).astype(np.int64)
    for i in np.flatnonzero(np.abs(t - vals - 0.5) >= 0.5 - _GUARD * t):
        vals[i] = int(_decimal(lambda j: (Decimal(-j) / ERES).exp() * EXP_ONE + Decimal("0.5"), int(i)))
    return torch.from_numpy(vals)


def lut(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Nearest-entry lookup of float32 ``x``: a multiply, an add, a clamp and a truncation, each
    correctly rounded or exact, so the index is the same on every machine."""
    i = (x * float(RES) + float(LIM * RES) + 0.5).clamp_(0.0, float(2 * LIM * RES)).to(torch.int32)
    return table.index_select(0, i.view(-1)).view(x.shape)  # ~4x faster than table[i] on CPU


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return lut(sigmoid_table(), x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return lut(tanh_table(), x)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-row int8 quantization of float64 ``x``: returns (int8 q, float64 step per row).

    max is exact, and ``x * (127 / m)`` is two correctly rounded operations, so q is reproducible.
    Runs as one compiled pass (:func:`_quantize_rows`); :func:`quantize_rows_reference` is the torch
    version it must equal bit for bit.
    """
    k = x.shape[-1]
    flat = x.reshape(-1, k).contiguous()
    q = torch.empty(flat.shape, dtype=torch.int8)
    step = torch.empty(flat.shape[0], 1, dtype=torch.float64)
    _quantize_rows(flat.numpy(), q.numpy(), step.numpy())
    return q.view(x.shape), step.view(*x.shape[:-1], 1)


def quantize_rows_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`quantize_rows` as torch ops (about eight passes over the rows)."""
    m = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)
    q = torch.round(x * (127.0 / m)).clamp_(-127, 127).to(torch.int8)
    return q, m / 127.0


@njit(cache=True, nogil=True)
def _quantize_rows(x, q, step):  # pragma: no cover - compiled
    """The per-row max of |x|, then q = round(x * (127 / max)) clamped to +-127, and step = max / 127:
    the float64 operations of :func:`quantize_rows_reference`, in its order (no fast-math, no FMA).
    A scalar divided by a tensor is, in torch, the tensor's reciprocal times the scalar: so is it here."""
    for i in range(x.shape[0]):
        step[i, 0] = quantize_row(x[i], q[i])


@njit(cache=True, nogil=True)
def quantize_row(x, q):  # pragma: no cover - compiled
    """One row of :func:`_quantize_rows`, for compiled callers: writes ``q`` (int8 values, in any
    numeric dtype) from float64 ``x`` and returns the row's step."""
    m = 0.0
    for j in range(x.shape[0]):
        a = abs(x[j])
        m = a if a > m else m
    m = m if m > 1e-30 else 1e-30
    r = (1.0 / m) * 127.0  # torch computes the reference's 127.0 / m as m.reciprocal() * 127.0: two roundings
    for j in range(x.shape[0]):
        q[j] = np.int8(min(max(np.rint(x[j] * r), -127.0), 127.0))
    return m / 127.0


def _int_mm_is_exact() -> bool:
    """Does this process's ``torch._int_mm`` return exact int32 sums?

    With AMX or AVX512-VNNI it accumulates in int32 and is exact. Without VNNI (for example oneDNN
    capped at AVX2), int8 GEMMs use ``vpmaddubsw``, whose pairwise int16 sums saturate: a silent,
    machine-dependent error. The probe uses the patterns that saturate (full-scale values of every
    sign combination) plus random full-range data, for a matrix-vector and two matrix shapes.
    """
    return _exact_on_probes(torch._int_mm)


def _exact_on_probes(mm) -> bool:
    """Does ``mm(a, b)`` (int8 [m, 256] and [256, 64]) give the exact sums on :func:`_int_mm_is_exact`'s
    patterns?"""
    g = torch.Generator().manual_seed(0)
    for m in (1, 7, 64):
        for a_val, b_val in ((127, 127), (-127, 127), (127, -127), (-127, -127), (None, None)):
            if a_val is None:
                a = torch.randint(-127, 128, (m, 256), dtype=torch.int8, generator=g)
                b = torch.randint(-127, 128, (256, 64), dtype=torch.int8, generator=g)
            else:
                a = torch.full((m, 256), a_val, dtype=torch.int8)
                b = torch.full((256, 64), b_val, dtype=torch.int8)
            got = mm(a, b)
            if got.dtype not in (torch.int32, torch.float32) or \
                    not torch.equal(got.to(torch.int64), a.to(torch.int64) @ b.to(torch.int64)):
                return False
    return True


def _cpu_has_int8_dot() -> bool:
    """Does the CPU have int8 dot-product units (VNNI or AMX)? Without them oneDNN's int8 GEMM runs a
    reference kernel that was measured 8-30x slower than the exact float32 GEMM on an AVX2 EPYC."""
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            return set(fh.read().split())
    except OSError:
        return set()


@functools.lru_cache(maxsize=None)
def _gemm16_available() -> bool:
    """Is :mod:`.gemm16` the fast exact path here? On x86-64 with AVX2 its ``vpmaddwd`` kernel ran
    1.5-1.9x as fast as MKL's float32 GEMM on the engines' products (an EPYC restricted to AVX2).
    Elsewhere (an ARM CPU, whose float GEMM may run on a matrix unit) the float path stays; the int16
    kernel would give the same integers there too. ``COMPBENCH_NO_GEMM16`` stands in for a machine
    without it."""
    import platform

    if os.environ.get("COMPBENCH_NO_GEMM16"):
        return False
    return platform.machine().lower() in ("x86_64", "amd64") and "avx2" in _cpu_flags()


def matrix_path() -> str:
    """The exact GEMM the engines use on this machine: ``"int8"`` (``torch._int_mm``), ``"int16"``
    (:mod:`.gemm16`) or ``"float"`` (float32 GEMMs of small integers). Only speed depends on it."""
    return "int8" if _int_mm_available() else "int16" if _gemm16_available() else "float"


def _int_mm_available() -> bool:
    global _INT_MM_OK
    if _INT_MM_OK is None:
        if os.environ.get("COMPBENCH_NO_INT_MM") or not _cpu_has_int8_dot():
            _INT_MM_OK = False  # COMPBENCH_NO_INT_MM stands in for a machine without an int8 GEMM
            return False
        try:
            _INT_MM_OK = _int_mm_is_exact()
        except Exception:  # older torch, or no CPU kernel: fall back to exact float GEMMs
            _INT_MM_OK = False
    return _INT_MM_OK


# The int8 path's two routes into oneDNN; both exact (each probed), only speed differs. "int_mm":
# torch._int_mm, oneDNN's BLAS-style gemm API (ran at about VNNI's rate on the one AMX Xeon timed).
# "matmul": oneDNN's matmul primitive (torch.ops.onednn.qlinear_pointwise, behind PyTorch's x86 int8
# linear layers), which runs AMX tiles where there are some. It takes u8 activations with a zero
# point of 128 (its s8 x s8 case runs a reference kernel), so a caller hands it q + 128, and writes
# float32: exact integer sums where they stay below 2**24 (Int8Matrix.small), the only place it runs.
INT8_ROUTES = ("int_mm", "matmul")
_INT8_ROUTE: str | None = None
_ROUTE_SECONDS: dict[str, float] = {}


class Int8Matrix:
    """An int8 weight ``w_t`` [K, N] for :func:`int_matmul`, with the copy each GEMM path multiplies
    by (float, packed int16 pairs, or oneDNN's packed weight), made once at load rather than on every
    step. ``u8_input``: the engine can hand this matrix its activations offset by 128, as uint8 (see
    :func:`gemm_input_dtype`), which lets it take the int8 path's matmul route (:func:`int8_route`)."""

    def __init__(self, w_t: torch.Tensor, u8_input: bool = False):
        if w_t.dtype != torch.int8 or w_t.dim() != 2:
            raise ValueError("Int8Matrix takes a 2-D int8 tensor")
        self.i8 = w_t.contiguous()
        self.small = w_t.shape[0] * 127 * 127 < (1 << 24)
        self.u8_input = u8_input
        self._float: torch.Tensor | None = None
        self._pairs: np.ndarray | None = None
        self._onednn: tuple | None = None

    @property
    def shape(self):
        return self.i8.shape

    def as_float(self) -> torch.Tensor:
        if self._float is None:
            self._float = self.i8.to(torch.float32 if self.small else torch.float64)
        return self._float

    def as_pairs(self) -> np.ndarray:
        """The weights packed for :func:`gemm16.gemm`."""
        if self._pairs is None:
            self._pairs = gemm16.pack(self.i8.numpy())
        return self._pairs

    def as_onednn(self) -> tuple:
        """The weights packed for oneDNN's matmul primitive, with its unit scales and zero points."""
        if self._onednn is None:
            n = self.shape[1]
            self._onednn = (torch.ops.onednn.qlinear_prepack(self.i8.T.contiguous(), None),
                            torch.ones(n, dtype=torch.float32), torch.zeros(n, dtype=torch.int64))
        return self._onednn

    def path(self) -> str:
        """This matrix's GEMM path here (:func:`matrix_path`; the int16 kernel takes an even K):
        ``"int8-u8"`` where it takes the int8 path's matmul route, which wants uint8 input."""
        p = matrix_path()
        if p == "int8" and self.u8_input and self.small and int8_route() == "matmul":
            return "int8-u8"
        return "float" if p == "int16" and (self.shape[0] % 2 or self.shape[0] > gemm16.MAX_K) else p


def as_u8(q: torch.Tensor) -> torch.Tensor:
    """int8 values (in any integer or float dtype) as the matmul route's uint8 input, q + 128."""
    return (q.to(torch.int16) + 128).to(torch.uint8)


def gemm_input(q: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """int8 values ``q`` in :func:`gemm_input_dtype` ``dtype``: offset by 128 for uint8."""
    return as_u8(q) if dtype == torch.uint8 else q.to(dtype)


def _onednn_matmul(x_u8: torch.Tensor, w: Int8Matrix) -> torch.Tensor:
    """The matmul route: exact ``(x_u8 - 128) @ w`` as float32 (a fresh tensor; ``w.small``)."""
    packed, ones, zeros = w.as_onednn()
    return torch.ops.onednn.qlinear_pointwise(x_u8, 1.0, 128, packed, ones, zeros, None, 1.0, 0, torch.float32,
                                              "none", [], "")


def _matmul_route_is_exact() -> bool:
    """Does oneDNN's matmul primitive return exact sums here, for u8 inputs offset by 128?"""
    return _exact_on_probes(lambda a, b: _onednn_matmul(as_u8(a), Int8Matrix(b)))


def _matmul_route_usable() -> bool:
    """Has this torch oneDNN's int8 matmul op, and does it give exact sums here?"""
    try:
        return hasattr(torch.ops.onednn, "qlinear_pointwise") and _matmul_route_is_exact()
    except Exception:  # a torch build without the op, or without a kernel for it
        return False


def route_seconds(m: int = 128, k: int = 448, ns: tuple[int, ...] = (1344, 256), rounds: int = 5) -> dict[str, float]:
    """Seconds per step of each int8 route on one thread (where a mixed run's helper multiplies):
    one product [m, k] x [k, n] for each n, alternating routes, medians of ``rounds``. The default
    is the shipped GRUs' step: the recurrent product, then the output one."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g)
    ws = [Int8Matrix(torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=g)) for n in ns]
    xu, outs = as_u8(x), [torch.empty(m, n, dtype=torch.int32) for n in ns]
    calls = {"int_mm": lambda: [torch._int_mm(x, w.i8, out=o) for w, o in zip(ws, outs)],
             "matmul": lambda: [_onednn_matmul(xu, w) for w in ws]}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for f in calls.values():  # oneDNN builds each kernel at its first call
            f(), f()
        times: dict[str, list[float]] = {r: [] for r in calls}
        for _ in range(rounds):
            for r, f in calls.items():
                t = time.perf_counter()
                f(), f()
                times[r].append((time.perf_counter() - t) / 2)
    finally:
        torch.set_num_threads(threads)
    return {r: statistics.median(v) for r, v in times.items()}


def int8_route() -> str:
    """How this process reaches oneDNN's int8 GEMM: ``"int_mm"`` or ``"matmul"`` (see
    ``INT8_ROUTES``). The matmul route is taken where its probe passes and it ran the shipped GRUs'
    two products at least 10% faster than ``torch._int_mm`` at start-up (about 20 ms of timing,
    once a process); ``COMPBENCH_INT8_ROUTE`` forces one (the forced matmul route still needs its
    probe to pass). Engines use it only where the int8 path runs."""
    global _INT8_ROUTE
    if _INT8_ROUTE is None:
        forced = os.environ.get("COMPBENCH_INT8_ROUTE", "").strip()
        if forced and forced not in INT8_ROUTES:
            raise ValueError(f"COMPBENCH_INT8_ROUTE must be one of {', '.join(INT8_ROUTES)}, not {forced!r}")
        route = "int_mm"
        if forced != "int_mm" and _int_mm_available():
            usable = _matmul_route_usable()
            if usable and forced == "matmul":
                route = "matmul"
            elif usable:
                _ROUTE_SECONDS.update(route_seconds())
                route = "matmul" if _ROUTE_SECONDS["matmul"] < 0.9 * _ROUTE_SECONDS["int_mm"] else "int_mm"
        _INT8_ROUTE = route
    return _INT8_ROUTE


def int8_route_seconds() -> dict[str, float]:
    """The start-up timing behind :func:`int8_route`'s choice (empty where none ran)."""
    int8_route()
    return dict(_ROUTE_SECONDS)


def gemm_input_dtype(w: Int8Matrix) -> torch.dtype:
    """The dtype :func:`int_matmul` multiplies int8 activations in on this machine: int8 where the
    int8 GEMM is exact and fast (uint8, holding q + 128, on its matmul route: see :func:`gemm_input`),
    int16 for :mod:`.gemm16`, else that of the float copy. An engine that rounds its activations
    straight into this dtype spares a conversion per step (the values are the same small integers)."""
    return {"int8": torch.int8, "int8-u8": torch.uint8, "int16": torch.int16}.get(w.path()) or w.as_float().dtype


def acc_dtype(w: Int8Matrix) -> torch.dtype:
    """The dtype of :func:`matmul_into`'s raw sums on this machine: int32 from the integer GEMMs,
    float32 from the int8 path's matmul route, else that of the float copy (float32 or float64; each
    holds the sums exactly)."""
    p = w.path()
    return torch.float32 if p == "int8-u8" else torch.int32 if p != "float" else w.as_float().dtype


def matmul_into(x: torch.Tensor, w: Int8Matrix, out: torch.Tensor) -> torch.Tensor:
    """Exact ``x @ w``, for an engine that keeps its buffers: ``x`` holds int8 values in
    :func:`gemm_input_dtype`, ``out`` is in :func:`acc_dtype`. Returns the sums: ``out`` itself, except
    on the int8 path's matmul route (uint8 ``x``), whose primitive writes a tensor of its own, so
    callers use what is returned. Otherwise no conversion passes and no fresh tensors: in a step of
    small matrices those cost as much as the products."""
    if x.dtype == torch.uint8:
        return _onednn_matmul(x, w)
    if x.dtype == torch.int16:
        gemm16.gemm(x.contiguous().numpy(), w.as_pairs(), out.numpy())
        return out
    if out.dtype == torch.int32:
        return torch._int_mm(x, w.i8, out=out)
    return torch.mm(x, w.as_float(), out=out)


def int_matmul(x: torch.Tensor, w_t: "Int8Matrix | torch.Tensor", dtype=torch.float64, *,
               path: str | None = None) -> torch.Tensor:
    """Exact ``x @ w_t`` for int8 ``x`` [M, K] and an int8 ``w_t`` [K, N] (an :class:`Int8Matrix`
    or a tensor), as integers in ``dtype``.

    float32 output is allowed only when every sum is below 2**24 (K * 127**2 < 2**24, K <= 1040), so
    the integers are exact in it too. Every path (``path``: "int8", "int8-u8" (the int8 path's
    matmul route), "int16" or "float"; by default the matrix's own, :meth:`Int8Matrix.path`)
    returns the same integers; only speed differs.
    ``x`` may also hold those integers in float, or offset by 128 in uint8 (see
    :func:`gemm_input_dtype`). An engine that keeps
    its buffers from step to step uses :func:`matmul_into` instead.
    """
    w = w_t if isinstance(w_t, Int8Matrix) else Int8Matrix(w_t)
    if dtype == torch.float32 and not w.small:
        raise ValueError(f"an int8 dot product of length {w.shape[0]} can exceed float32's exact integers")
    path = path or w.path()
    if path == "int8-u8":
        if not w.small:
            raise ValueError(f"the matmul route writes float32, which cannot hold every sum of length {w.shape[0]}")
        return _onednn_matmul(x if x.dtype == torch.uint8 else as_u8(x), w).to(dtype)
    if x.dtype == torch.uint8:  # the matmul route's q + 128 (gemm_input_dtype), for another path
        x = (x.to(torch.int16) - 128).to(torch.int8)
    if path == "int8":
        return torch._int_mm(x.to(torch.int8).contiguous(), w.i8).to(dtype)
    if path == "int16":
        out = torch.empty(x.shape[0], w.shape[1], dtype=torch.int32)
        gemm16.gemm(x.to(torch.int16).contiguous().numpy(), w.as_pairs(), out.numpy())
        return out.to(dtype)
    # small: all partial sums are integers of magnitude < 2**24, which float32 holds exactly, so any
    # blocking, threading or FMA order gives the same result; otherwise float64 (exact below 2**53).
    wf = w.as_float()
    return (x.to(wf.dtype) @ wf).to(dtype)


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool): a forked child builds its own


def workers(n: int = 1) -> ThreadPoolExecutor:
    """A pool of at least ``n`` background threads, each running torch ops on one intra-op thread,
    for work an engine splits across threads (the transformer's decoder step split into runs of
    streams; steps that must run one at a time go to :func:`helper`). The caller's own
    torch ops keep their thread count. Only speed depends on it: what runs there is exact integer
    sums or row-independent kernels, the same whichever thread computes which rows."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < n:
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        _POOL = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix="compbench-worker",
                                                     initializer=torch.set_num_threads, initargs=(1,)))
    return _POOL[2]


_HELPER: tuple[int, ThreadPoolExecutor] | None = None


def helper() -> ThreadPoolExecutor:
    """One background thread, with one torch intra-op thread, whose tasks run one at a time in the
    order submitted: for an engine's steps that overlap the caller's work but must never overlap
    each other (they share the engine's scratch buffers). Not :func:`workers`, whose pool can be
    wider: two GRU group steps running there at once once corrupted each other's sums."""
    global _HELPER
    if _HELPER is None or _HELPER[0] != os.getpid():
        _HELPER = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="compbench-helper",
                                                   initializer=torch.set_num_threads, initargs=(1,)))
    return _HELPER[1]


def exp_weights(logits: torch.Tensor) -> torch.Tensor:
    """The integer softmax weights of float logits [B, 256]: int64, the largest EXP_ONE, none below 2.

    Gaps to the row maximum are rounded to 1/ERES nats and looked up in an integer exp table."""
    # gap >= 0, so adding 0.5 and truncating rounds half up: one op fewer than round() + clamp(min=0)
    idx = ((logits.amax(dim=-1, keepdim=True) - logits) * ERES + 0.5).clamp_(max=EMAX * ERES).to(torch.int32)
    return exp_table().index_select(0, idx.view(-1)).view(idx.shape)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Reproducible softmax: float logits [B, 256] -> float64 probabilities [B, 256].

    The integer weights of :func:`exp_weights` are summed exactly in int64 and each probability is
    one correctly rounded division.
    """
    return normalize(exp_weights(logits))


def normalize(w: torch.Tensor) -> torch.Tensor:
    """int64 weights [B, N] -> float64 probabilities: an exact int64 sum, then one division each."""
    return w.to(torch.float64) / w.sum(dim=-1, keepdim=True).to(torch.float64)


@njit(cache=True, nogil=True)
def _exp_weights_rows(acc, scale, bias, table, out):  # pragma: no cover - compiled
    """:func:`exp_weights` of the logits ``acc * scale + bias`` (float32 [B, N]), fused into one
    pass per row: the same float32 operations in the same order as the torch ops (a multiply and an
    add per logit, each rounded, never contracted into an FMA since numba compiles without
    fast-math; then the gap to the row's maximum, times ERES, plus 1/2, clamped and truncated)."""
    B, N = acc.shape
    logit = np.empty(N, np.float32)
    top = np.float32(EMAX * ERES)
    for b in range(B):
        m = np.float32(-np.inf)
        for j in range(N):
            v = np.float32(acc[b, j]) * scale[j] + bias[j]  # int32 sums: exact in float32 (below 2**24)
            logit[j] = v
            m = v if v > m else m
        for j in range(N):
            g = (m - logit[j]) * np.float32(ERES) + np.float32(0.5)
            out[b, j] = table[np.int32(g if g < top else top)]


def exp_weights_of(acc: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``exp_weights(acc * scale + bias)`` for the exact sums ``acc`` [B, N] (int32 or float32), in one
    compiled pass."""
    out = torch.empty(acc.shape, dtype=torch.int64)
    _exp_weights_rows(acc.numpy(), scale.numpy(), bias.numpy(), exp_table().numpy(), out.numpy())
    return out
