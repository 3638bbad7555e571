"""Where a mixed neural decode spends its time, thread by thread: a diagnostic, not a speed benchmark.

    python benchmarks/pipeline_timers.py [--coder gru] [--corpus enwik8] [--bytes 262144] [--repeat 3]
                                         [--emulate-avx2]

It encodes the first ``--bytes`` of the corpus's test split and decodes it once to warm up (recording
what the coding thread is fed, below). Then it decodes ``--repeat`` times plainly
(``plain_decode_s``, the median) and ``--repeat`` times with timers wrapped around the engine's
parts, and reports the timed decode of median wall time. The timers' own Python changes how the
two threads share the GIL: a timed decode has taken from as long as a plain one to half again as
long. The timed decode reports:

- the coding thread's time in ``ContextMixer.step`` (mixing and range decoding), as wall time and
  as its CPU time, and in the range decoder's calls alone;
- its time waiting for the helper thread's results;
- the helper thread's time in its tasks, wall and CPU;
- each thread's time in the engine's matrix products (``intops.matmul_into``) and, for the GRU,
  the time in its gates (``IntGRU.cells``, on whichever thread runs them: the coding thread on the
  float32 path, the helper where the int8 GEMM runs), as wall time and as the thread's CPU time
  (equal when the thread ran all along; CPU time short of wall time means it waited, for the GIL
  or for a core).

Then what the two threads lose to each other. Each side is timed again alone, on one thread:

- ``coding_alone``: the mixer's steps and range decoding, fed the softmax weights recorded in the
  first decode, with no helper thread (the bytes are checked again; the recording holds 2 KB a
  byte decoded, 0.5 GB for the default 262,144 bytes);
- ``helper_alone`` (where the helper runs a group's whole step, the int8 path's schedule): the
  engine's group steps over the decoded bytes, with no mixer;
- ``coding_thread_wake_us``: the median time from a helper task's result being set to the coding
  thread running again, over the waits that blocked (a thread's wake-up: tens of microseconds in a
  VM whose idle vCPU halts);
- ``helper_start_us``: the median time from a task being both submitted and due (the previous one
  done) to its start.

So the wall time splits into work (the larger of the two sides alone), the cost of sharing the
machine and the GIL (each side's time in the pipeline over its time alone) and the hand-offs.
The payload is checked against the input. It also records the engine's matrix path (the
transformer's is int16 even where an int8 GEMM runs) and, where it is int8, which route into oneDNN
the engine took and the start-up timing behind that choice.
Results go to .compbench/bench/pipeline_timers.json.
``--emulate-avx2`` runs under :func:`neural_speed.avx2_env`, as ``neural_speed.py`` does.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

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


def _median_us(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1e6, 1) if values else None


def _coding_alone(calls: list, decode_args: dict, groups: int) -> tuple[float, bytes]:
    """The coding thread's part alone: a fresh mixer's steps and range decoding over the recorded
    ``(t, weights, k, lo)`` calls, in their order, with no helper thread. Returns the seconds in the
    steps (the mixer's set-up is not counted, as in the pipeline's timer) and the decoded bytes."""
    import constriction

    from compbench.models.mixing import ContextMixer

    a = decode_args
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(a["words"], dtype="<u4").astype(np.uint32))
    family = constriction.stream.model.Bernoulli(perfect=False)
    mixer = ContextMixer(a["streams"], a["seg"], a["size"], a["context"], groups, threads=2)
    arr = np.zeros((a["streams"], a["seg"]), dtype=np.uint8)

    def code(p, pf, j):
        return decoder.decode(family, pf)

    t0 = time.perf_counter()
    for t, w, k, lo in calls:
        arr[lo:lo + k, t] = mixer.step(t, w, k, code, lo)
    return time.perf_counter() - t0, arr.reshape(-1)[: a["size"]].tobytes()


def _helper_alone(engine, data: bytes, streams: int, seg: int) -> float:
    """The helper's part alone where it runs a group's whole step (``helper_runs == "step"``): the
    engine's steps for each group in the pipeline's order, over the decoded bytes, on one torch
    thread, with no mixer. Returns the seconds in the steps."""
    import torch

    from compbench.models import intops, lockstep

    grid = lockstep._grid(data, streams, seg)
    sources = [lockstep._step_probs(engine, grid[lo:hi], intops.exp_weights) for lo, hi in lockstep.mixed_groups(streams)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(seg):
                for src in sources:
                    next(src)
            return time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coder", default="gru", help="a mixed neural coder spec (default: gru)")
    ap.add_argument("--corpus", default="enwik8", help="corpus whose test split is decoded (default: enwik8)")
    ap.add_argument("--bytes", type=int, default=262_144, help="decode the first BYTES of the test split")
    ap.add_argument("--out", default=".compbench/bench/pipeline_timers.json", help="where the JSON results go")
    ap.add_argument("--repeat", type=int, default=3, help="timed decodes, with and without timers (default 3)")
    ap.add_argument("--emulate-avx2", action="store_true", help="time as an AVX2-only machine would (see neural_speed.py)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
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
    step, lockstep_decode = mixing.ContextMixer.step, lockstep.decode

    # A first decode checks the round trip, warms up, and records what the coding thread's part
    # alone is fed: the decode's arguments and the weights of every mixer step (t, weights, k, lo).
    # (Recording in the timed decode would slow it: 0.5 GB of copies for 262,144 bytes.)
    decode_args: dict = {}
    calls: list = []

    def recorded_decode(engine, words, size, streams, seg, match, progress=None, context=b"", mix=0):
        decode_args.update(engine=engine, words=words, size=size, streams=streams, seg=seg, context=context)
        return lockstep_decode(engine, words, size, streams, seg, match, progress, context, mix)

    def recorded_step(self, t, weights, k, code, lo=0):
        calls.append((t, np.array(weights[:k], dtype=np.int64), k, lo))
        return step(self, t, weights, k, code, lo)

    lockstep.decode, mixing.ContextMixer.step = recorded_decode, recorded_step
    try:
        if decode_payload(payload, art) != data:
            raise SystemExit(f"{args.coder}: round trip FAILED")
    finally:
        lockstep.decode, mixing.ContextMixer.step = lockstep_decode, step

    def timed_decode() -> dict:
        """One decode with every timer in place: its wall time, the timers, and the hand-off
        stamps."""
        stats: dict = defaultdict(float)
        main_thread = threading.main_thread()
        # Hand-offs: when each helper task was submitted, started and ended; when each future's result
        # was set; and, for the coding thread's waits that blocked, when it ran again.
        submits, spans, wakes = [], [], []
        in_inference = lockstep._in_inference
        task = _timed(stats, "helper_tasks", in_inference, cpu=True)

        def spanned_task(fn, *args):
            t0 = time.perf_counter()
            try:
                return task(fn, *args)
            finally:
                spans.append((t0, time.perf_counter()))

        submit = cf.ThreadPoolExecutor.submit

        def timed_submit(self, fn, *args, **kwargs):
            if fn is spanned_task:  # the engine's tasks, not the mixer's table fills
                submits.append(time.perf_counter())
            return submit(self, fn, *args, **kwargs)

        set_result = cf.Future.set_result

        def stamped_set_result(self, value):
            self._compbench_done = time.perf_counter()
            set_result(self, value)

        def timed_step(self, t, weights, k, code, lo=0):
            return step(self, t, weights, k, _timed(stats, "range_decoder", code), lo)

        result, waited = cf.Future.result, _timed(stats, "coding_thread_waits", cf.Future.result)

        def timed_result(self, timeout=None):  # only the coding thread's waits: the helper's are its idle time
            if threading.current_thread() is not main_thread:
                return result(self, timeout)
            blocked = not self.done()
            value = waited(self, timeout)
            if blocked and hasattr(self, "_compbench_done"):
                wakes.append(time.perf_counter() - self._compbench_done)
            return value

        matmul_into, cells = intops.matmul_into, gru.IntGRU.cells
        mine = _timed(stats, "coding_thread_matmuls", matmul_into, cpu=True)
        helpers = _timed(stats, "helper_matmuls", matmul_into, cpu=True)

        def timed_matmul(x, w, out):
            return (mine if threading.current_thread() is main_thread else helpers)(x, w, out)

        wrapped = ((lockstep, "_in_inference", in_inference, spanned_task),
                   (cf.ThreadPoolExecutor, "submit", submit, timed_submit),
                   (cf.Future, "set_result", set_result, stamped_set_result),
                   (cf.Future, "result", result, timed_result),
                   (mixing.ContextMixer, "step", step, _timed(stats, "mixing_and_decoding", timed_step, cpu=True)),
                   (intops, "matmul_into", matmul_into, timed_matmul),
                   (gru.IntGRU, "cells", cells, _timed(stats, "gru_gates", cells, cpu=True)))
        for owner, name, _, timed in wrapped:
            setattr(owner, name, timed)
        try:
            t = time.perf_counter()
            out = decode_payload(payload, art)
            wall = time.perf_counter() - t
        finally:  # the parts alone below run as they are, with no timers inside
            for owner, name, plain, _ in wrapped:
                setattr(owner, name, plain)
        if out != data:
            raise SystemExit(f"{args.coder}: round trip FAILED")
        return {"wall": wall, "stats": stats, "spans": spans, "submits": submits, "wakes": wakes}

    # The timers and their Python work change how the two threads share the GIL, and a decode
    # with them has run up to half again as long as one without on the Zen 5: so the decode is
    # timed plainly too, and each is repeated; the timed run reported is the one of median wall time.
    plain = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        if decode_payload(payload, art) != data:
            raise SystemExit(f"{args.coder}: round trip FAILED")
        plain.append(time.perf_counter() - t)
    runs = sorted((timed_decode() for _ in range(args.repeat)), key=lambda r: r["wall"])
    run = runs[len(runs) // 2]
    wall, stats, spans, submits, wakes = run["wall"], run["stats"], run["spans"], run["submits"], run["wakes"]
    timers = {k: round(v, 3) for k, v in sorted(stats.items())}
    # A task starts once it is submitted and the one before it (one worker, in order) is done.
    starts = [spans[i][0] - max(spans[i - 1][1], submits[i]) for i in range(1, min(len(spans), len(submits)))]
    engine = decode_args["engine"]
    # The mixer's learning rates depend on the group count, so the replay's mixer takes the decode's.
    groups = len(lockstep.mixed_groups(decode_args["streams"]))
    coding_alone = []
    for _ in range(args.repeat):
        seconds, again = _coding_alone(calls, decode_args, groups)
        if again != data:
            raise SystemExit(f"{args.coder}: the coding thread's part alone decoded other bytes")
        coding_alone.append(seconds)
    step_schedule = getattr(engine, "helper_runs", None) == "step" and bool(spans)
    helper_alone = [_helper_alone(engine, data, decode_args["streams"], decode_args["seg"])
                    for _ in range(args.repeat)] if step_schedule else None
    handoffs = {"phases": len(calls), "coding_alone": round(statistics.median(coding_alone), 3),
                "helper_alone": round(statistics.median(helper_alone), 3) if helper_alone else None,
                "coding_thread_wake_us": _median_us(wakes), "helper_start_us": _median_us(starts)}
    plain_s = statistics.median(plain)
    # The engine's own GEMM path, as neural_speed.py reports it: the transformer prefers the int16
    # kernel even where the int8 GEMM runs, so the int8 route is reported only where it was taken.
    path = getattr(engine, "matrix_path", intops.matrix_path)()
    row = {"coder": coder.spec, "bytes": len(data), "threads": torch.get_num_threads(),
           "emulated": os.environ.get("COMPBENCH_EMULATED"), "repeat": args.repeat,
           "plain_decode_s": round(plain_s, 3), "plain_decode_KBps": round(len(data) / plain_s / 1e3, 1),
           "decode_s": round(wall, 3), "decode_KBps": round(len(data) / wall / 1e3, 1),
           "matrix_path": path,
           # which route into oneDNN the int8 path took here (intops.int8_route), and the timing behind it
           "int8_route": intops.int8_route() if path == "int8" else None,
           "int8_route_us": {r: round(t * 1e6, 1) for r, t in intops.int8_route_seconds().items()}
           if path == "int8" else {},
           **timers, **handoffs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=2) + "\n")
    width = max(len(k) for k in row)
    for k, v in row.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
