"""Where a mixed neural decode spends its time, thread by thread: a diagnostic, not a speed benchmark.

    python benchmarks/pipeline_timers.py [--coder gru] [--corpus enwik8] [--bytes 262144] [--emulate-avx2]

It encodes the first ``--bytes`` of the corpus's test split, decodes once to warm up, then decodes
again with timers wrapped around the engine's parts (the wrappers add a few microseconds a call, so
the decode is a little slower than ``neural_speed.py``'s):

- the coding thread's time in ``ContextMixer.step`` (mixing and range decoding), as wall time and
  as its CPU time, and in the range decoder's calls alone;
- its time waiting for the helper thread's results;
- the helper thread's time in its tasks, wall and CPU;
- each thread's time in the engine's matrix products (``intops.matmul_into``) and, for the GRU,
  the time in its gates (``IntGRU.cells``, on whichever thread runs them: the coding thread on the
  float32 path, the helper where the int8 GEMM runs), as wall time and as the thread's CPU time
  (equal when the thread ran all along; CPU time short of wall time means it waited, for the GIL
  or for a core).

The payload is checked against the input. It also records the matrix path and, where the int8
GEMM runs, which route into oneDNN the engine took and the start-up timing behind that choice.
Results go to .compbench/bench/pipeline_timers.json.
``--emulate-avx2`` runs under :func:`neural_speed.avx2_env`, as ``neural_speed.py`` does.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _timed(stats: dict, key: str, fn, cpu: bool = False):
    """``fn`` with its wall time (and, if ``cpu``, its thread's CPU time) added to ``stats[key]``."""
    def wrapper(*args, **kwargs):
        t, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            stats[key] += time.perf_counter() - t
            if cpu:
                stats[key + "_cpu"] += time.thread_time() - c
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coder", default="gru", help="a mixed neural coder spec (default: gru)")
    ap.add_argument("--corpus", default="enwik8", help="corpus whose test split is decoded (default: enwik8)")
    ap.add_argument("--bytes", type=int, default=262_144, help="decode the first BYTES of the test split")
    ap.add_argument("--out", default=".compbench/bench/pipeline_timers.json", help="where the JSON results go")
    ap.add_argument("--emulate-avx2", action="store_true", help="time as an AVX2-only machine would (see neural_speed.py)")
    args = ap.parse_args()
    import neural_speed

    if args.emulate_avx2 and os.environ.get("COMPBENCH_EMULATED") != "avx2":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **neural_speed.avx2_env()})

    import torch  # after neural_speed, which imports compbench first (it sets OMP_WAIT_POLICY)
    from compbench import corpus, registry
    from compbench.decoding import decode_payload
    from compbench.models import gru, intops, lockstep, mixing

    data = corpus.load_corpus(args.corpus, "test").joined()[: args.bytes]
    coder = registry.make_coder(args.coder)
    art = coder.artifact()
    payload = coder.encode(data)
    if decode_payload(payload, art) != data:
        raise SystemExit(f"{args.coder}: round trip FAILED")

    stats: dict = defaultdict(float)
    main_thread = threading.main_thread()
    lockstep._in_inference = _timed(stats, "helper_tasks", lockstep._in_inference, cpu=True)
    step = mixing.ContextMixer.step

    def timed_step(self, t, weights, k, code, lo=0):
        return step(self, t, weights, k, _timed(stats, "range_decoder", code), lo)

    mixing.ContextMixer.step = _timed(stats, "mixing_and_decoding", timed_step, cpu=True)
    result, waited = cf.Future.result, _timed(stats, "coding_thread_waits", cf.Future.result)

    def timed_result(self, timeout=None):  # only the coding thread's waits: the helper's are its idle time
        return (waited if threading.current_thread() is main_thread else result)(self, timeout)

    cf.Future.result = timed_result
    mine = _timed(stats, "coding_thread_matmuls", intops.matmul_into, cpu=True)
    helpers = _timed(stats, "helper_matmuls", intops.matmul_into, cpu=True)

    def timed_matmul(x, w, out):
        return (mine if threading.current_thread() is main_thread else helpers)(x, w, out)

    intops.matmul_into = timed_matmul
    gru.IntGRU.cells = _timed(stats, "gru_gates", gru.IntGRU.cells, cpu=True)

    t = time.perf_counter()
    out = decode_payload(payload, art)
    wall = time.perf_counter() - t
    if out != data:
        raise SystemExit(f"{args.coder}: round trip FAILED")
    row = {"coder": coder.spec, "bytes": len(data), "threads": torch.get_num_threads(),
           "emulated": os.environ.get("COMPBENCH_EMULATED"), "decode_s": round(wall, 3),
           "decode_KBps": round(len(data) / wall / 1e3, 1), "matrix_path": intops.matrix_path(),
           # which route into oneDNN the int8 path took here (intops.int8_route), and the timing behind it
           "int8_route": intops.int8_route() if intops.matrix_path() == "int8" else None,
           "int8_route_us": {r: round(t * 1e6, 1) for r, t in intops.int8_route_seconds().items()}
           if intops.matrix_path() == "int8" else {},
           **{k: round(v, 3) for k, v in sorted(stats.items())}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=2) + "\n")
    width = max(len(k) for k in row)
    for k, v in row.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
