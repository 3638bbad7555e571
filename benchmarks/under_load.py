"""Neural coding beside busy processes: GRU encode of 100 KB idle, then beside N processes that
each keep a core busy, in one run. Issue 7's bar: at most 4x the idle time.

    python benchmarks/under_load.py [--bytes 100000] [--busy 2] [--repeat 3]

Writes .compbench/bench/under_load.json. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def sample(n: int) -> tuple[str, bytes]:
    from compbench.corpus import load_corpus

    try:
        return "enwik8 test split", load_corpus("enwik8", "test").joined()[:n]
    except Exception:  # noqa: BLE001  (no data folder: the built-in corpus)
        return "pystdlib", load_corpus("pystdlib").joined()[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", type=int, default=100_000)
    ap.add_argument("--busy", type=int, default=2, help="busy processes beside the encode")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--coder", default="gru")
    args = ap.parse_args()
    from compbench import registry
    import torch

    source, data = sample(args.bytes)
    coder = registry.make_coder(args.coder)
    coder.artifact()

    def times() -> list[float]:
        out = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            coder.encode(data)
            out.append(time.perf_counter() - t)
        return out

    coder.encode(data[:2000])  # warm-up
    idle = times()
    busy = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 600: pass"])
            for _ in range(args.busy)]
    try:
        time.sleep(0.5)
        loaded = times()
    finally:
        for p in busy:
            p.kill()
    result = {
        "coder": args.coder, "source": source, "bytes": len(data), "busy_processes": args.busy,
        "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "idle_s": idle, "loaded_s": loaded, "idle_median_s": statistics.median(idle),
        "loaded_median_s": statistics.median(loaded),
        "ratio": statistics.median(loaded) / statistics.median(idle), "cpus": os.cpu_count(),
    }
    out = Path(".compbench/bench/under_load.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.coder} encode of {len(data):,} bytes ({source}), {result['torch_threads']} torch threads: "
          f"idle {result['idle_median_s']:.2f} s, beside {args.busy} busy processes {result['loaded_median_s']:.2f} s "
          f"(ratio {result['ratio']:.2f}x; medians of {args.repeat}); wrote {out}")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
