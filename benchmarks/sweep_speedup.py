"""Sweep speed-up: a classical sweep over Canterbury and Calgary, serial against ``--jobs N``, in one run.

    python benchmarks/sweep_speedup.py [--coders classical] [--corpora canterbury,calgary] [--jobs 2] [--repeat 3]

Each corpus is run serially and then with N local processes (and with Ray if ``--ray``), each into
a fresh temporary store, timed end to end (fitting, every cell's verification and timed passes,
writing the store). The compression figures of every record must be identical across executors;
the script fails otherwise. Time it on an idle machine. Writes .compbench/bench/sweep_speedup.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

SAME = ("spec", "file", "payload_bytes", "bpb", "roundtrip_ok")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coders", default="classical")
    ap.add_argument("--corpora", default="canterbury,calgary")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ray", action="store_true", help="also run on a local Ray instance with --jobs CPUs")
    args = ap.parse_args()
    from compbench.environment import cpu_model
    from compbench.measure import MeasureConfig
    from compbench.runner import RunConfig, run
    from compbench.store import Store

    executors = [("serial", {}), (f"jobs{args.jobs}", {"jobs": args.jobs})]
    if args.ray:
        executors.append((f"ray{args.jobs}", {"jobs": args.jobs, "executor": "ray"}))
    rows, figures = [], {}
    for corpus in args.corpora.split(","):
        for name, kw in executors:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = RunConfig(coders=args.coders, corpus=corpus, measure=MeasureConfig(repeat=args.repeat), **kw)
                t0 = time.perf_counter()
                result = run(cfg, store=Store(Path(tmp) / "s.sqlite"))
                wall = time.perf_counter() - t0
            if not result.ok:
                raise SystemExit(f"{corpus} {name}: {result.failures}")
            figures[(corpus, name)] = sorted(tuple(r.to_dict()[k] for k in SAME) for r in result.records)
            row = {"corpus": corpus, "executor": name, "cells": len(result.records), "wall_s": round(wall, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        base = figures[(corpus, "serial")]
        for name, _ in executors[1:]:
            if figures[(corpus, name)] != base:
                raise SystemExit(f"{corpus}: {name} gave different compression figures than serial")
    total = {name: sum(r["wall_s"] for r in rows if r["executor"] == name) for name, _ in executors}
    speedup = {name: round(total["serial"] / total[name], 2) for name, _ in executors[1:]}
    print(json.dumps({"total_wall_s": total, "speedup_vs_serial": speedup}))
    out = Path(".compbench/bench/sweep_speedup.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_model(), "coders": args.coders, "repeat": args.repeat, "rows": rows,
                               "total_wall_s": total, "speedup_vs_serial": speedup,
                               "figures_identical": True}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
