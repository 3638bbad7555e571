"""Lockstep coding: a byte-LM engine drives constriction's range coder over many streams at once.

The input is cut into B contiguous segments of S bytes (the last one may be shorter; B = ceil(n/S)).
Every segment is an independent stream that starts from the BOS symbol and an empty state, and all
streams advance in lockstep: step t predicts byte t of every segment in one batch, so the int8
matmuls run on B rows at once (AMX/VNNI). One ``RangeEncoder`` codes the B symbols of step 0, then
those of step 1, and so on; the decoder recomputes the same batch of probabilities and decodes in the
same order. Probabilities are bit-identical on both sides because the engine is integer arithmetic
(see :mod:`.intops`), and each is given to ``Categorical(perfect=False)``.

The :class:`MatchModel` sharpens the LM's prediction with a copy model over each stream's history.
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


def _step_probs(engine, arr: np.ndarray):
    """Probabilities for step t of every stream, one step at a time: the decoder's path. The caller
    fills ``arr[:, t]`` (decoded bytes) before asking for step t + 1."""
    state = engine.start(arr.shape[0])
    inputs = torch.full((arr.shape[0],), BOS, dtype=torch.int64)
    for t in range(arr.shape[1]):
        yield intops.probabilities(engine.step(state, inputs)).numpy()
        inputs = torch.from_numpy(arr[:, t].astype(np.int64))


def _block_probs(engine, arr: np.ndarray):
    """The same probabilities, computed many positions at a time from inputs known up front (the
    encoder's path, for engines with ``logits_blocks``; bit-identical to :func:`_step_probs`)."""
    tokens = torch.empty(arr.shape, dtype=torch.int64)
    tokens[:, 0] = BOS
    tokens[:, 1:] = torch.from_numpy(arr[:, :-1].astype(np.int64))
    for logits in engine.logits_blocks(tokens):
        probs = intops.probabilities(logits.reshape(-1, 256)).view(logits.shape).transpose(0, 1).contiguous()
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
    """A copy model over each stream's own history, and an adaptive estimate of when to trust it.

    The byte-LM sees at most its window (512 bytes for the transformer, a few KB of recurrent state
    for the GRU); text repeats over much longer spans. For every stream this finds the most recent
    earlier occurrence of the last ``minlen`` bytes and predicts the byte that followed it, extending
    the match while predictions hit (lpaq's match model). A table shared by all streams counts, for
    each (match length, octave of the LM's own probability of the predicted byte), how often the
    prediction was right; where that rate is above the LM's own probability for the byte it becomes
    the byte's probability, and the LM's other probabilities are scaled to fill the rest (secondary
    symbol estimation). The LM's probability is bucketed by octave below 1/2 and by octave of its
    distance to 1 above, so a confident LM is compared with matches of the same confidence.

    Determinism: the state is integers (positions, lengths, counts) updated from coded bytes only,
    and the new probabilities are single correctly rounded float64 operations: no sums of floats.
    """

    LEN_BUCKETS = 16
    # Octave thresholds 1/2, 1/4, ... 1/2**11, made with ldexp: exact, never a libm pow.
    THRESHOLDS = np.ldexp(1.0, -np.arange(1, 12))
    P_BUCKETS = 12 + 11  # p < 1/2 by octave of p (12), p >= 1/2 by octave of 1 - p (11)

    def __init__(self, streams: int, seg: int, minlen: int):
        self.minlen = minlen
        self.rows = np.arange(streams)
        # Hash bits: about 2 slots per position of a stream, at most 2**24 slots in all (64 MB).
        self.bits = max(8, min((2 * seg - 1).bit_length(), 24 - (streams - 1).bit_length()))
        self.table = np.zeros((streams, 1 << self.bits), dtype=np.int64)  # position after the key; 0: none
        self.mpos = np.full(streams, -1, dtype=np.int64)  # index in the stream of the predicted byte
        self.mlen = np.zeros(streams, dtype=np.int64)
        self.hits = np.ones((self.LEN_BUCKETS, self.P_BUCKETS), dtype=np.int64)
        self.tries = np.full_like(self.hits, 2)
        self._pending = None

    def adjust(self, t: int, arr: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Probabilities for step t (``arr[:, :t]`` known), given the LM's ``probs`` [B, 256]."""
        m, rows = self.minlen, self.rows
        if t >= m:
            key = np.zeros(len(rows), dtype=np.uint64)
            for i in range(m):
                key = (key << np.uint64(8)) | arr[:, t - m + i].astype(np.uint64)
            slot = ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - self.bits)).astype(np.int64)
            cand = self.table[rows, slot]
            new = (self.mpos < 0) & (cand > 0)
            for i in range(m):  # a slot may hold another key: check the bytes themselves
                new &= arr[rows, np.maximum(cand - m + i, 0)] == arr[:, t - m + i]
            self.mpos[new], self.mlen[new] = cand[new], 0
            self.table[rows, slot] = t
        a = rows[self.mpos >= 0]
        self._pending = None
        if len(a) == 0:
            return probs
        pred = arr[a, self.mpos[a]].astype(np.int64)
        p_pred = probs[a, pred]
        li = np.minimum(self.mlen[a], self.LEN_BUCKETS - 1)
        low = (p_pred[:, None] < self.THRESHOLDS[None, :]).sum(axis=1)
        high = 12 + ((1.0 - p_pred)[:, None] < self.THRESHOLDS[None, 1:]).sum(axis=1)
        pj = np.where(p_pred < 0.5, low, high)
        # Never below the LM's own probability: the match can only add confidence, so a cold or
        # coarse cell cannot undo a confident LM.
        r = np.maximum(self.hits[li, pj] / self.tries[li, pj], p_pred)
        out = probs.copy()
        out[a] = probs[a] * ((1.0 - r) / (1.0 - p_pred))[:, None]  # p_pred < 1: every weight is >= 2
        out[a, pred] = r
        self._pending = (a, pred, li, pj)
        return out

    def update(self, t: int, arr: np.ndarray, k: int) -> None:
        """Learn from step t's bytes (streams ``< k`` are real; a shorter last stream has ended)."""
        if self._pending is None:
            return
        a, pred, li, pj = self._pending
        live = a < k
        hit = arr[a, t] == pred
        np.add.at(self.hits, (li[live], pj[live]), hit[live])
        np.add.at(self.tries, (li[live], pj[live]), 1)
        self.mpos[a] = np.where(hit, self.mpos[a] + 1, -1)
        self.mlen[a] = np.where(hit, self.mlen[a] + 1, 0)


def _run(engine, arr: np.ndarray, n: int, decoder=None, encoder=None, digest=None, stepwise: bool = False,
         match: int = 0, progress=None) -> float:
    """Advance all streams in lockstep; encode ``arr`` or fill it from ``decoder``. Returns model bits."""
    import constriction

    family = constriction.stream.model.Categorical(perfect=False)
    streams, seg = arr.shape
    last_len = n - (streams - 1) * seg
    blocks = decoder is None and not stepwise and hasattr(engine, "logits_blocks")
    matcher = MatchModel(streams, seg, match) if match else None
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
           progress=None) -> tuple[int, int, bytes, float]:
    """Range-code ``data`` (non-empty): returns (streams, segment length, coder words as u32 LE bytes, model bits)."""
    import constriction

    streams, seg = layout(len(data), max_streams, min_segment)
    encoder = constriction.stream.queue.RangeEncoder()
    bits = _run(engine, _grid(data, streams, seg), len(data), encoder=encoder, match=match, progress=progress)
    return streams, seg, encoder.get_compressed().astype("<u4").tobytes(), bits


def decode(engine, words: bytes, size: int, streams: int, seg: int, match: int, progress=None) -> bytes:
    """Invert :func:`encode`. The caller has checked that ``streams x seg`` fits ``size``; a body that
    is not a valid range-coder stream raises ValueError or RuntimeError (from constriction)."""
    import constriction

    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
    arr = np.zeros((streams, seg), dtype=np.uint8)
    _run(engine, arr, size, decoder=decoder, match=match, progress=progress)
    return arr.reshape(-1)[:size].tobytes()


def model_bits(engine, data: bytes, max_streams: int, min_segment: int, match: int) -> float:
    """``-sum log2 p`` of ``data`` under exactly the probabilities :func:`encode` codes with."""
    if not data:
        return 0.0
    streams, seg = layout(len(data), max_streams, min_segment)
    return _run(engine, _grid(data, streams, seg), len(data), match=match)


def probability_digest(engine, data: bytes, max_streams: int, min_segment: int, match: int,
                       stepwise: bool = False) -> str:
    """sha256 of every float64 probability coded for ``data``; ``stepwise`` forces the decoder's path."""
    import hashlib

    h = hashlib.sha256()
    if data:
        streams, seg = layout(len(data), max_streams, min_segment)
        _run(engine, _grid(data, streams, seg), len(data), digest=h, stepwise=stepwise, match=match)
    return h.hexdigest()
