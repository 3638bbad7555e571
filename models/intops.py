"""Exact integer building blocks for bit-reproducible inference: int8 matmul, LUT nonlinearities, softmax.

Why this exists: a range decoder must see *bit-identical* probabilities to the encoder's, and float
sums depend on summation order, which depends on thread count, batch shape and instruction set.
Everything here is therefore either

* an integer computation whose result does not depend on order (int8 x int8 -> int32 dot products,
  int64 sums), or
* a single IEEE-754 operation that is correctly rounded by definition (``+ - * /`` and ``sqrt`` on
  float64, elementwise, never fused into an FMA because each is its own torch kernel), or
* a table lookup whose table is computed with :mod:`decimal` (correctly rounded software arithmetic)
  and not with ``exp``/``tanh`` from libm or SVML, which differ in the last bit between machines.

``torch._int_mm`` runs int8 GEMMs on AMX/VNNI where oneDNN finds them, after a probe has shown that
this process's kernel is exact (non-VNNI int8 kernels saturate int16 pair sums); otherwise the
same integers come from a float32 GEMM whose partial sums are all integers below 2**24 (exact in any
order) or, for longer dot products, a float64 GEMM (exact below 2**53). The tests check that every
path gives identical integers.
"""

from __future__ import annotations

import functools
import os
from decimal import Decimal, localcontext

import torch

# Pre-activation resolution of the sigmoid/tanh tables: 1/RES per step over [-LIM, LIM], linearly
# interpolated. 256 steps per unit keeps the table error below 1e-6, far under int8 noise.
RES = 256
LIM = 8
# Softmax: logit gaps are rounded to 1/ERES nats; gaps beyond EMAX nats get the smallest weight.
ERES = 256
EMAX = 20  # exp(-20) * 2**30 = 2.2: every symbol keeps a weight of at least 2
EXP_ONE = 1 << 30  # weight of the most likely symbol; the sum of 257 weights stays far below 2**53

_INT_MM_OK: bool | None = None


def _decimal_table(fn, n: int, res: int, lim: int) -> torch.Tensor:
    with localcontext() as ctx:
        ctx.prec = 40
        vals = [float(fn(Decimal(i) / res - lim)) for i in range(n)]
    return torch.tensor(vals, dtype=torch.float64)


@functools.lru_cache(maxsize=None)
def sigmoid_table() -> torch.Tensor:
    return _decimal_table(lambda x: 1 / (1 + (-x).exp()), 2 * LIM * RES + 2, RES, LIM)


@functools.lru_cache(maxsize=None)
def tanh_table() -> torch.Tensor:
    return _decimal_table(lambda x: (1 - (-2 * x).exp()) / (1 + (-2 * x).exp()), 2 * LIM * RES + 2, RES, LIM)


@functools.lru_cache(maxsize=None)
def exp_table() -> torch.Tensor:
    """int64 weights round(EXP_ONE * exp(-i/ERES)) for i = 0 .. EMAX*ERES."""
    with localcontext() as ctx:
        ctx.prec = 40
        vals = [int((Decimal(-i) / ERES).exp() * EXP_ONE + Decimal("0.5")) for i in range(EMAX * ERES + 1)]
    return torch.tensor(vals, dtype=torch.int64)


def lut(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear table lookup of float64 ``x``; every step is a correctly rounded IEEE op."""
    u = (x.clamp(-LIM, LIM) + LIM) * RES  # each op correctly rounded; the power-of-two scale is exact
    i = u.floor()
    frac = u - i
    i = i.to(torch.int64)
    lo = table[i]
    return lo + (table[i + 1] - lo) * frac


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return lut(sigmoid_table(), x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return lut(tanh_table(), x)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-row int8 quantization of float64 ``x``: returns (int8 q, float64 step per row).

    max is exact, and ``x * (127 / m)`` is two correctly rounded operations, so q is reproducible.
    """
    m = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)
    q = torch.round(x * (127.0 / m)).clamp_(-127, 127).to(torch.int8)
    return q, m / 127.0


def _int_mm_is_exact() -> bool:
    """Does this process's ``torch._int_mm`` return exact int32 sums?

    With AMX or AVX512-VNNI it accumulates in int32 and is exact. Without VNNI (for example oneDNN
    capped at AVX2), int8 GEMMs use ``vpmaddubsw``, whose pairwise int16 sums saturate: a silent,
    machine-dependent error. The probe uses the patterns that saturate (full-scale values of every
    sign combination) plus random full-range data, for a matrix-vector and two matrix shapes.
    """
    g = torch.Generator().manual_seed(0)
    for m in (1, 7, 64):
        for a_val, b_val in ((127, 127), (-127, 127), (127, -127), (-127, -127), (None, None)):
            if a_val is None:
                a = torch.randint(-127, 128, (m, 256), dtype=torch.int8, generator=g)
                b = torch.randint(-127, 128, (256, 64), dtype=torch.int8, generator=g)
            else:
                a = torch.full((m, 256), a_val, dtype=torch.int8)
                b = torch.full((256, 64), b_val, dtype=torch.int8)
            if not torch.equal(torch._int_mm(a, b).to(torch.int64), a.to(torch.int64) @ b.to(torch.int64)):
                return False
    return True


def _int_mm_available() -> bool:
    global _INT_MM_OK
    if _INT_MM_OK is None:
        if os.environ.get("COMPBENCH_NO_INT_MM"):  # stands in for a machine without an int8 GEMM
            _INT_MM_OK = False
            return False
        try:
            _INT_MM_OK = _int_mm_is_exact()
        except Exception:  # older torch, or no CPU kernel: fall back to exact float GEMMs
            _INT_MM_OK = False
    return _INT_MM_OK


def int_matmul(x: torch.Tensor, w_t: torch.Tensor, *, use_int_mm: bool | None = None) -> torch.Tensor:
    """Exact ``x @ w_t`` for int8 ``x`` [M, K] and int8 ``w_t`` [K, N], as float64 integers.

    Every path returns the same integers; only speed differs.
    """
    k = x.shape[-1]
    if use_int_mm is None:
        use_int_mm = _int_mm_available()
    if use_int_mm:
        return torch._int_mm(x.contiguous(), w_t).to(torch.float64)
    if k * 127 * 127 < (1 << 24):
        # All partial sums are integers of magnitude < 2**24: float32 represents each exactly, so
        # any blocking, threading or FMA order gives the same result.
        return (x.to(torch.float32) @ w_t.to(torch.float32)).to(torch.float64)
    return x.to(torch.float64) @ w_t.to(torch.float64)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Reproducible softmax: float64 logits [B, 256] -> float64 probabilities [B, 256].

    Gaps to the row maximum are rounded to 1/ERES nats and looked up in an integer exp table; the
    integer weights are summed exactly in int64 and each probability is one correctly rounded division.
    """
    gap = (logits.amax(dim=-1, keepdim=True) - logits) * ERES
    idx = torch.round(gap).clamp_(0, EMAX * ERES).to(torch.int64)
    w = exp_table()[idx]
    return w.to(torch.float64) / w.sum(dim=-1, keepdim=True).to(torch.float64)
