"""Context mixing over lockstep streams: the byte-LM mixed, bit by bit, with context models shared by all streams.

The byte-LM knows its training text; it knows nothing of the text being coded beyond its window or
recurrent state, and each lockstep stream starts cold. :class:`ContextMixer` adds what strong CPU
coders (lpaq, paq8) learn from the text itself, and shares it across every stream:

* order-0 to order-8 context models and three word models (the current word, alone and with the
  one or two words before it): for each context and each bit position, an adaptive probability
  that the next bit is 1. A hashed context keeps the 15 bit nodes of each nibble in one 64-byte
  bucket (two cache misses a byte, not eight). Hashed slots carry a check byte of the context that
  owns them: a context that finds another's slot sees "unseen" rather than a stranger's
  statistics, and takes the slot over only from an owner seen fewer than :data:`EVICT` times;
* a match model: the most recent earlier occurrence of the last :data:`MINLEN` bytes, anywhere in
  the bytes coded so far by *any* stream (or in the context the coder was primed with), predicts
  the next byte, bit by bit, with a confidence learned per match length;
* a gated logistic mixer (one weight vector per partial byte and match state) that combines those
  predictions with the byte-LM's own, and learns from every coded bit.

A byte is coded as 8 binary decisions, most significant bit first; the LM's probability of each bit
is the exact integer ratio of its softmax weights over the two halves of the remaining subtree.

Determinism: everything here is integer arithmetic (int64, and uint64 wrapping where hashes wrap),
and the squash/stretch tables are built with :mod:`decimal`. The encoder and the decoder make the
same calls, group by group, in the same order, on one thread: the context tables learn stream by
stream, in stream order, and a mixer weight shared by many streams moves by the mean of their
steps (an integer sum, then a floor division). The mixer keeps its own copy of every byte it has
coded (``buf``), so the encoder (which knows the whole input) and the decoder (which knows what it
has decoded) read exactly the same bytes. Coded probabilities are 12-bit integers.

Speed: the per-bit work (about 150 integer operations per stream) runs in loops compiled by numba
(``cache=True``: compiled once per machine, then loaded). Integer arithmetic compiled by LLVM is
the same integer arithmetic on every instruction set, so a payload is the same whichever CPU made it.
"""

from __future__ import annotations

import functools
import mmap
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, localcontext

import numpy as np
from numba import njit
from numba.core import types
from numba.experimental import structref

MINLEN = 7  # bytes of context a match must share before it predicts
MAXLEN = 65535
BYTE_ORDERS = (0, 1, 2, 3, 4, 5, 6, 7, 8)  # byte contexts (0 and 1 direct, the rest hashed), then the word contexts
ORDERS = len(BYTE_ORDERS)
WORDS = 3  # the current word; with the previous word; with the two before it
# Slots per hashed table (orders 2-8 and the word contexts): about 16 per byte coded or primed,
# 2**16 to 2**24 (16M x 4 bytes: probability, count, check). n and the context length are known to
# both sides before coding, so both pick the same size. A crowded table costs. Under engine v1 (a
# slot per bit node, hashed on its own): 4M slots cost dickens 0.7% against 16M on 1 MB (before
# check bytes), and with all 5.1 MB of ptb's train text primed, 2**25 slots beat 2**24 by 0.5%
# (without check bytes; with them and EVICT the 2**24 tables did better than that). A nibble
# bucket reserves 16 slots for a (context, nibble) that may use only the 4 nodes of one path, so
# the same table holds fewer contexts: the small ptb GRU primed with 5.0 MB lost 0.77% to engine v2
# (two-way buckets did not win it back), the other four-track rows 0.06-0.16%.
TABLE_BITS = 24
MATCH_BITS = 24
LIMIT = 127  # the count at which a context's adaptation rate stops slowing
LR = 64  # mixer learning rate (the weight step is x * err * LR / 2**14, weights 16.16 fixed point)
LR2 = 24  # the final mixer's
APM_LIMIT = 127
EVICT = 2  # a colliding context takes a slot over only from an owner seen fewer times (else the owner's count halves)
PRIOR = 4096  # each context input's starting weight (1/16): primed tables count from the first byte
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
U64 = np.uint64


@functools.lru_cache(maxsize=None)
def squash_table() -> np.ndarray:
    """round(4096 / (1 + exp(-x / 256))) for x in -2047 .. 2047, clamped to 1 .. 4095."""
    with localcontext() as ctx:
        ctx.prec = 30
        vals = [int(Decimal(4096) / (1 + (Decimal(-x) / 256).exp()) + Decimal("0.5")) for x in range(-2047, 2048)]
    return np.clip(np.array(vals, dtype=np.int64), 1, 4095)


@functools.lru_cache(maxsize=None)
def stretch_table() -> np.ndarray:
    """The inverse of :func:`squash_table` on 0 .. 4095 (paq's construction: integers only)."""
    sq = squash_table()
    st = np.full(4096, 2047, dtype=np.int64)
    lo = 0
    for x in range(-2047, 2048):
        v = int(sq[x + 2047])
        if v >= lo:
            st[lo : v + 1] = x
            lo = v + 1
    return st


N_CTX = ORDERS + WORDS  # context-model inputs
PRIME_CHUNK = 64  # rows whose buckets priming touches at once
PRIME_SPLIT = 8  # with two threads, priming learns models 0-7 on one and 8-11 on the other (about even)
N_IN = N_CTX + 3  # the LM, the context models, the match model, a bias
N_SETS = 3  # layer-1 weight sets
_MASKS = np.array([(1 << (8 * o)) - 1 for o in range(9)], dtype=np.uint64)
_WORD_MIX = np.array([1, 0x9E3779B97F4A7C15, 0xDF442D22CE4859B9], dtype=np.uint64)  # 1, GOLDEN, GOLDEN**2 (mod 2**64)
_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def _hash(x, salt, bits):
    """A uint64 key hashed to ``bits`` bits (multiplicative, wrapping)."""
    return np.int64(((x + np.uint64(salt)) * GOLDEN) >> np.uint64(64 - bits))


# floor(a / d) as a multiply and a shift: the divisions of the table updates were a third of the
# mixer's learning time. With k = 36, m = ceil(2**k / d) and e = m * d - 2**k < d, the rounding
# error of a * m / 2**k is a * e / (d * 2**k) < 1 / d whenever a * e < 2**k, so the shift gives
# exactly floor(a / d) for every a < 2**26 and d < 2**10 (Granlund and Montgomery, 1994).
_RECIP_SHIFT = 36
_RECIP = np.array([0] + [-(-(1 << _RECIP_SHIFT) // d) for d in range(1, 1 << 10)], dtype=np.int64)


@njit(**_JIT)
def _udiv(a, d):
    """floor(a / d) for 0 <= a and 1 <= d, exactly; fast for the usual a < 2**26, d < 2**10."""
    if a < (1 << 26) and d < (1 << 10):
        return (a * _RECIP[d]) >> _RECIP_SHIFT
    return a // d


@njit(**_JIT)
def _learned(w, bit, limit):
    """Slot word ``w`` (probability in bits 0-15, count in 16-23, bits 24-31 kept) after learning
    ``bit``: the probability moves toward it at rate 1/(count + 1.5), the count grows up to ``limit``."""
    old, c = w & 0xFFFF, (w >> 16) & 0xFF
    return np.uint32(_udiv(old * (2 * c + 1) + 131070 * bit, 2 * c + 3) | (min(c + 1, limit) << 16) | (w & 0xFF000000))


@njit(**_JIT)
def _update(words, at, bit, limit):
    """Slot ``words[at]`` learns ``bit`` (:func:`_learned`)."""
    words[at] = _learned(np.int64(words[at]), bit, limit)


@njit(**_JIT)
def _update_checked(words, at, ck, bit, limit):
    """:func:`_update` for a hashed slot whose bits 24-31 are a check byte of the context that owns
    it. A context whose check differs takes the slot over (p = 1/2, count 0) if its owner was seen
    fewer than :data:`EVICT` times, and updates it; otherwise the owner keeps it, its count halved."""
    w = np.int64(words[at])
    if (w >> 24) != ck:
        if ((w >> 16) & 0xFF) >= EVICT:  # a well-established owner keeps the slot, a little less established
            words[at] = np.uint32((w & 0xFF00FFFF) | ((((w >> 16) & 0xFF) >> 1) << 16))
            return
        w = 32768 | (ck << 24)
    words[at] = _learned(w, bit, limit)


@njit(**_JIT)
def _floor_div(a, d):
    """floor(a / d) for any a and d >= 1, exactly (:func:`_udiv` on the magnitude)."""
    return _udiv(a, d) if a >= 0 else -_udiv(d - 1 - a, d)


@njit(**_JIT)
def _apply_means(w, tot, hits, touched, nt):
    """Add to each row ``touched[:nt]`` of ``w`` the mean (floored) of the ``hits`` steps summed into
    its row of ``tot`` (integer sums, so the streams' order does not matter); leave ``tot`` and
    ``hits`` zero again, as the next call expects them."""
    n_in = w.shape[1]
    for q in range(nt):
        r = touched[q]
        h = hits[r]
        if h == 1:  # the usual case for the sparser weight sets: no division
            for i in range(n_in):
                w[r, i] += tot[r, i]
                tot[r, i] = 0
        else:
            for i in range(n_in):
                w[r, i] += _floor_div(tot[r, i], h)
                tot[r, i] = 0
        hits[r] = 0


@njit(**_JIT)
def _hashed(x, salt, bits, i, out, ck, full):
    """Bucket (the hash's top ``bits`` - 4 bits), check byte (the 8 bits below them) and whole hash
    of a hashed context."""
    v = (x + np.uint64(salt)) * GOLDEN
    full[i] = v
    out[i] = np.int64(v >> np.uint64(68 - bits))
    ck[i] = np.int64((v >> np.uint64(60 - bits)) & np.uint64(0xFF))


@njit(**_JIT)
def _contexts(h, wd, bits, out, ck, full):
    """Base slot, check byte and whole hash of each context model for a stream's next byte: order 0
    and 1 are direct (no hash, no check), the other byte orders hash the last bytes (``h``), then
    the current word, alone and with the words before it."""
    out[0], out[1] = 0, np.int64(h & np.uint64(0xFF)) << 8
    ck[0], ck[1] = 0, 0
    for i in range(2, ORDERS):
        _hashed(h & _MASKS[BYTE_ORDERS[i]], BYTE_ORDERS[i], bits, i, out, ck, full)
    key = wd[0]
    for i in range(WORDS):
        if i:
            key ^= wd[i] * _WORD_MIX[i]
        _hashed(key, ORDERS + i, bits, ORDERS + i, out, ck, full)


@njit(**_JIT)
def _second_nibble(c0, bits, out, ck, full):
    """Move the hashed contexts to the bucket of the byte's second nibble: the context's hash and
    the first nibble (``c0``, 16 .. 31), hashed again."""
    for i in range(2, N_CTX):
        _hashed(full[i] ^ (full[i] >> np.uint64(31)), c0, bits, i, out, ck, full)


@njit(**_JIT)
def _slots(base, c0, j, off, mask, out):
    """Table index of every context model's entry for bit j, after partial byte ``c0``. Orders 0
    and 1 index their tables directly. A hashed context's bucket is one 64-byte line of 16 slots,
    one per node of a nibble's bit tree (slot 0 unused), so the 4 bits of a nibble read one line,
    not 4 scattered ones: the tables are far larger than the caches, and these misses were most of
    the mixer's time."""
    node = c0 if j < 4 else (c0 & ((1 << (j - 4)) - 1)) | (1 << (j - 4))
    for i in range(N_CTX):
        out[i] = (((base[i] + c0) & mask[i]) if i < 2 else (base[i] << 4) + node) + off[i]


@njit(**_JIT)
def _next_word(wd, byte):
    """The (current, previous) word hashes after ``byte``: letters (either case, and every byte >=
    128, so UTF-8 letters count) extend the word, anything else ends it."""
    low = byte | 32
    letter = (low >= 97 and low <= 122) or byte >= 128
    if not letter and wd[0] != 0:  # a word ends: shift the words back
        for i in range(len(wd) - 1, 0, -1):
            wd[i] = wd[i - 1]
    wd[0] = (wd[0] + np.uint64(low) + np.uint64(1)) * GOLDEN if letter else np.uint64(0)


@njit(**_JIT)
def _index_context(ctx, mtable, mbits):
    """The match table over a primed context: each MINLEN-byte key points past its latest occurrence."""
    key = np.uint64(0)
    for pos in range(len(ctx)):
        if pos >= MINLEN:
            mtable[_hash(key & _MASKS[MINLEN], 0, mbits)] = pos + 1
        key = (key << np.uint64(8)) | np.uint64(ctx[pos])


@njit(**_JIT)
def _prime(ctx, rows, slot_words, off, mask, bits, first, stop):
    """Learn context models ``first`` .. ``stop`` - 1 from ``ctx`` as if it had been coded in ``rows``
    lockstep rows. Each model has a table of its own, so disjoint ranges can be primed at once, on
    different threads, and give the same tables as one call over all of them."""
    size = len(ctx)
    seg = -(-size // rows)
    rows = -(-size // seg)
    last = size - (rows - 1) * seg
    hist = np.zeros(rows, np.uint64)
    words = np.zeros((rows, 3), np.uint64)
    base = np.empty((rows, N_CTX), np.int64)
    cks = np.empty((rows, N_CTX), np.int64)
    full = np.empty((rows, N_CTX), np.uint64)
    idx = np.empty(N_CTX, np.int64)
    c0 = np.empty(rows, np.int64)
    byte = np.empty(rows, np.int64)
    touch = np.zeros(rows, np.uint32)
    for t in range(seg):
        k = rows if t < last else rows - 1
        for r in range(k):
            byte[r] = ctx[r * seg + t]
            _contexts(hist[r], words[r], bits, base[r], cks[r], full[r])
            c0[r] = 1
        for h in range(2):  # the byte's two nibbles
            for r0 in range(0, k, PRIME_CHUNK):
                r1 = min(r0 + PRIME_CHUNK, k)
                # Touch a chunk of rows' buckets first, in a loop with no branches, so that their
                # cache misses are in flight at once.
                for r in range(r0, r1):
                    if h:
                        _second_nibble(c0[r], bits, base[r], cks[r], full[r])
                    _slots(base[r], c0[r], 4 * h, off, mask, idx)
                    v = np.uint32(0)
                    for i in range(max(first, 2), stop):
                        v ^= slot_words[idx[i]]
                    touch[r] = v
                # Then each row learns its nibble's 4 bits while its lines and their pages'
                # translations are cached. Coding learns bit by bit across the rows instead; both
                # give every slot the same updates in the same order (rows in order), because
                # within a nibble a slot belongs to one bit position (its node), and the second
                # nibble starts after every row's first.
                for r in range(r0, r1):
                    for j in range(4 * h, 4 * h + 4):
                        b = (byte[r] >> (7 - j)) & 1
                        _slots(base[r], c0[r], j, off, mask, idx)
                        for i in range(first, stop):
                            _update_checked(slot_words, idx[i], cks[r, i], b, LIMIT)
                        c0[r] = (c0[r] << 1) | b
        for r in range(k):
            hist[r] = (hist[r] << np.uint64(8)) | np.uint64(byte[r])
            _next_word(words[r], byte[r])


@njit(**_JIT)
def _begin(k, weights, model, streams, sc):
    """Per-byte set-up of the first k streams: the LM's cumulative weights, context slots, match state."""
    buf, hist, words, mpos, mlen = streams[0], streams[1], streams[2], streams[3], streams[4]
    bits = model[12]
    cs, base, st8, ck, full = sc[0], sc[1], sc[2], sc[9], sc[13]
    for r in range(k):
        acc = np.int64(0)
        cs[r, 0] = 0
        for s in range(256):
            acc += weights[r, s]
            cs[r, s + 1] = acc
        _contexts(hist[r], words[r], bits, base[r], ck[r], full[r])
        act = mpos[r] >= 0
        ml = mlen[r]
        st8[0, r] = 1  # c0: the partial byte, with a leading 1
        st8[1, r] = 1 if act else 0  # agree: the bits so far match the predicted byte
        st8[2, r] = buf[mpos[r]] if act else 0  # the predicted byte
        st8[3, r] = min(ml, 63)  # match-length bucket
        st8[4, r] = 1 if ml < 16 else (2 if ml < 32 else 3)  # match state
        st8[5, r] = np.int64(hist[r] & np.uint64(0xFF))  # the previous byte


@njit(**_JIT)
def _predict(j, k, model, sc, p12):
    """P(bit j = 1) of each of the first k streams, 12-bit, into ``p12``; keeps what learning needs."""
    slot_words, mp, w, w2, apm = model[0], model[1], model[3], model[4], model[5]
    off, mask, set_off, sq, st = model[7], model[8], model[9], model[10], model[11]
    cs, base, st8, x, idx, sets, ps, s2, aux, ck = sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7], sc[8], sc[9]
    span = 256 >> j
    # Gather pass: every stream's slots, each read as one 32-bit word (probability, count, check) in
    # a loop with no branches, so the cache misses of many streams are in flight at once. Reading
    # them in the loop below, behind data-dependent branches, kept about two in flight: it was 70%
    # of this function's time.
    words, touch = sc[10], sc[11]
    if j == 4:
        for r in range(k):
            _second_nibble(st8[0, r], model[12], base[r], ck[r], sc[13][r])
    for r in range(k):
        _slots(base[r], st8[0, r], j, off, mask, idx[r])
        for i in range(N_CTX):
            words[r, i] = slot_words[idx[r, i]]
        # Read the three cache lines of this stream's row of the second APM here too, among the
        # gathers: which point of the row is used is known only after the mixing, and there its miss
        # stalled each stream in turn (a third of this function's time). The loaded values are stored
        # so the compiler keeps the loads; nothing reads them.
        a2 = (256 + st8[0, r] + 256 * st8[5, r]) * 33
        touch[r] = apm[a2] ^ apm[a2 + 16] ^ apm[a2 + 32]
    for r in range(k):
        c = st8[0, r]
        # LM: P(bit = 1) = weight of the upper half of the subtree / weight of the subtree.
        lo = (c - (1 << j)) * span
        total = cs[r, lo + span] - cs[r, lo]
        ones = cs[r, lo + span] - cs[r, lo + span // 2]
        x[r, 0] = st[min(max((ones * 4096 + total // 2) // total, 1), 4095)]
        # Context models: one 16-bit probability per (context, bit node).
        seen = 0
        for i in range(N_CTX):
            wd = np.int64(words[r, i])  # probability (bits 0-15), count (16-23), check (24-31)
            if (wd >> 24) == ck[r, i]:  # a slot another context owns is, for this one, unseen
                x[r, 1 + i] = st[(wd & 0xFFFF) >> 4]
                if i >= 2 and (wd >> 16) & 0xFF > 0:
                    seen += 1
            else:
                x[r, 1 + i] = 0
        # Match model: while the bits so far agree with the predicted byte, vote for its next bit.
        ebit = (st8[2, r] >> (7 - j)) & 1
        agree = st8[1, r]
        if agree:
            m = st[mp[st8[3, r]] >> 4]
            x[r, N_CTX + 1] = m if ebit == 1 else -m
        else:
            x[r, N_CTX + 1] = 0
        x[r, N_CTX + 2] = 256
        conf = min(abs(x[r, 0]) >> 8, 7)
        sets[r, 0] = c + 256 * (st8[4, r] if agree else 0) + set_off[0]
        sets[r, 1] = (j * N_CTX + seen) * 8 + conf + set_off[1]
        sets[r, 2] = st8[5, r] + set_off[2]
        acc2 = np.int64(0)
        for s in range(N_SETS):
            row = sets[r, s]
            acc = np.int64(0)
            for i in range(N_IN):
                acc += w[row, i] * x[r, i]
            ps[r, s] = sq[min(max(acc >> 16, -2047), 2047) + 2047]
            s2[r, s] = st[ps[r, s]]
            acc2 += w2[c, s] * s2[r, s]
        dot = min(max(acc2 >> 16, -2047), 2047)
        pm = sq[dot + 2047]
        # APMs: interpolate between the two nearest of 33 points along stretch(pm).
        pos = dot + 2048
        lo_i, frac = pos >> 7, pos & 127
        a1 = c * 33 + lo_i
        a2 = (256 + c + 256 * st8[5, r]) * 33 + lo_i
        q1 = (np.int64(apm[a1]) * (128 - frac) + np.int64(apm[a1 + 1]) * frac) >> 11
        q2 = (np.int64(apm[a2]) * (128 - frac) + np.int64(apm[a2 + 1]) * frac) >> 11
        p12[r] = min(max((2 * pm + q1 + q2) >> 2, 1), 4095)
        aux[r, 0], aux[r, 1], aux[r, 2], aux[r, 3], aux[r, 4] = pm, a1, a2, frac, ebit


@njit(**_JIT)
def _learn(k, bit, model, sc):
    """Learn from bit j of the first k streams: every weight set toward its own error (mean step over
    the streams sharing a set), layer 2 toward the mixed error, the APM point nearer to pm, the
    context tables and the match model's confidence; then extend each partial byte.

    The tables are updated stream by stream, in stream order (the encoder and the decoder visit the
    streams in the same order, so they update alike); the mixer weights take the mean of the steps
    of the streams that share them, because many streams share a weight set at once and their
    summed steps would overshoot."""
    slot_words, mp_words, w, w2, apm_words, lr = model[0], model[2], model[3], model[4], model[6], model[13]
    st8, x, idx, sets, ps, s2, aux, ck = sc[2], sc[3], sc[4], sc[5], sc[6], sc[7], sc[8], sc[9]
    # Each weight row's steps are summed as they are made, in scratch that is zero between calls,
    # with each row touched listed once. (Gathering every step in an array, then grouping the rows
    # and dividing, was a fifth of the mixer's time.)
    tot, hits, touched, tot2, hits2, touched2 = sc[14], sc[15], sc[12][0], sc[16], sc[17], sc[12][1]
    nt = 0
    nt2 = 0
    for r in range(k):
        b = bit[r]
        for s in range(N_SETS):
            err = ((b << 12) - ps[r, s]) * lr[0]
            row = sets[r, s]
            if hits[row] == 0:
                touched[nt] = row
                nt += 1
            hits[row] += 1
            for i in range(N_IN):
                tot[row, i] += (x[r, i] * err) >> 14
        err2 = ((b << 12) - aux[r, 0]) * lr[1]
        c = st8[0, r]
        if hits2[c] == 0:
            touched2[nt2] = c
            nt2 += 1
        hits2[c] += 1
        for s in range(N_SETS):
            tot2[c, s] += (s2[r, s] * err2) >> 14
        near = aux[r, 3] >> 6
        _update(apm_words, aux[r, 1] + near, b, APM_LIMIT)
        _update(apm_words, aux[r, 2] + near, b, APM_LIMIT)
        for i in range(N_CTX):
            _update_checked(slot_words, idx[r, i], ck[r, i], b, LIMIT)
        if st8[1, r]:
            hit = 1 if b == aux[r, 4] else 0
            _update(mp_words, st8[3, r], hit, 255)
            st8[1, r] = hit
        st8[0, r] = (c << 1) | b
    _apply_means(w, tot, hits, touched, nt)
    _apply_means(w2, tot2, hits2, touched2, nt2)


@njit(**_JIT)
def _end_byte(t, k, byte, lay, streams):
    """Store the k coded bytes, extend histories and words, and move the match model: follow or drop
    current matches, look up new ones, then index this position. The k streams are rows r0 .. r0 +
    k - 1 of the grid (``lay[4]``); ``streams``' per-stream arrays start at row r0."""
    L, S, n, mbits, r0 = lay[0], lay[1], lay[2], lay[3], lay[4]
    buf, hist, words, mpos, mlen, mtable = streams
    end = L + n
    for r in range(k):
        b = byte[r]
        buf[L + (r0 + r) * S + t] = b
        hist[r] = (hist[r] << np.uint64(8)) | np.uint64(b)
        _next_word(words[r], b)
    for r in range(k):
        if mpos[r] >= 0:
            nxt = mpos[r] + 1
            if buf[mpos[r]] == byte[r] and nxt < end and nxt != L:
                mpos[r] = nxt
                mlen[r] = min(mlen[r] + 1, MAXLEN)
            else:
                mpos[r] = -1
                mlen[r] = 0
    if t + 1 < MINLEN:
        return
    slot = np.empty(k, np.int64)
    for r in range(k):
        slot[r] = _hash(hist[r] & _MASKS[MINLEN], 0, mbits)
    for r in range(k):
        if mpos[r] >= 0:
            continue
        cand = mtable[slot[r]] - 1
        if cand < MINLEN:
            continue
        at = L + (r0 + r) * S + t
        length = 0
        for i in range(32):  # verify the key, then measure how far back the match reaches
            mine, theirs = at - i, cand - 1 - i
            if mine >= L + (r0 + r) * S and theirs >= 0 and buf[theirs] == buf[mine]:
                length += 1
            else:
                break
        if length >= MINLEN:
            mpos[r] = cand
            mlen[r] = length
    for r in range(k):  # in stream order: the latest stream's position wins a shared slot
        nxt = L + (r0 + r) * S + t + 1
        if nxt < end:
            mtable[slot[r]] = nxt + 1


# The decoder's path calls the mixer from Python 9 times a group step, between constriction's bit
# decodes (it was 11). A call's dispatch types every argument, and the tables and scratch are about
# 35 arrays: 2.6 us a call on a Zen 5 EPYC, a tenth of the mixer's time on that path. One struct holding them
# (a StructRef: the arrays, not copies) is typed once a call, in about 0.7 us. Only speed depends on
# it: the compiled functions are the same.
@structref.register
class _CodingStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


class _CodingState(structref.StructRefProxy):
    """The arrays of one group's decoder path (:meth:`ContextMixer.step`): the mixer's tables and
    scratch, the group's per-stream state and layout, and the bit probabilities the last call left,
    as 12-bit integers (``p12``) and as the floats constriction takes (``pf``, p12 / 4096: exact)."""

    def __new__(cls, model, sc, streams, lay, p12, pf):
        return structref.StructRefProxy.__new__(cls, model, sc, streams, lay, p12, pf)


structref.define_proxy(_CodingState, _CodingStateType, ["model", "sc", "streams", "lay", "p12", "pf"])


@njit(cache=True)
def _new_coding_state(model, sc, streams, lay, p12, pf):
    """A :class:`_CodingState`. (Calling the class from Python compiles its constructor anew in every
    process, about 0.5 s of a one-shot command; this compiled call is cached like the rest.)"""
    return _CodingState(model, sc, streams, lay, p12, pf)


@njit(**_JIT)
def _floats(k, p12, pf):
    """``pf`` = ``p12`` / 4096 for the first k streams: the floats constriction takes."""
    for r in range(k):
        pf[r] = p12[r] / 4096.0  # exact: 12 bits over a power of two


@njit(**_JIT)
def _start(k, weights, s):
    """:func:`_begin`, then :func:`_predict` of bit 0, into ``s.p12`` and ``s.pf``: one call."""
    _begin(k, weights, s.model, s.streams, s.sc)
    _predict(0, k, s.model, s.sc, s.p12)
    _floats(k, s.p12, s.pf)


@njit(**_JIT)
def _next(t, j, k, bit, s):
    """:func:`_learn` from bit j, then :func:`_predict` of bit j + 1 into ``s.p12`` and ``s.pf``, or,
    after bit 7, :func:`_end_byte` of byte t: one call where there were two (three after bit 7)."""
    _learn(k, bit, s.model, s.sc)
    if j < 7:
        _predict(j + 1, k, s.model, s.sc, s.p12)
        _floats(k, s.p12, s.pf)
    else:
        c0 = s.sc[2][0]
        byte = np.empty(k, np.int64)
        for r in range(k):
            byte[r] = c0[r] - 256
        _end_byte(t, k, byte, s.lay, s.streams)


@njit(**_JIT)
def _code_byte(t, k, weights, byte, s, out):
    """A whole step with its bytes known (the encoder), exactly the decoder's sequence of
    :func:`_predict` and :func:`_learn`. ``out`` is four [8, k] arrays; row j of each is for bit j
    of every stream: the 12-bit probability that it is 1 (int64), that probability as constriction
    takes it (float64, p / 4096: exact), the bit itself (int32, as the decoder's bits come from
    constriction, so :func:`_learn` is compiled once) and the probability of the bit coded (int64: p
    or 4096 - p). One call instead of those arrays' numpy passes."""
    p_out, pf_out, bit_out, q_out = out
    model, sc = s.model, s.sc
    _begin(k, weights, model, s.streams, sc)
    for j in range(8):
        _predict(j, k, model, sc, p_out[j])
        _floats(k, p_out[j], pf_out[j])
        for r in range(k):
            b = (byte[r] >> (7 - j)) & 1
            bit_out[j, r] = b
            q_out[j, r] = p_out[j, r] if b == 1 else 4096 - p_out[j, r]
        _learn(k, bit_out[j], model, sc)
    _end_byte(t, k, byte, s.lay, s.streams)


def _zeros(n: int, dtype) -> np.ndarray:
    """``n`` zeros of ``dtype`` in fresh private anonymous memory, in ordinary pages. numpy asks the
    kernel for transparent huge pages for large arrays, and their first touch is what varies: on a
    2-core VM, 0.04 s to 1.4 s for 640 MB of tables, against a steady 0.2 s in small pages. One-shot
    1 MB ``compbench encode`` runs, alternating, took 5.9 s with huge pages and 4.9 s without
    (medians of 4), while the mixer alone was 2.5-6% faster once they were mapped. Only the
    speed depends on this, never a value."""
    dt = np.dtype(dtype)
    if not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.zeros(n, dt)
    mem = mmap.mmap(-1, max(n * dt.itemsize, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(mem, dt, count=n)


def _at_once(here, there) -> None:
    """``here()`` on this thread while ``there()`` runs on another; returns when both are done. (Each
    must let go of the GIL to overlap, as numba's ``nogil`` functions and numpy's fills do.)"""
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(there)
        here()
        other.result()


def _interleaved(n: int, p0: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four views of one [n, 4]-byte array: uint16 probabilities (= ``p0``), uint8 counts, uint8
    check bytes, each entry's three in the same 4 bytes, and the entries as little-endian uint32
    words (probability in bits 0-15, count 16-23, check 24-31). The array starts on a 64-byte
    boundary, so each 16-slot bucket of a hashed table (:func:`_slots`) is one cache line. (Where it
    starts changes only the speed, never a value.) With ``threads`` > 1 two threads fill it: the
    first touch of its pages (0.2 s for the 671 MB of a 1 MB input's tables) takes half as long."""
    spare = _zeros(n + 16, "<u4")
    skip = (-spare.ctypes.data % 64) // 4
    words = spare[skip : skip + n]
    if threads > 1 and n >= 1 << 20:
        _at_once(lambda: words[: n // 2].fill(p0), lambda: words[n // 2 :].fill(p0))
    else:
        words[:] = p0
    raw = words.view(np.uint8).reshape(n, 4)
    return raw.view("<u2")[:, 0], raw[:, 2], raw[:, 3], words


class ContextMixer:
    """Bitwise context mixing for ``streams`` lockstep segments of ``seg`` bytes (``n`` bytes in
    all), optionally primed with ``context`` bytes that both sides know before coding. ``groups``:
    how many groups of streams take turns at each step (see ``lockstep.mixed_groups``)."""

    N_IN = N_IN

    def __init__(self, streams: int, seg: int, n: int, context: bytes = b"", groups: int = 1,
                 threads: int = 1):
        self.B, self.S, self.n = streams, seg, n
        ctx = np.frombuffer(context, dtype=np.uint8)
        self.L = len(ctx)
        # Every byte either side knows: the context, then the grid (row b at L + b * S), filled as coded.
        self.buf = np.zeros(self.L + streams * seg, dtype=np.uint8)
        self.buf[: self.L] = ctx
        self.bits = max(16, min(TABLE_BITS, (16 * (n + self.L)).bit_length()))
        self.mbits = max(16, min(MATCH_BITS, (2 * (n + self.L)).bit_length()))
        sizes = [256, 1 << 16] + [1 << self.bits] * (N_CTX - 2)
        self.off = np.cumsum([0] + sizes[:-1]).astype(np.int64)
        self.mask = np.array(sizes, dtype=np.int64) - 1
        # A slot's probability (16 bits), count and check byte (the context that owns it) share 4
        # bytes, so reading a slot costs one cache miss, not three: the tables are far larger than
        # the caches, and these misses were most of the mixer's time.
        self.slot_words = _interleaved(sum(sizes), 32768, threads)[3]
        self.hist = np.zeros(streams, dtype=np.uint64)  # the last 8 bytes of each stream
        self.words = np.zeros((streams, 3), dtype=np.uint64)  # hashes of the current word and the two before
        self.mtable = _zeros(1 << self.mbits, np.int64)  # buf position of the byte after a key, + 1
        self.mpos = np.full(streams, -1, dtype=np.int64)
        self.mlen = np.zeros(streams, dtype=np.int64)
        self.mp, _, _, self.mp_words = _interleaved(64, 32768)  # P(match predicts the bit) per length bucket
        # Layer 1: one weight set per context of each selector (partial byte x match state; bit
        # position x how many context models have seen this node x LM confidence; previous byte).
        sets = np.array([256 * 4, 8 * N_CTX * 8, 256], dtype=np.int64)
        self.set_off = np.concatenate([[0], np.cumsum(sets)[:-1]]).astype(np.int64)
        self.w = np.zeros((int(sets.sum()), N_IN), dtype=np.int64)
        self.w[:, 0] = 1 << 16  # start as the LM, with a little trust in the (perhaps primed) tables
        self.w[:, 1 : N_CTX + 1] = PRIOR
        self.w2 = np.full((256, N_SETS), (1 << 16) // N_SETS, dtype=np.int64)  # layer 2, per partial byte
        # Two APM (secondary estimation) stages refine the mixed probability: by partial byte, and
        # by partial byte and previous byte; 33 interpolation points along the stretched probability.
        pts = (squash_table()[np.arange(-2048, 2049, 128).clip(-2047, 2047) + 2047] * 16).astype(np.uint16)
        self.apm, _, _, self.apm_words = _interleaved(33 * (256 + 65536), 0)
        self.apm[:] = np.tile(pts, 256 + 65536)
        # Tables that learn are updated through their 32-bit word views (see _adapt).
        self._model = (self.slot_words, self.mp, self.mp_words, self.w, self.w2, self.apm, self.apm_words,
                       self.off, self.mask, self.set_off, squash_table(), stretch_table(), self.bits,
                       # Each group's turn moves a shared weight by the mean step of its streams, so
                       # with g groups a weight takes g steps where one group took one: the learning
                       # rates are divided by g to keep the step per byte what it was tuned to be.
                       np.array([LR // groups, LR2 // groups], dtype=np.int64))
        self._rows: dict = {}  # first row -> (the per-stream arrays from that row on, the layout)
        # Per-step scratch: cumulative LM weights, context slots, per-stream byte state (c0, agree,
        # predicted byte, length bucket, match state, previous byte), then per-bit inputs and outputs,
        # the slot words the gather pass of _predict reads, where it puts the APM lines it touches,
        # the weight rows _learn touches, and its sums of their steps and step counts (layer 1's,
        # then layer 2's), zero between calls.
        self._sc = (np.empty((streams, 257), np.int64), np.empty((streams, N_CTX), np.int64),
                    np.empty((6, streams), np.int64), np.empty((streams, N_IN), np.int64),
                    np.empty((streams, N_CTX), np.int64), np.empty((streams, N_SETS), np.int64),
                    np.empty((streams, N_SETS), np.int64), np.empty((streams, N_SETS), np.int64),
                    np.empty((streams, 5), np.int64), np.empty((streams, N_CTX), np.int64),
                    np.empty((streams, N_CTX), np.uint32), np.empty(streams, np.uint16),
                    np.empty((2, streams * N_SETS), np.int64), np.empty((streams, N_CTX), np.uint64),
                    np.zeros_like(self.w), np.zeros(len(self.w), np.int64), np.zeros_like(self.w2),
                    np.zeros(len(self.w2), np.int64))
        self._p12 = np.empty(streams, np.int64)
        self._pf = np.empty(streams, np.float64)
        if self.L > MINLEN:
            _index_context(ctx, self.mtable, self.mbits)
            # Priming is most of a primed coder's set-up: with ptb's 0.78 MB of stored text, 0.82 s
            # on one thread of a Zen 5 VM and 0.66 s on two (set-up included). Each thread learns
            # its own context models' tables, so the tables are the same either way.
            tables = (ctx, 1024, self.slot_words, self.off, self.mask, self.bits)
            if threads > 1:
                _at_once(lambda: _prime(*tables, 0, PRIME_SPLIT), lambda: _prime(*tables, PRIME_SPLIT, N_CTX))
            else:
                _prime(*tables, 0, N_CTX)

    def _from(self, lo: int) -> tuple:
        """The per-stream state from row ``lo`` on (views, no copies), the layout with that row, and
        the decoder path's struct of both with the tables and scratch (:class:`_CodingState`)."""
        if lo not in self._rows:
            streams = (self.buf, self.hist[lo:], self.words[lo:], self.mpos[lo:], self.mlen[lo:], self.mtable)
            lay = np.array([self.L, self.S, self.n, self.mbits, lo], dtype=np.int64)
            self._rows[lo] = (streams, lay, _new_coding_state(self._model, self._sc, streams, lay, self._p12,
                                                                        self._pf))
        return self._rows[lo]

    def step(self, t: int, weights: np.ndarray, k: int, code, lo: int = 0) -> np.ndarray:
        """Code byte t of streams ``lo`` .. ``lo + k - 1``. ``weights`` [>= k, 256] int64 are their LM
        softmax weights; ``code(p12, pf, j)`` codes (or decodes) bit j of each of them with P(1) =
        ``p12`` / 4096 (int64) = ``pf`` (float64, the same numbers) and returns the bits as an integer
        array. ``p12`` and ``pf`` are the mixer's buffers: valid only until ``code`` returns. Returns
        the k bytes."""
        state = self._from(lo)[2]
        p12, pf = self._p12[:k], self._pf[:k]
        _start(k, np.ascontiguousarray(weights[:k], dtype=np.int64), state)
        for j in range(8):
            # int32 is what constriction returns (no copy then), and one dtype means one compiled _next.
            _next(t, j, k, np.ascontiguousarray(code(p12, pf, j), dtype=np.int32), state)
        return self._sc[2][0, :k] - 256

    def step_known(self, t: int, weights: np.ndarray, k: int, byte: np.ndarray, lo: int = 0) -> tuple:
        """:meth:`step` when the bytes are known (the encoder). For bit j (rows) of each stream
        (columns), returns the 12-bit probability that it is 1, [8, k] int64, exactly as :meth:`step`
        would give it; that probability as floats (p / 4096), the bits (int32), and the probability
        of each bit coded (p or 4096 - p, int64)."""
        out = (np.empty((8, k), np.int64), np.empty((8, k), np.float64), np.empty((8, k), np.int32),
               np.empty((8, k), np.int64))
        _code_byte(t, k, np.ascontiguousarray(weights[:k], dtype=np.int64),
                   np.ascontiguousarray(byte[:k], dtype=np.int64), self._from(lo)[2], out)
        return out
