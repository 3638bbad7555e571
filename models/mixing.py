"""Context mixing over lockstep streams: the byte-LM mixed, bit by bit, with context models shared by all streams.

The byte-LM knows its training text; it knows nothing of the text being coded beyond its window or
recurrent state, and each lockstep stream starts cold. :class:`ContextMixer` adds what strong CPU
coders (lpaq, paq8) learn from the text itself, and shares it across every stream:

* order-0 to order-6 context models and a word model: for each context (the last k bytes of the
  stream, or the current word) and each bit position, an adaptive probability that the next bit is 1;
* a match model: the most recent earlier occurrence of the last :data:`MINLEN` bytes, anywhere in
  the bytes coded so far by *any* stream (or in the context the coder was primed with), predicts
  the next byte, bit by bit, with a confidence learned per match length;
* a gated logistic mixer (one weight vector per partial byte and match state) that combines those
  predictions with the byte-LM's own, and learns from every coded bit.

A byte is coded as 8 binary decisions, most significant bit first; the LM's probability of each bit
is the exact integer ratio of its softmax weights over the two halves of the remaining subtree.

Determinism: everything here is integer arithmetic (numpy int64 and uint64, wrapping where hashes
wrap), and the squash/stretch tables are built with :mod:`decimal`. Many streams update the same
table entry or mixer weight in one step; their updates are aggregated as integer sums (exact in any
order: ``bincount`` over integer-valued float64 is exact below 2**53) and applied once, never as a
sequence of writes whose order numpy leaves undefined. The mixer keeps its own copy of every byte
it has coded (``buf``), so the encoder (which knows the whole input) and the decoder (which knows
what it has decoded) read exactly the same bytes. Coded probabilities are 12-bit integers.
"""

from __future__ import annotations

import functools
from decimal import Decimal, localcontext

import numpy as np

MINLEN = 7  # bytes of context a match must share before it predicts
MAXLEN = 65535
ORDERS = 7  # order-0 .. order-6 byte contexts, then the word and word-bigram contexts
WORDS = 2
# Slots per hashed table (orders 2-6 and the word contexts): 8 to 16 per byte coded or primed (one
# per bit node), 2**16 to 2**24 (16M x 3 bytes). Entries carry no check, so a crowded table mixes
# unrelated contexts: 4M slots cost dickens 0.7% against 16M on 1 MB. n and the context length are
# known to both sides before coding, so both pick the same size.
TABLE_BITS = 24
MATCH_BITS = 24
LIMIT = 127  # the count at which a context's adaptation rate stops slowing
LR = 48  # mixer learning rate (the weight step is x * err * LR / 2**14, weights 16.16 fixed point)
LR2 = 24  # the final mixer's
APM_LIMIT = 127
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


def _hash(x: np.ndarray, salt: int, bits: int) -> np.ndarray:
    return (((x + U64(salt)) * GOLDEN) >> U64(64 - bits)).astype(np.int64)


def _adapt(p: np.ndarray, n: np.ndarray, idx: np.ndarray, bit: np.ndarray, limit: int) -> None:
    """Move the 16-bit probabilities ``p[idx]`` toward the bits seen, at rate 1/(count + 1.5).

    Entries hit by several streams at once get one update from all their bits (integer sums, so
    the order of the streams does not matter); each is a convex combination, so it stays in range."""
    uniq, inv = np.unique(idx, return_inverse=True)
    m = np.bincount(inv, minlength=len(uniq))
    ones = np.bincount(inv, weights=bit, minlength=len(uniq)).astype(np.int64)
    old = p[uniq].astype(np.int64)
    c = n[uniq].astype(np.int64)
    p[uniq] = (old * (2 * c + 1) + 131070 * ones) // (2 * c + 1 + 2 * m)
    n[uniq] = np.minimum(c + m, limit)


def _mean_step(w: np.ndarray, sets: np.ndarray, delta: np.ndarray) -> None:
    """Add to each weight set of ``w`` [n_sets, n_in] the mean of the steps ``delta`` [k, m, n_in]
    of the streams that used it (``sets`` [k, m]): integer sums, so the streams' order does not
    matter (bincount over integer-valued float64 is exact below 2**53), and one floor division."""
    n_sets, n_in = w.shape
    flat = (sets[:, :, None] * n_in + np.arange(n_in)).ravel()
    tot = np.bincount(flat, weights=delta.ravel(), minlength=n_sets * n_in).astype(np.int64)
    hits = np.bincount(sets.ravel(), minlength=n_sets)
    w += tot.reshape(n_sets, n_in) // np.maximum(hits, 1)[:, None]


class ContextMixer:
    """Bitwise context mixing for ``streams`` lockstep segments of ``seg`` bytes (``n`` bytes in
    all), optionally primed with ``context`` bytes that both sides know before coding."""

    N_IN = ORDERS + WORDS + 3  # LM, 9 context models, match, bias

    def __init__(self, streams: int, seg: int, n: int, context: bytes = b""):
        self.B, self.S, self.n = streams, seg, n
        ctx = np.frombuffer(context, dtype=np.uint8)
        self.L = len(ctx)
        # Every byte either side knows: the context, then the grid (row b at L + b * S), filled as coded.
        self.buf = np.zeros(self.L + streams * seg, dtype=np.uint8)
        self.buf[: self.L] = ctx
        self.bits = max(16, min(TABLE_BITS, (16 * (n + self.L)).bit_length()))
        self.mbits = max(16, min(MATCH_BITS, (2 * (n + self.L)).bit_length()))
        sizes = [256, 1 << 16] + [1 << self.bits] * (ORDERS - 2 + WORDS)
        self.off = np.cumsum([0] + sizes[:-1]).astype(np.int64)
        self.mask = np.array(sizes, dtype=np.int64) - 1
        self.direct = np.arange(ORDERS + WORDS) < 2  # orders 0 and 1 index their tables directly
        self.p = np.full(sum(sizes), 32768, dtype=np.uint16)
        self.cnt = np.zeros(sum(sizes), dtype=np.uint8)
        self.hist = np.zeros(streams, dtype=np.uint64)  # the last 8 bytes of each stream
        self.word = np.zeros((streams, 2), dtype=np.uint64)  # hashes of the current and the previous word
        self.mtable = np.zeros(1 << self.mbits, dtype=np.int64)  # buf position of the byte after a key, + 1
        self.mpos = np.full(streams, -1, dtype=np.int64)
        self.mlen = np.zeros(streams, dtype=np.int64)
        self.mp = np.full(64, 32768, dtype=np.uint16)  # P(match predicts the bit) per length bucket
        self.mn = np.zeros(64, dtype=np.uint8)
        # Layer 1: one weight set per context of each selector (partial byte x match state; bit
        # position x how many context models have seen this node x LM confidence; previous byte).
        self.sets = np.array([256 * 4, 8 * 9 * 8, 256], dtype=np.int64)
        self.set_off = np.concatenate([[0], np.cumsum(self.sets)[:-1]])
        self.w = np.zeros((int(self.sets.sum()), self.N_IN), dtype=np.int64)
        self.w[:, 0] = 1 << 16  # start as the LM, with a little trust in the (perhaps primed) tables
        self.w[:, 1 : ORDERS + WORDS + 1] = PRIOR
        self.w2 = np.full((256, len(self.sets)), (1 << 16) // len(self.sets), dtype=np.int64)  # layer 2, per partial byte
        # Two APM (secondary estimation) stages refine the mixed probability: by partial byte, and
        # by partial byte and previous byte; 33 interpolation points along the stretched probability.
        pts = (squash_table()[np.arange(-2048, 2049, 128).clip(-2047, 2047) + 2047] * 16).astype(np.uint16)
        self.apm = np.tile(pts, 256 + 65536)
        self.apm_n = np.zeros(len(self.apm), dtype=np.uint8)
        self.squash, self.stretch = squash_table(), stretch_table()
        if self.L > MINLEN:
            pos = np.arange(MINLEN, self.L, dtype=np.int64)  # each byte after a full key
            key = np.zeros(len(pos), dtype=np.uint64)
            for i in range(MINLEN):
                key = (key << U64(8)) | ctx[pos - MINLEN + i].astype(np.uint64)
            self._insert(_hash(key, 0, self.mbits), pos)
            self._prime(ctx)

    def _insert(self, slot: np.ndarray, pos: np.ndarray) -> None:
        # The latest position per slot wins: unique() over the reversed order finds each slot's last
        # occurrence (deterministic, unlike a[idx] = v with repeated idx).
        uniq, first = np.unique(slot[::-1], return_index=True)
        self.mtable[uniq] = pos[::-1][first] + 1

    def _contexts(self, hist: np.ndarray, word: np.ndarray) -> np.ndarray:
        """Hashed base slot of each context model for the next byte, [rows, ORDERS + WORDS]: order
        0 and 1 are direct (no hash), orders 2-6 hash the last bytes, then the current word and
        the current word with the one before it."""
        base = np.empty((len(hist), ORDERS + WORDS), dtype=np.int64)
        base[:, 0] = 0
        base[:, 1] = (hist & U64(0xFF)).astype(np.int64) << 8
        for order in range(2, ORDERS):
            base[:, order] = _hash(hist & U64((1 << (8 * order)) - 1), order, self.bits)
        base[:, ORDERS] = _hash(word[:, 0], ORDERS, self.bits)
        base[:, ORDERS + 1] = _hash(word[:, 0] ^ (word[:, 1] * GOLDEN), ORDERS + 1, self.bits)
        return base

    def _slots(self, base: np.ndarray, c0: np.ndarray) -> np.ndarray:
        """Table index of every context model's entry for the bit after partial byte ``c0``."""
        node = (c0 * 0x2F0F3B5) & 0xFFFFFF
        idx = np.where(self.direct, base + c0[:, None], base ^ node[:, None]) & self.mask
        return idx + self.off

    @staticmethod
    def _next_word(word: np.ndarray, byte: np.ndarray) -> np.ndarray:
        """The (current, previous) word hashes after ``byte``: letters (either case, and every
        byte >= 128, so UTF-8 letters count) extend the word, anything else ends it."""
        low = byte | 32
        letter = ((low >= 97) & (low <= 122)) | (byte >= 128)
        out = np.empty_like(word)
        out[:, 0] = np.where(letter, (word[:, 0] + low.astype(np.uint64) + U64(1)) * GOLDEN, U64(0))
        out[:, 1] = np.where(letter | (word[:, 0] == 0), word[:, 1], word[:, 0])
        return out

    def _prime(self, ctx: np.ndarray, rows: int = 1024) -> None:
        """Learn the context models' statistics from ``ctx`` as if it had been coded in ``rows``
        lockstep rows (the mixer and APMs start fresh: they learn how to trust the LM and the tables
        on the text being coded). Both sides run this on the same bytes, so it is as exact as coding."""
        seg = -(-len(ctx) // rows)
        rows = -(-len(ctx) // seg)
        grid = np.zeros(rows * seg, dtype=np.uint8)
        grid[: len(ctx)] = ctx
        grid = grid.reshape(rows, seg)
        last = len(ctx) - (rows - 1) * seg
        hist = np.zeros(rows, dtype=np.uint64)
        word = np.zeros((rows, 2), dtype=np.uint64)
        for t in range(seg):
            k = rows if t < last else rows - 1
            byte = grid[:k, t].astype(np.int64)
            base = self._contexts(hist[:k], word[:k])
            c0 = np.ones(k, dtype=np.int64)
            for j in range(8):
                bit = (byte >> (7 - j)) & 1
                _adapt(self.p, self.cnt, self._slots(base, c0).ravel(), np.repeat(bit, ORDERS + WORDS).astype(np.float64), LIMIT)
                c0 = (c0 << 1) | bit
            hist[:k] = (hist[:k] << U64(8)) | byte.astype(np.uint64)
            word[:k] = self._next_word(word[:k], byte)

    def step(self, t: int, weights: np.ndarray, k: int, code) -> np.ndarray:
        """Code byte t of the first k streams. ``weights`` [>= k, 256] int64 are the LM's softmax
        weights; ``code(p12, j)`` codes (or decodes) bit j of every stream with P(1) = p12 / 4096 and
        returns the bits. Returns the k bytes."""
        sq, st = self.squash, self.stretch
        rows = np.arange(k)
        cs = np.zeros((k, 257), dtype=np.int64)
        np.cumsum(weights[:k], axis=1, out=cs[:, 1:])  # exact: integers
        base = self._contexts(self.hist[:k], self.word[:k])
        active = self.mpos >= 0
        pred = np.where(active, self.buf[np.maximum(self.mpos, 0)], 0).astype(np.int64)[:k]
        agree = active[:k].copy()
        lbucket = np.minimum(self.mlen[:k], 63)
        mstate = np.where(self.mlen[:k] < 16, 1, np.where(self.mlen[:k] < 32, 2, 3))
        c0 = np.ones(k, dtype=np.int64)
        prev = (self.hist[:k] & U64(0xFF)).astype(np.int64)
        x = np.empty((k, self.N_IN), dtype=np.int64)
        x[:, self.N_IN - 1] = 256
        for j in range(8):
            # LM: P(bit = 1) = weight of the upper half of the subtree / weight of the subtree.
            span = 256 >> j
            lo = (c0 - (1 << j)) * span
            total = cs[rows, lo + span] - cs[rows, lo]
            ones = cs[rows, lo + span] - cs[rows, lo + span // 2]
            x[:, 0] = st[np.clip((ones * 4096 + total // 2) // total, 1, 4095)]
            # Context models: one 16-bit probability per (context, bit node).
            idx = self._slots(base, c0)
            x[:, 1 : ORDERS + WORDS + 1] = st[self.p[idx] >> 4]
            # Match model: while the bits so far agree with the predicted byte, vote for its next bit.
            ebit = (pred >> (7 - j)) & 1
            mp = st[self.mp[lbucket] >> 4]
            x[:, ORDERS + WORDS + 1] = np.where(agree, np.where(ebit == 1, mp, -mp), 0)
            seen = (self.cnt[idx[:, 2:]] > 0).sum(axis=1)
            conf = np.minimum(np.abs(x[:, 0]) >> 8, 7)
            ctx = np.stack([c0 + 256 * np.where(agree, mstate, 0), (j * 9 + seen) * 8 + conf, prev], axis=1) + self.set_off
            w = self.w[ctx]  # [k, sets, N_IN]
            dots = np.clip((w * x[:, None, :]).sum(axis=2) >> 16, -2047, 2047)  # [k, sets]
            ps = sq[dots + 2047]
            s2 = st[ps]
            w2 = self.w2[c0]
            dot = np.clip((w2 * s2).sum(axis=1) >> 16, -2047, 2047)
            pm = sq[dot + 2047]
            # APMs: interpolate between the two nearest of 33 points along stretch(pm).
            pos = dot + 2048
            lo_i, frac = pos >> 7, pos & 127
            a1 = c0 * 33 + lo_i
            a2 = (256 + c0 + 256 * prev) * 33 + lo_i
            ap = self.apm
            q1 = (ap[a1].astype(np.int64) * (128 - frac) + ap[a1 + 1].astype(np.int64) * frac) >> 11
            q2 = (ap[a2].astype(np.int64) * (128 - frac) + ap[a2 + 1].astype(np.int64) * frac) >> 11
            p = np.clip((2 * pm + q1 + q2) >> 2, 1, 4095)
            bit = np.asarray(code(p, j), dtype=np.int64)
            # Learn: every weight set toward its own error (mean step over the streams sharing a
            # set), layer 2 toward the mixed error, the APM point nearer to pm, then the tables.
            err = ((bit << 12)[:, None] - ps) * LR  # [k, sets]
            delta = (x[:, None, :] * err[:, :, None]) >> 14
            _mean_step(self.w, ctx, delta)
            _mean_step(self.w2, c0[:, None], ((s2 * (((bit << 12) - pm) * LR2)[:, None]) >> 14)[:, None, :])
            near = (frac >> 6)
            _adapt(self.apm, self.apm_n, np.concatenate([a1 + near, a2 + near]), np.concatenate([bit, bit]).astype(np.float64), APM_LIMIT)
            _adapt(self.p, self.cnt, idx.ravel(), np.repeat(bit, ORDERS + WORDS).astype(np.float64), LIMIT)
            if agree.any():
                _adapt(self.mp, self.mn, lbucket[agree], (bit[agree] == ebit[agree]).astype(np.float64), 255)
            agree &= bit == ebit
            c0 = (c0 << 1) | bit
        byte = c0 - 256
        self._end_byte(t, byte, k)
        return byte

    def _end_byte(self, t: int, byte: np.ndarray, k: int) -> None:
        rows = np.arange(k)
        at = self.L + rows * self.S + t
        self.buf[at] = byte
        b64 = byte.astype(np.uint64)
        self.hist[:k] = (self.hist[:k] << U64(8)) | b64
        self.word[:k] = self._next_word(self.word[:k], byte)
        # The match model: follow or drop current matches, look up new ones, then index this position.
        end = self.L + self.n
        act = np.flatnonzero(self.mpos[:k] >= 0)
        if len(act):
            ok = self.buf[self.mpos[act]] == byte[act]
            nxt = self.mpos[act] + 1
            ok &= (nxt < end) & (nxt != self.L)
            self.mpos[act] = np.where(ok, nxt, -1)
            self.mlen[act] = np.where(ok, np.minimum(self.mlen[act] + 1, MAXLEN), 0)
        if t + 1 < MINLEN:
            return
        key = self.hist[:k] & U64((1 << (8 * MINLEN)) - 1)
        slot = _hash(key, 0, self.mbits)
        free = np.flatnonzero(self.mpos[:k] < 0)
        if len(free):
            cand = self.mtable[slot[free]] - 1
            ok = cand >= MINLEN
            cand = np.maximum(cand, MINLEN)
            length = np.zeros(len(free), dtype=np.int64)
            for i in range(32):  # verify the key, then measure how far back the match reaches
                if i >= MINLEN and not ok.any():
                    break
                mine = at[free] - i
                theirs = cand - 1 - i
                ok &= (mine >= self.L + free * self.S) & (theirs >= 0) & (self.buf[np.maximum(theirs, 0)] == self.buf[mine])
                length += ok
            got = length >= MINLEN
            self.mpos[free[got]] = cand[got]
            self.mlen[free[got]] = length[got]
        nxt = at + 1
        live = nxt < end
        self._insert(slot[live], nxt[live])
