"""Lockstep coding: a byte-LM engine drives constriction's range coder over many streams at once.

The input is cut into B contiguous segments of S bytes (the last one may be shorter; B = ceil(n/S)).
Every segment is an independent stream that starts from the BOS symbol and an empty state, and all
streams advance in lockstep: step t predicts byte t of every segment in one batch, so the int8
matmuls run on B rows at once (AMX/VNNI). One ``RangeEncoder`` codes the B symbols of step 0, then
those of step 1, and so on; the decoder recomputes the same batch of probabilities and decodes in the
same order. Probabilities are bit-identical on both sides because the engine is integer arithmetic
(see :mod:`.intops`), and each is given to ``Categorical(perfect=False)``.

With ``mix=1`` (:func:`_run_mixed`) each step codes 8 binary decisions per stream instead, from
the LM mixed with context models shared by all streams (:mod:`.mixing`). With ``mix=0`` the
:class:`MatchModel` sharpens the LM's prediction with a copy model over each stream's history and,
when the coder is primed (a ``prefix`` coder's stored text), over that context too.
This module is part of every neural artifact's decoder code, and imports nothing from the harness.
"""

from __future__ import annotations

import numpy as np
import torch

from . import intops
from .intops import BOS


def layout(n: int, max_streams: int, min_segment: int) -> tuple[int, int]:
    """(streams, segment length) for n bytes: as many streams as allowed, none shorter than min_segment."""
    if n == 0:
        return 0, 0
    streams = max(1, min(max_streams, n // max(1, min_segment)))
    seg = -(-n // streams)
    return -(-n // seg), seg


def _step_probs(engine, arr: np.ndarray, fn=intops.probabilities):
    """Probabilities (or, with ``fn=intops.exp_weights``, integer weights) for step t of every
    stream, one step at a time: the decoder's path. The caller fills ``arr[:, t]`` (decoded bytes)
    before asking for step t + 1."""
    state = engine.start(arr.shape[0])
    inputs = torch.full((arr.shape[0],), BOS, dtype=torch.int64)
    # An engine with step_weights fuses its output layer into the softmax weights; probabilities are
    # those weights normalised, by definition (intops.probabilities), so both routes give the same bits.
    fused = getattr(engine, "step_weights", None) if fn in (intops.exp_weights, intops.probabilities) else None
    for t in range(arr.shape[1]):
        if fused is None:
            out = fn(engine.step(state, inputs)).numpy()
        else:
            w = fused(state, inputs)
            out = (w if fn is intops.exp_weights else intops.normalize(w)).numpy()
        yield out
        inputs = torch.from_numpy(arr[:, t].astype(np.int64))


def _block_probs(engine, arr: np.ndarray, fn=intops.probabilities):
    """The same probabilities, computed many positions at a time from inputs known up front (the
    encoder's path, for engines whose ``encode_in_blocks`` says it is the faster one; bit-identical
    to :func:`_step_probs`)."""
    tokens = torch.empty(arr.shape, dtype=torch.int64)
    tokens[:, 0] = BOS
    tokens[:, 1:] = torch.from_numpy(arr[:, :-1].astype(np.int64))
    for logits in engine.logits_blocks(tokens):
        probs = fn(logits.reshape(-1, 256)).view(logits.shape).transpose(0, 1).contiguous()
        yield from probs.numpy()  # [B, 256] per step, contiguous


PRECISION = 24  # constriction's default fixed-point precision for categorical models


def coded_probability(probs: np.ndarray, sym: np.ndarray) -> np.ndarray:
    """The probability constriction's range coder actually gives ``sym`` under
    ``Categorical(perfect=False)``, reproduced bit for bit from its ``fast_quantized_cdf``: every
    symbol gets weight 1 of 2**24, the rest is spread by a truncated running float64 sum (in symbol
    order, as ``cumsum`` does it). Cross-entropy from these, not from the float probabilities, is
    what the payload costs: a float probability below about 2**-24 is lifted to it."""
    n = probs.shape[1]
    running = np.cumsum(probs, axis=1)  # sequential, like the Rust loop (no pairwise summation)
    scale = float((1 << PRECISION) - n) / running[:, -1]
    rows = np.arange(len(sym))
    before = np.where(sym > 0, running[rows, np.maximum(sym - 1, 0)], 0.0)
    after = running[rows, np.minimum(sym, n - 2)]
    left = np.floor(before * scale) + sym
    right = np.where(sym < n - 1, np.floor(after * scale) + sym + 1, float(1 << PRECISION))
    return (right - left) / float(1 << PRECISION)


class MatchModel:
    """A copy model over each stream's own history (and a shared context), and an adaptive estimate
    of when to trust it.

    The byte-LM sees at most its window (512 bytes for the transformer, a few KB of recurrent state
    for the GRU); text repeats over much longer spans. For every stream this finds the most recent
    earlier occurrence of the last ``minlen`` bytes and predicts the byte that followed it, extending
    the match while predictions hit (lpaq's match model). A table shared by all streams counts, for
    each (source, match length, octave of the LM's own probability of the predicted byte), how often
    the prediction was right; where that rate is above the LM's own probability for the byte it
    becomes the byte's probability, and the LM's other probabilities are scaled to fill the rest
    (secondary symbol estimation). The LM's probability is bucketed by octave below 1/2 and by octave
    of its distance to 1 above, so a confident LM is compared with matches of the same confidence.

    ``context`` (bytes both sides know before coding, e.g. a prefix coder's stored slice of training
    text) is a second place to look: a stream with no match in its own history looks for its last
    ``minlen`` bytes there, in a hash table built once from the context. Matches into the context
    keep their own hit counts (source 1), since stored text is a weaker predictor than the stream's
    own past. With no context, every number is what it was before context existed.

    Determinism: the state is integers (positions, lengths, counts) updated from coded bytes only,
    and the new probabilities are single correctly rounded float64 operations: no sums of floats.
    The context table keeps, for each slot, the largest position that hashes there, found with a
    sort (``np.unique``), never with a fancy-index assignment whose order numpy leaves undefined.
    """

    LEN_BUCKETS = 16
    # Octave thresholds 1/2, 1/4, ... 1/2**11, made with ldexp: exact, never a libm pow.
    THRESHOLDS = np.ldexp(1.0, -np.arange(1, 12))
    P_BUCKETS = 12 + 11  # p < 1/2 by octave of p (12), p >= 1/2 by octave of 1 - p (11)
    GOLDEN = np.uint64(0x9E3779B97F4A7C15)
    MAX_CONTEXT = 64 << 20  # the last 64 MiB of a longer context are searched
    CONTEXT_BITS = 23  # at most 2**23 context slots (int32: 32 MiB)

    def __init__(self, streams: int, seg: int, minlen: int, context: bytes = b""):
        self.minlen = minlen
        self.rows = np.arange(streams)
        # Hash bits: about 2 slots per position of a stream, at most 2**24 slots in all (64 MB).
        self.bits = max(8, min((2 * seg - 1).bit_length(), 24 - (streams - 1).bit_length()))
        self.table = np.zeros((streams, 1 << self.bits), dtype=np.int64)  # position after the key; 0: none
        self.mpos = np.full(streams, -1, dtype=np.int64)  # index (in the stream or context) of the predicted byte
        self.mlen = np.zeros(streams, dtype=np.int64)
        self.msrc = np.zeros(streams, dtype=np.int64)  # 0: own history, 1: context
        self.hits = np.ones((2, self.LEN_BUCKETS, self.P_BUCKETS), dtype=np.int64)
        self.tries = np.full_like(self.hits, 2)
        self._pending = None
        self.ctx = np.frombuffer(context[-self.MAX_CONTEXT:], dtype=np.uint8) if len(context) > minlen else None
        if self.ctx is not None:
            self._index_context()

    def _slot(self, key: np.ndarray, bits: int) -> np.ndarray:
        return ((key * self.GOLDEN) >> np.uint64(64 - bits)).astype(np.int64)

    def _index_context(self) -> None:
        ctx, m = self.ctx, self.minlen
        self.cbits = max(8, min((2 * len(ctx) - 1).bit_length(), self.CONTEXT_BITS))
        pos = np.arange(m, len(ctx), dtype=np.int64)  # the predicted byte follows ctx[pos - m : pos]
        key = np.zeros(len(pos), dtype=np.uint64)
        for i in range(m):
            key = (key << np.uint64(8)) | ctx[pos - m + i].astype(np.uint64)
        slot = self._slot(key, self.cbits)
        # The most recent position per slot: unique() over the reversed order finds each slot's
        # first occurrence from the end, i.e. its largest position (deterministic, unlike a[idx] = v).
        uniq, first = np.unique(slot[::-1], return_index=True)
        self.ctable = np.zeros(1 << self.cbits, dtype=np.int32)
        self.ctable[uniq] = pos[::-1][first]

    def adjust(self, t: int, arr: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Probabilities for step t (``arr[:, :t]`` known), given the LM's ``probs`` [B, 256]."""
        m, rows = self.minlen, self.rows
        if t >= m:
            key = np.zeros(len(rows), dtype=np.uint64)
            for i in range(m):
                key = (key << np.uint64(8)) | arr[:, t - m + i].astype(np.uint64)
            slot = self._slot(key, self.bits)
            cand = self.table[rows, slot]
            new = (self.mpos < 0) & (cand > 0)
            for i in range(m):  # a slot may hold another key: check the bytes themselves
                new &= arr[rows, np.maximum(cand - m + i, 0)] == arr[:, t - m + i]
            self.mpos[new], self.mlen[new], self.msrc[new] = cand[new], 0, 0
            self.table[rows, slot] = t
            if self.ctx is not None:  # no match in its own history: look in the context
                free = rows[self.mpos < 0]
                if len(free):
                    ccand = self.ctable[self._slot(key[free], self.cbits)].astype(np.int64)
                    ok = ccand > 0
                    for i in range(m):
                        ok &= self.ctx[np.maximum(ccand - m + i, 0)] == arr[free, t - m + i]
                    got = free[ok]
                    self.mpos[got], self.mlen[got], self.msrc[got] = ccand[ok], 0, 1
        a = rows[self.mpos >= 0]
        self._pending = None
        if len(a) == 0:
            return probs
        src = self.msrc[a]
        if self.ctx is None:
            pred = arr[a, self.mpos[a]].astype(np.int64)
        else:
            own = src == 0
            pred = np.empty(len(a), dtype=np.int64)
            pred[own] = arr[a[own], self.mpos[a[own]]]
            pred[~own] = self.ctx[self.mpos[a[~own]]]
        p_pred = probs[a, pred]
        li = np.minimum(self.mlen[a], self.LEN_BUCKETS - 1)
        low = (p_pred[:, None] < self.THRESHOLDS[None, :]).sum(axis=1)
        high = 12 + ((1.0 - p_pred)[:, None] < self.THRESHOLDS[None, 1:]).sum(axis=1)
        pj = np.where(p_pred < 0.5, low, high)
        # Never below the LM's own probability: the match can only add confidence, so a cold or
        # coarse cell cannot undo a confident LM.
        r = np.maximum(self.hits[src, li, pj] / self.tries[src, li, pj], p_pred)
        out = probs.copy()
        out[a] = probs[a] * ((1.0 - r) / (1.0 - p_pred))[:, None]  # p_pred < 1: every weight is >= 2
        out[a, pred] = r
        self._pending = (a, pred, src, li, pj)
        return out

    def update(self, t: int, arr: np.ndarray, k: int) -> None:
        """Learn from step t's bytes (streams ``< k`` are real; a shorter last stream has ended)."""
        if self._pending is None:
            return
        a, pred, src, li, pj = self._pending
        live = a < k
        hit = arr[a, t] == pred
        np.add.at(self.hits, (src[live], li[live], pj[live]), hit[live])
        np.add.at(self.tries, (src[live], li[live], pj[live]), 1)
        nxt = self.mpos[a] + 1
        if self.ctx is not None:  # a match that reaches the end of the context ends there
            hit &= (src == 0) | (nxt < len(self.ctx))
        self.mpos[a] = np.where(hit, nxt, -1)
        self.mlen[a] = np.where(hit, self.mlen[a] + 1, 0)


# From this many streams on, a mixed run (mix=1) codes its streams in two groups, one after the
# other within each step: the context mixer codes (and learns from) the first half's bytes of step t,
# then the second half's. That order is part of the payload format. It is what lets the engine
# compute one group's next step on a helper thread while the mixer codes the other group: the mixer
# learns from every bit, so it cannot start step t of a stream before step t - 1 of every stream
# that shares its statistics is coded, and in one group every stream shares them.
MIX_GROUP_MIN = 32


def mixed_groups(streams: int) -> list[tuple[int, int]]:
    """The row ranges a mixed run codes, in order, at every step (see :data:`MIX_GROUP_MIN`)."""
    if streams < MIX_GROUP_MIN:
        return [(0, streams)]
    return [(0, streams // 2), (streams // 2, streams)]


def _in_inference(fn, *args):
    """``fn(*args)`` under inference mode, which is per thread: a helper thread enters it itself."""
    with torch.inference_mode():
        return fn(*args)


class _SplitSteps:
    """Integer weights per group and step, as :func:`_step_probs` gives them, from an engine whose
    ``helper_runs`` is ``"recurrent_sums"`` or ``"sums_and_weights"``. ``pool`` (one thread) computes
    a group's ``recurrent_sums`` for its next step while the caller codes this one; the caller's thread
    runs the gates (``cells``, which need the byte just coded) on one torch thread: the other core is
    the helper's. The output layer (``out_weights``) runs on the caller's thread with
    ``"recurrent_sums"``; with ``"sums_and_weights"`` the caller runs a group's gates as soon as its
    byte is coded (:meth:`coded`) and the helper computes the weights while the caller codes the
    other group. Thread counts are per thread in torch; :meth:`close` restores the caller's."""

    def __init__(self, engine, arr: np.ndarray, groups: list[tuple[int, int]], pool):
        self.engine, self.arr, self.groups, self.pool = engine, arr, groups, pool
        self.ahead = engine.helper_runs == "sums_and_weights"
        self.states = [engine.start(hi - lo) for lo, hi in groups]
        self.pending = [pool.submit(_in_inference, engine.recurrent_sums, s) for s in self.states]
        self.out: list = [None] * len(groups)
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)
        if self.ahead:
            for g, (lo, hi) in enumerate(groups):
                self._cells(g, np.full(hi - lo, BOS), 0)

    def _cells(self, g: int, inputs: np.ndarray, t: int) -> None:
        """Group g consumes the input of step t (BOS, or byte t - 1); the helper is given what it
        computes next: with ``ahead``, step t's weights, then (if another step follows) the sums for
        step t + 1."""
        self.pending[g].result()
        self.engine.cells(self.states[g], torch.from_numpy(inputs.astype(np.int64)))
        if self.ahead:
            self.out[g] = self.pool.submit(_in_inference, self.engine.out_weights, self.states[g])
        if t + 1 < self.arr.shape[1]:
            # The helper reads the new q(h) while this thread's output GEMM may read it too: both only read.
            self.pending[g] = self.pool.submit(_in_inference, self.engine.recurrent_sums, self.states[g])

    def weights(self, t: int, g: int) -> np.ndarray:
        """Group g's weights for step t; the caller has filled its ``arr[lo:hi, t - 1]``."""
        if self.ahead:
            return self.out[g].result().numpy()
        lo, hi = self.groups[g]
        self._cells(g, np.full(hi - lo, BOS) if t == 0 else self.arr[lo:hi, t - 1], t)
        return self.engine.out_weights(self.states[g]).numpy()

    def coded(self, t: int, g: int) -> None:
        """Group g's bytes of step t are in ``arr``: with ``ahead``, start on its step t + 1."""
        if self.ahead and t + 1 < self.arr.shape[1]:
            lo, hi = self.groups[g]
            self._cells(g, self.arr[lo:hi, t], t + 1)

    def close(self) -> None:
        """Wait for the helper: never leave a task running on the engine (a corrupt payload raises
        mid-run); then give the caller back its torch thread count."""
        for f in self.pending + [f for f in self.out if f is not None]:
            f.exception()
        torch.set_num_threads(self.threads)


class _SharedSteps:
    """Integer weights per group and step, as :func:`_step_probs` gives them, from an engine whose
    ``helper_runs`` is ``"runs"`` (the transformer): each group's step is split into two runs of
    streams (``engine.start(..., shared=True)``). As soon as a group's bytes of step t are coded
    (:meth:`coded`), ``pool`` (one thread) starts the second run of its step t + 1 and the caller runs
    the first, then goes on to code the other group, whose step the helper has meanwhile finished.
    So both cores step the model, and the helper's share covers the caller's mixing. The caller runs
    on one torch thread (the other core is the helper's); :meth:`close` restores its count."""

    def __init__(self, engine, arr: np.ndarray, groups: list[tuple[int, int]], pool):
        self.engine, self.arr, self.groups, self.pool = engine, arr, groups, pool
        self.states = [engine.start(hi - lo, shared=True) for lo, hi in groups]
        self.pending: list = [None] * len(groups)  # the helper's run of each group's next step
        self.mine: list = [None] * len(groups)  # this thread's
        self.ctx: list = [None] * len(groups)
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)
        for g, (lo, hi) in enumerate(groups):
            self._begin(g, np.full(hi - lo, BOS))

    def _part(self, state: dict, ctx, r: int) -> torch.Tensor:
        """Run r of a step, and its rows' weights (row by row: either thread may compute them)."""
        return intops.exp_weights(self.engine.step_run(state, ctx, r))

    def _begin(self, g: int, inputs: np.ndarray) -> None:
        state = self.states[g]
        ctx = self.ctx[g] = self.engine.begin_step(state, torch.from_numpy(inputs.astype(np.int64)))
        if len(state["runs"]) > 1:
            self.pending[g] = self.pool.submit(_in_inference, self._part, state, ctx, 1)
        self.mine[g] = self._part(state, ctx, 0)

    def weights(self, t: int, g: int) -> np.ndarray:
        """Group g's weights for step t."""
        parts = [self.mine[g]]
        if self.pending[g] is not None:
            parts.append(self.pending[g].result())
            self.pending[g] = None
        self.engine.end_step(self.states[g], self.ctx[g])
        return torch.cat(parts).numpy()

    def coded(self, t: int, g: int) -> None:
        """Group g's bytes of step t are in ``arr``: start on its step t + 1."""
        if t + 1 < self.arr.shape[1]:
            lo, hi = self.groups[g]
            self._begin(g, self.arr[lo:hi, t])

    def close(self) -> None:
        """Wait for the helper (see :meth:`_SplitSteps.close`); give the caller back its thread count."""
        for f in self.pending:
            if f is not None:
                f.exception()
        torch.set_num_threads(self.threads)


def _run_mixed(engine, arr: np.ndarray, n: int, decoder=None, encoder=None, digest=None, stepwise: bool = False,
               progress=None, context: bytes = b"") -> float:
    """:func:`_run` with the byte-LM's prediction mixed bitwise with shared context models
    (:class:`~.mixing.ContextMixer`): every byte is 8 binary decisions, each coded with a 12-bit
    probability, group by group (:func:`mixed_groups`).

    Schedule (speed only; the probabilities are the same either way): an engine with
    ``mixer_overlap`` gets a state per group and works on :func:`intops.helper`'s thread (one torch
    thread) while this thread mixes; that thread runs its tasks in order, so they never overlap each
    other. What it runs is the engine's ``helper_runs``: ``"step"``, a group's whole step, while this
    thread mixes the other group; ``"recurrent_sums"``, only the part of a group's next step that
    does not need the byte being coded (:class:`_SplitSteps`), while this thread runs the rest on one
    torch thread and mixes; ``"sums_and_weights"``, that part and the output weights, while this
    thread runs the gates and mixes; ``"runs"``, part of the streams of a group's next step, while this
    thread runs the rest and mixes (:class:`_SharedSteps`). Other engines step all streams at once,
    here."""
    import constriction

    from .mixing import ContextMixer

    family = constriction.stream.model.Bernoulli(perfect=False)
    streams, seg = arr.shape
    last_len = n - (streams - 1) * seg
    groups = mixed_groups(streams)
    blocks = decoder is None and not stepwise and getattr(engine, "encode_in_blocks", False)
    overlap = (not blocks and len(groups) > 1 and getattr(engine, "mixer_overlap", False)
               and torch.get_num_threads() > 1)
    # The mixer fills its tables and learns a primed context on two threads where torch may use two
    # (the same tables either way).
    mixer = ContextMixer(streams, seg, n, context, len(groups), threads=min(2, torch.get_num_threads()))
    log2 = np.log2(np.arange(4097, dtype=np.float64) / 4096.0, where=np.arange(4097) > 0, out=np.zeros(4097))
    bits = 0.0
    # Decoding wants only the bytes (decode() drops the model bits): it skips the log2 sums, 8 per step.
    count_bits = digest is not None

    def decode_bits(p: np.ndarray, pf: np.ndarray, j: int) -> np.ndarray:
        nonlocal bits
        if digest is not None:
            digest.update(p.astype("<i2").tobytes())
        bit = decoder.decode(family, pf)  # pf = p / 4096, exactly: 12 bits over 2**12
        if count_bits:
            bits -= float(log2[np.where(bit == 1, p, 4096 - p)].sum())
        return bit

    schedule = getattr(engine, "helper_runs", "step")
    split = overlap and schedule in ("recurrent_sums", "sums_and_weights", "runs")
    if split:
        splits = (_SharedSteps if schedule == "runs" else _SplitSteps)(engine, arr, groups, intops.helper())
    elif overlap:
        # A step generator per group, over its rows of arr (a view: it reads the bytes the mixer
        # writes there), advanced on the helper thread.
        pool = intops.helper()  # one thread: the group steps run one at a time, in order
        sources = [_step_probs(engine, arr[lo:hi], intops.exp_weights) for lo, hi in groups]
        pending = [pool.submit(_in_inference, next, src) for src in sources]
    else:
        source = _block_probs(engine, arr, intops.exp_weights) if blocks else \
            _step_probs(engine, arr, intops.exp_weights)
    with torch.inference_mode():
        try:
            for t in range(seg):
                if not overlap:
                    w_all = next(source)
                for g, (lo, hi) in enumerate(groups):
                    k = hi - lo if t < last_len or hi < streams else hi - lo - 1  # the last stream may have ended
                    w = splits.weights(t, g) if split else pending[g].result() if overlap else w_all[lo:hi]
                    if decoder is not None:
                        arr[lo:lo + k, t] = mixer.step(t, w, k, decode_bits, lo)
                    else:
                        # Bytes known: one compiled call for the group's step, then its 8 x k bits coded in
                        # the order the decoder decodes them (bit 0 of every stream, then bit 1, ...).
                        p, pf, bit, coded = mixer.step_known(t, w, k, arr[lo:lo + k, t], lo)
                        if digest is not None:
                            digest.update(p.astype("<i2").tobytes())
                        if encoder is not None:
                            encoder.encode(bit.ravel(), family, pf.ravel())
                        bits -= float(log2[coded].sum())
                    if split:
                        splits.coded(t, g)
                    elif overlap and t + 1 < seg:
                        pending[g] = pool.submit(_in_inference, next, sources[g])
                if progress is not None and t % 256 == 255:
                    progress(min(n, (t + 1) * streams))
        finally:
            if split:
                splits.close()
            elif overlap:  # never leave a step running on the engine (a corrupt payload raises mid-step)
                for f in pending:
                    f.exception()
    return bits


def _run(engine, arr: np.ndarray, n: int, decoder=None, encoder=None, digest=None, stepwise: bool = False,
         match: int = 0, progress=None, context: bytes = b"", mix: int = 0) -> float:
    """Advance all streams in lockstep; encode ``arr`` or fill it from ``decoder``. Returns model bits.
    ``mix``: 1 mixes the LM with shared context models (:func:`_run_mixed`; ``match`` is then unused)."""
    import constriction

    if mix:
        return _run_mixed(engine, arr, n, decoder, encoder, digest, stepwise, progress, context)

    family = constriction.stream.model.Categorical(perfect=False)
    streams, seg = arr.shape
    last_len = n - (streams - 1) * seg
    blocks = decoder is None and not stepwise and getattr(engine, "encode_in_blocks", False)
    matcher = MatchModel(streams, seg, match, context) if match else None
    bits = 0.0
    with torch.inference_mode():
        for t, probs in enumerate(_block_probs(engine, arr) if blocks else _step_probs(engine, arr)):
            k = streams if t < last_len else streams - 1
            if matcher is not None:
                probs = matcher.adjust(t, arr, probs)
            if digest is not None:
                digest.update(probs[:k].tobytes())
            if decoder is not None:
                arr[:k, t] = decoder.decode(family, probs[:k])
            sym = arr[:k, t].astype(np.int32)
            if encoder is not None:
                encoder.encode(sym, family, probs[:k])
            bits -= float(np.log2(coded_probability(probs[:k], sym)).sum())
            if matcher is not None:
                matcher.update(t, arr, k)
            if progress is not None and t % 256 == 255:
                progress(min(n, (t + 1) * streams))
    return bits


def _grid(data: bytes, streams: int, seg: int) -> np.ndarray:
    arr = np.zeros((streams, seg), dtype=np.uint8)
    arr.reshape(-1)[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return arr


def encode(engine, data: bytes, max_streams: int, min_segment: int, match: int,
           progress=None, context: bytes = b"", mix: int = 0) -> tuple[int, int, bytes, float]:
    """Range-code ``data`` (non-empty): returns (streams, segment length, coder words as u32 LE bytes,
    model bits). ``context``: bytes the decoder also has, searched by the match model."""
    import constriction

    streams, seg = layout(len(data), max_streams, min_segment)
    encoder = constriction.stream.queue.RangeEncoder()
    bits = _run(engine, _grid(data, streams, seg), len(data), encoder=encoder, match=match, progress=progress,
               context=context, mix=mix)
    return streams, seg, encoder.get_compressed().astype("<u4").tobytes(), bits


def decode(engine, words: bytes, size: int, streams: int, seg: int, match: int, progress=None,
           context: bytes = b"", mix: int = 0) -> bytes:
    """Invert :func:`encode`. The caller has checked that ``streams x seg`` fits ``size``; a body that
    is not a valid range-coder stream raises whatever constriction raises (it can be an
    AssertionError); the payload layer turns any exception into a one-line PayloadError."""
    import constriction

    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
    arr = np.zeros((streams, seg), dtype=np.uint8)
    _run(engine, arr, size, decoder=decoder, match=match, progress=progress, context=context, mix=mix)
    return arr.reshape(-1)[:size].tobytes()


def model_bits(engine, data: bytes, max_streams: int, min_segment: int, match: int, context: bytes = b"",
               mix: int = 0) -> float:
    """``-sum log2 p`` of ``data`` under exactly the probabilities :func:`encode` codes with."""
    if not data:
        return 0.0
    streams, seg = layout(len(data), max_streams, min_segment)
    return _run(engine, _grid(data, streams, seg), len(data), match=match, context=context, mix=mix)


def probability_digest(engine, data: bytes, max_streams: int, min_segment: int, match: int,
                       stepwise: bool = False, context: bytes = b"", mix: int = 0) -> str:
    """sha256 of every float64 probability coded for ``data``; ``stepwise`` forces the decoder's path."""
    import hashlib

    h = hashlib.sha256()
    if data:
        streams, seg = layout(len(data), max_streams, min_segment)
        _run(engine, _grid(data, streams, seg), len(data), digest=h, stepwise=stepwise, match=match,
             context=context, mix=mix)
    return h.hexdigest()
