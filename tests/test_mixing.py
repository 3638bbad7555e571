"""Context mixing (models/mixing.py): integer tables, statistics shared across streams, priming."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from compbench import registry
from compbench.decoding import decode_payload
from compbench.models import mixing
from conftest import REPO


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


def test_signed_floor_division_is_python_floor_division():
    """The mixer's mean steps divide signed sums: ``_floor_div`` must round toward minus infinity,
    as ``//`` does, on both sides of zero and on both paths of the reciprocal division."""
    rng = np.random.default_rng(1)
    cases = [(a, d) for d in (1, 2, 3, 7, 128, 255, 1023, 1024, 5000) for a in
             (0, 1, -1, d - 1, -d + 1, d, -d, d + 1, -d - 1, (1 << 26) - 1, -(1 << 26) + 1, 1 << 26, -(1 << 26), -(1 << 40))]
    cases += list(zip(rng.integers(-(1 << 30), 1 << 30, 3000).tolist(), rng.integers(1, 3000, 3000).tolist()))
    for a, d in cases:
        assert mixing._floor_div(a, d) == a // d, (a, d)


def test_mean_steps_move_each_weight_row_by_the_floored_mean_of_its_streams_steps():
    """``_learn`` sums each weight row's steps as it makes them; ``_apply_means`` then moves each row
    touched by the floored mean of its steps (a row one stream used moves by that stream's step).
    Checked against a plain per-row mean, with signed steps (so truncation toward zero would fail);
    the scratch must be left zero for the next bit. (The golden digests check the summing in
    ``_learn`` itself.)"""
    rng = np.random.default_rng(2)
    for _ in range(50):
        rows, n_in = int(rng.integers(1, 40)), int(rng.integers(1, 16))
        w = rng.integers(-(1 << 20), 1 << 20, (rows, n_in))
        used = rng.integers(0, rows, int(rng.integers(1, 200)))
        steps = rng.integers(-(1 << 18), 1 << 18, (len(used), n_in))
        want = w.copy()
        for r in set(used.tolist()):
            mine = steps[used == r]
            want[r] += mine.sum(axis=0) // len(mine)
        tot, hits = np.zeros_like(w), np.zeros(rows, np.int64)
        touched, nt = np.zeros(len(used), np.int64), 0
        for r, step in zip(used.tolist(), steps):
            if hits[r] == 0:
                touched[nt], nt = r, nt + 1
            hits[r] += 1
            tot[r] += step
        mixing._apply_means(w, tot, hits, touched, nt)
        assert np.array_equal(w, want)
        assert not tot.any() and not hits.any()


def _reference(p, n, chk, idx, ck, bit, limit, checked=True):
    """The table rule in plain Python, one entry at a time in the order given: what the compiled
    updates (``_update``, ``_update_checked``) must equal."""
    p, n, chk = p.astype(np.int64), n.astype(np.int64), chk.astype(np.int64)
    for i, c, b in zip(idx.tolist(), ck.tolist(), bit.tolist()):
        if checked and c != chk[i]:
            if n[i] >= mixing.EVICT:  # an established owner keeps its slot, its count halved
                n[i] >>= 1
                continue
            p[i], n[i], chk[i] = 32768, 0, c
        p[i] = (p[i] * (2 * n[i] + 1) + 131070 * b) // (2 * n[i] + 3)
        n[i] = min(n[i] + 1, limit)
    return p, n, chk


@pytest.mark.parametrize("checked", [True, False], ids=["checked", "unchecked"])
def test_table_updates_follow_the_plain_rule_entry_by_entry(checked):
    """Random crowded steps (hundreds of entries on a few dozen slots, several contexts per slot,
    some slots never hit) from a random starting table: every slot's probability, count and check
    byte equal the one-entry-at-a-time reference, and no slot that was not hit changes."""
    rng = np.random.default_rng(3)
    p, n, chk, words = mixing._interleaved(64, 32768)
    p[:] = rng.integers(1, 65535, 64)
    n[:] = rng.integers(0, 5, 64)
    chk[:] = rng.integers(0, 6, 64)
    for _ in range(20):
        m = int(rng.integers(1, 300))
        idx = rng.integers(0, 48, m)  # slots 48-63 are never hit
        ck = rng.integers(0, 6, m) if checked else np.zeros(m, np.int64)
        if not checked:
            chk[:] = 0  # unchecked tables (orders 0 and 1, the APMs) keep their top byte
        bit = rng.integers(0, 2, m)
        want = _reference(p, n, chk, idx, ck, bit, 127, checked)
        for i, c, b in zip(idx, ck, bit):
            if checked:
                mixing._update_checked(words, int(i), int(c), int(b), 127)
            else:
                mixing._update(words, int(i), int(b), 127)
        for got, ref in zip((p, n, chk), want):
            assert np.array_equal(got.astype(np.int64), ref)


def test_slots_learn_the_bits_they_see_and_established_owners_keep_their_slot():
    p, n, chk, words = mixing._interleaved(2, 32768)
    for _ in range(40):
        mixing._update(words, 0, 1, 127)
        mixing._update(words, 1, 0, 127)
    assert int(p[0]) > 64000 and int(p[1]) < 1500 and int(n[0]) == int(n[1]) == 40
    # One slot: an owner seen EVICT times or more keeps it and halves its count; a newer one loses it.
    for count, kept in ((mixing.EVICT, True), (mixing.EVICT - 1, False)):
        p, n, chk, words = mixing._interleaved(1, 60000)
        n[0], chk[0] = count, 7
        mixing._update_checked(words, 0, 9, 0, 127)
        if kept:
            assert (int(p[0]), int(n[0]), int(chk[0])) == (60000, count >> 1, 7)
        else:  # taken over, from p = 1/2, and learned from its one 0 bit
            assert int(chk[0]) == 9 and int(n[0]) == 1 and int(p[0]) < 32768


def test_a_hashed_context_reads_one_cache_line_per_nibble():
    """The 8 bit nodes of a byte, for every hashed context: the first nibble's 4 in one 64-byte
    line of the table, the second's 4 in one other line, all 8 distinct and inside the context's
    own table. The tables start on a 64-byte boundary."""
    mixer = mixing.ContextMixer(4, 4096, 16384)
    words = mixer.slot_words
    assert words.ctypes.data % 64 == 0
    base = np.empty(mixing.N_CTX, np.int64)
    ck = np.empty(mixing.N_CTX, np.int64)
    full = np.empty(mixing.N_CTX, np.uint64)
    idx = np.empty(mixing.N_CTX, np.int64)
    rng = np.random.default_rng(5)
    for _ in range(50):
        hist, wd = np.uint64(rng.integers(0, 1 << 62)), rng.integers(0, 1 << 62, 3).astype(np.uint64)
        byte = int(rng.integers(0, 256))
        mixing._contexts(hist, wd, mixer.bits, base, ck, full)
        slots, c0 = [], 1
        for j in range(8):
            if j == 4:
                mixing._second_nibble(c0, mixer.bits, base, ck, full)
            mixing._slots(base, c0, j, mixer.off, mixer.mask, idx)
            slots.append(idx.copy())
            c0 = (c0 << 1) | ((byte >> (7 - j)) & 1)
        slots = np.array(slots)  # [bit, context]
        for i in range(2, mixing.N_CTX):
            at = slots[:, i]
            assert len(set(at.tolist())) == 8
            assert np.all((at >= mixer.off[i]) & (at <= mixer.off[i] + mixer.mask[i]))
            lines = (words.ctypes.data + 4 * at) // 64
            assert len(set(lines[:4].tolist())) == 1 and len(set(lines[4:].tolist())) == 1
            assert lines[0] != lines[4]


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


def _prime_plainly(mixer, context, backwards=False):
    """The tables after learning ``context`` in coding's order: bit j of every row (in row order, or
    ``backwards``), then bit j + 1; rows laid out as :func:`mixing._prime` lays them."""
    rows, ctx = 1024, np.frombuffer(context, np.uint8)
    seg = -(-len(ctx) // rows)
    rows = -(-len(ctx) // seg)
    last = len(ctx) - (rows - 1) * seg
    tables = mixing._interleaved(len(mixer.slot_words), 32768)[3]
    hist = np.zeros(rows, np.uint64)
    wd = np.zeros((rows, 3), np.uint64)
    base, ck, full = (np.empty((rows, mixing.N_CTX), t) for t in (np.int64, np.int64, np.uint64))
    idx = np.empty(mixing.N_CTX, np.int64)
    for t in range(seg):
        live = [r for r in range(rows) if t < last or r < rows - 1][:: -1 if backwards else 1]
        c0 = dict.fromkeys(live, 1)
        for r in live:
            mixing._contexts(hist[r], wd[r], mixer.bits, base[r], ck[r], full[r])
        for j in range(8):
            for r in live:
                if j == 4:
                    mixing._second_nibble(c0[r], mixer.bits, base[r], ck[r], full[r])
                b = (int(ctx[r * seg + t]) >> (7 - j)) & 1
                mixing._slots(base[r], c0[r], j, mixer.off, mixer.mask, idx)
                for i in range(mixing.N_CTX):
                    mixing._update_checked(tables, idx[i], ck[r, i], b, mixing.LIMIT)
                c0[r] = (c0[r] << 1) | b
        for r in live:
            hist[r] = (hist[r] << np.uint64(8)) | np.uint64(ctx[r * seg + t])
            mixing._next_word(wd[r], int(ctx[r * seg + t]))
    return tables


def test_priming_learns_what_coding_the_context_bit_by_bit_in_row_order_would():
    """Priming updates nibble by nibble, row by row (for speed); a plain loop in coding's order (bit
    j of every row, then bit j + 1) must leave every table the same. The text's words repeat, so
    the rows share contexts and many slots learn from several rows in one step: the same loop with
    the rows in reverse order leaves other tables."""
    rng = np.random.default_rng(8)
    words = [bytes(rng.integers(97, 123, rng.integers(2, 6), dtype=np.uint8)) for _ in range(60)]
    context = b" ".join(words[i] for i in rng.integers(0, len(words), 700))[:2400]
    for threads in (1, 2):
        mixer = mixing.ContextMixer(4, 256, 1024, context, threads=threads)
        assert np.array_equal(mixer.slot_words, _prime_plainly(mixer, context))
    assert not np.array_equal(mixer.slot_words, _prime_plainly(mixer, context, backwards=True))


def test_priming_on_two_threads_learns_the_same_tables_as_on_one():
    """Each thread primes its own context models' tables: every table, byte for byte, as one thread
    leaves it (and not as an unprimed mixer leaves it, so the comparison can fail)."""
    rng = np.random.default_rng(4)
    words = [bytes(rng.integers(97, 123, rng.integers(2, 9), dtype=np.uint8)) for _ in range(400)]
    context = b" ".join(words[i] for i in rng.integers(0, len(words), 12000))
    one, two, cold = (mixing.ContextMixer(8, 2048, 16384, c, 2, threads=t)
                      for c, t in ((context, 1), (context, 2), (b"", 1)))
    assert one.bits == two.bits == cold.bits + 2
    assert np.array_equal(one.slot_words, two.slot_words)
    assert np.array_equal(one.mtable, two.mtable)
    for i in range(mixing.N_CTX):  # every model learned something, on either thread
        table = slice(one.off[i], one.off[i] + one.mask[i] + 1)
        assert np.count_nonzero(one.slot_words[table] != 32768) > 30, i


def test_the_decoders_step_sees_the_encoders_probabilities_and_both_hand_over_exact_copies():
    """The encoder's compiled step (:meth:`ContextMixer.step_known`) and the decoder's
    (:meth:`ContextMixer.step`, through its struct of arrays) give every bit the same probability,
    group by group; the floats each hands to constriction are p / 4096 exactly, the encoder's bits are
    the byte's, and its coded probabilities are p for a 1 and 4096 - p for a 0."""
    rng = np.random.default_rng(11)
    words = [bytes(rng.integers(97, 123, rng.integers(2, 7), dtype=np.uint8)) for _ in range(40)]
    text = np.frombuffer(b" ".join(words[i] for i in rng.integers(0, len(words), 2000))[:64 * 96], np.uint8)
    grid = text.reshape(64, 96)
    lm = rng.integers(2, 1 << 20, (32, 256)).astype(np.int64)
    enc, dec = (mixing.ContextMixer(64, 96, grid.size, groups=2) for _ in range(2))
    seen = []

    def code(p12, pf, j):  # the decoder's view of one bit: the bytes are known, so answer with them
        assert np.array_equal(pf, p12 / 4096.0) and pf.dtype == np.float64
        seen.append(p12.copy())
        return ((grid[lo:lo + 32, t] >> (7 - j)) & 1).astype(np.int32)

    for t in range(96):
        for lo in (0, 32):
            p, pf, bit, coded = enc.step_known(t, lm, 32, grid[lo:lo + 32, t], lo)
            want_bits = (grid[lo:lo + 32, t].astype(np.int64) >> np.arange(7, -1, -1)[:, None]) & 1
            assert np.array_equal(bit, want_bits) and bit.dtype == np.int32
            assert np.array_equal(pf, p / 4096.0)
            assert np.array_equal(coded, np.where(want_bits == 1, p, 4096 - p))
            seen.clear()
            assert np.array_equal(dec.step(t, lm, 32, code, lo), grid[lo:lo + 32, t])
            assert np.array_equal(np.stack(seen), p), (t, lo)
    assert np.array_equal(enc.slot_words, dec.slot_words) and np.array_equal(enc.w, dec.w)
    assert len(np.unique(p)) > 8  # the probabilities moved: the comparison could fail


_CACHE_PROBE = """
import json
import numpy as np
from compbench.models import mixing
mx = mixing.ContextMixer(4, 64, 256)
w = np.ones((4, 256), np.int64)
mx.step_known(0, w, 4, np.arange(4), 0)
mx.step(1, w, 4, lambda p, pf, j: np.zeros(4, np.int32), 0)
called = {n: f.stats for n, f in vars(mixing).items() if hasattr(f, "stats") and (f.stats.cache_hits or f.stats.cache_misses)}
print(json.dumps({"misses": {n: sum(s.cache_misses.values()) for n, s in called.items()},
                  "ctor": hasattr(mixing._CodingState, "_StructRefProxy__numba_ctor")}))
"""


def test_a_fresh_process_loads_the_mixers_compiled_code_from_cache():
    """A one-shot command pays for whatever numba compiles in its process: every mixer function a
    coder calls from Python must load from numba's cache after a first process wrote it, and the
    decoder path's struct must not be built through its proxy class, which compiles a constructor
    in every process (0.5 s)."""
    runs = [json.loads(subprocess.run([sys.executable, "-c", _CACHE_PROBE], capture_output=True, text=True,
                                      check=True, cwd=REPO / "tests").stdout) for _ in range(2)]
    second = runs[1]
    assert {"_code_byte", "_start", "_next", "_new_coding_state"} <= set(second["misses"])
    assert not any(second["misses"].values()), second["misses"]
    assert not second["ctor"]


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


def test_the_engine_refuses_a_second_module_name_that_would_break_numba_s_cache():
    """numba caches compiled code by source file: a script run from the checkout's root that
    compiled the mixer as ``models.mixing`` made every later compbench process fail to load it
    ("No module named 'models'"). The package refuses that name, in one line, before any compiling."""
    res = subprocess.run([sys.executable, "-c", "import models.mixing"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    assert "import the engine as compbench.models" in res.stderr.strip().splitlines()[-1]
