"""Context mixing (models/mixing.py): integer tables, statistics shared across streams, priming."""

import math

import numpy as np
import pytest

from compbench import registry
from compbench.decoding import decode_payload
from compbench.models import mixing


def make(path, **opts):
    extra = "".join(f":{k}={v}" for k, v in opts.items())
    return registry.make_coder(f"gru:model='{path}'{extra}")


def test_squash_and_stretch_are_the_logistic_and_its_inverse():
    sq, st = mixing.squash_table(), mixing.stretch_table()
    for x in (-2047, -700, -1, 0, 1, 300, 2047):
        want = 4096 / (1 + math.exp(-x / 256))
        assert abs(sq[x + 2047] - min(max(want, 1), 4095)) <= 0.5 + 1e-9
    assert np.all(np.diff(sq) >= 0) and np.all(np.diff(st) >= 0)
    for p in range(1, 4096, 37):  # stretch(p) is the x whose squash is nearest p (within one step)
        x = st[p]
        assert sq[x + 2047] >= p or x == 2047


def test_reciprocal_division_is_exact_floor_division():
    """The table updates divide by multiplying with a reciprocal: check it against ``//`` for every
    divisor, at the numerators where rounding is closest to going wrong (multiples of d and one
    below, up to the 2**26 bound), and past the bounds, where it falls back to ``//``."""
    d = np.arange(1, 1 << 10)
    top = ((1 << 26) - 1) // d * d  # the largest multiple of d below 2**26
    for a in (top, top - 1, top - d, top - d - 1, d - 1, d, 2 * d - 1, np.full_like(d, (1 << 26) - 1)):
        a = np.maximum(a, 0)
        got = np.array([mixing._udiv(int(x), int(y)) for x, y in zip(a, d)])
        assert np.array_equal(got, a // d)
    rng = np.random.default_rng(0)
    for a, y in zip(rng.integers(0, 1 << 40, 2000), rng.integers(1, 1 << 20, 2000)):
        assert mixing._udiv(int(a), int(y)) == a // y


def test_adapt_aggregates_streams_in_any_order():
    """Many streams updating one entry in one step: the result must not depend on their order."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 40, 500)
    bit = rng.integers(0, 2, 500)
    results = []
    for perm in (np.arange(500), rng.permutation(500), np.arange(500)[::-1]):
        p, n, _, words = mixing._interleaved(40, 32768)
        for _ in range(3):
            mixing._adapt(words, idx[perm], bit[perm], 127)
        results.append((p.copy(), n.copy()))
    for p, n in results[1:]:
        assert np.array_equal(p, results[0][0]) and np.array_equal(n, results[0][1])
    ones = np.bincount(idx, weights=bit, minlength=40)
    seen = np.bincount(idx, minlength=40) > 0
    mostly = seen & (ones > 0.8 * np.bincount(idx, minlength=40))
    assert np.all(results[0][0][mostly] > 40000)  # the probabilities moved toward the bits seen


def _checked_reference(p, n, chk, idx, ck, bit, limit):
    """The rule of ``_adapt_checked`` in plain Python, one slot at a time: what the compiled
    grouping (entries write their numbers into the slots and read back a leader) must equal."""
    p, n, chk = p.astype(np.int64), n.astype(np.int64), chk.astype(np.int64)
    for i in sorted(set(idx.tolist())):
        hits = [(int(c), int(b)) for j, c, b in zip(idx, ck, bit) if j == i]
        if all(c != chk[i] for c, _ in hits):
            if n[i] < mixing.EVICT:
                p[i], n[i], chk[i] = 32768, 0, min(c for c, _ in hits)
            else:
                n[i] >>= 1
        mine = [b for c, b in hits if c == chk[i]]
        if mine:
            c = n[i]
            p[i] = (p[i] * (2 * c + 1) + 131070 * sum(mine)) // (2 * c + 1 + 2 * len(mine))
            n[i] = min(c + len(mine), limit)
    return p, n, chk


def test_checked_slots_update_exactly_as_the_plain_rule_says():
    """Random crowded steps (hundreds of entries on a few dozen slots, several contexts per slot,
    some slots never hit) from a random starting table: every slot's probability, count and check
    byte equal the one-slot-at-a-time reference, and no slot that was not hit changes."""
    rng = np.random.default_rng(3)
    p, n, chk, words = mixing._interleaved(64, 32768)
    p[:] = rng.integers(1, 65535, 64)
    n[:] = rng.integers(0, 5, 64)
    chk[:] = rng.integers(0, 6, 64)
    for _ in range(20):
        m = int(rng.integers(1, 300))
        idx = rng.integers(0, 48, m)  # slots 48-63 are never hit
        ck = rng.integers(0, 6, m)
        bit = rng.integers(0, 2, m)
        want = _checked_reference(p, n, chk, idx, ck, bit, 127)
        mixing._adapt_checked(words, idx, ck, bit, 127, mixing._read(words, idx))
        for got, ref in zip((p, n, chk), want):
            assert np.array_equal(got.astype(np.int64), ref)


def test_checked_slots_resolve_collisions_the_same_in_any_order_and_keep_established_owners():
    """Contexts colliding in a hashed slot: who owns it, and what it learns, must not depend on the
    streams' order; an owner seen EVICT times or more keeps its slot, a newer one is replaced."""
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 30, 400)
    ck = rng.integers(0, 4, 400)  # a few contexts share each slot
    bit = rng.integers(0, 2, 400)
    results = []
    for perm in (np.arange(400), rng.permutation(400), np.arange(400)[::-1]):
        p, n, chk, words = mixing._interleaved(30, 32768)
        chk[:] = 0
        for _ in range(3):
            mixing._adapt_checked(words, idx[perm], ck[perm], bit[perm], 127, mixing._read(words, idx[perm]))
        results.append((p.copy(), n.copy(), chk.copy()))
    for got in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(got, results[0]))
    # One slot: an established owner (count >= EVICT) keeps it and halves its count; a new one loses it.
    for count, kept in ((mixing.EVICT, True), (mixing.EVICT - 1, False)):
        p, n, chk, words = mixing._interleaved(1, 60000)
        n[0], chk[0] = count, 7
        slots = np.array([0, 0])
        mixing._adapt_checked(words, slots, np.array([9, 8]), np.array([0, 0]), 127, mixing._read(words, slots))
        if kept:
            assert (int(p[0]), int(n[0]), int(chk[0])) == (60000, count >> 1, 7)
        else:  # taken over by the smaller check, from p = 1/2, and learned from its one 0 bit
            assert int(chk[0]) == 8 and int(n[0]) == 1 and int(p[0]) < 32768


def test_streams_share_what_they_learn(tiny_models):
    """Two streams of 3,000 random bytes; stream 1 is 500 new bytes, then stream 0's first 2,500
    (which stream 0 coded 500 steps earlier: in lockstep a stream can copy only what is already
    coded). A per-stream match model (mix=0) cannot see stream 0's bytes; the mixer's shared one
    codes the copy almost free."""
    path, _ = tiny_models["gru"]
    rng = np.random.default_rng(11)
    half = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    data = half + rng.integers(0, 256, 500, dtype=np.uint8).tobytes() + half[:2500]
    shared = make(path, streams=2, min_segment=3000).model_bits(data)
    apart = make(path, streams=2, min_segment=3000, mix=0).model_bits(data)
    assert apart > 7.0 * len(data)  # random bytes, and neither stream sees the other
    assert shared < 0.62 * apart, (shared, apart)


def test_priming_with_context_teaches_the_tables_and_the_match_model(tiny_models):
    path, _ = tiny_models["gru"]
    rng = np.random.default_rng(2)  # a made-up vocabulary: its spellings are learned, or primed
    words = [bytes(rng.integers(97, 123, rng.integers(4, 9), dtype=np.uint8)) for _ in range(150)]
    text = b" ".join(words[i] for i in rng.integers(0, len(words), 4000))
    coder = make(path, streams=4, min_segment=500)
    cold = coder.model_bits(text[-4000:])
    primed = coder.model_bits(text[-4000:], context=text[:-4000])
    assert primed < 0.8 * cold, (primed, cold)
    body = coder.encode_body(text[-4000:], context=text[:-4000])
    assert coder.decode_body(body, 4000, context=text[:-4000]) == text[-4000:]


def test_mixing_is_better_than_the_lm_alone_and_round_trips(tiny_models):
    path, _ = tiny_models["gru"]
    data = b"".join(b"line %d of a log: status ok, %d items\n" % (i, i * 7 % 13) for i in range(300))
    mixed = make(path, streams=8, min_segment=256)
    assert mixed.model_bits(data) < 0.7 * make(path, streams=8, min_segment=256, match=0, mix=0).model_bits(data)
    payload = mixed.encode(data)
    assert decode_payload(payload, mixed.artifact()) == data


@pytest.mark.parametrize("value", [2, -1])
def test_mix_option_is_checked(value):
    with pytest.raises(registry.SpecError, match="mix="):
        registry.make_coder(f"gru:mix={value}")
