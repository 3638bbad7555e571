"""The stronger classical bar: PPMd primed with as much of the train split as fits the artifact budget.

    python benchmarks/primed_ppmd.py [--corpora enwik8,sagas] [--budget 1000000]

A primed PPMd pays for its prefix the way a neural coder pays for its weights: the artifact is the
prefix compressed by PPMd itself, at most ``--budget`` bytes. The prefix is the *end* of the train
split (the bytes nearest the test split), as long as fits. The test split's cost given the prefix is
measured as ``len(ppmd(prefix + test)) - len(ppmd(prefix))``: both are real PPMd var. H streams
(order 8, 256 MiB, compbench's ``ppmd`` coder), so the difference is the test bytes' share of one
continuous stream, within a few bytes of a coder that resumes from the primed model.
Writes .compbench/bench/primed_ppmd.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from compbench import corpus, registry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", default="enwik8,sagas")
    ap.add_argument("--budget", type=int, default=1_000_000)
    ap.add_argument("--out", default=".compbench/bench/primed_ppmd.json")
    args = ap.parse_args()
    ppmd = registry.make_coder("ppmd")
    rows = []
    for name in args.corpora.split(","):
        train = corpus.load_corpus(name, "train").joined()
        test = corpus.load_corpus(name, "test").joined()
        lo, hi = 0, len(train)  # largest suffix of train whose PPMd stream fits the budget
        if len(ppmd.encode_body(train)) > args.budget:
            while hi - lo > 65536:
                mid = (lo + hi) // 2
                if len(ppmd.encode_body(train[-mid:])) <= args.budget:
                    lo = mid
                else:
                    hi = mid
            hi = lo
        prefix = train[len(train) - hi :]
        prefix_bytes = len(ppmd.encode_body(prefix))
        both = len(ppmd.encode_body(prefix + test))
        alone = len(ppmd.encode_body(test))
        row = {"corpus": name, "prefix_bytes": len(prefix), "artifact_bytes": prefix_bytes,
               "test_bytes": len(test), "bpb_primed": round(8 * (both - prefix_bytes) / len(test), 4),
               "bpb_alone": round(8 * alone / len(test), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"budget": args.budget, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
