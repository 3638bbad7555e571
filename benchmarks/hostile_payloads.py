"""Seeded hostile payloads against `compbench decode`'s default policy, for every coder family.

    python benchmarks/hostile_payloads.py [--cases 10800] [--seed 2]

Trains two seconds-long tiny neural models on the built-in corpus, then decodes --cases payloads
from compbench.fuzz (mutated, crafted-with-valid-checksums and lying headers, external specs that
would create a canary file) and counts outcomes per family and kind. Any crash, hang, traceback,
multi-line message, wrong output or program run stops it. Writes .compbench/bench/hostile_payloads.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_800)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    from compbench import fuzz
    from compbench.models import ARCHS
    from compbench.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for arch, info in ARCHS.items():
            paths[arch] = Path(tmp) / arch
            train(TrainConfig(model=arch, corpus="pystdlib", steps=40, out=str(paths[arch]), size=info.tiny, batch=16,
                              seq_len=64, lr=1e-2, val_bytes=8192, eval_s=1e9), say=lambda *a, **k: None)
        coders = fuzz.default_coders(paths)
        canary = Path(tmp) / "canary"
        counts: Counter = Counter()
        rss0, t0 = fuzz.peak_rss_bytes(), time.perf_counter()
        for case in fuzz.cases(args.seed, args.cases, coders, canary):
            family = getattr(coders[case.spec][0], "family", "?")
            if case.kind == "header" and b"external" in case.payload[:200]:
                family = "external"
            counts[(family, case.kind, fuzz.check(case))] += 1
            if canary.exists():
                raise SystemExit(f"FAILED: a {case.kind} payload for {case.spec} ran a program")
        seconds = time.perf_counter() - t0
        growth = fuzz.peak_rss_bytes() - rss0
    rows = [{"family": f, "kind": k, "outcome": o, "cases": n} for (f, k, o), n in sorted(counts.items())]
    result = {"cases": args.cases, "seed": args.seed, "seconds": round(seconds, 1), "peak_rss_growth_mb": round(growth / 1e6, 1),
              "crashes": 0, "hangs": 0, "wrong_outputs": 0, "programs_run": 0, "rows": rows}
    dest = Path(".compbench/bench/hostile_payloads.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    by_family = Counter()
    for (f, _, o), n in counts.items():
        by_family[(f, o)] += n
    for (f, o), n in sorted(by_family.items()):
        print(f"{f:10s} {o:8s} {n:6,d}")
    print(f"{args.cases:,} cases in {seconds:.0f} s: 0 crashes, 0 hangs, 0 wrong outputs, 0 programs run; "
          f"peak RSS grew {growth / 1e6:.0f} MB; wrote {dest}")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
