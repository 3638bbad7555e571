"""The paid-prefix law, measured: ``bpb ≈ model_bpb × (1 − coverage)`` (parameter golf's observation),
and where a paid prefix beats spending the same artifact bytes on a context prefix of train text.

    python benchmarks/paid_law.py [--corpora enwik8,sagas] [--coverages 0.05,0.1,0.2,0.4] [--inner ppmd]

For each corpus's test split: the inner coder alone gives ``model_bpb``. For each coverage c, a
``prefix:kind=paid`` coder stores the first c of the evaluated bytes (compressed by PPMd) and codes
the rest primed with them; its competition ``bpb`` (payload over all evaluated bytes) is set beside
the law's prediction. The same artifact bytes are then given to ``prefix:kind=context`` as its budget
(the longest train tail that fits): the paid prefix "wins" where its ``bpb`` is lower. Every row is a
real round trip. Writes .compbench/bench/paid_law.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="enwik8,sagas")
    ap.add_argument("--coverages", default="0.05,0.1,0.2,0.4")
    ap.add_argument("--inner", default="ppmd")
    args = ap.parse_args()
    from compbench.measure import MeasureConfig
    from compbench.runner import RunConfig, run

    def one(spec: str, corpus: str, budget: int | None = None):
        res = run(RunConfig(coders=spec, corpus=corpus, split="test", measure=MeasureConfig(repeat=1, budget=budget)))
        if res.failures or not all(r.roundtrip_ok for r in res.records):
            raise SystemExit(f"{spec} on {corpus}: {res.failures or 'round trip FAILED'}")
        n = sum(r.n_bytes for r in res.records)
        return 8 * sum(r.payload_bytes for r in res.records) / n, res.records[0].artifact_bytes, n

    rows = []
    for corpus in args.corpora.split(","):
        model_bpb, _, n = one(args.inner, corpus)
        for c in map(float, args.coverages.split(",")):
            size = int(c * n)
            bpb, art, _ = one(f"prefix:kind=paid:size={size}:inner=({args.inner}):store=(ppmd)", corpus)
            ctx_bpb, ctx_art, _ = one(f"prefix:inner=({args.inner}):store=(ppmd)", corpus, budget=art)
            row = {"corpus": corpus, "coverage": c, "stored_bytes": size, "artifact_bytes": art,
                   "model_bpb": round(model_bpb, 4), "law_bpb": round(model_bpb * (1 - c), 4), "paid_bpb": round(bpb, 4),
                   "paid_vs_law": round(bpb / (model_bpb * (1 - c)) - 1, 4),
                   "context_bpb_same_bytes": round(ctx_bpb, 4), "context_artifact_bytes": ctx_art,
                   "paid_wins": bpb < ctx_bpb}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(".compbench/bench/paid_law.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"inner": args.inner, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
