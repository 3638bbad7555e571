"""Neural coders: exact integer ops, engines that track their float models, real range-coded round
trips with seconds-long trained models, artifacts that reject bad bytes, and training that resumes."""

import dataclasses
import functools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from compbench import registry
from compbench.errors import ArtifactError, CompbenchError, PayloadError
from compbench.decoding import decode_payload
from compbench.models import ARCHS, artifact, gru, intops, transformer
from compbench.models.artifact import load_engine
from compbench.models.lockstep import layout
from compbench.models.train import artifact_bound, fit_to_budget
from compbench.payload import overhead, read_header
from compbench.train import TrainConfig, parse_size, train

from conftest import TINY, speed_bench

def make(arch, path, **opts):
    extra = "".join(f":{k}={v}" for k, v in opts.items())
    return registry.make_coder(f"{arch}:model='{path}'{extra}")


# -- exact integer building blocks ---------------------------------------------------------------


@pytest.mark.parametrize("k", [7, 424, 1040, 2048])
def test_int_matmul_paths_give_identical_integers(k):
    """Every GEMM path (the int16 kernel runs wherever numba does; it is only chosen on AVX2 x86)."""
    g = torch.Generator().manual_seed(k)
    x = torch.randint(-127, 128, (33, k), dtype=torch.int8, generator=g)
    w = torch.randint(-127, 128, (k, 65), dtype=torch.int8, generator=g)
    exact = (x.to(torch.int64) @ w.to(torch.int64)).to(torch.float64)
    assert torch.equal(intops.int_matmul(x, w, path="float"), exact)
    if k % 2 == 0:
        assert torch.equal(intops.int_matmul(x, w, path="int16"), exact)
    if intops._int_mm_available():
        assert torch.equal(intops.int_matmul(x, w, path="int8"), exact)
        if _has_matmul_route() and k <= 1040:  # float32 output: only where every sum is below 2**24
            assert torch.equal(intops.int_matmul(x, w, path="int8-u8"), exact)
            assert torch.equal(intops.int_matmul(intops.as_u8(x), w, path="int8"), exact)  # uint8 input, any path


def _has_matmul_route() -> bool:
    from compbench.models import peak

    return intops._int_mm_available() and peak.has_int8_matmul()


@pytest.mark.parametrize("m", [1, 7, 127, 128])
def test_the_int8_paths_matmul_route_gives_the_exact_sums_at_full_scale_into_the_engines_buffers(m):
    """oneDNN's matmul primitive (the route that runs AMX tiles), fed q + 128 as uint8 with a zero
    point of 128, writes float32 sums equal to the int64 ones, at every sign of full scale and on the
    GRU's shapes; matmul_into hands back its own tensor on this route and fills ``out`` on the other."""
    if not _has_matmul_route():
        pytest.skip("no int8 GEMM here, or no oneDNN matmul op in this torch")
    g = torch.Generator().manual_seed(m)
    for k, n in ((448, 1344), (448, 256), (1040, 64)):
        for a_val, b_val in ((127, 127), (-127, 127), (127, -127), (-127, -127), (None, None)):
            x = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g) if a_val is None \
                else torch.full((m, k), a_val, dtype=torch.int8)
            w = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=g) if b_val is None \
                else torch.full((k, n), b_val, dtype=torch.int8)
            mat = intops.Int8Matrix(w, u8_input=True)
            exact = x.to(torch.int64) @ w.to(torch.int64)
            out = torch.zeros(m, n, dtype=torch.float32)
            got = intops.matmul_into(intops.as_u8(x), mat, out)
            assert got.dtype == torch.float32 and torch.equal(got.to(torch.int64), exact), (k, n, a_val, b_val)
            filled = torch.zeros(m, n, dtype=torch.int32)
            assert intops.matmul_into(x, mat, filled) is filled and torch.equal(filled.to(torch.int64), exact)
    with pytest.raises(ValueError, match="float32"):
        intops.int_matmul(x, torch.zeros(2048, 3, dtype=torch.int8)[:, :], path="int8-u8")


def test_the_int8_route_is_chosen_once_by_timing_and_can_be_forced(monkeypatch):
    """int8_route(): the matmul primitive only where it is exact and at least 10% faster on the
    GRU's product (timed once a process), torch._int_mm otherwise; COMPBENCH_INT8_ROUTE forces one,
    and a misspelt value is an error, not a silent default. Only matrices that take uint8 input
    (u8_input) and whose sums fit float32 follow the matmul route."""
    timings = []

    def fake_seconds(matmul):
        def seconds():
            timings.append(matmul)
            return {"int_mm": 1.0, "matmul": matmul}
        return seconds

    monkeypatch.setattr(intops, "_int_mm_available", lambda: True)
    monkeypatch.setattr(intops, "_matmul_route_is_exact", lambda: True)
    monkeypatch.setattr(intops, "_ROUTE_SECONDS", {})
    for env, matmul, want in ((None, 0.5, "matmul"), (None, 0.95, "int_mm"), ("int_mm", 0.5, "int_mm"),
                              ("matmul", 5.0, "matmul")):
        monkeypatch.setattr(intops, "_INT8_ROUTE", None)
        monkeypatch.setattr(intops, "route_seconds", fake_seconds(matmul))
        if env:
            monkeypatch.setenv("COMPBENCH_INT8_ROUTE", env)
        else:
            monkeypatch.delenv("COMPBENCH_INT8_ROUTE", raising=False)
        timings.clear()
        assert intops.int8_route() == want and intops.int8_route() == want
        assert len(timings) == (0 if env else 1), "timed once a process, and never when forced"
    monkeypatch.setattr(intops, "_INT8_ROUTE", None)
    monkeypatch.setattr(intops, "_matmul_route_is_exact", lambda: False)
    monkeypatch.setenv("COMPBENCH_INT8_ROUTE", "matmul")
    assert intops.int8_route() == "int_mm", "a route whose probe fails is never taken, even when asked for"
    monkeypatch.setattr(intops, "_INT8_ROUTE", None)
    monkeypatch.setenv("COMPBENCH_INT8_ROUTE", "amx")
    with pytest.raises(ValueError, match="COMPBENCH_INT8_ROUTE must be one of int_mm, matmul"):
        intops.int8_route()
    monkeypatch.setattr(intops, "_INT8_ROUTE", "matmul")
    monkeypatch.setattr(intops, "matrix_path", lambda: "int8")
    small, big = torch.zeros(448, 8, dtype=torch.int8), torch.zeros(2048, 8, dtype=torch.int8)
    assert intops.Int8Matrix(small, u8_input=True).path() == "int8-u8"
    assert intops.gemm_input_dtype(intops.Int8Matrix(small, u8_input=True)) == torch.uint8
    assert intops.acc_dtype(intops.Int8Matrix(small, u8_input=True)) == torch.float32
    assert intops.Int8Matrix(small).path() == "int8" and intops.Int8Matrix(big, u8_input=True).path() == "int8"


@pytest.mark.parametrize("m,k,n", [(1, 2, 1), (3, 4, 17), (4, 416, 16), (5, 416, 1248), (127, 416, 256),
                                   (13, 130, 33), (9, 1030, 40), (6, 1536, 24)])
def test_the_int16_kernel_gives_exact_sums_on_every_shape_and_at_full_scale(m, k, n):
    """gemm16's tiles (4 rows x 16 columns), its one-row and partial-panel remainders and its blocks
    of K (a ragged last one at K = 1030): random int8 values, and every sign combination of +-127,
    where a pair sum is largest, against int64 arithmetic. The output is filled with a sentinel
    first: every entry must be written, none left from before."""
    from compbench.models import gemm16

    rng = np.random.default_rng(m * 1000 + k + n)
    cases = [(rng.integers(-127, 128, (m, k)), rng.integers(-127, 128, (k, n)))]
    cases += [(np.full((m, k), sa), np.full((k, n), sw)) for sa in (127, -127) for sw in (127, -127)]
    for a, w in cases:
        out = np.full((m, n), -12345, np.int32)
        gemm16.gemm(a.astype(np.int16), gemm16.pack(w.astype(np.int8)), out)
        assert (out == a.astype(np.int64) @ w.astype(np.int64)).all()


def test_the_int16_kernel_writes_nothing_past_its_output():
    """A partial last panel (N not a multiple of 16) goes through a scratch tile: the int32s just
    past the output (here, the rest of a larger buffer) keep their values."""
    from compbench.models import gemm16

    rng = np.random.default_rng(5)
    a = rng.integers(-127, 128, (6, 32)).astype(np.int16)
    w = rng.integers(-127, 128, (32, 20)).astype(np.int8)
    big = np.full(6 * 20 + 8, 777, np.int32)
    view = big[: 6 * 20].reshape(6, 20)
    gemm16.gemm(a, gemm16.pack(w), view)
    assert (big[6 * 20:] == 777).all() and (view == a.astype(np.int64) @ w.astype(np.int64)).all()


def test_the_engines_pick_the_int16_kernel_where_it_is_fast_and_keep_even_k_for_it(monkeypatch):
    """matrix_path() names the path; a matrix with an odd K (the int16 pairs need an even one) falls
    back to float32, and COMPBENCH_NO_GEMM16 stands in for a machine without the kernel."""
    monkeypatch.setattr(intops, "_int_mm_available", lambda: False)
    monkeypatch.delenv("COMPBENCH_NO_GEMM16", raising=False)
    monkeypatch.setattr(intops, "_cpu_flags", lambda: {"avx2", "fma"})
    intops._gemm16_available.cache_clear()
    try:
        import platform

        want = "int16" if platform.machine().lower() in ("x86_64", "amd64") else "float"
        assert intops.matrix_path() == want
        even, odd = intops.Int8Matrix(torch.zeros(8, 3, dtype=torch.int8)), intops.Int8Matrix(torch.zeros(7, 3, dtype=torch.int8))
        assert even.path() == want and odd.path() == "float"
        assert intops.gemm_input_dtype(odd) == torch.float32 and intops.acc_dtype(odd) == torch.float32
        if want == "int16":
            assert intops.gemm_input_dtype(even) == torch.int16 and intops.acc_dtype(even) == torch.int32
        monkeypatch.setenv("COMPBENCH_NO_GEMM16", "1")
        intops._gemm16_available.cache_clear()
        assert intops.matrix_path() == "float"
    finally:
        intops._gemm16_available.cache_clear()


@pytest.mark.parametrize("flags", [{"avx2", "avx512_vnni"}, {"avx2", "avx512_vnni", "amx_int8", "amx_tile"}],
                         ids=["vnni", "amx"])
def test_the_transformer_takes_the_int16_kernel_wherever_the_int8_gemm_runs_amx_included(monkeypatch, flags):
    """Its decoder step ran faster on the int16 kernel than on torch._int_mm on a VNNI EPYC and on an
    AMX Xeon (models/transformer.py), so the int8 path never wins there; the GRU's matrices keep it."""
    monkeypatch.setattr(intops, "_int_mm_available", lambda: True)
    monkeypatch.setattr(intops, "_cpu_flags", lambda: flags)
    monkeypatch.delenv("COMPBENCH_NO_GEMM16", raising=False)
    intops._gemm16_available.cache_clear()
    try:
        if not intops._gemm16_available():
            pytest.skip("no int16 kernel on this machine (not x86-64 with AVX2)")
        w = torch.zeros(128, 384, dtype=torch.int8)
        assert transformer._Int16First(w).path() == "int16"
        assert intops.Int8Matrix(w).path() == "int8"
        assert transformer._Int16First(torch.zeros(127, 3, dtype=torch.int8)).path() == "int8"  # odd K
    finally:
        intops._gemm16_available.cache_clear()


def test_tables_are_correctly_rounded_functions():
    xs = torch.arange(2 * intops.LIM * intops.RES + 1, dtype=torch.float64) / intops.RES - intops.LIM
    # float32 tables built from 40-digit decimals: within half a float32 ulp of the true values
    assert torch.allclose(intops.sigmoid_table().double(), torch.sigmoid(xs), atol=3e-8, rtol=0)
    assert torch.allclose(intops.tanh_table().double(), torch.tanh(xs), atol=6e-8, rtol=0)
    e = intops.exp_table()
    assert e[0] == intops.EXP_ONE and e[intops.ERES] == round(intops.EXP_ONE / math.e) and e[-1] >= 2
    x = torch.linspace(-9, 9, 1001, dtype=torch.float32)
    assert (intops.sigmoid(x) - torch.sigmoid(x)).abs().max() < 4e-4  # clamped at |x| = 8
    inner = x.clamp(-3, 3)
    assert (intops.tanh(inner) - torch.tanh(inner)).abs().max() < 1e-3  # nearest of 1/1024 steps


@functools.lru_cache(maxsize=None)
def _decimal_tables():
    """The tables as 40-digit decimal arithmetic defines them, every entry computed in decimal
    (about a second: computed once for the three guard settings below)."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 40
        xs = [Decimal(i) / intops.RES - intops.LIM for i in range(2 * intops.LIM * intops.RES + 1)]
        sig = [float(1 / (1 + (-x).exp())) for x in xs]
        tnh = [float((1 - (-2 * x).exp()) / (1 + (-2 * x).exp())) for x in xs]
        exp = [int((Decimal(-i) / intops.ERES).exp() * intops.EXP_ONE + Decimal("0.5"))
               for i in range(intops.EMAX * intops.ERES + 1)]
    return torch.tensor(sig, dtype=torch.float32), torch.tensor(tnh, dtype=torch.float32), torch.tensor(exp)


@pytest.mark.parametrize("guard", [None, 2.0**-26, 1.0])
def test_tables_equal_their_decimal_definition_entry_for_entry(guard, monkeypatch):
    """The float64-then-decimal-fallback tables equal the all-decimal ones bit for bit: as built
    (no entry near a boundary here), with a guard of 2**-26 (about 40% of the float entries and 20%
    of the exp weights from decimal, the rest from float64), and with every entry from decimal."""
    if guard is not None:
        monkeypatch.setattr(intops, "_GUARD", guard)
    tables = (intops.sigmoid_table, intops.tanh_table, intops.exp_table)
    for t in tables:
        t.cache_clear()
    try:
        got = [t() for t in tables]
        for g, want in zip(got, _decimal_tables()):
            assert g.dtype == want.dtype and torch.equal(g, want)
    finally:
        for t in tables:
            t.cache_clear()  # the next caller rebuilds them with the real guard


def test_probabilities_are_normalized_softmax():
    logits = torch.randn(17, 256, dtype=torch.float64) * 4
    p = intops.probabilities(logits)
    assert torch.allclose(p.sum(-1), torch.ones(17, dtype=torch.float64), atol=1e-12)
    assert (p - torch.softmax(logits, -1)).abs().max() < 1e-3
    assert (p > 0).all()


# -- engines and artifacts -----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_integer_engine_tracks_the_float_model(arch, tiny_models):
    path, res = tiny_models[arch]
    cfg = ARCHS[arch].load().Config(**res["config"])
    model = ARCHS[arch].load().LM(cfg).eval()
    model.load_state_dict(torch.load(path.parent / "checkpoint.pt", weights_only=True)["model"])
    _, engine = load_engine(path.read_bytes())
    text = (b"def tracks(model, engine):\n    return kl(model(x), engine(x)) < 0.01\n" * 3)[:150]
    x = torch.tensor([gru.BOS, *text[:-1]]).repeat(2, 1)  # 150 steps: past the transformer's 64-byte window
    with torch.no_grad():
        ref = torch.log_softmax(model(x)[0].double(), -1)
    state = engine.start(2)
    got = torch.stack([torch.log(intops.probabilities(engine.step(state, x[:, t]))) for t in range(150)], 1)
    kl = (ref.exp() * (ref - got)).sum(-1).mean().item()
    assert kl < 0.01, f"{arch} int8 engine drifts from its float model: KL {kl:.4f} nats"


@pytest.mark.parametrize("route", ["int_mm", "matmul"])
@pytest.mark.parametrize("layers", [1, 2])
def test_compiled_gru_cell_equals_the_torch_ops_bit_for_bit(layers, route, monkeypatch):
    """The GRU's gate math runs in one numba pass; the torch ops it replaces are the reference. Any
    difference in one bit of one state would desynchronise the range coder, so compare exactly, over
    states that saturate the lookup tables (large weights) and sit exactly on rounding ties; on both
    routes of the int8 path (the matmul route's input is q + 128, as uint8, written by the pass)."""
    if route == "matmul" and not _has_matmul_route():
        pytest.skip("no int8 GEMM here, or no oneDNN matmul op in this torch")
    monkeypatch.setattr(intops, "_INT8_ROUTE", route)
    torch.manual_seed(layers)
    cfg = gru.GRUConfig(hidden=40, layers=layers, embed=16)
    model = gru.GRULM(cfg)
    with torch.no_grad():
        for prm in model.parameters():
            prm.mul_(6.0)  # pre-activations well past the tables' +-8, and |h| near 1
    fused, ref = gru.IntGRU(cfg, gru.export(model)), gru.IntGRU(cfg, gru.export(model))
    ref.fused = False
    tokens = torch.randint(0, 256, (9, 120))
    with torch.inference_mode():
        sf, sr = fused.start(9), ref.start(9)
        sf[0][0, :8] = sr[0][0, :8] = torch.tensor([0.5, -0.5, 1.5, -1.5, 2.5, 126.5, -126.5, 0.0]) / 127
        inp = torch.full((9,), gru.BOS)
        for t in range(120):
            assert torch.equal(fused.step(sf, inp), ref.step(sr, inp)), f"logits differ at step {t}"
            assert all(torch.equal(a, b) for a, b in zip(sf, sr)), f"state differs at step {t}"
            inp = tokens[:, t]
    if _has_matmul_route():
        assert sf[layers].dtype == (torch.uint8 if route == "matmul" else torch.int8)  # the route really ran


def _compiled_gru_cell(hq_dtype=np.int8):
    h, f32 = np.zeros((2, 3), np.float32), np.zeros((2, 9), np.float32)
    off = np.float32(128.0 if hq_dtype == np.uint8 else 0.0)
    return gru._cell, (f32, np.zeros(2, np.int64), f32, f32[0], f32[0], h, np.zeros(5, np.float32),
                       np.zeros(5, np.float32), np.zeros((2, 3), hq_dtype), off)


def _compiled_gru_cell_float_output():
    return _compiled_gru_cell(np.float32)


def _compiled_gru_cell_u8_output():
    return _compiled_gru_cell(np.uint8)


def _compiled_exp_weights():
    acc = np.zeros((2, 4), np.float32)
    return intops._exp_weights_rows, (acc, acc[0], acc[0], np.ones(9, np.int64), np.zeros((2, 4), np.int64))


def _compiled_transformer_scale():
    acc = np.zeros((2, 4), np.float32)
    return transformer._scale_rows, (acc, np.ones((2, 1)), np.ones(4), True, np.zeros((2, 4)))


def _compiled_attention():
    B, H, c, dh = 2, 2, 4, 3  # keys: dimensions in pairs, slots padded to a block; values: slots in pairs
    return transformer._attend_quantize, (
        np.zeros((B, H, 2, 32, 2), np.int8), np.zeros((B, H, c), np.float32), np.zeros((B, H, 2, dh, 2), np.int16),
        np.zeros((B, H, c), np.bool_), np.zeros((B, H, c, dh), np.int32),
        np.zeros((B, H, dh), np.int8), np.zeros((B, H), np.float32), np.zeros((H, c), np.float32),
        np.ones(5, np.int32), np.zeros((B, H * dh), np.float32), np.zeros((B, 1)))


def _compiled_qkv_to_cache():
    B, H, c, dh = 2, 2, 4, 3
    return transformer._qkv_to_cache, (
        np.zeros((B, 3 * H * dh), np.int32), np.ones((B, 1)), np.ones(3 * H * dh), np.float32(0.5), 1,
        np.zeros((B, H, dh), np.int8), np.zeros((B, H), np.float32), np.zeros((B, H, 2, 32, 2), np.int8),
        np.zeros((B, H, c), np.float32), np.zeros((B, H, 2, dh, 2), np.int16), np.zeros((B, H, c), np.bool_),
        np.zeros((B, H, c, dh), np.int32))


def _compiled_residual_add():
    x = np.zeros((2, 4), np.int64)
    return transformer._add_scaled_rms, (x, np.zeros((2, 4), np.float32), np.ones((2, 1)), np.ones(4), 1e-6,
                                         np.zeros((2, 4), np.int8), np.zeros((2, 1)))


def _compiled_mlp_hidden():
    return transformer._relu_sq_quantize, (np.zeros((2, 6), np.int32), np.ones((2, 1)), np.ones(6),
                                           np.zeros((2, 6), np.float32), np.zeros((2, 1)))


def _compiled_embedding():
    return transformer._embed_rms, (np.zeros(2, np.int64), np.zeros((3, 4), np.int8), np.ones(3), 1e-6,
                                    np.zeros((2, 4), np.int64), np.zeros((2, 4), np.int8), np.zeros((2, 1)))


def _compiled_quantize_rows():
    return intops._quantize_rows, (np.ones((2, 4)), np.zeros((2, 4), np.int8), np.zeros((2, 1)))


def _compiled_rms_quantize():
    return transformer._rms_quantize, (np.ones((2, 4), np.int64), 4.0, 1e-6, np.zeros((2, 4), np.int8),
                                       np.zeros((2, 1)))


EMULATED_ASM = r"""
import numpy as np
from numba import njit
@njit
def dot(a, b):
    s = np.float32(0.0)
    for i in range(a.size):
        s += a[i] * b[i]
    return s
x = np.ones(4096, np.float32)
dot(x, x)
print("\n".join(dot.inspect_asm().values()).lower())
"""


def test_the_avx2_emulation_keeps_avx512_out_of_numba_code():
    """The speed benchmark's --emulate-avx2 stands in for an AVX2-only machine. NUMBA_CPU_NAME alone
    once let numba emit AVX-512 code on an AVX-512 host (it takes the host's features unless told
    them): compiled under the emulation's environment, a vectorisable loop uses 256-bit registers
    and no 512-bit ones, whatever this host has."""
    env = speed_bench().avx2_env()
    assert env["COMPBENCH_NO_INT_MM"] == "1" and "+avx2" in env["NUMBA_CPU_FEATURES"].split(",")
    assert not [f for f in env["NUMBA_CPU_FEATURES"].split(",") if f.startswith("+avx512")]
    res = subprocess.run([sys.executable, "-c", EMULATED_ASM], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ymm" in res.stdout and "zmm" not in res.stdout


def test_the_pipeline_timers_see_every_part_of_a_two_group_decode(tiny_models, tmp_path):
    """benchmarks/pipeline_timers.py wraps the engine's parts by name (the mixer's step, the range
    decoder, the helper's tasks, the matmuls, the GRU's gates). On a two-group decode of a tiny GRU
    each wrapper must have fired: a renamed part would otherwise drop out of the report silently.
    Each thread's part is also timed alone (the coding thread's replay decodes the same bytes, or
    the script fails), and the hand-offs are stamped."""
    path, _ = tiny_models["gru"]
    out = tmp_path / "timers.json"
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline_timers.py"
    res = subprocess.run([sys.executable, str(bench), "--coder", f"gru:model='{path}':streams=64:min_segment=100",
                          "--corpus", "pystdlib", "--bytes", "20000", "--repeat", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})  # two groups overlap only with 2 threads
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(out.read_text())
    assert row["bytes"] == 20000 and row["decode_s"] > 0
    assert 0 < row["range_decoder"] < row["mixing_and_decoding"] < row["decode_s"]
    assert row["gru_gates"] > 0 and row["helper_tasks"] > 0
    assert row.get("helper_matmuls", 0) + row.get("coding_thread_matmuls", 0) > 0
    assert 0 < row["mixing_and_decoding_cpu"] and 0 < row["helper_tasks_cpu"]  # each thread's own CPU time
    assert row["matrix_path"] == intops.matrix_path()
    # each process times its own choice, so only its kind is checked
    assert (row["int8_route"] in intops.INT8_ROUTES) if row["matrix_path"] == "int8" else row["int8_route"] is None
    assert row["plain_decode_s"] > 0 and row["phases"] == 2 * 313  # 20000 bytes: 64 streams of 313, two groups
    assert 0 < row["coding_alone"] < row["plain_decode_s"] + row["decode_s"]
    # the helper runs whole group steps where the int8 GEMM runs; elsewhere it runs part of one
    assert (row["helper_alone"] > 0) if row["matrix_path"] == "int8" else row["helper_alone"] is None
    assert row["helper_start_us"] > 0 and (row["coding_thread_wake_us"] is None or row["coding_thread_wake_us"] > 0)



def test_the_pipeline_timers_refuse_a_repeat_below_one_with_a_one_line_error(tmp_path):
    """--repeat 0 would leave no decode to report: refused by argparse before anything loads, with
    a one-line error and no JSON written."""
    out = tmp_path / "timers.json"
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline_timers.py"
    res = subprocess.run([sys.executable, str(bench), "--repeat", "0", "--out", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--repeat must be at least 1" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_the_core_probes_report_every_probe_and_compile_the_hot_loops_for_this_cpu_and_an_intel_one(tmp_path):
    """benchmarks/core_probes.py, at a tiny scale: every probe reports a positive figure, and the
    coders' hot loops (the GRU's gate pass and softmax weights, the mixer's four passes) compiled
    for this CPU and, in a child process, for a Sapphire Rapids Xeon (so the gathers question has an
    answer, True or False, for every loop on each). A CPU name LLVM does not know gets no answer
    (None), not a misleading False."""
    out = tmp_path / "probes.json"
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "core_probes.py"
    res = subprocess.run([sys.executable, str(bench), "--scale", "0.001", "--out", str(out),
                          "--targets", "sapphirerapids,not-a-cpu"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(out.read_text())
    for key in ("python_adds_s", "numba_chain_s", "constriction_s", "random_load_ns", "table_lookup_ns",
                "two_threads_chain_ratio", "two_threads_load_ratio"):
        assert row[key] > 0, key
    loops = {"gru_gates", "softmax_weights", "mixer_begin", "mixer_predict", "mixer_learn", "mixer_end_byte"}
    by_target = row["gathers_by_target"]
    for answer in (row["gathers"], by_target["sapphirerapids"]):
        assert set(answer) == loops and all(isinstance(v, bool) for v in answer.values())
    assert by_target["not-a-cpu"] is None
    assert row["numba"] and row["llvm"].count(".") == 2
    routes = row["int8_route_us"]  # per GRU step through each int8 route, where the int8 GEMM runs
    assert routes is None or (set(routes) == {"int_mm", "matmul"} and min(routes.values()) > 0)
    if _has_matmul_route():
        assert routes is not None

KERNELS = {"gru_cell": _compiled_gru_cell, "gru_cell_f32": _compiled_gru_cell_float_output,
           "gru_cell_u8": _compiled_gru_cell_u8_output,
           "exp_weights": _compiled_exp_weights, "transformer_scale": _compiled_transformer_scale,
           "attention": _compiled_attention, "qkv_to_cache": _compiled_qkv_to_cache,
           "residual_add": _compiled_residual_add, "mlp_hidden": _compiled_mlp_hidden,
           "embedding": _compiled_embedding, "quantize_rows": _compiled_quantize_rows,
           "rms_quantize": _compiled_rms_quantize}


@pytest.mark.parametrize("kernel", list(KERNELS.values()), ids=list(KERNELS))
def test_compiled_kernels_have_no_fused_multiply_add(kernel):
    """An FMA rounds once where the reference rounds twice: a machine that contracted would code
    different probabilities. numba compiles without fast-math; read the machine code to be sure
    (compiled afresh, with the same flags, since numba shows no listing for cached code)."""
    from numba import njit

    fn, args = kernel()
    fresh = njit(nogil=True)(fn.py_func)
    fresh(*args)
    asm = "\n".join(fresh.inspect_asm().values()).lower()
    assert any(op in asm for op in ("mulss", "mulps", "mulsd", "mulpd"))  # the multiplies are there: the kernel's listing
    assert not any(op in asm for op in ("vfmadd", "vfmsub", "vfnmadd", "vfnmsub")), f"{fn.__name__} uses FMA"


def test_compiled_transformer_linears_equal_the_torch_ops_bit_for_bit(tiny_models):
    """The transformer's quantize, RMSNorm and scale passes are compiled; the torch ops they replace
    are the reference. Compare exactly on rows that sit on rounding ties, all-zero rows, rows of one
    huge value, and the MLP's ReLU^2 and the residual's fixed-point add."""
    path, _ = tiny_models["transformer"]
    _, engine = load_engine(path.read_bytes())
    w = engine.blocks[0]
    g = torch.Generator().manual_seed(3)
    d = engine.cfg.d_model
    x_int = torch.randint(-(1 << 20), 1 << 20, (40, d), generator=g)
    x_int[0] = 0
    x_int[1, :] = 0
    x_int[1, 5] = (1 << 31) - 1
    x_int[2] = torch.arange(d) * 127 - 64 * 127  # multiples of the max / 127: q lands on .5 ties
    # x = max / 2: (x * 127) / max is exactly 63.5, but for these maxima x * (127 / max) is not, so a
    # kernel that multiplied by the rounded reciprocal (or a reference that did not) rounds the other way.
    ties = torch.tensor([26, 46, 52, 54, 90, 92, 94, 104, 108, 114, 122, 158, 174, 180, 184, 186])
    x_int[3:19] = 0
    x_int[3:19, 0], x_int[3:19, 1], x_int[3:19, 2] = ties, ties // 2, -(ties // 2)
    x_f = torch.randn(40, 4 * d, generator=g, dtype=torch.float64) * 3
    x_f[0] = 0.0
    x_f[1] = torch.arange(4 * d, dtype=torch.float64) - 2 * d + 0.5
    x_f[3:19] = 0.0
    x_f[3:19, 0], x_f[3:19, 1], x_f[3:19, 2] = ties.double(), ties.double() / 2, -ties.double() / 2  # as above
    got = engine._normed_linear(x_int, w["qkv"])
    assert torch.equal(got, engine._normed_linear_reference(x_int, w["qkv"]))
    hid = engine._normed_linear_reference(x_int, w["fc1"]).clamp_min(0.0)
    assert torch.equal(engine._normed_linear(x_int, w["fc1"], relu_sq=True), hid * hid)
    assert torch.equal(engine._linear(x_f, w["fc2"]), engine._linear_reference(x_f, w["fc2"]))
    for a, b in zip(intops.quantize_rows(x_f.view(40, 4, d)), intops.quantize_rows_reference(x_f.view(40, 4, d))):
        assert torch.equal(a, b)
    o = x_f[:, :d] * 1e-3
    assert torch.equal(transformer._add_fixed(x_int, o), x_int + torch.round(o * float(1 << 16)).to(torch.int64))


@pytest.mark.parametrize("block", [1, 7, 64, 200])
def test_transformer_block_logits_equal_the_step_engine_bit_for_bit(tiny_models, block):
    """The encoder scores many positions at once; the decoder steps. Any difference in one bit of one
    logit would desynchronise the range coder, so compare exactly, past the 64-byte window."""
    path, _ = tiny_models["transformer"]
    _, engine = load_engine(path.read_bytes())
    g = torch.Generator().manual_seed(block)
    tokens = torch.randint(0, 256, (3, 150), generator=g)
    tokens[:, 0] = gru.BOS
    tokens[1, 20:90] = ord("a")  # a long run: a peaked attention row, so the exp table's ends are exercised
    with torch.inference_mode():
        blocks = torch.cat(list(engine.logits_blocks(tokens, block)), dim=1)
        state = engine.start(3)
        steps = torch.stack([engine.step(state, tokens[:, t]) for t in range(150)], 1)
    assert blocks.shape == steps.shape == (3, 150, 256)
    assert torch.equal(blocks, steps)


@pytest.mark.parametrize("window", [16, 21, 40])
def test_transformer_window_codes_exactly_as_the_model_with_that_context(tiny_models, window):
    """``window=W`` is the trained model with ctx W, bit for bit: its compiled step (ring of W slots)
    equals the torch block reference of an engine built with ctx = W, well past the window. An odd
    W leaves the value cache's last slot pair half empty."""
    path, _ = tiny_models["transformer"]
    header, tensors = artifact.unpack(path.read_bytes())
    _, engine = load_engine(path.read_bytes())
    windowed = engine.for_coding(window)
    assert (windowed.ctx, engine.ctx) == (window, engine.cfg.ctx) and windowed.blocks is engine.blocks
    built = transformer.IntTransformer(dataclasses.replace(engine.cfg, ctx=window), tensors)
    g = torch.Generator().manual_seed(window)
    tokens = torch.randint(0, 256, (9, 130), generator=g)
    tokens[:, 0] = gru.BOS
    tokens[2, 10:60] = ord("e")
    with torch.inference_mode():
        ref = torch.cat(list(built.logits_blocks(tokens, 32)), dim=1)
        state = windowed.start(9)
        steps = torch.stack([windowed.step(state, tokens[:, t]) for t in range(130)], 1)
        full = torch.cat(list(engine.logits_blocks(tokens, 32)), dim=1)
    assert torch.equal(steps, ref)
    assert torch.equal(steps[:, :window], full[:, :window])  # the same model until the window fills
    assert not torch.equal(steps, full)


def test_the_attention_value_sums_are_exact_at_the_extremes():
    """The attention's paired value sums (int16 values, weights of up to 2**16 split in two int16
    halves, int32 blocks widened to int64) equal int64 arithmetic with every weight at its largest
    and every value at either end of int16, over a 4096-slot window (the longest ctx), for head
    widths that take the 32-lane pass, the 8-lane pass and both, and with weights of 0 anywhere."""
    from compbench.models import gemm16

    rng = np.random.default_rng(11)
    for slots, dh in [(4096, 32), (4096, 8), (258, 40), (2, 16), (130, 64)]:
        for values, w in [
            (np.full((slots, dh), -32768), np.full(slots, 1 << 16)),
            (np.full((slots, dh), 32767), np.full(slots, 1 << 16)),
            (rng.integers(-32768, 32768, (slots, dh)), rng.integers(0, (1 << 16) + 1, slots)),
            # zero weights (skipped, with their values unread) at the ends, in runs and alone
            (rng.integers(-32768, 32768, (slots, dh)), rng.integers(0, (1 << 16) + 1, slots)
             * (rng.random(slots) < 0.7) * (np.arange(slots) % 37 > 5)),
        ]:
            paired = np.ascontiguousarray(values.astype(np.int16).reshape(slots // 2, 2, dh).transpose(0, 2, 1))
            lo, hi = (w & 255).astype(np.int16), (w >> 8).astype(np.int16)
            out = np.empty(dh, np.int64)
            gemm16.weighted_pair_sums(paired, lo, hi, np.empty(2 * dh, np.int32), out)
            assert np.array_equal(out, (w[:, None].astype(np.int64) * values).sum(0)), (slots, dh)


def test_the_attention_scores_are_exact_at_the_extremes():
    """The paired key scores (int8 keys two dimensions at a time, int16 query pairs, int32 sums)
    equal int64 arithmetic with every key and query at -127 or 127, for long heads and many slots."""
    from compbench.models import gemm16

    rng = np.random.default_rng(12)
    for dh, slots in [(2048, 64), (2, 32), (64, 4096)]:
        for keys, q in [
            (np.full((dh, slots), -127), np.full(dh, -127)),
            (np.full((dh, slots), 127), np.full(dh, -127)),
            (rng.integers(-127, 128, (dh, slots)), rng.integers(-127, 128, dh)),
        ]:
            paired = np.ascontiguousarray(keys.astype(np.int8).reshape(dh // 2, 2, slots).transpose(0, 2, 1))
            out = np.empty(slots, np.int32)
            gemm16.key_pair_scores(paired, q.astype(np.int16), out)
            assert np.array_equal(out, (keys.astype(np.int64) * q[:, None]).sum(0)), (dh, slots)


def _spread_transformer(cfg, seed, token_seed):
    """A random transformer with spread-out attention, its integer engine, and 10 streams of 70
    random tokens that start at BOS."""
    torch.manual_seed(seed)
    with torch.no_grad():
        lm = transformer.TransformerLM(cfg)
        for p in lm.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        engine = transformer.IntTransformer(cfg, transformer.export(lm))
    tokens = torch.randint(0, 256, (10, 70), generator=torch.Generator().manual_seed(token_seed))
    tokens[:, 0] = gru.BOS
    return lm, engine, tokens


@pytest.mark.parametrize("heads", [2, 8])
def test_a_transformer_whose_head_width_the_paired_sums_cannot_take_steps_as_its_reference(heads):
    """Head widths that are not a multiple of 8 (12; and 3, odd, whose keys are padded to a pair)
    take the attention's float64 value loop; the compiled step must still equal the torch block
    reference bit for bit, in an odd window too."""
    cfg = transformer.TransformerConfig(d_model=24, layers=2, heads=heads, ctx=48)
    lm, engine, tokens = _spread_transformer(cfg, seed=5, token_seed=3)
    for eng in (engine, engine.for_coding(17)):
        built = transformer.IntTransformer(dataclasses.replace(cfg, ctx=eng.ctx), transformer.export(lm))
        with torch.inference_mode():
            ref = torch.cat(list(built.logits_blocks(tokens, 32)), dim=1)
            state = eng.start(10)
            steps = torch.stack([eng.step(state, tokens[:, t]) for t in range(70)], 1)
        assert torch.equal(steps, ref)


def test_a_transformer_run_in_one_compiled_call_steps_as_its_reference(monkeypatch):
    """Where every matrix takes the int16 kernel (an AVX2 machine without an int8 GEMM), a run of
    streams goes through every block in one compiled call (``_run_int16``): it must give the torch
    block reference's logits bit for bit, in one run, in two (a mixed run's shared steps), and in a
    window shorter than the trained context. With one matrix off the int16 path, the engine steps
    kernel by kernel instead."""
    monkeypatch.setattr(intops, "matrix_path", lambda: "int16")
    cfg = transformer.TransformerConfig(d_model=32, layers=2, heads=4, ctx=48)
    lm, engine, tokens = _spread_transformer(cfg, seed=7, token_seed=4)
    assert engine._int16_weights() is not None
    for eng in (engine, engine.for_coding(17)):
        built = transformer.IntTransformer(dataclasses.replace(cfg, ctx=eng.ctx), transformer.export(lm))
        with torch.inference_mode():
            ref = torch.cat(list(built.logits_blocks(tokens, 32)), dim=1)
            for shared in (False, True):
                state = eng.start(10, shared=shared)
                steps = torch.stack([eng.step(state, tokens[:, t]) for t in range(70)], 1)
                assert torch.equal(steps, ref), (eng.ctx, shared)
    engine.blocks[1]["fc2"][0].path = lambda: "float"  # one matrix elsewhere (an odd K): no fused run
    engine._int16 = None
    assert engine._int16_weights() is None


def test_transformer_window_option_is_a_format_option_checked_and_capped_at_ctx(tiny_models):
    path, _ = tiny_models["transformer"]
    data = (b"the window option: how far back the transformer attends. " * 30)[:1500]
    digests = {w: make("transformer", path, streams=2, window=w).probability_digest(data) for w in (16, 64, 4096)}
    assert digests[64] == digests[4096] != digests[16]  # the tiny model's ctx is 64
    coder = make("transformer", path, streams=2, window=16)
    assert coder.header_spec.endswith("window=16")  # in the payload header: the decoder must use it
    assert decode_payload(coder.encode(data), coder.artifact()) == data
    with pytest.raises(registry.SpecError, match=r"window=8 is out of range \[16, 4096\]"):
        registry.make_coder("transformer:window=8")
    with pytest.raises(registry.SpecError, match="unknown option"):
        registry.make_coder("gru:window=256")


@pytest.mark.parametrize("mix", [0, 1])
@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_match_model_codes_a_repeat_beyond_the_window_almost_free(tiny_models, arch, mix):
    """1,500 random bytes, then the same again: the LM cannot predict either copy (its window is 64
    bytes), the match model (per stream, or the mixer's shared one) predicts the second. The payload
    must still decode exactly."""
    path, _ = tiny_models[arch]
    rng = np.random.default_rng(3)
    block = rng.integers(0, 256, 1500, dtype=np.uint8).tobytes()
    data = block + block
    with_match, without = make(arch, path, streams=1, mix=mix), make(arch, path, streams=1, match=0, mix=0)
    bits_on, bits_off = with_match.model_bits(data), without.model_bits(data)
    assert bits_off > 7.0 * len(data)  # random bytes: the LM alone learns nothing
    assert bits_on < 0.6 * bits_off, (bits_on, bits_off)
    payload = with_match.encode(data)
    assert decode_payload(payload, with_match.artifact()) == data
    assert len(payload) * 8 < 1.1 * bits_on + 800


def test_training_rejects_a_dropout_outside_0_to_1(tmp_path):
    with pytest.raises(CompbenchError, match="dropout must be in"):
        train(TrainConfig(model="gru", corpus="pystdlib", steps=1, out=str(tmp_path), dropout=1.0), say=lambda *a, **k: None)


def test_match_option_is_checked():
    with pytest.raises(registry.SpecError, match="match=1"):
        registry.make_coder("gru:match=1")
    assert registry.make_coder("gru:match=0").options.match == 0


@pytest.mark.parametrize("mix", [0, 1])
def test_transformer_block_and_step_paths_give_the_same_probabilities(tiny_models, monkeypatch, mix):
    """The coder steps in both directions; the block path (torch ops, many positions at once) is its
    reference: through the whole coder, with the match model or the mixer, the two must agree."""
    path, _ = tiny_models["transformer"]
    coder = make("transformer", path, streams=3, min_segment=100, mix=mix)
    data = (b"block path == step path; " * 40)[:700] + bytes(range(0, 256, 3))
    stepped = coder.probability_digest(data)
    monkeypatch.setattr(transformer.IntTransformer, "encode_in_blocks", True)
    assert coder.probability_digest(data) == stepped == coder.probability_digest(data, stepwise=True)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_transformer_step_split_over_threads_equals_the_block_reference_bit_for_bit(tiny_models, threads):
    """The decoder step splits its streams into one run per thread, each run on its own thread; with
    values scaled past int16, the KV cache's wide rows (int32) are read as well. Every logit of every
    step must equal the torch block reference's, whatever the split."""
    path, _ = tiny_models["transformer"]
    _, engine = load_engine(path.read_bytes())
    g = torch.Generator().manual_seed(threads)
    B, n, d = 26, 90, engine.cfg.d_model
    tokens = torch.randint(0, 256, (B, n), generator=g)
    tokens[:, 0] = gru.BOS
    # Scale some layer-0 value columns up 4000x (in place: the step's numpy views share the memory)
    # so that some fixed-point values pass int16 and take the wide path.
    engine.blocks[0]["qkv"][1][2 * d : 2 * d + d // 2] *= 4000.0
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        state = engine.start(B)
        assert len(state["runs"]) == min(threads, B // 8)
        with torch.inference_mode():
            ref = torch.cat(list(engine.logits_blocks(tokens, 32)), dim=1)
            for t in range(n):
                assert torch.equal(engine.step(state, tokens[:, t]), ref[:, t]), f"step {t}"
    finally:
        torch.set_num_threads(prev)
    assert state["vwide"][0].any() and not state["vwide"][0].all()  # both value paths were read


def test_artifact_config_claiming_more_than_its_tensors_is_refused_before_building_anything(tiny_models):
    blob = tiny_models["gru"][0].read_bytes()
    header, tensors = artifact.unpack(blob)
    huge = artifact.pack("gru", {**header["config"], "hidden": 4096, "layers": 8}, tensors)
    with pytest.raises(artifact.ArtifactError, match="claims more parameters than it holds"):
        load_engine(huge)


def test_loading_a_model_leaves_torch_s_generator_alone_and_does_not_import_dynamo(tiny_models):
    """The loader builds the config's model to learn its tensor shapes: on the CPU (the meta device's
    initialisers import torch._dynamo, 1.5 s of every decoder's start-up), with torch's random state
    restored afterwards (decoding must not change a caller's random stream)."""
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_engine(tiny_models["transformer"][0].read_bytes())
    assert torch.equal(torch.rand(3), expected)
    code = ("import sys; from compbench.models.artifact import load_engine; "
            f"load_engine(open({str(tiny_models['gru'][0])!r}, 'rb').read()); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_shape_check_builds_the_same_shapes_on_the_cpu_and_on_the_meta_device(tiny_models, monkeypatch, arch):
    """Models too large to build for real (artifact.CPU_BUILD_PARAMS) are built on the meta device."""
    header, tensors = artifact.unpack(tiny_models[arch][0].read_bytes())
    cfg = artifact.make_config(arch, header["config"])
    on_cpu = artifact.expected_shapes(arch, cfg, limit=1 << 30)
    monkeypatch.setattr(artifact, "CPU_BUILD_PARAMS", 0)
    assert artifact.expected_shapes(arch, cfg, limit=1 << 30) == on_cpu
    assert on_cpu == {k: (str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in tensors.items()}


def test_artifact_rejects_corruption_and_other_engines(tiny_models):
    blob = tiny_models["gru"][0].read_bytes()
    header, tensors = artifact.unpack(blob)
    assert header["arch"] == "gru" and tensors["table"].dtype == torch.int8
    assert artifact.code_bytes(header) > 0  # the decoder code is inside, and counted
    with pytest.raises(artifact.ArtifactError, match="magic"):
        load_engine(b"PK\x03\x04" + blob[4:])
    with pytest.raises(artifact.ArtifactError):
        load_engine(blob[:-40])
    with pytest.raises(artifact.ArtifactError, match="format version"):
        load_engine(blob[:4] + b"\x09" + blob[5:])
    bad_shape = artifact.pack("gru", {"hidden": 48, "layers": 1, "embed": 256}, {**tensors, "b_out": tensors["b_out"][:10]})
    with pytest.raises(artifact.ArtifactError, match="do not match"):
        load_engine(bad_shape)
    old_engine = artifact.ENGINE_VERSION
    try:
        artifact.ENGINE_VERSION = old_engine + 1
        with pytest.raises(artifact.ArtifactError, match="engine"):
            load_engine(blob)
    finally:
        artifact.ENGINE_VERSION = old_engine


# -- coding --------------------------------------------------------------------------------------


def test_layout_covers_input_with_no_empty_stream():
    for n in [1, 100, 4095, 4096, 4097, 10**6, 1234567]:
        for streams, seg in [(256, 4096), (64, 4096), (7, 1), (1, 4096)]:
            b, s = layout(n, streams, seg)
            assert 1 <= b <= streams and (b - 1) * s < n <= b * s


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_round_trip_and_model_bits(tiny_models, arch):
    path, _ = tiny_models[arch]
    coder = make(arch, path, min_segment=300, streams=8)
    data = (b"def round_trip(data):\n    return decode(encode(data))\n" * 60)[:3001] + bytes(range(256))
    payload = coder.encode(data)
    decoder = type(coder).from_artifact(path.read_bytes(), **coder.options_dict())
    assert decoder.decode(payload) == data
    bits = coder.model_bits(data)
    body_bits = 8 * (len(payload) - read_header(payload).header_bytes)
    # the range coder costs a few bytes over the model's own cross-entropy, never less
    assert bits <= body_bits <= bits + 8 * 64
    for tiny in [b"", b"x", b"\x00\xff"]:
        assert decoder.decode(coder.encode(tiny)) == tiny


@pytest.mark.parametrize("mix,limit", [(0, 0.001), (1, 0.002)])
def test_coding_overhead_is_tiny_on_a_larger_input(tiny_models, mix, limit):
    """Payload bits over model bits. mix=1 codes 8 binary decisions per byte, each through
    constriction's Bernoulli quantizer: measured 0.15% here, against under 0.1% for mix=0."""
    path, _ = tiny_models["gru"]
    coder = make("gru", path, mix=mix)
    data = open(np.__file__.replace("__init__.py", "_core/_add_newdocs.py"), "rb").read()[:120_000]
    payload = coder.encode(data)
    body_bits = 8 * (len(payload) - read_header(payload).header_bytes)  # the spec holds a temp path
    overhead = (body_bits - coder.model_bits(data)) / coder.model_bits(data)
    assert 0 <= overhead < limit


def test_corrupted_body_and_wrong_artifact_are_clear_errors(tiny_models):
    gru_path, _ = tiny_models["gru"]
    coder = make("gru", gru_path)
    payload = coder.encode(b"hello neural world " * 50)
    with pytest.raises(PayloadError):
        decode_payload(payload[:-3], gru_path.read_bytes())
    with pytest.raises(ArtifactError):
        decode_payload(payload, tiny_models["transformer"][0].read_bytes())


def test_missing_model_names_the_shipped_ones():
    with pytest.raises(CompbenchError, match="no model 'nope'.*shipped"):
        registry.make_coder("gru:model=nope").artifact()


# -- training ------------------------------------------------------------------------------------


def test_parse_size_units():
    assert parse_size("1MB") == 1_000_000 and parse_size("16MB") == 16_000_000
    assert parse_size("512KiB") == 524_288 and parse_size("1234") == 1234
    with pytest.raises(CompbenchError):
        parse_size("lots")


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_fit_to_budget_picks_the_largest_model_that_fits(arch):
    cfg = fit_to_budget(arch, 1_000_000, {})
    assert artifact_bound(arch, cfg) <= 1_000_000
    key = "hidden" if arch == "gru" else "d_model"
    bigger = dataclasses.replace(cfg, **{key: getattr(cfg, key) + (8 if arch == "gru" else 16)})
    assert artifact_bound(arch, bigger) > 1_000_000
    # the bound is a bound: an artifact with (incompressible) random weights still fits
    model = ARCHS[arch].load().LM(cfg)
    tensors = {k: (torch.randint(-127, 128, v.shape, dtype=torch.int8) if v.dtype == torch.int8 else v)
               for k, v in ARCHS[arch].load().export(model).items()}
    assert len(artifact.pack(arch, dataclasses.asdict(cfg), tensors)) <= 1_000_000


def test_tiny_training_learns_and_reports(tiny_models):
    for arch, (path, res) in tiny_models.items():
        assert res["artifact_bytes"] == path.stat().st_size
        assert res["val_bpb_int8"] < 7.0, f"{arch} did not learn anything in 40 steps"
        assert abs(res["val_bpb_int8"] - res["val_bpb_float"]) < 0.25
        assert res["train_bytes_per_s"] > 0
        # throughput against the matrix peak of the precision trained in, measured in the same run
        assert res["peak_dtype"] in ("bf16", "fp32") and res["peak_flops_per_s"] > 0
        assert res["train_flops_per_s"] == pytest.approx(res["train_matmul_flops_per_byte"] * res["train_bytes_per_s"],
                                                         rel=0.01)
        assert res["peak_fraction"] == pytest.approx(res["train_flops_per_s"] / res["peak_flops_per_s"], rel=1e-3)
        assert res["dropout"] == 0.1 and res["weight_decay"] == 0.1  # the training defaults, recorded
        # which device trained it (no GPU here): the CPU, its threads and the precision
        assert res["gpu"] is None and res["device"].startswith("CPU: ") and res["device"].endswith(res["precision"])
        assert f"{res['threads']} thread" in res["device"]


def test_training_flops_count_every_matrix_product_once():
    """6 FLOPs per matrix weight per byte (forward and backward), none for embedding lookups, plus
    attention's two T x T products for the transformer: checked against the shapes by hand."""
    from compbench.models import peak

    g = ARCHS["gru"].load().LM(ARCHS["gru"].load().Config(hidden=16, layers=1, embed=8))
    # weight_ih [48, 8], weight_hh [48, 16], out [256, 16]; emb [257, 8] is a lookup
    assert peak.matmul_flops_per_byte(g, seq=100) == 6 * (48 * 8 + 48 * 16 + 256 * 16)
    tcfg = ARCHS["transformer"].load().Config(d_model=16, layers=2, heads=2, ctx=32, mlp_mult=4)
    t = ARCHS["transformer"].load().LM(tcfg)
    per_layer = 3 * 16 * 16 + 16 * 16 + 2 * 64 * 16
    assert peak.matmul_flops_per_byte(t, seq=32) == 6 * (2 * per_layer + 256 * 16) + 12 * 2 * 16 * 32


def test_a_peak_sample_spans_many_short_products_and_reports_time_per_product():
    """On a GPU one product is shorter than its launch: a sample must repeat it between two clock
    reads and divide, or the peak measures the launch (an H100 once read 67 TFLOP/s, not ~800)."""
    from compbench.models import peak

    calls = []
    per_call = peak._timed(lambda: (calls.append(1), time.sleep(0.002)), "cpu", reps=5)
    assert len(calls) == 5 and 0.002 <= per_call < 0.05
    ops = peak.gemm_peak("fp32", "cpu", n=256, repeat=2)
    assert 1e8 < ops < 1e15  # a real fp32 rate: above 0.1 GFLOP/s, below any CPU's peak


def test_the_int8_kernel_report_names_each_products_own_onednn_kernel():
    """The speed benchmark records which oneDNN kernel ran each product (torch._int_mm's gemm API,
    the int8 matmul primitive, bf16), so an AMX machine's figures say whether the tiles did the work.
    Reorders (weight packing) are not the product; each product's first kernel is its own."""
    from compbench.models import peak

    out = "\n".join([
        "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer support",
        "onednn_verbose,v1,primitive,exec,cpu,gemm_api,,undef,src_s8::blocked:ab:f0 wei_s8::blocked:ab:f0 dst_s32::blocked:ab:f0,,,64x64:64x64,0.1",
        "COMPBENCH int8-matmul",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,simple:any,undef,src:s8::blocked:ba::f0 dst:s8::blocked:BA16a64b4a::f8:zpm2,,,64x64,0.2",
        "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx,undef,src:u8:a:blocked:ab::f0 wei:s8,,,64x64:64x64,0.3",
        "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx,undef,src:u8:a:blocked:ab::f0 wei:s8,,,64x64:64x64,0.3",
        "COMPBENCH bf16",
        "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx_fp16,undef,src:bf16,,,64x64:64x64,0.1",
    ])
    assert peak.parse_onednn_verbose(out) == {
        "isa": "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer support",
        "int8": "gemm_api", "int8-matmul": "matmul:brg_matmul:avx512_core_amx",
        "bf16": "matmul:brg_matmul:avx512_core_amx_fp16"}
    assert peak.parse_onednn_verbose("") == {}


def test_the_int8_matmul_primitive_peak_is_refused_off_the_cpu():
    """oneDNN's int8 matmul primitive runs on the CPU only: asked for another device, the peak must
    say so rather than time a CPU product and report it as that device's."""
    from compbench.models import peak

    with pytest.raises(ValueError, match="CPU"):
        peak.gemm_peak("int8-matmul", "cuda")


def test_the_memory_roof_counts_the_bytes_the_transformer_cache_reads_per_byte():
    """The speed benchmark's memory roof divides a measured read bandwidth by the key/value bytes a
    decoder step reads per stream; the count must be what the engine's cache actually holds."""
    from compbench.models import peak

    bench = speed_bench()
    cfg = transformer.TransformerConfig(d_model=32, layers=2, heads=2, ctx=64)
    with torch.no_grad():
        eng = transformer.IntTransformer(cfg, transformer.export(transformer.TransformerLM(cfg)))

    def held(engine):  # v32 holds a value row only where it does not fit int16 (np.zeros leaves its pages unmapped)
        state = engine.start(3)
        return sum(state[k].nbytes for k in ("k", "ks", "v16", "vwide"))

    class Coder:
        model_info = {"arch": "transformer", "config": dataclasses.asdict(cfg)}
        engine = eng.for_coding(4096)  # more than the model's ctx: the whole ctx

    assert bench.kv_bytes_per_byte(Coder()) * 3 == held(eng)
    Coder.engine = eng.for_coding(16)  # the coder's window: the cache it keeps
    assert bench.kv_bytes_per_byte(Coder()) * 3 == held(eng.for_coding(16)) < held(eng)
    Coder.model_info = {"arch": "gru", "config": {"hidden": 8, "layers": 1, "embed": 8}}
    assert bench.kv_bytes_per_byte(Coder()) == 0
    for threads in (1, 2):
        assert 1e8 < peak.read_bandwidth(threads, mib=16, repeat=2) < 1e13  # a real rate in bytes/s


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_dropout_acts_in_training_only(arch):
    cfg = ARCHS[arch].load().Config(**TINY[arch])
    torch.manual_seed(0)
    model = ARCHS[arch].load().LM(cfg, dropout=0.5)
    x = torch.randint(0, 256, (2, 40))
    with torch.no_grad():
        assert not torch.equal(model(x)[0], model(x)[0])  # training mode: fresh masks per call
        model.eval()
        assert torch.equal(model(x)[0], model(x)[0])


def test_training_resumes_from_its_checkpoint(tmp_path):
    lines = []
    base = dict(model="gru", corpus="pystdlib", out=str(tmp_path), size={"hidden": 16}, batch=4, seq_len=32,
                val_bytes=4096, eval_s=1e9)
    first = train(TrainConfig(steps=3, **base), say=lambda *a, **k: None)
    second = train(TrainConfig(steps=6, **base), say=lambda m, **k: lines.append(m))
    assert first["steps"] == 3 and second["steps"] == 6
    assert any("resuming" in m and "step 3" in m for m in lines)
    with pytest.raises(CompbenchError, match="different training setup"):
        train(TrainConfig(steps=6, **{**base, "seed": 5}), say=lambda *a, **k: None)


def test_incompressible_input_is_stored_not_expanded(tiny_models):
    path, _ = tiny_models["gru"]
    coder = make("gru", path)
    data = np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    payload = coder.encode(data)
    assert len(payload) == len(data) + 1 + overhead("gru", len(data), body_lengths=[len(data) + 1])
    assert type(coder).from_artifact(path.read_bytes(), **coder.options_dict()).decode(payload) == data
    assert coder.model_bits(data) > 8 * len(data)  # bpb_model still reports what the model costs


def test_malformed_bodies_are_clear_errors(tiny_models):
    coder = make("gru", tiny_models["gru"][0])
    with pytest.raises(PayloadError, match="stored bytes have the wrong length"):
        coder.decode_body(b"\x00abc", 5)
    with pytest.raises(PayloadError, match="stream layout"):
        coder.decode_body(b"\x03\x01" + bytes(8), 100)  # 3 streams x 1 byte cannot hold 100 bytes
    with pytest.raises(PayloadError, match="not whole"):
        coder.decode_body(b"\x01\x0a" + bytes(5), 10)


@pytest.mark.parametrize("spec", ["gru", "gru:mix=0", "transformer:streams=4", "transformer:streams=4:mix=0"])
def test_model_bits_are_the_cost_of_the_probabilities_actually_coded(spec):
    """bpb_model must be the cross-entropy of what the range coder codes, on any input. On text
    unlike the training data (CRLF, tabs, control and non-ASCII bytes) the engine's softmax gives
    some bytes less than constriction's 2**-24 floor; constriction lifts them, and model_bits must
    count the lifted probability, so the coded bits exceed it by only the coder's few words."""
    from compbench.payload import read_varint

    import random

    rng = random.Random(5)
    words = [b"the", b"coder", b"payload", b"Model", b"bytes", b"decode", b"\xc3\xa9t\xc3\xa9", b"stream", b"x=3;", b"{}"]
    data = bytearray()
    while len(data) < 3000:
        data += rng.choice(words) + rng.choice([b" ", b" ", b"\t", b"\r\n", b"\x00", b"\x1b[0m", b", "])
    data = bytes(data[:3000])
    # With float probabilities, the 'model' cost here was 443 (gru) and 858 (transformer) bits ABOVE
    # the real coded bits; with the coded ones it is 27 and 18 bits below.
    coder = registry.make_coder(spec)
    body = coder.encode_body(data)
    streams, pos = read_varint(body, 0, "streams")
    assert streams > 0, "coded, not stored"
    _, pos = read_varint(body, pos, "segment")
    word_bits = 8 * (len(body) - pos)
    bits = coder.model_bits(data)
    assert bits <= word_bits <= bits + 96, (bits, word_bits)


def test_train_records_the_cli_command_whether_run_as_a_script_or_with_python_m():
    from compbench.train import cli_command

    args = ["train", "--model", "gru", "--device", "cuda"]
    assert cli_command(["/venv/bin/compbench", *args]) == "compbench train --model gru --device cuda"
    assert cli_command(["/src/compbench/__main__.py", *args]) == "compbench train --model gru --device cuda"
    assert cli_command(["/usr/lib/python3/site-packages/pytest/__main__.py", "-x"]) is None
    assert cli_command(["-c"]) is None and cli_command([]) is None


def test_transformer_step_refuses_a_batch_other_than_the_one_it_started_with(tiny_models):
    """The step's runs of streams are laid out at start(); a batch of another size would leave rows
    of the logits unwritten, so it is a clear error instead."""
    _, engine = load_engine(tiny_models["transformer"][0].read_bytes())
    state = engine.start(20)
    with pytest.raises(ValueError, match="got 19 inputs for a state started with 20 streams"):
        engine.step(state, torch.full((19,), gru.BOS))
