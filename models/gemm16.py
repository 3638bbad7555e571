"""Exact GEMMs of int8-valued matrices in int16 pairs: the fast exact path on CPUs without an int8 dot-product unit.

Where the CPU has AMX or VNNI, ``torch._int_mm`` multiplies int8 matrices exactly. Elsewhere (an
AVX2-only x86, the usual laptop or cloud CPU before 2021) torch's int8 GEMM is a reference kernel, or
one whose int16 pair sums saturate, and the engine used to multiply the same small integers as
float32 (exact: every partial sum is an integer below 2**24). This module is faster than that: its
kernel is ``vpmaddwd``, which multiplies 16 pairs of int16 and adds each pair into an int32, twice
the multiply-adds of a float32 FMA of the same width, and the sums are integers, exact in any order.

The kernel is LLVM IR written here (:func:`_tile`, a numba intrinsic) because numba does not emit a
register-tiled product from Python loops (measured: its best loop ran at 60% of MKL's float32
GEMM). The IR is generic (sign-extend, multiply, add even and odd lanes), which LLVM's x86 back end
turns into ``vpmaddwd`` on SSE2, AVX2 and AVX-512 alike, and any other back end into whatever it
has; the result is the same integers everywhere, only the speed differs.

Layout: ``a`` [M, K] int16 (K even; rows contiguous) times a weight packed once by :func:`pack`
([panels][K/2][W][2] int16: for each panel of W output columns, the two weights of each pair of
input rows side by side, so one 32-bit broadcast of a pair of activations meets one vector load of
the weights). A tile of R rows x W columns keeps its R x W/8 int32 accumulators in registers for the
whole K loop: with R = 4 and W = 16, 8 accumulators, 2 weight vectors, a broadcast and a product,
12 of AVX2's 16 vector registers (4 x 24 needs 17, and spills one every iteration).

The same instruction runs the transformer's attention: its scores (:func:`key_pair_scores`: int8 keys
with the head's dimensions in pairs, [dh / 2][slots][2], against a broadcast pair of the query) and
its values (:func:`weighted_pair_sums`: a sum over the window of integer weights times int16 values,
with the window's slots in pairs, [slots / 2][dh][2], each weight split into two int16 halves so
every product fits).

Exactness: each product of two int8 values is at most 127**2 in magnitude, a pair sum at most
2 * 127**2 (well inside int32, so ``vpmaddwd`` never wraps), and a sum of K of them stays below 2**31
for K < 133,000 (:data:`MAX_K`). Integer addition is associative: any tiling, order or instruction
set gives the same sums as int64 arithmetic.
"""

from __future__ import annotations

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.core.extending import intrinsic

ROWS = 4  # rows of a tile
VECS = 2  # 8-lane int32 vectors of a tile's row
WIDTH = 8 * VECS  # output columns per panel
KBLOCK = 256  # pairs of inputs per block of K (see gemm)
MAX_K = (2**31 - 1) // (127 * 127)  # longest dot product whose int8-valued sums fit int32

_I32, _I64 = ir.IntType(32), ir.IntType(64)
_V8 = ir.VectorType(_I32, 8)
_V16 = ir.VectorType(ir.IntType(16), 16)
_B16 = ir.VectorType(ir.IntType(8), 16)
_W16 = ir.VectorType(_I32, 16)
_EVEN = ir.Constant(_V8, list(range(0, 16, 2)))
_ODD = ir.Constant(_V8, list(range(1, 16, 2)))
_SPLAT = ir.Constant(_V8, [0] * 8)


def _madd(builder, x, y):
    """Lanes 2i and 2i+1 of int16 ``x * y`` summed into int32 lane i: ``pmaddwd``, in generic IR."""
    p = builder.mul(builder.sext(x, _W16), builder.sext(y, _W16))
    return builder.add(builder.shuffle_vector(p, p, _EVEN), builder.shuffle_vector(p, p, _ODD))


def _make_tile(rows: int, add: bool):
    """A numba intrinsic ``tile(a, lda, b, c, ldc, k2)`` (addresses and int32-unit strides): the
    ``rows`` x WIDTH block ``c = a @ b`` (``c += a @ b`` if ``add``) of int32 sums, over ``k2``
    pairs of input rows. ``a`` points at the tile's first row of activations, read as int32 words
    (one pair each), ``b`` at its packed panel, ``c`` at its first output."""

    @intrinsic
    def tile(typingctx, a, lda, b, c, ldc, k2):
        sig = types.void(types.int64, types.int64, types.int64, types.int64, types.int64, types.int64)

        def codegen(context, builder, signature, args):
            a, lda, b, c, ldc, k2 = args
            pa = builder.inttoptr(a, _I32.as_pointer())
            pb = builder.inttoptr(b, _V8.as_pointer())
            pc = builder.inttoptr(c, _I32.as_pointer())
            fn = builder.function
            head, body, done = (fn.append_basic_block(f"tile{rows}_{n}") for n in ("head", "body", "done"))

            def out_ptr(r, j):
                at = builder.gep(pc, [builder.add(builder.mul(ir.Constant(_I64, r), ldc), ir.Constant(_I64, 8 * j))])
                return builder.bitcast(at, _V8.as_pointer())

            start = [[ir.Constant(_V8, None)] * VECS for _ in range(rows)]
            if add:
                for r in range(rows):
                    for j in range(VECS):
                        start[r][j] = builder.load(out_ptr(r, j))
                        start[r][j].align = 4
            entry = builder.block
            builder.branch(head)
            builder.position_at_end(head)
            k = builder.phi(_I64)
            k.add_incoming(ir.Constant(_I64, 0), entry)
            acc = [[builder.phi(_V8) for _ in range(VECS)] for _ in range(rows)]
            for r in range(rows):
                for j in range(VECS):
                    acc[r][j].add_incoming(start[r][j], entry)
            builder.cbranch(builder.icmp_signed("<", k, k2), body, done)

            builder.position_at_end(body)
            wv = []
            for j in range(VECS):
                at = builder.add(builder.mul(k, ir.Constant(_I64, VECS)), ir.Constant(_I64, j))
                ld = builder.load(builder.gep(pb, [at]))
                ld.align = 4
                wv.append(builder.bitcast(ld, _V16))
            new = []
            for r in range(rows):
                pair = builder.load(builder.gep(pa, [builder.add(builder.mul(ir.Constant(_I64, r), lda), k)]))
                x = builder.insert_element(ir.Constant(_V8, ir.Undefined), pair, ir.Constant(_I32, 0))
                x = builder.bitcast(builder.shuffle_vector(x, x, _SPLAT), _V16)
                new.append([builder.add(acc[r][j], _madd(builder, x, wv[j])) for j in range(VECS)])
            k1 = builder.add(k, ir.Constant(_I64, 1))
            tail = builder.block
            builder.branch(head)
            k.add_incoming(k1, tail)
            for r in range(rows):
                for j in range(VECS):
                    acc[r][j].add_incoming(new[r][j], tail)

            builder.position_at_end(done)
            for r in range(rows):
                for j in range(VECS):
                    st = builder.store(acc[r][j], out_ptr(r, j))
                    st.align = 4
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile, _tile1 = _make_tile(ROWS, False), _make_tile(1, False)
_tile_add, _tile1_add = _make_tile(ROWS, True), _make_tile(1, True)


def pack(w: np.ndarray) -> np.ndarray:
    """int8 weights [K, N] (K even) -> the kernel's layout [ceil(N / WIDTH), K / 2, WIDTH, 2] int16,
    the last panel padded with zero columns."""
    k, n = w.shape
    if k % 2 or k > MAX_K:
        raise ValueError(f"gemm16 needs an even K of at most {MAX_K}, not {k}")
    panels = -(-n // WIDTH)
    wp = np.zeros((k, panels * WIDTH), np.int16)
    wp[:, :n] = w
    return np.ascontiguousarray(wp.reshape(k // 2, 2, panels, WIDTH).transpose(2, 0, 3, 1))


def _make_block(tile, tile1, add: bool):
    """The compiled pass over one panel: columns c0 .. c0 + WIDTH of every row, over ``k2`` pairs of
    inputs from ``pa`` (weights at ``b``), stored (or, with ``add``, added to what the earlier pairs
    left). Two functions, not a flag, so each holds one kernel."""

    @njit(cache=True, nogil=True)
    def block(pa, k, m, n, k2, b, c0, pc, ps, scratch, out):  # pragma: no cover - compiled
        wide = n - c0
        for r0 in range(0, m, ROWS):
            rows = min(ROWS, m - r0)
            if wide >= WIDTH and rows == ROWS:
                tile(pa + r0 * k * 2, k // 2, b, pc + (r0 * n + c0) * 4, n, k2)
            elif wide >= WIDTH:
                for r in range(r0, m):
                    tile1(pa + r * k * 2, k // 2, b, pc + (r * n + c0) * 4, n, k2)
            else:  # the last, partial panel: through a scratch tile, so no column past n is written
                for r in range(rows):
                    _tile1(pa + (r0 + r) * k * 2, k // 2, b, ps + r * WIDTH * 4, WIDTH, k2)
                for r in range(rows):
                    for j in range(wide):
                        out[r0 + r, c0 + j] = out[r0 + r, c0 + j] + scratch[r, j] if add else scratch[r, j]

    return block


_block_store = _make_block(_tile, _tile1, False)
_block_add = _make_block(_tile_add, _tile1_add, True)


@njit(cache=True, nogil=True)
def gemm(a, packed, out):  # pragma: no cover - compiled
    """``out[:] = a @ w`` exactly, for int16 ``a`` [M, K] holding int8 values (C-contiguous), ``w``
    packed by :func:`pack`, and int32 ``out`` [M, N] (C-contiguous). K is cut in blocks of
    :data:`KBLOCK`: a block of a panel's weights (16 KB) stays in the L1 cache while every row passes."""
    m, k = a.shape
    n = out.shape[1]
    k2 = k // 2
    # Addresses as int64: numba would make uintp + int64 a float64.
    pa, pb, pc = np.int64(a.ctypes.data), np.int64(packed.ctypes.data), np.int64(out.ctypes.data)
    scratch = np.empty((ROWS, WIDTH), np.int32)
    ps = np.int64(scratch.ctypes.data)
    for kb in range(0, k2, KBLOCK):
        kn = min(KBLOCK, k2 - kb)
        for p in range(packed.shape[0]):
            b = pb + (p * k2 + kb) * WIDTH * 4
            if kb == 0:
                _block_store(pa + kb * 4, k, m, n, kn, b, p * WIDTH, pc, ps, scratch, out)
            else:
                _block_add(pa + kb * 4, k, m, n, kn, b, p * WIDTH, pc, ps, scratch, out)


PAIR_BLOCK = 64  # slot pairs summed in int32 before widening (see weighted_pair_sums)


def _make_pair_sums(vecs: int):
    """A numba intrinsic ``sums(pv, ldv, plo, phi, out, n2)`` (addresses, strides in int32 words):
    over ``n2`` slot pairs k, int32 ``out[0:8v] = sum_k madd(v[k], lo[k])`` and ``out[8v:16v] =
    sum_k madd(v[k], hi[k])``, where v[k] is the 8 * ``vecs`` int16 pairs at ``pv + k * ldv`` and lo[k],
    hi[k] one int16 pair each (the two slots' weight halves), broadcast. 2 * ``vecs`` accumulators
    stay in registers for the whole loop."""

    @intrinsic
    def sums(typingctx, pv, ldv, plo, phi, out, n2):
        sig = types.void(types.int64, types.int64, types.int64, types.int64, types.int64, types.int64)

        def codegen(context, builder, signature, args):
            pv, ldv, plo, phi, out, n2 = args
            pv = builder.inttoptr(pv, _I32.as_pointer())
            pw = [builder.inttoptr(plo, _I32.as_pointer()), builder.inttoptr(phi, _I32.as_pointer())]
            po = builder.inttoptr(out, _V8.as_pointer())
            fn = builder.function
            head, body, done = (fn.append_basic_block(f"pairs{vecs}_{n}") for n in ("head", "body", "done"))
            entry = builder.block
            builder.branch(head)
            builder.position_at_end(head)
            k = builder.phi(_I64)
            k.add_incoming(ir.Constant(_I64, 0), entry)
            acc = [[builder.phi(_V8) for _ in range(vecs)] for _ in range(2)]
            for half in acc:
                for a in half:
                    a.add_incoming(ir.Constant(_V8, None), entry)
            builder.cbranch(builder.icmp_signed("<", k, n2), body, done)

            builder.position_at_end(body)
            w = []
            for p in pw:
                x = builder.insert_element(ir.Constant(_V8, ir.Undefined), builder.load(builder.gep(p, [k])),
                                           ir.Constant(_I32, 0))
                w.append(builder.bitcast(builder.shuffle_vector(x, x, _SPLAT), _V16))
            row = builder.mul(k, ldv)
            new = [[], []]
            for j in range(vecs):
                at = builder.gep(pv, [builder.add(row, ir.Constant(_I64, 8 * j))])
                ld = builder.load(builder.bitcast(at, _V8.as_pointer()))
                ld.align = 4
                v = builder.bitcast(ld, _V16)
                for h in range(2):
                    new[h].append(builder.add(acc[h][j], _madd(builder, v, w[h])))
            k1 = builder.add(k, ir.Constant(_I64, 1))
            tail = builder.block
            builder.branch(head)
            k.add_incoming(k1, tail)
            for h in range(2):
                for j in range(vecs):
                    acc[h][j].add_incoming(new[h][j], tail)

            builder.position_at_end(done)
            for h in range(2):
                for j in range(vecs):
                    st = builder.store(acc[h][j], builder.gep(po, [ir.Constant(_I64, h * vecs + j)]))
                    st.align = 4
            return context.get_dummy_value()

        return sig, codegen

    return sums


_pair_sums4, _pair_sums1 = _make_pair_sums(4), _make_pair_sums(1)


@njit(cache=True, nogil=True)
def weighted_pair_sums(values, lo, hi, part, out):  # pragma: no cover - compiled
    """``out[d] = sum_t (256 * hi[t] + lo[t]) * v[t, d]`` exactly, as int64, for int16 ``values``
    [slots / 2, dh, 2] (slot t's value d at ``[t // 2, d, t % 2]``; C-contiguous, dh a multiple of 8)
    and int16 weight halves ``lo``, ``hi`` [slots] (0 <= lo < 256, 0 <= hi <= 256: a weight of at most
    2**16), with ``part`` int32 [2 * dh] scratch. Slot pairs whose weights are both 0 add nothing and
    are not read: under ALiBi, a steep head's far slots (most of its window) weigh exactly 0.

    Exact: a pair sum is at most 2 * 256 * 2**15 = 2**24 in magnitude, and a run of at most
    :data:`PAIR_BLOCK` pairs (128 slots) sums to at most 128 * 2**8 * 2**15 = 2**30, inside int32;
    the runs add in int64."""
    n2, dh = values.shape[0], values.shape[1]
    pv, plo, phi = np.int64(values.ctypes.data), np.int64(lo.ctypes.data), np.int64(hi.ctypes.data)
    po = np.int64(part.ctypes.data)
    lo2, hi2 = lo.view(np.int32), hi.view(np.int32)  # one word per slot pair
    out[:] = 0
    p0 = 0
    while p0 < n2:
        if lo2[p0] == 0 and hi2[p0] == 0:
            p0 += 1
            continue
        n = 1
        while n < PAIR_BLOCK and p0 + n < n2 and (lo2[p0 + n] != 0 or hi2[p0 + n] != 0):
            n += 1
        d0 = 0
        while d0 < dh:  # 32 value lanes (8 accumulators) a pass while they last, then 8
            at = pv + (p0 * dh + d0) * 4
            if dh - d0 >= 32:
                _pair_sums4(at, dh, plo + p0 * 4, phi + p0 * 4, po, n)
                lanes = 32
            else:
                _pair_sums1(at, dh, plo + p0 * 4, phi + p0 * 4, po, n)
                lanes = 8
            for e in range(lanes):
                out[d0 + e] += np.int64(part[lanes + e]) * 256 + part[e]
            d0 += lanes
        p0 += n


SCORE_BLOCK = 32  # slots a pass of key_pair_scores keeps in registers (4 vectors of 8 int32)


@intrinsic
def _score_block(typingctx, pk, ldk, pq, out, n2):
    """``out[0:32] = sum_j madd(sext(k[j]), q[j])`` over ``n2`` key dimension pairs j: k[j] the 16
    int8 at ``pk + j * ldk`` (8 slots' key pairs a vector, 4 vectors: 32 slots), q[j] the int16
    pair at ``pq + 4 j``, broadcast. Addresses and ``ldk`` in bytes."""
    sig = types.void(types.int64, types.int64, types.int64, types.int64, types.int64)
    vecs = SCORE_BLOCK // 8

    def codegen(context, builder, signature, args):
        pk, ldk, pq, out, n2 = args
        i8p = ir.IntType(8).as_pointer()
        pk = builder.inttoptr(pk, i8p)
        pq = builder.inttoptr(pq, _I32.as_pointer())
        po = builder.inttoptr(out, _V8.as_pointer())
        fn = builder.function
        head, body, done = (fn.append_basic_block(f"scores_{n}") for n in ("head", "body", "done"))
        entry = builder.block
        builder.branch(head)
        builder.position_at_end(head)
        j = builder.phi(_I64)
        j.add_incoming(ir.Constant(_I64, 0), entry)
        acc = [builder.phi(_V8) for _ in range(vecs)]
        for a in acc:
            a.add_incoming(ir.Constant(_V8, None), entry)
        builder.cbranch(builder.icmp_signed("<", j, n2), body, done)

        builder.position_at_end(body)
        x = builder.insert_element(ir.Constant(_V8, ir.Undefined), builder.load(builder.gep(pq, [j])),
                                   ir.Constant(_I32, 0))
        qv = builder.bitcast(builder.shuffle_vector(x, x, _SPLAT), _V16)
        row = builder.mul(j, ldk)
        new = []
        for v in range(vecs):
            at = builder.gep(pk, [builder.add(row, ir.Constant(_I64, 16 * v))])
            ld = builder.load(builder.bitcast(at, _B16.as_pointer()))
            ld.align = 1
            new.append(builder.add(acc[v], _madd(builder, builder.sext(ld, _V16), qv)))
        j1 = builder.add(j, ir.Constant(_I64, 1))
        tail = builder.block
        builder.branch(head)
        j.add_incoming(j1, tail)
        for v in range(vecs):
            acc[v].add_incoming(new[v], tail)

        builder.position_at_end(done)
        for v in range(vecs):
            st = builder.store(acc[v], builder.gep(po, [ir.Constant(_I64, v)]))
            st.align = 4
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def key_pair_scores(keys, qpair, out):  # pragma: no cover - compiled
    """``out[t] = sum_d k[d, t] * q[d]`` exactly (int32), for int8 ``keys`` [dh / 2, slots, 2] (key d
    of slot t at ``[d // 2, t, d % 2]``; C-contiguous, slots a multiple of :data:`SCORE_BLOCK`) and
    the query as int16 ``qpair`` [dh] (int8 values). Each product is at most 127**2 in magnitude, so
    a head of up to 133,000 dimensions sums inside int32, in any order."""
    n2, slots = keys.shape[0], keys.shape[1]
    pk, pq, po = np.int64(keys.ctypes.data), np.int64(qpair.ctypes.data), np.int64(out.ctypes.data)
    for t0 in range(0, slots, SCORE_BLOCK):
        _score_block(pk + t0 * 2, slots * 2, pq, po + t0 * 4, n2)
