"""What this machine's cores do per second, alone and two at once: a diagnostic for comparing hosts.

    python benchmarks/core_probes.py [--scale 1.0] [--out .compbench/bench/core_probes.json]

The neural coders' speed depends on more than the matrix peak that ``neural_speed.py`` measures:
the mixer is scalar integer work and cache misses, the GRU's gates are table lookups, and the two
threads share the machine. When one host codes three times slower than another, these probes say
where: each runs alone on one thread (medians of 3), and the last two also run on two threads at
once, which shows whether the two cores slow each other (a ratio near 1: independent cores; near 2:
one core's two hardware threads, or a contended host).

- ``python_adds_s``: 5 million additions in a Python loop (the coders' per-call glue);
- ``numba_chain_s``: 200 million dependent xorshift-multiply steps, compiled (scalar latency);
- ``constriction_s``: range coding 1 million symbols each way with constriction;
- ``random_load_ns``: one dependent load from a random place in 1 GiB, in ordinary pages (the
  mixer's table misses, each also a TLB miss);
- ``table_lookup_ns``: one lookup of a 16,385-entry float32 table at random indices, as the GRU's
  gates do (three per hidden unit);
- ``gathers``: for each of the coders' compiled hot loops (the GRU's gate pass and softmax weights
  on the helper thread, the mixer's four passes on the coding thread), whether numba's LLVM
  compiles it with vector gathers on this CPU (where a CPU's microcode makes gathers slow, the
  Downfall mitigation's, such a loop would be slow);
- ``gathers_by_target``: the same question for other CPUs (``--targets``), each compiled in a
  child process for that CPU's name and its default features (``NUMBA_CPU_NAME``,
  ``NUMBA_CPU_FEATURES``) and never run, so it answers for an Intel Xeon from any x86 machine
  (about 7 s a target). With numba 0.68.1 (LLVM 22) the answer was no for every loop and every
  default target; the Intel targets compile the loops with 256-bit vectors, the AMD ones with 512;
- ``two_threads_chain_ratio`` and ``two_threads_load_ratio``: the chain and the random loads on
  two threads at once, each thread's time over its time alone;
- ``int8_route_us``: where the CPU has an exact int8 GEMM, microseconds per GRU step (its recurrent
  and output products, one thread) through each route into oneDNN, ``torch._int_mm`` and the matmul
  primitive that runs AMX tiles (``intops.route_seconds``, as the engine times them to choose).

Scale the work with ``--scale`` (the tests run it tiny). Writes JSON to ``--out``, with the numba,
llvmlite and LLVM versions that compiled the probes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@njit(nogil=True, cache=True)
def _chain(n):
    x = np.uint64(1)
    for _ in range(n):
        x ^= x >> np.uint64(12)
        x ^= x << np.uint64(25)
        x ^= x >> np.uint64(27)
        x *= np.uint64(2685821657736338717)
    return x


@njit(nogil=True, cache=True)
def _chase(nxt, steps):
    i = 0
    for _ in range(steps):
        i = nxt[i]
    return i


@njit(nogil=True, cache=True)
def _lookups(table, idx, out):
    for j in range(idx.shape[0]):
        out[j] = table[idx[j]]


def _python_adds(n: int) -> int:
    s = 0
    for i in range(n):
        s += i
    return s


def _median(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _pointer_ring(nbytes: int, seed: int) -> np.ndarray:
    """A random cycle through ``nbytes`` of int64, in memory allocated as the mixer's tables are
    (``mixing._zeros``: ordinary pages)."""
    from compbench.models.mixing import _zeros

    n = nbytes // 8
    perm = np.random.default_rng(seed).permutation(n)
    ring = _zeros(n, np.int64)
    ring[perm] = np.roll(perm, -1)
    return ring


def _both(fn_a, fn_b) -> tuple[float, float]:
    """Each function's own seconds, the two running at once on two threads (both release the GIL)."""
    def timed(fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(timed, fn_a), pool.submit(timed, fn_b)
        return a.result(), b.result()


TARGETS = ("sapphirerapids", "graniterapids", "icelake-server", "skylake-avx512", "haswell", "znver4", "znver5")


def _hot_loops() -> dict:
    """The coders' compiled hot loops, each as (a fresh dispatcher of its Python function, the
    argument types of its calls): the GRU's gate pass and softmax weights (the helper thread's
    passes) and the mixer's four passes (the coding thread's). Fresh, since numba cannot show
    cached code; they are compiled, never run."""
    import numba

    from compbench.models import gru, intops
    from compbench.models import mixing as mx

    ty = numba.typeof
    mixer = mx.ContextMixer(8, 64, 512)
    streams, lay, _ = mixer._from(0)
    weights, p12, bit, byte = np.ones((8, 256), np.int64), np.empty(8, np.int64), np.empty(8, np.int32), np.zeros(8, np.int64)
    cell = (np.zeros((3, 24), np.float32), np.zeros(2, np.int64), np.zeros((2, 24), np.int32), np.ones(24, np.float32),
            np.zeros(24, np.float32), np.zeros((2, 8), np.float32), intops.sigmoid_table().numpy(),
            intops.tanh_table().numpy(), np.zeros((2, 8), np.int8), np.float32(0))
    exp = (np.zeros((2, 256), np.int32), np.ones(256, np.float32), np.zeros(256, np.float32), intops.exp_table().numpy(),
           np.zeros((2, 256), np.int64))
    loops = {"gru_gates": (gru._cell, tuple(ty(x) for x in cell)),
             "softmax_weights": (intops._exp_weights_rows, tuple(ty(x) for x in exp)),
             "mixer_begin": (mx._begin, (ty(1), ty(weights), ty(mixer._model), ty(streams), ty(mixer._sc))),
             "mixer_predict": (mx._predict, (ty(1), ty(1), ty(mixer._model), ty(mixer._sc), ty(p12))),
             "mixer_learn": (mx._learn, (ty(1), ty(bit), ty(mixer._model), ty(mixer._sc))),
             "mixer_end_byte": (mx._end_byte, (ty(1), ty(1), ty(byte), ty(lay), ty(streams)))}
    return {name: (njit(nogil=True)(f.py_func), sig) for name, (f, sig) in loops.items()}


def gathers() -> dict[str, bool] | None:
    """For each of the coders' hot loops (:func:`_hot_loops`), whether numba's LLVM compiles it with
    vector gathers for the CPU numba targets (this one, unless ``NUMBA_CPU_NAME`` says otherwise);
    None if they could not be compiled. Where a CPU's microcode makes gathers slow (the Downfall
    mitigation's), a loop compiled with them would be slow."""
    try:
        out = {}
        for name, (f, sig) in _hot_loops().items():
            f.compile(sig)
            out[name] = bool(re.search(r"\bv(p)?gather", f.inspect_asm(sig)))
        return out
    except Exception:
        return None


def gathers_for(cpu: str, timeout: float = 300.0) -> dict[str, bool] | None:
    """:func:`gathers` for the CPU named ``cpu`` (an LLVM name), with that CPU's default features, in
    a child process with a cache folder of its own (None if it could not say)."""
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import core_probes; "
            "print(json.dumps(core_probes.gathers()))")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": "", "NUMBA_CACHE_DIR": cache}
        try:
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
        except (OSError, subprocess.SubprocessError):
            return None
    last = res.stdout.strip().splitlines()[-1:] if res.returncode == 0 else []
    try:
        return json.loads(last[0]) if last else None
    except ValueError:
        return None


def _route_us() -> dict[str, float] | None:
    """Microseconds per GRU step through each int8 route (None where no exact int8 GEMM runs, or the
    matmul primitive is not exact or not there)."""
    from compbench.models import intops

    if intops.matrix_path() != "int8" or not intops._matmul_route_usable():
        return None
    return {r: round(t * 1e6, 1) for r, t in intops.route_seconds(rounds=9).items()}


def _versions() -> dict[str, str]:
    import llvmlite
    import llvmlite.binding as llvm
    import numba

    return {"numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "llvm": ".".join(map(str, llvm.llvm_version_info))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every probe's work by this (default 1)")
    ap.add_argument("--out", default=".compbench/bench/core_probes.json", help="where the JSON results go")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="comma-separated LLVM CPU names to compile the coders' hot loops for and check for "
                         f"gathers (default {','.join(TARGETS)}; empty for none)")
    args = ap.parse_args()
    s = args.scale
    n_py, n_chain, n_sym = max(1000, int(5e6 * s)), max(1000, int(2e8 * s)), max(1000, int(1e6 * s))
    ring_bytes, steps = max(1 << 16, int((1 << 30) * s)), max(1000, int(3e6 * s))

    import constriction

    from compbench import environment

    out: dict = {"cpu": environment.cpu_model(), "isa": environment.cpu_isa(), "scale": s, **_versions()}
    out["python_adds_s"] = _median(lambda: _python_adds(n_py))
    _chain(10)
    out["numba_chain_s"] = _median(lambda: _chain(n_chain))
    model = constriction.stream.model.Categorical(np.full(256, 1 / 256, np.float32), perfect=False)
    sym = np.random.default_rng(0).integers(0, 256, n_sym).astype(np.int32)

    def range_code():
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(sym, model)
        dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
        if not np.array_equal(dec.decode(model, len(sym)), sym):
            raise SystemExit("constriction did not round-trip")

    out["constriction_s"] = _median(range_code)
    rings = [_pointer_ring(ring_bytes, seed) for seed in (1, 2)]
    _chase(rings[0], 1000)
    out["random_load_ns"] = _median(lambda: _chase(rings[0], steps)) / steps * 1e9
    table = np.random.default_rng(3).random(16385).astype(np.float32)
    idx = np.random.default_rng(4).integers(0, 16385, 1 << 20).astype(np.int32)
    got = np.empty(len(idx), np.float32)
    _lookups(table, idx, got)
    reps = max(1, int(50 * s))
    out["table_lookup_ns"] = _median(lambda: [_lookups(table, idx, got) for _ in range(reps)]) / (reps * len(idx)) * 1e9
    out["gathers"] = gathers()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    out["gathers_by_target"] = {t: gathers_for(t) for t in targets}
    out["int8_route_us"] = _route_us()
    alone = _median(lambda: _chain(n_chain))
    pair = _both(lambda: _chain(n_chain), lambda: _chain(n_chain))
    out["two_threads_chain_ratio"] = max(pair) / alone
    alone = _median(lambda: _chase(rings[0], steps))
    pair = _both(lambda: _chase(rings[0], steps), lambda: _chase(rings[1], steps))
    out["two_threads_load_ratio"] = max(pair) / alone
    for k, v in out.items():
        print(f"{k:26s} {v:.4g}" if isinstance(v, float) else f"{k:26s} {v}")
    path = ROOT / args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
